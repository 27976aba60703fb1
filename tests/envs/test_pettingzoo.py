"""PettingZoo both ways: our envs pass PettingZoo's parallel API test, and PettingZoo envs run as ours."""

from __future__ import annotations

import importlib
import sys
import types
import warnings

import numpy as np
import pytest
import torch
from gymnasium import spaces
from omegaconf import OmegaConf
from pettingzoo.test import parallel_api_test
from pettingzoo.utils.env import ParallelEnv

from macpo.config.paths import CONF_DIR
from macpo.envs.factory import make_env
from macpo.envs.pettingzoo import ParallelEnvView, PettingZooBatchedEnv, parallel_env
from macpo.envs.predator_prey import STAY, PredatorPrey

SMALL_PP = {"grid_size": 5, "n_agents": 2, "n_prey": 1, "episode_limit": 25}
PP_TARGET = "macpo.envs.predator_prey.PredatorPrey"
ENV_CONF = CONF_DIR / "env"


def smac_lite_3m(seed=0):
    """A one-episode SMAC-lite 3m env, or skip while macpo.envs.smac_lite cannot build one."""
    try:
        smac_lite = importlib.import_module("macpo.envs.smac_lite")
        build = smac_lite.SmacLiteEnv
    except (ImportError, AttributeError) as err:
        pytest.skip(f"macpo.envs.smac_lite cannot build a map yet: {err}")
    return build("3m", n_envs=1, seed=seed)


#: BatchedEnvs to show through ParallelEnvView; add new envs here
VIEW_CASES = {
    "predator_prey_small": lambda seed: PredatorPrey(1, seed=seed, **SMALL_PP),
    "predator_prey": lambda seed: PredatorPrey(1, seed=seed, punishment=-1.0),
    "smac_lite_3m": smac_lite_3m,
}


def module_or_skip(name):
    try:
        return importlib.import_module(name)
    except ImportError as err:
        pytest.skip(f"{name} is not installed here: {err}")


# --------------------------------------------------------------------------- (a) ParallelEnvView
@pytest.mark.parametrize("case", list(VIEW_CASES))
def test_view_passes_the_parallel_api_test(case):
    view = ParallelEnvView(VIEW_CASES[case](0))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        parallel_api_test(view, num_cycles=300)
    assert not [str(w.message) for w in caught if "pettingzoo" in w.filename.replace("\\", "/")]


def test_view_mirrors_the_batched_env():
    inner = PredatorPrey(1, seed=0, **SMALL_PP)
    view = ParallelEnvView(inner)
    obs, infos = view.reset(seed=3)
    assert view.agents == ["agent_0", "agent_1"] == view.possible_agents
    assert view.observation_space("agent_1").shape == (75,) and view.action_space("agent_0").n == 6
    assert np.array_equal(obs["agent_1"], inner.get_obs()[0, 1].numpy())
    assert np.array_equal(infos["agent_0"]["action_mask"], inner.get_avail_actions()[0, 0].numpy())
    assert np.array_equal(view.state(), inner.get_state()[0].numpy()) and view.state().shape == (75,)
    # a scripted capture: every agent gets the team reward and the episode ends for all
    inner.set_positions(torch.tensor([[[1, 2], [2, 1]]]), torch.tensor([[[2, 2]]]))
    obs, rewards, terminations, truncations, infos = view.step({"agent_0": 5, "agent_1": 5})
    assert rewards == {"agent_0": 10.0, "agent_1": 10.0}
    assert all(terminations.values()) and not any(truncations.values()) and view.agents == []
    assert infos["agent_0"]["n_captured"] == 1
    assert infos["agent_1"]["action_mask"].tolist() == [0, 0, 0, 0, 1, 0]  # removed: only stay


def test_view_truncates_at_the_episode_limit():
    view = ParallelEnvView(lambda: PredatorPrey(1, seed=0, **{**SMALL_PP, "episode_limit": 3}))
    view.reset()
    for _ in range(3):
        _, _, terminations, truncations, _ = view.step({a: STAY for a in view.agents})
    assert all(truncations.values()) and not any(terminations.values()) and view.agents == []


