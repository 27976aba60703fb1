"""Training runs in marl-eval's JSON format; CLI ``python -m analysis.export``.

marl-eval (InstaDeep; Gorsane et al., "Towards a Standardised Performance Evaluation Protocol
for Cooperative MARL", NeurIPS 2022) reads one JSON file nested as

    environment → task → algorithm → run → {"step_<i>": {"step_count": int, metric: [values]},
                                            ..., "absolute_metrics": {metric: [values]}}

and aggregates it with rliable. What our runs become:

- environment: ``predator_prey``; ``smac`` for the real game and ``smac_<simulator>`` for the
  others (``smac_lite``, or ``smac_lite_v3`` / ``smac_smax`` where runs carry a simulator tag):
  win rates of different simulators are not comparable; ``pettingzoo``; else the ``env`` tag;
- task: the SMAC map, ``<env>_p<punishment>`` on predator-prey, the module path on PettingZoo;
- algorithm: the ``algo`` tag, ``algo+sampler`` when the sampler is not the algorithm's own
  replay (uniform for the QMIX family, ``macpo`` for MAC-PO: the sampler each ``conf/algo`` yaml names);
- run: the seed; a step: one greedy evaluation, ``step_count`` in environment steps;
- metrics: ``return`` from ``test/return_mean`` and, where logged, ``win_rate`` (a fraction) from
  ``test/battle_won_mean``. We log the mean over the test episodes only, so each list has one
  element, which marl-eval accepts for metrics computed over several episodes.
- ``absolute_metrics``: the protocol's absolute metric re-evaluates the best policy with 10x the
  episodes; our runs do not, so this holds each run's *final performance* as the suite's tables
  define it (mean over the last 10% of the budget, ``analysis.tables.final_scores``).

marl-eval needs, per environment, the same algorithms, tasks, runs and number of steps
everywhere; the export writes what exists and lists every gap it finds.

    python -m analysis.export --tracking-uri sqlite:///outputs/mlflow.db [--sweep demo] --out results.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from mlflow.entities import ViewType

from analysis.load import (
    DEFAULT_CACHE_DIR,
    DEFAULT_EXPERIMENT,
    DEFAULT_STATUSES,
    add_run_selection_arguments,
    load_runs,
    open_client,
    selected_statuses,
)
from analysis.selection import PREDATOR_PREY_PREFIX, TEST_RETURN, WIN_RATE, run_table
from analysis.tables import final_scores
from macpo.runs.tracking import StoreError

#: our metric name → marl-eval's metric name
EXPORTED_METRICS = {TEST_RETURN: "return", WIN_RATE: "win_rate"}
#: an algorithm's own replay sampler where it is not uniform (the pairings the conf/algo yamls name)
OWN_SAMPLER = {"macpo": "macpo"}
ABSOLUTE = "absolute_metrics"
STEP_COUNT = "step_count"
#: the params that name an env's implementation, read from the store to place a run
ENV_PARAMS = ("env/_target_", "env/backend")


@dataclass
class Export:
    """The marl-eval dictionary, what could not be made uniform, and counts for the summary."""

    data: dict = field(default_factory=dict)
    messages: list[str] = field(default_factory=list)
    runs: int = 0


def algorithm_name(algo: str, sampler: str) -> str:
    """``algo`` with its own replay sampler, else ``algo+sampler`` (marl-eval forbids commas)."""
    name = algo if sampler == OWN_SAMPLER.get(algo, "uniform") else f"{algo}+{sampler}"
    return name.replace(",", "_").lower()


def marl_eval_data(points: pd.DataFrame, env_params: dict[str, dict[str, str]] | None = None) -> Export:
    """The marl-eval dictionary of the runs in `points` (a tidy frame from ``analysis.load``).

    `env_params` maps run id → its ``ENV_PARAMS`` (missing: placed by tags alone). A run with
    no ``test/return_mean`` point is left out with a message. Two runs landing on the same
    environment/task/algorithm/seed are a ValueError (filter with a sweep or experiment).
    """
    runs = run_places(points, env_params)
    exported = points[points["metric"].isin(list(EXPORTED_METRICS))]
    with_return = set(exported.loc[exported["metric"] == TEST_RETURN, "run_id"])
    result = Export()
    left_out = runs[~runs["run_id"].isin(with_return)]
    if len(left_out):
        result.messages.append(f"left out {len(left_out)} run(s) that logged no {TEST_RETURN}")
    runs = runs[runs["run_id"].isin(with_return)]
    if runs["seed"].isna().any():
        raise ValueError(f"{int(runs['seed'].isna().sum())} run(s) carry no seed tag; marl-eval names runs by seed")

    key = ["environment", "task", "algorithm", "seed"]
    clashes = runs[runs.duplicated(key, keep=False)]
    if len(clashes):
        first = clashes.iloc[0]
        raise ValueError(
            f"{len(clashes)} runs share an environment/task/algorithm/seed, e.g. "
            f"{first.environment}/{first.task}/{first.algorithm}/seed {int(first.seed)} "
            f"(runs {', '.join(clashes.loc[(clashes[key] == first[key]).all(axis=1), 'run_id'])}); "
            "export one sweep (--sweep) or experiment at a time"
        )

    finals = _final_performance(exported, runs)
    for run in runs.sort_values(key).itertuples():
        mine = exported[exported["run_id"] == run.run_id]
        wide = mine.pivot_table(index="step", columns="metric", values="value", aggfunc="last").sort_index()
        record = {}
        for i, (step, row) in enumerate(wide.iterrows()):
            entry = {STEP_COUNT: int(step)}
            entry.update(
                {EXPORTED_METRICS[m]: [float(row[m])] for m in EXPORTED_METRICS if m in row and pd.notna(row[m])}
            )
            record[f"step_{i}"] = entry
        absolute = {name: [finals[(run.run_id, metric)]] for metric, name in EXPORTED_METRICS.items()
                    if (run.run_id, metric) in finals}  # fmt: skip
        record[ABSOLUTE] = absolute
        tasks = result.data.setdefault(run.environment, {}).setdefault(run.task, {})
        tasks.setdefault(run.algorithm, {})[str(int(run.seed))] = record
        result.runs += 1
    result.messages += uniformity_gaps(result.data)
    return result


def run_places(points: pd.DataFrame, env_params: dict[str, dict[str, str]] | None = None) -> pd.DataFrame:
    """The run table of `points` with where each run goes: ``environment``, ``task``, ``algorithm``."""
    env_params = env_params or {}
    runs = run_table(points)
    runs["environment"] = [_environment(run, env_params.get(run.run_id, {})) for run in runs.itertuples()]
    runs["task"] = [_task(run) for run in runs.itertuples()]
    runs["algorithm"] = [algorithm_name(str(run.algo), str(run.sampler)) for run in runs.itertuples()]
    return runs


def evaluation_counts(data: dict) -> dict[str, list[int]]:
    """Environment → the distinct numbers of evaluations its runs have (marl-eval needs one)."""
    return {
        environment: sorted({len(record) - 1 for algos in tasks.values() for runs in algos.values()
                             for record in runs.values()})  # fmt: skip
        for environment, tasks in data.items()
    }


def uniformity_gaps(data: dict) -> list[str]:
    """What keeps each environment from marl-eval's rectangular layout, one line per gap."""
    gaps = []
    for environment, tasks in data.items():
        algorithms = {a for algos in tasks.values() for a in algos}
        for task, algos in tasks.items():
            missing = sorted(algorithms - set(algos))
            if missing:
                gaps.append(f"{environment}/{task}: no runs of {', '.join(missing)}")
        seeds = {(t, a): len(runs) for t, algos in tasks.items() for a, runs in algos.items()}
        if len(set(seeds.values())) > 1:
            counts = ", ".join(f"{t}/{a}: {n}" for (t, a), n in sorted(seeds.items()))
            gaps.append(f"{environment}: runs per task/algorithm differ ({counts})")
        lengths = evaluation_counts(data)[environment]
        if len(lengths) > 1:
            gaps.append(f"{environment}: runs have different numbers of evaluations ({lengths})")
    if gaps:
        gaps.append("marl-eval aggregates an environment only when all of its runs line up; see the lines above")
    return gaps


