"""The StarCraft-free SMAC simulator: SMAC's interfaces, and combat arithmetic against hand calculation."""

from __future__ import annotations

import math

import pytest
import torch

from macpo.envs.smac import make_smac_env
from macpo.envs.smac_lite import MapSpec, SmacLiteEnv
from macpo.envs.smac_lite.combat import apply_hits

DT = 8 / 22.4  # seconds per env step (SMAC's step_mul 8 at "faster" speed)

# obs / state / actions with SMAC defaults (docs/smac.md)
SMAC_SIZES = {
    "3m": (30, 48, 9),
    "8m": (80, 168, 14),
    "2s3z": (80, 120, 11),
    "3s5z": (128, 216, 14),
    "MMM": (160, 290, 16),
    "MMM2": (176, 322, 18),
    "5m_vs_6m": (55, 98, 12),
    "3s_vs_5z": (48, 68, 11),
    "27m_vs_30m": (285, 1170, 36),
}
MAX_REWARD = {"3m": 3 * 45 + 30 + 200, "MMM": 100 + 200 + 2 * 125 + 7 * 45 + 150}


def random_actions(avail: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    b, n, a = avail.shape
    return torch.multinomial(avail.float().view(-1, a), 1, generator=gen).view(b, n)


def shots_by_end_of_step(step: int, period: float) -> int:
    """Attacks fired at t = 0, period, 2 period, ... before the end of env step ``step`` (0-based)."""
    return sum(1 for j in range(1000) if j * period < (step + 1) * DT)


def hand_placed(map_name: str, placement: dict[int, tuple[float, float]], **kwargs) -> SmacLiteEnv:
    """One battle with only the listed slots alive, at the given positions (others removed)."""
    env = SmacLiteEnv(map_name, n_envs=1, seed=0)
    env.reset()
    pos = env.unit_positions.clone()
    health = torch.zeros_like(env.unit_health)
    for slot, xy in placement.items():
        pos[0, slot] = torch.tensor(xy)
        health[0, slot] = env.roster.max_health[slot]
    env.place_units(positions=pos, health=kwargs.pop("health", health), **kwargs)
    return env


@pytest.mark.parametrize("map_name", list(SMAC_SIZES))
def test_sizes_match_smac(map_name):
    env = make_smac_env(map_name, n_envs=2, seed=0)
    info = env.env_info
    obs_shape, state_shape, n_actions = SMAC_SIZES[map_name]
    assert (info.obs_shape, info.state_shape, info.n_actions) == SMAC_SIZES[map_name]
    obs, state, avail = env.reset()
    assert obs.shape == (2, info.n_agents, obs_shape) and obs.dtype == torch.float32
    assert state.shape == (2, state_shape)
    assert avail.shape == (2, info.n_agents, n_actions) and avail.dtype == torch.bool
    assert info.obs_dtype == torch.float16


def test_a_new_map_is_one_data_entry():
    spec = MapSpec("2m_vs_1z", agents=(("marine", 2),), enemies=(("zealot", 1),), episode_limit=40)
    env = SmacLiteEnv(spec, n_envs=4, seed=0)
    # obs: 4 moves + 1 enemy x (5 + shield) + 1 ally x 5 + own 1; state: 2 x 4 + 1 x (3 + shield) + 2 x 7
    assert (env.env_info.obs_shape, env.env_info.state_shape, env.env_info.n_actions) == (16, 26, 7)
    gen = torch.Generator().manual_seed(0)
    for _ in range(10):
        reward, *_ = env.step(random_actions(env.get_avail_actions(), gen))
        assert reward.shape == (4,) and env.get_obs().shape == (4, 2, 16)
    with pytest.raises(ValueError, match="unknown unit types"):
        MapSpec("1h", agents=(("hydralisk", 1),), enemies=(("marine", 1),), episode_limit=10)


def test_unknown_map_and_backend_are_config_errors():
    with pytest.raises(ValueError, match="map_name.*known maps: 3m, 8m.*MMM2.*27m_vs_30m"):
        make_smac_env("4m_vs_5z")
    with pytest.raises(ValueError, match="env.backend"):
        make_smac_env("3m", backend="starcraft")
    assert make_smac_env("mmm2").env_info.n_agents == 10  # SMAC's spelling, case-insensitive


def test_float16_storage_of_obs_and_state_is_accurate():
    env = SmacLiteEnv("MMM2", n_envs=16, seed=1)
    gen = torch.Generator().manual_seed(0)
    obs, state, avail = env.reset()
    worst = 0.0
    for _ in range(40):
        for x in (env.get_obs(), env.get_state()):
            worst = max(worst, (x.half().float() - x).abs().max().item())
        env.step(random_actions(env.get_avail_actions(), gen))
    assert 0 < worst < 1e-3


def test_obs_and_state_layout_by_hand():
    # 3m: agents 0-2, enemies 3-5. Agent 0 sees enemy 0 at distance 5, enemy 1 at 8, not enemy 2 (15).
    env = hand_placed("3m", {0: (10, 16), 1: (10, 17), 2: (10, 30), 3: (13, 20), 4: (18, 16), 5: (25, 16)})
    health = env.unit_health.clone()
    health[0, 1], health[0, 3] = 30.0, 18.0
    env.place_units(health=health)
    obs = env.get_obs()[0, 0]
    expected = (
        [1, 1, 1, 1]  # moves N, S, E, W
        + [1, 5 / 9, 3 / 9, 4 / 9, 18 / 45]  # enemy 0: attackable (<= 6), dist, dx, dy, health
        + [0, 8 / 9, 8 / 9, 0, 1]  # enemy 1: seen, not attackable
        + [0] * 5  # enemy 2: beyond sight
        + [1, 1 / 9, 0, 1 / 9, 30 / 45]  # ally 1
        + [0] * 5  # ally 2: beyond sight
        + [1]  # own health
    )
    torch.testing.assert_close(obs, torch.tensor(expected, dtype=torch.float32))
    avail = env.get_avail_actions()[0, 0]
    assert avail.tolist() == [False, True, True, True, True, True, True, False, False]

    state = env.get_state()[0]
    agents, enemies, last = state[:12].view(3, 4), state[12:21].view(3, 3), state[21:].view(3, 9)
    torch.testing.assert_close(agents[0], torch.tensor([1.0, 0.0, -6 / 32, 0.0]))
    torch.testing.assert_close(enemies[0], torch.tensor([18 / 45, -3 / 32, 4 / 32]))
    assert last.abs().sum() == 0

    env.step(torch.tensor([[6, 1, 1]]))  # agent 0 shoots enemy 0 (in reach: 5 <= 5 + 2 * 0.375)
    state = env.get_state()[0]
    last = state[21:].view(3, 9)
    assert last[0].argmax() == 6 and last[1].argmax() == 1 and last.sum() == 3
    cooldown_fraction = (0.61 - DT) * 22.4 / 15  # SMAC: weapon cooldown in game loops / 15
    assert state[1].item() == pytest.approx(cooldown_fraction, abs=1e-5)
    # agent 0's shot, plus agent 1's: a stopped unit fires at the nearest enemy in reach (4.2 away)
    assert env.unit_health[0, 3].item() == pytest.approx(18 - 6 - 6)


def test_protoss_obs_have_shields_and_unit_type_bits():
    env = hand_placed("2s3z", {0: (10, 16), 2: (10, 18), 5: (14, 16)})
    shield = env.unit_shield.clone()
    shield[0, 5] = 20.0  # a quarter of the enemy Stalker's 80
    env.place_units(shield=shield)
    obs = env.get_obs()[0, 0]
    # layout: 4 moves, 5 enemies x 8, 4 allies x 8, own 4; features [.., health, shield, stalker, zealot]
    enemy0 = obs[4:12]
    torch.testing.assert_close(enemy0, torch.tensor([1, 4 / 9, 4 / 9, 0, 1, 0.25, 1, 0]))
    ally2 = obs[4 + 40 + 8 : 4 + 40 + 16]  # other allies are 1, 2, 3, 4; slot 2 is the first zealot
    torch.testing.assert_close(ally2, torch.tensor([1, 2 / 9, 0, 2 / 9, 1, 1, 0, 1]))
    torch.testing.assert_close(obs[-4:], torch.tensor([1.0, 1.0, 1.0, 0.0]))


def test_availability_rules():
    # MMM2: agents 0-1 Marauders, 2-8 Marines, 9 Medivac; enemies 10-21.
    env = hand_placed("MMM2", {0: (1, 16), 2: (5, 16), 9: (6, 16), 10: (6.9, 16), 11: (20, 16)})
    avail = env.get_avail_actions()[0]
    assert avail[1].tolist() == [True] + [False] * 17  # dead: no-op only
    assert avail[0, :6].tolist() == [False, True, True, True, True, False]  # no move west off the map
    assert avail[0, 6] and not avail[0, 7]  # enemy 0 at 5.9 <= 6; enemy 1 far
    heal = avail[9, 6:]  # the Medivac's target slots are allies in range (0 and 2), never itself
    assert heal.tolist() == [True, False, True] + [False] * 9
    with pytest.raises(ValueError, match="shape"):
        env.step(torch.zeros(1, 3, dtype=torch.long))


def test_unavailable_action_acts_as_stop_or_raises_when_strict():
    env = hand_placed("3m", {0: (10, 16), 3: (25, 16)})
    env.step(torch.tensor([[7, 0, 0]]))  # enemy 1 is dead: acts as stop
    assert env.unit_positions[0, 0].tolist() == pytest.approx([10, 16])
    strict = SmacLiteEnv("3m", n_envs=2, seed=0, strict_actions=True)
    with pytest.raises(ValueError, match="not available"):
        strict.step(torch.zeros(2, 3, dtype=torch.long))  # no-op is unavailable to living agents


def test_marine_duel_damage_cooldown_draw_and_reward_scale():
    env = hand_placed("3m", {0: (10, 16), 3: (15, 16)})  # 5 apart: both in reach
    total = 0.0
    for step in range(20):
        reward, terminated, truncated, info = env.step(torch.tensor([[6, 0, 0]]))
        total += reward.item()
        expected = max(45 - 6 * shots_by_end_of_step(step, 0.61), 0)
        assert env.unit_health[0, 0].item() == pytest.approx(expected)  # agent: hit by the enemy's AI
        assert env.unit_health[0, 3].item() == pytest.approx(expected)
        if expected == 0:
            break
    assert expected == 0 and bool(terminated) and not bool(truncated) and not bool(info["battle_won"])  # a draw
    assert total == pytest.approx((45 + 10) * 20 / MAX_REWARD["3m"])  # health lost + kill, scaled


def _land(health: float, shield: float, hit: float, armor: float) -> tuple[float, float]:
    """One hit by the documented rule: shields first (no armor); the rest loses the armor
    (at least 0.5 for a hit that meets no shield)."""
    absorbed = min(shield, hit)
    rest = hit - absorbed
    if rest > 0:
        health -= max(rest - armor, 0.5) if absorbed == 0 else max(rest - armor, 0.0)
    return health, shield - absorbed


def test_stalker_vs_zealot_shields_armor_and_double_hit():
    # 3s_vs_5z: agent 0 Stalker, enemy slot 3 a Zealot 1.2 away (melee reach 0.1 + 0.5 + 0.625)
    env = hand_placed("3s_vs_5z", {0: (10, 16), 3: (11.2, 16)})
    stalker, zealot = [80.0, 80.0], [100.0, 50.0]
    for step in range(60):
        _, terminated, _, info = env.step(torch.tensor([[6, 0, 0]]))
        for _ in range(shots_by_end_of_step(step, 1.34) - shots_by_end_of_step(step - 1, 1.34)):
            zealot = list(_land(*zealot, hit=13, armor=1))
        for _ in range(shots_by_end_of_step(step, 0.86) - shots_by_end_of_step(step - 1, 0.86)):
            for _ in range(2):  # two blades
                stalker = list(_land(*stalker, hit=8, armor=1))
        stalker[0] = max(stalker[0], 0.0)
        got = [env.unit_health[0, 0].item(), env.unit_shield[0, 0].item()]
        assert got == pytest.approx(stalker if stalker[0] > 0 else [0.0, 0.0], abs=1e-4)
        assert [env.unit_health[0, 3].item(), env.unit_shield[0, 3].item()] == pytest.approx(zealot, abs=1e-4)
        if stalker[0] <= 0:
            break
    assert stalker[0] <= 0 and bool(terminated) and not bool(info["battle_won"])
    assert zealot[1] == 0 and zealot[0] < 100  # the Zealot's shield broke and it lost health


def test_hit_tables_bonus_armor_and_air():
    r = SmacLiteEnv("MMM", n_envs=1, seed=0).roster  # 0-1 Marauders, 2-8 Marines, 9 Medivac; 10+ enemies
    assert r.hit_health[0, 10].item() == 19  # Marauder 10 +10 vs armored, -1 armor
    assert r.hit_health[0, 12].item() == 10  # vs a light Marine, no armor
    assert r.hit_health[2, 10].item() == 5  # Marine 6 - 1
    assert r.hit_health[2, 19].item() == 5  # Marines hit the (armored, air) Medivac
    assert r.hit_health[0, 19].item() == 0 and not r.can_attack[0, 19]  # Marauders cannot hit air
    assert not r.can_attack[9].any() and r.can_heal[9, 2] and not r.can_heal[9, 9]
    p = SmacLiteEnv("2s3z", n_envs=1, seed=0).roster  # 0-1 Stalkers, 2-4 Zealots
    assert p.hit_health[0, 5].item() == 17 and p.hit_health[0, 7].item() == 12  # +5 vs armored Stalker
    assert p.hit[2, 5].item() == 8 and p.hits[2].item() == 2


def test_apply_hits_pools_hits_through_shields():
    t = torch.tensor
    # shield 10, two hits of 8 (armor 1): 8 to shield, then 2 to shield + 6 - 1 to health
    health, shield = apply_hits(t([100.0]), t([10.0]), t([16.0]), t([14.0]), t([2.0]), t([1.0]))
    assert (health.item(), shield.item()) == (95.0, 0.0)
    # no shield: exactly the per-hit damages past armor, each at least 0.5
    health, shield = apply_hits(t([100.0]), t([0.0]), t([0.6]), t([0.5]), t([1.0]), t([1.0]))
    assert health.item() == pytest.approx(99.5)
    health, shield = apply_hits(t([100.0]), t([30.0]), t([13.0]), t([12.0]), t([1.0]), t([1.0]))
    assert (health.item(), shield.item()) == (100.0, 17.0)


def test_medivac_walks_into_range_heals_and_spends_energy():
    # at "faster" speed like every other stat (sim_version 2; version 1 used the "normal" 9 HP/s, 0.5625/s)
    HEAL, REGEN = 12.6, 0.7875
    # MMM: Marine slot 2 at 20 HP, Medivac slot 9 at 5.5 (available <= 6, heal reach 4 + 0.75 + 0.375)
    env = hand_placed("MMM", {2: (10.5, 5), 9: (5, 5), 12: (30, 30)})
    health = env.unit_health.clone()
    health[0, 2] = 20.0
    env.place_units(health=health)
    heal_ally_2 = torch.tensor([[0, 0, 1, 0, 0, 0, 0, 0, 0, 8]])
    env.step(heal_ally_2)
    reach = 4 + 0.75 + 0.375
    assert (env.unit_positions[0, 9] - env.unit_positions[0, 2]).norm().item() == pytest.approx(reach, abs=1e-4)
    for k in (1, 2, 3):
        if k > 1:
            env.step(heal_ally_2)
        assert env.unit_health[0, 2].item() == pytest.approx(20 + HEAL * DT * k, abs=1e-4)
        assert env.unit_energy[0, 9].item() == pytest.approx(50 - (HEAL / 3 - REGEN) * DT * k, abs=1e-4)
    # out of energy: 3 HP per energy point
    energy = env.unit_energy.clone()
    energy[0, 9] = 0.5
    env.place_units(energy=energy)
    before = env.unit_health[0, 2].item()
    env.step(heal_ally_2)
    env.step(heal_ally_2)
    assert env.unit_health[0, 2].item() == pytest.approx(before + 1.5 + 3 * REGEN * DT, abs=1e-4)


def test_shields_regenerate_after_ten_seconds_without_damage():
    env = hand_placed("3s_vs_5z", {0: (30, 30), 3: (2, 2)})  # the Zealot never comes near
    shield = env.unit_shield.clone()
    shield[0, 0] = 65.0
    env.place_units(shield=shield, since_damage=0.0)
    stop = torch.tensor([[1, 0, 0]])
    for step in range(1, 51):
        env.step(stop)
        expected = min(65 + 2 * max(step * DT - 10, 0.0), 80)  # full again at 17.5 s
        assert env.unit_shield[0, 0].item() == pytest.approx(expected, abs=1e-3), step
    assert expected == 80 and env.unit_health[0, 0].item() == 80


def test_mmm_side_with_only_medivacs_left_has_lost():
    env = hand_placed("MMM", {9: (5, 5), 12: (30, 30)})  # agents: only the Medivac
    reward, terminated, truncated, info = env.step(torch.tensor([[0] * 9 + [1]]))
    assert bool(terminated) and not bool(info["battle_won"]) and reward.item() == 0
    env = hand_placed("MMM", {2: (5, 5), 19: (30, 30)})  # enemies: only their Medivac
    reward, terminated, truncated, info = env.step(torch.tensor([[0, 0, 1] + [0] * 7]))
    assert bool(terminated) and bool(info["battle_won"])
    assert reward.item() == pytest.approx(200 * 20 / MAX_REWARD["MMM"])


def test_timeout_is_a_truncated_draw_and_finished_battles_stay_frozen():
    env = SmacLiteEnv("3m", n_envs=3, seed=0)
    pos = env.unit_positions.clone()
    pos[:, :3] = torch.tensor([[31.0, 31.0], [31.0, 30.0], [30.0, 31.0]])  # far from the attack point
    env.place_units(positions=pos)
    stop = torch.ones(3, 3, dtype=torch.long)
    for step in range(1, 61):
        reward, terminated, truncated, info = env.step(stop)
        assert bool(truncated.all()) == (step == 60)
    assert not terminated.any() and not info["battle_won"].any()
    obs, state = env.get_obs().clone(), env.get_state().clone()
    reward, terminated, truncated, info = env.step(stop)
    assert (reward == 0).all() and truncated.all() and not terminated.any()
    assert torch.equal(env.get_obs(), obs) and torch.equal(env.get_state(), state)


def test_same_seed_same_trajectory():
    def rollout(seed):
        env = SmacLiteEnv("5m_vs_6m", n_envs=8, seed=seed)
        gen = torch.Generator().manual_seed(3)
        out = [env.reset()[0]]
        for _ in range(30):
            reward, *_ = env.step(random_actions(env.get_avail_actions(), gen))
            out += [env.get_obs(), reward]
        return out

    a, b, c = rollout(7), rollout(7), rollout(8)
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    assert not torch.equal(a[0], c[0])


def test_reset_with_seed_replays():
    env = SmacLiteEnv("3m", n_envs=4, seed=None)
    first = env.reset(seed=11)[0].clone()
    env.reset(seed=12)
    assert torch.equal(env.reset(seed=11)[0], first)
    assert math.isclose(env.spawn_jitter, 0.5)
