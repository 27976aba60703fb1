"""Everything checked before a run has any side effect: no store, lock, folder or network yet.

``validate`` is called by the Hydra callback ``macpo.runs.hydra_callbacks.ValidateBeforeRun`` before
Hydra creates the run's output folder, and again by ``macpo.runs.lifecycle.run`` (runs started
from Python, or by a launcher in another process). Every failure is a ``ConfigError`` whose
message names the key; the CLI prints it as one line.
"""

from __future__ import annotations

import importlib
import inspect
import os
from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf

from macpo.config import ConfigError, check_config
from macpo.config.paths import CONF_DIR
from macpo.runs.tracking import StoreError, check_tracking_uri

#: hydra-launcher plugin package -> the command that installs it
LAUNCHER_INSTALL = {
    "hydra_plugins.hydra_joblib_launcher": 'pip install -e .  (hydra-joblib-launcher is a core dependency)',
    "hydra_plugins.hydra_submitit_launcher": 'pip install -e ".[dev]"  (or pip install hydra-submitit-launcher)',
    "hydra_plugins.hydra_ray_launcher": 'pip install -e ".[ray]"  (or pip install hydra-ray-launcher)',
}
#: algo keys read by the run rather than the constructor (exempt from the parameter check)
UNCHECKED_ALGO_KEYS = ("on_policy",)
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
    _check_keywords("algo", cfg.algo, algo_cls, skip=("train_env", "sampler", "loop"))
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


def _check_keywords(group: str, node: DictConfig, cls: type, skip: tuple[str, ...] = ()) -> None:
    """Every key of ``node`` is a parameter of ``cls``'s constructor (following ``**kwargs`` up its bases)."""
    accepted: set[str] = set()
    for klass in cls.__mro__:
        if "__init__" not in vars(klass):
            continue
        params = inspect.signature(vars(klass)["__init__"]).parameters
        accepted |= {n for n, p in params.items() if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)}
        if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
            break
    else:
        return  # **kwargs all the way up: anything may be accepted
    accepted -= {*skip, "self"}
    for key in node:
        if str(key) in UNCHECKED_ALGO_KEYS:
            continue
        if str(key) != "_target_" and str(key) not in accepted:
            raise ConfigError(
                f"{group}.{key}: not a parameter of {node._target_} (it takes {', '.join(sorted(accepted))})"
            )


def _check_checkpoint_dir(cfg: DictConfig, base_dir) -> None:
    configured = cfg.checkpoint.dir
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
    """algo config name → class, read from ``conf/algo/*.yaml`` (following their defaults lists)."""
    conf_dir = CONF_DIR / "algo"

    def target(name: str) -> str:
        c = OmegaConf.load(conf_dir / f"{name}.yaml")
        if "_target_" in c:
            return c._target_
        parents = [d for d in c.get("defaults", []) if isinstance(d, str) and d != "_self_" and "/" not in d]
        return target(parents[0])

    names = sorted(p.stem for p in conf_dir.glob("*.yaml"))
    return {n: hydra.utils.get_class(target(n)) for n in names}


def _one_line(error: BaseException) -> str:
    text = " ".join(str(error).split())
    return text or type(error).__name__
