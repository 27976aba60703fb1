"""Hydra entry point: ``python -m macpo.train [overrides]`` (``-m`` for grids).

compose config → validate (before any compute) → build env, replay, algorithm, logger,
trainer → fit until ``t_max`` env steps. Returns the final greedy test return.
"""

from __future__ import annotations

import logging
import os
import warnings

import hydra
import pytorch_lightning as pl
import torch
from omegaconf import DictConfig, OmegaConf

from macpo.algos.base import LoopSettings
from macpo.callbacks import EnvStepProgressBar, GreedyEvaluation
from macpo.envs.factory import make_env
from macpo.replay.datamodule import ReplayDataModule
from macpo.tracking import prepare_store, resolve_tracking_uri

log = logging.getLogger(__name__)

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
    resolve_device(cfg.device)
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


def run_tags(cfg: DictConfig) -> dict[str, str]:
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
    return tags


def build_logger(cfg: DictConfig):
    from pytorch_lightning.loggers import MLFlowLogger

    uri = resolve_tracking_uri(cfg.logger.tracking_uri, hydra_original_cwd())
    prepare_store(uri, cfg.logger.experiment)
    logger = MLFlowLogger(
        experiment_name=cfg.logger.experiment,
        tracking_uri=uri,
        tags=run_tags(cfg),
        run_name=f"{cfg.env.name}-{cfg.algo.name}-{cfg.sampler.name}-s{cfg.seed}",
    )
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


def run(cfg: DictConfig) -> float:
    """Train one configuration; the function behind ``python -m macpo.train``."""
    validate(cfg)
    device = resolve_device(cfg.device)
    warnings.filterwarnings("ignore", ".*does not have many workers.*")
    warnings.filterwarnings("ignore", ".*IterableDataset.*")
    warnings.filterwarnings("ignore", ".*`training_step` returned `None`.*")  # replay warm-up steps
    for name in ("pytorch_lightning", "lightning.pytorch", "lightning_fabric"):
        logging.getLogger(name).setLevel(logging.WARNING)
    pl.seed_everything(cfg.seed, workers=True, verbose=False)

    sampler = hydra.utils.instantiate(cfg.sampler)
    env = make_env(cfg.env, cfg.batch_size_run, device, seed=cfg.seed)
    test_env = make_env(cfg.env, min(cfg.test_nepisode, cfg.get("test_batch_max", 32)), device, seed=cfg.seed + 10_000)
    replay = ReplayDataModule(env.env_info, sampler, cfg.buffer_size, cfg.batch_size, device)
    loop = LoopSettings(cfg.t_max, cfg.target_update_interval, cfg.log_interval)
    build_algo = hydra.utils.instantiate(cfg.algo, _partial_=True, _convert_="all")
    algo = build_algo(train_env=env, sampler=sampler, loop=loop)

    logger = build_logger(cfg) if cfg.logger.get("enabled", True) else False
    evaluation = GreedyEvaluation(test_env, cfg.test_interval, cfg.test_nepisode, seed=cfg.seed + 20_000)
    callbacks = [evaluation, EnvStepProgressBar(cfg.t_max, desc=str(cfg.env.name), enabled=cfg.progress_bar)]
    trainer = hydra.utils.instantiate(
        cfg.trainer,
        accelerator="gpu" if device.type == "cuda" else "cpu",
        devices=[device.index or 0] if device.type == "cuda" else 1,
        logger=logger,
        callbacks=callbacks,
    )
    if logger:
        log.info("MLflow run %s in %s", logger.run_id, logger._tracking_uri)
    trainer.fit(algo, datamodule=replay)
    return float(algo.last_test.get("test/return_mean", float("nan")))


@hydra.main(version_base="1.3", config_path="../conf", config_name="train")
def main(cfg: DictConfig) -> float:
    return run(cfg)


if __name__ == "__main__":
    main()
