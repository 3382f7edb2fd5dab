"""`--engine spark` on a real Spark standalone cluster, started here from the installed pyspark.

One cluster (a master and a worker with one core and a small memory, on free 127.0.0.1 ports) is
shared by the tests of this file and stopped at the end; the tests that stop a master start their
own. msfeas runs as a process of its own (`python -m pipeline`), as on a site: its exit code,
its stderr and its signals are the real ones.

- a sample export and golden cases judged on the cluster give the results of local mode (local
  mode equals Polars to the byte: tests/test_spark_run.py; here the cluster run is compared with
  Polars), and the application ran on the worker's executor (the master's JSON);
- the environment shipped with `spark.archives` (a small venv packed with venv-pack): the
  executors' Python workers run `./env/bin/python`, not the driver's interpreter;
- a job that waits for executors of a master that has none, or whose master is stopped mid-run,
  stops the run after `msfeas.spark.wait` with exit 69, naming the master and Spark's warning;
- SIGTERM during a Spark job: exit 143 within seconds, no run folder, no partial folder;
- as root: the worker in a network namespace of its own (a veth pair on 10.213.7.0/30), the
  driver bound to and advertising 10.213.7.1: the run passes off loopback.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import ROOT

pytestmark = pytest.mark.xdist_group("spark")

SAMPLE = ROOT / "data_samples" / "default"
AS_OF = "2026-11-01"
LOOPBACK_DRIVER = {"spark.driver.host": "127.0.0.1", "spark.driver.bindAddress": "127.0.0.1"}
SMALL = {"spark.executor.memory": "512m", "spark.sql.shuffle.partitions": "2", "spark.default.parallelism": "2",
         "spark.sql.codegen.wholeStage": "false"}
# The golden cases judged on the cluster: one or two of each kind of table access and window.
GOLDEN_CASES = ["age/min_and_max", "all/three_valued", "any/nested", "confirmed_progression",
                "creatinine_clearance", "episodes", "lab_uln"]


def _free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def _spark_home() -> Path:
    import pyspark

    return Path(pyspark.__file__).parent


def _java_env() -> dict[str, str]:
    from pipeline.engines.spark.session import java_home

    env = dict(os.environ)
    home = java_home()
    if home:
        env["JAVA_HOME"] = home
    return env


def _json(url: str, timeout: float = 5) -> dict:
    with urllib.request.urlopen(url, timeout=timeout) as r:  # noqa: S310 - the tests' own master on loopback
        return json.loads(r.read())


def _until(what, timeout: float, step: float = 0.3, message: str = ""):
    end = time.monotonic() + timeout
    while True:
        try:
            value = what()
        except OSError:
            value = None
        if value:
            return value
        if time.monotonic() > end:
            raise AssertionError(f"timed out after {timeout} s: {message}")
        time.sleep(step)


class Cluster:
    """A standalone master (and optionally one worker) from the installed pyspark, in process groups of
    their own so that `stop` ends every JVM they started (the worker's executors included)."""

    def __init__(self, folder: Path, host: str = "127.0.0.1", worker: bool = True, worker_prefix=(),
                 worker_host: str | None = None):
        self.folder, self.host = folder, host
        self.procs: list[subprocess.Popen] = []
        folder.mkdir(parents=True, exist_ok=True)
        self.port, self.ui = _free_port(host), _free_port(host)
        self.url = f"spark://{host}:{self.port}"
        env = {**_java_env(), "SPARK_HOME": str(_spark_home()), "SPARK_LOCAL_IP": host,
               "SPARK_DAEMON_MEMORY": "256m", "SPARK_LOG_DIR": str(folder)}
        self.env = env
        try:
            self._spawn("master", [], env, ["org.apache.spark.deploy.master.Master", "--host", host,
                                            "--port", str(self.port), "--webui-port", str(self.ui)])
            _until(lambda: _json(self.master_json_url()), 60, message=f"master at {self.url}")
            if worker:
                whost = worker_host or host
                wport, wui = _free_port(host), _free_port(host)  # (free on the host; in a namespace too)
                self._spawn("worker", list(worker_prefix), {**env, "SPARK_LOCAL_IP": whost},
                            ["org.apache.spark.deploy.worker.Worker", "--host", whost, "--port", str(wport),
                             "--webui-port", str(wui), "--cores", "1", "--memory", "1g",
                             "--work-dir", str(folder / "work"), self.url])
                _until(lambda: any(w["state"] == "ALIVE" for w in _json(self.master_json_url())["workers"]), 60,
                       message="a worker registered with the master")
        except BaseException:
            self.stop()
            raise

    def _spawn(self, name: str, prefix: list[str], env: dict, args: list[str]) -> None:
        log = open(self.folder / f"{name}.log", "wb")  # noqa: SIM115 - closed when the process ends
        cmd = [*prefix, str(_spark_home() / "bin" / "spark-class"), *args]
        self.procs.append(subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT,
                                           stdin=subprocess.DEVNULL, start_new_session=True))
        log.close()

    def master_json_url(self) -> str:
        return f"http://{self.host}:{self.ui}/json/"

    def master(self) -> dict:
        return _json(self.master_json_url())

    def stop_master(self) -> None:
        _end(self.procs[0])

    def stop(self) -> None:
        for p in reversed(self.procs):
            _end(p)

    def log(self, name: str) -> str:
        path = self.folder / f"{name}.log"
        return path.read_text("utf-8", "replace") if path.exists() else ""


