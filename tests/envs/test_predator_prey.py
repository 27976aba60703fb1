"""Predator-prey: one test per rule of docs/predator_prey.md, on hand-placed grids."""

from __future__ import annotations

import pytest
import torch
from omegaconf import OmegaConf

from macpo.config.paths import CONF_DIR
from macpo.envs.factory import make_env
from macpo.envs.predator_prey import CATCH, DOWN, LEFT, RIGHT, STAY, UP, PredatorPrey

P = -1.5  # a punishment value for the tests
ENV_CONF = CONF_DIR / "env"


def placed(agents, prey, *, grid_size=5, punishment=P, episode_limit=50, n_envs=1, seed=0):
    """An env with the given (row, col) lists of agents and prey placed in every one of its n_envs."""
    env = PredatorPrey(
        n_envs,
        seed=seed,
        grid_size=grid_size,
        n_agents=len(agents),
        n_prey=len(prey),
        punishment=punishment,
        episode_limit=episode_limit,
    )
    env.set_positions(torch.tensor([agents] * n_envs), torch.tensor([prey] * n_envs))
    return env


def act(*actions, n_envs=1):
    return torch.tensor([list(actions)] * n_envs)


def occupied_cells(env):
    """Per env, the list of (row, col) of living entities."""
    cells = []
    for b in range(env.n_envs):
        agents = env.agent_positions[b][env.agent_alive[b]]
        pos = torch.cat([agents, env.prey_positions[b][env.prey_alive[b]]])
        cells.append([tuple(p) for p in pos.tolist()])
    return cells


def naive_obs(env):
    """The observation computed cell by cell from positions (an independent reference)."""
    g = env.grid_size
    grid = torch.zeros(env.n_envs, g, g, 3)
    for b in range(env.n_envs):
        for (r, c), alive in zip(env.agent_positions[b].tolist(), env.agent_alive[b].tolist()):
            grid[b, r, c, 0] += alive
        for (r, c), alive in zip(env.prey_positions[b].tolist(), env.prey_alive[b].tolist()):
            grid[b, r, c, 1] += alive
    obs = torch.zeros(env.n_envs, env.n_agents, 5, 5, 3)
    for b in range(env.n_envs):
        agents = zip(env.agent_positions[b].tolist(), env.agent_alive[b].tolist())
        for i, ((r, c), alive) in enumerate(agents):
            if not alive:
                continue
            for dr in range(-2, 3):
                for dc in range(-2, 3):
                    if 0 <= r + dr < g and 0 <= c + dc < g:
                        obs[b, i, dr + 2, dc + 2] = grid[b, r + dr, c + dc]
    return obs.view(env.n_envs, env.n_agents, 75), grid.view(env.n_envs, -1)


# --------------------------------------------------------------------------- config and sizes
def test_env_info_matches_the_paper_dimensions():
    info = PredatorPrey(2, seed=0).env_info
    assert (info.n_agents, info.n_actions, info.obs_shape, info.state_shape, info.episode_limit) == (8, 6, 75, 300, 200)
    assert info.obs_dtype == torch.uint8
    obs, state, avail = PredatorPrey(3, seed=0, grid_size=7).reset()
    assert obs.shape == (3, 8, 75) and obs.dtype == torch.float32
    assert state.shape == (3, 7 * 7 * 3) and avail.shape == (3, 8, 6) and avail.dtype == torch.bool
    assert set(obs.unique().tolist()) <= {0.0, 1.0}


def test_configs_build_the_paper_task_and_the_small_one():
    paper = make_env(OmegaConf.load(ENV_CONF / "predator_prey.yaml"), n_envs=2, device="cpu", seed=0)
    assert (paper.grid_size, paper.n_agents, paper.n_prey, paper.episode_limit, paper.punishment) == (
        10,
        8,
        8,
        200,
        0.0,
    )
    small = make_env(OmegaConf.load(ENV_CONF / "predator_prey_small.yaml"), n_envs=2, device="cpu", seed=0)
    assert (small.grid_size, small.n_agents, small.n_prey, small.episode_limit) == (5, 2, 1, 25)


@pytest.mark.parametrize(
    "kwargs, option",
    [
        ({"punishment": 0.5}, "env.punishment"),
        ({"grid_size": 0}, "env.grid_size"),
        ({"n_agents": 0}, "env.n_agents"),
        ({"n_prey": -1}, "env.n_prey"),
        ({"episode_limit": 0}, "env.episode_limit"),
        ({"grid_size": 3, "n_agents": 5, "n_prey": 5}, "env.grid_size"),
    ],
)
def test_bad_arguments_raise_naming_the_option(kwargs, option):
    with pytest.raises(ValueError, match=option):
        PredatorPrey(1, **kwargs)


