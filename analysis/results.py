"""The ``results/`` folder: one JSON file per grid of finished runs; CLI ``python -m analysis.results``.

A grid's runs are trained over several sessions, often into different MLflow stores, so a file
is built up by exports that merge: each export adds the runs the file does not hold yet (keyed
by the run's identity, ``macpo.runs.identity``), leaves the runs already there untouched, and
refuses, naming them and writing nothing, runs whose identity (or place in the grid) is already
taken with different data, unless ``--replace`` is given. Only FINISHED runs are exported.

A file holds, beside the grid it is (``grid``: the figure's sweep, the budget preset, and the
punishment or map it is cut to):

- ``marl_eval``: the test curves in marl-eval's layout (``analysis.export``), one point per
  greedy evaluation (every ``test_interval`` env steps), so ``json.load(f)["marl_eval"]`` is what
  marl-eval reads; no per-update metrics;
- ``runs``: per run identity, where its curve is (``place``: environment, task, algorithm,
  seed), its MLflow run id and status, the tags that place and date it (sweep and grid cell,
  budget, ``t_max``, env and simulator, the commit ``code.commit``, the machine ``machine.*``),
  the params ``trainer/precision`` and ``test_interval``, and the metric ``perf/cpu_seconds``
  (its CPU time summed over resumed segments);
- ``written_by``: the export commands that wrote it (store locations reduced to the file name),
  and ``sha256``, a checksum over the rest: the files are written by the export only, and
  readers refuse a file whose checksum does not match (an edit by hand).

``read_results`` / ``read_folder`` read files back and ``results_points`` turns one into the
tidy frame ``analysis.load`` makes from a store, so the figures and tables run on it unchanged.

    python -m analysis.results --tracking-uri sqlite:///outputs/mlflow.db --experiment results \\
        --sweep fig2_predator_prey --budget results --punishment -0.5   # -> results/fig2_predator_prey_p-0.5.json
"""

from __future__ import annotations

import argparse
import copy
import datetime as dt
import hashlib
import json
import os
import shlex
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pandas as pd
from mlflow.entities import ViewType

from analysis.export import ENV_PARAMS, EXPORTED_METRICS, STEP_COUNT, marl_eval_data, run_places
from analysis.load import COLUMNS, DEFAULT_CACHE_DIR, load_runs, open_client, search_all_runs, simulator_label

FORMAT = "macpo-results/1"
TOOL = "python -m analysis.results"
DEFAULT_FOLDER = Path("results")
#: the budget preset of the results page; files of other budgets carry its name
DEFAULT_BUDGET = "results"
IDENTITY_TAG = "identity"
RECORDED_TAGS = (
    "sweep", "sweep_cell", "budget", "env", "map_name", "punishment", "algo", "sampler", "seed", "t_max",
    "env.backend", "env.sim_version", "code.commit", "machine.cpu", "machine.cores", "machine.avx512_bf16",
)  # fmt: skip
RECORDED_PARAMS = ("trainer/precision", "test_interval", "test_nepisode")
CPU_SECONDS = "perf/cpu_seconds"
RECORDED_METRICS = (CPU_SECONDS,)
NOTE = "Written by the commands in written_by (analysis/results.py); never edit by hand: the checksum would not match."
#: marl-eval metric name -> our metric name
READ_BACK = {name: metric for metric, name in EXPORTED_METRICS.items()}
ABSOLUTE = "absolute_metrics"
TIME_FORMAT = "%Y-%m-%dT%H:%M:%SZ"
LINE_CHARS = 120  # a leaf longer than this is written one item a line
#: options whose values may name this machine's folders; a file records them reduced
PATH_OPTIONS = ("--tracking-uri", "--out", "--cache-dir")


class ResultsFileError(ValueError):
    """A results file that cannot be read: not one, another format, or edited by hand."""


class MergeConflict(ValueError):
    """Exported runs whose identity or grid place the file already holds with different data."""


