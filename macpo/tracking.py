"""MLflow store set-up: an embedded SQLite store under ``outputs/`` unless a URI is given.

Two processes creating a fresh SQLite store at once race on its schema migration, so the store
and experiment are created under a file lock before any run starts (the multirun callback in
``macpo.hydra_callbacks`` does it once in the launching process; each run repeats it, cheaply).
"""

from __future__ import annotations

import os
from pathlib import Path

from filelock import FileLock

SQLITE_PREFIX = "sqlite:///"


def resolve_tracking_uri(uri: str, base_dir: str | os.PathLike | None = None) -> str:
    """Make a relative SQLite path absolute (against ``base_dir``, default cwd) and create its folder."""
    if uri.startswith(SQLITE_PREFIX):
        path = Path(uri[len(SQLITE_PREFIX):])
        if not path.is_absolute():
            path = Path(base_dir or os.getcwd()) / path
        path.parent.mkdir(parents=True, exist_ok=True)
        return SQLITE_PREFIX + str(path.resolve())
    if "://" not in uri:  # a bare folder: MLflow's file store is refused by default now
        raise ValueError(
            f"logger.tracking_uri={uri!r}: give a database URI (sqlite:///path.db) or a server (http://host:5000)"
        )
    return uri


def artifact_root(uri: str) -> str | None:
    """Artifacts of a SQLite store live next to the database file, not in the cwd."""
    if uri.startswith(SQLITE_PREFIX):
        return str(Path(uri[len(SQLITE_PREFIX):]).parent / "mlartifacts")
    return None


def prepare_store(uri: str, experiment: str) -> str:
    """Create the store (schema) and the experiment if needed; returns the experiment id."""
    from mlflow.tracking import MlflowClient

    lock_path = None
    if uri.startswith(SQLITE_PREFIX):
        lock_path = uri[len(SQLITE_PREFIX):] + ".lock"
    lock = FileLock(lock_path) if lock_path else None
    if lock:
        lock.acquire(timeout=300)
    try:
        client = MlflowClient(tracking_uri=uri)
        exp = client.get_experiment_by_name(experiment)
        if exp is not None and exp.lifecycle_stage == "deleted":
            client.restore_experiment(exp.experiment_id)
        if exp is None:
            art = artifact_root(uri)
            return client.create_experiment(experiment, artifact_location=f"{art}/{experiment}" if art else None)
        return exp.experiment_id
    finally:
        if lock:
            lock.release()
