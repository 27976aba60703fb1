"""Checkpoints that let a run resume without loss: where they live, what they hold, when they are taken.

Each run identity (``macpo.runs.identity``) owns one folder, ``<root>/<experiment>/<identity>/``:

- ``last.ckpt``  the latest Lightning checkpoint: networks, optimiser, loop state, the algorithm's
  counters (env steps, episodes, updates: the ε and β schedules are functions of them), metrics
  accumulated since the last write, the evaluation callback's last test step, the RNG states of
  torch (CPU and CUDA), numpy, python and of the env generators, and — unless
  ``checkpoint.save_buffer=false`` — the replay buffer with the sampler's stored priorities.
  Written every ``checkpoint_interval`` env steps and when SIGTERM or SIGINT arrives (at the end
  of the step in progress); removed once the run has FINISHED.
- ``last.json``  which MLflow run the checkpoint continues, at which env step, and the SHA-256
  of ``last.ckpt``; a checkpoint is only resumed into that run, and only if its bytes match.
- ``last.ckpt.bad`` a checkpoint that failed its check (a sidecar that is not exactly ``SIDECAR_FIELDS``,
  checksum, ``torch.load(weights_only=True)``, non-finite weights), moved aside with one warning
  (with its sidecar, as ``last.json.bad``); the run restarted from scratch in the same MLflow run.
- ``final.ckpt`` the finished run's networks and counters (no replay buffer), unless
  ``checkpoint.keep_final=false``.
- ``run.lock``   held while a process trains this identity: a second launch of the same run
  (another worker, a re-run grid) leaves it alone instead of racing it.

The root is ``checkpoint.dir`` when set, else ``checkpoints/`` beside a SQLite MLflow store (so
the default store ``outputs/mlflow.db`` gives ``outputs/checkpoints/``), else ``outputs/checkpoints``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import os
import random
import shutil
import signal
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytorch_lightning as pl
import torch
from filelock import FileLock, Timeout
from omegaconf import DictConfig
from pytorch_lightning.utilities.exceptions import SIGTERMException

from macpo.config import ConfigError
from macpo.runs import WriteFailed
from macpo.runs.tracking import resolve_tracking_uri, sqlite_path

log = logging.getLogger(__name__)

LAST_CKPT = "last.ckpt"
FINAL_CKPT = "final.ckpt"
SIDECAR = "last.json"
LOCK_FILE = "run.lock"
DEFAULT_ROOT = Path("outputs") / "checkpoints"
#: what ``last.json`` holds: key → the types its value may have (``read_sidecar`` checks exactly this)
SIDECAR_FIELDS: dict[str, tuple[type, ...]] = {
    "mlflow_run_id": (str, type(None)), "identity": (str, type(None)), "env_steps": (int,), "sha256": (str,),
    "saved_at": (str,),
}  # fmt: skip
#: signals a cluster tool (submitit) uses to announce a time limit or preemption
PREEMPTION_SIGNALS = tuple(getattr(signal, name) for name in ("SIGUSR2",) if hasattr(signal, name))


# ---- where --------------------------------------------------------------------------------
def checkpoint_root(cfg: DictConfig, base_dir: str | os.PathLike) -> Path:
    """The folder holding every identity's checkpoints (see the module docstring)."""
    base = Path(base_dir)
    configured = cfg.get("checkpoint", {}).get("dir")
    if configured:
        path = Path(str(configured))
        return path if path.is_absolute() else base / path
    database = sqlite_path(resolve_tracking_uri(str(cfg.logger.tracking_uri), base))
    if database is not None:
        return database.parent / "checkpoints"
    return base / DEFAULT_ROOT


def run_checkpoint_dir(cfg: DictConfig, identity: str, base_dir: str | os.PathLike) -> Path:
    """``<root>/<experiment>/<identity>``: stable across launches of the same configuration.

    ``logger.experiment`` is one folder name (checked with the config, ``macpo.config.checks.name_problem``);
    the folder is also checked to lie inside the root, whatever reaches this function.
    """
    root = checkpoint_root(cfg, base_dir)
    run_dir = root / str(cfg.logger.experiment) / identity
    if Path(os.path.normpath(run_dir)).parents[1] != Path(os.path.normpath(root)):
        raise ConfigError(f"logger.experiment={cfg.logger.experiment!r}: leads outside {root}")
    return run_dir


