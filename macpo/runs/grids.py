"""The paper's grids as named sweeps, and where each of their runs stands.

A sweep is a file ``sweeps/<name>.yaml`` (config group ``sweep``, via ``conf/sweep`` → ``sweeps``)
that sets ``sweep_name`` and ``hydra.sweeper.params``; ``python -m macpo.train -m sweep=<name>``
runs its grid with Hydra's basic sweeper and any launcher. Each run is tagged in MLflow with
``sweep`` (the grid), ``sweep_cell`` (its values of the grid's keys, e.g. ``env=mmm2
sampler=macpo seed=0``), ``budget`` and ``identity``.

``sweep_status`` only reads: it reports, for each budget the store holds runs of, which cells of
the grid are done (FINISHED), running (a process holds the run's lock), interrupted (stopped by
a signal, or dead without a word: resumable), failed (an error) or missing. Its command line is
``python -m macpo.tools.sweeps``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from omegaconf import OmegaConf

from macpo.config.paths import SWEEPS_DIR

CELL_TAG = "sweep_cell"
BUDGET_TAG = "budget"
#: run states, best first (a cell with several runs shows its best)
STATES = ("done", "running", "interrupted", "failed", "missing")


# ---- the grids ----------------------------------------------------------------------------
def sweep_names() -> list[str]:
    return sorted(p.stem for p in SWEEPS_DIR.glob("*.yaml"))


def sweep_params(name: str) -> dict[str, str]:
    """``hydra.sweeper.params`` of sweep ``name``: key → value string (``a,b,c`` for a sweep)."""
    path = SWEEPS_DIR / f"{name}.yaml"
    if name not in sweep_names():  # a name, never a path: sweeps/../conf/train is no sweep
        raise ValueError(f"no sweep named {name!r}; sweep= one of: {', '.join(sweep_names())}")
    params = OmegaConf.select(OmegaConf.load(path), "hydra.sweeper.params")
    if not params:
        raise ValueError(f"sweeps/{name}.yaml sets no hydra.sweeper.params")
    return {str(k): str(v) for k, v in params.items()}


def _parse(overrides: Sequence[str]):
    from hydra.core.override_parser.overrides_parser import OverridesParser

    return OverridesParser.create().parse_overrides(list(overrides))


def override_key(override: str) -> str:
    """``env.punishment=-2`` → ``env.punishment`` (as Hydra reads it)."""
    return _parse([override])[0].get_key_element()


def grid_jobs(params: Mapping[str, str], overrides: Sequence[str] = ()) -> list[list[str]]:
    """The job override lists Hydra's basic sweeper launches for ``params`` plus command-line ``overrides``.

    Uses the sweeper's own expansion, so a command-line value of a grid key replaces that key's
    values (``seed=0`` keeps one seed), exactly as ``python -m macpo.train -m`` does.
    """
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper

    args = [f"{k}={v}" for k, v in params.items()] + [o for o in overrides if not o.startswith("hydra")]
    (batch,) = BasicSweeper.split_arguments(_parse(args), max_batch_size=None)
    return batch


def cell_of(job_overrides: Iterable[str], keys: Sequence[str]) -> str:
    """A job's values of the grid ``keys``, in the grid's order: ``env=mmm2 sampler=macpo seed=0``."""
    by_key = {override_key(o): o for o in job_overrides}
    return " ".join(by_key[k] for k in keys if k in by_key)


def grid_cells(name: str, overrides: Sequence[str] = ()) -> list[str]:
    params = sweep_params(name)
    return [cell_of(job, list(params)) for job in grid_jobs(params, overrides)]


# ---- inside a launched job ----------------------------------------------------------------
def selected_sweep() -> str | None:
    """The sweep chosen on the command line (``sweep=<name>``), when running under Hydra."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return None
    return HydraConfig.get().runtime.choices.get("sweep")


