"""Final-performance tables, probability of improvement and the paper's headline sentences.

A run's final performance is the mean of its points in the last 10% of its budget (the
``t_max`` tag; the last logged step when the tag is missing). A finished run with no point in
that window (its evaluation interval is longer than 10% of the budget) contributes its last
point; an unfinished one is left out.

Interval estimates follow rliable (Agarwal et al., 2021): IQM with 95% stratified-bootstrap
CIs per method and task, and over all tasks for win rates (a common scale; predator-prey
returns differ in scale between punishments, so they get no aggregate); and the average
probability that MAC-PO beats each other method on a task. rliable resamples with NumPy's
global generator, so each estimate seeds it and restores its state afterwards. The statistics
handed to rliable's bootstrap are NumPy versions of ``rliable.metrics.aggregate_iqm`` and
``probability_of_improvement`` (equal to them, tested): rliable's call SciPy once per resample,
which measured 8x (IQM) and 30x (probability of improvement) slower here, minutes for the
paper's full grid.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd
from rliable import library as rly

from analysis.selection import ABLATION_TERMS, REFERENCE_METHOD, FigureSpec, ordered_methods
from analysis.style import method_label, task_label

FINAL_FRACTION = 0.1
ALL_TASKS = "all tasks"
BOOTSTRAP_REPS = 2000
CONFIDENCE = 0.95


SCORE_COLUMNS = ["run_id", "task", "method", "seed", "status", "budget", "final"]


def score_row(run_id: str, run: pd.DataFrame, budget: float, final: float) -> dict:
    """One run's score: who it is (from its first point) and its `final` value over `budget`."""
    first = run.iloc[0]
    return {"run_id": run_id, "task": first["task"], "method": first["method"], "seed": first["seed"],
            "status": first["status"], "budget": budget, "final": final}  # fmt: skip


def final_scores(selection: pd.DataFrame, *, fraction: float = FINAL_FRACTION) -> pd.DataFrame:
    """One row per run: ``run_id, task, method, seed, status, budget, final`` (see module doc).

    Runs that cannot be scored (unfinished, nothing in the window) are dropped; the frame's
    ``attrs["unscored"]`` lists their ids.
    """
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction={fraction}: the final window must be in (0, 1] of the budget")
    rows, unscored = [], []
    for run_id, run in selection.groupby("run_id", sort=False):
        steps, values = run["step"].to_numpy(), run["value"].to_numpy(float)
        budget = run["t_max"].iloc[0]
        budget = float(steps.max()) if pd.isna(budget) else float(budget)
        in_window = steps >= (1 - fraction) * budget
        if in_window.any():
            final = float(np.mean(values[in_window]))
        elif run["status"].iloc[0] == "FINISHED":
            final = float(values[np.argmax(steps)])
        else:
            unscored.append(run_id)
            continue
        rows.append(score_row(run_id, run, budget, final))
    scores = pd.DataFrame(rows, columns=SCORE_COLUMNS)
    scores.attrs["unscored"] = unscored
    return scores


def final_performance_table(
    scores: pd.DataFrame,
    *,
    aggregate: bool,
    reps: int = BOOTSTRAP_REPS,
    confidence: float = CONFIDENCE,
    seed: int = 0,
) -> pd.DataFrame:
    """Per method x task: ``n_runs, mean, iqm, iqm_low, iqm_high``; plus an ``all tasks`` row.

    The aggregate (``aggregate=True``) needs the same number of runs on every task, as the
    stratified bootstrap resamples runs within tasks: a method with more runs on some tasks
    keeps its lowest-seed runs on each (``n_runs`` says how many); methods missing a task get
    no aggregate.
    """
    rows = []
    tasks = list(dict.fromkeys(scores["task"]))
    for method in ordered_methods(scores["method"]):
        mine = scores[scores["method"] == method]
        for task in tasks:
            finals = mine.loc[mine["task"] == task, "final"].to_numpy(float)
            if len(finals):
                rows.append(_iqm_row(method, task, finals[:, None], reps, confidence, seed))
        if aggregate and len(tasks) > 1 and set(mine["task"]) >= set(tasks):
            matrix = _runs_by_task(mine, tasks)  # [runs, tasks]
            rows.append(_iqm_row(method, ALL_TASKS, matrix, reps, confidence, seed))
    return pd.DataFrame(rows, columns=["method", "task", "n_runs", "mean", "iqm", "iqm_low", "iqm_high"])