def test_view_unavailable_action_rules():
    def view_with_agent_0_in_the_corner(rule):
        inner = PredatorPrey(1, seed=0, **SMALL_PP)
        view = ParallelEnvView(inner, unavailable_action=rule)
        view.reset()
        inner.set_positions(torch.tensor([[[0, 0], [4, 4]]]), torch.tensor([[[2, 2]]]))
        return view, inner

    view, _ = view_with_agent_0_in_the_corner("raise")
    with pytest.raises(ValueError, match="agent_0"):
        view.step({"agent_0": 3, "agent_1": STAY})  # up from the top row
    view, inner = view_with_agent_0_in_the_corner("first_available")
    view.step({"agent_0": 3, "agent_1": STAY})  # becomes "right", agent 0's first available move
    assert inner.agent_positions[0, 0].tolist() == [0, 1]
    view, inner = view_with_agent_0_in_the_corner("pass")
    view.step({"agent_0": 3, "agent_1": STAY})  # handed to the env, where the move fails
    assert inner.agent_positions[0, 0].tolist() == [0, 0]


def test_view_rejects_bad_arguments():
    with pytest.raises(ValueError, match="n_envs=1"):
        ParallelEnvView(PredatorPrey(2, seed=0, **SMALL_PP))
    with pytest.raises(ValueError, match="unavailable_action"):
        ParallelEnvView(PredatorPrey(1, seed=0, **SMALL_PP), unavailable_action="ignore")
    with pytest.raises(ValueError, match="BatchedEnv"):
        ParallelEnvView(lambda: object())
    with pytest.raises(ValueError, match="target"):
        parallel_env("macpo.envs.no_such_env.Env")


# --------------------------------------------------------------------------- (b) round trip
def test_round_trip_through_both_adapters_reproduces_the_env():
    """PredatorPrey -> ParallelEnvView -> PettingZooBatchedEnv gives the same episodes as PredatorPrey."""
    wrapped = PettingZooBatchedEnv(
        "macpo.envs.pettingzoo",
        2,
        seed=5,
        team_reward="mean",
        env_kwargs={"target": PP_TARGET, "punishment": -1.0, **SMALL_PP},
    )
    direct = [PredatorPrey(1, seed=0, punishment=-1.0, **SMALL_PP) for _ in range(2)]
    firsts = [env.reset(seed=5 + b) for b, env in enumerate(direct)]  # copy b is seeded with seed + b
    assert wrapped.env_info.obs_shape == 75 and wrapped.env_info.episode_limit == 25
    obs, state, avail = wrapped.get_obs(), wrapped.get_state(), wrapped.get_avail_actions()
    assert torch.equal(obs, torch.cat([f[0] for f in firsts]))
    assert torch.equal(state, torch.cat([f[1] for f in firsts]))
    rng = torch.Generator().manual_seed(0)
    for _ in range(25):
        actions = torch.multinomial(avail.float().view(-1, 6), 1, generator=rng).view(2, 2)
        reward, terminated, truncated, _ = wrapped.step(actions)
        for b, env in enumerate(direct):
            r, te, tr, _ = env.step(actions[b : b + 1])
            assert reward[b] == r[0] and terminated[b] == te[0] and truncated[b] == tr[0]
            assert torch.equal(wrapped.get_obs()[b], env.get_obs()[0])
            assert torch.equal(wrapped.get_state()[b], env.get_state()[0])
            assert torch.equal(wrapped.get_avail_actions()[b], env.get_avail_actions()[0])
        avail = wrapped.get_avail_actions()
    assert (terminated | truncated).all()


def test_team_reward_sum_counts_every_agent():
    kwargs = {"target": PP_TARGET, "punishment": -1.0, **SMALL_PP}
    summed = PettingZooBatchedEnv("macpo.envs.pettingzoo", 1, seed=1, env_kwargs=kwargs)
    mean = PettingZooBatchedEnv("macpo.envs.pettingzoo", 1, seed=1, env_kwargs=kwargs, team_reward="mean")
    for env in (summed, mean):
        env.envs[0].env.set_positions(torch.tensor([[[1, 2], [4, 4]]]), torch.tensor([[[2, 2]]]))
    catch_alone = torch.tensor([[5, STAY]])
    assert summed.step(catch_alone)[0].item() == -2.0 and mean.step(catch_alone)[0].item() == -1.0


