"""One run, from its config to its final status: what happens when the same command runs again.

1. **validate** everything (``macpo.runs.validation``): nothing exists yet when this fails.
2. **identity**: a hash of the config (``macpo.runs.identity``), naming the run's checkpoint folder.
3. **lock** the identity: a second launch of the same run (another worker, a re-run grid) leaves
   it alone instead of racing it.
4. **store lookup**: the MLflow run tagged with this identity, if any.
5. **skip / resume / start**: FINISHED → skipped (its test return is returned). Unfinished
   (killed, crashed, FAILED) → continued in the *same* MLflow run, from ``last.ckpt`` when that
   checkpoint passes its check (checksum, ``weights_only`` load, finite weights); a checkpoint
   that fails is moved to ``last.ckpt.bad`` with one warning and the run restarts from scratch.
   Steps the MLflow run already holds are never logged twice. None → a new run.
6. **logger** (MLflow) and **checkpoint callback** (every ``checkpoint_interval`` env steps and on
   SIGTERM / Ctrl-C / SLURM's time-limit signal).
7. **final status**: FINISHED (``last.ckpt`` dropped, ``final.ckpt`` kept); KILLED on a signal
   (checkpoint written, exit 128+signal); FAILED on an error. A streak of non-finite updates
   (``NonFiniteUpdateError``) ends FAILED with the step in the tag ``failure``; no checkpoint is
   written from that state, so the last good one is what a rerun resumes. A write that fails (a
   full disk: ``macpo.runs.WriteFailed``) ends FAILED too, its temporary files removed; marking
   the run FAILED is best effort (``record_failure``), since the store may be what cannot be written.
"""

from __future__ import annotations

import logging
import math
import os
import signal
import warnings
from dataclasses import dataclass
from pathlib import Path

import hydra
import pytorch_lightning as pl
import torch
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.utilities.exceptions import SIGTERMException

from macpo.algos.guard import NonFiniteUpdateError
from macpo.runs.checkpoints import RunCheckpoint, RunLock, remove_resume_files, resumable_checkpoint, run_checkpoint_dir
from macpo.runs.grids import job_tags
from macpo.runs.identity import IDENTITY_TAG, run_identity
from macpo.runs.provenance import CPU_SECONDS_METRIC, CpuClock, provenance_tags
from macpo.runs.tracking import ResumableMLFlowLogger, find_run, prepare_store
from macpo.runs.validation import resolve_device, validate

log = logging.getLogger(__name__)

#: seconds to wait for a run's lock before concluding that another process trains it
LOCK_WAIT_S = 10.0
#: most test episodes played at once (test_nepisode is split into batches of this size)
TEST_BATCH_MAX = 32
#: MLflow tag holding why a run FAILED
FAILURE_TAG = "failure"


def launch_dir() -> str:
    """The directory the command was launched from (relative paths are taken from it)."""
    try:
        return hydra.utils.get_original_cwd()
    except ValueError:  # not under @hydra.main (tests, notebooks)
        return os.getcwd()


def run(cfg: DictConfig) -> float:
    """Train one configuration (the function behind ``python -m macpo.train``); see the module docstring.

    Returns the final greedy test return (NaN when another process holds the run).
    """
    base = launch_dir()
    uri = validate(cfg, base)  # 1: no side effect before this line
    identity = run_identity(cfg)  # 2
    run_dir = run_checkpoint_dir(cfg, identity, base)
    lock = RunLock(run_dir)  # 3
    if not lock.acquire(timeout=LOCK_WAIT_S):
        log.warning("run %s is being trained by another process (lock %s); not starting it twice", identity, lock.path)
        return float("nan")
    try:
        return _run_locked(cfg, identity, run_dir, uri)
    finally:
        lock.release()


