"""SMAC-lite (sim_version 3) gives bit-identical trajectories for a seed across speed work.

The digests in ``tests/data/smac_lite_v3_trajectories.json`` were frozen from the simulator at
commit 77c7c02 (before the per-step overhead work) with
``PYTHONPATH=<checkout of 77c7c02> python tests/envs/smac_lite/test_golden.py --write``.
Each case plays a seeded policy (uniform over the available actions; in odd battles the first
attackable enemy is attacked whenever there is one, so that battles are won too; then with
probability 0.1 any action, so the "unavailable action acts as stop" path is covered) for a fixed number of steps,
resetting once every battle has ended, and hashes the raw bytes of everything the env returns:
obs, state, avail, reward, terminated, truncated and the info flags. Exact equality is the point
(a learner replays these trajectories): a change that alters one float bit fails here. The
digests are of one torch build's CPU kernels (``_frozen_with`` in the file; they were the same with
``ATEN_CPU_CAPABILITY=avx2`` as with AVX512): another torch version may round differently, so the
exact check skips there, saying why.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from macpo.envs.smac_lite import SmacLiteEnv

DATA = Path(__file__).resolve().parents[2] / "data" / "smac_lite_v3_trajectories.json"  # tests/data
CASES = [  # (map, B, steps)
    ("5m_vs_6m", 8, 300),
    ("5m_vs_6m", 1, 300),
    ("3s_vs_5z", 8, 300),
    ("3s_vs_5z", 1, 300),
    ("MMM2", 8, 300),
    ("MMM2", 1, 300),
    ("3m", 8, 300),
    ("2s3z", 4, 300),
    ("27m_vs_30m", 8, 120),
]
FIELDS = ("obs", "state", "avail", "reward", "terminated", "truncated", "battle_won", "dead_allies", "dead_enemies")


def trajectory_digests(map_name: str, b: int, steps: int, seed: int = 0) -> dict[str, str]:
    """SHA-256 per returned quantity over ``steps`` steps of a seeded random policy (CPU)."""
    torch.set_num_threads(1)
    env = SmacLiteEnv(map_name, n_envs=b, seed=seed)
    gen = torch.Generator().manual_seed(seed + 1)
    hashes = {k: hashlib.sha256() for k in FIELDS}
    counts = {"battles_ended": 0, "battles_won": 0, "battles_timed_out": 0}  # what the run covered

    def put(name: str, t: torch.Tensor) -> None:
        hashes[name].update(t.detach().contiguous().cpu().numpy().tobytes())

    obs, state, avail = env.reset(seed=seed)
    a = env.n_actions
    for _ in range(steps):
        put("obs", obs), put("state", state), put("avail", avail)
        actions = torch.multinomial(avail.float().view(-1, a), 1, generator=gen).view(b, -1)  # [B, N]
        # odd battles focus fire (first attackable enemy) so that some battles are won
        first_attack = 6 + avail[..., 6:].int().argmax(-1)
        focus = (torch.arange(b) % 2 == 1).unsqueeze(1) & avail[..., 6:].any(-1)
        actions = torch.where(focus, first_attack, actions)
        wild = torch.rand(actions.shape, generator=gen) < 0.1
        actions = torch.where(wild, torch.randint(0, a, actions.shape, generator=gen), actions)
        reward, terminated, truncated, info = env.step(actions)
        put("reward", reward), put("terminated", terminated), put("truncated", truncated)
        for k in ("battle_won", "dead_allies", "dead_enemies"):
            put(k, info[k])
        if bool((terminated | truncated).all()):
            counts["battles_ended"] += b
            counts["battles_won"] += int(info["battle_won"].sum())
            counts["battles_timed_out"] += int(truncated.sum())
            obs, state, avail = env.reset()
        else:
            obs, state, avail = env.get_obs(), env.get_state(), env.get_avail_actions()
    return {k: h.hexdigest() for k, h in hashes.items()} | counts


def case_key(map_name: str, b: int, steps: int) -> str:
    return f"{map_name}/B={b}/steps={steps}"


def this_build() -> dict[str, str]:
    """What the digests depend on besides the code: the torch build and its CPU kernels' vector width."""
    return {"torch": torch.__version__, "cpu_capability": torch.backends.cpu.get_cpu_capability()}


def frozen_cases() -> dict[str, dict]:
    return {k: v for k, v in json.loads(DATA.read_text()).items() if not k.startswith("_")}


@pytest.mark.parametrize("map_name,b,steps", CASES)
def test_trajectories_match_frozen_digests(map_name, b, steps):
    frozen_with = json.loads(DATA.read_text())["_frozen_with"]
    if this_build()["torch"] != frozen_with["torch"]:
        pytest.skip(f"digests were frozen with {frozen_with}; this is {this_build()}")
    frozen = frozen_cases()[case_key(map_name, b, steps)]
    got = trajectory_digests(map_name, b, steps)
    changed = [k for k in frozen if got[k] != frozen[k]]
    assert not changed, f"{map_name} B={b}: {changed} differ from the trajectories frozen at 77c7c02"


def test_frozen_cases_cover_wins_and_timeouts():
    frozen = frozen_cases()
    assert sum(c["battles_won"] for c in frozen.values()) > 0
    assert sum(c["battles_timed_out"] for c in frozen.values()) > 0
    assert sum(c["battles_ended"] - c["battles_won"] - c["battles_timed_out"] for c in frozen.values()) > 0


class HostSyncs(TorchDispatchMode):
    """Records the ops that read a tensor's value back to the host (a sync on CUDA)."""

    SYNCING = ("aten._local_scalar_dense", "aten.nonzero", "aten.is_nonzero", "aten.equal")

    def __init__(self):
        super().__init__()
        self.seen: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if str(func).startswith(self.SYNCING):
            self.seen.append(str(func))
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize("map_name", ["MMM2", "3s_vs_5z"])
def test_step_and_observation_read_nothing_back_to_the_host(map_name):
    # device-agnostic: on CUDA a step must queue work without waiting for it (strict_actions aside)
    env = SmacLiteEnv(map_name, n_envs=4, seed=0)
    gen = torch.Generator().manual_seed(0)
    avail = env.get_avail_actions()
    for _ in range(20):
        actions = torch.multinomial(avail.float().view(-1, env.n_actions), 1, generator=gen).view(4, -1)
        with HostSyncs() as syncs:
            env.step(actions)
            env.get_obs(), env.get_state()
            avail = env.get_avail_actions()
        assert not syncs.seen, syncs.seen


if __name__ == "__main__":
    if sys.argv[1:] != ["--write"]:
        sys.exit("usage: python tests/envs/smac_lite/test_golden.py --write")
    DATA.parent.mkdir(exist_ok=True)
    cases = {case_key(*c): trajectory_digests(*c) for c in CASES}
    DATA.write_text(json.dumps({"_frozen_with": this_build(), **cases}, indent=1) + "\n")
    print(f"wrote {DATA}")
