"""MLflow store access: set-up, run look-up, and a logger that continues an interrupted run.

The default store is an embedded SQLite database under ``outputs/`` unless a URI is given.

Nothing here creates a file until ``prepare_store``: ``check_tracking_uri`` (a run, before any
side effect) and ``require_existing_store`` (read-only commands) only look, both through
``inspect_store``, which opens the store read-only: an in-memory database, a file that is not an
MLflow store, a missing database driver and a database or server that does not answer are
refused in one line. Two processes
creating a fresh SQLite store at once race on its schema migration, so ``prepare_store`` creates
the store and experiment under a file lock beside the database.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path

from filelock import FileLock
from pytorch_lightning.loggers import MLFlowLogger

from macpo.config.checks import path_problem

SQLITE_PREFIX = "sqlite:///"


#: URI schemes MLflow can track to: a database (SQLAlchemy) or a tracking server
DATABASE_SCHEMES = ("sqlite", "postgresql", "mysql", "mssql")
SERVER_SCHEMES = ("http", "https")
#: seconds a tracking server has to answer the first request before the run is refused
SERVER_PROBE_TIMEOUT_S = 5
#: the tables every MLflow database holds
MLFLOW_TABLES = {"experiments", "runs", "alembic_version"}
#: a database driver SQLAlchemy names → the package that provides it
DRIVER_PACKAGES = {"psycopg2": "psycopg2-binary", "psycopg": "psycopg[binary]", "MySQLdb": "mysqlclient",
                   "pymysql": "pymysql", "pyodbc": "pyodbc", "pymssql": "pymssql"}  # fmt: skip
DEFAULT_PORTS = {"postgresql": 5432, "mysql": 3306, "mssql": 1433}


class StoreError(ValueError):
    """A tracking URI that cannot be used (bad scheme, a folder, no server, no store)."""


def resolve_tracking_uri(uri: str, base_dir: str | os.PathLike | None = None) -> str:
    """Make a relative SQLite path absolute (against ``base_dir``, default cwd). Creates nothing.

    A SQLite database that lives only in memory (``sqlite://``, ``:memory:``, ``mode=memory``) is
    refused: the run would be logged, then lost when the process ends.
    """
    uri = str(uri).strip()
    if uri_scheme(uri) == "sqlite" and (not uri.startswith(SQLITE_PREFIX) or ":memory:" in uri or "mode=memory" in uri):
        raise StoreError(f"logger.tracking_uri={uri!r}: an in-memory database loses the run when the process ends; "
                         "name a file: sqlite:///path/to/mlflow.db")  # fmt: skip
    if uri.startswith(SQLITE_PREFIX):
        path = Path(uri[len(SQLITE_PREFIX):])
        if not path.is_absolute():
            path = Path(base_dir or os.getcwd()) / path
        return SQLITE_PREFIX + str(path.resolve())
    if "://" not in uri:  # a bare folder: MLflow's file store is refused by default now
        raise StoreError(
            f"logger.tracking_uri={uri!r}: give a database URI (sqlite:///path.db) or a server (http://host:5000)"
        )
    return uri


def uri_scheme(uri: str) -> str:
    return uri.split("://", 1)[0].split("+", 1)[0].lower()


def sqlite_path(uri: str) -> Path | None:
    return Path(uri[len(SQLITE_PREFIX):]) if uri.startswith(SQLITE_PREFIX) else None


def check_tracking_uri(uri: str, base_dir: str | os.PathLike | None = None, probe_server: bool = True) -> str:
    """The resolved URI if a run can write to it; ``StoreError`` naming it otherwise. Creates nothing.

    SQLite: the path is not a folder, its nearest existing parent is a writable folder, and a file
    already there is an MLflow store (or empty). With ``probe_server`` (the run logs to the store):
    ``inspect_store``. ``probe_server=False``: only the URI's form and the SQLite path are checked.
    """
    resolved = resolve_tracking_uri(uri, base_dir)
    scheme = uri_scheme(resolved)
    if scheme not in DATABASE_SCHEMES + SERVER_SCHEMES:
        raise StoreError(f"logger.tracking_uri={uri!r}: unknown scheme {scheme!r}; use one of "
                         + ", ".join(s + "://" for s in DATABASE_SCHEMES + SERVER_SCHEMES))  # fmt: skip
    path = sqlite_path(resolved)
    if path is not None:
        if path_problem(path):
            raise StoreError(f"logger.tracking_uri={uri[:60]!r}...: {path_problem(path)}")
        if path.is_dir():
            raise StoreError(f"logger.tracking_uri={uri!r}: {path} is a folder; name a database file in it")
        parent = next(p for p in path.parents if p.exists())
        if not parent.is_dir():
            raise StoreError(f"logger.tracking_uri={uri!r}: {parent} is a file, so {path} cannot be created")
        if not os.access(parent, os.W_OK | os.X_OK):
            raise StoreError(f"logger.tracking_uri={uri!r}: {parent} is not writable")
    if probe_server:
        inspect_store(f"logger.tracking_uri={uri!r}", resolved, must_exist=False)
    return resolved


def inspect_store(label: str, resolved: str, must_exist: bool) -> None:
    """Open the store ``resolved`` read-only, creating nothing; ``StoreError`` when it cannot hold
    runs (the message starts with ``label``, the key or option that gave the URI). The one check
    of a store, for runs and read-only commands alike.

    SQLite: an existing file must be a SQLite database with MLflow's tables (a run may also start
    one in an empty file or a new path; ``must_exist``: read-only commands need the tables).
    Other databases: the driver is installed, the host answers, and a database holding tables
    holds MLflow's. A server answers one request (``probe_server_store``).
    """
    path = sqlite_path(resolved)
    if path is not None:
        if not path.exists():
            if must_exist:
                raise StoreError(f"{label}: no MLflow store at {path}")
            return
        if not path.is_file():
            raise StoreError(f"{label}: {path} is not a regular file")
        if path.stat().st_size == 0 and not must_exist:
            return  # MLflow writes its schema into it
        problem = _sqlite_problem(path)
        if problem:
            raise StoreError(f"{label}: {path} {problem}")
        if not must_exist and not os.access(path, os.W_OK):
            raise StoreError(f"{label}: {path} is not writable")
    elif uri_scheme(resolved) in SERVER_SCHEMES:
        probe_server_store(resolved)
    else:
        _inspect_database(label, resolved, must_exist)


def _sqlite_problem(path: Path) -> str | None:
    import sqlite3

    try:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
            tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    except sqlite3.Error as error:
        return f"is not an MLflow store (SQLite cannot read it: {error})"
    if not MLFLOW_TABLES <= tables:
        return "is not an MLflow store (no MLflow tables in it)"
    return None


def _inspect_database(label: str, resolved: str, must_exist: bool) -> None:
    """A SQLAlchemy database other than SQLite: its driver, its host, its tables."""
    import socket

    import sqlalchemy as sa

    try:
        url = sa.engine.make_url(resolved)
        url.get_dialect().import_dbapi()
    except ImportError as error:
        name = getattr(error, "name", None) or str(error)
        package = DRIVER_PACKAGES.get(name, name)
        raise StoreError(f"{label}: its database driver {name} is not installed "
                         f"(pip install {package})") from None  # fmt: skip
    except Exception as error:  # an unknown dialect or driver, a malformed URL
        raise StoreError(f"{label}: {_one_line(error)}") from None
    if url.host:  # a socket path or a local file needs no probe
        port = url.port or DEFAULT_PORTS.get(uri_scheme(resolved), 0)
        try:
            socket.create_connection((url.host, port), timeout=SERVER_PROBE_TIMEOUT_S).close()
        except OSError as error:
            raise StoreError(f"{label}: no database answers at {url.host}:{port} "
                             f"({_one_line(error)})") from None  # fmt: skip
    engine = sa.create_engine(resolved)
    try:
        with engine.connect() as connection:
            tables = set(sa.inspect(connection).get_table_names())
    except Exception as error:  # authentication, no such database, ...
        raise StoreError(f"{label}: cannot open the database ({_one_line(error)})") from None
    finally:
        engine.dispose()
    if (tables or must_exist) and not MLFLOW_TABLES <= tables:
        raise StoreError(f"{label}: the database is not an MLflow store (no MLflow tables in it)")


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split())[:200] or type(error).__name__


def probe_server_store(uri: str, timeout_s: int = SERVER_PROBE_TIMEOUT_S) -> None:
    """One request to an MLflow server with MLflow's retries off and a short timeout."""
    from mlflow.environment_variables import MLFLOW_HTTP_REQUEST_MAX_RETRIES, MLFLOW_HTTP_REQUEST_TIMEOUT
    from mlflow.tracking import MlflowClient

    saved = {name: os.environ.get(name) for name in (MLFLOW_HTTP_REQUEST_MAX_RETRIES.name,
                                                      MLFLOW_HTTP_REQUEST_TIMEOUT.name)}  # fmt: skip
    os.environ[MLFLOW_HTTP_REQUEST_MAX_RETRIES.name] = "0"
    os.environ[MLFLOW_HTTP_REQUEST_TIMEOUT.name] = str(int(timeout_s))
    try:
        MlflowClient(tracking_uri=uri).search_experiments(max_results=1)
    except Exception as error:  # connection refused, timeout, HTTP error: all mean "cannot track here"
        reason = " ".join(str(error).split())[:200]
        raise StoreError(
            f"logger.tracking_uri={uri!r}: no MLflow server answered within {timeout_s} s ({reason})"
        ) from None
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def require_existing_store(uri: str, base_dir: str | os.PathLike | None = None) -> str:
    """For read-only commands: the resolved URI of a store that exists; ``StoreError`` otherwise.

    Opening a missing SQLite file with MLflow would create it (and an empty file would get
    MLflow's schema), so a SQLite store is first checked read-only: the file exists and holds
    MLflow's tables. A server must answer (``probe_server_store``).
    """
    resolved = resolve_tracking_uri(uri, base_dir)
    inspect_store(f"tracking URI {uri!r}", resolved, must_exist=True)
    return resolved