def _run_locked(cfg: DictConfig, identity: str, run_dir: Path, uri: str) -> float:
    previous = None
    if cfg.logger.enabled:  # 4: store lookup
        from mlflow.tracking import MlflowClient

        experiment_id = prepare_store(uri, cfg.logger.experiment)
        previous = find_run(MlflowClient(tracking_uri=uri), experiment_id, IDENTITY_TAG, identity)
        if previous is not None and previous.info.status == "FINISHED":  # 5: skip
            remove_resume_files(run_dir)  # in case the process died between finishing and cleaning up
            log.info("skipping %s: run %s already FINISHED", identity, previous.info.run_id)
            return float(previous.data.metrics.get("test/return_mean", math.nan))
    previous_id = previous.info.run_id if previous is not None else None
    ckpt_path = resumable_checkpoint(run_dir, previous_id)  # 5: resume, or start from scratch
    if ckpt_path is not None:
        log.info("resuming %s from %s", identity, ckpt_path)
    elif previous_id is not None:
        log.info("restarting unfinished run %s from scratch; steps it holds are not logged again", previous_id)

    clock = CpuClock(previous.data.metrics.get(CPU_SECONDS_METRIC, 0.0) if previous is not None else 0.0)
    parts = build_run(cfg, identity, run_dir, uri, previous_id)  # 6: components, logger, checkpoints
    try:
        parts.trainer.fit(parts.algo, datamodule=parts.replay, ckpt_path=ckpt_path, weights_only=True)
    except SIGTERMException:  # 7: KILLED
        signum = parts.checkpoints.interrupted_by or signal.SIGTERM
        log_cpu_seconds(parts, clock)
        if parts.logger:
            parts.logger.experiment.set_terminated(parts.logger.run_id, "KILLED")
        log.warning("interrupted by signal %d; run the same command again to resume from %s",
                    signum, parts.checkpoints.last_path)  # fmt: skip
        parts.checkpoints.pass_on_deferred_signal()  # e.g. submitit requeues the job on its time limit
        raise SystemExit(128 + int(signum)) from None
    except Exception as error:  # 7: FAILED (Lightning has set the status; say why)
        record_failure(parts, clock, error)
        if isinstance(error, NonFiniteUpdateError):
            kept = parts.checkpoints.last_path
            log.error("run %s FAILED: %s. Last good checkpoint: %s", identity, error,
                      kept if kept.exists() else "none (a rerun starts from scratch)")  # fmt: skip
        raise
    log_cpu_seconds(parts, clock)
    parts.checkpoints.finish(parts.trainer, keep_final=bool(cfg.checkpoint.keep_final))  # 7: FINISHED
    return float(parts.algo.last_test.get("test/return_mean", float("nan")))


def record_failure(parts: RunParts, clock: CpuClock, error: BaseException) -> None:
    """Mark the MLflow run FAILED with the reason in the tag ``failure``, as far as the store allows.

    Best effort: when the store itself cannot be written (a full disk), one warning says so and
    the run's own error is what the caller reports; ``sweeps status`` shows the run as
    interrupted, not running, once its lock is released.
    """
    if not parts.logger:
        return
    try:
        log_cpu_seconds(parts, clock)
        client, run_id = parts.logger.experiment, parts.logger.run_id
        client.set_tag(run_id, FAILURE_TAG, " ".join(str(error).split())[:5000])
        if client.get_run(run_id).info.status != "FAILED":
            client.set_terminated(run_id, "FAILED")
    except Exception as store_error:
        reason = " ".join(str(store_error).split())[:200]
        log.warning("could not mark MLflow run %s FAILED: %s", parts.logger.run_id, reason)


def log_cpu_seconds(parts: RunParts, clock: CpuClock) -> None:
    """The run's CPU-seconds so far (all segments), logged at the env step it reached."""
    if parts.logger:
        parts.logger.experiment.log_metric(parts.logger.run_id, CPU_SECONDS_METRIC, clock.total(),
                                           step=int(parts.algo.env_steps))  # fmt: skip


@dataclass
class RunParts:
    trainer: pl.Trainer
    algo: pl.LightningModule
    replay: pl.LightningDataModule
    checkpoints: RunCheckpoint
    logger: ResumableMLFlowLogger | None