def test_reset_places_all_entities_on_distinct_cells():
    env = PredatorPrey(32, seed=1, grid_size=4, n_agents=8, n_prey=8)  # every cell of the grid is used
    for cells in occupied_cells(env):
        assert len(set(cells)) == 16


# --------------------------------------------------------------------------- capture and punishment
def test_two_adjacent_catchers_capture_and_leave_the_grid():
    # prey at (2,2); agents 0 (above) and 1 (left) catch; agent 2 (below) is adjacent but stays
    env = placed([(1, 2), (2, 1), (3, 2)], [(2, 2), (0, 4)])
    reward, terminated, truncated, info = env.step(act(CATCH, CATCH, STAY))
    assert reward.item() == 10.0
    assert env.prey_alive.tolist() == [[False, True]]
    assert env.agent_alive.tolist() == [[False, False, True]]
    assert info["n_captured"].tolist() == [1]
    assert not terminated.item() and not truncated.item()
    obs, avail = env.get_obs(), env.get_avail_actions()
    assert obs[0, :2].abs().sum() == 0  # removed agents observe zeros
    assert avail[0, :2].tolist() == [[False, False, False, False, True, False]] * 2  # only stay


def test_three_catchers_also_capture():
    env = placed([(1, 2), (2, 1), (3, 2)], [(2, 2), (0, 4)])
    reward, *_ = env.step(act(CATCH, CATCH, CATCH))
    assert reward.item() == 10.0
    assert env.agent_alive.tolist() == [[False, False, False]]


def test_a_lone_catcher_is_punished_and_removes_nothing():
    env = placed([(1, 2), (4, 4)], [(2, 2), (0, 0)])
    reward, *_ = env.step(act(CATCH, STAY))
    assert reward.item() == pytest.approx(P)
    assert env.prey_alive.all() and env.agent_alive.all()


def test_punishment_is_counted_once_per_prey():
    # two lone catchers at two different prey -> 2p
    env = placed([(0, 1), (4, 3)], [(0, 0), (4, 4)])
    reward, *_ = env.step(act(CATCH, CATCH))
    assert reward.item() == pytest.approx(2 * P)
    # one catcher adjacent to two prey -> 2p (once per prey)
    env = placed([(2, 2), (4, 4)], [(1, 2), (2, 3)])
    reward, *_ = env.step(act(CATCH, STAY))
    assert reward.item() == pytest.approx(2 * P)


def test_zero_punishment_gives_zero_for_a_lone_catch():
    env = placed([(1, 2), (4, 4)], [(2, 2), (0, 0)], punishment=0.0)
    reward, *_ = env.step(act(CATCH, STAY))
    assert reward.item() == 0.0


def test_catchers_removed_by_one_capture_no_longer_count_for_the_next_prey():
    # agents at (1,1) and (2,2) are both adjacent to prey (1,2) and prey (2,1): whichever prey comes
    # first in the random order is captured, the catchers leave, the other prey is neither caught nor
    # punished. Over many envs both orders occur.
    env = placed([(1, 1), (2, 2)], [(1, 2), (2, 1)], n_envs=64)
    reward, *_ = env.step(act(CATCH, CATCH, n_envs=64))
    assert torch.equal(reward, torch.full((64,), 10.0))
    assert env.prey_alive.sum(dim=1).tolist() == [1] * 64
    first_prey_captured = ~env.prey_alive[:, 0]
    assert first_prey_captured.any() and (~first_prey_captured).any()


def test_cells_freed_by_a_capture_are_free_for_the_prey_that_follow():
    # prey X at (0,2) is captured by A (0,1) and B (1,2); prey Y in the corner (0,0) is boxed in by
    # A and C (1,0), and A also counts as a lone catcher for Y. X first: A leaves, Y is not punished and
    # flees into A's cell. Y first: Y is punished and cannot move; then X is captured.
    env = placed([(0, 1), (1, 2), (1, 0)], [(0, 2), (0, 0)], n_envs=64)
    reward, *_ = env.step(act(CATCH, CATCH, STAY, n_envs=64))
    x_first = (env.prey_positions[:, 1] == torch.tensor([0, 1])).all(dim=1)  # [B]
    y_stayed = (env.prey_positions[:, 1] == torch.tensor([0, 0])).all(dim=1)
    assert torch.all(x_first | y_stayed) and x_first.any() and y_stayed.any()
    assert torch.allclose(reward, torch.where(x_first, 10.0, 10.0 + P))
    assert env.agent_alive[:, :2].sum() == 0 and env.agent_alive[:, 2].all()


