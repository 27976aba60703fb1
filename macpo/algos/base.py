"""MarlAlgorithm: the learner base every family fits (value-based, actor-critic, on- or off-policy).

One fit-loop iteration = collect ``batch_size_run`` episodes with the algorithm's own
exploration policy, hand them to the data path (the replay DataModule, or, for ``on_policy``
methods, the episodes just collected), then — once the data path has a batch — ``learn`` from it:
the algorithm computes its losses, weighs its timesteps with the sampler through ``weigh`` (which
builds the sampler's ``Signals``) and steps its optimisers through ``optimise`` (gradient clipping,
the non-finite guard, ``grad_norm`` logging). Training stops at ``t_max`` environment steps.

Optimisation is manual (Lightning's ``automatic_optimization = False``) so that a method may own
several optimisers (actor and critic) and skip a step whose loss or gradient is not finite.
A concrete subclass must implement every ``@abstractmethod``; a missing one raises ``TypeError``
when the class is created (LightningModule has no ABCMeta). Intermediate bases declare
``class X(MarlAlgorithm, abstract=True)``.
"""

from __future__ import annotations

import copy
import functools
import inspect
import math
import time
from abc import abstractmethod
from dataclasses import dataclass, field
from typing import ClassVar

import pytorch_lightning as pl
import torch

from macpo.algos.data_path import OnPolicyDataModule
from macpo.algos.guard import NonFiniteUpdateError
from macpo.envs.base import BatchedEnv
from macpo.nn.packing import EpisodePacking
from macpo.replay.datamodule import ReplayDataModule
from macpo.replay.samplers.base import Sampler
from macpo.replay.samplers.uniform import UniformSampler
from macpo.replay.signals import Signals
from macpo.rollout import Collector, Policy


@dataclass
class LoopSettings:
    """The run-level schedule (top-level config keys)."""

    t_max: int
    target_update_interval: int = 200  # in episodes
    log_interval: int = 10_000  # in env steps
    max_nonfinite_streak: int = 10  # consecutive skipped (non-finite) updates before the run fails


@dataclass
class LossOutput:
    """What one ``learn`` call computed: the total loss, the sampler's signals, metrics to log."""

    loss: torch.Tensor
    signals: Signals | None = None
    metrics: dict[str, torch.Tensor] = field(default_factory=dict)


@dataclass
class OptimiserSpec:
    """One optimiser: the parameters it trains, its learning rate and gradient-norm clip.

    ``kind`` is ``adam`` or ``rmsprop``; ``options`` are extra keyword arguments of the torch
    optimiser (e.g. ``{"alpha": 0.99, "eps": 1e-5}`` for pymarl's RMSprop).
    """

    params: list[torch.nn.Parameter]
    lr: float
    grad_clip: float | None = 10.0
    kind: str = "adam"
    options: dict = field(default_factory=dict)

    KINDS: ClassVar[dict[str, type]] = {"adam": torch.optim.Adam, "rmsprop": torch.optim.RMSprop}

    def __post_init__(self) -> None:
        if self.kind not in self.KINDS:
            raise ValueError(f"optimiser must be one of {sorted(self.KINDS)}, got {self.kind!r}")
        try:  # options the torch optimiser does not take fail here, not at the first update
            self.KINDS[self.kind]([torch.zeros(1, requires_grad=True)], lr=self.lr, **self.options)
        except (TypeError, ValueError) as error:
            raise ValueError(f"optimiser options {self.options} do not suit {self.kind}: {error}") from None

    def build(self) -> torch.optim.Optimizer:
        return self.KINDS[self.kind](self.params, lr=self.lr, **self.options)