def improvement_table(
    scores: pd.DataFrame,
    *,
    reference: str = REFERENCE_METHOD,
    reps: int = BOOTSTRAP_REPS,
    confidence: float = CONFIDENCE,
    seed: int = 0,
) -> pd.DataFrame:
    """P(`reference` > method) for each other method, averaged over their common tasks.

    Columns ``method, tasks, probability, low, high`` (stratified-bootstrap CI), then one
    point-estimate column per task. Empty when `reference` has no runs.
    """
    mine = scores[scores["method"] == reference]
    rows = []
    for method in ordered_methods(scores["method"]):
        if method == reference:
            continue
        theirs = scores[scores["method"] == method]
        tasks = [task for task in dict.fromkeys(mine["task"]) if task in set(theirs["task"])]
        if not tasks:
            continue
        x, y = _runs_by_task(mine, tasks), _runs_by_task(theirs, tasks)  # [runs_x, T], [runs_y, T]
        with _seeded_global_rng(seed):
            point, interval = rly.get_interval_estimates(
                {"pair": (x, y)},
                lambda a, b: np.array([probability_of_improvement(a, b)]),
                reps=reps,
                confidence_interval_size=confidence,
            )
        row = {
            "method": method,
            "tasks": len(tasks),
            "probability": float(point["pair"][0]),
            "low": float(interval["pair"][0, 0]),
            "high": float(interval["pair"][1, 0]),
        }
        for task in tasks:
            row[task] = probability_of_improvement(_runs_by_task(mine, [task]), _runs_by_task(theirs, [task]))
        rows.append(row)
    return pd.DataFrame(rows, columns=["method", "tasks", "probability", "low", "high"] + _task_columns(rows))


@dataclass(frozen=True)
class Headline:
    """One recomputed claim of the paper, with the numbers behind its sentence."""

    figure: str
    task: str
    method: str  # the method the claim is about (MAC-PO, or an ablation)
    other: str  # what it is compared with
    value: float  # mean final performance of `method`
    other_value: float
    difference: float  # value - other_value; its sign is the sentence's direction
    sentence: str


def headlines(scores: pd.DataFrame, spec: FigureSpec) -> list[Headline]:
    """The paper's claim for `spec`, per task, recomputed from mean final performance.

    Figures 1-3: MAC-PO against the best other method ("outperforms the second best by X",
    or "trails the best by X" when the data say so), then whether the two methods' per-run
    final values overlap (with a few seeds, a gap in means may be seed-to-seed variation).
    Figure 4: each ablation against full MAC-PO ("disabling the term lowers/raises the final
    win rate by X").
    """
    means = scores.groupby(["task", "method"])["final"].mean()
    found = []
    for task in dict.fromkeys(scores["task"]):
        in_task = means.loc[task]
        if REFERENCE_METHOD not in in_task.index:
            continue
        reference_value = float(in_task[REFERENCE_METHOD])
        if spec.name == "fig4_ablation":
            for method in ordered_methods(m for m in in_task.index if m in ABLATION_TERMS):
                value = float(in_task[method])
                found.append(_ablation_headline(spec, task, method, value, reference_value))
            continue
        others = in_task.drop(REFERENCE_METHOD)
        if others.empty:
            continue
        best = str(others.idxmax())
        headline = _comparison_headline(spec, task, best, reference_value, float(others[best]))
        finals = scores[scores["task"] == task]
        spread = _spread_sentence(
            spec,
            best,
            finals.loc[finals["method"] == REFERENCE_METHOD, "final"],
            finals.loc[finals["method"] == best, "final"],
        )
        found.append(replace(headline, sentence=f"{headline.sentence} {spread}"))
    return found