def test_a_captured_prey_frees_its_cell_for_the_prey_that_follow():
    # prey X at (0,1) is captured by (1,1) and (0,2); prey Y in the corner is boxed in by X and the agent
    # at (1,0). Y moves into X's cell exactly when X was processed first (both orders occur).
    env = placed([(1, 1), (0, 2), (1, 0)], [(0, 1), (0, 0)], n_envs=64)
    reward, *_ = env.step(act(CATCH, CATCH, STAY, n_envs=64))
    assert torch.equal(reward, torch.full((64,), 10.0))
    y = env.prey_positions[:, 1]  # [B, 2]
    moved = (y == torch.tensor([0, 1])).all(dim=1)
    assert torch.all(moved | (y == 0).all(dim=1)) and moved.any() and (~moved).any()


def test_catch_with_no_adjacent_prey_is_unavailable_and_does_nothing():
    env = placed([(0, 0), (0, 1)], [(4, 4)])
    assert not env.get_avail_actions()[0, :, CATCH].any()
    reward, *_ = env.step(act(CATCH, CATCH))
    assert reward.item() == 0.0
    assert env.agent_alive.all() and env.agent_positions.tolist() == [[[0, 0], [0, 1]]]


def test_an_agent_that_moves_next_to_the_prey_without_catching_is_no_catcher():
    env = placed([(1, 2), (3, 1)], [(2, 2)])
    reward, *_ = env.step(act(CATCH, UP))  # agent 1 arrives at (2,1), adjacent, but did not catch
    assert env.agent_positions[0, 1].tolist() == [2, 1]
    assert reward.item() == pytest.approx(P) and env.prey_alive.all()


# --------------------------------------------------------------------------- available actions
def test_available_actions_at_walls_corners_and_next_to_prey():
    env = placed([(0, 0), (4, 4), (2, 0), (2, 3)], [(2, 4)])
    avail = env.get_avail_actions()[0]
    #                     right  down   left   up     stay  catch
    assert avail[0].tolist() == [True, True, False, False, True, False]  # top-left corner
    assert avail[1].tolist() == [False, False, True, True, True, False]  # bottom-right corner
    assert avail[2].tolist() == [True, True, False, True, True, False]  # left wall
    # prey to the right: moving into it is available (it just fails), and so is catch
    assert avail[3].tolist() == [True, True, True, True, True, True]


def test_prey_adjacent_diagonally_does_not_enable_catch():
    env = placed([(1, 1)], [(2, 2)])
    assert not env.get_avail_actions()[0, 0, CATCH]


def test_removed_agent_can_only_stay():
    env = placed([(1, 1), (3, 3)], [(2, 2)])
    env.set_positions(
        torch.tensor([[[1, 1], [3, 3]]]), torch.tensor([[[2, 2]]]), agent_alive=torch.tensor([[True, False]])
    )
    assert env.get_avail_actions()[0, 1].tolist() == [False, False, False, False, True, False]
    env.step(act(STAY, RIGHT))  # whatever it is told, a removed agent does not move
    assert env.agent_positions[0, 1].tolist() == [3, 3]


# --------------------------------------------------------------------------- moves
def test_moves_follow_the_action_directions():
    env = placed([(2, 2)], [(4, 4)])
    for action, expected in [(RIGHT, [2, 3]), (DOWN, [3, 3]), (LEFT, [3, 2]), (UP, [2, 2]), (STAY, [2, 2])]:
        env.step(act(action))
        assert env.agent_positions[0, 0].tolist() == expected


def test_moves_into_occupied_cells_or_off_the_grid_fail():
    # agent 0 walks into the prey, agent 1 into agent 0 (who never leaves), agent 2 off the grid
    env = placed([(0, 0), (0, 1), (4, 4)], [(1, 0)], n_envs=8)
    env.step(act(DOWN, LEFT, RIGHT, n_envs=8))
    assert (env.agent_positions == torch.tensor([[0, 0], [0, 1], [4, 4]])).all()