@dataclass(frozen=True)
class Grid:
    """What a file holds: the figure (its sweep name), the budget preset, and the cut of the sweep."""

    name: str
    budget: str
    punishment: float | None = None
    map_name: str | None = None

    def file_name(self) -> str:
        """``fig2_predator_prey_p-0.5.json``; ``..._5m_vs_6m.json``; a budget other than ``results`` is appended."""
        parts = [self.name]
        if self.punishment is not None:
            parts.append(f"p{self.punishment:g}")
        if self.map_name is not None:
            parts.append(self.map_name.lower())
        if self.budget != DEFAULT_BUDGET:
            parts.append(self.budget)
        return "_".join(parts) + ".json"

    def as_dict(self) -> dict:
        return asdict(self)

    def describe(self) -> str:
        cut = [f"p={self.punishment:g}"] if self.punishment is not None else []
        cut += [self.map_name] if self.map_name is not None else []
        return f"{self.name} ({', '.join([*cut, f'budget={self.budget}'])})"


@dataclass
class ResultsFile:
    """One grid's runs: provenance by identity, curves in marl-eval's layout, the commands that wrote it."""

    grid: Grid
    runs: dict[str, dict] = field(default_factory=dict)
    marl_eval: dict = field(default_factory=dict)
    written_by: list[str] = field(default_factory=list)
    path: Path | None = None

    def curve(self, identity: str) -> dict:
        environment, task, algorithm, seed = self.runs[identity]["place"]
        return self.marl_eval[environment][task][algorithm][seed]

    def add(self, identity: str, record: dict, curve: dict) -> None:
        environment, task, algorithm, seed = record["place"]
        self.marl_eval.setdefault(environment, {}).setdefault(task, {}).setdefault(algorithm, {})[seed] = curve
        self.runs[identity] = record

    def remove(self, identity: str) -> None:
        environment, task, algorithm, seed = self.runs.pop(identity)["place"]
        algorithms = self.marl_eval[environment][task]
        del algorithms[algorithm][seed]
        if not algorithms[algorithm]:
            del algorithms[algorithm]
        if not algorithms:
            del self.marl_eval[environment][task]
        if not self.marl_eval[environment]:
            del self.marl_eval[environment]

    def content(self) -> dict:
        """Everything the checksum covers, in a fixed order (runs and curves sorted)."""
        return {
            "format": FORMAT,
            "grid": self.grid.as_dict(),
            "written_by": list(self.written_by),
            "runs": {identity: self.runs[identity] for identity in sorted(self.runs, key=self._run_order)},
            "marl_eval": _sorted(self.marl_eval),
        }

    def _run_order(self, identity: str):
        environment, task, algorithm, seed = self.runs[identity]["place"]
        return environment, task, algorithm, int(seed) if seed.isdigit() else seed, identity


@dataclass
class MergeSummary:
    added: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    replaced: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)  # in the file, not in this export


# ---- reading and writing files ------------------------------------------------------------------


def read_results(path: str | Path) -> ResultsFile:
    """A results file, checked: its format and checksum (ResultsFileError otherwise)."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise ResultsFileError(f"{path}: not a readable results file ({error})") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise ResultsFileError(f"{path}: not a results file of format {FORMAT} (written by {TOOL})")
    try:
        results = ResultsFile(Grid(**data["grid"]), data["runs"], data["marl_eval"], list(data["written_by"]), path)
    except (KeyError, TypeError) as error:
        raise ResultsFileError(f"{path}: a {FORMAT} file without its {error} entry") from None
    if data.get("sha256") != checksum(results):
        raise ResultsFileError(
            f"{path}: checksum mismatch: the file was changed after {TOOL} wrote it (results files are "
            "never edited by hand; export the runs again, with --replace where a run changed)"
        )
    return results


def read_folder(folder: str | Path) -> list[ResultsFile]:
    """Every results file in `folder` (``*.json``), by file name."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ResultsFileError(f"{folder}: no such folder")
    return [read_results(path) for path in sorted(folder.glob("*.json"))]


