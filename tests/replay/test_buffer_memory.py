"""EpisodeBuffer memory: 0/1 fields as bits, only real timesteps written and checkpointed, reads unchanged.

The reference for every read is built from the inserted tensors directly: each field cast to its
``episode_layout`` dtype, rows t = 0 .. L of each episode (its L transitions and final
observation) as inserted, zeros after them, trimmed to the longest episode read.
"""

import copy
import io
import json
import math
import os
import subprocess
import sys

import pytest
import torch

from macpo.algos.base import LoopSettings
from macpo.algos.dop import DOP
from macpo.algos.fop import FOP
from macpo.algos.macpo import MACPO
from macpo.algos.qmix import QMIX
from macpo.envs.base import EnvInfo, FixedInfoEnv
from macpo.envs.predator_prey import PredatorPrey
from macpo.envs.smac import make_smac_env
from macpo.replay.buffer import STATE_LAYOUT, EpisodeBuffer, episode_layout, pack_bits, unpack_bits
from macpo.replay.datamodule import ReplayDataModule
from macpo.replay.samplers.macpo import MacpoSampler
from macpo.replay.samplers.uniform import UniformSampler
from macpo.rollout import Collector, RandomPolicy
from tests.helpers import REPO, RESUMABLE, metric_histories, store_uri

# predator-prey's sizes (75-cell windows, a 10x10x3 state) with a short limit; SMAC-like float16
PP_INFO = EnvInfo(n_agents=8, n_actions=6, obs_shape=75, state_shape=300, episode_limit=12, obs_dtype=torch.uint8,
                  binary_obs=True)  # fmt: skip
SMAC_INFO = EnvInfo(n_agents=3, n_actions=11, obs_shape=13, state_shape=17, episode_limit=12, obs_dtype=torch.float16)


def random_episodes(info: EnvInfo, lengths: list[int], seed: int) -> dict[str, torch.Tensor]:
    """A batch as the Collector returns it: [K, max L + 1, ...], float32 observations, long actions,
    and, like the Collector's frozen envs, non-zero values in every field after an episode's end."""
    g = torch.Generator().manual_seed(seed)
    k, t = len(lengths), max(lengths) + 1
    n, a = info.n_agents, info.n_actions
    if info.binary_obs:
        obs = (torch.rand(k, t, n, info.obs_shape, generator=g) < 0.1).float()
        state = (torch.rand(k, t, info.state_shape, generator=g) < 0.1).float()
    else:
        obs = torch.randn(k, t, n, info.obs_shape, generator=g)
        state = torch.randn(k, t, info.state_shape, generator=g)
    length = torch.tensor(lengths)
    filled = torch.arange(t) < length[:, None]  # [K, t]
    terminated = torch.zeros(k, t, dtype=torch.bool)
    terminated[torch.arange(k), (length - 1).clamp_min(0)] = torch.rand(k, generator=g) < 0.5
    return {
        "obs": obs,
        "state": state,
        "avail_actions": torch.rand(k, t, n, a, generator=g) < 0.6,
        "actions": torch.randint(0, a, (k, t, n), generator=g),
        "reward": torch.randn(k, t, generator=g),
        "terminated": terminated & filled,
        "filled": filled,
    }


class Reference:
    """What a read must return, kept per slot from the inserted tensors."""
    def __init__(self, info: EnvInfo, capacity: int) -> None:
        self.info, self.capacity, self.pos = info, capacity, 0
        self.layout = episode_layout(info)
        self.slots: dict[int, dict[str, torch.Tensor]] = {}

    def insert(self, episodes: dict[str, torch.Tensor]) -> None:
        for i in range(episodes["filled"].shape[0]):
            length = int(episodes["filled"][i].sum())
            self.slots[self.pos] = {k: episodes[k][i, : length + 1].to(dt) for k, (_, dt) in self.layout.items()}
            self.pos = (self.pos + 1) % self.capacity

    def gather(self, idx: list[int]) -> dict[str, torch.Tensor]:
        t_len = max(max(len(self.slots[i]["filled"]) for i in idx), 2)
        out = {}
        for k, (shape, dt) in self.layout.items():
            x = torch.zeros(len(idx), t_len, *shape, dtype=dt)
            for row, i in enumerate(idx):
                x[row, : len(self.slots[i][k])] = self.slots[i][k]
            out[k] = x
        return out


