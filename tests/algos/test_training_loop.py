"""The fit loop samples inside the step: no one-step lag from Lightning's prefetching."""

import pytorch_lightning as pl
import torch

from macpo.algos.base import LoopSettings
from macpo.algos.qmix import QMIX
from macpo.envs.predator_prey import PredatorPrey
from macpo.replay.datamodule import ReplayDataModule
from macpo.replay.samplers.uniform import UniformSampler


class NewestSampler(UniformSampler):
    """Samples exactly the episodes inserted last, and records the call order."""

    def __init__(self):
        super().__init__()
        self.calls, self.newest = [], None

    def on_insert(self, indices):
        self.newest = indices.clone()
        self.calls.append(("insert", indices.tolist()))

    def sample(self, batch_size, n_stored, progress=0.0):
        idx = self.newest[torch.arange(batch_size) % len(self.newest)]
        self.calls.append(("sample", idx.tolist()))
        return idx, torch.ones(batch_size)

    def update(self, indices, signals):
        self.calls.append(("update", indices.tolist()))


def make(t_max=200, sampler=None):
    env = PredatorPrey(4, seed=0, grid_size=5, n_agents=2, n_prey=1, episode_limit=10)
    sampler = sampler or UniformSampler()
    algo = QMIX(env, sampler, LoopSettings(t_max=t_max, target_update_interval=8, log_interval=50))
    dm = ReplayDataModule(env.env_info, sampler, buffer_size=32, batch_size=4)
    trainer = pl.Trainer(
        max_epochs=-1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, accelerator="cpu", devices=1,
    )  # fmt: skip
    return algo, dm, trainer


def test_each_step_trains_on_episodes_collected_in_that_step():
    sampler = NewestSampler()
    algo, dm, trainer = make(sampler=sampler)
    trainer.fit(algo, datamodule=dm)
    kinds = [c[0] for c in sampler.calls]
    assert kinds[:3] == ["insert", "sample", "update"]
    for i, (kind, slots) in enumerate(sampler.calls):
        if kind == "sample":
            assert sampler.calls[i - 1] == ("insert", slots)  # the step's own new episodes
            assert sampler.calls[i + 1] == ("update", slots)  # priorities written before the next sample


def test_stops_at_t_max_env_steps_and_updates_targets():
    algo, dm, trainer = make(t_max=150)
    before = [p.clone() for p in algo.target_agent.parameters()]
    trainer.fit(algo, datamodule=dm)
    assert 150 <= algo.env_steps < 150 + 4 * 10  # stops within one collection batch of t_max
    assert algo.counters["updates"] > 0
    changed = any(not torch.equal(a, b) for a, b in zip(before, algo.target_agent.parameters()))
    assert changed  # target networks were refreshed from the trained online networks
    assert all(not p.requires_grad for p in algo.target_agent.parameters())


def test_epsilon_anneals_linearly_in_env_steps():
    algo, _, _ = make()
    algo.eps_time = 1000
    algo.counters["env_steps"] = 0
    assert algo.epsilon() == 1.0
    algo.counters["env_steps"] = 500
    assert abs(algo.epsilon() - (1.0 - 0.5 * 0.95)) < 1e-9
    algo.counters["env_steps"] = 5000
    assert abs(algo.epsilon() - 0.05) < 1e-9