def write_results(results: ResultsFile, path: str | Path) -> None:
    """Write `results` to `path` atomically (a temporary file in the same folder, then a rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    content = results.content()
    document = {"format": FORMAT, "note": NOTE, "sha256": checksum(results)}
    document.update((k, v) for k, v in content.items() if k != "format")
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(handle, "w") as file:
            file.write(_dumps(document) + "\n")
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(temporary, 0o666 & ~umask)  # as an ordinary file, not mkstemp's private 0600
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def checksum(results: ResultsFile) -> str:
    text = json.dumps(results.content(), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


# ---- the store side -------------------------------------------------------------------------------


def find_runs(
    tracking_uri: str,
    experiment: str,
    grid: Grid,
    *,
    sweep: str | None = None,
    algo: str | None = None,
    sampler: str | None = None,
) -> dict[str, dict]:
    """run id → provenance (``identity``, tags, params, metrics, times) of the FINISHED runs of `grid`.

    A run belongs when its tags match: ``sweep`` (default: the grid's name), ``budget``, and the
    grid's punishment (tag ``punishment``) or map (tag ``map_name`` or ``env``, any case), and
    ``algo``/``sampler`` when given. Two finished runs with one identity, or one without an
    identity tag, are a ValueError.
    """
    client = open_client(tracking_uri)
    found = client.get_experiment_by_name(experiment)
    if found is None:
        names = sorted(e.name for e in client.search_experiments(view_type=ViewType.ALL))
        raise ValueError(f"experiment (--experiment) {experiment!r} not found; the store has: {names}")
    wanted = {"sweep": sweep or grid.name, "budget": grid.budget, "algo": algo, "sampler": sampler}
    wanted = {tag: value for tag, value in wanted.items() if value is not None}
    server_filter = " and ".join(f"tags.{tag} = '{value}'" for tag, value in wanted.items() if "'" not in value)
    selected = {}
    for run in search_all_runs(client, found.experiment_id, server_filter):
        tags = run.data.tags
        if run.info.status != "FINISHED" or any(tags.get(t) != v for t, v in wanted.items()):
            continue
        if _in_cut(tags, grid):
            selected[run.info.run_id] = _provenance(run)
    by_identity: dict[str, list[str]] = {}
    for run_id, record in selected.items():
        by_identity.setdefault(record["identity"], []).append(run_id)
    if None in by_identity:
        raise ValueError(f"run(s) {', '.join(sorted(by_identity[None]))} carry no {IDENTITY_TAG!r} tag")
    twice = {identity: ids for identity, ids in by_identity.items() if len(ids) > 1}
    if twice:
        identity, ids = next(iter(sorted(twice.items())))
        raise ValueError(f"{len(twice)} identities have several FINISHED runs in the store, e.g. {identity}: {ids}")
    return selected


def collect(
    tracking_uri: str,
    experiment: str,
    grid: Grid,
    *,
    sweep: str | None = None,
    algo: str | None = None,
    sampler: str | None = None,
    cache_dir: str | Path | None = DEFAULT_CACHE_DIR,
    progress: bool = False,
) -> tuple[ResultsFile, list[str]]:
    """The finished runs of `grid` in a store as a results file (not written), and messages."""
    provenance = find_runs(tracking_uri, experiment, grid, sweep=sweep, algo=algo, sampler=sampler)
    if not provenance:
        raise ValueError(f"no FINISHED runs of {grid.describe()} in experiment {experiment!r}")
    points = load_runs(
        tracking_uri,
        experiment,
        sweep=sweep or grid.name,
        algo=algo,
        sampler=sampler,
        metrics=list(EXPORTED_METRICS),
        statuses=["FINISHED"],
        cache_dir=cache_dir,
        progress=progress,
    )
    points = points[points["run_id"].isin(set(provenance))]
    env_params = {rid: record.pop("env_params") for rid, record in provenance.items()}
    built = marl_eval_data(points, env_params)  # ValueError on clashes within the store
    places = run_places(points, env_params).set_index("run_id")
    results = ResultsFile(grid)
    for run_id, record in provenance.items():
        if run_id not in places.index:
            continue  # no test curve: marl_eval_data said so
        place = places.loc[run_id]
        identity = record.pop("identity")
        record["place"] = [place["environment"], place["task"], place["algorithm"], str(int(place["seed"]))]
        environment, task, algorithm, seed = record["place"]
        results.add(identity, _ordered(record), built.data[environment][task][algorithm][seed])
    return results, built.messages


def merge(current: ResultsFile, new: ResultsFile, *, replace: bool = False) -> tuple[ResultsFile, MergeSummary]:
    """`current` plus the runs of `new` it lacks (see the module doc); MergeConflict lists every clash."""
    if current.grid != new.grid:
        raise ValueError(f"the file holds grid {current.grid.describe()}, this export is {new.grid.describe()}")
    merged = copy.deepcopy(current)
    summary = MergeSummary(kept=[identity for identity in current.runs if identity not in new.runs])
    occupant = {tuple(record["place"]): identity for identity, record in merged.runs.items()}
    conflicts = []
    for identity, record in new.runs.items():
        curve = new.curve(identity)
        place = tuple(record["place"])
        if identity in merged.runs:
            old_record, old_curve = merged.runs[identity], merged.curve(identity)
            if _canonical(old_record) == _canonical(record) and _canonical(old_curve) == _canonical(curve):
                summary.unchanged.append(identity)
                continue
            if not replace:
                keys = sorted(set(old_record) | set(record))
                differs = [key for key in keys if old_record.get(key) != record.get(key)]
                differs += ["test curve"] if _canonical(old_curve) != _canonical(curve) else []
                conflicts.append(
                    f"identity {identity} ({'/'.join(place)}): in the file as run {old_record['run_id']}, exported "
                    f"as run {record['run_id']}, differing in {', '.join(differs)}"
                )
                continue
            occupant.pop(tuple(old_record["place"]), None)
            merged.remove(identity)
            summary.replaced.append(identity)
        holder = occupant.get(place)
        if holder is not None and holder != identity:
            if not replace:
                conflicts.append(
                    f"{'/'.join(place)}: held by identity {holder} (run {merged.runs[holder]['run_id']}), "
                    f"exported run {record['run_id']} has identity {identity} (another configuration)"
                )
                continue
            merged.remove(holder)
            summary.replaced.append(holder)
        merged.add(identity, record, curve)
        occupant[place] = identity
        if identity not in summary.replaced:
            summary.added.append(identity)
    if conflicts:
        raise MergeConflict(
            f"{len(conflicts)} exported run(s) clash with the file; nothing written "
            "(--replace puts the exported runs in their place):\n  " + "\n  ".join(conflicts)
        )
    return merged, summary


def export_grid(
    tracking_uri: str,
    experiment: str,
    grid: Grid,
    out: str | Path,
    *,
    sweep: str | None = None,
    algo: str | None = None,
    sampler: str | None = None,
    replace: bool = False,
    command: str | None = None,
    cache_dir: str | Path | None = DEFAULT_CACHE_DIR,
    progress: bool = False,
) -> tuple[MergeSummary, list[str]]:
    """Export the finished runs of `grid` from the store and merge them into `out` (created if missing)."""
    out = Path(out)
    new, messages = collect(
        tracking_uri, experiment, grid, sweep=sweep, algo=algo, sampler=sampler, cache_dir=cache_dir, progress=progress
    )
    current = read_results(out) if out.exists() else ResultsFile(grid)
    merged, summary = merge(current, new, replace=replace)
    if command is not None and (summary.added or summary.replaced) and command not in merged.written_by:
        merged.written_by.append(command)
    if summary.added or summary.replaced or not out.exists():
        write_results(merged, out)
    return summary, messages


# ---- reading a file back as the analysis frames -----------------------------------------------------


def results_points(results: ResultsFile) -> pd.DataFrame:
    """The tidy frame of ``analysis.load`` (``COLUMNS``), one row per evaluation point and metric.

    ``sweep`` is the grid's name for every run (a run shared with another grid keeps its own
    sweep tag in the file; here it joins the grid it was exported into).
    """
    rows = []
    for identity, record in results.runs.items():
        tags = record["tags"]
        run = {
            "run_id": record["run_id"],
            "env": tags.get("env"),
            "algo": tags.get("algo"),
            "sampler": tags.get("sampler"),
            "seed": _number(tags.get("seed"), int),
            "punishment": _number(tags.get("punishment"), float),
            "sweep": results.grid.name,
            "status": record["status"],
            "t_max": _number(tags.get("t_max"), int),
            "simulator": simulator_label(tags),
        }
        for key, entry in results.curve(identity).items():
            if key == ABSOLUTE:
                continue
            for name, metric in READ_BACK.items():
                if name in entry:
                    rows.append({**run, "step": int(entry[STEP_COUNT]), "metric": metric, "value": entry[name][0]})
    frame = pd.DataFrame(rows, columns=list(COLUMNS))
    frame = frame.astype({"seed": "Int64", "t_max": "Int64", "punishment": float, "step": "int64", "value": float})
    return frame.sort_values(["run_id", "metric", "step"], kind="stable").reset_index(drop=True)


def run_records(results: ResultsFile) -> pd.DataFrame:
    """One row per run: identity, run id, place, and the provenance the results page reports."""
    rows = []
    for identity, record in results.runs.items():
        tags, params, metrics = record["tags"], record["params"], record["metrics"]
        environment, task, algorithm, seed = record["place"]
        rows.append(
            {
                "identity": identity,
                "run_id": record["run_id"],
                "environment": environment,
                "task": task,
                "algorithm": algorithm,
                "algo": tags.get("algo"),
                "sampler": tags.get("sampler"),
                "seed": int(seed),
                "sweep": tags.get("sweep"),
                "budget": tags.get("budget"),
                "t_max": _number(tags.get("t_max"), int),
                "simulator": simulator_label(tags),
                "precision": params.get("trainer/precision"),
                "commit": tags.get("code.commit"),
                "cpu_seconds": metrics.get(CPU_SECONDS),
                "machine": _machine(tags),
                "end_time": record.get("end_time"),
            }
        )
    return pd.DataFrame(rows)


# ---- CLI ------------------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    """CLI: export a grid's finished runs into its results file, merging with what it holds."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(prog=TOOL, description=__doc__.split("\n")[0])
    parser.add_argument("--tracking-uri", required=True, help="MLflow tracking URI of the store to export from")
    parser.add_argument("--experiment", required=True, help="MLflow experiment name")
    parser.add_argument("--sweep", required=True, help="the grid: a figure's sweep name (fig2_predator_prey, ...)")
    parser.add_argument("--budget", required=True, help="the runs' budget preset (tag budget), e.g. results")
    cut = parser.add_mutually_exclusive_group()
    cut.add_argument("--punishment", type=float, default=None, help="predator-prey: only runs with this punishment")
    cut.add_argument("--map", dest="map_name", default=None, help="SMAC: only runs on this map (e.g. 5m_vs_6m)")
    parser.add_argument(
        "--from-sweep",
        default=None,
        help="take the runs from this sweep instead (a run shared between grids, trained once in another)",
    )
    parser.add_argument("--algo", default=None, help="only runs of this algorithm")
    parser.add_argument("--sampler", default=None, help="only runs with this sampler")
    parser.add_argument("--out", type=Path, default=None, help="the file (default: results/<grid>.json)")
    parser.add_argument("--replace", action="store_true", help="exported runs replace clashing runs in the file")
    parser.add_argument("--cache-dir", type=Path, default=None,
                        help="history cache folder (default: .analysis_cache beside a SQLite store)")
    parser.add_argument("--no-cache", action="store_true", help="read every history from the store")
    args = parser.parse_args(argv)

    grid = Grid(args.sweep, args.budget, args.punishment, args.map_name)
    out = args.out if args.out is not None else DEFAULT_FOLDER / grid.file_name()
    if out.is_dir():
        parser.error(f"--out {out}: is a folder; give the file's path")
    try:
        summary, messages = export_grid(
            args.tracking_uri,
            args.experiment,
            grid,
            out,
            sweep=args.from_sweep,
            algo=args.algo,
            sampler=args.sampler,
            replace=args.replace,
            command=public_command(argv),
            cache_dir=None if args.no_cache else args.cache_dir or DEFAULT_CACHE_DIR,
        )
    except ValueError as error:
        print(f"{TOOL}: {error}", file=sys.stderr)
        return 1
    for message in messages:
        print(message)
    print(
        f"{out}: {len(summary.added)} run(s) added, {len(summary.replaced)} replaced, {len(summary.unchanged)} "
        f"already there, {len(summary.kept)} kept from earlier exports"
    )
    return 0


