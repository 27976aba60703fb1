"""Read training runs back from an MLflow store into one tidy pandas DataFrame.

One row per logged metric point: ``run_id, env, algo, sampler, seed, punishment, sweep, status,
t_max, step, metric, value`` (``step`` is environment steps). Run metadata comes from the tags
the training code sets (never from the flattened Hydra params).

How metric histories are read. MLflow's public API has no bulk history call, so the minimum is
one ``MlflowClient.get_metric_history`` request per run x metric. For a SQL-backed store
(``sqlite://``, ``postgresql://``, ``mysql://``, ...) we instead read MLflow's ``metrics`` table
with one SQL query per chunk of runs. Measured here (``load_runs`` end to end, one process,
median of 3) on a sqlite store of 96 runs x 6 metrics x 200 points (115k points): 2.2 s through
``get_metric_history`` (576 requests), 0.7 s with the SQL query, 0.18 s from the cache; the API
cost grows with runs x metrics, and each request is a network round trip on a server. So
``method="auto"`` uses SQL for database URIs and the public API (threaded for HTTP servers)
for everything else. The run list and tags always come from ``MlflowClient.search_runs``.

Caching. Histories are cached per run as parquet under ``cache_dir`` (default: ``.analysis_cache``
beside a SQLite store's database, so a command writes nothing outside its output and the
store's folder; no cache for other stores unless a folder is given), keyed by the run's last
update: on SQL stores the number of metric points and the newest point's timestamp; through
the API, the run's latest metric values with their steps and timestamps. Status and end time
are part of the key too. A run whose key changed (a new point was logged) is read again; the
others come from disk.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import os
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
import sqlalchemy as sa
from mlflow.entities import ViewType
from mlflow.tracking import MlflowClient
from tqdm import tqdm

DEFAULT_TRACKING_URI = "sqlite:///outputs/mlflow.db"
DEFAULT_EXPERIMENT = "macpo"
#: run states a figure or export reads unless told otherwise (`--status all` adds runs still going)
DEFAULT_STATUSES = ("FINISHED",)
#: ``cache_dir`` meaning "``.analysis_cache`` in the SQLite store's folder; none for other stores"
DEFAULT_CACHE_DIR = "beside-the-store"
CACHE_FOLDER = ".analysis_cache"

RUN_COLUMNS = ("run_id", "env", "algo", "sampler", "seed", "punishment", "sweep", "status", "t_max", "simulator")
POINT_COLUMNS = ("step", "metric", "value")
COLUMNS = RUN_COLUMNS + POINT_COLUMNS

FILTER_TAGS = ("sweep", "env", "algo", "sampler")
METHODS = ("auto", "sql", "api")
SQL_SCHEMES = ("sqlite", "postgresql", "mysql", "mssql")
SQL_CHUNK_RUNS = 200  # run ids per SQL query: stays far below every backend's bound-parameter limit

TagFilter = str | Iterable[str] | None


def load_runs(
    tracking_uri: str = DEFAULT_TRACKING_URI,
    experiment: str = DEFAULT_EXPERIMENT,
    *,
    sweep: TagFilter = None,
    env: TagFilter = None,
    algo: TagFilter = None,
    sampler: TagFilter = None,
    metrics: Sequence[str] | None = None,
    statuses: Iterable[str] | None = None,
    cache_dir: str | Path | None = DEFAULT_CACHE_DIR,
    method: str = "auto",
    progress: bool = True,
) -> pd.DataFrame:
    """All logged points of the matching runs, one row each (columns ``COLUMNS``).

    Tag filters take one value or several; ``metrics`` takes exact names or shell patterns
    (``weights/*``), None for every metric; ``statuses`` keeps runs in these MLflow states
    (``FINISHED``, ``RUNNING``, ...), None for all. ``cache_dir=None`` disables the cache.
    """
    if method not in METHODS:
        raise ValueError(f"method={method!r}: choose one of {', '.join(METHODS)}")
    if method == "auto":
        method = "sql" if _is_sql_uri(tracking_uri) else "api"
    if method == "sql" and not _is_sql_uri(tracking_uri):
        raise ValueError(f"method='sql' needs a database tracking URI ({', '.join(SQL_SCHEMES)}), got {tracking_uri!r}")

    client = open_client(tracking_uri)
    runs = list_runs(client, experiment, sweep=sweep, env=env, algo=algo, sampler=sampler, statuses=statuses)
    if runs.empty:
        return _empty_frame()

    metric_filter = list(metrics) if metrics is not None else None
    engine = sa.create_engine(tracking_uri) if method == "sql" else None
    try:
        keys = (
            _sql_run_keys(engine, runs)
            if engine is not None
            else {rid: k for rid, k in zip(runs["run_id"], runs["api_key"])}
        )
        cache = HistoryCache(cache_dir, tracking_uri, runs.attrs["experiment_id"], metric_filter)
        cached = {rid: cache.read(rid, keys[rid]) for rid in runs["run_id"]}
        stale = [rid for rid, frame in cached.items() if frame is None]
        if stale:
            if engine is not None:
                fresh = _sql_histories(engine, stale, metric_filter, progress)
            else:
                keys_by_run = dict(zip(runs["run_id"], runs["metric_keys"]))
                fresh = _api_histories(client, tracking_uri, stale, keys_by_run, metric_filter, progress)
            for rid in stale:
                frame = fresh.get(rid, _empty_points())
                cache.write(rid, keys[rid], frame)
                cached[rid] = frame
    finally:
        if engine is not None:
            engine.dispose()

    frames = [frame.assign(run_id=rid) for rid, frame in cached.items() if len(frame)]
    if not frames:
        return _empty_frame()
    points = pd.concat(frames, ignore_index=True)
    tidy = points.merge(runs[list(RUN_COLUMNS)], on="run_id", how="left")
    tidy = tidy[list(COLUMNS)].sort_values(["run_id", "metric", "step"], kind="stable")
    return tidy.reset_index(drop=True)


def open_client(tracking_uri: str) -> MlflowClient:
    """An MlflowClient for an existing store: a sqlite URI must name an MLflow database, a server must answer.

    Checked read-only first (``macpo.runs.tracking.require_existing_store``): MLflow would otherwise
    create an empty store (or write its schema into any file it is given), and the analysis
    would silently find nothing. Raises ``StoreError`` (a ``ValueError``) naming the URI.
    """
    from macpo.runs.tracking import StoreError, require_existing_store

    try:
        require_existing_store(tracking_uri)
    except StoreError as error:
        raise StoreError(f"--tracking-uri: {error}") from None
    return MlflowClient(tracking_uri=tracking_uri)


def search_all_runs(client: MlflowClient, experiment_id: str, filter_string: str = "") -> Iterator:
    """Every active run of an experiment matching `filter_string`, page after page."""
    token = None
    while True:
        page = client.search_runs(
            [experiment_id],
            filter_string=filter_string,
            run_view_type=ViewType.ACTIVE_ONLY,
            max_results=1000,
            page_token=token,
        )
        yield from page
        token = page.token
        if not token:
            return


def list_runs(
    client: MlflowClient,
    experiment: str,
    *,
    sweep: TagFilter = None,
    env: TagFilter = None,
    algo: TagFilter = None,
    sampler: TagFilter = None,
    statuses: Iterable[str] | None = None,
) -> pd.DataFrame:
    """One row per matching run: ``RUN_COLUMNS`` plus ``end_time`` and what the cache needs."""
    found = client.get_experiment_by_name(experiment)
    if found is None:
        names = sorted(e.name for e in client.search_experiments(view_type=ViewType.ALL))
        raise ValueError(f"experiment (--experiment) {experiment!r} not found; the store has: {names}")
    wanted = {tag: _as_set(value) for tag, value in zip(FILTER_TAGS, (sweep, env, algo, sampler)) if value is not None}
    status_set = {s.upper() for s in statuses} if statuses is not None else None
    server_filter = " and ".join(
        f"tags.{tag} = '{next(iter(values))}'"
        for tag, values in wanted.items()
        if len(values) == 1 and "'" not in next(iter(values))
    )

    rows = []
    for run in search_all_runs(client, found.experiment_id, server_filter):
        tags = run.data.tags
        if any(tags.get(tag) not in values for tag, values in wanted.items()):
            continue
        if status_set is not None and run.info.status not in status_set:
            continue
        latest = sorted((m.key, m.step, m.timestamp, m.value) for m in run.data.to_proto().metrics)
        rows.append(
            {
                "run_id": run.info.run_id,
                "env": tags.get("env"),
                "algo": tags.get("algo"),
                "sampler": tags.get("sampler"),
                "seed": _to_number(tags.get("seed"), int),
                "punishment": _to_number(tags.get("punishment"), float),
                "sweep": tags.get("sweep", "none"),
                "status": run.info.status,
                "t_max": _to_number(tags.get("t_max"), int),
                "simulator": simulator_label(tags),
                "end_time": run.info.end_time,
                "metric_keys": [key for key, *_ in latest],
                "api_key": json.dumps([run.info.status, run.info.end_time, latest]),
            }
        )
    runs = pd.DataFrame(rows, columns=[*RUN_COLUMNS, "end_time", "metric_keys", "api_key"])
    runs["seed"] = runs["seed"].astype("Int64")
    runs["t_max"] = runs["t_max"].astype("Int64")
    runs["punishment"] = runs["punishment"].astype(float)
    runs.attrs["experiment_id"] = found.experiment_id
    return runs


class HistoryCache:
    """Per-run parquet files of metric points, named by the run's update key.

    A file is ``<run_id>__<update hash>__<metric-filter hash>.parquet``; writing a run's new
    version removes its files with an older update hash.
    """

    def __init__(
        self, cache_dir: str | Path | None, tracking_uri: str, experiment_id: str, metrics: list[str] | None
    ) -> None:
        if isinstance(cache_dir, str) and cache_dir == DEFAULT_CACHE_DIR:
            cache_dir = default_cache_dir(tracking_uri)
        self.root = (
            None if cache_dir is None else Path(cache_dir) / _digest(_store_identity(tracking_uri), experiment_id)
        )
        self.metrics_hash = _digest(*(metrics if metrics is not None else ["<all>"]))

    def _path(self, run_id: str, update_key: str) -> Path:
        return self.root / f"{run_id}__{_digest(update_key)}__{self.metrics_hash}.parquet"

    def read(self, run_id: str, update_key: str) -> pd.DataFrame | None:
        """The cached points of `run_id` at `update_key`, or None when there are none."""
        if self.root is None:
            return None
        path = self._path(run_id, update_key)
        return pd.read_parquet(path) if path.is_file() else None

    def write(self, run_id: str, update_key: str, points: pd.DataFrame) -> None:
        if self.root is None:
            return
        self.root.mkdir(parents=True, exist_ok=True)
        path = self._path(run_id, update_key)
        update_hash = path.name.split("__")[1]
        for old in self.root.glob(f"{run_id}__*.parquet"):
            if old.name.split("__")[1] != update_hash:
                old.unlink(missing_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        points.to_parquet(tmp, index=False)
        tmp.replace(path)  # atomic: a concurrent reader never sees half a file


def _sql_run_keys(engine: sa.Engine, runs: pd.DataFrame) -> dict[str, str]:
    """Update key per run: status, end time, number of metric points and newest timestamp."""
    counts: dict[str, tuple[int, int]] = {}
    query = sa.text(
        "SELECT run_uuid, COUNT(*), MAX(timestamp) FROM metrics WHERE run_uuid IN :ids GROUP BY run_uuid"
    ).bindparams(sa.bindparam("ids", expanding=True))
    ids = list(runs["run_id"])
    with engine.connect() as connection:
        for start in range(0, len(ids), SQL_CHUNK_RUNS):
            for run_id, count, newest in connection.execute(query, {"ids": ids[start : start + SQL_CHUNK_RUNS]}):
                counts[run_id] = (int(count), int(newest or 0))
    return {
        rid: json.dumps([status, end, *counts.get(rid, (0, 0))])
        for rid, status, end in zip(runs["run_id"], runs["status"], runs["end_time"])
    }


def _sql_histories(
    engine: sa.Engine, run_ids: list[str], metrics: list[str] | None, progress: bool
) -> dict[str, pd.DataFrame]:
    """All points of `run_ids` from MLflow's ``metrics`` table, one query per chunk of runs."""
    exact = metrics is not None and not any(_is_pattern(m) for m in metrics)
    sql = "SELECT run_uuid, key, step, value, is_nan FROM metrics WHERE run_uuid IN :ids"
    params = [sa.bindparam("ids", expanding=True)]
    if exact:
        sql += " AND key IN :keys"
        params.append(sa.bindparam("keys", expanding=True))
    query = sa.text(sql + " ORDER BY run_uuid, key, step, timestamp").bindparams(*params)

    chunks = []
    with (
        engine.connect() as connection,
        tqdm(total=len(run_ids), desc="metric histories (SQL)", unit="run", disable=not progress) as bar,
    ):
        for start in range(0, len(run_ids), SQL_CHUNK_RUNS):
            chunk = run_ids[start : start + SQL_CHUNK_RUNS]
            values = {"ids": chunk, **({"keys": list(metrics)} if exact else {})}
            chunks.append(pd.read_sql(query, connection, params=values))
            bar.update(len(chunk))
    points = pd.concat(chunks, ignore_index=True)
    points.loc[points["is_nan"].astype(bool), "value"] = np.nan
    points = points.rename(columns={"run_uuid": "run_id", "key": "metric"})
    if metrics is not None and not exact:
        points = points[points["metric"].map(lambda key: _matches(key, metrics))]
    return {rid: _as_points(frame) for rid, frame in points.groupby("run_id", sort=False)}


def _api_histories(
    client: MlflowClient,
    tracking_uri: str,
    run_ids: list[str],
    keys_by_run: dict[str, list[str]],
    metrics: list[str] | None,
    progress: bool,
) -> dict[str, pd.DataFrame]:
    """Points through ``get_metric_history``: one request per run x metric (threads for HTTP)."""

    def read_run(run_id: str) -> pd.DataFrame:
        rows = [
            (key, m.step, m.value)
            for key in keys_by_run[run_id]
            if metrics is None or _matches(key, metrics)
            for m in client.get_metric_history(run_id, key)
        ]
        return _as_points(pd.DataFrame(rows, columns=["metric", "step", "value"]))

    workers = 8 if tracking_uri.startswith(("http://", "https://", "databricks")) else 1
    with (
        ThreadPoolExecutor(max_workers=workers) as pool,
        tqdm(total=len(run_ids), desc="metric histories (API)", unit="run", disable=not progress) as bar,
    ):
        histories = {}
        for run_id, frame in zip(run_ids, pool.map(read_run, run_ids)):
            histories[run_id] = frame
            bar.update()
    return histories


def _as_points(frame: pd.DataFrame) -> pd.DataFrame:
    """Point columns with fixed dtypes, ordered by metric then step (stable for equal steps)."""
    points = pd.DataFrame(
        {
            "step": frame["step"].astype("int64").to_numpy(),
            "metric": frame["metric"].astype(str).to_numpy(),
            "value": frame["value"].astype("float64").to_numpy(),
        }
    )
    return points.sort_values(["metric", "step"], kind="stable").reset_index(drop=True)


def _empty_points() -> pd.DataFrame:
    return _as_points(pd.DataFrame({"step": [], "metric": [], "value": []}))


def _empty_frame() -> pd.DataFrame:
    frame = pd.DataFrame({column: pd.Series(dtype=object) for column in COLUMNS})
    return frame.astype({"seed": "Int64", "t_max": "Int64", "punishment": float, "step": "int64", "value": float})


def simulator_label(tags: dict) -> str:
    """Which simulator a SMAC run used: ``lite v2``, ``smax``, ``sc2``; ``lite v1`` for SMAC-lite runs
    from before the ``env.sim_version`` tag; "" for runs without a SMAC map (predator-prey)."""
    backend = tags.get("env.backend")
    if backend is None:
        return "lite v1" if "map_name" in tags else ""
    version = tags.get("env.sim_version")
    return f"{backend} v{version}" if backend == "lite" and version else backend


def default_cache_dir(tracking_uri: str) -> Path | None:
    """``.analysis_cache`` beside a SQLite store's database; None (no cache) for other stores."""
    if not tracking_uri.startswith("sqlite:"):
        return None
    return Path(_store_identity(tracking_uri).removeprefix("sqlite:")).parent / CACHE_FOLDER


def _is_sql_uri(uri: str) -> bool:
    return uri.split(":", 1)[0].split("+", 1)[0] in SQL_SCHEMES


def _store_identity(tracking_uri: str) -> str:
    """The tracking URI with a sqlite or file path made absolute, so cwd does not split the cache."""
    if tracking_uri.startswith("sqlite:"):
        database = sa.engine.make_url(tracking_uri).database or ""
        return "sqlite:" + str(Path(database).resolve())
    if "://" not in tracking_uri or tracking_uri.startswith("file:"):
        return "file:" + str(Path(tracking_uri.removeprefix("file://")).resolve())
    return tracking_uri


def _digest(*parts: str) -> str:
    return hashlib.sha1("\x1f".join(parts).encode()).hexdigest()[:16]


def _as_set(value: str | Iterable[str]) -> set[str]:
    return {value} if isinstance(value, str) else {str(v) for v in value}


def _is_pattern(name: str) -> bool:
    return any(char in name for char in "*?[")


def _matches(key: str, patterns: list[str]) -> bool:
    return any(fnmatch.fnmatchcase(key, pattern) for pattern in patterns)


def _to_number(text: str | None, kind: type) -> float | int | None:
    """Tag text as a number; None when the tag is missing or not a number."""
    if text is None:
        return None
    try:
        return kind(float(text)) if kind is int else kind(text)
    except ValueError:
        return None


def add_run_selection_arguments(parser) -> None:
    """The options every analysis command shares to pick runs: store, experiment, sweep, states."""
    parser.add_argument("--tracking-uri", default=DEFAULT_TRACKING_URI, help="MLflow tracking URI")
    parser.add_argument("--experiment", default=DEFAULT_EXPERIMENT, help="MLflow experiment name")
    parser.add_argument("--sweep", default=None, help="only runs with this sweep tag (default: all)")
    parser.add_argument(
        "--status",
        default=",".join(DEFAULT_STATUSES),
        help="comma-separated MLflow run states to include, or 'all' (default: FINISHED)",
    )


def selected_statuses(status: str) -> list[str] | None:
    """``--status`` as a list of MLflow run states, or None for 'all'."""
    return None if status.lower() == "all" else [s.strip().upper() for s in status.split(",") if s.strip()]
