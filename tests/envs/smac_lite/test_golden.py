"""SMAC-lite (sim_version 3) gives bit-identical trajectories for a seed across speed work.

Each case plays a seeded policy (uniform over the available actions; in odd battles the first
attackable enemy is attacked whenever there is one, so that battles are won too; then with
probability 0.1 any action, so the "unavailable action acts as stop" path is covered) for a fixed number of steps,
resetting once every battle has ended, and hashes the raw bytes of everything the env returns:
obs, state, avail, reward, terminated, truncated and the info flags. Exact equality is the point
(a learner replays these trajectories): a change that alters one float bit fails here.

The digests in ``tests/data/smac_lite_v3_trajectories.json`` are of the simulator at commit 77c7c02
(before the per-step overhead work), one entry per machine family, because the bits depend on the
CPU as well as on the code. ``torch.sqrt`` on float32 runs in MKL's vector math (vsSqrt), which is
not correctly rounded and rounds differently on each of MKL's code paths: on one Intel CPU the
AVX512, AVX2 and AVX paths (``MKL_CBWR``) give three different sets of trajectories (``AVX512_E1``
to ``_E5`` give the AVX512 ones), and MKL on AMD takes yet another path, which no
``MKL_CBWR`` / ``MKL_ENABLE_INSTRUCTIONS`` / ``ONEDNN_MAX_CPU_ISA`` setting reproduces on Intel.
ATen's own kernels (``cdist``) differ only between the DEFAULT build and the vectorised ones. So an
entry is keyed by ``this_build()``: the torch version, ATen's CPU capability, the CPU vendor and the
ISA tier MKL dispatches on (from ``/proc/cpuinfo``). A machine with no entry skips the exact check,
naming the frozen families; to add its entry next to the others::

    git worktree add <dir> 77c7c02
    PYTHONPATH=<dir> python tests/envs/smac_lite/test_golden.py --write

and check that the test then passes on today's code: the digests pin bit-exactness across code
changes only if today's code reproduces 77c7c02 on that machine.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
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


# MKL's code paths, best first: the instruction sets each needs (as /proc/cpuinfo names them)
MKL_ISA_TIERS = (
    ("avx512", {"avx512f", "avx512cd", "avx512bw", "avx512dq", "avx512vl"}),
    ("avx2", {"avx2", "fma"}),
    ("avx", {"avx"}),
)


def cpu_vendor_and_flags() -> tuple[str, set[str]]:
    """The first CPU's ``vendor_id`` and ``flags`` from /proc/cpuinfo (("unknown", set()) without it)."""
    try:
        first = Path("/proc/cpuinfo").read_text().split("\n\n")[0]
    except OSError:
        return "unknown", set()
    fields = dict(line.split(":", 1) for line in first.splitlines() if ":" in line)
    fields = {k.strip(): v.strip() for k, v in fields.items()}
    return fields.get("vendor_id", "unknown"), set(fields.get("flags", "").split())


def this_build() -> dict[str, str]:
    """What the digests depend on besides the code (see the module docstring)."""
    vendor, flags = cpu_vendor_and_flags()
    mkl_isa = next((tier for tier, needs in MKL_ISA_TIERS if needs <= flags), "sse")
    return {
        "torch": torch.__version__,
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "cpu_vendor": vendor,
        "mkl_isa": mkl_isa if torch.backends.mkl.is_available() else "no MKL",
    }


def family(build: dict[str, str]) -> str:
    return f"torch {build['torch']} / ATen {build['cpu_capability']} / {build['cpu_vendor']} / MKL {build['mkl_isa']}"


def frozen_entries() -> list[dict]:
    """[{"build": this_build() where frozen, "simulator": its commit, "cases": {case_key: digests}}]"""
    return json.loads(DATA.read_text())["frozen"] if DATA.exists() else []


@pytest.mark.parametrize("map_name,b,steps", CASES)
def test_trajectories_match_frozen_digests(map_name, b, steps):
    entries = frozen_entries()
    entry = next((e for e in entries if e["build"] == this_build()), None)
    if entry is None:
        pytest.skip(
            f"no digests frozen for {family(this_build())} (frozen: {'; '.join(family(e['build']) for e in entries)});"
            " add them: PYTHONPATH=<checkout of 77c7c02> python tests/envs/smac_lite/test_golden.py --write"
        )
    frozen = entry["cases"][case_key(map_name, b, steps)]
    got = trajectory_digests(map_name, b, steps)
    changed = [k for k in frozen if got[k] != frozen[k]]
    assert not changed, f"{map_name} B={b}: {changed} differ from the trajectories frozen at {entry['simulator']}"


@pytest.mark.parametrize("entry", frozen_entries(), ids=lambda e: family(e["build"]))
def test_frozen_cases_cover_wins_and_timeouts(entry):
    frozen = entry["cases"]
    assert sorted(frozen) == sorted(case_key(*c) for c in CASES)
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


def simulator_commit() -> str:
    """The commit of the checkout the simulator was imported from (the PYTHONPATH of the recipe)."""
    import macpo

    here = str(Path(macpo.__file__).parent)
    git = ["git", "-C", here, "describe", "--always", "--dirty", "--abbrev=7", "--exclude=*"]  # the hash, not a tag
    done = subprocess.run(git, capture_output=True, text=True)
    return done.stdout.strip() if done.returncode == 0 else "unknown"


if __name__ == "__main__":  # adds (or renews) this machine family's entry, keeping the others
    if sys.argv[1:] != ["--write"]:
        sys.exit("usage: PYTHONPATH=<checkout of 77c7c02> python tests/envs/smac_lite/test_golden.py --write")
    build = this_build()
    entry = {
        "build": build,
        "simulator": simulator_commit(),
        "cases": {case_key(*c): trajectory_digests(*c) for c in CASES},
    }
    entries = [e for e in frozen_entries() if e["build"] != build] + [entry]
    DATA.parent.mkdir(exist_ok=True)
    DATA.write_text(json.dumps({"frozen": entries}, indent=1) + "\n")
    print(f"wrote the digests of {entry['simulator']} on {family(build)} to {DATA}")
