"""Schemas of the config: what type and range every key has. The values live in ``conf/*.yaml``.

One source of defaults: every field here is ``MISSING``; the yaml files give the values, and a
yaml file names its schema in its defaults list (``- /schema/sampler/macpo@_here_``). Types are
checked by OmegaConf while Hydra composes the config (``t_max=1.5`` fails there); ranges and
choices (``metadata``) by ``macpo.config.checks.check_config`` right after.

The ``env``, ``algo`` and ``sampler`` schemas are open: they type the keys they declare and let
an option carry more (a new algorithm's yaml composes without touching this file; its extra
keys reach its constructor, which checks them before anything is built). To type those keys
too, add a dataclass below that extends the base and name it in the option's yaml (see
``SCHEMAS`` at the end: the one place a schema is registered).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional  # noqa: UP035 - OmegaConf reads typing generics

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING

# OmegaConf 2.3 deprecates dataclasses that subclass Dict; they are still the one way to type
# some keys of a node while letting it carry others (the open env/algo/sampler schemas).
warnings.filterwarnings("ignore", message=r".*subclasses `Dict`.*")


def key(*, ge=None, gt=None, le=None, lt=None, choices=None, nonempty=False):
    """A field with no default (the yaml gives it) and the range ``check_config`` enforces."""
    rules = {"ge": ge, "gt": gt, "le": le, "lt": lt, "choices": tuple(choices) if choices else None,
             "nonempty": nonempty}  # fmt: skip
    return field(default=MISSING, metadata={k: v for k, v in rules.items() if v is not None and v is not False})


POSITIVE = {"ge": 1}
UNIT = {"ge": 0.0, "le": 1.0}
SEED_MAX = 2**32 - 1  # numpy seeds are 32-bit


# ---- run-level ------------------------------------------------------------------------------
@dataclass
class LoggerConfig:
    enabled: bool = key()
    tracking_uri: str = key(nonempty=True)
    experiment: str = key(nonempty=True)


@dataclass
class CheckpointConfig:
    dir: Optional[str] = key()  # noqa: UP045
    save_buffer: bool = key()
    keep_final: bool = key()


@dataclass
class NNConfig:
    """How the networks compute (``macpo.nn.kernels``), not what: left out of a run's identity."""

    kernels: str = key(choices=("fused", "torch"))


@dataclass
class TrainConfig:
    """The top-level keys (``conf/train.yaml``); groups are typed by their own schemas."""

    env: Any = MISSING
    algo: Any = MISSING
    sampler: Any = MISSING
    logger: LoggerConfig = field(default_factory=LoggerConfig)
    trainer: Any = MISSING
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    nn: NNConfig = field(default_factory=NNConfig)
    seed: int = key(ge=0, le=SEED_MAX)
    device: str = key(nonempty=True)
    torch_threads: int = key(ge=0)
    t_max: int = key(**POSITIVE)
    t_max_by_env: Dict[str, int] = key()  # noqa: UP006
    batch_size: int = key(**POSITIVE)
    buffer_size: int = key(**POSITIVE)
    batch_size_run: int = key(**POSITIVE)
    test_interval: int = key(**POSITIVE)
    test_nepisode: int = key(**POSITIVE)
    log_interval: int = key(**POSITIVE)
    target_update_interval: int = key(**POSITIVE)
    checkpoint_interval: int = key(**POSITIVE)
    max_nonfinite_streak: int = key(**POSITIVE)
    sweep_name: str = key(nonempty=True)
    progress_bar: bool = key()


# ---- env ------------------------------------------------------------------------------------
@dataclass
class EnvConfig(Dict[str, Any]):  # noqa: UP006
    """Every env: the class or factory to build and the name tagged on the run."""

    _target_: str = key(nonempty=True)
    name: str = key(nonempty=True)


@dataclass
class PredatorPreyConfig(EnvConfig):
    grid_size: int = key(ge=2)
    n_agents: int = key(**POSITIVE)
    n_prey: int = key(**POSITIVE)
    punishment: float = key(le=0.0)
    episode_limit: int = key(**POSITIVE)


