"""MLflow store access: set-up, run look-up, and a logger that continues an interrupted run.

The default store is an embedded SQLite database under ``outputs/`` unless a URI is given.

Two processes creating a fresh SQLite store at once race on its schema migration, so the store
and experiment are created under a file lock before any run starts (the multirun callback in
``macpo.hydra_callbacks`` does it once in the launching process; each run repeats it, cheaply).
"""

from __future__ import annotations

import os
from pathlib import Path

from filelock import FileLock
from pytorch_lightning.loggers import MLFlowLogger

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


def find_run(client, experiment_id: str, tag: str, value: str):
    """The run of ``experiment_id`` whose tag ``tag`` equals ``value`` (active runs only), or None.

    Should several exist (two stores merged, a race between machines), a FINISHED one wins, then
    the most recently started.
    """
    from mlflow.entities import ViewType

    runs = client.search_runs(
        [experiment_id], filter_string=f"tags.`{tag}` = '{value}'", run_view_type=ViewType.ACTIVE_ONLY,
        order_by=["attributes.start_time DESC"],
    )  # fmt: skip
    if not runs:
        return None
    finished = [r for r in runs if r.info.status == "FINISHED"]
    return (finished or runs)[0]


def search_all_runs(client, experiment_id: str, filter_string: str) -> list:
    """Every active run matching ``filter_string`` (following MLflow's pages)."""
    from mlflow.entities import ViewType

    runs, token = [], None
    while True:
        page = client.search_runs([experiment_id], filter_string=filter_string, run_view_type=ViewType.ACTIVE_ONLY,
                                  max_results=1000, page_token=token)  # fmt: skip
        runs.extend(page)
        token = page.token
        if not token:
            return runs


def last_logged_steps(client, run_id: str) -> dict[str, int]:
    """metric key → the largest step the run holds for it."""
    run = client.get_run(run_id)
    steps = {}
    for key in run.data.metrics:
        history = client.get_metric_history(run_id, key)
        if history:
            steps[key] = max(m.step for m in history)
    return steps


class ResumableMLFlowLogger(MLFlowLogger):
    """Lightning's MLFlowLogger that can continue an existing run without duplicating steps.

    Given ``run_id`` of an unfinished run, it marks the run RUNNING again and drops every metric
    value at a step the run already holds for that metric. A run resumed from its last checkpoint
    replays the steps between that checkpoint and the moment it died; the first attempt logged
    those, so the stored curve keeps them and continues after them: strictly increasing steps, no
    duplicate, no gap wider than one log interval (the replayed flushes keep their spacing). On
    CPU the replayed values equal the dropped ones (``tests/test_resume.py``); on CUDA they may
    differ in the last digits.
    """

    def __init__(self, *args, run_id: str | None = None, **kwargs):
        super().__init__(*args, run_id=run_id, **kwargs)
        self.continued = run_id is not None
        self.logged_until: dict[str, int] = {}
        if self.continued:
            self.logged_until = last_logged_steps(self._mlflow_client, run_id)
            self._mlflow_client.update_run(run_id, status="RUNNING")

    def log_metrics(self, metrics, step=None) -> None:
        step = int(step or 0)
        fresh = {k: v for k, v in metrics.items() if step > self.logged_until.get(k, -1)}
        if fresh:
            super().log_metrics(fresh, step=step)