def is_multirun() -> bool:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def job_tags() -> dict[str, str]:
    """MLflow tags of a run launched by Hydra: its budget and, in a sweep, its grid cell."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return {}
    hc = HydraConfig.get()
    tags = {BUDGET_TAG: str(hc.runtime.choices.get("budget") or "default")}
    params = OmegaConf.select(hc, "sweeper.params")
    if hc.runtime.choices.get("sweep") and params:
        tags[CELL_TAG] = cell_of(hc.overrides.task, [str(k) for k in params])
    return tags


# ---- status -------------------------------------------------------------------------------
@dataclass
class CellStatus:
    cell: str
    state: str = "missing"
    run_id: str | None = None
    env_steps: int | None = None
    t_max: int | None = None
    n_runs: int = 0


@dataclass
class BudgetStatus:
    budget: str
    cells: list[CellStatus] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        out = dict.fromkeys(STATES, 0)
        for c in self.cells:
            out[c.state] += 1
        return out


def run_state(status: str, lock_held: bool) -> str:
    """MLflow status (+ whether a process holds the run's lock) → done/running/interrupted/failed."""
    if status == "FINISHED":
        return "done"
    if status in ("RUNNING", "SCHEDULED"):
        return "running" if lock_held else "interrupted"  # no process: it died without a word
    if status == "KILLED":
        return "interrupted"
    return "failed"


def _compose(overrides: Sequence[str]):
    from macpo.config import compose

    return compose(list(overrides))


def sweep_status(
    name: str, overrides: Sequence[str] = (), base_dir: str | None = None
) -> tuple[list[BudgetStatus], str]:
    """Status of every cell of sweep ``name`` per budget found in the store; also the store's URI.

    Read-only: a store that does not exist (or is not an MLflow store) is a ``StoreError``, and
    nothing is created.
    """
    import os

    from mlflow.tracking import MlflowClient

    from macpo.runs.checkpoints import RunLock, checkpoint_root
    from macpo.runs.tracking import require_existing_store, search_all_runs

    plain = [o for o in overrides if not o.startswith("hydra") and override_key(o) != "sweep"]
    cells = grid_cells(name, plain)  # also rejects an unknown name
    single = [o for o, parsed in zip(plain, _parse(plain)) if not parsed.is_sweep_override()]
    cfg = _compose([f"sweep={name}", *single])  # where the store and checkpoints are
    base = base_dir or os.getcwd()
    uri = require_existing_store(str(cfg.logger.tracking_uri), base)
    client = MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name(str(cfg.logger.experiment))
    runs = [] if experiment is None else search_all_runs(client, experiment.experiment_id, f"tags.sweep = '{name}'")
    wanted_budget = next((o.split("=", 1)[1] for o in single if override_key(o) == "budget"), None)

    by_budget: dict[str, list] = {}
    for r in runs:
        by_budget.setdefault(r.data.tags.get(BUDGET_TAG, "unknown"), []).append(r)
    if wanted_budget is not None:
        by_budget = {wanted_budget: by_budget.get(wanted_budget, [])}
    if not by_budget:  # no run of this grid yet
        by_budget = {"any": []}

    root = checkpoint_root(cfg, base) / str(cfg.logger.experiment)
    report = []
    for budget, budget_runs in sorted(by_budget.items()):
        status = BudgetStatus(budget, [CellStatus(c) for c in cells])
        index = {c.cell: c for c in status.cells}
        for r in budget_runs:
            cell = index.get(r.data.tags.get(CELL_TAG, ""))
            if cell is None:
                continue  # a run of a cell outside this (restricted) grid
            identity = r.data.tags.get("identity", "")
            held = bool(identity) and RunLock(root / identity).held_elsewhere()
            state = run_state(r.info.status, held)
            cell.n_runs += 1
            if STATES.index(state) < STATES.index(cell.state):
                cell.state, cell.run_id = state, r.info.run_id
                cell.t_max = int(r.data.tags["t_max"]) if "t_max" in r.data.tags else None
                cell.env_steps = None
                if state != "done":
                    history = client.get_metric_history(r.info.run_id, "epsilon")
                    cell.env_steps = max((m.step for m in history), default=0)
        report.append(status)
    return report, uri
