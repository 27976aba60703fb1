"""Schemas of the config: what type and range every key has. The values live in ``conf/*.yaml``.

One source of defaults: every field here is ``MISSING``; the yaml files give the values, and a
yaml file names its schema in its defaults list (``- /schema/sampler/macpo@_here_``). Types are
checked by OmegaConf while Hydra composes the config (``t_max=1.5`` fails there); ranges and
choices (``metadata``) by ``macpo.config.checks.check_config`` right after.

The ``env`` and ``sampler`` schemas are open: they type the keys they declare and let an option
carry more (its extra keys reach its constructor, which checks them before anything is built).
To type those keys too, add a dataclass below that extends the base and name it in the option's
yaml (see ``SCHEMAS`` at the end: the one place a schema is registered). The ``algo`` schemas are
closed: every algorithm has a dataclass of its own, which its class receives (``config_class``).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional  # noqa: UP035 - OmegaConf reads typing generics

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING

# OmegaConf 2.3 deprecates dataclasses that subclass Dict; they are still the one way to type
# some keys of a node while letting it carry others (the open env and sampler schemas).
warnings.filterwarnings("ignore", message=r".*subclasses `Dict`.*")


def key(*, ge=None, gt=None, le=None, lt=None, choices=None, nonempty=False, filename=False):
    """A field with no default (the yaml gives it) and the range ``check_config`` enforces.

    ``filename``: the value becomes one folder name (``checks.name_problem``: no path, bounded length).
    """
    rules = {"ge": ge, "gt": gt, "le": le, "lt": lt, "choices": tuple(choices) if choices else None,
             "nonempty": nonempty, "filename": filename}  # fmt: skip
    return field(default=MISSING, metadata={k: v for k, v in rules.items() if v is not None and v is not False})


POSITIVE = {"ge": 1}
UNIT = {"ge": 0.0, "le": 1.0}
SEED_MAX = 2**32 - 1  # numpy seeds are 32-bit


# ---- run-level ------------------------------------------------------------------------------
@dataclass
class LoggerConfig:
    enabled: bool = key()
    tracking_uri: str = key(nonempty=True)
    experiment: str = key(nonempty=True, filename=True)  # checkpoints/<experiment>/, mlartifacts/<experiment>/


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
    sweep_name: str = key(nonempty=True, filename=True)
    progress_bar: bool = key()


# ---- env ------------------------------------------------------------------------------------
@dataclass
class EnvConfig(Dict[str, Any]):  # noqa: UP006
    """Every env: the class or factory to build and the name tagged on the run."""

    _target_: str = key(nonempty=True)
    name: str = key(nonempty=True, filename=True)  # in hydra.run.dir, like algo.name and sampler.name


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


# ---- algo ----------------------------------------------------------------------------------
# One dataclass per algorithm, holding only its own keys; the keys several algorithms share are
# typed once, in a base or a mixin. The dataclass is both the schema of ``conf/algo/<name>.yaml``
# (which gives every value) and what the algorithm class receives as ``cfg`` (``config_class``).
@dataclass
class AlgoConfig:
    """Every algorithm: its class, the name tagged on the run, and the keys all of them share."""

    _target_: str = key(nonempty=True)  # the MarlAlgorithm subclass
    name: str = key(nonempty=True, filename=True)
    lr: float = key(gt=0.0)  # learning rate (of the actors, for the actor-critics)
    gamma: float = key(**UNIT)
    td_lambda: float = key(**UNIT)  # λ of the TD(λ) targets
    agent_hidden_dim: int = key(**POSITIVE)  # GRU width of the shared agent network
    grad_clip: float = key(gt=0.0)  # gradient-norm clip of every optimiser
    epsilon_start: float = key(**UNIT)  # exploration ε (ε-greedy, or the actor-critics' ε-floor) ...
    epsilon_finish: float = key(**UNIT)
    epsilon_anneal_time: int = key(**POSITIVE)  # ... annealed linearly over this many env steps


@dataclass
class MixerConfig:
    """Mixin: a mixing network."""

    mixer_embed_dim: int = key(**POSITIVE)


@dataclass
class HypernetMixerConfig(MixerConfig):
    """Mixin: a mixer whose weights come from hypernetworks of the state."""

    hypernet_dim: int = key(**POSITIVE)


@dataclass
class ValueBasedConfig(AlgoConfig):
    """ε-greedy value decomposition (``macpo.algos.value_based``)."""

    double_q: bool = key()  # the online agents pick the target's greedy action
    agent_q_clamp: Optional[List[float]] = key()  # noqa: UP006, UP045 - [lo, hi] on agent utilities


@dataclass
class QmixConfig(HypernetMixerConfig, ValueBasedConfig):
    """QMIX: the value-based keys and its hypernetwork mixer's."""