def test_agents_move_in_a_fresh_random_order():
    # agent 0 moves right into agent 1's cell while agent 1 moves right to a free cell: agent 0
    # succeeds only if agent 1 moved first. Both orders must occur, and no two agents ever collide.
    env = placed([(0, 0), (0, 1)], [(4, 4)], n_envs=128)
    env.step(act(RIGHT, RIGHT, n_envs=128))
    second = env.agent_positions[:, 0]  # [B, 2]
    followed = (second == torch.tensor([0, 1])).all(dim=1)
    blocked = (second == torch.tensor([0, 0])).all(dim=1)
    assert torch.all(followed | blocked) and followed.any() and blocked.any()
    assert (env.agent_positions[:, 1] == torch.tensor([0, 2])).all()


def test_removed_agents_block_nothing():
    env = placed([(1, 1), (3, 3)], [(2, 2)])
    env.set_positions(
        torch.tensor([[[1, 1], [1, 2]]]), torch.tensor([[[4, 4]]]), agent_alive=torch.tensor([[True, False]])
    )
    env.step(act(RIGHT, STAY))
    assert env.agent_positions[0, 0].tolist() == [1, 2]


# --------------------------------------------------------------------------- prey
def test_prey_move_to_a_free_neighbour_every_step():
    env = placed([(0, 0)], [(2, 2)], n_envs=64)
    start = env.prey_positions.clone()
    env.step(act(STAY, n_envs=64))
    step = (env.prey_positions - start).abs().sum(dim=-1)  # [B, 1] manhattan distance moved
    assert (step == 1).all()
    assert len({tuple(p) for p in env.prey_positions[:, 0].tolist()}) == 4  # all 4 directions occur


def test_prey_never_move_onto_occupied_cells_and_stay_when_boxed_in():
    # prey in the corner, both neighbours held by agents: it cannot move
    env = placed([(0, 1), (1, 0)], [(0, 0)], n_envs=16)
    env.step(act(STAY, STAY, n_envs=16))
    assert (env.prey_positions[:, 0] == 0).all()
    # one free neighbour: the prey must take it
    env = placed([(0, 1), (2, 2)], [(0, 0)], n_envs=16)
    env.step(act(STAY, STAY, n_envs=16))
    assert (env.prey_positions[:, 0] == torch.tensor([1, 0])).all()


def test_random_play_keeps_entities_on_distinct_cells_and_obs_state_consistent():
    env = PredatorPrey(8, seed=3, grid_size=6, n_agents=5, n_prey=4, punishment=P, episode_limit=30)
    actions_rng = torch.Generator().manual_seed(0)
    avail = env.get_avail_actions()
    for _ in range(30):
        actions = torch.multinomial(avail.float().view(-1, 6), 1, generator=actions_rng).view(8, 5)
        env.step(actions)
        for cells in occupied_cells(env):
            assert len(cells) == len(set(cells))
        obs, state = naive_obs(env)
        assert torch.equal(env.get_obs(), obs)
        assert torch.equal(env.get_state(), state)
        avail = env.get_avail_actions()
        assert avail[..., STAY].all()


# --------------------------------------------------------------------------- observation and state
def test_observation_window_at_the_edge_and_its_channel_layout():
    env = placed([(0, 0), (1, 1)], [(0, 2)])
    obs = env.get_obs()[0, 0].view(5, 5, 3)  # (row offset + 2, col offset + 2, channel)
    expected = torch.zeros(5, 5, 3)
    expected[2, 2, 0] = 1  # the agent itself
    expected[3, 3, 0] = 1  # the other agent one down, one right
    expected[2, 4, 1] = 1  # the prey two to the right
    assert torch.equal(obs, expected)  # rows/cols above and left of the grid are zero
    assert obs[..., 2].sum() == 0  # hares channel is empty


def test_state_is_the_whole_grid_channel_last():
    env = placed([(0, 0), (4, 3)], [(2, 1)])
    state = env.get_state()[0].view(5, 5, 3)
    assert state[0, 0].tolist() == [1, 0, 0] and state[4, 3].tolist() == [1, 0, 0]
    assert state[2, 1].tolist() == [0, 1, 0]
    assert state.sum() == 3


# --------------------------------------------------------------------------- episode end
def test_terminated_when_all_prey_are_captured():
    env = placed([(1, 2), (2, 1), (4, 4)], [(2, 2)])
    _, terminated, truncated, _ = env.step(act(CATCH, CATCH, STAY))
    assert terminated.item() and not truncated.item()


def test_terminated_when_all_agents_are_removed():
    env = placed([(1, 2), (2, 1)], [(2, 2), (4, 4)])
    reward, terminated, _, _ = env.step(act(CATCH, CATCH))
    assert reward.item() == 10.0 and terminated.item() and env.prey_alive.sum() == 1


