"""Everything checked before a run has any side effect: no store, lock, folder or network yet.

``validate`` is called by the Hydra callback ``macpo.runs.hydra_callbacks.ValidateBeforeRun`` before
Hydra creates the run's output folder, and again by ``macpo.runs.lifecycle.run`` (runs started
from Python, or by a launcher in another process). Every failure is a ``ConfigError`` whose
message names the key; the CLI prints it as one line.
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import os
from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf

from macpo.config import ConfigError, check_config
from macpo.config.checks import path_problem, unknown_key_message
from macpo.runs.tracking import StoreError, check_tracking_uri

#: hydra-launcher plugin package -> the command that installs it
LAUNCHER_INSTALL = {
    "hydra_plugins.hydra_joblib_launcher": 'pip install -e .  (hydra-joblib-launcher is a core dependency)',
    "hydra_plugins.hydra_submitit_launcher": 'pip install -e ".[dev]"  (or pip install hydra-submitit-launcher)',
    "hydra_plugins.hydra_ray_launcher": 'pip install -e ".[ray]"  (or pip install hydra-ray-launcher)',
}
#: env backends that are built only when the run starts (an external game or simulator)
EXTERNAL_BACKENDS = ("sc2", "smax")


def resolve_device(device: str):
    import torch

    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device={device!r} but CUDA is not available here; use device=cpu or device=auto")
    if not (device == "cpu" or device.startswith("cuda")):
        raise ConfigError(f"device must be auto, cpu or cuda[:N], got {device!r}")
    return torch.device(device)


def validate(cfg: DictConfig, base_dir: str | os.PathLike | None = None, multirun: bool | None = None,
             sweep: str | None = None, build_env: bool = True) -> str:  # fmt: skip
    """Check ``cfg`` as a run would use it; returns the resolved tracking URI. Creates nothing.

    ``multirun``/``sweep``: how the run was launched (read from Hydra when None).
    """
    check_config(cfg)
    _check_launch_mode(multirun, sweep)
    if cfg.batch_size > cfg.buffer_size:
        raise ConfigError(
            f"batch_size ({cfg.batch_size}) exceeds the replay capacity buffer_size ({cfg.buffer_size})"
        )
    resolve_device(cfg.device)
    precision = str(cfg.trainer.get("precision", "32-true"))
    if precision not in ("32", "32-true", "bf16-mixed", "bf16"):
        raise ConfigError(
            f"trainer.precision={precision} is not supported: use 32-true (float32) or bf16-mixed "
            "(bfloat16 matmuls and GRU, float32 targets, losses and sampler weights)"
        )
    _check_env(cfg, build_env)
    _check_algo_and_sampler(cfg)
    _check_trainer(cfg)
    try:
        uri = check_tracking_uri(str(cfg.logger.tracking_uri), base_dir, probe_server=bool(cfg.logger.enabled))
    except StoreError as error:
        raise ConfigError(str(error)) from None
    _check_checkpoint_dir(cfg, base_dir)
    return uri


def _check_launch_mode(multirun: bool | None, sweep: str | None) -> None:
    if multirun is None:
        from macpo.runs.grids import is_multirun, selected_sweep

        multirun, sweep = is_multirun(), selected_sweep()
    if sweep and not multirun:
        raise ConfigError(
            f"sweep={sweep} is a grid of runs: launch it with -m (python -m macpo.train -m sweep={sweep} ...)"
        )


def _check_env(cfg: DictConfig, build: bool) -> None:
    """Build one copy of the env on the CPU (cheap), so a bad argument fails here, naming the key."""
    from macpo.envs.factory import check_env_config, make_env

    try:  # SMAC backend installed, map known to it, simulator version current
        check_env_config(cfg.env)
    except ValueError as error:
        raise ConfigError(str(error)) from None
    backend = cfg.env.get("backend")
    if backend == "sc2":  # the real game: check the install, start nothing
        from macpo.envs.sc2_adapter import Sc2BackendUnavailable, check_sc2_install

        try:
            check_sc2_install()
        except Sc2BackendUnavailable as error:
            raise ConfigError(f"env.backend=sc2: {error}") from None
    if not build or backend in EXTERNAL_BACKENDS:
        return
    try:
        env = make_env(cfg.env, 1, "cpu", seed=int(cfg.seed))
    except Exception as error:  # the env's own message names its argument
        raise ConfigError(f"env={cfg.env.name}: {_one_line(error)}") from None
    env.close()


def _check_algo_and_sampler(cfg: DictConfig) -> None:
    try:
        algo_cls = hydra.utils.get_class(str(cfg.algo._target_))
    except Exception as error:
        raise ConfigError(f"algo._target_={cfg.algo._target_}: {_one_line(error)}") from None
    _check_hparams(cfg.algo, algo_cls)
    try:
        sampler = hydra.utils.instantiate(cfg.sampler)
    except Exception as error:
        raise ConfigError(f"sampler={cfg.sampler.name}: {_one_line(error)}") from None
    missing = set(sampler.needs) - set(algo_cls.provides)
    if missing:
        able = [name for name, cls in algorithm_classes().items() if cls.sampler_problem(sampler) is None]
        raise ConfigError(
            f"sampler={cfg.sampler.name} needs the signals {sorted(missing)}, which algo={cfg.algo.name} cannot "
            f"compute; choose an algorithm that can: {', '.join('algo=' + a for a in able) or 'none'}"
        )
    problem = algo_cls.sampler_problem(sampler)  # e.g. a replay sampler for an on-policy method
    if problem:
        raise ConfigError(f"algo={cfg.algo.name}: {problem}")


def _check_trainer(cfg: DictConfig) -> None:
    """Every ``trainer.*`` key is an argument of the Trainer class (``+trainer.x=1`` would fail only once the
    run had started)."""
    try:
        cls = hydra.utils.get_class(str(cfg.trainer._target_))
    except Exception as error:
        raise ConfigError(f"trainer._target_={cfg.trainer._target_}: {_one_line(error)}") from None
    parameters = inspect.signature(cls).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
        return  # it takes any keyword: its own check
    for key in cfg.trainer:
        if str(key) not in set(parameters) | {"_target_"}:
            raise ConfigError(unknown_key_message(f"trainer.{key}", parameters))


def _check_hparams(node: DictConfig, cls: type) -> None:
    """``node`` is typed by the dataclass ``cls`` takes, carries no other key, and passes the class's checks."""
    schema = getattr(cls, "config_class", None)
    if schema is None:  # a class that takes its keys as keyword arguments (a test double)
        names = set(inspect.signature(cls.__init__).parameters) - {"self", "train_env", "sampler", "loop"}
    else:
        names = {f.name for f in dataclasses.fields(schema)}
    for key in node:
        if str(key) not in names | {"_target_"}:
            raise ConfigError(f"algo.{key}: not a parameter of {node._target_} "
                              f"(it takes {', '.join(sorted(names - {'_target_'}))})")  # fmt: skip
    if schema is None:
        return
    typed_as = OmegaConf.get_type(node)
    if typed_as is not schema:
        typed = getattr(typed_as, "__name__", typed_as)
        raise ConfigError(f"algo={node.name}: {node._target_} takes a {schema.__name__}, but its yaml is typed as "
                          f"{typed} (name the schema in its defaults list)")  # fmt: skip
    try:
        cls.check_hparams(OmegaConf.to_object(node))
    except ValueError as error:
        raise ConfigError(_one_line(error)) from None