def _end(p: subprocess.Popen) -> None:
    """End a process group started here: SIGTERM, then SIGKILL after a few seconds."""
    if p.poll() is not None:
        try:
            os.killpg(p.pid, signal.SIGKILL)  # what it left (an executor) goes too
        except (ProcessLookupError, PermissionError):
            pass
        return
    for sig, wait in ((signal.SIGTERM, 8), (signal.SIGKILL, 10)):
        try:
            os.killpg(p.pid, sig)
        except ProcessLookupError:
            return
        try:
            p.wait(wait)
            os.killpg(p.pid, signal.SIGKILL)
        except subprocess.TimeoutExpired:
            continue
        except ProcessLookupError:
            return
        return


@pytest.fixture(scope="session")
def cluster(tmp_path_factory):
    c = Cluster(tmp_path_factory.mktemp("spark-cluster"))
    yield c
    c.stop()


def _conf_args(conf: dict[str, str]) -> list[str]:
    return [a for k, v in conf.items() for a in ("--spark-conf", f"{k}={v}")]


def _msfeas(*args: str, env: dict | None = None) -> list[str]:
    return [sys.executable, "-m", "pipeline", *args]


def _run_env(**extra) -> dict:
    env = {**_java_env(), "MSFEAS_TODAY": "2026-11-25", **extra}
    env.pop("MSFEAS_DEBUG", None)
    return env


def _spark_run(cluster_url: str, export: Path, out: Path, conf: dict[str, str], *extra: str) -> list[str]:
    return _msfeas("run", "--input", str(export), "--out", str(out), "--as-of", AS_OF, "--no-cache",
                   "--engine", "spark", "--spark-master", cluster_url, *_conf_args(conf), *extra)


def _assert_same_run(a: Path, b: Path) -> None:
    """tests/test_spark_run.py's comparison: the result files byte for byte, the summaries but for the
    engine, the timings and an empty `data_warnings` (a check the Spark engine does not make)."""
    from tests.test_spark_run import SAME_BYTES, VARIES

    names = sorted(p.relative_to(a).as_posix() for p in a.rglob("*") if p.is_file())
    assert names == sorted(p.relative_to(b).as_posix() for p in b.rglob("*") if p.is_file())
    compared = 0
    for name in names:
        if Path(name).name in SAME_BYTES or name.split("/")[-2:-1] in (["quarantine"], ["quality"]):
            assert (a / name).read_bytes() == (b / name).read_bytes(), name
            compared += 1
        elif Path(name).name == "summary.json":
            sa, sb = (json.loads((f / name).read_text()) for f in (a, b))
            for s in (sa, sb):
                for k in VARIES:
                    s.pop(k, None)
                if s.get("data_warnings") == []:
                    del s["data_warnings"]
            assert sa == sb, name
            compared += 1
    assert compared >= 5, names


def _apps(cluster: Cluster) -> list[dict]:
    m = cluster.master()
    return m.get("activeapps", []) + m.get("completedapps", [])