@dataclass
class CentralQConfig(QmixConfig):
    """QMIX with an unrestricted central Q* (MAC-PO, and the base of Weighted QMIX)."""

    central_embed_dim: int = key(**POSITIVE)
    central_agent_hidden_dim: int = key(**POSITIVE)
    central_loss_coef: float = key(ge=0.0)


@dataclass
class WqmixConfig(CentralQConfig):
    weighting: str = key(choices=("ow", "cw", "none"))
    w: float = key(gt=0.0, le=1.0)  # the down-weighting α


@dataclass
class QplexConfig(ValueBasedConfig):
    optimiser: str = key()  # adam | rmsprop (OptimiserSpec.KINDS)
    optimiser_options: Optional[Dict[str, Any]] = key()  # noqa: UP006, UP045 - keywords of the torch optimiser
    hypernet_embed: int = key(**POSITIVE)  # the w_i(s), b_i(s) transform networks
    num_kernel: int = key(**POSITIVE)  # attention heads of λ_i(s, u)
    adv_hypernet_layers: int = key(**POSITIVE)
    adv_hypernet_embed: int = key(**POSITIVE)
    weighted_head: bool = key()


@dataclass
class ActorCriticConfig(AlgoConfig):
    """Stochastic actors with an ε-floor and pymarl's RMSprop (``macpo.algos.actor_critic``)."""

    optim_alpha: float = key(**UNIT)  # RMSprop α
    optim_eps: float = key(gt=0.0)  # RMSprop ε


@dataclass
class CriticLrConfig(ActorCriticConfig):
    """Actor-critics whose critic has an optimiser of its own."""

    critic_lr: float = key(gt=0.0)  # critic (+ mixer) learning rate


@dataclass
class DopConfig(MixerConfig, CriticLrConfig):
    tb_lambda: float = key(**UNIT)  # tree-backup trace decay on replayed episodes
    tree_backup_steps: int = key(**POSITIVE)  # n of the n-step tree backup
    on_buffer_size: int = key(**POSITIVE)  # DOP's on-policy buffer of recent episodes
    on_batch_size: int = key(**POSITIVE)  # episodes per update from it (≤ on_buffer_size)
    critic_hidden_dim: int = key(**POSITIVE)


@dataclass
class FopConfig(HypernetMixerConfig, CriticLrConfig):
    alpha_start: float = key()  # entropy temperature (> 0, FOP checks) ...
    alpha_finish: float = key()
    alpha_anneal_time: int = key(**POSITIVE)  # ... annealed linearly over this many env steps
    n_heads: int = key(**POSITIVE)  # attention heads of the mixer
    attend_reg_coef: float = key(ge=0.0)


@dataclass
class VdacConfig(HypernetMixerConfig, ActorCriticConfig):
    vf_coef: float = key(ge=0.0)  # weight of the value loss
    ent_coef: float = key(ge=0.0)  # entropy bonus


# ---- sampler --------------------------------------------------------------------------------
@dataclass
class SamplerConfig(Dict[str, Any]):  # noqa: UP006
    """The keys every sampler shares (``conf/sampler/base.yaml``)."""

    _target_: str = key(nonempty=True)
    name: str = key(nonempty=True, filename=True)
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
    "schema/algo": {"base": AlgoConfig, "value_based": ValueBasedConfig, "actor_critic": ActorCriticConfig,
                    "qmix": QmixConfig, "central_q": CentralQConfig, "wqmix": WqmixConfig, "qplex": QplexConfig,
                    "dop": DopConfig, "fop": FopConfig, "vdac": VdacConfig},
    "schema/sampler": {"base": SamplerConfig, "boltzmann": BoltzmannSamplerConfig, "macpo": MacpoSamplerConfig,
                       "macpo_approx": MacpoApproxSamplerConfig, "pser": PserSamplerConfig},
}  # fmt: skip
TRAIN_SCHEMA = "train_schema"


def register() -> None:
    """Put the schemas in Hydra's ConfigStore (idempotent; done on ``import macpo.config``), and
    ``method=<algo>`` for every algorithm of ``conf/algo``: the same as ``algo=<algo>`` (which
    brings the sampler the algorithm is paired with), the name the paper's grids use."""
    from macpo.config.checks import algo_targets

    store = ConfigStore.instance()
    store.store(name=TRAIN_SCHEMA, node=TrainConfig)
    for group, schemas in SCHEMAS.items():
        for name, node in schemas.items():
            store.store(group=group, name=name, node=node)
    for name in algo_targets():
        store.store(group="method", name=name, node={"defaults": [{"override /algo": name}]}, package="_global_")