def artifact_root(uri: str) -> str | None:
    """Artifacts of a SQLite store live next to the database file, not in the cwd."""
    if uri.startswith(SQLITE_PREFIX):
        return str(Path(uri[len(SQLITE_PREFIX):]).parent / "mlartifacts")
    return None


def prepare_store(uri: str, experiment: str) -> str:
    """Create the store (its folder, schema) and the experiment if needed; returns the experiment id.

    The first side effect of a run: called only once the config is validated. Runs starting at
    once on a tracking server (no file lock there) may both find no experiment: the one whose
    creation is refused as existing uses the other's."""
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    path = sqlite_path(uri)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(path) + ".lock") if path is not None else None
    if lock:
        lock.acquire(timeout=300)
    try:
        client = MlflowClient(tracking_uri=uri)
        exp = client.get_experiment_by_name(experiment)
        if exp is not None and exp.lifecycle_stage == "deleted":
            client.restore_experiment(exp.experiment_id)
        if exp is None:
            art = artifact_root(uri)
            try:
                return client.create_experiment(experiment, artifact_location=f"{art}/{experiment}" if art else None)
            except MlflowException as error:  # a tracking server: another run of the grid created it first
                if error.error_code != "RESOURCE_ALREADY_EXISTS":
                    raise
                exp = client.get_experiment_by_name(experiment)
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
    CPU the replayed values equal the dropped ones (``tests/runs/test_resume.py``); on CUDA they may
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
            with self._writing():
                super().log_metrics(fresh, step=step)

    def log_hyperparams(self, params) -> None:
        with self._writing():
            super().log_hyperparams(params)

    @contextmanager
    def _writing(self):
        """A write the store refuses (a full disk, a lost server) ends the run as ``WriteFailed``."""
        from macpo.runs import WriteFailed

        try:
            yield
        except Exception as error:
            raise WriteFailed(f"to the MLflow store {self._tracking_uri}", error) from error