def export(
    tracking_uri: str,
    out: str | Path,
    experiment: str = DEFAULT_EXPERIMENT,
    *,
    sweep: str | Iterable[str] | None = None,
    statuses: Iterable[str] | None = DEFAULT_STATUSES,
    cache_dir: str | Path | None = DEFAULT_CACHE_DIR,
    progress: bool = True,
) -> Export:
    """Read the store, build the marl-eval dictionary and write it to `out` (atomically).

    Raises ValueError before writing anything when the store, experiment or selection holds no
    run to export.
    """
    points = load_runs(
        tracking_uri,
        experiment,
        sweep=sweep,
        metrics=list(EXPORTED_METRICS),
        statuses=statuses,
        cache_dir=cache_dir,
        progress=progress,
    )
    if points.empty:
        which = f"sweep {sweep!r} of " if sweep is not None else ""
        states = f" in state {'/'.join(statuses)}" if statuses is not None else ""
        raise ValueError(f"no runs{states} with {TEST_RETURN} in {which}experiment {experiment!r} at {tracking_uri}")
    result = marl_eval_data(points, _env_params(tracking_uri, experiment, set(points["run_id"])))
    _write_json(Path(out), result.data)
    return result


def main(argv: Sequence[str] | None = None) -> int:
    """CLI: export the store's runs, print any gaps and where the file is."""
    parser = argparse.ArgumentParser(prog="python -m analysis.export", description=__doc__.split("\n")[0])
    add_run_selection_arguments(parser)
    parser.add_argument("--out", type=Path, required=True, help="the JSON file to write")
    parser.add_argument("--cache-dir", type=Path, default=None,
                        help="history cache folder (default: .analysis_cache beside a SQLite store)")
    parser.add_argument("--no-cache", action="store_true", help="read every history from the store")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    if args.out.exists() and args.out.is_dir():
        parser.error(f"--out {args.out}: is a folder; give the JSON file's path")
    statuses = selected_statuses(args.status)
    try:
        result = export(
            args.tracking_uri,
            args.out,
            args.experiment,
            sweep=args.sweep,
            statuses=statuses,
            cache_dir=None if args.no_cache else args.cache_dir or DEFAULT_CACHE_DIR,
            progress=not args.no_progress,
        )
    except StoreError as error:  # not a store: bad input, as for every read-only command
        print(f"python -m analysis.export: {error}", file=sys.stderr)
        return 2
    except ValueError as error:  # a store with nothing to export
        print(f"python -m analysis.export: {error}", file=sys.stderr)
        return 1
    for message in result.messages:
        print(message)
    environments = ", ".join(f"{env} ({len(tasks)} task(s))" for env, tasks in result.data.items())
    print(f"wrote {result.runs} run(s) of {environments} to {args.out}")
    return 0


