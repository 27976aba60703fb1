"""Which runs make up each of the paper's figures, and what a line and a panel are in each.

A run belongs to a figure by its ``sweep`` tag when any run carries that figure's sweep name;
otherwise by content, among runs whose sweep is not one of the paper's (``none`` or a grid of
the user's own): e.g. any predator-prey run feeds Figure 2, so a demo grid of QMIX on
``predator_prey_small`` still produces it. Content rules may put one run in several figures
(the MAC-PO curve appears in Figures 1, 3 and 4 of the paper).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from analysis.style import METHOD_COLOURS, task_label

WIN_RATE = "test/battle_won_mean"
TEST_RETURN = "test/return_mean"
SMAC_MAPS = ("3s_vs_5z", "5m_vs_6m", "mmm2")  # the paper's order: hard, hard, super hard
PREDATOR_PREY_PREFIX = "predator_prey"
REFERENCE_METHOD = "macpo"
ABLATION_TERMS = {
    "macpo_no_bellman": "Bellman error term",
    "macpo_no_value": "value enhancement term",
    "macpo_no_joint": "joint action probability term",
}
MARL_ALGOS = ("qmix", "ow_qmix", "cw_qmix", "macpo")


@dataclass(frozen=True)
class FigureSpec:
    """One of the paper's figures: its runs, its y metric, and what a line and a panel are."""

    name: str  # output file stem and the figure's sweep name
    title: str
    sweeps: tuple[str, ...]  # sweep tags that put a run in this figure
    metric: str
    scale: float  # value multiplier for display (win rate as a percentage)
    y_label: str
    method_tag: str  # the tag one line stands for: "sampler" or "algo"
    paper_methods: tuple[str, ...]  # the lines the paper draws (those this suite implements)
    paper_tasks: tuple[str, ...]  # the panels the paper draws
    requirement: str  # what is needed when no run matches, for the skip message
    content: Callable[[pd.DataFrame], pd.Series]  # mask over the run table (one row per run)

    @property
    def is_win_rate(self) -> bool:
        return self.metric == WIN_RATE


def _smac_replay(runs: pd.DataFrame) -> pd.Series:
    return runs["is_smac"] & (runs["algo"] == "macpo") & ~runs["sampler"].isin(ABLATION_TERMS)


def _predator_prey(runs: pd.DataFrame) -> pd.Series:
    return _is_predator_prey(runs["env"])


def _smac_marl(runs: pd.DataFrame) -> pd.Series:
    return runs["is_smac"] & ((runs["algo"] != "macpo") | (runs["sampler"] == REFERENCE_METHOD))


def _smac_ablation(runs: pd.DataFrame) -> pd.Series:
    member = runs["is_smac"] & (runs["algo"] == "macpo")
    member &= runs["sampler"].isin([REFERENCE_METHOD, *ABLATION_TERMS])
    maps_with_ablations = runs.loc[member & runs["sampler"].isin(ABLATION_TERMS), "env"].unique()
    return member & runs["env"].isin(maps_with_ablations)


