"""SMAC-lite's StarCraft II rules (sim_version 2), each pinned on a hand-made situation:
automatic targeting of the enemy AI, firing after a walk, chasing, and body collision."""

from __future__ import annotations

import pytest
import torch

from macpo.envs.smac_lite import SmacLiteEnv
from macpo.envs.smac_lite.units import DAMAGE_POINT, MARINE, ZEALOT

DT = 8 / 22.4
STOP, MOVE_N, MOVE_W = 1, 2, 5
FAR = (30.0, 30.0)


def hand_placed(map_name: str, placement: dict[int, tuple[float, float]]) -> SmacLiteEnv:
    """One battle with only the listed slots alive, at the given positions."""
    env = SmacLiteEnv(map_name, n_envs=1, seed=0)
    pos = env.unit_positions.clone()
    health = torch.zeros_like(env.unit_health)
    for slot, xy in placement.items():
        pos[0, slot] = torch.tensor(xy)
        health[0, slot] = env.roster.max_health[slot]
    env.place_units(positions=pos, health=health)
    return env


def dist(env: SmacLiteEnv, i: int, j: int) -> float:
    return (env.unit_positions[0, i] - env.unit_positions[0, j]).norm().item()


def test_enemy_acquires_targets_at_scan_range_but_not_beyond():
    # 3m: enemy Marine (slot 3) attack-moves to (9, 16). Scan range: max(5, 5 + 0.5) + 2 radii = 6.25.
    near = hand_placed("3m", {0: (16, 10), 3: (16, 16)})  # agent 6 away: inside scan, outside reach 5.75
    near.step(torch.tensor([[STOP, 0, 0]]))
    assert near._target[0, 3].item() == 0
    assert near.unit_positions[0, 3, 0].item() == pytest.approx(16.0)  # turned off its path to the agent
    assert near.unit_positions[0, 3, 1].item() < 16.0

    far = hand_placed("3m", {0: (16, 9.2), 3: (16, 16)})  # 6.8 away: visible (sight 9) but not scanned
    far.step(torch.tensor([[STOP, 0, 0]]))
    assert far._target[0, 3].item() == -1
    assert far.unit_positions[0, 3, 0].item() < 16.0 and far.unit_positions[0, 3, 1].item() == pytest.approx(16.0)


def test_enemy_switches_to_the_agent_attacking_it_and_otherwise_keeps_its_target():
    # the enemy Marine (slot 3) is attacking agent 0; agent 1 is also within its reach (5.75)
    def scene(agent_1_action: int) -> SmacLiteEnv:
        env = hand_placed("3m", {0: (11, 16), 1: (16, 10.7), 3: (16, 16)})
        env._target[0, 3] = 0
        env.step(torch.tensor([[MOVE_N, agent_1_action, 0]]))  # agent 0 sidesteps: still in reach, not attacking
        return env

    attacked = scene(6)  # agent 1 shoots the enemy: a higher-priority target inside weapon range
    assert attacked._target[0, 3].item() == 1
    assert attacked.unit_health[0, 1].item() < MARINE.max_health  # and is shot at once

    ignored = scene(MOVE_N)  # agent 1 walks closer without attacking: same priority, the target is kept
    assert dist(ignored, 1, 3) < dist(ignored, 0, 3)
    assert ignored._target[0, 3].item() == 0
    assert ignored.unit_health[0, 0].item() < MARINE.max_health


def test_a_target_walking_out_of_range_is_dropped_during_the_step():
    # the enemy (slot 3) is attacking agent 0, which walks out of its reach this step while agent 1,
    # shooting the enemy, stands in reach: the enemy turns on agent 1 instead of chasing agent 0
    env = hand_placed("3m", {0: (10.5, 16), 1: (16, 10.6), 3: (16, 16)})
    env._target[0, 3] = 0
    env.step(torch.tensor([[MOVE_W, 6, 0]]))
    assert env._target[0, 3].item() == 1
    assert env.unit_positions[0, 3].tolist() == pytest.approx([16.0, 16.0])  # it did not give chase
    assert env.unit_health[0, 0].item() == MARINE.max_health
    assert env.unit_health[0, 1].item() == MARINE.max_health - MARINE.damage