def build_run(cfg: DictConfig, identity: str, run_dir: Path, uri: str, previous_id: str | None) -> RunParts:
    """Env, replay, algorithm, logger, callbacks and the Lightning Trainer of one run."""
    from macpo.algos.base import LoopSettings
    from macpo.algos.data_path import make_datamodule
    from macpo.envs.factory import make_env
    from macpo.memory import keep_freed_memory
    from macpo.nn import kernels
    from macpo.runs.callbacks import EnvStepProgressBar, GreedyEvaluation

    device = resolve_device(cfg.device)
    if cfg.torch_threads:
        torch.set_num_threads(int(cfg.torch_threads))
    keep_freed_memory()  # learner updates reuse their memory instead of page-faulting it in anew
    kernels.cap_kernel_caches()  # before the run's first oneDNN matmul
    kernels.use(cfg.nn.kernels)  # every network of this run: the hand-written kernels, or plain PyTorch
    quiet_lightning()
    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    sampler = hydra.utils.instantiate(cfg.sampler)
    env = make_env(cfg.env, cfg.batch_size_run, device, seed=cfg.seed)
    test_env = make_env(cfg.env, min(cfg.test_nepisode, TEST_BATCH_MAX), device, seed=cfg.seed + 10_000)
    algo_cls = hydra.utils.get_class(cfg.algo._target_)
    replay = make_datamodule(algo_cls, env.env_info, sampler, cfg.buffer_size, cfg.batch_size, device,
                             save_buffer=bool(cfg.checkpoint.save_buffer))  # fmt: skip
    loop = LoopSettings(cfg.t_max, cfg.target_update_interval, cfg.log_interval,
                        max_nonfinite_streak=cfg.max_nonfinite_streak)  # fmt: skip
    algo = algo_cls.from_config(cfg.algo, env, sampler, loop)

    logger = open_logger(cfg, identity, uri, previous_id) if cfg.logger.enabled else None
    evaluation = GreedyEvaluation(test_env, cfg.test_interval, cfg.test_nepisode, seed=cfg.seed + 20_000)
    checkpoints = RunCheckpoint(run_dir, cfg.checkpoint_interval, logger.run_id if logger else None, identity)
    bar = EnvStepProgressBar(cfg.t_max, desc=str(cfg.env.name), enabled=cfg.progress_bar)
    trainer = hydra.utils.instantiate(
        cfg.trainer,
        accelerator="gpu" if device.type == "cuda" else "cpu",
        devices=[device.index or 0] if device.type == "cuda" else 1,
        logger=logger or False,
        callbacks=[evaluation, bar, checkpoints],
    )
    if logger:
        log.info("MLflow run %s in %s", logger.run_id, uri)
    return RunParts(trainer, algo, replay, checkpoints, logger)


def quiet_lightning() -> None:
    """Lightning's warnings that do not apply to an RL loop (no epochs, no workers, warm-up steps)."""
    warnings.filterwarnings("ignore", ".*does not have many workers.*")
    warnings.filterwarnings("ignore", ".*IterableDataset.*")
    warnings.filterwarnings("ignore", ".*`training_step` returned `None`.*")  # replay warm-up steps
    warnings.filterwarnings("ignore", ".*resuming from a checkpoint that ended before the epoch ended.*")
    for name in ("pytorch_lightning", "lightning.pytorch", "lightning_fabric"):
        logging.getLogger(name).setLevel(logging.WARNING)


# ---- the MLflow run -------------------------------------------------------------------------
def run_tags(cfg: DictConfig, identity: str | None = None) -> dict[str, str]:
    tags = {
        "env": str(cfg.env.name),
        "algo": str(cfg.algo.name),
        "sampler": str(cfg.sampler.name),
        "seed": str(cfg.seed),
        "sweep": str(cfg.get("sweep_name") or "none"),
        "t_max": str(cfg.t_max),
    }
    if "punishment" in cfg.env:
        tags["punishment"] = str(float(cfg.env.punishment))
    if "map_name" in cfg.env:
        tags["map_name"] = str(cfg.env.map_name)
    for key in ("backend", "sim_version"):  # which simulator: figures never pool across them silently
        if key in cfg.env:
            tags[f"env.{key}"] = str(cfg.env[key])
    if identity is not None:
        tags[IDENTITY_TAG] = identity
    tags.update(job_tags())  # budget and grid cell, when launched by Hydra
    tags.update(provenance_tags())  # commit and machine: what produced the numbers
    return tags


def open_logger(cfg: DictConfig, identity: str, uri: str, run_id: str | None = None) -> ResumableMLFlowLogger:
    """An MLflow logger for a new run, or continuing run ``run_id`` (no step is logged twice)."""
    logger = ResumableMLFlowLogger(
        experiment_name=cfg.logger.experiment,
        tracking_uri=uri,
        tags=run_tags(cfg, identity),
        run_name=f"{cfg.env.name}-{cfg.algo.name}-{cfg.sampler.name}-s{cfg.seed}",
        run_id=run_id,
    )
    if run_id is None or not logger.experiment.get_run(run_id).data.params:
        logger.log_hyperparams(flatten(OmegaConf.to_container(cfg, resolve=True)))
    return logger


def flatten(d: dict, prefix: str = "") -> dict[str, object]:
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten(v, key + "/"))
        else:
            out[key] = v
    return out
