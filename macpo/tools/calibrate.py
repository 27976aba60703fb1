"""Calibrate SMAC-lite against the real game: ``python -m macpo.tools.calibrate [key=value ...]``.

Trains QMIX with the paper's hyperparameters on each map (one ``python -m macpo.train`` run at
a time, 1 torch thread, logged to MLflow like every run, so a killed calibration resumes: a
finished run is skipped and an interrupted one continues), then prints per map the test win
rate at 0.25M / 0.5M / 1M env steps next to the real game's (``conf/calibration/reference.yaml``).

Keys (defaults in ``DEFAULTS``): ``maps`` (comma list of SMAC maps), ``seeds``, ``t_max``,
``tracking_uri``, ``experiment``, ``backend`` (lite | smax), ``train`` (false: only the table).

A milestone's value is, per seed, the mean of the test evaluations in the ``window`` env steps
up to it (the default 50k = 5 evaluations of 32 episodes: one evaluation is ±9 points), then the
mean over seeds. Only runs of the current simulator (tags ``env.backend``, ``env.sim_version``)
and of this ``t_max`` count.
"""

from __future__ import annotations

import subprocess
import sys

import pandas as pd
from omegaconf import OmegaConf

from macpo.config.paths import CONF_DIR

REFERENCE = CONF_DIR / "calibration" / "reference.yaml"
WIN_RATE = "test/battle_won_mean"
DEFAULTS = {
    "maps": "3m,8m,2s3z,5m_vs_6m,3s_vs_5z,MMM2",
    "seeds": "0,1",
    "t_max": 1_000_000,
    "tracking_uri": "sqlite:///outputs/calibration/mlflow.db",
    "experiment": "calibration",
    "backend": "lite",
    "train": True,
    "window": 50_000,
}
#: the paper's QMIX setup; everything else is conf/train.yaml's defaults (the paper's schedule)
TRAIN_OVERRIDES = ("algo=qmix", "sampler=uniform", "torch_threads=1", "progress_bar=false")


def parse_args(argv: list[str]) -> dict:
    """``key=value`` pairs over ``DEFAULTS``; a ValueError names unknown keys and bad values."""
    args = dict(DEFAULTS)
    for item in argv:
        key, sep, value = item.partition("=")
        if not sep or key not in DEFAULTS:
            raise ValueError(f"expected key=value with key in {sorted(DEFAULTS)}, got {item!r}")
        args[key] = value
    args["maps"] = [m for m in str(args["maps"]).split(",") if m]
    args["seeds"] = [int(s) for s in str(args["seeds"]).split(",") if s]
    args["t_max"] = int(float(args["t_max"]))
    args["window"] = int(float(args["window"]))
    args["train"] = str(args["train"]).lower() in ("1", "true", "yes")
    if args["t_max"] <= 0 or not args["seeds"] or not args["maps"]:
        raise ValueError("t_max must be positive and maps, seeds non-empty")
    return args


def env_configs() -> dict[str, str]:
    """SMAC map name (lower case) → its ``conf/env`` entry name."""
    out = {}
    for path in sorted((CONF_DIR / "env").glob("*.yaml")):
        cfg = OmegaConf.load(path)
        if "map_name" in cfg:
            out[str(cfg.map_name).lower()] = path.stem
    return out


def resolve_maps(maps: list[str]) -> list[tuple[str, str]]:
    """(map name, env config name) per requested map, or a ValueError naming the known maps."""
    configs = env_configs()
    unknown = [m for m in maps if m.lower() not in configs]
    if unknown:
        raise ValueError(f"unknown SMAC maps {unknown}; known: {', '.join(sorted(configs))}")
    names = {str(OmegaConf.load(CONF_DIR / "env" / f"{configs[m.lower()]}.yaml").map_name): m for m in maps}
    return [(name, configs[name.lower()]) for name in names]


def train_commands(args: dict) -> list[list[str]]:
    """One ``macpo.train`` command line per (seed, map), seed-major so every map gets a seed first."""
    return [
        [sys.executable, "-m", "macpo.train", f"env={config}", f"seed={seed}", f"t_max={args['t_max']}",
         f"env.backend={args['backend']}", f"logger.tracking_uri={args['tracking_uri']}",
         f"logger.experiment={args['experiment']}", *TRAIN_OVERRIDES]
        for seed in args["seeds"] for _, config in resolve_maps(args["maps"])
    ]  # fmt: skip


def current_sim_version(backend: str) -> str | None:
    if backend != "lite":
        return None
    from macpo.envs.smac_lite import SIM_VERSION

    return str(SIM_VERSION)


def read_points(tracking_uri: str, experiment: str, t_max: int, backend: str) -> pd.DataFrame:
    """Test win rates [map, seed, run_id, step, value, reached] of the store's QMIX calibration runs
    on the current simulator (``reached``: the run's last logged env step)."""
    from mlflow.tracking import MlflowClient

    from macpo.runs.tracking import resolve_tracking_uri, search_all_runs

    columns = ["map", "seed", "run_id", "step", "value", "reached"]
    client = MlflowClient(tracking_uri=resolve_tracking_uri(tracking_uri))
    found = client.get_experiment_by_name(experiment)
    if found is None:
        return pd.DataFrame(columns=columns)
    wanted = {"algo": "qmix", "sampler": "uniform", "t_max": str(t_max), "env.backend": backend}
    version = current_sim_version(backend)
    if version is not None:
        wanted["env.sim_version"] = version
    query = " and ".join(f"tags.`{k}` = '{v}'" for k, v in wanted.items())
    rows = []
    for run in search_all_runs(client, found.experiment_id, query):
        history = client.get_metric_history(run.info.run_id, WIN_RATE)
        steps = [m.step for key in run.data.metrics for m in client.get_metric_history(run.info.run_id, key)]
        reached = max(steps, default=0)
        for m in history:
            rows.append([run.data.tags.get("map_name"), int(run.data.tags.get("seed", -1)), run.info.run_id,
                         m.step, m.value, reached])  # fmt: skip
    return pd.DataFrame(rows, columns=columns)