@dataclass
class PackedBatch:
    """A batch of b episodes with their real timesteps only (``macpo.nn.packing``): what every
    learner reads, so that an update costs the timesteps played, not the padding.

    Observation rows (R_obs: every episode's t = 0 .. L, the final observation included) feed the
    recurrent agents; transition rows (R: t = 0 .. L − 1) carry losses and the sampler's signals.
    ``tr`` and ``nxt`` [R] are the observation rows of each transition and of its next observation.
    Built once per update from the data path's padded tensors [b, T+1, ...] (``PackedBatch.of``).
    """

    packing: EpisodePacking
    steps: list[int]  # [T_obs] episodes still running at each step (the GRU's shrinking batch)
    # [R_obs, N, O+A+N] agent-network inputs (obs ⊕ last action ⊕ id) in the obs' storage dtype
    # (uint8/float16: 4× / 2× smaller than float32); the agents cast them a chunk at a time
    inputs: torch.Tensor
    # [R_obs, S] in the replay's storage dtype too: the mixers read it through ``data_linear``, which
    # casts a chunk at a time (a float32 copy is 31 MB at predator-prey size, and autograd kept two)
    state: torch.Tensor
    avail: torch.Tensor  # [R_obs, N, A] bool
    actions: torch.Tensor  # [R_obs, N] long (the action taken at each observation row)
    tr: torch.Tensor  # [R] observation row of each transition
    nxt: torch.Tensor  # [R] observation row of each transition's next observation
    taken: torch.Tensor  # [R, N] long
    reward: torch.Tensor  # [R]
    terminated: torch.Tensor  # [R] float

    @classmethod
    def of(cls, batch: dict[str, torch.Tensor], n_actions: int) -> PackedBatch:
        """Packs the padded batch [b, T+1, ...] (any storage dtypes; only real rows are cast)."""
        pk = EpisodePacking(batch["filled"])
        actions = pk.pack_obs(batch["actions"]).long()  # [R_obs, N]
        return cls(
            packing=pk,
            steps=pk.obs_steps,
            inputs=pk.agent_inputs(batch["obs"], batch["actions"], n_actions, dtype=storage_dtype(batch["obs"])),
            state=pk.pack_obs(batch["state"]),
            avail=pk.pack_obs(batch["avail_actions"]).bool(),
            actions=actions,
            tr=pk.trans_in_obs,
            nxt=pk.next_in_obs,
            taken=actions[pk.trans_in_obs],
            reward=pk.pack_trans(batch["reward"]).float(),
            terminated=pk.pack_trans(batch["terminated"]).float(),
        )

    @functools.cached_property
    def state_tr(self) -> torch.Tensor:
        """The state of each transition row [R, S] (storage dtype): one copy that every mixer reads."""
        return self.state[self.tr]

    def mean(self, x: torch.Tensor) -> torch.Tensor:
        """Mean over the transitions of x [R] (the padded batch's masked mean)."""
        return self.packing.masked_rows(x)

    def lambda_returns(self, next_values: torch.Tensor, gamma: float, td_lambda: float) -> torch.Tensor:
        """TD(λ) targets [R] (float32 or wider) from the value of each transition's next observation [R]."""
        return self.packing.td_lambda_targets(self.reward, self.terminated, next_values, gamma, td_lambda)


def storage_dtype(obs: torch.Tensor) -> torch.dtype:
    """The dtype agent inputs are packed in: the observations' own when it holds one-hot values exactly."""
    return obs.dtype if obs.dtype.is_floating_point or obs.dtype == torch.uint8 else torch.float32


def sampler_is_uniform(sampler: Sampler) -> bool:
    """Whether the sampler weighs every stored episode and timestep the same."""
    return isinstance(sampler, UniformSampler) and sampler.mode == "reweight"


