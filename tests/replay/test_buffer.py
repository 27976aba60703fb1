"""EpisodeBuffer storage and the ReplayDataModule's in-step sampling."""

import math

import pytest
import torch

from macpo.envs.base import EnvInfo
from macpo.envs.predator_prey import PredatorPrey
from macpo.replay.buffer import EpisodeBuffer, episode_layout
from macpo.replay.datamodule import ReplayDataModule
from macpo.replay.samplers.uniform import UniformSampler
from macpo.rollout import Collector, RandomPolicy

INFO = EnvInfo(n_agents=2, n_actions=3, obs_shape=4, state_shape=5, episode_limit=6, obs_dtype=torch.uint8)


def fake_episodes(k, length, marker):
    t1 = INFO.episode_limit + 1
    ep = {
        "obs": torch.zeros(k, t1, 2, 4),
        "state": torch.zeros(k, t1, 5),
        "avail_actions": torch.ones(k, t1, 2, 3, dtype=torch.bool),
        "actions": torch.randint(0, 3, (k, t1, 2)),
        "reward": torch.full((k, t1), float(marker)),
        "terminated": torch.zeros(k, t1, dtype=torch.bool),
        "filled": torch.zeros(k, t1, dtype=torch.bool),
    }
    ep["filled"][:, :length] = True
    ep["obs"][:, :, :, 0] = 1.0
    return ep


def test_circular_insert_overwrites_oldest():
    buf = EpisodeBuffer(5, INFO)
    slots = [buf.insert(fake_episodes(2, 3, marker=m)).tolist() for m in range(4)]
    assert slots == [[0, 1], [2, 3], [4, 0], [1, 2]]
    assert len(buf) == 5
    rewards = buf[torch.arange(5)]["reward"][:, 0].tolist()
    assert rewards == [2.0, 3.0, 3.0, 1.0, 2.0]


def test_per_field_dtypes_and_read_back_casts():
    buf = EpisodeBuffer(4, INFO)
    assert buf.data["obs"].dtype == torch.uint8
    assert buf.data["avail_actions"].dtype == torch.uint8 and buf.data["avail_actions"].shape[-1] == 1  # 3 bits
    buf.insert(fake_episodes(2, 3, marker=1))
    gathered = buf.gather(torch.tensor([0, 1]))
    assert gathered["obs"].dtype == torch.uint8 and gathered["avail_actions"].dtype == torch.bool
    assert gathered["actions"].dtype == torch.uint8 and gathered["filled"].dtype == torch.bool
    out = buf[torch.tensor([0, 1])]
    assert out["obs"].dtype == torch.float32 and out["actions"].dtype == torch.long
    assert out["obs"][..., 0].eq(1).all()


def test_read_trims_time_to_longest_episode_plus_final_obs():
    buf = EpisodeBuffer(4, INFO)
    buf.insert(fake_episodes(1, 2, marker=0))
    buf.insert(fake_episodes(1, 4, marker=0))
    assert buf[torch.tensor([0])]["filled"].shape[1] == 3
    assert buf[torch.tensor([0, 1])]["filled"].shape[1] == 5


def test_shorter_batches_clear_stale_tail():
    buf = EpisodeBuffer(2, INFO)
    buf.insert(fake_episodes(2, 6, marker=1))
    short = {k: v[:, :3] for k, v in fake_episodes(1, 2, marker=2).items()}
    buf.insert(short)  # slot 0: a 2-step episode where a 6-step one was
    out = buf.gather(torch.tensor([0, 1]))  # padded to slot 1's 6 steps + final observation
    assert out["filled"][0].sum() == 2 and out["filled"][1].sum() == 6
    assert out["reward"][0, :3].eq(2).all() and out["reward"][0, 3:].abs().sum() == 0
    assert out["obs"][0, 3:].sum() == 0 and out["obs"][1, :, :, 0].eq(1).all()


def test_invalid_sizes_are_rejected():
    with pytest.raises(ValueError, match="buffer_size"):
        EpisodeBuffer(0, INFO)
    with pytest.raises(ValueError, match="exceeds"):
        ReplayDataModule(INFO, UniformSampler(), buffer_size=4, batch_size=8)


def test_warm_up_until_a_batch_is_stored():
    dm = ReplayDataModule(INFO, UniformSampler(), buffer_size=10, batch_size=3)
    dm.insert(fake_episodes(2, 3, marker=0))
    assert not dm.ready()
    dm.insert(fake_episodes(1, 3, marker=0))
    assert dm.ready()
    idx, batch, isw = dm.sample()
    assert idx.shape == (3,) and batch["obs"].shape[0] == 3 and isw.shape == (3,)


def test_collector_episode_layout_on_predator_prey():
    env = PredatorPrey(6, seed=1, grid_size=5, n_agents=2, n_prey=1, episode_limit=10)


    episodes, stats = Collector(env).run(RandomPolicy())
    filled = episodes["filled"]
    lengths = filled.sum(1)
    assert torch.equal(lengths.float(), stats["length"])
    # filled is a prefix; terminated only on the last real transition
    for b in range(6):
        n = int(lengths[b])
        assert filled[b, :n].all() and not filled[b, n:].any()
        assert episodes["terminated"][b, : max(n - 1, 0)].sum() == 0
    # rewards after the end are zero; actions taken were available
    assert (episodes["reward"] * ~filled).abs().sum() == 0
    taken = episodes["avail_actions"].gather(-1, episodes["actions"][..., None]).squeeze(-1)
    assert taken[filled].all()
    assert torch.allclose(episodes["reward"].sum(1), stats["return"])
    # storing in the buffer keeps the 0/1 observations exactly
    buf = EpisodeBuffer(8, env.env_info)
    slots = buf.insert(episodes)
    back = buf[slots]
    t = back["obs"].shape[1]
    assert torch.equal(back["obs"], episodes["obs"][:, :t])


def test_smac_episodes_stored_in_float16_take_at_most_half_a_float32_layout():
    from macpo.envs.smac import make_smac_env

    env = make_smac_env("MMM2", n_envs=2, seed=0)
    info = env.env_info
    assert info.obs_dtype == torch.float16
    buf = EpisodeBuffer(2, info)
    float32_bytes = sum(math.prod(shape) * 4 for shape, _ in episode_layout(info).values()) * buf.max_t
    assert buf.nbytes_per_episode() <= float32_bytes / 2

    episodes, _ = Collector(env).run(RandomPolicy())
    back = buf[buf.insert(episodes)]
    t = back["obs"].shape[1]
    # rows t = 0 .. L (transitions and final observation) as played; zeros past them
    real = torch.arange(t) <= episodes["filled"].sum(1, keepdim=True)  # [B, t]
    for name in ("obs", "state"):
        assert (back[name][real] - episodes[name][:, :t][real]).abs().max() < 1e-3
        assert back[name][~real].abs().sum() == 0
