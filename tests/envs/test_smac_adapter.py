"""The real-SMAC adapter: install checks, and its translation tested against a StarCraft2Env stand-in."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
import torch

from macpo.envs.sc2_adapter import Sc2BackendUnavailable, Sc2SmacEnv, check_sc2_install
from macpo.envs.smac import make_smac_env


class FakeStarCraft2Env:
    """StarCraft2Env's methods with a scripted battle: 2 agents, 4 actions; agent 1 dies at step 2.

    ``outcome`` decides the end at step ``length``: "win", "loss", or "timeout" (SMAC's episode
    limit: ``terminated`` with no win; ``info["episode_limit"]`` only if ``continuing_episode``,
    else the ``timeouts`` counter goes up).
    """

    def __init__(self, map_name, seed=None, outcome="win", length=3, continuing_episode=False):
        self.map_name, self.seed, self.outcome, self.length = map_name, seed, outcome, length
        self.continuing_episode = continuing_episode
        self.timeouts = 0
        self.t = 0
        self.actions = []
        self.closed = False

    def get_env_info(self):
        return {"n_agents": 2, "n_actions": 4, "obs_shape": 3, "state_shape": 5, "episode_limit": self.length}

    def reset(self):
        self.t = 0
        return self.get_obs(), self.get_state()

    def step(self, actions):
        assert self.t < self.length, "stepped after the episode ended"
        assert all(type(a) is int for a in actions)
        self.actions.append(list(actions))
        self.t += 1
        info = {"battle_won": False, "dead_allies": int(self.t >= 2), "dead_enemies": 0}
        if self.t < self.length:
            return 0.5 * self.t + (self.seed or 0), False, info
        if self.outcome == "win":
            info["battle_won"] = True
        elif self.outcome == "timeout":
            self.timeouts += 1
            if self.continuing_episode:
                info["episode_limit"] = True
        return 10.0, True, info

    def get_obs(self):
        return [np.full(3, 0.25 * self.t + a, dtype=np.float32) for a in range(2)]

    def get_state(self):
        return np.arange(5, dtype=np.float32) + self.t

    def get_avail_actions(self):
        dead = self.t >= 2
        return [[0, 1, 1, 1], [1, 0, 0, 0] if dead else [0, 1, 0, 1]]

    def close(self):
        self.closed = True


def adapter(outcomes, **kwargs):
    """B = len(outcomes) stand-ins; instance i gets its own outcome."""
    made = iter(outcomes)
    return Sc2SmacEnv(
        "MMM2",
        n_envs=len(outcomes),
        seed=100,
        env_factory=lambda **kw: FakeStarCraft2Env(outcome=next(made), **kw),
        **kwargs,
    )


def test_translation_of_observations_and_sizes():
    env = adapter(["win", "loss"])
    info = env.env_info
    assert (info.n_agents, info.n_actions, info.obs_shape, info.state_shape, info.episode_limit) == (2, 4, 3, 5, 3)
    assert info.obs_dtype == torch.float16
    assert [e.seed for e in env._envs] == [100, 101] and env._envs[0].map_name == "MMM2"
    obs, state, avail = env.reset()
    assert obs.shape == (2, 2, 3) and obs.dtype == torch.float32 and state.shape == (2, 5)
    assert avail.dtype == torch.bool and avail[0].tolist() == [[False, True, True, True], [False, True, False, True]]
    torch.testing.assert_close(obs[1, 1], torch.full((3,), 1.0))
    env.step(torch.tensor([[1, 3], [2, 1]]))
    env.step(torch.tensor([[1, 0], [2, 0]]))
    assert env._envs[1].actions == [[2, 1], [2, 0]]  # per instance, as Python ints
    torch.testing.assert_close(env.get_state()[0], torch.arange(5.0) + 2)
    assert env.get_avail_actions()[0, 1].tolist() == [True, False, False, False]  # dead: no-op only


def test_rewards_win_loss_and_frozen_after_the_end():
    env = adapter(["win", "loss"])
    env.reset()
    acts = torch.ones(2, 2, dtype=torch.long)
    rewards = []
    for _ in range(3):
        reward, terminated, truncated, info = env.step(acts)
        rewards.append(reward)
    assert torch.stack(rewards)[:, 0].tolist() == [100.5, 101.0, 10.0]
    assert terminated.tolist() == [True, True] and truncated.tolist() == [False, False]
    assert info["battle_won"].tolist() == [True, False]
    obs = env.get_obs()
    reward, terminated, truncated, info = env.step(acts)  # the stand-in raises if stepped now
    assert reward.tolist() == [0.0, 0.0] and terminated.all() and info["battle_won"].tolist() == [True, False]
    assert torch.equal(env.get_obs(), obs)
    env.reset()
    reward, terminated, _, info = env.step(acts)
    assert not terminated.any() and not info["battle_won"].any() and reward[0] == 100.5


@pytest.mark.parametrize("continuing_episode", [False, True])
def test_episode_limit_is_truncation_not_termination(continuing_episode):
    env = adapter(["timeout", "loss"], continuing_episode=continuing_episode)
    env.reset()
    for _ in range(3):
        _, terminated, truncated, info = env.step(torch.ones(2, 2, dtype=torch.long))
    assert truncated.tolist() == [True, False] and terminated.tolist() == [False, True]
    assert not info["battle_won"].any()


def test_close_and_action_shape():
    env = adapter(["win"])
    with pytest.raises(ValueError, match="shape"):
        env.step(torch.ones(2, 2, dtype=torch.long))
    env.close()
    assert env._envs[0].closed


def _finder(missing: set[str]):
    def find_spec(name):
        return None if name in missing else importlib.util.find_spec("math")

    return find_spec


def test_install_check_names_what_is_missing(tmp_path):
    with pytest.raises(Sc2BackendUnavailable, match=r"not installed.*pip install git\+https://github.com/oxwhirl/smac"):
        check_sc2_install(find_spec=_finder({"smac", "smac.env"}), environ={})
    with pytest.raises(Sc2BackendUnavailable, match="SMAC3.*backend=lite needs none"):
        check_sc2_install(find_spec=_finder({"smac.env"}), environ={})
    with pytest.raises(Sc2BackendUnavailable, match=f"StarCraft II not found at {tmp_path}.*SC2PATH"):
        check_sc2_install(find_spec=_finder(set()), environ={"SC2PATH": str(tmp_path)})
    (tmp_path / "Versions").mkdir()
    with pytest.raises(Sc2BackendUnavailable, match="SMAC maps not found"):
        check_sc2_install(find_spec=_finder(set()), environ={"SC2PATH": str(tmp_path)})
    (tmp_path / "Maps" / "SMAC_Maps").mkdir(parents=True)
    assert check_sc2_install(find_spec=_finder(set()), environ={"SC2PATH": str(tmp_path)}) == tmp_path


def test_install_check_survives_a_package_that_fails_to_import():
    def broken(name):
        if name == "smac.env":
            raise ImportError("ConfigSpace missing")  # importing SMAC3's `smac` can fail like this
        return importlib.util.find_spec("math")

    with pytest.raises(Sc2BackendUnavailable, match="smac.env"):
        check_sc2_install(find_spec=broken, environ={})


@pytest.mark.skipif(importlib.util.find_spec("smac") is not None, reason="a `smac` package is installed here")
def test_sc2_backend_without_smac_fails_with_instructions():
    with pytest.raises(Sc2BackendUnavailable, match="oxwhirl/smac"):
        make_smac_env("3m", backend="sc2")