@dataclass
class PettingZooConfig(EnvConfig):
    module: str = key(nonempty=True)
    env_kwargs: Dict[str, Any] = key()  # noqa: UP006
    team_reward: str = key(choices=("sum", "mean"))
    episode_limit: Optional[int] = key(**POSITIVE)  # noqa: UP045


# ---- algo -----------------------------------------------------------------------------------
@dataclass
class AlgoConfig(Dict[str, Any]):  # noqa: UP006
    """Every algorithm: the LightningModule class and the name tagged on the run."""

    _target_: str = key(nonempty=True)
    name: str = key(nonempty=True)


@dataclass
class QmixConfig(AlgoConfig):
    lr: float = key(gt=0.0)
    gamma: float = key(**UNIT)
    td_lambda: float = key(**UNIT)
    double_q: bool = key()
    agent_hidden_dim: int = key(**POSITIVE)
    mixer_embed_dim: int = key(**POSITIVE)
    hypernet_dim: int = key(**POSITIVE)
    agent_q_clamp: Optional[List[float]] = key()  # noqa: UP006, UP045
    grad_clip: float = key(gt=0.0)
    epsilon_start: float = key(**UNIT)
    epsilon_finish: float = key(**UNIT)
    epsilon_anneal_time: int = key(**POSITIVE)


@dataclass
class CentralQConfig(QmixConfig):
    """QMIX with an unrestricted central Q* (MAC-PO, and the base of Weighted QMIX)."""

    central_embed_dim: int = key(**POSITIVE)
    central_agent_hidden_dim: int = key(**POSITIVE)
    central_loss_coef: float = key(ge=0.0)


@dataclass
class WqmixConfig(CentralQConfig):
    weighting: str = key(choices=("ow", "cw", "none"))
    w: float = key(gt=0.0, le=1.0)


# ---- sampler --------------------------------------------------------------------------------
@dataclass
class SamplerConfig(Dict[str, Any]):  # noqa: UP006
    """The keys every sampler shares (``conf/sampler/base.yaml``)."""

    _target_: str = key(nonempty=True)
    name: str = key(nonempty=True)
    mode: str = key(choices=("reweight", "resample"))
    normalize: bool = key()
    alpha: float = key(ge=0.0)
    beta: float = key(**UNIT)
    beta_end: float = key(**UNIT)
    episode_priority: str = key(choices=("mean", "max"))
    eps: float = key(gt=0.0, lt=1.0)


@dataclass
class BoltzmannSamplerConfig(SamplerConfig):
    """Samplers that read the agents' Boltzmann policies π."""

    temperature: float = key(gt=0.0)
    pi_over: str = key(choices=("available", "all"))


@dataclass
class MacpoSamplerConfig(BoltzmannSamplerConfig):
    use_bellman: bool = key()
    use_value: bool = key()
    use_joint: bool = key()


@dataclass
class MacpoApproxSamplerConfig(MacpoSamplerConfig):
    levels: List[float] = key()  # noqa: UP006
    cut_points: List[float] = key()  # noqa: UP006


@dataclass
class PserSamplerConfig(SamplerConfig):
    window: int = key(**POSITIVE)
    decay: float = key(**UNIT)


#: ConfigStore group -> {name: schema}. A yaml option uses one with ``- /schema/<group>/<name>@_here_``.
SCHEMAS: dict[str, dict[str, type]] = {
    "schema/env": {"base": EnvConfig, "predator_prey": PredatorPreyConfig, "pettingzoo": PettingZooConfig},
    "schema/algo": {"base": AlgoConfig, "qmix": QmixConfig, "central_q": CentralQConfig, "wqmix": WqmixConfig},
    "schema/sampler": {"base": SamplerConfig, "boltzmann": BoltzmannSamplerConfig, "macpo": MacpoSamplerConfig,
                       "macpo_approx": MacpoApproxSamplerConfig, "pser": PserSamplerConfig},
}  # fmt: skip
TRAIN_SCHEMA = "train_schema"


def register() -> None:
    """Put the schemas in Hydra's ConfigStore (idempotent; done on ``import macpo.config``)."""
    store = ConfigStore.instance()
    store.store(name=TRAIN_SCHEMA, node=TrainConfig)
    for group, schemas in SCHEMAS.items():
        for name, node in schemas.items():
            store.store(group=group, name=name, node=node)