FIG1_REPLAY = FigureSpec(
    name="fig1_replay",
    title="Figure 1: MAC-PO against other replay schemes (SMAC)",
    sweeps=("fig1_replay",),
    metric=WIN_RATE,
    scale=100.0,
    y_label="Test win rate (%)",
    method_tag="sampler",
    paper_methods=("macpo", "macpo_approx", "per", "pser", "discor", "remern"),
    paper_tasks=SMAC_MAPS,
    requirement=f"sweep=fig1_replay, or untagged SMAC runs with algo=macpo logging {WIN_RATE}",
    content=_smac_replay,
)
FIG2_PREDATOR_PREY = FigureSpec(
    name="fig2_predator_prey",
    title="Figure 2: MARL algorithms on predator-prey",
    sweeps=("fig2_predator_prey", "fig2_predator_prey_all"),
    metric=TEST_RETURN,
    scale=1.0,
    y_label="Test return",
    method_tag="algo",
    paper_methods=MARL_ALGOS,
    paper_tasks=(),
    requirement=f"sweep=fig2_predator_prey(_all), or untagged predator_prey* runs logging {TEST_RETURN}",
    content=_predator_prey,
)
FIG3_SMAC_MARL = FigureSpec(
    name="fig3_smac_marl",
    title="Figure 3: MARL algorithms on SMAC",
    sweeps=("fig3_smac_marl",),
    metric=WIN_RATE,
    scale=100.0,
    y_label="Test win rate (%)",
    method_tag="algo",
    paper_methods=MARL_ALGOS,
    paper_tasks=SMAC_MAPS,
    requirement=f"sweep=fig3_smac_marl, or untagged SMAC runs of QMIX/WQMIX/MAC-PO logging {WIN_RATE}",
    content=_smac_marl,
)
FIG4_ABLATION = FigureSpec(
    name="fig4_ablation",
    title="Figure 4: MAC-PO ablations (SMAC MMM2)",
    sweeps=("fig4_ablation",),
    metric=WIN_RATE,
    scale=100.0,
    y_label="Test win rate (%)",
    method_tag="sampler",
    paper_methods=(REFERENCE_METHOD, *ABLATION_TERMS),
    paper_tasks=("mmm2",),
    requirement=(
        "sweep=fig4_ablation, or untagged SMAC runs with algo=macpo and a sampler among "
        f"{', '.join(ABLATION_TERMS)} logging {WIN_RATE}"
    ),
    content=_smac_ablation,
)
FIGURES = (FIG1_REPLAY, FIG2_PREDATOR_PREY, FIG3_SMAC_MARL, FIG4_ABLATION)
FIGURE_SWEEPS = frozenset(sweep for spec in FIGURES for sweep in spec.sweeps)


def run_table(points: pd.DataFrame) -> pd.DataFrame:
    """One row per run of a tidy frame, with ``is_smac`` (a SMAC map, or logs win rates)."""
    runs = points.drop_duplicates("run_id").drop(columns=["step", "metric", "value"], errors="ignore")
    logs_wins = points.loc[points["metric"] == WIN_RATE, "run_id"].unique()
    is_predator_prey = _is_predator_prey(runs["env"])
    runs["is_smac"] = ~is_predator_prey & (runs["env"].isin(SMAC_MAPS) | runs["run_id"].isin(logs_wins))
    return runs.reset_index(drop=True)


def figure_runs(points: pd.DataFrame, spec: FigureSpec) -> pd.DataFrame:
    """The run table of `spec`'s runs: its sweep's runs if any, else those its content rule takes."""
    runs = run_table(points)
    tagged = runs["sweep"].isin(spec.sweeps)
    if tagged.any():
        return runs[tagged]
    untagged = runs[~runs["sweep"].isin(FIGURE_SWEEPS)]
    return untagged[spec.content(untagged)]


def select_runs(points: pd.DataFrame, spec: FigureSpec) -> pd.DataFrame:
    """The points of `spec`'s metric from the runs in `spec`, with ``task`` and ``method`` columns.

    ``value`` is scaled for display (win rates in percent). A line's ``method`` is the run's
    ``spec.method_tag`` tag; where one such tag appears with several values of the other tag
    (QMIX with two samplers), the line is ``algo+sampler`` so different setups never pool.
    Rows come in panel order (``ordered_tasks``), then method order, seed and step.
    """
    members = figure_runs(points, spec)
    chosen = points[points["run_id"].isin(members["run_id"]) & (points["metric"] == spec.metric)].copy()
    if chosen.empty:
        return chosen.assign(task=pd.Series(dtype=str), method=pd.Series(dtype=str))
    chosen["value"] = chosen["value"] * spec.scale
    chosen["task"] = _task_names(chosen)
    chosen["method"] = _method_names(chosen, spec.method_tag)
    task_rank = {task: i for i, task in enumerate(ordered_tasks(chosen, spec))}
    method_rank = {method: i for i, method in enumerate(ordered_methods(chosen["method"]))}
    order = chosen.assign(_task=chosen["task"].map(task_rank), _method=chosen["method"].map(method_rank))
    order = order.sort_values(["_task", "_method", "seed", "run_id", "step"], kind="stable")
    return order.drop(columns=["_task", "_method"]).reset_index(drop=True)


def ordered_tasks(selection: pd.DataFrame, spec: FigureSpec) -> list[str]:
    """Panels in the paper's order, then the rest: SMAC maps, or predator-prey by punishment."""
    tasks = selection.drop_duplicates("task")[["task", "env", "punishment"]]
    paper_rank = {task: i for i, task in enumerate(spec.paper_tasks)}
    keyed = sorted(
        tasks.itertuples(index=False),
        key=lambda row: (
            paper_rank.get(row.task, len(paper_rank)),
            str(row.env),
            -row.punishment if not np.isnan(row.punishment) else 0.0,  # 0, -0.5, -1.5, -2 as in the paper
            row.task,
        ),
    )
    return [row.task for row in keyed]