def public_command(argv: Sequence[str]) -> str:
    """The command line as recorded in a file: a local store reduced to its file name, paths relative."""
    words, pending = [], None
    for word in argv:
        if pending is not None:
            words.append(_public_value(pending, word))
            pending = None
            continue
        name, equals, value = word.partition("=")
        if name in PATH_OPTIONS and equals:
            words.append(f"{name}={_public_value(name, value)}")
            continue
        if name in PATH_OPTIONS:
            pending = name
        words.append(word)
    return " ".join([TOOL, *(shlex.quote(w) for w in words)])


def _public_value(option: str, value: str) -> str:
    return _public_uri(value) if option == "--tracking-uri" else _public_path(value)


def _public_uri(uri: str) -> str:
    if uri.startswith("sqlite:"):
        return f"sqlite:///<store>/{Path(uri.split(':///', 1)[-1]).name}"
    if uri.startswith(("http://", "https://", "databricks")):
        return "<tracking server>"
    return f"<store>/{Path(uri.removeprefix('file://')).name}"


def _public_path(path: str) -> str:
    relative = os.path.relpath(Path(path).resolve(), Path.cwd())
    return relative if not relative.startswith("..") else Path(path).name


def _in_cut(tags: dict[str, str], grid: Grid) -> bool:
    if grid.punishment is not None and _number(tags.get("punishment"), float) != grid.punishment:
        return False
    if grid.map_name is not None:
        names = {str(tags.get("map_name", "")).lower(), str(tags.get("env", "")).lower()}
        return grid.map_name.lower() in names
    return True


