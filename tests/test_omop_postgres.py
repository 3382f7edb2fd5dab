"""OMOP from a real PostgreSQL server: a throw-away cluster (initdb / pg_ctl, as the `postgres` user when run
as root) on a free localhost port, loaded with a synthetic OMOP CDM, read by msfeas, and stopped.

Skipped, saying why, only when the PostgreSQL server binaries are absent (`make test` installs Debian's
postgresql package when missing).
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from pipeline import synth
from pipeline.inputs.omop import writer
from tests.conftest import ROOT
from tests.omop_helpers import AS_OF, csv_registry, differences, omop_registry, projected, statuses, write_csv

PASSWORD = "Pw-9f3e1c7a-omop"  # the test cluster's; must appear in no output


def _bin(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    hits = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return hits[-1] if hits else None


INITDB, PG_CTL = _bin("initdb"), _bin("pg_ctl")
pytestmark = [pytest.mark.skipif(not (INITDB and PG_CTL),
                                 reason="PostgreSQL server binaries (initdb, pg_ctl) not found: install Debian's "
                                        "postgresql package (make test does)"),
              pytest.mark.xdist_group("postgres")]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _as_owner(args: list[str], root: bool) -> subprocess.CompletedProcess:
    if root:
        cmd = " ".join(f"'{a}'" for a in args)
        args = ["su", "postgres", "-s", "/bin/sh", "-c", cmd]
    return subprocess.run(args, capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def cluster():
    root = os.geteuid() == 0
    base = Path(tempfile.mkdtemp(prefix="msfeas-pg-"))
    data, pwfile = base / "data", base / "pw"
    pwfile.write_text(PASSWORD + "\n")
    if root:
        shutil.chown(base, "postgres")
        shutil.chown(pwfile, "postgres")
    base.chmod(0o700)
    port = _free_port()
    r = _as_owner([INITDB, "-D", str(data), "-U", "postgres", f"--pwfile={pwfile}", "--auth=scram-sha-256",
                   "-E", "UTF8"], root)
    assert r.returncode == 0, r.stderr
    r = _as_owner([PG_CTL, "-D", str(data), "-o", f"-p {port} -k {base} -c listen_addresses=localhost",
                   "-l", str(base / "log"), "-w", "start"], root)
    assert r.returncode == 0, r.stderr + (base / "log").read_text()
    try:
        yield {"url": f"postgresql://postgres@localhost:{port}/postgres", "port": port, "base": base}
    finally:
        _as_owner([PG_CTL, "-D", str(data), "-m", "fast", "-w", "stop"], root)
        shutil.rmtree(base, ignore_errors=True)


def _connect(url: str):
    import adbc_driver_postgresql.dbapi as dbapi

    return dbapi.connect(url.replace("postgres@", f"postgres:{PASSWORD}@"))


@pytest.fixture(scope="module")
def loaded(cluster, tmp_path_factory):
    """A synthetic export of 200 patients as OMOP in schema `cdm`, its vocabulary in schema `vocab`."""
    folder = tmp_path_factory.mktemp("pg")
    tables = synth.generate(200, 17)
    proj = write_csv(projected(tables), folder / "projected")
    om = writer.to_omop(tables)
    conn = _connect(cluster["url"])
    cur = conn.cursor()
    cur.execute("CREATE SCHEMA cdm")
    cur.execute("CREATE SCHEMA vocab")
    for name, frame in om.items():
        cur.adbc_ingest(name, frame.to_arrow(), mode="create",
                        db_schema_name="vocab" if name in ("concept", "concept_ancestor") else "cdm")
    conn.commit()
    cur.close()
    conn.close()
    return proj


@pytest.fixture
def pgpass(monkeypatch):
    monkeypatch.setenv("PGPASSWORD", PASSWORD)


def _fingerprint(url: str) -> dict:
    """Row count and a checksum of every table of every schema of the database."""
    conn = _connect(url)
    cur = conn.cursor()
    cur.execute("SELECT table_schema, table_name FROM information_schema.tables WHERE table_schema IN ('cdm', 'vocab')")
    out = {}
    for schema, name in cur.fetchall():
        cur.execute(f'SELECT count(*), md5(coalesce(string_agg(t::text, \'|\' ORDER BY t::text), \'\')) '
                    f'FROM "{schema}"."{name}" t')
        out[f"{schema}.{name}"] = cur.fetchone()
    cur.close()
    conn.close()
    return out


@pytest.mark.parametrize("engine", ["polars", "duckdb"])
def test_postgres_round_trip_and_read_only(cluster, loaded, pgpass, engine):
    before = _fingerprint(cluster["url"])
    got = statuses(omop_registry(cluster["url"], cdm_schema="cdm", vocab_schema="vocab"), engine)
    assert differences(statuses(csv_registry(loaded), engine), got) == []
    assert _fingerprint(cluster["url"]) == before


def test_postgres_pushes_filters_down(cluster, loaded, pgpass):
    """Only the mapped measurement rows cross the wire: the accounting counts the others from an aggregate."""
    reg = omop_registry(cluster["url"], cdm_schema="cdm", vocab_schema="vocab")
    m = reg.source["omop"]["tables"]["measurement"]
    assert m["passed_over"]["concept not in the profile"] > 0
    assert reg.source["omop"]["notes"][0].startswith("concept sets hold their descendants")
    assert reg.source["vocab_schema"] == "vocab" and reg.source["cdm_source"]["cdm_version"] == "5.4"


def _cli(args: list[str], env: dict) -> subprocess.CompletedProcess:
    base = {"MSFEAS_TODAY": "2026-11-24", "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "MSFEAS_CACHE": tempfile.mkdtemp(prefix="msfeas-cache-"), "HOME": env.pop("HOME", "/nonexistent")}
    return subprocess.run([sys.executable, "-m", "pipeline.cli", *args], capture_output=True, text=True,
                          env={**base, **env}, cwd=ROOT)


def test_postgres_cli_run_no_secret_anywhere(cluster, loaded, tmp_path):
    """A run with the password from ~/.pgpass: complete, and the password in no file of the run folder."""
    home = tmp_path / "home"
    home.mkdir()
    (home / ".pgpass").write_text(f"localhost:{cluster['port']}:*:postgres:{PASSWORD}\n")
    (home / ".pgpass").chmod(0o600)
    out = tmp_path / "run"
    r = _cli(["run", "--input", cluster["url"], "--out", str(out), "--cdm-schema", "cdm", "--vocab-schema", "vocab",
              "--as-of", AS_OF.isoformat(), "--trial", "all"], {"HOME": str(home)})
    assert r.returncode == 0, r.stderr
    assert PASSWORD not in r.stdout + r.stderr
    files = [p for p in out.rglob("*") if p.is_file()]
    assert len(files) > 5
    for p in files:
        assert PASSWORD.encode() not in p.read_bytes(), p
    import json
    assert json.loads((out / "summary.json").read_text())["source"]["kind"] == "postgresql"


@pytest.mark.parametrize("case, code, words", [
    ("no_schema", 1, ["schema 'nowhere' holds no tables"]),
    ("refused", 1, ["cannot connect"]),
    ("wrong_password", 1, ["cannot connect"]),
    ("password_in_url", 2, ["holds a password"]),
])
def test_postgres_bad_input(cluster, loaded, tmp_path, case, code, words):
    url, env, extra = cluster["url"], {"PGPASSWORD": PASSWORD}, []
    if case == "no_schema":
        extra = ["--cdm-schema", "nowhere"]
    elif case == "refused":
        url = f"postgresql://postgres@localhost:{_free_port()}/postgres"
    elif case == "wrong_password":
        env = {"PGPASSWORD": "not-" + PASSWORD}
    else:
        url = url.replace("postgres@", f"postgres:{PASSWORD}@")
    out = tmp_path / "run"
    r = _cli(["run", "--input", url, "--out", str(out), *extra], env)
    assert r.returncode == code, r.stderr
    lines = r.stderr.strip().splitlines()
    assert all(w in lines[0] for w in words) and "Traceback" not in r.stderr, r.stderr
    assert PASSWORD not in r.stderr + r.stdout
    assert not out.exists()

