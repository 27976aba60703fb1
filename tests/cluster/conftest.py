"""The cluster test's machinery: an MLflow server, a single-node SLURM with accounting and a Ray
head, each started once for the session in its own process session and stopped by PID; the
grids launched against them (``Sweep``).

Everything listens on 127.0.0.1 inside the private network namespace ``tests/cluster/run.sh``
creates (slurmdbd has no option to listen on one address), and lives in one folder under /tmp,
removed at the end unless a test failed or ``MACPO_CLUSTER_KEEP=1``.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
BIN = Path(sys.executable).parent
#: seconds a daemon has to come up
START_TIMEOUT_S = 120


def pytest_collection_modifyitems(config, items):
    """Cluster tests run only when asked for by marker (``-m cluster``, as ``make test-cluster`` does)."""
    if "cluster" in (config.getoption("markexpr") or ""):
        return
    selected = [item for item in items if item.get_closest_marker("cluster") is None]
    if len(selected) < len(items):
        config.hook.pytest_deselected(items=[item for item in items if item.get_closest_marker("cluster")])
        items[:] = selected


# ---- processes ----------------------------------------------------------------------------
def session_members(leader: int) -> list[int]:
    """Live processes of the session whose leader is ``leader`` (a daemon and what it started)."""
    members = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path("/proc", entry, "stat").read_text()
        except OSError:
            continue
        state, _ppid, _pgrp, sid = stat.rsplit(")", 1)[1].split()[:4]
        if int(sid) == leader and state != "Z":
            members.append(int(entry))
    return members


def stop_session(leader: int, grace_s: float = 10.0) -> None:
    """SIGTERM to every process of the session, SIGKILL to those left after ``grace_s`` (Ray's GCS
    ignores SIGTERM)."""
    for signum, wait_s in ((signal.SIGTERM, grace_s), (signal.SIGKILL, 5.0)):
        for pid in session_members(leader):
            try:
                os.kill(pid, signum)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            if not session_members(leader):
                return
            time.sleep(0.2)


def tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return f"({path} unreadable)"


@dataclass
class Daemon:
    name: str
    proc: subprocess.Popen
    log: Path
    grace_s: float  # between SIGTERM and SIGKILL when stopped

    @classmethod
    def start(cls, name: str, cmd: list[str], log: Path, env: dict, grace_s: float = 10.0) -> Daemon:
        with open(log, "w") as out:
            proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    env=env, cwd=log.parent, start_new_session=True)  # fmt: skip
        return cls(name, proc, log, grace_s)

    def wait_until(self, ready: Callable[[], bool], timeout_s: float = START_TIMEOUT_S) -> None:
        deadline = time.monotonic() + timeout_s
        while not ready():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                why = f"exited with code {self.proc.returncode}" if self.proc.poll() is not None else "timed out"
                raise RuntimeError(f"{self.name} did not come up ({why}); {self.log}:\n{tail(self.log)}")
            time.sleep(0.5)

    def stop(self) -> None:
        stop_session(self.proc.pid, self.grace_s)
        self.proc.wait(timeout=10)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


def in_private_network() -> bool:
    """Whether this process sees no network interface but loopback (a fresh network namespace)."""
    return {name for _, name in socket.if_nameindex()} <= {"lo"}


# ---- the cluster --------------------------------------------------------------------------
@dataclass
class Cluster:
    dir: Path
    tracking_uri: str
    ray_address: str
    env: dict[str, str] = field(default_factory=dict)  # environment of a sweep: SLURM_CONF, Ray's switches

    def slurm(self, *args: str, check: bool = True) -> str:
        """A SLURM client command (squeue, sacct, scancel ...) against this cluster; its stdout."""
        res = subprocess.run(list(args), env=self.env, capture_output=True, text=True, timeout=60)
        if check and res.returncode != 0:
            raise RuntimeError(f"{' '.join(args)} failed: {res.stderr}")
        return res.stdout


@pytest.fixture(scope="session")
def cluster(request):
    if not in_private_network():
        pytest.fail("the cluster test starts servers: run it in a private network namespace, through "
                    "`make test-cluster` (tests/cluster/run.sh)", pytrace=False)  # fmt: skip
    root = Path(tempfile.mkdtemp(prefix="macpo-cluster-", dir="/tmp"))
    root.chmod(0o755)  # slurm_up.sh's munged runs as the munge user
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1", RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER="0")
    env.pop("HYDRA_FULL_ERROR", None)
    daemons: list[Daemon] = []
    slurm_dir = root / "slurm"
    passed = False
    try:
        # MLflow starts in the background while slurm_up.sh runs; Ray once SLURM holds its ports,
        # with its one fixed default port (the dashboard agent's, 52365) chosen free
        mlflow_port = free_port()
        (root / "mlflow").mkdir()
        mlflow = Daemon.start("mlflow server", [
            sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(mlflow_port),
            "--backend-store-uri", f"sqlite:///{root / 'mlflow' / 'mlflow.db'}",
            "--artifacts-destination", str(root / "mlflow" / "artifacts"), "--workers", "1",
        ], root / "mlflow" / "server.log", env)  # fmt: skip
        daemons.append(mlflow)
        up = subprocess.run([str(HERE / "slurm_up.sh"), str(slurm_dir)], env=dict(env, SLURM_CPUS=str(
            2 * os.cpu_count())), capture_output=True, text=True, timeout=START_TIMEOUT_S)  # fmt: skip
        if up.returncode != 0:
            raise RuntimeError(f"slurm_up.sh failed:\n{up.stdout}\n{up.stderr}")
        ray_port = free_port()
        (root / "ray").mkdir()
        ray = Daemon.start("ray head", [
            str(BIN / "ray"), "start", "--head", "--block", "--node-ip-address=127.0.0.1", f"--port={ray_port}",
            f"--ray-client-server-port={free_port()}", f"--dashboard-agent-listen-port={free_port()}",
            f"--num-cpus={os.cpu_count()}", "--include-dashboard=false", "--disable-usage-stats",
            f"--temp-dir={root / 'ray'}",
        ], root / "ray" / "head.log", env, grace_s=2)  # fmt: skip
        # (grace_s: Ray's GCS ignores SIGTERM)
        daemons.append(ray)
        env["SLURM_CONF"] = str(slurm_dir / "slurm.conf")
        uri = f"http://127.0.0.1:{mlflow_port}"
        mlflow.wait_until(lambda: answers(f"{uri}/health"))
        ray.wait_until(lambda: "Ray runtime started" in ray.log.read_text(errors="replace"))
        yield Cluster(root, uri, f"127.0.0.1:{ray_port}", env)
        passed = not request.session.testsfailed
    finally:  # all at once
        down = subprocess.Popen([str(HERE / "slurm_down.sh"), str(slurm_dir)])
        with ThreadPoolExecutor() as pool:
            list(pool.map(Daemon.stop, daemons))
        down.wait(timeout=120)
        if not passed or os.environ.get("MACPO_CLUSTER_KEEP") == "1":
            print(f"\ncluster test files (logs, sweeps, stores): {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)


# ---- sweeps -------------------------------------------------------------------------------
@dataclass
class Sweep:
    """One ``python -m macpo.train -m ...`` running in the background against the cluster."""

    name: str
    dir: Path  # hydra.sweep.dir (submitit's job folders are in .submitit/)
    proc: subprocess.Popen
    log: Path

    def wait(self, timeout_s: float) -> int:
        try:
            return self.proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            pytest.fail(f"sweep {self.name} still running after {timeout_s:.0f} s\n{self.report()}", pytrace=False)

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def job_ids(self) -> list[str]:
        """SLURM ids of the submitted runs (``<id>``, or ``<array id>_<task>`` in an array)."""
        return sorted(p.parent.name for p in self.dir.glob(".submitit/*/*_submitted.pkl"))

    def job_log(self, job_id: str) -> str:
        """A SLURM job's stdout and stderr (every segment: submitit appends after a requeue)."""
        folder = self.dir / ".submitit" / job_id
        return "\n".join(p.read_text(errors="replace") for p in sorted(folder.glob("*_log.*")))

    def report(self) -> str:
        """The sweep's output and each job's error stream (their tails): what a failure shows."""
        parts = [f"--- sweep {self.name}: {self.log} (exit code {self.proc.poll()})", tail(self.log, 60)]
        for job_id in self.job_ids():
            for path in sorted((self.dir / ".submitit" / job_id).glob("*_log.err")):
                parts += [f"--- job {job_id}: {path}", tail(path, 40)]
        return "\n".join(parts)

    def stop(self) -> None:
        if self.proc.poll() is None:
            stop_session(self.proc.pid, grace_s=5)
            self.proc.wait(timeout=10)


def start_sweep(cluster: Cluster, name: str, overrides: list[str]) -> Sweep:
    """``python -m macpo.train -m <overrides>`` logging to the cluster's MLflow server, experiment ``name``."""
    folder = cluster.dir / "sweeps" / name
    folder.mkdir(parents=True)
    cmd = [sys.executable, "-m", "macpo.train", "-m", *overrides, "progress_bar=false",
           f"logger.tracking_uri={cluster.tracking_uri}", f"logger.experiment={name}",
           f"checkpoint.dir={cluster.dir / 'checkpoints'}", f"hydra.sweep.dir={folder}"]  # fmt: skip
    log = cluster.dir / "sweeps" / f"{name}.log"
    with open(log, "w") as out:
        out.write(" ".join(cmd) + "\n")
        out.flush()
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=REPO,
                                env=cluster.env, start_new_session=True)  # fmt: skip
    return Sweep(name, folder, proc, log)