def _provenance(run) -> dict:
    tags, params, metrics = run.data.tags, run.data.params, run.data.metrics
    end = run.info.end_time
    ended = None if end is None else dt.datetime.fromtimestamp(end / 1000, dt.timezone.utc).strftime(TIME_FORMAT)
    return {
        "identity": tags.get(IDENTITY_TAG),
        "run_id": run.info.run_id,
        "status": run.info.status,
        "end_time": ended,
        "tags": {key: tags[key] for key in RECORDED_TAGS if key in tags},
        "params": {key: params[key] for key in RECORDED_PARAMS if key in params},
        "metrics": {key: metrics[key] for key in RECORDED_METRICS if key in metrics},
        "env_params": {key: params[key] for key in ENV_PARAMS if key in params},
    }


def _ordered(record: dict) -> dict:
    order = ("run_id", "status", "place", "end_time", "tags", "params", "metrics")
    return {key: record[key] for key in order if key in record}


def _machine(tags: dict[str, str]) -> str | None:
    if "machine.cpu" not in tags:
        return None
    bf16 = ", avx512_bf16" if tags.get("machine.avx512_bf16") == "true" else ""
    return f"{tags['machine.cpu']} ({tags.get('machine.cores', '?')} cores{bf16})"


def _number(text, kind: type):
    if text is None:
        return None
    try:
        return kind(float(text)) if kind is int else kind(text)
    except (TypeError, ValueError):
        return None