def assert_same_batch(got: dict[str, torch.Tensor], expected: dict[str, torch.Tensor]) -> None:
    assert list(got) == list(expected)
    for k in expected:
        assert got[k].dtype == expected[k].dtype, k
        assert got[k].shape == expected[k].shape, k
        assert torch.equal(got[k], expected[k]), k


def fill(buffer: EpisodeBuffer, reference: Reference, batches: list[list[int]], seed: int = 0) -> None:
    for i, lengths in enumerate(batches):
        episodes = random_episodes(buffer.info, lengths, seed + i)
        buffer.insert(episodes)
        reference.insert(episodes)


# long episodes first, then shorter ones overwrite them as the ring wraps (capacity 5)
WRAPPING = [[12, 3, 12], [7, 0, 12], [2, 1], [5, 12, 4, 9]]


@pytest.mark.parametrize("width", [1, 6, 7, 8, 9, 75, 300])
def test_bits_round_trip(width):
    x = torch.rand(4, 3, width, generator=torch.Generator().manual_seed(width)) < 0.3
    packed = pack_bits(x)
    assert packed.dtype == torch.uint8 and packed.shape == (4, 3, math.ceil(width / 8))
    assert torch.equal(unpack_bits(packed, width, torch.bool), x)
    assert torch.equal(unpack_bits(packed, width, torch.uint8), x.to(torch.uint8))


@pytest.mark.parametrize("info", [PP_INFO, SMAC_INFO], ids=["predator_prey", "smac"])
def test_gather_returns_the_inserted_episodes_exactly(info):
    buffer, reference = EpisodeBuffer(5, info), Reference(info, 5)
    if info.binary_obs:
        assert set(buffer.packed) == {"obs", "state", "avail_actions"}
    else:
        assert buffer.packed == ("avail_actions",) and buffer.data["obs"].dtype == torch.float16
    for step, lengths in enumerate(WRAPPING):
        episodes = random_episodes(info, lengths, seed=step)
        buffer.insert(episodes)
        reference.insert(episodes)
        stored = list(range(len(buffer)))
        for idx in (stored, stored[::-1], stored[-2:], [stored[0]] * 3):
            assert_same_batch(buffer.gather(torch.tensor(idx)), reference.gather(idx))
    # slot 2 held a 12-step episode and now a 1-step one: read next to a 12-step episode (slot 4),
    # its rows after its final observation are zeros, not the old episode's
    out = buffer.gather(torch.tensor([2, 4]))
    assert out["filled"].shape[1] == 13 and out["filled"][0].sum() == 1
    for name in ("obs", "state", "avail_actions", "actions", "reward"):
        assert not out[name][0, 2:].any(), name
    # ``buffer[idx]`` casts the same values
    cast = buffer[torch.tensor([2, 4])]
    assert torch.equal(cast["obs"], out["obs"].float()) and torch.equal(cast["actions"], out["actions"].long())


def test_insert_writes_only_real_timesteps():
    """Rows after an episode's final observation are never written (their pages stay untouched)."""
    buffer = EpisodeBuffer(4, SMAC_INFO)
    for store in buffer.data.values():
        store.fill_(7)  # a marker standing in for never-written memory
    before = {k: v.clone() for k, v in buffer.data.items()}
    lengths = [3, 0, 12, 5]
    buffer.insert(random_episodes(SMAC_INFO, lengths, seed=1))
    for slot, length in enumerate(lengths):
        for name, store in buffer.data.items():
            assert torch.equal(store[slot, length + 1 :], before[name][slot, length + 1 :]), name
    assert not torch.equal(buffer.data["obs"][:, 0], before["obs"][:, 0])


@pytest.mark.parametrize("field", ["obs", "state"])
@pytest.mark.parametrize("value", [2.0, 0.5, -1.0, float("nan")])
def test_binary_fields_refuse_other_values(field, value):
    buffer = EpisodeBuffer(4, PP_INFO)
    episodes = random_episodes(PP_INFO, [4, 6], seed=0)
    episodes[field][1, 3].view(-1)[5] = value
    with pytest.raises(ValueError, match=f"'{field}' holds .*not 0 or 1"):
        buffer.insert(episodes)
    assert len(buffer) == 0 and buffer.pos == 0 and not buffer.length.any()  # nothing written
    episodes[field][1, 3].view(-1)[5] = 1.0
    buffer.insert(episodes)  # 0/1 is fine; a value after the final observation is never read
    episodes = random_episodes(PP_INFO, [4, 6], seed=0)
    episodes[field][0, 6].view(-1)[0] = value
    buffer.insert(episodes)


