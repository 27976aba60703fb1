"""``python -m macpo.train [overrides]`` (``-m`` for grids): compose, validate, open the run, fit.

Hydra composes the config against the schemas of ``macpo.config``; ``ValidateBeforeRun``
(``conf/train.yaml``'s callback) checks it before Hydra creates any folder; ``macpo.runs.run``
does the rest (identity, lock, store, skip/resume/start, logger, checkpoints, fit, final status).
Bad input ends with one line on stderr and exit code 2 (a full traceback with ``HYDRA_FULL_ERROR=1``).

Only Hydra and the schemas are imported at the top: a wrong type, range or key is refused before
torch, Lightning or MLflow are loaded (in about a CPU-second); ``run`` imports them.
"""

from __future__ import annotations

import os
import sys
import warnings

import hydra
from hydra.errors import CompactHydraException
from omegaconf import DictConfig

from macpo.config import ConfigError, ConfigRejected, compose, composition_error_message  # noqa: F401
from macpo.config.paths import CONF_DIR

# conf/hydra/launcher/{joblib,submitit_local}.yaml share their names with the plugins' schemas,
# which Hydra then validates them against (what we want) while warning that this matching is
# deprecated; the files are complete configs, so they keep working when the matching goes.
warnings.filterwarnings("ignore", message=r"(?s).*validated against ConfigStore schema with the same name")

#: exit codes: a config refused before anything ran; a run stopped by its non-finite guard
EXIT_BAD_INPUT, EXIT_RUN_FAILED = 2, 1


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="train")
def main(cfg: DictConfig) -> float:
    from macpo.runs.lifecycle import run

    return run(cfg)


def __getattr__(name: str):
    """The Python API, imported on first use: ``macpo.train.run(cfg)``, ``macpo.train.validate(cfg)``."""
    if name in ("run", "validate"):
        import macpo.runs

        return getattr(macpo.runs, name)
    raise AttributeError(f"module 'macpo.train' has no attribute {name!r}")


def cli() -> int:
    """``main`` with errors a user can fix reported in one line (Hydra would print a traceback)."""
    full_error = os.environ.get("HYDRA_FULL_ERROR") == "1"
    os.environ["HYDRA_FULL_ERROR"] = "1"  # let Hydra's errors reach us instead of printing them
    try:
        main()
    except ConfigRejected as rejected:  # refused by ValidateBeforeRun, before Hydra made anything
        if full_error:
            raise rejected.error from None
        print(rejected.code, file=sys.stderr)
        return EXIT_BAD_INPUT
    except Exception as error:
        failure = _run_failure(error)
        if failure is not None:  # the run started and FAILED for a reason it can name in one line
            if full_error:
                raise
            print(f"error: the run FAILED: {failure}", file=sys.stderr)
            return EXIT_RUN_FAILED
        if _job_without_result(error):  # submitit: a SLURM job cancelled, killed or out of time or memory
            if full_error:
                raise
            print(f"error: a job of the grid ended without a result: {error}", file=sys.stderr)
            return EXIT_RUN_FAILED
        if isinstance(error, ConfigError) or _is_store_error(error):
            message = str(error)
        else:  # Hydra's own user errors (a bad override, an unknown option); anything else is a bug: traceback
            message = composition_error_message(error) if isinstance(error, CompactHydraException) else None
        if full_error or message is None:
            raise
        print(f"error: {message}", file=sys.stderr)
        return EXIT_BAD_INPUT
    finally:
        if not full_error:
            os.environ.pop("HYDRA_FULL_ERROR", None)
    return 0


def _run_failure(error: BaseException) -> str | None:
    """One line for an error that ended a started run as FAILED (imported only once a run ran)."""
    if "macpo.runs.lifecycle" not in sys.modules:
        return None
    from macpo.algos.guard import NonFiniteUpdateError
    from macpo.runs import WriteFailed

    if isinstance(error, NonFiniteUpdateError):
        return f"{error} (its last good checkpoint is kept)"
    for _ in range(8):  # a write that failed, perhaps followed by a store write that failed too
        if error is None or isinstance(error, WriteFailed):
            return None if error is None else str(error)
        error = error.__cause__ or error.__context__
    return None


def _is_store_error(error: BaseException) -> bool:
    tracking = sys.modules.get("macpo.runs.tracking")
    return tracking is not None and isinstance(error, tracking.StoreError)


def _job_without_result(error: BaseException) -> bool:
    """submitit's ``UncompletedJobError`` (its message names the job, its SLURM state and its stderr)."""
    return type(error).__name__ == "UncompletedJobError" and type(error).__module__.startswith("submitit")


if __name__ == "__main__":
    sys.exit(cli())