def headline_table(found: list[Headline]) -> pd.DataFrame:
    columns = ["figure", "task", "method", "other", "value", "other_value", "difference", "sentence"]
    return pd.DataFrame([vars(h) for h in found], columns=columns)


def performance_markdown(table: pd.DataFrame, *, digits: int = 1) -> str:
    """Methods as rows, tasks as columns, cells ``IQM [low, high] (n)``."""
    if table.empty:
        return "(no scored runs)\n"
    cell = table.apply(
        lambda r: f"{r.iqm:.{digits}f} [{r.iqm_low:.{digits}f}, {r.iqm_high:.{digits}f}] (n={r.n_runs})",
        axis=1,
    )
    wide = table.assign(cell=cell).pivot(index="method", columns="task", values="cell")
    tasks = [t for t in dict.fromkeys(table["task"]) if t != ALL_TASKS] + (
        [ALL_TASKS] if ALL_TASKS in set(table["task"]) else []
    )
    wide = wide.reindex(index=ordered_methods(wide.index), columns=tasks).fillna("–")
    header = ["method", *(task_label(t) for t in tasks)]
    rows = [[method_label(m), *wide.loc[m]] for m in wide.index]
    return markdown_table(header, rows)


def improvement_markdown(table: pd.DataFrame) -> str:
    """One row per compared method: P(MAC-PO > method) [CI] over common tasks, then per task."""
    if table.empty:
        return "(no MAC-PO runs to compare)\n"
    tasks = list(table.columns[5:])
    header = ["MAC-PO vs", "P(improvement) [95% CI]", "tasks", *(task_label(t) for t in tasks)]
    rows = [
        [
            method_label(r["method"]),
            f"{r['probability']:.2f} [{r['low']:.2f}, {r['high']:.2f}]",
            str(r["tasks"]),
            *("–" if pd.isna(r[t]) else f"{r[t]:.2f}" for t in tasks),
        ]
        for _, r in table.iterrows()
    ]
    return markdown_table(header, rows)


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    """A GitHub-flavoured Markdown table (pipes in cells escaped)."""

    def line(cells) -> str:
        return "| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |"

    return "\n".join([line(header), line(["---"] * len(header)), *(line(r) for r in rows)]) + "\n"


def iqm(scores: np.ndarray) -> float:
    """Interquartile mean of all scores (``rliable.metrics.aggregate_iqm``: 25% trimmed each end)."""
    flat = np.sort(scores, axis=None)
    cut = int(0.25 * flat.size)
    return float(flat[cut : flat.size - cut].mean())


def probability_of_improvement(scores_x: np.ndarray, scores_y: np.ndarray) -> float:
    """P(X > Y) + P(X = Y)/2 per task, averaged over tasks; ``[runs_x, T]`` and ``[runs_y, T]``.

    The Mann-Whitney U statistic over all run pairs, as ``rliable.metrics.probability_of_improvement``.
    """
    gap = scores_x[:, None, :] - scores_y[None, :, :]  # [runs_x, runs_y, T]
    per_task = (gap > 0).mean(axis=(0, 1)) + 0.5 * (gap == 0).mean(axis=(0, 1))  # [T]
    return float(per_task.mean())


def _iqm_row(method: str, task: str, matrix: np.ndarray, reps: int, confidence: float, seed: int) -> dict:
    """IQM of a ``[runs, tasks]`` matrix with its stratified-bootstrap CI."""
    with _seeded_global_rng(seed):
        point, interval = rly.get_interval_estimates(
            {method: matrix},
            lambda scores: np.array([iqm(scores)]),
            reps=reps,
            confidence_interval_size=confidence,
        )
    return {
        "method": method,
        "task": task,
        "n_runs": matrix.shape[0],
        "mean": float(matrix.mean()),
        "iqm": float(point[method][0]),
        "iqm_low": float(interval[method][0, 0]),
        "iqm_high": float(interval[method][1, 0]),
    }