def test_malformed_episodes_are_refused():
    buffer = EpisodeBuffer(4, SMAC_INFO)
    episodes = random_episodes(SMAC_INFO, [4, 6], seed=0)
    holes = dict(episodes, filled=episodes["filled"].clone())
    holes["filled"][0, 2] = False
    with pytest.raises(ValueError, match="prefix"):
        buffer.insert(holes)
    no_final = {k: v[:, :6] for k, v in episodes.items()}  # episode 1 lacks its final observation
    with pytest.raises(ValueError, match="final observation"):
        buffer.insert(no_final)
    assert len(buffer) == 0


def test_predator_prey_storage_is_at_least_six_times_smaller():
    info = PredatorPrey(1).env_info  # the paper's 8 agents on 10x10, 200 steps
    buffer = EpisodeBuffer(1, info)
    unpacked = sum(math.prod(shape) * torch.empty(0, dtype=dt).element_size()
                   for shape, dt in episode_layout(info).values()) * buffer.max_t  # fmt: skip
    assert buffer.nbytes_per_episode() * 6 <= unpacked


# ---- checkpoints --------------------------------------------------------------------------------
def saved(state: dict) -> dict:
    """Through bytes, as a checkpoint travels (the safe loader the checkpoint check uses)."""
    f = io.BytesIO()
    torch.save(state, f)
    f.seek(0)
    return torch.load(f, weights_only=True)


def tensor_bytes(obj) -> int:
    if isinstance(obj, torch.Tensor):
        return obj.numel() * obj.element_size()
    if isinstance(obj, dict):
        return sum(tensor_bytes(v) for v in obj.values())
    return 0


@pytest.mark.parametrize("info", [PP_INFO, SMAC_INFO], ids=["predator_prey", "smac"])
def test_state_dict_round_trip_gives_identical_reads_and_inserts(info):
    buffer, reference = EpisodeBuffer(5, info), Reference(info, 5)
    fill(buffer, reference, WRAPPING)
    restored = EpisodeBuffer(5, info)
    restored.load_state_dict(saved(buffer.state_dict()))
    assert (restored.pos, len(restored)) == (buffer.pos, len(buffer))
    idx = torch.tensor([4, 0, 2, 1, 3])
    assert_same_batch(restored.gather(idx), buffer.gather(idx))
    more = random_episodes(info, [2, 9], seed=9)
    assert torch.equal(restored.insert(more), buffer.insert(more))
    assert_same_batch(restored.gather(idx), buffer.gather(idx))


def test_a_checkpoint_of_short_episodes_saves_only_their_timesteps():
    info = EnvInfo(n_agents=3, n_actions=11, obs_shape=13, state_shape=17, episode_limit=60, obs_dtype=torch.float16)
    buffer = EpisodeBuffer(8, info)
    lengths = [5, 9, 3, 12, 7, 4]  # up to a fifth of the limit
    buffer.insert(random_episodes(info, lengths, seed=0))
    state = buffer.state_dict()
    padded = sum(math.prod(shape) * torch.empty(0, dtype=dt).element_size()
                 for shape, dt in episode_layout(info).values()) * buffer.max_t * len(lengths)  # fmt: skip
    assert tensor_bytes(state) * 4 <= padded
    assert state["layout"] == STATE_LAYOUT
    assert state["rows"]["reward"].shape[0] == sum(lengths) + len(lengths)  # transitions + final observations


def layout_1_state(info: EnvInfo, batches: list[dict[str, torch.Tensor]], pos: int) -> dict:
    """A buffer's state as checkpoints held it before bit packing: each field's full [n, T+1, ...]
    tensor in its storage dtype, episodes as inserted (with the batch's padding), zeros after."""
    t1 = info.episode_limit + 1
    data = {}
    for k, (shape, dt) in episode_layout(info).items():
        parts = []
        for ep in batches:
            x = torch.zeros(ep["filled"].shape[0], t1, *shape, dtype=dt)
            x[:, : ep[k].shape[1]] = ep[k].to(dt)
            parts.append(x)
        data[k] = torch.cat(parts)
    return {"data": data, "pos": pos, "n_stored": data["filled"].shape[0]}


