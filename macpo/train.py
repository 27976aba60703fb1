"""Hydra entry point: ``python -m macpo.train [overrides]`` (``-m`` for grids).

compose config → validate (before any compute) → find the run's identity in the MLflow store
(skip it if FINISHED; continue it from its last checkpoint if not) → build env, replay,
algorithm, logger, trainer → fit until ``t_max`` env steps. Returns the final greedy test return.
"""

from __future__ import annotations

import logging
import math
import os
import signal
import warnings

import hydra
import pytorch_lightning as pl
import torch
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.utilities.exceptions import SIGTERMException

from macpo.algos.base import LoopSettings
from macpo.callbacks import EnvStepProgressBar, GreedyEvaluation
from macpo.checkpointing import RunCheckpoint, RunLock, remove_resume_files, resumable_checkpoint, run_checkpoint_dir
from macpo.envs.factory import check_env_config, make_env
from macpo.replay.datamodule import ReplayDataModule
from macpo.run_identity import IDENTITY_TAG, run_identity
from macpo.sweeps import is_multirun, job_tags, selected_sweep
from macpo.tracking import ResumableMLFlowLogger, find_run, prepare_store, resolve_tracking_uri

log = logging.getLogger(__name__)

# conf/hydra/launcher/{joblib,submitit_local}.yaml share their names with the plugins' schemas,
# which Hydra then validates them against (what we want) while warning that this matching is
# deprecated; the files are complete configs, so they keep working when the matching goes.
warnings.filterwarnings("ignore", message=r"(?s).*validated against ConfigStore schema with the same name")

POSITIVE_KEYS = (
    "t_max", "batch_size", "buffer_size", "batch_size_run", "test_interval", "test_nepisode",
    "log_interval", "target_update_interval", "checkpoint_interval",
)  # fmt: skip


class ConfigError(ValueError):
    """A configuration that cannot run; raised before any env or network is built."""


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device={device!r} but CUDA is not available here; use device=cpu or device=auto")
    if not (device == "cpu" or device.startswith("cuda")):
        raise ConfigError(f"device must be auto, cpu or cuda[:N], got {device!r}")
    return torch.device(device)


def validate(cfg: DictConfig) -> None:
    """Cheap checks of everything that would otherwise fail after compute was spent."""
    sweep = selected_sweep()
    if sweep and not is_multirun():
        raise ConfigError(
            f"sweep={sweep} is a grid of runs: launch it with -m (python -m macpo.train -m sweep={sweep} ...)"
        )
    for key in POSITIVE_KEYS:
        value = cfg.get(key)
        if value is None or int(value) <= 0:
            raise ConfigError(f"{key} must be a positive integer, got {value!r}")
    if cfg.batch_size > cfg.buffer_size:
        raise ConfigError(
            f"batch_size ({cfg.batch_size}) exceeds the replay capacity buffer_size ({cfg.buffer_size})"
        )
    if "punishment" in cfg.env and float(cfg.env.punishment) > 0:
        raise ConfigError(f"env.punishment must be <= 0 (a penalty), got {cfg.env.punishment}")
    if int(cfg.get("torch_threads", 0)) < 0:
        raise ConfigError(f"torch_threads must be >= 0 (0: torch's default), got {cfg.torch_threads}")
    resolve_device(cfg.device)
    precision = str(cfg.trainer.get("precision", "32-true"))
    if precision not in ("32", "32-true"):
        raise ConfigError(
            f"trainer.precision={precision} is not implemented: the hand-written GRU backward "
            "(macpo/nn/fused_gru.py) is fp32-only; use trainer.precision=32-true"
        )
    try:  # SMAC backend installed, map known to it, simulator version current
        check_env_config(cfg.env)
    except ValueError as error:
        raise ConfigError(str(error)) from None
    if cfg.env.get("backend") == "sc2":  # the real game: check the install before touching the store
        from macpo.envs.sc2_adapter import Sc2BackendUnavailable, check_sc2_install

        try:
            check_sc2_install()
        except Sc2BackendUnavailable as error:
            raise ConfigError(f"env.backend=sc2: {error}") from None
    algo_cls = hydra.utils.get_class(cfg.algo._target_)
    sampler = hydra.utils.instantiate(cfg.sampler)
    missing = set(sampler.needs) - set(algo_cls.provides)
    if missing:
        able = [name for name, cls in algorithm_classes().items() if set(sampler.needs) <= set(cls.provides)]
        raise ConfigError(
            f"sampler={cfg.sampler.name} needs the signals {sorted(missing)}, which algo={cfg.algo.name} cannot "
            f"compute; choose an algorithm that can: {', '.join('algo=' + a for a in able) or 'none'}"
        )


def algorithm_classes() -> dict[str, type]:
    """algo config name → class, read from ``conf/algo/*.yaml`` (following their defaults lists)."""
    conf_dir = os.path.join(os.path.dirname(__file__), "..", "conf", "algo")

    def target(name: str) -> str:
        c = OmegaConf.load(os.path.join(conf_dir, name + ".yaml"))
        if "_target_" in c:
            return c._target_
        parents = [d for d in c.get("defaults", []) if isinstance(d, str) and d != "_self_"]
        return target(parents[0])

    names = sorted(f[:-5] for f in os.listdir(conf_dir) if f.endswith(".yaml"))
    return {n: hydra.utils.get_class(target(n)) for n in names}


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
    return tags


def build_logger(cfg: DictConfig, identity: str | None = None, run_id: str | None = None) -> ResumableMLFlowLogger:
    """An MLflow logger for a new run, or continuing run ``run_id`` (no step is logged twice)."""
    uri = resolve_tracking_uri(cfg.logger.tracking_uri, hydra_original_cwd())
    prepare_store(uri, cfg.logger.experiment)
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