def test_truncated_at_the_episode_limit():
    env = placed([(0, 0)], [(4, 4)], episode_limit=3)
    flags = [env.step(act(STAY))[1:3] for _ in range(3)]
    assert [bool(tr) for _, tr in flags] == [False, False, True]
    assert not any(bool(te) for te, _ in flags)


def test_finished_envs_stay_frozen_until_reset():
    # env 0 finishes by a capture, env 1 keeps running
    env = PredatorPrey(2, seed=0, grid_size=5, n_agents=2, n_prey=1, punishment=P)
    env.set_positions(torch.tensor([[[1, 2], [2, 1]], [[0, 0], [4, 4]]]), torch.tensor([[[2, 2]], [[2, 2]]]))
    reward, terminated, _, _ = env.step(act(CATCH, CATCH, n_envs=2))
    assert terminated.tolist() == [True, False] and reward[0] == 10.0
    obs0, state0 = env.get_obs()[0].clone(), env.get_state()[0].clone()
    prey1 = env.prey_positions[1].clone()
    for _ in range(3):
        reward, terminated, truncated, _ = env.step(act(CATCH, CATCH, n_envs=2))
        assert reward[0] == 0.0 and terminated[0] and not truncated[0]
        assert torch.equal(env.get_obs()[0], obs0) and torch.equal(env.get_state()[0], state0)
    assert not torch.equal(env.prey_positions[1], prey1)  # env 1 kept running
    env.reset()
    assert not env.step(act(STAY, STAY, n_envs=2))[1].any()


def test_truncated_envs_stay_frozen_and_keep_their_flag():
    env = placed([(0, 0)], [(4, 4)], episode_limit=2)
    env.step(act(STAY))
    env.step(act(STAY))
    prey = env.prey_positions.clone()
    reward, terminated, truncated, _ = env.step(act(RIGHT))
    assert truncated.item() and not terminated.item() and reward.item() == 0.0
    assert torch.equal(env.prey_positions, prey) and env.agent_positions[0, 0].tolist() == [0, 0]


# --------------------------------------------------------------------------- seeding
def rollout(env, steps=20, policy_seed=0):
    """Observations of a uniformly random policy (its own generator) from a fresh reset."""
    rng = torch.Generator().manual_seed(policy_seed)
    obs, _, avail = env.reset()
    history = [obs]
    for _ in range(steps):
        actions = torch.multinomial(avail.float().view(-1, 6), 1, generator=rng).view(env.n_envs, -1)
        env.step(actions)
        history.append(env.get_obs())
        avail = env.get_avail_actions()
    return torch.stack(history)


def test_same_seed_same_trajectory_and_different_seeds_differ():
    make = lambda seed: PredatorPrey(4, seed=seed, grid_size=6, n_agents=3, n_prey=3)  # noqa: E731
    assert torch.equal(rollout(make(7)), rollout(make(7)))
    assert not torch.equal(rollout(make(7)), rollout(make(8)))


def test_reset_with_seed_reseeds():
    env = PredatorPrey(4, seed=1, grid_size=6, n_agents=3, n_prey=3)
    env.reset(seed=7)
    first = env.get_state().clone()
    env.reset()
    assert not torch.equal(env.get_state(), first)
    env.reset(seed=7)
    assert torch.equal(env.get_state(), first)
    assert torch.equal(PredatorPrey(4, seed=7, grid_size=6, n_agents=3, n_prey=3).get_state(), first)


# --------------------------------------------------------------------------- sanity of the task
def test_random_policy_has_negative_mean_return_with_punishment():
    env = PredatorPrey(64, seed=0, grid_size=10, n_agents=8, n_prey=8, punishment=-1.0, episode_limit=50)
    returns = torch.zeros(64)
    rng = torch.Generator().manual_seed(0)
    avail = env.get_avail_actions()
    for _ in range(50):
        actions = torch.multinomial(avail.float().view(-1, 6), 1, generator=rng).view(64, 8)
        reward, *_ = env.step(actions)
        returns += reward
        avail = env.get_avail_actions()
    assert returns.mean() < 0


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_runs_on_cuda():
    env = PredatorPrey(8, device="cuda", seed=0)
    obs, state, avail = env.reset()
    assert obs.device.type == state.device.type == avail.device.type == "cuda"
    for _ in range(5):
        actions = torch.multinomial(avail.float().view(-1, 6), 1).view(8, 8)
        reward, terminated, truncated, info = env.step(actions)
        avail = env.get_avail_actions()
    assert reward.device.type == "cuda" and info["n_captured"].device.type == "cuda"