class RunLock:
    """An inter-process lock on one identity's folder, held while the run trains."""

    def __init__(self, run_dir: str | os.PathLike):
        self.path = Path(run_dir) / LOCK_FILE
        self._lock: FileLock | None = None

    def acquire(self, timeout: float = 10.0) -> bool:
        """True when this process now holds the lock; False when another one keeps it for ``timeout`` s."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        lock = FileLock(str(self.path))
        try:
            lock.acquire(timeout=timeout)
        except Timeout:
            return False
        self._lock = lock
        return True

    def release(self) -> None:
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    def held_elsewhere(self) -> bool:
        """Whether some process holds the lock now (False when the folder does not exist)."""
        if not self.path.exists():
            return False
        probe = FileLock(str(self.path))
        try:
            probe.acquire(timeout=0)
        except Timeout:
            return True
        probe.release()
        return False


def sha256_of(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def resumable_checkpoint(run_dir: str | os.PathLike, mlflow_run_id: str | None) -> Path | None:
    """``last.ckpt`` if it was written for ``mlflow_run_id`` (None: no logger) and passes ``check_checkpoint``.

    A checkpoint that fails the check is moved aside (``quarantine``): the run starts from scratch.
    One written for another MLflow run (say, a deleted one) is left alone; the next save replaces it.
    """
    run_dir = Path(run_dir)
    ckpt, sidecar = run_dir / LAST_CKPT, run_dir / SIDECAR
    if not (ckpt.exists() or ckpt.is_symlink()):
        return None
    if not ckpt.is_file():
        quarantine(ckpt, "it is not a file")
        return None
    try:
        meta = read_sidecar(sidecar)
    except ValueError as error:
        quarantine(ckpt, str(error))
        return None
    if meta["mlflow_run_id"] != mlflow_run_id:
        log.info("%s was written for MLflow run %s, not %s: not resumed", ckpt, meta["mlflow_run_id"],
                 mlflow_run_id)  # fmt: skip
        return None
    problem = check_checkpoint(ckpt, meta["sha256"])
    if problem:
        quarantine(ckpt, problem)
        return None
    return ckpt


def read_sidecar(path: str | os.PathLike) -> dict:
    """``last.json`` as written by ``RunCheckpoint.save``: exactly the keys and types of ``SIDECAR_FIELDS``.

    Anything else (missing, unreadable, not JSON, a list, a key missing or extra, a wrong type, a
    checksum that is not 64 hex digits) is a ``ValueError`` saying what is wrong; the caller sets
    the checkpoint aside as it does a corrupted one.
    """
    try:
        meta = json.loads(Path(path).read_bytes())
    except Exception as error:  # missing, a folder, unreadable, not UTF-8, not JSON, nested too deep
        return _bad_sidecar(f"is missing or unreadable ({type(error).__name__})")
    if not isinstance(meta, dict):
        return _bad_sidecar(f"holds a {type(meta).__name__}, not an object")
    if set(meta) != set(SIDECAR_FIELDS):
        missing, extra = sorted(set(SIDECAR_FIELDS) - set(meta)), sorted(set(meta) - set(SIDECAR_FIELDS))
        return _bad_sidecar(f"has the wrong keys (missing {missing}, unexpected {extra})")
    for key, types in SIDECAR_FIELDS.items():
        value = meta[key]
        if not isinstance(value, types) or isinstance(value, bool):
            return _bad_sidecar(f"holds {key}={_short(value)}, not {' or '.join(t.__name__ for t in types)}")
    sha = meta["sha256"]
    if len(sha) != 64 or any(c not in "0123456789abcdef" for c in sha) or meta["env_steps"] < 0:
        return _bad_sidecar(f"holds no valid checksum and step (sha256={_short(sha)}, env_steps={meta['env_steps']})")
    return meta


def _bad_sidecar(reason: str):
    raise ValueError(f"its sidecar {SIDECAR} {reason}")


def _short(value) -> str:
    text = json.dumps(value) if not isinstance(value, str) else repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def check_checkpoint(ckpt: Path, expected_sha256: str | None) -> str | None:
    """Why ``ckpt`` must not be resumed, or None: checksum, safe load, finite weights.

    Loaded with ``weights_only=True``: a pickle that would run code is refused, not executed.
    """
    if not expected_sha256:
        return f"{SIDECAR} holds no checksum"
    actual = sha256_of(ckpt)
    if actual != expected_sha256:
        return f"its SHA-256 {actual[:12]}… does not match {expected_sha256[:12]}… in {SIDECAR} (corrupt or truncated)"
    try:
        state = torch.load(ckpt, map_location="cpu", weights_only=True, mmap=True)
    except Exception as error:  # UnpicklingError (unsafe content), RuntimeError (not a zip), EOFError, ...
        return f"it does not load safely ({type(error).__name__}: {' '.join(str(error).split())[:160]})"
    if not isinstance(state, dict) or "state_dict" not in state:
        return "it is not a Lightning checkpoint (no state_dict)"
    bad = [name for name, t in state["state_dict"].items()
           if isinstance(t, torch.Tensor) and t.is_floating_point() and not bool(torch.isfinite(t).all())]  # fmt: skip
    if bad:
        return f"non-finite weights in {', '.join(bad[:3])}"
    for opt in state.get("optimizer_states", []):
        for slot in opt.get("state", {}).values():
            for t in slot.values():
                if isinstance(t, torch.Tensor) and t.is_floating_point() and not bool(torch.isfinite(t).all()):
                    return "non-finite optimiser state"
                if isinstance(t, float) and not math.isfinite(t):
                    return "non-finite optimiser state"
    return None


def quarantine(ckpt: Path, reason: str) -> Path:
    """Move ``ckpt`` to ``<name>.bad`` and its sidecar to ``last.json.bad`` (replacing older ones); one warning."""
    bad = set_aside(ckpt)
    set_aside(ckpt.parent / SIDECAR)
    log.warning("checkpoint %s is not resumed: %s. Moved to %s; the run restarts from scratch", ckpt, reason, bad)
    return bad


def set_aside(path: Path) -> Path:
    """Rename ``path`` (a file, a link or a folder, if it exists) to ``<name>.bad``, replacing an older one."""
    bad = path.with_name(path.name + ".bad")
    if bad.is_dir() and not bad.is_symlink():
        shutil.rmtree(bad)
    elif bad.exists() or bad.is_symlink():
        bad.unlink()
    if path.exists() or path.is_symlink():
        os.replace(path, bad)
    return bad


def remove_resume_files(run_dir: str | os.PathLike) -> None:
    """Delete ``last.ckpt`` and its sidecar (a finished run is never resumed)."""
    for name in (LAST_CKPT, SIDECAR):
        (Path(run_dir) / name).unlink(missing_ok=True)


@contextmanager
def writing(target: Path, *temporary: Path):
    """Any failure inside is a ``WriteFailed`` naming ``target``; the ``temporary`` files are removed."""
    try:
        yield
    except Exception as error:
        for path in temporary:
            with contextlib.suppress(OSError):
                path.unlink(missing_ok=True)
        raise WriteFailed(target, error) from error


# ---- random number generators -------------------------------------------------------------
def generators_of(obj) -> dict[str, torch.Generator]:
    """The ``torch.Generator`` attributes of an object (an env's private random streams)."""
    return {name: value for name, value in vars(obj).items() if isinstance(value, torch.Generator)}


def capture_rng_states(generators: dict[str, torch.Generator] | None = None, global_state: bool = True) -> dict:
    """RNG states as tensors and plain lists (loadable with ``torch.load(weights_only=True)``)."""
    state: dict = {"generators": {k: g.get_state() for k, g in (generators or {}).items()}}
    if global_state:
        kind, keys, pos, has_gauss, gauss = np.random.get_state()
        py_version, py_internal, py_gauss = random.getstate()
        state.update(
            torch=torch.get_rng_state(),
            cuda=torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else [],
            numpy={"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                   "has_gauss": int(has_gauss), "gauss": float(gauss)},
            python={"version": py_version, "internal": list(py_internal), "gauss": py_gauss},
        )  # fmt: skip
    return state


def restore_rng_states(state: dict, generators: dict[str, torch.Generator] | None = None) -> None:
    """Inverse of ``capture_rng_states``; generators named in ``state`` but absent are an error."""
    generators = generators or {}
    missing = set(state.get("generators", {})) - set(generators)
    if missing:
        raise ValueError(f"checkpoint holds RNG states for generators {sorted(missing)} that this env lacks")
    for name, gen_state in state.get("generators", {}).items():
        generators[name].set_state(gen_state.cpu() if isinstance(gen_state, torch.Tensor) else gen_state)
    if "torch" in state:
        torch.set_rng_state(state["torch"].cpu())
        if state["cuda"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])
        np_state = state["numpy"]
        keys = np_state["keys"].numpy().astype(np.uint32)
        np.random.set_state((np_state["kind"], keys, np_state["pos"], np_state["has_gauss"], np_state["gauss"]))
        py = state["python"]
        random.setstate((py["version"], tuple(py["internal"]), py["gauss"]))


# ---- when ---------------------------------------------------------------------------------
class RunCheckpoint(pl.Callback):
    """Writes ``last.ckpt`` every ``interval`` env steps and on SIGTERM/SIGINT; restores RNG states.

    Periodic checkpoints are written at the start of a fit-loop iteration, when every hook of the
    previous one (evaluation, metric flush) has run, so a resumed run continues exactly where the
    checkpoint was taken. SIGTERM is Lightning's: it finishes the step in progress and raises
    ``SIGTERMException``, whereupon the checkpoint is written in ``on_exception``. A first SIGINT
    (Ctrl-C) is turned into that same graceful stop; a second one interrupts at once. A
    preemption signal that already has a handler (submitit's SIGUSR2 before a SLURM time limit)
    also stops gracefully; its handler is called once the checkpoint is written
    (``pass_on_deferred_signal``), so the requeued job resumes from the very step it left.
    RNG states are restored at the first iteration after a resume, after Lightning's own set-up
    (which draws from the global generator) so the resumed stream matches the uninterrupted one.
    """

    def __init__(self, run_dir: str | os.PathLike, interval: int, mlflow_run_id: str | None = None,
                 identity: str | None = None):  # fmt: skip
        if interval <= 0:
            raise ValueError(f"checkpoint_interval must be a positive number of env steps, got {interval!r}")
        self.run_dir = Path(run_dir)
        self.interval = int(interval)
        self.mlflow_run_id = mlflow_run_id
        self.identity = identity
        self.last_saved = 0  # env step of the latest checkpoint (or of the start)
        self.interrupted_by: int | None = None  # signal number that stopped training
        self.write_failure: WriteFailed | None = None  # the checkpoint on a signal could not be written
        self._pending_rng: dict | None = None
        self._module: pl.LightningModule | None = None
        self._replaced_handlers: dict[int, object] = {}  # signal → the handler ours replaced
        self._deferred: tuple[int, object] | None = None  # a preemption signal and its owner's handler

    @property
    def last_path(self) -> Path:
        return self.run_dir / LAST_CKPT

    # -- state carried in the checkpoint
    def state_dict(self) -> dict:
        env = getattr(self._module, "env", None)
        return {"rng": capture_rng_states(generators_of(env) if env is not None else {}),
                "last_saved": self.last_saved}  # fmt: skip

    def load_state_dict(self, state_dict: dict) -> None:
        self._pending_rng = state_dict.get("rng")
        self.last_saved = int(state_dict.get("last_saved", 0))

    # -- hooks
    def setup(self, trainer, pl_module, stage: str) -> None:
        self._module = pl_module

    def on_train_start(self, trainer, pl_module) -> None:
        if self._pending_rng is None:  # a fresh start (a resume keeps the restored step)
            self.last_saved = pl_module.env_steps
        self._install_signal_handlers()

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if self._pending_rng is not None:
            env = getattr(pl_module, "env", None)
            restore_rng_states(self._pending_rng, generators_of(env) if env is not None else {})
            self._pending_rng = None
        elif pl_module.env_steps - self.last_saved >= self.interval:
            self.save(trainer)

    def on_exception(self, trainer, pl_module, exception: BaseException) -> None:
        if isinstance(exception, SIGTERMException):
            self.interrupted_by = self.interrupted_by or signal.SIGTERM
            try:
                self.save(trainer)
            except WriteFailed as error:  # the previous checkpoint, if any, is still the one to resume
                self.write_failure = error
                log.error("training stopped by signal %d; %s", self.interrupted_by, error)
                return
            log.warning("training stopped by signal %d at env step %d; checkpoint written to %s",
                        self.interrupted_by, pl_module.env_steps, self.last_path)  # fmt: skip

    def teardown(self, trainer, pl_module, stage: str) -> None:
        self._restore_signal_handlers()

    # -- writing
    def save(self, trainer: pl.Trainer) -> Path:
        """Write ``last.ckpt`` and its sidecar (with the checkpoint's SHA-256), each atomically.

        Both are written to temporary files first and renamed last, one right after the other; a
        crash between the two renames leaves a checksum that does not match, so the checkpoint
        is set aside on resume rather than trusted. A write that fails (a full disk, say) removes
        the temporary files and raises ``WriteFailed`` naming the checkpoint and the cause; the
        previous checkpoint is left as it was.
        """
        env_steps = int(trainer.lightning_module.env_steps)
        self.last_saved = env_steps  # before the write: the checkpoint carries it
        tmp = self.last_path.with_suffix(".ckpt.tmp")
        tmp_meta = self.run_dir / (SIDECAR + ".tmp")
        with writing(self.last_path, tmp, tmp_meta):
            self.run_dir.mkdir(parents=True, exist_ok=True)
            trainer.save_checkpoint(tmp)
            meta = {"mlflow_run_id": self.mlflow_run_id, "identity": self.identity, "env_steps": env_steps,
                    "sha256": sha256_of(tmp), "saved_at": time.strftime("%Y-%m-%dT%H:%M:%S")}  # fmt: skip
            with open(tmp_meta, "w") as f:
                f.write(json.dumps(meta))
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.last_path)
            os.replace(tmp_meta, self.run_dir / SIDECAR)
        return self.last_path

    def finish(self, trainer: pl.Trainer, keep_final: bool = True) -> Path | None:
        """After a run FINISHED: write ``final.ckpt`` without the replay buffer, drop ``last.ckpt``."""
        final = None
        if keep_final:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            datamodule = trainer.datamodule
            saved_buffer = getattr(datamodule, "save_buffer", False)
            if datamodule is not None:
                datamodule.save_buffer = False
            try:
                final = self.run_dir / FINAL_CKPT
                tmp = final.with_suffix(".ckpt.tmp")
                with writing(final, tmp):
                    trainer.save_checkpoint(tmp)
                    os.replace(tmp, final)
            except WriteFailed as error:  # the run's results are all logged: it stays FINISHED
                log.warning("%s; the run is FINISHED without it", error)
                final = None
            finally:
                if datamodule is not None:
                    datamodule.save_buffer = saved_buffer
        remove_resume_files(self.run_dir)
        return final

    # -- signals
    def _install_signal_handlers(self) -> None:
        """SIGINT, and a preemption signal someone already handles (submitit's SIGUSR2), become a
        graceful stop: the step finishes, the checkpoint is written, then the run exits."""
        if threading.current_thread() is not threading.main_thread():
            return  # signal handlers can only be set from the main thread
        self._replaced_handlers[signal.SIGINT] = signal.signal(signal.SIGINT, self._on_sigint)
        for signum in PREEMPTION_SIGNALS:
            if callable(signal.getsignal(signum)):
                self._replaced_handlers[signum] = signal.signal(signum, self._on_preemption)

    def _restore_signal_handlers(self) -> None:
        if threading.current_thread() is threading.main_thread():
            for signum, handler in self._replaced_handlers.items():
                signal.signal(signum, handler)
        self._replaced_handlers = {}

    def _stop_gracefully(self, signum: int) -> None:
        if self.interrupted_by is None:
            self.interrupted_by = signum
            os.kill(os.getpid(), signal.SIGTERM)  # Lightning's own graceful stop at the end of the step

    def _on_sigint(self, signum, frame) -> None:
        if self.interrupted_by is not None:  # a second Ctrl-C: stop now
            raise KeyboardInterrupt
        log.warning("SIGINT: finishing this step and writing a checkpoint (press Ctrl-C again to abort)")
        self._stop_gracefully(signum)

    def _on_preemption(self, signum, frame) -> None:
        log.warning("signal %d: finishing this step and writing a checkpoint before handing the signal on", signum)
        self._deferred = (signum, self._replaced_handlers.get(signum))
        self._stop_gracefully(signum)

    def pass_on_deferred_signal(self) -> None:
        """Once the checkpoint is written, let the preemption handler we held back act (submitit
        requeues the job and exits; the requeued job resumes from the checkpoint)."""
        if self._deferred is not None:
            signum, handler = self._deferred
            self._deferred = None
            if callable(handler):
                handler(signum, None)