@pytest.mark.parametrize("info", [PP_INFO, SMAC_INFO], ids=["predator_prey", "smac"])
def test_checkpoints_of_the_unpacked_layout_still_load(info):
    batches = [random_episodes(info, lengths, seed=i) for i, lengths in enumerate([[12, 3], [0, 7, 1]])]
    buffer, reference = EpisodeBuffer(6, info), Reference(info, 6)
    for ep in batches:
        buffer.insert(ep)
        reference.insert(ep)
    dm = ReplayDataModule(info, UniformSampler(), buffer_size=6, batch_size=2)
    dm.load_state_dict(saved({"buffer": layout_1_state(info, batches, pos=5), "sampler": dm.sampler.state_dict()}))
    assert (dm.buffer.pos, len(dm.buffer)) == (5, 5)
    idx = [4, 3, 2, 1, 0]
    assert_same_batch(dm.buffer.gather(torch.tensor(idx)), reference.gather(idx))
    assert_same_batch(dm.buffer.gather(torch.tensor(idx)), buffer.gather(torch.tensor(idx)))


def test_checkpoints_that_do_not_fit_fail_with_a_clear_error():
    buffer = EpisodeBuffer(5, PP_INFO)
    buffer.insert(random_episodes(PP_INFO, [3, 4], seed=0))
    state = saved(buffer.state_dict())
    with pytest.raises(ValueError, match="layout 3"):
        EpisodeBuffer(5, PP_INFO).load_state_dict(dict(state, layout=3))
    with pytest.raises(ValueError, match="buffer_size is 4"):
        EpisodeBuffer(4, PP_INFO).load_state_dict(state)
    with pytest.raises(ValueError, match="field 'obs'"):  # another env's sizes
        EpisodeBuffer(5, SMAC_INFO).load_state_dict(state)
    old = layout_1_state(PP_INFO, [random_episodes(PP_INFO, [3, 4], seed=0)], pos=2)
    with pytest.raises(ValueError, match="field 'obs'"):
        EpisodeBuffer(5, SMAC_INFO).load_state_dict(old)


def test_datamodule_checkpoint_round_trip():
    dm = ReplayDataModule(PP_INFO, MacpoSampler(), buffer_size=5, batch_size=2)
    for i, lengths in enumerate(WRAPPING):
        dm.insert(random_episodes(PP_INFO, lengths, seed=i))
    resumed = ReplayDataModule(PP_INFO, MacpoSampler(), buffer_size=5, batch_size=2)
    resumed.load_state_dict(saved(dm.state_dict()))
    idx = torch.arange(5)
    assert_same_batch(resumed.buffer.gather(idx), dm.buffer.gather(idx))


# ---- the learners' batches ----------------------------------------------------------------------
def played(env, n_batches: int) -> list[dict[str, torch.Tensor]]:
    torch.manual_seed(0)
    collector = Collector(env)
    return [collector.run(RandomPolicy(), seed=i)[0] for i in range(n_batches)]


def unpacked_gather(batches: list[dict[str, torch.Tensor]], info: EnvInfo, idx: torch.Tensor) -> dict:
    """The batch the unpacked buffer returned: the inserted tensors in storage dtypes, including what
    the Collector left after each episode's end (its frozen envs' observations and actions)."""
    full = layout_1_state(info, batches, pos=0)["data"]
    t_len = int(full["filled"][idx].sum(1).max()) + 1
    return {k: v[idx, :t_len] for k, v in full.items()}