class MarlAlgorithm(pl.LightningModule):
    """Shared loop: collection, the data path, optimiser steps with a non-finite guard,
    target updates, logging keyed by env steps."""

    #: signals this algorithm can compute for a sampler (checked against ``sampler.needs``)
    provides: ClassVar[frozenset[str]] = frozenset()
    #: True: trains on the episodes just collected (no replay buffer, uniform sampler only)
    on_policy: ClassVar[bool] = False

    def __init_subclass__(cls, abstract: bool = False, **kwargs) -> None:
        super().__init_subclass__(**kwargs)
        if abstract:
            return
        missing = sorted(
            name
            for name in {n for klass in cls.__mro__ for n in vars(klass)}
            if getattr(inspect.getattr_static(cls, name), "__isabstractmethod__", False)
        )
        if missing:
            raise TypeError(
                f"{cls.__name__} does not implement {', '.join(missing)} (required by MarlAlgorithm); "
                f"implement them, or declare class {cls.__name__}(..., abstract=True) for an intermediate base"
            )

    def __init__(self, train_env: BatchedEnv, sampler: Sampler, loop: LoopSettings) -> None:
        super().__init__()
        problem = self.sampler_problem(sampler)
        if problem:
            raise ValueError(problem)
        if loop.max_nonfinite_streak < 1:
            raise ValueError(f"max_nonfinite_streak must be >= 1, got {loop.max_nonfinite_streak}")
        self.automatic_optimization = False
        self.env = train_env
        self.info = train_env.env_info
        self.sampler = sampler
        self.loop = loop
        self.collector = Collector(train_env)
        # counters that define where training is; saved in checkpoints
        self.counters = {
            "env_steps": 0, "episodes": 0, "updates": 0, "last_target_update": 0, "last_log": 0,
            "skipped_updates": 0, "nonfinite_streak": 0,
        }  # fmt: skip
        self._acc: dict[str, list[torch.Tensor]] = {}
        self._t_last_log = time.perf_counter()
        self._steps_last_log = 0
        self._target_names: list[str] = []
        self._optimiser_names: list[str] = []
        self._standalone_optimisers: dict[str, torch.optim.Optimizer] | None = None
        self._signals: Signals | None = None

    @classmethod
    def sampler_problem(cls, sampler: Sampler) -> str | None:
        """Why this algorithm cannot train with ``sampler`` (None when it can); checked before compute."""
        missing = set(sampler.needs) - set(cls.provides)
        if missing:
            return f"sampler {sampler.name!r} needs {sorted(missing)}, which {cls.__name__} cannot give"
        if cls.on_policy and not sampler_is_uniform(sampler):
            return (
                f"{cls.__name__} is on-policy: it trains on the episodes just collected, with no replay "
                f"buffer, so the replay sampler {sampler.name!r} cannot apply; use sampler=uniform"
            )
        return None

    @classmethod
    def datamodule(cls, env_info, sampler: Sampler, buffer_size: int, batch_size: int,
                   device: torch.device | str = "cpu", save_buffer: bool = True) -> pl.LightningDataModule:  # fmt: skip
        """The data path this class declares: the episodes just collected (``on_policy``) or replay.

        Built through ``macpo.algos.data_path.make_datamodule``, which checks the sampler first.
        """
        if cls.on_policy:
            return OnPolicyDataModule(device)
        return ReplayDataModule(env_info, sampler, buffer_size, batch_size, device, save_buffer=save_buffer)

    # ---- to implement -----------------------------------------------------------------
    @abstractmethod
    def explore_policy(self) -> Policy:
        """The policy the Collector plays with while training (the method's own exploration)."""

    @abstractmethod
    def greedy_policy(self) -> Policy:
        """The policy evaluated at test time."""

    @abstractmethod
    def optimisers(self) -> dict[str, OptimiserSpec]:
        """Name → optimiser spec, e.g. ``{"q": ...}`` or ``{"actor": ..., "critic": ...}`` (fixed order)."""

    @abstractmethod
    def learn(self, batch: dict[str, torch.Tensor], is_weights: torch.Tensor) -> LossOutput:
        """One update on a batch of episodes [b, T+1, ...] with importance weights [b].

        Reads it as a ``PackedBatch`` (``PackedBatch.of(batch, n_actions)``); must call ``self.weigh``
        (the sampler's weights and signals) and ``self.optimise`` for each optimiser it steps.
        """

    # ---- schedule -----------------------------------------------------------------------
    @property
    def env_steps(self) -> int:
        return self.counters["env_steps"]

    def progress(self) -> float:
        return min(1.0, self.env_steps / self.loop.t_max)

    def epsilon(self) -> float:
        """The ε-greedy exploration rate (shown by the progress bar); 0 for methods that sample a policy."""
        return 0.0

    def exploration_metrics(self) -> dict[str, float]:
        """Exploration values logged with each collected batch (e.g. ``{"epsilon": ε}``)."""
        return {}

    # ---- target networks ----------------------------------------------------------------
    def add_target(self, name: str) -> None:
        """Register ``target_<name>``: a frozen copy of module ``name``, refreshed by ``update_targets``."""
        setattr(self, f"target_{name}", copy.deepcopy(getattr(self, name)).requires_grad_(False))
        self._target_names.append(name)

    def drop_target(self, name: str) -> None:
        """Remove a target network a subclass never reads."""
        delattr(self, f"target_{name}")
        self._target_names.remove(name)

    def update_targets(self) -> None:
        """Copy online weights into every registered target network (hard update)."""
        for name in self._target_names:
            getattr(self, f"target_{name}").load_state_dict(getattr(self, name).state_dict())

    # ---- the sampler's weights ------------------------------------------------------------
    def weigh(
        self,
        ep: PackedBatch,
        is_weights: torch.Tensor,
        td: torch.Tensor | None = None,
        q_tot: torch.Tensor | None = None,
        q_star: torch.Tensor | None = None,
        agent_utils: torch.Tensor | None = None,
        taken: torch.Tensor | None = None,
        avail: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, Signals]:
        """The sampler's loss weights on the transition rows of ``ep`` [R] and the ``Signals`` they came from.

        td, q_tot, q_star [R]; agent_utils [R, N, A] with taken [R, N] and avail [R, N, A] give π
        (computed only when the sampler needs it). Everything is detached. The sampler sees padded
        [b, T] signals (float32 or wider): its priorities are per stored timestep. The base feeds
        these signals to ``sampler.update`` after ``learn``; a ``learn`` that never calls ``weigh``
        is an error, so no algorithm can forget the sampler.
        """
        packing = ep.packing

        def prep(x):  # detached, float32 or wider, padded [b, T] for the sampler
            if x is None:
                return None
            x = x.detach()
            return packing.unpack(x.to(torch.promote_types(x.dtype, torch.float32)))

        signals = Signals(mask=packing.pad_mask(), td=prep(td), q_tot=prep(q_tot), q_star=prep(q_star))
        if "pi" in self.sampler.needs:
            if agent_utils is None or taken is None:
                raise ValueError(f"sampler {self.sampler.name!r} needs pi: pass agent_utils and taken to weigh")
            signals.pi = prep(self.sampler.taken_action_probs(agent_utils.detach(), taken, avail))
        for name in self.sampler.needs:
            if getattr(signals, name) is None:
                raise ValueError(f"sampler {self.sampler.name!r} needs {name!r}: {type(self).__name__} did not pass it")
        weights = self.sampler.loss_weights(signals, is_weights)  # [b, T]
        self._signals = signals
        return weights.flatten()[packing.trans_pad_index], signals  # [R]

    # ---- optimisers ---------------------------------------------------------------------
    def configure_optimizers(self):
        specs = self.optimisers()
        self._optimiser_names = list(specs)
        return [spec.build() for spec in specs.values()]

    def _optimiser(self, name: str):
        if self._trainer is None:  # outside a Trainer (unit tests, notebooks): own optimisers
            if self._standalone_optimisers is None:
                specs = self.optimisers()
                self._standalone_optimisers = {k: s.build() for k, s in specs.items()}
            return self._standalone_optimisers[name]
        opts = self.optimizers()
        opts = opts if isinstance(opts, list) else [opts]
        return opts[self._optimiser_names.index(name)]

    def optimise(self, name: str, loss: torch.Tensor) -> bool:
        """Backward ``loss`` and step optimiser ``name`` with gradient-norm clipping.

        A non-finite loss or gradient norm skips the step (no parameter changes), counts it in
        ``guard/skipped_updates`` and, after ``loop.max_nonfinite_streak`` consecutive skips,
        raises ``NonFiniteUpdateError``. Returns whether the step was taken. The gradient norm
        (before clipping) is logged as ``grad_norm`` (``grad_norm/<name>`` with several optimisers).
        """
        specs = self.optimisers()
        spec = specs[name]
        opt = self._optimiser(name)
        opt.zero_grad(set_to_none=True)
        if self._trainer is None:
            loss.backward()
        else:
            self.manual_backward(loss)
        clip = spec.grad_clip if spec.grad_clip is not None else math.inf
        norm = torch.nn.utils.clip_grad_norm_(spec.params, clip)
        finite = bool(torch.isfinite(loss.detach()) & torch.isfinite(norm))  # the update's one sync
        if not finite:
            opt.zero_grad(set_to_none=True)
            self.counters["skipped_updates"] += 1
            self.counters["nonfinite_streak"] += 1
            if self.counters["nonfinite_streak"] >= self.loop.max_nonfinite_streak:
                raise NonFiniteUpdateError(step=self.env_steps, streak=self.counters["nonfinite_streak"])
            return False
        opt.step()
        self.counters["nonfinite_streak"] = 0
        self._accumulate({"grad_norm" if len(specs) == 1 else f"grad_norm/{name}": norm.reshape(1)})
        return True

    # ---- the loop -----------------------------------------------------------------------
    def training_step(self, tick, batch_idx):
        data = self.trainer.datamodule
        self.collect(data)
        if data.ready():
            self.train_from(data)
        if self.counters["episodes"] - self.counters["last_target_update"] >= self.loop.target_update_interval:
            self.update_targets()
            self.counters["last_target_update"] = self.counters["episodes"]
        return None

    def collect(self, data) -> None:
        """Play one batch of episodes with the exploration policy and hand them to the data path."""
        episodes, stats = self.collector.run(self.explore_policy())
        data.insert(episodes)
        self.counters["env_steps"] += int(stats["length"].sum().item())
        self.counters["episodes"] += self.env.n_envs
        self._accumulate({f"train/{k}_mean": v for k, v in stats.items()})
        self._accumulate({k: torch.tensor([v]) for k, v in self.exploration_metrics().items()})

    def train_from(self, data) -> None:
        """One update from the data path: sample, ``learn``, give the sampler its signals back.

        A method with several data sources (e.g. replay for the critic and the episodes just
        collected for the actor) overrides this and ``datamodule``.
        """
        idx, batch, is_weights = data.sample(self.progress())
        self.update(batch, is_weights)
        self.sampler.update(idx, self._signals)

    def update(self, batch: dict[str, torch.Tensor], is_weights: torch.Tensor) -> LossOutput:
        """``learn`` on one batch, checking that it weighed the batch with the sampler."""
        self._signals = None
        out = self.learn(batch, is_weights)
        if self._signals is None:
            raise RuntimeError(f"{type(self).__name__}.learn never called self.weigh: sampler weights unused")
        self._accumulate({k: v.detach().reshape(1) for k, v in out.metrics.items()})
        self.counters["updates"] += 1
        return out

    def on_train_batch_end(self, outputs, batch, batch_idx) -> None:
        if self.env_steps - self.counters["last_log"] >= self.loop.log_interval:
            self.flush_logs()
        if self.env_steps >= self.loop.t_max:
            self.trainer.should_stop = True

    def on_train_start(self) -> None:
        # throughput is measured from here (a resumed run starts at its restored step)
        self._t_last_log, self._steps_last_log = time.perf_counter(), self.env_steps

    def on_train_end(self) -> None:
        self.flush_logs()

    # ---- logging ------------------------------------------------------------------------
    def _accumulate(self, values: dict[str, torch.Tensor]) -> None:
        for k, v in values.items():
            self._acc.setdefault(k, []).append(v.detach().float().reshape(-1))

    def log_metrics(self, metrics: dict[str, float]) -> None:
        """Send metrics to every logger, keyed by environment steps (not optimiser steps)."""
        for logger in self.loggers:
            logger.log_metrics(metrics, step=self.env_steps)

    def flush_logs(self) -> None:
        """Log means of everything accumulated since the last call (one MLflow batch write)."""
        if not self._acc:
            return
        metrics = {k: torch.cat([x.to(v[-1].device) for x in v]).mean().item() for k, v in self._acc.items()}
        metrics.update(self.sampler.diagnostics())
        metrics["guard/skipped_updates"] = float(self.counters["skipped_updates"])
        now = time.perf_counter()
        metrics["perf/env_steps_per_s"] = (self.env_steps - self._steps_last_log) / max(now - self._t_last_log, 1e-9)
        self._t_last_log, self._steps_last_log = now, self.env_steps
        self._acc = {}
        self.counters["last_log"] = self.env_steps
        self.last_logged = metrics
        self.log_metrics(metrics)

    # ---- checkpoint state ---------------------------------------------------------------
    # Besides the networks and optimisers (Lightning's part): the counters that place training
    # in its schedule (ε, β, target updates and logging are functions of them), the values
    # accumulated since the last metric write (so the next write averages the same episodes as
    # an uninterrupted run would) and the latest test metrics.
    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["macpo_counters"] = dict(self.counters)
        checkpoint["macpo_pending_metrics"] = {k: [x.cpu() for x in v] for k, v in self._acc.items()}
        checkpoint["macpo_last_test"] = dict(getattr(self, "last_test", {}))

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        self.counters.update(checkpoint.get("macpo_counters", {}))
        self._acc = {k: list(v) for k, v in checkpoint.get("macpo_pending_metrics", {}).items()}
        if checkpoint.get("macpo_last_test"):
            self.last_test = dict(checkpoint["macpo_last_test"])
