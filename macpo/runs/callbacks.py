"""Lightning callbacks: greedy evaluation and an env-step progress bar."""

from __future__ import annotations

import math

import pytorch_lightning as pl
import torch
from tqdm.auto import tqdm

from macpo.envs.base import BatchedEnv
from macpo.rollout import Collector
from macpo.runs.checkpoints import capture_rng_states, generators_of, restore_rng_states


class GreedyEvaluation(pl.Callback):
    """Every ``test_interval`` env steps (and at the start and end), play ``test_nepisode``
    greedy episodes on a separate env and log ``test/*_mean`` keyed by env steps.

    Its state (the step of the last test and the test env's generators) travels in checkpoints,
    so a resumed run tests at the same steps as an uninterrupted one.
    """

    def __init__(self, test_env: BatchedEnv, test_interval: int, test_nepisode: int, seed: int | None = None):
        self.collector = Collector(test_env)
        self.interval, self.n_episodes, self.seed = test_interval, test_nepisode, seed
        self.last_test = None
        self._restored = False

    def evaluate(self, pl_module) -> dict[str, float]:
        batches = math.ceil(self.n_episodes / self.collector.env.n_envs)
        stats: dict[str, list[torch.Tensor]] = {}
        for i in range(batches):
            seed = None if self.seed is None or i > 0 else self.seed + pl_module.env_steps
            _, s = self.collector.run(pl_module.greedy_policy(), seed=seed)
            for k, v in s.items():
                stats.setdefault(k, []).append(v)
        metrics = {f"test/{k}_mean": torch.cat(v)[: self.n_episodes].mean().item() for k, v in stats.items()}
        pl_module.log_metrics(metrics)
        pl_module.last_test = metrics
        self.last_test = pl_module.env_steps
        return metrics

    def on_train_start(self, trainer, pl_module) -> None:
        if self._restored:  # resumed from a checkpoint: keep its last test step
            return
        if pl_module.env_steps == 0:
            self.evaluate(pl_module)
        self.last_test = pl_module.env_steps

    def state_dict(self) -> dict:
        return {"last_test": self.last_test, "rng": capture_rng_states(generators_of(self.collector.env), False)}

    def load_state_dict(self, state_dict: dict) -> None:
        self.last_test = state_dict["last_test"]
        restore_rng_states(state_dict["rng"], generators_of(self.collector.env))
        self._restored = True

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if pl_module.env_steps - self.last_test >= self.interval:
            self.evaluate(pl_module)

    def on_train_end(self, trainer, pl_module) -> None:
        if self.last_test != pl_module.env_steps:
            self.evaluate(pl_module)


class EnvStepProgressBar(pl.Callback):
    """A console bar over environment steps (not optimiser steps) with return and ε."""

    def __init__(self, t_max: int, desc: str = "train", enabled: bool = True):
        self.t_max, self.desc, self.enabled = t_max, desc, enabled
        self.bar = None

    def on_train_start(self, trainer, pl_module) -> None:
        if self.enabled:
            self.bar = tqdm(total=self.t_max, initial=pl_module.env_steps, desc=self.desc, unit="step",
                            mininterval=1.0, dynamic_ncols=True)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self.bar is None:
            return
        self.bar.update(min(pl_module.env_steps, self.t_max) - self.bar.n)
        post = {"eps": f"{pl_module.epsilon():.2f}"}
        logged = getattr(pl_module, "last_logged", {})
        if "train/return_mean" in logged:
            post["return"] = f"{logged['train/return_mean']:.2f}"
        test = getattr(pl_module, "last_test", {})
        if "test/return_mean" in test:
            post["test"] = f"{test['test/return_mean']:.2f}"
        if "test/battle_won_mean" in test:
            post["won"] = f"{test['test/battle_won_mean']:.2f}"
        self.bar.set_postfix(post, refresh=False)

    def on_train_end(self, trainer, pl_module) -> None:
        if self.bar is not None:
            self.bar.close()
