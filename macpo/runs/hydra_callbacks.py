"""Hydra callbacks: validate the config before Hydra or a run creates anything.

Hydra calls ``on_run_start`` / ``on_multirun_start`` before it makes the run's output folder or
instantiates the launcher, so a bad config, store or launcher fails here with nothing written.
A multirun checks the launcher plugin and every job of the grid (each distinct env is built
once) before the first job starts. The store itself is created by the first run that needs it
(``macpo.runs.tracking.prepare_store``, under a file lock, so parallel workers do not race on it).
"""

from __future__ import annotations

import os
from contextlib import contextmanager

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf


class ValidateBeforeRun(Callback):
    """Hydra turns an ``Exception`` in a callback into a warning and carries on, so a refused
    config leaves as ``ConfigRejected`` (a ``SystemExit``)."""

    def on_run_start(self, config: DictConfig, **kwargs) -> None:
        from macpo.config import check_config

        with rejecting():
            check_config(config)  # types, ranges, keys, names: before torch, Lightning and MLflow are imported
            check_output_dir(config, "hydra.run.dir")
        from macpo.runs.validation import validate

        with rejecting():
            validate(config, os.getcwd(), multirun=False, sweep=OmegaConf.select(config, "hydra.runtime.choices.sweep"))

    def on_multirun_start(self, config: DictConfig, **kwargs) -> None:
        from macpo.config import check_config

        with rejecting():
            check_config(config)
            check_output_dir(config, "hydra.sweep.dir")
        from macpo.runs.validation import check_launcher, validate

        with rejecting():
            check_launcher(config.hydra)
            for job_cfg, build_env in grid_job_configs(config):
                validate(job_cfg, os.getcwd(), multirun=True, sweep=None, build_env=build_env)


def check_output_dir(config: DictConfig, key: str) -> None:
    """The folder Hydra is about to create is one a filesystem accepts (``hydra.run.dir`` names runs)."""
    from macpo.config import ConfigError
    from macpo.config.checks import path_problem

    try:
        folder = OmegaConf.select(config, key)
    except Exception:  # a resolver only Hydra's launch can resolve: Hydra reports it
        return
    problem = path_problem(os.path.abspath(str(folder))) if folder else None
    if problem:
        raise ConfigError(f"{key}={str(folder)[:60]!r}: {problem}")


@contextmanager
def rejecting():
    from macpo.config import ConfigError, ConfigRejected

    try:
        yield
    except ConfigError as error:
        raise ConfigRejected(error) from error


def grid_job_configs(config: DictConfig):
    """Each job of a multirun as (config, whether its env is new to the check), as Hydra's basic
    sweeper expands the grid. Another sweeper chooses its jobs as it goes: its base config is checked."""
    from hydra import compose

    from macpo.config import ConfigError, composition_error_message
    from macpo.runs.grids import grid_jobs

    if not str(OmegaConf.select(config, "hydra.sweeper._target_") or "").endswith("BasicSweeper"):
        yield config, True
        return
    params = OmegaConf.select(config, "hydra.sweeper.params") or {}
    overrides = [str(o) for o in OmegaConf.select(config, "hydra.overrides.task") or []]
    config_name = OmegaConf.select(config, "hydra.job.config_name") or "train"
    seen_envs = set()
    for job in grid_jobs({str(k): str(v) for k, v in params.items()}, overrides):
        try:
            job_cfg = compose(config_name=config_name, overrides=list(job))
        except Exception as error:
            message = composition_error_message(error)
            if message is None:
                raise
            raise ConfigError(f"job {' '.join(job)}: {message}") from None
        env_key = OmegaConf.to_yaml(job_cfg.env)
        yield job_cfg, env_key not in seen_envs
        seen_envs.add(env_key)