def milestone_values(points: pd.DataFrame, milestones: list[int], window: int) -> pd.DataFrame:
    """Per (map, milestone): mean over seeds of each seed's mean test win rate (%) in
    (milestone - window, milestone]; NaN where no seed has reached the milestone. Columns
    map, milestone, value, seeds (how many seeds reached it)."""
    rows = []
    for map_name, runs in points.groupby("map"):
        for milestone in milestones:
            per_seed = []
            for _, run in runs.groupby("run_id"):
                if run["reached"].iloc[0] < milestone:
                    continue
                near = run[(run["step"] > milestone - window) & (run["step"] <= milestone)]
                if not near.empty:
                    per_seed.append(100.0 * near["value"].mean())
            value = sum(per_seed) / len(per_seed) if per_seed else float("nan")
            rows.append([map_name, milestone, value, len(per_seed)])
    return pd.DataFrame(rows, columns=["map", "milestone", "value", "seeds"])


#: the targets are judged on the mean of at least this many seeds
MIN_SEEDS = 2


def target_status(values: dict[int, float], targets, seeds: dict[int, int] | None = None) -> str:
    """'met', 'MISSED (...)', 'in band, ...' (fewer than MIN_SEEDS seeds) or 'pending' for a map's
    targets ({at, min, max} or a list of them); ``seeds`` counts the seeds behind each milestone."""
    if targets is None:
        return ""
    targets = targets if isinstance(targets, list) else [targets]
    misses, pending = [], False
    for t in targets:
        value = values.get(int(t["at"]), float("nan"))
        if value != value:  # NaN: not reached yet
            pending = True
            continue
        lo, hi = t.get("min", float("-inf")), t.get("max", float("inf"))
        if not lo <= value <= hi:
            misses.append(f"{value:.0f}% at {int(t['at']) / 1e6:g}M, want {_band(lo, hi)}")
    if misses:
        return "MISSED (" + "; ".join(misses) + ")"
    if pending:
        return "pending"
    fewest = min((seeds or {}).get(int(t["at"]), MIN_SEEDS) for t in targets)
    return "met" if fewest >= MIN_SEEDS else f"in band, {fewest} seed(s) (needs >= {MIN_SEEDS})"


def _band(lo: float, hi: float) -> str:
    if lo == float("-inf"):
        return f"<= {hi:g}%"
    if hi == float("inf"):
        return f">= {lo:g}%"
    return f"{lo:g}-{hi:g}%"


def calibration_table(points: pd.DataFrame, reference: dict, maps: list[str], window: int) -> pd.DataFrame:
    """One row per map: lite's win rate at each milestone beside the real game's, steps reached,
    seeds, and whether the project's targets are met."""
    milestones = [int(m) for m in reference["milestones"]]
    values = milestone_values(points, milestones, window)
    rows = []
    for map_name in maps:
        ref = reference["maps"].get(map_name, {})
        real = ref.get("real", {})
        mine = values[values["map"] == map_name].set_index("milestone")
        reached = points.loc[points["map"] == map_name].groupby("run_id")["reached"].first()
        row = {"map": map_name, "runs": len(reached), "steps reached": ",".join(f"{r / 1e6:.2f}M" for r in reached)}
        for m in milestones:
            value = mine["value"].get(m, float("nan"))
            row[f"lite {m / 1e6:g}M"] = "-" if value != value else f"{value:.0f}% (n={int(mine['seeds'][m])})"
            row[f"real {m / 1e6:g}M"] = f"{real[m]}%" if m in real else "-"
        row["real final"] = f"{real['final']}%" if "final" in real else "-"
        row["target"] = target_status(dict(mine["value"]), ref.get("target"), dict(mine["seeds"]))
        rows.append(row)
    return pd.DataFrame(rows)


def main(argv: list[str] | None = None) -> pd.DataFrame:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    maps = [name for name, _ in resolve_maps(args["maps"])]  # bad names fail before any compute
    reference = OmegaConf.to_container(OmegaConf.load(REFERENCE))
    if args["train"]:
        commands = train_commands(args)
        for i, cmd in enumerate(commands, 1):
            print(f"[calibrate {i}/{len(commands)}] {' '.join(cmd[1:])}", flush=True)
            done = subprocess.run(cmd)
            if done.returncode != 0:
                print(f"[calibrate] run exited with {done.returncode}; continuing (rerun to resume it)", flush=True)
    points = read_points(args["tracking_uri"], args["experiment"], args["t_max"], args["backend"])
    table = calibration_table(points, reference, maps, args["window"])
    version = current_sim_version(args["backend"])
    print(f"\nQMIX test win rate, {args['backend']}" + (f" sim_version {version}" if version else "")
          + f", t_max {args['t_max']:,}; real game: conf/calibration/reference.yaml")  # fmt: skip
    print(table.to_string(index=False))
    return table


if __name__ == "__main__":
    try:
        main()
    except ValueError as error:
        sys.exit(f"macpo.tools.calibrate: {error}")