# --------------------------------------------------------------------------- (b) on a scripted env
class LeavingGame(ParallelEnv):
    """Two agents with different spaces; agent_1 leaves after its first step, agent_0 after three.

    No action masks and no state(): the adapter must fall back to all actions and concatenated obs.
    It asserts that no action is sent for an agent that has left, nor a step after the end.
    """

    metadata = {"name": "leaving_game"}

    def __init__(self, max_cycles=10, last_truncated=False):
        self.possible_agents = ["agent_0", "agent_1"]
        self.max_cycles, self.last_truncated = max_cycles, last_truncated
        self._obs = {"agent_0": spaces.Box(0, 9, (3,), np.float32), "agent_1": spaces.Discrete(2)}
        self._act = {"agent_0": spaces.Discrete(3), "agent_1": spaces.Discrete(2)}

    def observation_space(self, agent):
        return self._obs[agent]

    def action_space(self, agent):
        return self._act[agent]

    def _observe(self):
        return {"agent_0": np.full(3, self.t, np.float32), "agent_1": 1}

    def reset(self, seed=None, options=None):
        self.t, self.agents = 0, list(self.possible_agents)
        return {a: o for a, o in self._observe().items() if a in self.agents}, {a: {} for a in self.agents}

    def step(self, actions):
        assert self.agents, "step after the episode ended"
        assert set(actions) == set(self.agents), f"actions for {set(actions)} while {self.agents} play"
        self.t += 1
        obs = {a: o for a, o in self._observe().items() if a in self.agents}
        rewards = {a: float(actions[a] + 1) for a in self.agents}
        done = {"agent_0": self.t >= 3, "agent_1": True}
        terminations = {a: done[a] and not self.last_truncated for a in self.agents}
        truncations = {a: done[a] and self.last_truncated for a in self.agents}
        self.agents = [a for a in self.agents if not done[a]]
        return obs, rewards, terminations, truncations, {a: {} for a in obs}


@pytest.fixture
def leaving_game_module(monkeypatch):
    module = types.ModuleType("leaving_game_module")
    module.parallel_env = LeavingGame
    monkeypatch.setitem(sys.modules, "leaving_game_module", module)
    return "leaving_game_module"


def test_agents_that_leave_are_dead_and_sizes_are_padded(leaving_game_module):
    env = PettingZooBatchedEnv(leaving_game_module, 2, seed=0)
    info = env.env_info
    sizes = (info.n_agents, info.n_actions, info.obs_shape, info.state_shape, info.episode_limit)
    assert sizes == (2, 3, 3, 6, 10)
    avail = env.get_avail_actions()
    assert avail[0].tolist() == [[True, True, True], [True, True, False]]  # padded action is unavailable
    assert env.get_obs()[0, 1].tolist() == [0.0, 1.0, 0.0]  # Discrete(2) one-hot, zero-padded
    reward, terminated, _, _ = env.step(torch.tensor([[2, 1], [0, 0]]))
    assert reward.tolist() == [3.0 + 2.0, 1.0 + 1.0] and not terminated.any()  # sum of agents' rewards
    obs, avail = env.get_obs(), env.get_avail_actions()
    assert obs[:, 1].abs().sum() == 0 and avail[:, 1].tolist() == [[True, False, False]] * 2  # agent_1 left
    assert obs[0, 0].tolist() == [1.0, 1.0, 1.0]
    assert torch.equal(env.get_state(), obs.view(2, -1))  # no state(): concatenated observations
    env.step(torch.tensor([[0, 2], [0, 2]]))  # agent_1's action is not sent (the game would assert)
    _, terminated, truncated, _ = env.step(torch.tensor([[1, 0], [1, 0]]))
    assert terminated.all() and not truncated.any()
    final_obs = env.get_obs()
    assert final_obs[:, 0].tolist() == [[3.0] * 3] * 2  # the last observation is kept at the end
    reward, terminated, _, _ = env.step(torch.tensor([[1, 0], [1, 0]]))  # frozen: the game is not stepped
    assert reward.tolist() == [0.0, 0.0] and terminated.all() and torch.equal(env.get_obs(), final_obs)
    env.reset()
    assert not env.step(torch.tensor([[0, 0], [0, 0]]))[1].any()


def test_an_episode_whose_last_agents_are_truncated_is_truncated(leaving_game_module):
    env = PettingZooBatchedEnv(leaving_game_module, 1, seed=0, env_kwargs={"last_truncated": True})
    for _ in range(3):
        _, terminated, truncated, _ = env.step(torch.tensor([[0, 0]]))
    assert truncated.all() and not terminated.any()