def _canonical(value) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def _sorted(value):
    """Nested dicts with keys in order (seeds and ``step_<i>`` numerically), for stable files."""
    if not isinstance(value, dict):
        return value

    def key(name: str):
        head, _, tail = name.rpartition("_")
        if name == STEP_COUNT:
            return (-1, "", 0)
        if name.isdigit():
            return (0, "", int(name))
        if head == "step" and tail.isdigit():
            return (1, head, int(tail))
        return (2, name, 0)

    return {k: _sorted(value[k]) for k in sorted(value, key=key)}


def _dumps(value, level: int = 0) -> str:
    """JSON with one line per leaf: an evaluation step, a list of numbers, a small tag dict."""
    if _is_leaf(value):
        return json.dumps(value, separators=(", ", ": "))
    pad, inner = " " * level, " " * (level + 1)
    if isinstance(value, list):
        items = [inner + _dumps(item, level + 1) for item in value]
        return "[\n" + ",\n".join(items) + "\n" + pad + "]"
    items = [f"{inner}{json.dumps(k)}: {_dumps(v, level + 1)}" for k, v in value.items()]
    return "{\n" + ",\n".join(items) + "\n" + pad + "}" if items else "{}"


def _is_leaf(value) -> bool:
    """Written on one line: a dict or list of scalars (and, in a dict, lists of scalars), short."""
    if isinstance(value, dict):
        inner = value.values()
        flat = all(not isinstance(v, dict) and (not isinstance(v, list) or _is_leaf(v)) for v in inner)
    elif isinstance(value, list):
        flat = all(not isinstance(v, (dict, list)) for v in value)
    else:
        return True
    return flat and len(json.dumps(value)) <= LINE_CHARS


if __name__ == "__main__":
    raise SystemExit(main())