def one_update(algo, batch: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    torch.manual_seed(1)
    out = algo.update(batch, torch.linspace(0.5, 1.5, batch["filled"].shape[0]))
    return {k: v.detach() for k, v in out.metrics.items()}, {k: p.detach() for k, p in algo.named_parameters()}


@pytest.mark.parametrize("make", [
    lambda env: QMIX(env, UniformSampler(), LoopSettings(t_max=1)),
    lambda env: MACPO(env, MacpoSampler(), LoopSettings(t_max=1)),
    lambda env: DOP(env, UniformSampler(), LoopSettings(t_max=1), critic_hidden_dim=16, on_batch_size=4),
    lambda env: FOP(env, UniformSampler(), LoopSettings(t_max=1)),
], ids=["qmix", "macpo", "dop", "fop"])  # fmt: skip
@pytest.mark.parametrize("game", ["predator_prey", "smac"])
def test_learner_updates_equal_those_on_the_unpacked_batch(make, game):
    """An update on a gathered batch equals (bit for bit: metrics and parameters after the step) the
    update on the same episodes as the unpacked buffer served them, padding values and all."""
    if game == "predator_prey":
        env = PredatorPrey(8, seed=0, grid_size=4, n_agents=4, n_prey=1, episode_limit=40)  # some prey caught
    else:
        env = make_smac_env("3m", n_envs=8, seed=0)
    batches = played(env, 2)
    info = env.env_info
    buffer = EpisodeBuffer(16, info)
    for ep in batches:
        buffer.insert(ep)
    idx = torch.tensor([3, 12, 0, 5, 15, 8, 1, 10])
    batch, reference = buffer.gather(idx), unpacked_gather(batches, info, idx)
    real = torch.arange(batch["filled"].shape[1]) <= batch["filled"].sum(1, keepdim=True)  # [b, T'+1]
    for k in batch:  # the rows learners read are the same; only what lies after an episode's end differs
        assert torch.equal(batch[k][real], reference[k][real]), k
    assert any(not torch.equal(batch[k], reference[k]) for k in batch), "no padding in this test's batch"
    algo = make(FixedInfoEnv(info))
    if isinstance(algo, DOP):
        algo.recent.insert(batches[0])  # DOP's own recent episodes (the same for both updates)
    twin = copy.deepcopy(algo)
    before = {k: p.detach().clone() for k, p in algo.named_parameters()}
    metrics, params = one_update(algo, batch)
    ref_metrics, ref_params = one_update(twin, reference)
    assert metrics.keys() == ref_metrics.keys()
    assert any(not torch.equal(params[k], before[k]) for k in params)  # the update stepped
    for k in metrics:
        assert torch.equal(metrics[k], ref_metrics[k]), k
    for k in params:
        assert torch.equal(params[k], ref_params[k]), k


# ---- resident memory ----------------------------------------------------------------------------
RESIDENT_SCRIPT = """
import json, os, torch
from macpo.memory import keep_freed_memory
keep_freed_memory()  # as a training run does: large tensors come from the heap, not fresh mmaps
from macpo.envs.base import EnvInfo
from macpo.replay.buffer import EpisodeBuffer

def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

def vm_flags(address):
    inside = False
    for line in open("/proc/self/smaps"):
        head = line.split()[0]
        if "-" in head and not head.endswith(":"):
            lo, hi = (int(v, 16) for v in head.split("-"))
            inside = lo <= address < hi
        elif inside and line.startswith("VmFlags"):
            return line.split()[1:]
    return []

info = EnvInfo(n_agents=4, n_actions=6, obs_shape=512, state_shape=512, episode_limit=255, obs_dtype=torch.float16)
torch.manual_seed(0)
batches = []
for _ in range(8):
    ep = {"obs": torch.randn(32, 8, 4, 512), "state": torch.randn(32, 8, 512),
          "avail_actions": torch.ones(32, 8, 4, 6, dtype=torch.bool),
          "actions": torch.zeros(32, 8, 4, dtype=torch.long),
          "reward": torch.ones(32, 8), "terminated": torch.zeros(32, 8, dtype=torch.bool),
          "filled": torch.ones(32, 8, dtype=torch.bool)}
    ep["filled"][:, -1] = False  # 7 transitions and the final observation
    batches.append(ep)
before = rss()
buffer = EpisodeBuffer(256, info)
for ep in batches:
    buffer.insert(ep)
grown = rss() - before
row = sum(v[0, 0].numel() * v.element_size() for v in buffer.data.values())
print(json.dumps({"grown": grown, "reserved": buffer.nbytes_per_episode() * 256, "real": row * 8 * 256,
                  "flags": vm_flags(buffer.data["obs"].data_ptr() + 65536)}))
"""


@pytest.mark.skipif(not os.path.exists("/proc/self/statm"), reason="reads Linux's /proc")
def test_resident_memory_grows_with_the_timesteps_written():
    """A buffer of short episodes in long slots: the process grows by their rows, not by the slots."""
    out = subprocess.run([sys.executable, "-c", RESIDENT_SCRIPT], capture_output=True, text=True, check=True,
                         env=dict(os.environ), timeout=300)  # fmt: skip
    m = json.loads(out.stdout.strip().splitlines()[-1])
    assert m["reserved"] >= 30 * m["real"]  # 8 of 256 rows per slot
    assert m["grown"] >= m["real"] / 2  # the measurement sees the rows written...
    assert m["grown"] <= m["reserved"] / 8  # ...and not the untouched rest of the slots
    assert "nh" in m["flags"]  # no transparent huge pages: one written row does not make 2 MiB resident


def test_a_run_resumes_exactly_from_a_checkpoint_of_the_unpacked_layout(tmp_path, compose_cfg, crash_once_after):
    """A checkpoint whose replay buffer was saved before bit packing (layout 1) resumes, and the
    resumed run matches the uninterrupted one."""
    import macpo.train as train
    from macpo.envs.factory import make_env
    from macpo.runs.checkpoints import LAST_CKPT, SIDECAR, run_checkpoint_dir, sha256_of
    from macpo.runs.identity import run_identity

    crowded = [*RESUMABLE, "env.grid_size=4", "env.n_agents=4"]  # prey get caught: episodes of mixed lengths
    whole_uri, resumed_uri = store_uri(tmp_path / "whole" / "m.db"), store_uri(tmp_path / "resumed" / "m.db")
    train.run(compose_cfg([*crowded, f"logger.tracking_uri={whole_uri}"]))
    cfg = compose_cfg([*crowded, f"logger.tracking_uri={resumed_uri}"])
    crash_once_after(1900)
    with pytest.raises(RuntimeError, match="simulated crash"):
        train.run(cfg)

    # rewrite the checkpoint's buffer as the unpacked layout held it: full [n, T+1, ...] tensors
    run_dir = run_checkpoint_dir(cfg, run_identity(cfg), REPO)
    ckpt = torch.load(run_dir / LAST_CKPT, weights_only=True)
    state = ckpt["ReplayDataModule"]["buffer"]
    info = make_env(cfg.env, 1, torch.device("cpu"), seed=0).env_info
    buffer = EpisodeBuffer(state["capacity"], info)
    buffer.load_state_dict(state)
    n, t1 = state["n_stored"], buffer.max_t
    episodes = buffer.gather(torch.arange(n))
    data = {}
    for k, x in episodes.items():
        data[k] = torch.zeros(n, t1, *x.shape[2:], dtype=x.dtype)
        data[k][:, : x.shape[1]] = x
    assert bool((buffer.length[:n] < t1 - 1).any())  # some episodes ended early: there is padding
    ckpt["ReplayDataModule"]["buffer"] = {"data": data, "pos": state["pos"], "n_stored": n}
    torch.save(ckpt, run_dir / LAST_CKPT)
    meta = json.loads((run_dir / SIDECAR).read_text())
    (run_dir / SIDECAR).write_text(json.dumps(dict(meta, sha256=sha256_of(run_dir / LAST_CKPT))))

    train.run(cfg)  # resumes from the rewritten checkpoint
    status, after = metric_histories(resumed_uri)
    assert status == "FINISHED"
    assert metric_histories(whole_uri)[1] == after


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("info", [PP_INFO, SMAC_INFO], ids=["predator_prey", "smac"])
def test_cuda_buffer_reads_and_saves_what_the_cpu_buffer_does(info):
    cpu, cuda = EpisodeBuffer(5, info), EpisodeBuffer(5, info, "cuda")
    for step, lengths in enumerate(WRAPPING):
        episodes = random_episodes(info, lengths, seed=step)
        cpu.insert(episodes)
        cuda.insert(episodes)
    idx = torch.tensor([4, 0, 2, 1, 3])
    on_gpu = cuda.gather(idx.cuda())
    assert all(x.device.type == "cuda" for x in on_gpu.values())
    assert_same_batch({k: v.cpu() for k, v in on_gpu.items()}, cpu.gather(idx))
    restored = EpisodeBuffer(5, info)
    restored.load_state_dict(saved(cuda.state_dict()))
    assert_same_batch(restored.gather(idx), cpu.gather(idx))