def ordered_methods(methods) -> list[str]:
    """Methods in the palette's order (MAC-PO first), unknown ones alphabetically after."""
    known = list(METHOD_COLOURS)
    return sorted(set(methods), key=lambda m: (known.index(m) if m in known else len(known), m))


def missing_message(points: pd.DataFrame, spec: FigureSpec) -> str:
    """The one line printed when `spec` has nothing to plot, naming what is missing."""
    members = figure_runs(points, spec)
    if members.empty:
        return f"skipped {spec.name}: no runs ({spec.title}); needs {spec.requirement}"
    return f"skipped {spec.name}: its {len(members)} run(s) logged no {spec.metric} ({spec.title})"


def coverage_note(selection: pd.DataFrame, spec: FigureSpec) -> str | None:
    """A line naming the paper's panels and lines absent from a partial grid, None if complete."""
    split = sorted({t.split(" [")[0] for t in selection["task"] if " [" in t})
    present = set(selection["task"]) | set(split)
    missing_tasks = [task_label(t) for t in spec.paper_tasks if t not in present]
    missing_methods = [m for m in spec.paper_methods if m not in set(selection["method"])]
    parts = [f"runs from several simulators on {', '.join(split)}, drawn as separate panels"] if split else []
    if missing_tasks:
        parts.append(f"no runs on {', '.join(missing_tasks)}")
    if missing_methods:
        parts.append(f"no {spec.method_tag} {', '.join(missing_methods)}")
    return f"{spec.name}: partial grid, plotting what exists ({'; '.join(parts)})" if parts else None


def _task_names(points: pd.DataFrame) -> pd.Series:
    """A SMAC run's task is its map; a predator-prey run's is env and punishment. A map whose runs
    come from several simulators (``simulator``: SMAC-lite versions, SMAX, the game) splits into
    one task per simulator, ``map [simulator]``, so they are never pooled."""
    is_predator_prey = _is_predator_prey(points["env"])
    with_punishment = points["env"].astype(str) + ", p=" + points["punishment"].map("{:g}".format)
    pp_task = with_punishment.where(points["punishment"].notna(), points["env"].astype(str))
    smac_task = points["env"].astype(str)
    if "simulator" in points:
        simulator = points["simulator"].fillna("").astype(str)
        mixed = simulator.groupby(smac_task).transform("nunique") > 1
        smac_task = smac_task.where(~mixed, smac_task + " [" + simulator.replace("", "untagged") + "]")
    return pp_task.where(is_predator_prey, smac_task)


def task_simulators(selection: pd.DataFrame) -> dict[str, str]:
    """task → the simulator(s) its runs used ("" when untagged: predator-prey), for panel titles."""
    if "simulator" not in selection:
        return {}
    sims = selection.assign(simulator=selection["simulator"].fillna("").astype(str)).groupby("task")["simulator"]
    return {task: ", ".join(sorted(s for s in set(values) if s)) for task, values in sims}


def _method_names(points: pd.DataFrame, method_tag: str) -> pd.Series:
    """The `method_tag` tag; ``primary+secondary`` for non-default setups of an ambiguous one.

    The default setup keeps the plain name: an algorithm with its own sampler (``macpo`` with
    ``macpo``, the QMIX family with ``uniform``), a sampler on the MAC-PO backbone.
    """
    other_tag = "algo" if method_tag == "sampler" else "sampler"
    primary = points[method_tag].fillna("?").astype(str)
    secondary = points[other_tag].fillna("?").astype(str)
    setups = pd.DataFrame({"primary": primary, "secondary": secondary}).drop_duplicates()
    ambiguous = primary.isin(set(setups.loc[setups["primary"].duplicated(keep=False), "primary"]))
    if method_tag == "algo":
        default = (secondary == primary) | (secondary == "uniform")
    else:
        default = secondary == REFERENCE_METHOD
    return primary.where(~ambiguous | default, primary + "+" + secondary)


def _is_predator_prey(env: pd.Series) -> pd.Series:
    return env.fillna("").astype(str).str.startswith(PREDATOR_PREY_PREFIX)