def _runs_by_task(scores: pd.DataFrame, tasks: list[str]) -> np.ndarray:
    """``[runs, tasks]`` finals, lowest seeds first, cut to the task with the fewest runs."""
    columns = [
        scores[scores["task"] == task].sort_values(["seed", "run_id"])["final"].to_numpy(float) for task in tasks
    ]
    runs = min(len(c) for c in columns)
    return np.stack([c[:runs] for c in columns], axis=1)


def _task_columns(rows: list[dict]) -> list[str]:
    fixed = {"method", "tasks", "probability", "low", "high"}
    return list(dict.fromkeys(key for row in rows for key in row if key not in fixed))


@contextlib.contextmanager
def _seeded_global_rng(seed: int):
    """Seed NumPy's global generator (rliable's bootstrap draws from it), then restore it."""
    state = np.random.get_state()
    np.random.seed(seed)
    try:
        yield
    finally:
        np.random.set_state(state)


def _comparison_headline(spec: FigureSpec, task: str, best: str, value: float, best_value: float) -> Headline:
    difference = value - best_value
    amount, numbers = _amount(spec, abs(difference)), _numbers(spec, value, best_value)
    where = f"On {task_label(task)}"
    if difference > 0:
        sentence = f"{where}, MAC-PO outperforms the second best, {method_label(best)}, by {amount}{numbers}."
    elif difference < 0:
        sentence = f"{where}, MAC-PO trails the best method, {method_label(best)}, by {amount}{numbers}."
    else:
        sentence = f"{where}, MAC-PO ties with {method_label(best)}{numbers}."
    return Headline(spec.name, task, REFERENCE_METHOD, best, value, best_value, difference, sentence)


def _spread_sentence(spec: FigureSpec, other: str, mine: pd.Series, theirs: pd.Series) -> str:
    """Whether the runs separate: with a few seeds a gap in means can be seed-to-seed noise."""
    fmt = "{:.1f}%" if spec.is_win_rate else "{:.2f}"

    def span(values: pd.Series) -> str:
        return f"[{fmt.format(values.min())}, {fmt.format(values.max())}]"

    if mine.min() > theirs.max() or theirs.min() > mine.max():
        verdict = "they do not overlap"
    elif mine.mean() == theirs.mean():
        verdict = "they overlap"
    else:
        verdict = "they overlap, so the gap is within seed-to-seed variation"
    return (
        f"Over {len(mine)} and {len(theirs)} runs, MAC-PO's final values span {span(mine)} and "
        f"{method_label(other)}'s {span(theirs)}: {verdict}."
    )


def _ablation_headline(spec: FigureSpec, task: str, ablation: str, value: float, full_value: float) -> Headline:
    difference = value - full_value
    what = f"On {task_label(task)}, disabling the {ABLATION_TERMS[ablation]}"
    if difference == 0:
        verb = "leaves the final win rate unchanged" if spec.is_win_rate else "leaves the final return unchanged"
        sentence = f"{what} {verb}{_numbers(spec, value, full_value)}."
    else:
        direction = "lowers" if difference < 0 else "raises"
        quantity = "final win rate" if spec.is_win_rate else "final return"
        sentence = (
            f"{what} {direction} the {quantity} by {_amount(spec, abs(difference))}{_numbers(spec, value, full_value)}."
        )
    return Headline(spec.name, task, ablation, REFERENCE_METHOD, value, full_value, difference, sentence)


def _amount(spec: FigureSpec, gap: float) -> str:
    return f"{gap:.1f} percentage points" if spec.is_win_rate else f"{gap:.2f}"


def _numbers(spec: FigureSpec, value: float, other: float) -> str:
    """`` (A vs B, ±R% relative)``: the means compared, relative change when B is positive."""
    fmt = "{:.1f}%" if spec.is_win_rate else "{:.2f}"
    relative = f", {(value - other) / other:+.0%} relative" if other > 0 else ""
    return f" ({fmt.format(value)} vs {fmt.format(other)}{relative})"