def test_sample_on_the_cluster_gives_local_results_and_runs_on_the_worker(cluster, tmp_path):
    before = {a["id"] for a in _apps(cluster)}
    t0 = time.monotonic()
    done = subprocess.run(_spark_run(cluster.url, SAMPLE, tmp_path / "spark", {**LOOPBACK_DRIVER, **SMALL}),
                          env=_run_env(), capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-3000:]
    print(f"sample on the cluster: {time.monotonic() - t0:.1f} s")
    polars = subprocess.run(_msfeas("run", "--input", str(SAMPLE), "--out", str(tmp_path / "polars"), "--as-of",
                                    AS_OF, "--no-cache"), env=_run_env(), capture_output=True, text=True,
                            timeout=300, cwd=ROOT)
    assert polars.returncode == 0, polars.stderr[-3000:]
    _assert_same_run(tmp_path / "spark", tmp_path / "polars")
    summary = json.loads((tmp_path / "spark" / "summary.json").read_text())
    assert summary["engine"] == "spark"
    # The application ran on the worker's executor: the master lists it, finished, with the one
    # worker core it was granted, and the worker launched an executor for it.
    apps = [a for a in _apps(cluster) if a["id"] not in before]
    assert [a["name"] for a in apps] == ["msfeas"], apps
    assert apps[0]["state"] == "FINISHED" and apps[0].get("cores", 1) >= 1, apps
    assert f"Asked to launch executor {apps[0]['id']}/" in cluster.log("worker")
    assert list((cluster.folder / "work" / apps[0]["id"]).iterdir()), "the executor's folder on the worker"


GOLDEN_SCRIPT = """
import datetime as dt, sys
from pathlib import Path
from pipeline.core.dialect import Dialect
from pipeline.core.vocabulary import load_vocabulary
from pipeline.criteria import load_trial
from pipeline.engines import evaluate
from pipeline.engines.spark.ingest import ingest, release
from pipeline.engines.spark.session import get_session, stop
master, conf, out = sys.argv[1], eval(sys.argv[2]), Path(sys.argv[3])
spark = get_session(master, conf)
print(spark.sparkContext.applicationId)
for i, folder in enumerate(sys.argv[4:]):
    folder = Path(folder)
    reg = ingest(spark, folder, Dialect(), load_vocabulary(), today=dt.date(2026, 11, 24), max_reject=1.0)
    as_of = dt.date.fromisoformat((folder / "as_of.txt").read_text().strip())
    evaluate(reg, load_trial(str(folder / "criterion.toml")), as_of, "spark").write_parquet(out / f"{i}.parquet")
    release(reg)
stop()
"""


def _golden_folders() -> list[Path]:
    golden = ROOT / "tests" / "golden"
    folders = []
    for name in GOLDEN_CASES:
        path = golden / name
        folders.append(path if (path / "criterion.toml").exists() else sorted(p for p in path.iterdir()
                                                                             if p.is_dir())[0])
    return folders


def test_golden_cases_on_the_cluster_give_local_results(cluster, tmp_path):
    import datetime as dt

    import polars as pl

    from pipeline.core.dialect import Dialect
    from pipeline.core.vocabulary import load_vocabulary
    from pipeline.criteria import load_trial
    from pipeline.engines import evaluate
    from pipeline.inputs.ingest import ingest

    folders = _golden_folders()
    t0 = time.monotonic()
    done = subprocess.run([sys.executable, "-c", GOLDEN_SCRIPT, cluster.url, repr({**LOOPBACK_DRIVER, **SMALL}),
                           str(tmp_path), *map(str, folders)], env=_run_env(), capture_output=True, text=True,
                          timeout=300, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-3000:]
    print(f"{len(folders)} golden cases on the cluster: {time.monotonic() - t0:.1f} s")
    app = done.stdout.split()[0]
    assert app.startswith("app-"), done.stdout  # a standalone cluster's application, not local-...
    assert any(a["id"] == app for a in _apps(cluster))
    for i, folder in enumerate(folders):
        reg = ingest(folder, Dialect(), load_vocabulary(), today=dt.date(2026, 11, 24), max_reject=1.0)
        as_of = dt.date.fromisoformat((folder / "as_of.txt").read_text().strip())
        want = evaluate(reg, load_trial(str(folder / "criterion.toml")), as_of, "polars")
        got = pl.read_parquet(tmp_path / f"{i}.parquet")
        assert got.equals(want), f"{folder.relative_to(ROOT)}:\n{got}\n{want}"