def hydra_original_cwd() -> str:
    try:
        return hydra.utils.get_original_cwd()
    except ValueError:  # not under @hydra.main (tests, notebooks)
        return os.getcwd()


#: seconds to wait for a run's lock before concluding that another process trains it
LOCK_WAIT_S = 10.0


def run(cfg: DictConfig) -> float:
    """Train one configuration; the function behind ``python -m macpo.train``.

    A configuration whose identity is FINISHED in the store is skipped; one that is unfinished
    (interrupted, killed, failed) continues in the same MLflow run from its last checkpoint (or
    from scratch when it has none), logging only steps the run does not hold yet. While it
    trains, the identity's lock keeps a second launch of the same run from racing it.
    """
    validate(cfg)
    identity = run_identity(cfg)
    run_dir = run_checkpoint_dir(cfg, identity, hydra_original_cwd())
    lock = RunLock(run_dir)
    if not lock.acquire(timeout=LOCK_WAIT_S):
        log.warning("run %s is being trained by another process (lock %s); not starting it twice", identity, lock.path)
        return float("nan")
    try:
        return _run_unique(cfg, identity, run_dir)
    finally:
        lock.release()


def _run_unique(cfg: DictConfig, identity: str, run_dir) -> float:
    """``run`` once this process holds the identity's lock: skip, resume or start, then fit."""
    device = resolve_device(cfg.device)
    if cfg.get("torch_threads", 0):
        torch.set_num_threads(int(cfg.torch_threads))
    warnings.filterwarnings("ignore", ".*does not have many workers.*")
    warnings.filterwarnings("ignore", ".*IterableDataset.*")
    warnings.filterwarnings("ignore", ".*`training_step` returned `None`.*")  # replay warm-up steps
    warnings.filterwarnings("ignore", ".*resuming from a checkpoint that ended before the epoch ended.*")
    for name in ("pytorch_lightning", "lightning.pytorch", "lightning_fabric"):
        logging.getLogger(name).setLevel(logging.WARNING)

    enabled = cfg.logger.get("enabled", True)
    previous = None
    if enabled:
        from mlflow.tracking import MlflowClient

        uri = resolve_tracking_uri(cfg.logger.tracking_uri, hydra_original_cwd())
        experiment_id = prepare_store(uri, cfg.logger.experiment)
        previous = find_run(MlflowClient(tracking_uri=uri), experiment_id, IDENTITY_TAG, identity)
        if previous is not None and previous.info.status == "FINISHED":
            remove_resume_files(run_dir)  # in case the process died between finishing and cleaning up
            log.info("skipping %s: run %s already FINISHED", identity, previous.info.run_id)
            return float(previous.data.metrics.get("test/return_mean", math.nan))
    previous_id = previous.info.run_id if previous is not None else None
    ckpt_path = resumable_checkpoint(run_dir, previous_id)

    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    sampler = hydra.utils.instantiate(cfg.sampler)
    env = make_env(cfg.env, cfg.batch_size_run, device, seed=cfg.seed)
    test_env = make_env(cfg.env, min(cfg.test_nepisode, cfg.get("test_batch_max", 32)), device, seed=cfg.seed + 10_000)
    replay = ReplayDataModule(env.env_info, sampler, cfg.buffer_size, cfg.batch_size, device,
                              save_buffer=bool(cfg.checkpoint.save_buffer))  # fmt: skip
    loop = LoopSettings(cfg.t_max, cfg.target_update_interval, cfg.log_interval)
    build_algo = hydra.utils.instantiate(cfg.algo, _partial_=True, _convert_="all")
    algo = build_algo(train_env=env, sampler=sampler, loop=loop)

    logger = build_logger(cfg, identity, previous_id) if enabled else False
    evaluation = GreedyEvaluation(test_env, cfg.test_interval, cfg.test_nepisode, seed=cfg.seed + 20_000)
    checkpoints = RunCheckpoint(run_dir, cfg.checkpoint_interval, logger.run_id if logger else None, identity)
    bar = EnvStepProgressBar(cfg.t_max, desc=str(cfg.env.name), enabled=cfg.progress_bar)
    trainer = hydra.utils.instantiate(
        cfg.trainer,
        accelerator="gpu" if device.type == "cuda" else "cpu",
        devices=[device.index or 0] if device.type == "cuda" else 1,
        logger=logger,
        callbacks=[evaluation, bar, checkpoints],
    )
    if logger:
        log.info("MLflow run %s in %s", logger.run_id, logger._tracking_uri)
    if ckpt_path is not None:
        log.info("resuming %s from %s", identity, ckpt_path)
    elif previous_id is not None:
        log.info("restarting unfinished run %s from scratch (no checkpoint); steps it holds are not logged again",
                 previous_id)  # fmt: skip
    try:
        trainer.fit(algo, datamodule=replay, ckpt_path=ckpt_path, weights_only=False)
    except SIGTERMException:
        signum = checkpoints.interrupted_by or signal.SIGTERM
        if logger:
            logger.experiment.set_terminated(logger.run_id, "KILLED")
        log.warning("interrupted by signal %d; run the same command again to resume from %s",
                    signum, checkpoints.last_path)  # fmt: skip
        checkpoints.pass_on_deferred_signal()  # e.g. submitit requeues the job on its time limit
        raise SystemExit(128 + int(signum)) from None
    checkpoints.finish(trainer, keep_final=bool(cfg.checkpoint.keep_final))
    return float(algo.last_test.get("test/return_mean", float("nan")))


@hydra.main(version_base="1.3", config_path="../conf", config_name="train")
def main(cfg: DictConfig) -> float:
    return run(cfg)


if __name__ == "__main__":
    main()