def test_episode_limit_truncates_a_game_that_runs_on(leaving_game_module):
    env = PettingZooBatchedEnv(leaving_game_module, 1, seed=0, episode_limit=2)
    flags = [env.step(torch.tensor([[0, 0]]))[1:3] for _ in range(2)]
    assert [bool(tr) for _, tr in flags] == [False, True] and not any(bool(te) for te, _ in flags)


def test_adapter_rejects_bad_arguments(leaving_game_module, monkeypatch):
    with pytest.raises(ValueError, match="env.module"):
        PettingZooBatchedEnv("no_such_module_anywhere", 1)
    with pytest.raises(ValueError, match="env.module"):
        PettingZooBatchedEnv("json", 1)  # importable, but not a PettingZoo env module
    with pytest.raises(ValueError, match="env.team_reward"):
        PettingZooBatchedEnv(leaving_game_module, 1, team_reward="max")

    class BoxActions(LeavingGame):
        def action_space(self, agent):
            return spaces.Box(-1, 1, (2,))

    monkeypatch.setattr(sys.modules[leaving_game_module], "parallel_env", BoxActions)
    with pytest.raises(ValueError, match="non-discrete"):
        PettingZooBatchedEnv(leaving_game_module, 1)


# --------------------------------------------------------------------------- (b) on shipped envs
def test_pursuit_runs_as_a_batched_env_with_summed_rewards():
    pursuit = module_or_skip("pettingzoo.sisl.pursuit_v5")
    env = PettingZooBatchedEnv("pettingzoo.sisl.pursuit_v5", 2, seed=4, env_kwargs={"max_cycles": 6})
    reference = pursuit.parallel_env(max_cycles=6)  # copy 1 of the batch, stepped by hand
    ref_obs, _ = reference.reset(seed=5)
    info = env.env_info
    assert (info.n_agents, info.n_actions, info.obs_shape, info.episode_limit) == (8, 5, 7 * 7 * 3, 6)
    assert torch.equal(env.get_obs()[1, 3], torch.as_tensor(ref_obs["pursuer_3"]).flatten())
    assert torch.equal(env.get_state()[1], torch.as_tensor(reference.state()).flatten())
    rng = torch.Generator().manual_seed(0)
    for _ in range(6):
        actions = torch.randint(0, 5, (2, 8), generator=rng)
        reward, terminated, truncated, _ = env.step(actions)
        ref_obs, ref_rewards, *_ = reference.step({f"pursuer_{i}": int(actions[1, i]) for i in range(8)})
        assert reward[1].item() == pytest.approx(sum(ref_rewards.values()))
        assert torch.equal(env.get_obs()[1, 0], torch.as_tensor(ref_obs["pursuer_0"]).flatten())
    assert truncated.all() and not terminated.any()
    assert env.get_avail_actions().all()  # pursuit has no action masks


def test_simple_spread_from_mpe2_is_seeded():
    module_or_skip("mpe2.simple_spread_v3")

    def trajectory(seed):
        env = PettingZooBatchedEnv("mpe2.simple_spread_v3", 2, seed=seed)
        rng = torch.Generator().manual_seed(0)
        states = [env.get_state()]
        for _ in range(5):
            env.step(torch.randint(0, 5, (2, 3), generator=rng))
            states.append(env.get_state())
        return torch.stack(states)

    first = trajectory(3)
    assert first.shape == (6, 2, 54)
    assert torch.equal(first, trajectory(3)) and not torch.equal(first, trajectory(4))
    assert not torch.equal(first[:, 0], first[:, 1])  # the copies are seeded differently


def test_pettingzoo_config_builds_the_named_module():
    module_or_skip("pettingzoo.sisl.pursuit_v5")
    cfg = OmegaConf.load(ENV_CONF / "pettingzoo.yaml")
    assert cfg.name == "pettingzoo.sisl.pursuit_v5"
    cfg.env_kwargs = {"max_cycles": 7, "n_pursuers": 4}
    env = make_env(cfg, n_envs=2, device="cpu", seed=0)
    assert isinstance(env, PettingZooBatchedEnv) and env.module == "pettingzoo.sisl.pursuit_v5"
    assert env.env_info.n_agents == 4 and env.env_info.episode_limit == 7
    cfg.name = "macpo.envs.pettingzoo"  # `env.name=<module path>` selects the module
    cfg.env_kwargs = {"target": PP_TARGET, **SMALL_PP}
    assert make_env(cfg, n_envs=1, device="cpu", seed=0).env_info.state_shape == 75
