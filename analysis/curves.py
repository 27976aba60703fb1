"""Learning curves over seeds: align runs on a common step grid, then mean and a 95% CI.

Runs log at slightly different environment steps (an evaluation fires at the first step past
each ``test_interval``), so seeds are compared on a grid: each run is linearly interpolated
onto it, and held at its end values for up to half its own logging interval beyond its first
and last points (so a run logging at 10016 still counts at grid step 10000). Past that it is
missing (NaN): a run that stopped early is never extrapolated; the mean at a grid step is over
the runs that cover it.

The band is a percentile bootstrap CI of the mean over runs (resampling runs with
replacement), the interval seaborn's ``lineplot`` draws by default and the same kind the tables
get from rliable; with one run it collapses onto the line.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd

MAX_GRID_POINTS = 500
BOOTSTRAP_SAMPLES = 1000
CONFIDENCE = 0.95


def step_grid(runs: list[pd.DataFrame]) -> np.ndarray:
    """A grid from the earliest first step to the latest last step, spaced like the logging.

    The spacing is the median over runs of each run's median step interval; the grid has at
    most ``MAX_GRID_POINTS`` points. `runs` are frames with ``step`` (sorted, any length).
    """
    firsts = [run["step"].iloc[0] for run in runs if len(run)]
    lasts = [run["step"].iloc[-1] for run in runs if len(run)]
    if not firsts:
        return np.zeros(0)
    low, high = float(min(firsts)), float(max(lasts))
    intervals = [np.median(np.diff(run["step"].unique())) for run in runs if run["step"].nunique() > 1]
    spacing = float(np.median(intervals)) if intervals else 0.0
    if high <= low or spacing <= 0:
        return np.array([low])
    count = int(round((high - low) / spacing)) + 1
    return np.linspace(low, high, min(count, MAX_GRID_POINTS))


def align_runs(runs: list[pd.DataFrame], grid: np.ndarray) -> np.ndarray:
    """Each run's ``value`` interpolated onto `grid`; NaN where a run does not reach.

    Returns ``[R, G]`` (runs x grid steps). Points logged twice at one step are averaged.
    """
    aligned = np.full((len(runs), len(grid)), np.nan)  # [R, G]
    for i, run in enumerate(runs):
        per_step = run.groupby("step", sort=True)["value"].mean()
        steps, values = per_step.index.to_numpy(float), per_step.to_numpy(float)
        if len(steps) == 0:
            continue
        half_interval = np.median(np.diff(steps)) / 2 if len(steps) > 1 else _grid_half_spacing(grid)
        covered = (grid >= steps[0] - half_interval) & (grid <= steps[-1] + half_interval)
        aligned[i, covered] = np.interp(grid[covered], steps, values)
    return aligned


def mean_and_ci(
    aligned: np.ndarray, *, confidence: float = CONFIDENCE, samples: int = BOOTSTRAP_SAMPLES, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Mean over runs, bootstrap CI bounds and run count at each grid step of ``[R, G]`` values."""
    if not 0 < confidence < 1:
        raise ValueError(f"confidence={confidence}: must lie in (0, 1)")
    count = np.sum(~np.isnan(aligned), axis=0)  # [G]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=RuntimeWarning)  # all-NaN columns give NaN, as wanted
        mean = np.nanmean(aligned, axis=0)  # [G]
        rng = np.random.default_rng(seed)
        picks = rng.integers(0, aligned.shape[0], size=(samples, aligned.shape[0]))  # [S, R]
        resampled = np.nanmean(aligned[picks], axis=1)  # [S, R, G] -> [S, G]
        tail = (1 - confidence) / 2 * 100
        low, high = np.nanpercentile(resampled, [tail, 100 - tail], axis=0)  # [G] each
    return mean, low, high, count


def learning_curves(selection: pd.DataFrame, *, confidence: float = CONFIDENCE, seed: int = 0) -> pd.DataFrame:
    """Per task and method: ``step, mean, ci_low, ci_high, n_runs`` on the task's common grid.

    `selection` is a tidy frame of one metric with ``task`` and ``method`` columns; all methods
    of a task share its grid, so their curves are comparable point by point.
    """
    curves = []
    for task, in_task in selection.groupby("task", sort=False):
        by_run = {rid: run.sort_values("step") for rid, run in in_task.groupby("run_id", sort=False)}
        grid = step_grid(list(by_run.values()))
        for method, in_method in in_task.groupby("method", sort=False):
            runs = [by_run[rid] for rid in in_method["run_id"].unique()]
            mean, low, high, count = mean_and_ci(align_runs(runs, grid), confidence=confidence, seed=seed)
            keep = count > 0
            curves.append(
                pd.DataFrame(
                    {
                        "task": task,
                        "method": method,
                        "step": grid[keep],
                        "mean": mean[keep],
                        "ci_low": low[keep],
                        "ci_high": high[keep],
                        "n_runs": count[keep],
                    }
                )
            )
    columns = ["task", "method", "step", "mean", "ci_low", "ci_high", "n_runs"]
    return pd.concat(curves, ignore_index=True) if curves else pd.DataFrame(columns=columns)


def _grid_half_spacing(grid: np.ndarray) -> float:
    return float(np.median(np.diff(grid))) / 2 if len(grid) > 1 else 0.0