def _environment(run, params: dict[str, str]) -> str:
    target = params.get("env/_target_", "")
    env = str(run.env)
    if env.startswith(PREDATOR_PREY_PREFIX) or "predator_prey" in target:
        return "predator_prey"
    if "pettingzoo" in target:
        return "pettingzoo"
    if run.is_smac or "smac" in target:
        simulator = str(getattr(run, "simulator", "") or "")  # "lite v3", "smax", "sc2" where loaders tag it
        if not simulator or simulator == "nan":
            simulator = params.get("env/backend", "lite")
        return "smac" if simulator == "sc2" else f"smac_{simulator}".replace(" ", "_").lower()
    return env.lower()


def _task(run) -> str:
    if run.environment == "predator_prey" and pd.notna(run.punishment):
        return f"{run.env}_p{run.punishment:g}".lower()
    return str(run.env).lower()


def _final_performance(exported: pd.DataFrame, runs: pd.DataFrame) -> dict[tuple[str, str], float]:
    """(run id, metric) → the run's final performance (``analysis.tables.final_scores``)."""
    finals = {}
    for metric in EXPORTED_METRICS:
        selection = exported[(exported["metric"] == metric) & exported["run_id"].isin(runs["run_id"])]
        if selection.empty:
            continue
        selection = selection.merge(runs[["run_id", "task", "algorithm"]], on="run_id")
        scores = final_scores(selection.rename(columns={"algorithm": "method"}))
        finals.update({(rid, metric): float(v) for rid, v in zip(scores["run_id"], scores["final"])})
    return finals


def _env_params(tracking_uri: str, experiment: str, run_ids: set[str]) -> dict[str, dict[str, str]]:
    """run id → its ``ENV_PARAMS`` values, from the store's run search (paged)."""
    client = open_client(tracking_uri)
    found = client.get_experiment_by_name(experiment)
    params: dict[str, dict[str, str]] = {}
    if found is None:
        return params
    token = None
    while True:
        page = client.search_runs(
            [found.experiment_id], run_view_type=ViewType.ACTIVE_ONLY, max_results=1000, page_token=token
        )
        for run in page:
            if run.info.run_id in run_ids:
                params[run.info.run_id] = {k: run.data.params[k] for k in ENV_PARAMS if k in run.data.params}
        token = page.token
        if not token:
            return params


def _write_json(path: Path, data: dict) -> None:
    """Write `data` to `path` through a temporary file in the same folder, so a crash leaves no half file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(handle, "w") as file:
            json.dump(data, file, indent=1, default=_plain)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def _plain(value):
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


if __name__ == "__main__":
    raise SystemExit(main())
