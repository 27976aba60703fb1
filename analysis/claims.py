"""The paper's headline claims, each measured on our runs and given a verdict.

A claim compares two methods on one task (a SMAC map, or predator-prey at one punishment):
``method`` against ``other``, or against the best of ``others`` there (the paper's "second
best"), on a per-run score: final performance (``analysis.tables.final_scores``: the mean over
the last 10% of the budget; win rates in points) or, for "converges fastest", the area under the
test curve (``auc_scores``: the mean of the curve over the whole budget, trapezoids over the
evaluations; a method that gets to a level sooner has the larger area).

The measurement is the difference of the two methods' mean scores with a 95% stratified-
bootstrap CI (rliable, runs resampled within each method, ``BOOTSTRAP_REPS`` resamples) and
rliable's probability of improvement P(method > other) with its CI, from one bootstrap. The
verdict, by ``VERDICT_RULE`` (stated on the results page):

- a direction claim ("A above B", "A leads", "removing a term costs"): **reproduced** when the
  difference's CI lies above 0, **contradicted** when it lies below 0, **inconclusive** when it
  contains 0;
- "close" (MAC-PO Approx. against MAC-PO): **reproduced** when the CI lies within
  ±``CLOSE_MARGIN`` points, **contradicted** when it lies wholly outside, else inconclusive;
- fewer than ``MIN_RUNS`` runs of either method: inconclusive; no runs of the task or of a
  method: **not measured**.

The paper's numbers (its gaps at 2M steps on StarCraft II) are targets shown beside ours, not
part of the verdict: at a quarter of the budget on a stand-in simulator the size of a gap is not
expected to carry over, its sign is. Where the paper gives a number we say whether our CI holds it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import pandas as pd
from rliable import library as rly

from analysis.selection import (
    ABLATION_TERMS,
    FIG1_REPLAY,
    FIG2_PREDATOR_PREY,
    FIG3_SMAC_MARL,
    FIG4_ABLATION,
    FIGURES,
    REFERENCE_METHOD,
    FigureSpec,
    task_simulators,
)
from analysis.style import method_label, task_label
from analysis.tables import (
    BOOTSTRAP_REPS,
    CONFIDENCE,
    SCORE_COLUMNS,
    _seeded_global_rng,
    final_scores,
    probability_of_improvement,
    score_row,
)

MIN_RUNS = 2
CLOSE_MARGIN = 10.0  # points: the largest MAC-PO / MAC-PO Approx. gap the paper still calls "almost identical"
REPLAY_SCHEMES = ("macpo_approx", "per", "pser", "discor", "remern")  # the paper's Fig. 1 lines besides MAC-PO
MARL_BASELINES = ("qmix", "ow_qmix", "cw_qmix", "qplex", "vdac", "fop", "dop")

REPRODUCED, CONTRADICTED, INCONCLUSIVE, NOT_MEASURED = "reproduced", "contradicted", "inconclusive", "not measured"
VERDICT_RULE = (
    f"A direction claim (A above B) is **reproduced** when the 95% stratified-bootstrap CI of the difference "
    f"A − B (mean over runs) lies entirely above 0, **contradicted** when it lies entirely below 0, and "
    f"**inconclusive** when it contains 0. The closeness claim is reproduced when the CI lies within "
    f"±{CLOSE_MARGIN:g} points (the largest gap between MAC-PO and MAC-PO Approx. that the paper still calls "
    f"almost identical), contradicted when it lies wholly outside, inconclusive otherwise. A comparison with "
    f"fewer than {MIN_RUNS} runs of either method is inconclusive; a claim on a map, punishment or method we "
    f"have no runs of is not measured. A claim against the best of several methods is reproduced only when "
    f"each of them has at least {MIN_RUNS} runs (a missing one may be the second best), and contradicted as "
    f"soon as the CI puts one present method above MAC-PO. The paper's gaps are targets, shown beside ours and "
    f"checked against our "
    f"CI, but not part of the verdict: our budget is a quarter of the paper's (or less) and SMAC-lite is not "
    f"StarCraft II, so the size of a gap is not expected to carry over, its sign is. \"Second best\" is the "
    f"best other method by mean in our runs (choosing it from the same runs can only make the comparison "
    f"harder for MAC-PO). With 3 seeds a percentile bootstrap CI is narrow (it resamples 3 runs), so a "
    f"reproduced verdict says the seeds separate, not that the gap is pinned down."
)


@dataclass(frozen=True)
class Claim:
    """One sentence of the paper, as a comparison we can measure."""

    figure: FigureSpec
    statement: str  # the paper's claim, short
    paper: str  # the paper's number, as text
    method: str
    others: tuple[str, ...]  # one method, or the candidates for "the best other"
    kind: str = "above"  # "above" (method over other), "close", or "faster" (area under the curve)
    target: float | None = None  # the paper's gap method - other, in the page's units
    map_name: str | None = None  # SMAC map the claim is about (None: every map the grid holds)
    punishment: float | None = None  # predator-prey punishment the claim is about (None: every one)
    note: str = ""
    paper_claim: bool = True  # False for our own controls (uniform replay)

    @property
    def best_of(self) -> bool:
        return len(self.others) > 1


def _fig1_margin(map_name: str, gap: float) -> Claim:
    return Claim(FIG1_REPLAY, "MAC-PO beats the second-best replay scheme", f"+{gap:g} points", REFERENCE_METHOD,
                 REPLAY_SCHEMES, target=gap, map_name=map_name)  # fmt: skip


def _fig3_margin(map_name: str, gap: float) -> Claim:
    return Claim(FIG3_SMAC_MARL, "MAC-PO beats the second-best MARL algorithm", f"+{gap:g} points",
                 REFERENCE_METHOD, MARL_BASELINES, target=gap, map_name=map_name)  # fmt: skip


def _fig4_cost(ablation: str, gap: float) -> Claim:
    return Claim(FIG4_ABLATION, f"removing the {ABLATION_TERMS[ablation]} costs", f"−{gap:g} points on MMM2",
                 REFERENCE_METHOD, (ablation,), target=gap,
                 note="the paper's ablation is on MMM2 at 2M steps; ours is on the map the grid holds")  # fmt: skip


CLAIMS: tuple[Claim, ...] = (
    _fig1_margin("3s_vs_5z", 10),
    _fig1_margin("5m_vs_6m", 6),
    _fig1_margin("mmm2", 4),
    Claim(FIG1_REPLAY, "DisCor has a higher final win rate than PER", "higher", "discor", ("per",)),
    Claim(FIG1_REPLAY, "ReMERN has a higher final win rate than PER", "higher", "remern", ("per",)),
    Claim(FIG1_REPLAY, "MAC-PO Approx. is almost identical to MAC-PO", "within 4–10 points", REFERENCE_METHOD,
          ("macpo_approx",), kind="close"),  # fmt: skip
    Claim(FIG2_PREDATOR_PREY, "MAC-PO converges fastest", "fastest (area under the curve)", REFERENCE_METHOD,
          MARL_BASELINES, kind="faster"),  # fmt: skip
    Claim(FIG2_PREDATOR_PREY, "MAC-PO leads at the hard punishment", "best final return", REFERENCE_METHOD,
          MARL_BASELINES, punishment=-2.0),  # fmt: skip
    _fig3_margin("3s_vs_5z", 11),
    _fig3_margin("5m_vs_6m", 4),
    _fig3_margin("mmm2", 16),
    _fig4_cost("macpo_no_joint", 18),
    _fig4_cost("macpo_no_bellman", 15),
    _fig4_cost("macpo_no_value", 10),
    Claim(FIG1_REPLAY, "MAC-PO beats uniform replay on the same backbone (our control)", "–", REFERENCE_METHOD,
          ("uniform",), paper_claim=False),  # fmt: skip
)


@dataclass(frozen=True)
class Measurement:
    """One claim measured on one task of one grid (or not measured)."""

    claim: Claim
    grid: str  # the results file (or store) it was measured on; "" when not measured
    task: str
    other: str  # the method compared with (the best of ``others`` where the claim says "second best")
    n: int  # runs of the method
    n_other: int
    value: float  # the method's mean score
    other_value: float
    difference: float
    low: float
    high: float
    probability: float  # P(method > other)
    probability_low: float
    probability_high: float
    verdict: str
    reason: str = ""  # why not measured or inconclusive
    simulator: str = ""  # SMAC: which simulator the runs used (lite v3, sc2, ...)

    @property
    def target_in_ci(self) -> bool | None:
        if self.claim.target is None or self.verdict == NOT_MEASURED:
            return None
        return bool(self.low <= self.claim.target <= self.high)


def auc_scores(selection: pd.DataFrame) -> pd.DataFrame:
    """Per run, the mean of its test curve over its budget (trapezoids): ``final_scores``'s columns."""
    rows = []
    for run_id, run in selection.groupby("run_id", sort=False):
        per_step = run.groupby("step")["value"].mean().sort_index()
        steps, values = per_step.index.to_numpy(float), per_step.to_numpy(float)
        budget = run["t_max"].iloc[0]
        keep = steps <= (steps.max() if pd.isna(budget) else float(budget))
        steps, values = steps[keep], values[keep]
        span = steps[-1] - steps[0]
        trapezoids = np.diff(steps) * (values[1:] + values[:-1]) / 2  # [points - 1]
        area = float(trapezoids.sum() / span) if span > 0 else float(values[-1])
        rows.append(score_row(run_id, run, steps[-1], area))
    return pd.DataFrame(rows, columns=SCORE_COLUMNS)


