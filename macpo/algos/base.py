"""MarlAlgorithm: the one abstract learner. Subclasses define networks and the loss.

One fit-loop iteration = collect ``batch_size_run`` episodes with the ε-greedy policy, insert
them into replay, then (once the buffer holds a batch) sample, compute the loss and let
Lightning step the optimiser. Training stops at ``t_max`` environment steps.
"""

from __future__ import annotations

import time
from abc import abstractmethod
from dataclasses import dataclass, field
from typing import ClassVar

import pytorch_lightning as pl
import torch

from macpo.algos.policy import EpsilonGreedyPolicy
from macpo.envs.base import BatchedEnv
from macpo.replay.samplers.base import Sampler
from macpo.replay.signals import Signals
from macpo.rollout import Collector


@dataclass
class LoopSettings:
    """The run-level schedule (top-level config keys)."""

    t_max: int
    target_update_interval: int = 200  # in episodes
    log_interval: int = 10_000  # in env steps
    max_nonfinite_streak: int = 10  # consecutive skipped non-finite updates before NonFiniteUpdateError


@dataclass
class LossOutput:
    loss: torch.Tensor
    signals: Signals
    metrics: dict[str, torch.Tensor] = field(default_factory=dict)


class MarlAlgorithm(pl.LightningModule):
    """Shared loop: collection, replay, ε schedule, target updates, logging keyed by env steps."""

    #: signals this algorithm can compute for a sampler (checked against ``sampler.needs``)
    provides: ClassVar[frozenset[str]] = frozenset()

    def __init__(
        self,
        train_env: BatchedEnv,
        sampler: Sampler,
        loop: LoopSettings,
        lr: float = 1e-3,
        epsilon_start: float = 1.0,
        epsilon_finish: float = 0.05,
        epsilon_anneal_time: int = 100_000,
    ) -> None:
        super().__init__()
        missing = set(sampler.needs) - set(self.provides)
        if missing:
            raise ValueError(
                f"sampler {sampler.name!r} needs {sorted(missing)}, which {type(self).__name__} cannot give"
            )
        self.env = train_env
        self.info = train_env.env_info
        self.sampler = sampler
        self.loop = loop
        self.lr = lr
        self.eps_start, self.eps_finish, self.eps_time = epsilon_start, epsilon_finish, max(1, epsilon_anneal_time)
        self.collector = Collector(train_env)
        # counters that define where training is; saved in checkpoints
        self.counters = {"env_steps": 0, "episodes": 0, "updates": 0, "last_target_update": 0, "last_log": 0}
        self._acc: dict[str, list[torch.Tensor]] = {}
        self._t_last_log = time.perf_counter()
        self._steps_last_log = 0

    # ---- to implement -----------------------------------------------------------------
    @abstractmethod
    def acting_agent(self) -> torch.nn.Module:
        """The online agent network the Collector plays with."""

    @abstractmethod
    def compute_loss(self, batch: dict[str, torch.Tensor], is_weights: torch.Tensor) -> LossOutput:
        """Loss and the sampler's signals for a batch of episodes [b, T+1, ...]."""

    @abstractmethod
    def update_targets(self) -> None:
        """Copy online weights into the target networks."""

    # ---- schedule -----------------------------------------------------------------------
    @property
    def env_steps(self) -> int:
        return self.counters["env_steps"]

    def epsilon(self) -> float:
        frac = min(1.0, self.env_steps / self.eps_time)
        return self.eps_start + frac * (self.eps_finish - self.eps_start)

    def progress(self) -> float:
        return min(1.0, self.env_steps / self.loop.t_max)

    def explore_policy(self) -> EpsilonGreedyPolicy:
        return EpsilonGreedyPolicy(self.acting_agent(), self.info.n_agents, self.info.n_actions, self.epsilon)

    def greedy_policy(self) -> EpsilonGreedyPolicy:
        return EpsilonGreedyPolicy(self.acting_agent(), self.info.n_agents, self.info.n_actions, lambda: 0.0)

    # ---- the loop -----------------------------------------------------------------------
    def training_step(self, tick, batch_idx):
        replay = self.trainer.datamodule
        episodes, stats = self.collector.run(self.explore_policy())
        replay.insert(episodes)
        self.counters["env_steps"] += int(stats["length"].sum().item())
        self.counters["episodes"] += self.env.n_envs
        self._accumulate({f"train/{k}_mean": v for k, v in stats.items()})
        self._accumulate({"epsilon": torch.tensor([self.epsilon()])})

        loss = None
        if replay.ready():
            idx, batch, is_weights = replay.sample(self.progress())
            out = self.compute_loss(batch, is_weights)
            self.sampler.update(idx, out.signals)
            self._accumulate({k: v.detach().reshape(1) for k, v in out.metrics.items()})
            self.counters["updates"] += 1
            loss = out.loss
        if self.counters["episodes"] - self.counters["last_target_update"] >= self.loop.target_update_interval:
            self.update_targets()
            self.counters["last_target_update"] = self.counters["episodes"]
        return loss

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

    def configure_optimizers(self):
        return torch.optim.Adam(self.online_parameters(), lr=self.lr)

    @abstractmethod
    def online_parameters(self) -> list[torch.nn.Parameter]:
        """Parameters the optimiser trains (target networks excluded)."""

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
        now = time.perf_counter()
        metrics["perf/env_steps_per_s"] = (self.env_steps - self._steps_last_log) / max(now - self._t_last_log, 1e-9)
        self._t_last_log, self._steps_last_log = now, self.env_steps
        self._acc = {}
        self.counters["last_log"] = self.env_steps
        self.last_logged = metrics
        self.log_metrics(metrics)

    # ---- checkpoint state ---------------------------------------------------------------
    # Besides the networks and optimiser (Lightning's part): the counters that place training
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
