"""``python -m macpo.train [overrides]`` (``-m`` for grids): compose, validate, open the run, fit.

Hydra composes the config against the schemas of ``macpo.config``; ``ValidateBeforeRun``
(``conf/train.yaml``'s callback) checks it before Hydra creates any folder; ``macpo.runs.run``
does the rest (identity, lock, store, skip/resume/start, logger, checkpoints, fit, final status).
Bad input ends with one line on stderr and exit code 2 (a full traceback with ``HYDRA_FULL_ERROR=1``).
"""

from __future__ import annotations

import os
import sys
import warnings

import hydra
from hydra.errors import CompactHydraException
from omegaconf import DictConfig

from macpo.algos.guard import NonFiniteUpdateError
from macpo.config import ConfigError, ConfigRejected, compose, composition_error_message  # noqa: F401
from macpo.config.paths import CONF_DIR
from macpo.runs import run, validate  # noqa: F401 - the Python API: macpo.train.run(cfg)
from macpo.runs.tracking import StoreError

# conf/hydra/launcher/{joblib,submitit_local}.yaml share their names with the plugins' schemas,
# which Hydra then validates them against (what we want) while warning that this matching is
# deprecated; the files are complete configs, so they keep working when the matching goes.
warnings.filterwarnings("ignore", message=r"(?s).*validated against ConfigStore schema with the same name")

#: exit codes: a config refused before anything ran; a run stopped by its non-finite guard
EXIT_BAD_INPUT, EXIT_RUN_FAILED = 2, 1


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="train")
def main(cfg: DictConfig) -> float:
    return run(cfg)


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
    except NonFiniteUpdateError as error:
        if full_error:
            raise
        print(f"error: the run FAILED: {error} (its last good checkpoint is kept)", file=sys.stderr)
        return EXIT_RUN_FAILED
    except Exception as error:
        if _job_without_result(error):  # submitit: a SLURM job cancelled, killed or out of time or memory
            if full_error:
                raise
            print(f"error: a job of the grid ended without a result: {error}", file=sys.stderr)
            return EXIT_RUN_FAILED
        if isinstance(error, (ConfigError, StoreError)):
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


def _job_without_result(error: BaseException) -> bool:
    """submitit's ``UncompletedJobError`` (its message names the job, its SLURM state and its stderr)."""
    return type(error).__name__ == "UncompletedJobError" and type(error).__module__.startswith("submitit")


if __name__ == "__main__":
    sys.exit(cli())