def _check_checkpoint_dir(cfg: DictConfig, base_dir) -> None:
    """The longest file a run writes fits the filesystem; a configured folder can be created."""
    from macpo.runs.checkpoints import checkpoint_root
    from macpo.runs.identity import IDENTITY_LENGTH

    configured = cfg.checkpoint.dir
    root = checkpoint_root(cfg, base_dir or os.getcwd())
    problem = path_problem(root / str(cfg.logger.experiment) / ("0" * IDENTITY_LENGTH) / "last.ckpt.tmp")
    if problem:
        key = "checkpoint.dir" if configured else "logger.tracking_uri"
        raise ConfigError(f"{key}={str(configured or cfg.logger.tracking_uri)[:60]!r}: its checkpoint files: {problem}")
    if not configured:
        return
    path = Path(str(configured))
    path = path if path.is_absolute() else Path(base_dir or os.getcwd()) / path
    existing = next(p for p in (path, *path.parents) if p.exists())
    if not existing.is_dir():
        raise ConfigError(f"checkpoint.dir={configured}: {existing} is a file, not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ConfigError(f"checkpoint.dir={configured}: {existing} is not writable")


def check_launcher(hydra_cfg: DictConfig) -> None:
    """The launcher plugin a multirun will instantiate is installed (else: how to install it)."""
    target = OmegaConf.select(hydra_cfg, "launcher._target_")
    if not target:
        return
    module = str(target).rsplit(".", 1)[0]
    try:
        importlib.import_module(module)
    except ImportError:
        choice = OmegaConf.select(hydra_cfg, "runtime.choices") or {}
        name = choice.get("hydra/launcher", module)
        package = next((p for p in LAUNCHER_INSTALL if module.startswith(p)), None)
        install = LAUNCHER_INSTALL.get(package, f"install the package that provides {module}")
        raise ConfigError(f"hydra/launcher={name} needs its Hydra plugin, which is not installed: {install}") from None


def algorithm_classes() -> dict[str, type]:
    """algo config name → class, for the algorithms of ``conf/algo`` (``macpo.config.checks.algo_targets``)."""
    from macpo.config.checks import algo_targets

    return {name: hydra.utils.get_class(target) for name, target in algo_targets().items()}


def _one_line(error: BaseException) -> str:
    text = " ".join(str(error).split())
    return text or type(error).__name__