def compare(
    x: np.ndarray, y: np.ndarray, *, reps: int = BOOTSTRAP_REPS, confidence: float = CONFIDENCE, seed: int = 0
) -> tuple[float, float, float, float, float, float]:
    """``difference, low, high, probability, p_low, p_high`` of runs `x` against runs `y` (1-D).

    The difference of means and P(x > y) (``analysis.tables.probability_of_improvement``), with
    stratified-bootstrap CIs from one rliable bootstrap (each method's runs resampled on their own).
    """
    pair = (np.asarray(x, float)[:, None], np.asarray(y, float)[:, None])  # [runs, 1 task] each

    def statistics(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return np.array([a.mean() - b.mean(), probability_of_improvement(a, b)])

    with _seeded_global_rng(seed):
        point, interval = rly.get_interval_estimates(
            {"pair": pair}, statistics, reps=reps, confidence_interval_size=confidence
        )
    (difference, probability), (low, p_low), (high, p_high) = point["pair"], interval["pair"][0], interval["pair"][1]
    return float(difference), float(low), float(high), float(probability), float(p_low), float(p_high)


def verdict(claim: Claim, low: float, high: float, n: int, n_other: int) -> tuple[str, str]:
    """The verdict for a CI [low, high] of method − other, and why when it is inconclusive."""
    if min(n, n_other) < MIN_RUNS:
        return INCONCLUSIVE, f"fewer than {MIN_RUNS} runs of a method"
    if claim.kind == "close":
        if -CLOSE_MARGIN <= low and high <= CLOSE_MARGIN:
            return REPRODUCED, ""
        if low > CLOSE_MARGIN or high < -CLOSE_MARGIN:
            return CONTRADICTED, ""
        return INCONCLUSIVE, f"the CI reaches past ±{CLOSE_MARGIN:g}"
    if low > 0:
        return REPRODUCED, ""
    if high < 0:
        return CONTRADICTED, ""
    return INCONCLUSIVE, "the CI contains 0"


def measure(
    claim: Claim, selection: pd.DataFrame, grid: str, *, reps: int = BOOTSTRAP_REPS, seed: int = 0
) -> list[Measurement]:
    """`claim` on each task of `selection` (``select_runs`` of the claim's figure) it applies to."""
    tasks = [task for task in dict.fromkeys(selection["task"]) if _applies(claim, selection, task)]
    simulators = task_simulators(selection)
    scores_of = auc_scores if claim.kind == "faster" else final_scores
    found = []
    for task in tasks:
        scores = scores_of(selection[selection["task"] == task])
        mine = scores.loc[scores["method"] == claim.method, "final"].to_numpy(float)
        candidates = scores[scores["method"].isin(claim.others)]
        if not len(mine) or candidates.empty:
            missing = claim.method if not len(mine) else claim.others[0] if not claim.best_of else "any other method"
            missing = method_label(missing)
            found.append(not_measured(claim, f"no runs of {missing} on {task_label(task)}", grid=grid, task=task))
            continue
        means = candidates.groupby("method")["final"].mean()
        other = str(means.idxmax()) if claim.best_of else claim.others[0]
        theirs = candidates.loc[candidates["method"] == other, "final"].to_numpy(float)
        difference, low, high, probability, p_low, p_high = compare(mine, theirs, reps=reps, seed=seed)
        decided, reason = verdict(claim, low, high, len(mine), len(theirs))
        # a method without runs may be the real second best; it can only raise the bar, so a
        # contradiction stands but a reproduction waits for it
        runs_of = candidates["method"].value_counts()
        unrun = [method_label(m) for m in claim.others if runs_of.get(m, 0) < MIN_RUNS]
        if claim.best_of and decided == REPRODUCED and unrun:
            decided = INCONCLUSIVE
            reason = f"fewer than {MIN_RUNS} runs of {', '.join(unrun)}, which may be the second best"
        found.append(
            Measurement(claim, grid, task, other, len(mine), len(theirs), float(mine.mean()), float(theirs.mean()),
                        difference, low, high, probability, p_low, p_high, decided, reason,
                        simulators.get(task, ""))  # fmt: skip
        )
    return found


def not_measured(claim: Claim, reason: str, *, grid: str = "", task: str = "") -> Measurement:
    nan = float("nan")
    return Measurement(claim, grid, task, "", 0, 0, nan, nan, nan, nan, nan, nan, nan, nan, NOT_MEASURED, reason)


def measure_all(
    selections: Iterable[tuple[str, FigureSpec, pd.DataFrame]],
    claims: Iterable[Claim] = CLAIMS,
    *,
    reps: int = BOOTSTRAP_REPS,
    seed: int = 0,
) -> list[Measurement]:
    """Every claim on every grid it applies to; a claim no grid holds is one not-measured row.

    `selections` are ``(grid name, figure, select_runs(points, figure))`` per grid.
    """
    selections = list(selections)
    found = []
    for claim in claims:
        rows = []
        for grid, spec, selection in selections:
            if spec.name == claim.figure.name and not selection.empty:
                rows += measure(claim, selection, grid, reps=reps, seed=seed)
        found += rows or [not_measured(claim, _absent(claim))]
    return found


def claims_table(found: list[Measurement]) -> pd.DataFrame:
    """One row per measurement, the numbers unrounded (for CSV and tests)."""
    rows = [
        {
            "figure": m.claim.figure.name,
            "claim": m.claim.statement,
            "paper": m.claim.paper,
            "grid": m.grid,
            "task": m.task,
            "method": m.claim.method,
            "other": m.other,
            "n": m.n,
            "n_other": m.n_other,
            "value": m.value,
            "other_value": m.other_value,
            "difference": m.difference,
            "low": m.low,
            "high": m.high,
            "probability": m.probability,
            "probability_low": m.probability_low,
            "probability_high": m.probability_high,
            "verdict": m.verdict,
            "reason": m.reason,
        }
        for m in found
    ]
    return pd.DataFrame(rows)


def claims_markdown(found: list[Measurement]) -> str:
    """The claims table of the results page: paper, ours with CIs, P(improvement), verdict."""
    from analysis.tables import markdown_table

    header = ["fig.", "the paper's claim", "paper", "where (ours)", "compared with", "ours: difference [95% CI]",
              "P(A > B) [95% CI]", "verdict"]  # fmt: skip
    rows = []
    for m in found:
        number = _FIGURE_NUMBER[m.claim.figure.name]
        figure = number if m.claim.paper_claim else f"{number} (control)"
        claim = f"{m.claim.statement}" + (f" ({_where(m.claim)})" if _where(m.claim) else "")
        if m.verdict == NOT_MEASURED:
            where = task_label(m.task) if m.task else "–"
            rows.append([figure, claim, m.claim.paper, where, "–", "–", "–", f"not measured: {m.reason}"])
            continue
        unit = _unit(m.claim)
        measured = f"{m.difference:+.{unit[1]}f} [{m.low:+.{unit[1]}f}, {m.high:+.{unit[1]}f}] {unit[0]}".strip()
        means = f"{m.value:.{unit[1]}f} vs {m.other_value:.{unit[1]}f}"
        if m.claim.target is not None:
            measured += f"; paper's {m.claim.target:g} {'in' if m.target_in_ci else 'outside'} our CI"
        simulator = f" ({m.simulator})" if m.simulator and "[" not in m.task else ""
        where = f"{task_label(m.task)}{simulator}, {m.grid}"
        compared = f"{method_label(m.other)} ({means}; n={m.n}/{m.n_other})"
        if m.claim.kind == "faster":
            compared += ", area under the curve"
        probability = f"{m.probability:.2f} [{m.probability_low:.2f}, {m.probability_high:.2f}]"
        decided = m.verdict + (f" ({m.reason})" if m.reason else "")
        rows.append([figure, claim, m.claim.paper, where, compared, measured, probability, decided])
    return markdown_table(header, rows)


_FIGURE_NUMBER = {spec.name: str(number) for number, spec in enumerate(FIGURES, start=1)}


def figure_number(claim: Claim) -> int:
    """The paper's figure a claim comes from (1-4)."""
    return int(_FIGURE_NUMBER[claim.figure.name])


def short_label(m: Measurement) -> str:
    """One claim as a summary names it: "Fig. 2 MAC-PO converges fastest (predator_prey, p=-0.5)"."""
    where = task_label(m.task) if m.task else _where(m.claim)
    return f"Fig. {figure_number(m.claim)} {m.claim.statement}" + (f" ({where})" if where else "")


def _applies(claim: Claim, selection: pd.DataFrame, task: str) -> bool:
    rows = selection[selection["task"] == task].iloc[:1]
    if claim.map_name is not None:
        return str(rows["env"].iloc[0]).lower() == claim.map_name.lower()
    if claim.punishment is not None:
        return bool(rows["punishment"].iloc[0] == claim.punishment)
    return True


def _absent(claim: Claim) -> str:
    """Why a claim no grid holds is not measured: ``no Fig. 1 grid on 3s_vs_5z``."""
    where = _where(claim)
    return f"no Fig. {_FIGURE_NUMBER[claim.figure.name]} grid" + (f" on {where}" if where else "")


def _where(claim: Claim) -> str:
    if claim.map_name is not None:
        return task_label(claim.map_name)
    if claim.punishment is not None:
        return f"p={claim.punishment:g}"
    return ""


def _unit(claim: Claim) -> tuple[str, int]:
    return ("points", 1) if claim.figure.is_win_rate else ("", 2)