def test_an_unarmed_medivac_is_targeted_after_armed_units():
    # MMM2 slots: agents marauders 0-1, marines 2-8, medivac 9; enemies marauders 10-12, marines 13-20, medivac 21
    env = hand_placed("MMM2", {2: (10, 16), 9: (14, 16), 13: (16, 16), 21: FAR})
    act = torch.zeros(1, 10, dtype=torch.long)
    act[0, 2], act[0, 9] = STOP, STOP
    env.step(act)
    assert dist(env, 9, 13) < dist(env, 2, 13)  # the Medivac is the closer one ...
    assert env._target[0, 13].item() == 2  # ... but the Marine can fire back


@pytest.mark.parametrize("walk, fires", [(0.5, True), (1.0, False)])
def test_a_unit_that_walked_fires_only_after_its_damage_point(walk, fires):
    # 3s_vs_5z: an enemy Zealot (slot 3; melee reach 0.1 + 0.5 + 0.625) acquires a holding Stalker
    # and walks up to it; it strikes this step only if walking + the damage point fit in the step.
    reach = 0.1 + 0.5 + 0.625
    env = hand_placed("3s_vs_5z", {0: (12, 16), 3: (12 + reach + walk, 16)})
    env.step(torch.tensor([[STOP, 0, 0]]))
    assert dist(env, 0, 3) == pytest.approx(reach, abs=1e-4)  # it walked into reach this step
    assert (walk / ZEALOT.speed + DAMAGE_POINT <= DT) == fires
    assert env.unit_shield[0, 0].item() == (80 - 16 if fires else 80)
    env.step(torch.tensor([[STOP, 0, 0]]))  # standing in reach: its first strike lands now at the latest
    assert env.unit_shield[0, 0].item() == 80 - 16


def test_a_chaser_does_not_shoot_a_runner_of_its_speed():
    # 3m: the enemy Marine starts 5 from agent 0 (in reach); the agent runs west every step
    env = hand_placed("3m", {0: (20, 16), 3: (25, 16)})
    for _ in range(6):
        env.step(torch.tensor([[MOVE_W, 0, 0]]))
    # one shot in the first step (it only had to close 0.375); then the runner keeps its lead, out
    # of weapon and scan range, and the enemy walks on toward its attack point behind it
    assert env.unit_health[0, 0].item() == pytest.approx(MARINE.max_health - MARINE.damage)
    assert env.unit_positions[0, 3, 0].item() == pytest.approx(25 - 0.375 - 5 * 3.15 * DT, abs=1e-3)


def test_ground_bodies_collide_and_air_units_fly_over_them():
    # MMM: agents marauders 0-1, marines 2-8, medivac 9; enemies far away
    env = hand_placed("MMM", {2: (10, 10), 3: (10.2, 10), 9: (10.1, 10), 12: FAR})
    act = torch.zeros(1, 10, dtype=torch.long)
    act[0, 2], act[0, 3], act[0, 9] = STOP, STOP, STOP
    env.step(act)
    assert dist(env, 2, 3) == pytest.approx(2 * MARINE.radius, abs=1e-4)  # pushed apart, half each
    assert env.unit_positions[0, 2, 0].item() == pytest.approx(10.1 - MARINE.radius, abs=1e-4)
    assert env.unit_positions[0, 9].tolist() == pytest.approx([10.1, 10.0])  # the Medivac is not pushed


def test_trace_lines_show_actions_targets_and_health():
    from macpo.tools.smac_lite_trace import trace_lines

    env = SmacLiteEnv("3m", n_envs=2, seed=0)
    lines, won = trace_lines(env, lambda obs, avail: torch.where(avail[..., 0], 0, STOP))
    assert lines[0].startswith("t00 A: stop@(") and " | E: ->-1@(" in lines[0]
    assert any("->0@" in line or "->1@" in line or "->2@" in line for line in lines)  # enemies acquire agents
    assert len(lines) <= env.env_info.episode_limit and won.shape == (2,)
