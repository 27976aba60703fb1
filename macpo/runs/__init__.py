"""The run machinery: everything between a composed config and a finished MLflow run.

``lifecycle``   one run from config to final status (``run``)
``validation``  the checks made before a run has any side effect (``validate``)
``identity``    a run's identity: the hash of its config that names its checkpoint folder
``checkpoints`` where checkpoints live, what they hold, the run lock, the checkpoint callback
``tracking``    the MLflow store: set-up, run look-up, the logger that continues a run
``provenance``  the commit, machine and CPU time a run's numbers came from
``callbacks``   Lightning callbacks: greedy evaluation, the env-step progress bar
``hydra_callbacks`` Hydra's callback that validates a config before Hydra creates anything
``grids``       the named sweeps: their cells, a run's grid tags, each cell's status in a store

``WriteFailed`` is the error of a write a run needs (checkpoint or store) that failed.
``run`` and ``validate`` are imported on first use, so that importing one module of the package
(``macpo.runs.tracking`` from ``analysis``, say) does not import the whole training stack.
"""

import os

from macpo.config import ConfigError

__all__ = ["ConfigError", "WriteFailed", "run", "validate"]


class WriteFailed(RuntimeError):
    """A write a run needs failed (a full disk, a read-only or vanished folder, a store refusing
    writes): the run ends FAILED with this one line, naming what could not be written and why."""

    def __init__(self, what: str | os.PathLike, cause: BaseException):
        if isinstance(cause, OSError) and cause.strerror:
            reason = cause.strerror + (f" [{errno_name(cause.errno)}]" if cause.errno else "")
        else:
            reason = f"{type(cause).__name__}: {' '.join(str(cause).split())[:300]}"
        super().__init__(f"cannot write {what}: {reason}")
        self.what, self.cause = str(what), cause


def errno_name(number: int) -> str:
    import errno

    return errno.errorcode.get(number, str(number))


def __getattr__(name: str):
    if name == "run":
        from macpo.runs.lifecycle import run

        return run
    if name == "validate":
        from macpo.runs.validation import validate

        return validate
    raise AttributeError(f"module 'macpo.runs' has no attribute {name!r}")
