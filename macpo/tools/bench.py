"""Speed and memory benchmark: ``python -m macpo.tools.bench [--only SECTION,...] [--quick]``.

Not a test: timings on a shared machine are noisy, so each table reports ratios measured in the
same process next to absolute numbers. Sections (default: env,learner,weights,gru,smac):
  env      predator-prey env steps/s with a random policy, B = 1, 8, 64, 256
  learner  seconds per QMIX / MAC-PO update at batch 128 (full 200-step episodes, 8 agents);
           ``--bf16`` runs them under bf16 autocast
  weights  MAC-PO weight computation vs n agents (exact, approx) and its share of a learner step at MMM2 size
  gru      the fused GRU against nn.GRU, forward + backward at a learner-like size (256 sequences × 101 steps)
  smac     SMAC-lite (5m_vs_6m, MMM2, 27m_vs_30m) and, with jaxmarl installed, SMAX (5m_vs_6m,
           27m_vs_30m) env steps/s at B = 1, 8, 64, 256 with a random policy, SMAX/lite ratio, peak RSS
  train    end to end: QMIX and MAC-PO on predator-prey and MMM2 with the paper's settings, timed
           over a fixed window of env steps after the replay warm-up (env steps/s, s/update, share
           of time in collection / update / evaluation / logging, peak RSS; one process per run);
           ``--baseline DIR`` runs each configuration also with the macpo package in DIR (e.g. a
           worktree of an older commit), back to back, and prints the speed-up
  learner  also: QMIX / MAC-PO update at MMM2 size on episodes played by a random policy (real length mix)
  buffer   replay memory: bytes per episode stored vs the unpacked layout (predator-prey, MMM2), the
           resident growth and checkpoint size of a buffer of MMM2 random-policy episodes, and the
           CPU time of reading a batch of 128 against indexing an unpacked copy (the previous read)
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time

import torch

import macpo
from macpo.algos.base import LoopSettings
from macpo.algos.macpo import MACPO
from macpo.algos.qmix import QMIX
from macpo.envs.base import BatchedEnv, EnvInfo, FixedInfoEnv
from macpo.envs.predator_prey import PredatorPrey
from macpo.memory import keep_freed_memory
from macpo.nn.kernels import cap_kernel_caches
from macpo.replay.samplers.macpo import MacpoSampler
from macpo.replay.samplers.macpo_approx import MacpoApproxSampler
from macpo.replay.samplers.uniform import UniformSampler
from macpo.replay.signals import Signals

BATCHES = (1, 8, 64, 256)


def table(title: str, header: list[str], rows: list[list]) -> None:
    print(f"\n## {title}\n")
    print("| " + " | ".join(header) + " |")
    print("|" + "|".join("---" for _ in header) + "|")
    for r in rows:
        print("| " + " | ".join(f"{x:,.4g}" if isinstance(x, float) else str(x) for x in r) + " |")


def random_policy_speed(env: BatchedEnv, seconds: float) -> float:
    """Env steps per second (B × step calls) with actions drawn uniformly from the available ones."""
    b, a = env.n_envs, env.env_info.n_actions
    _, _, avail = env.reset(seed=0)
    steps, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        actions = torch.multinomial(avail.float().view(-1, a), 1).view(b, -1)
        _, terminated, truncated, _ = env.step(actions)
        steps += b
        if steps % (20 * b) == 0 and bool((terminated | truncated).all()):
            env.reset()
        avail = env.get_avail_actions()
        env.get_obs(), env.get_state()
    return steps / (time.perf_counter() - t0)


def bench_env(seconds: float) -> None:
    rows = []
    for b in BATCHES:
        env = PredatorPrey(b, seed=0)
        rows.append([b, random_policy_speed(env, seconds)])
    base = rows[0][1]
    table("predator-prey (10x10, 8 agents, 8 prey): random policy", ["B", "env steps/s", "× B=1"],
          [[b, s, s / base] for b, s in rows])


def fake_batch(info: EnvInfo, b: int, device="cpu") -> dict[str, torch.Tensor]:
    """Full-length random episodes [b, T+1, ...] with every action available."""
    t1, n = info.episode_limit + 1, info.n_agents
    g = torch.Generator().manual_seed(0)
    batch = {
        "obs": torch.rand(b, t1, n, info.obs_shape, generator=g),
        "state": torch.rand(b, t1, info.state_shape, generator=g),
        "avail_actions": torch.ones(b, t1, n, info.n_actions, dtype=torch.bool),
        "actions": torch.randint(0, info.n_actions, (b, t1, n), generator=g),
        "reward": torch.rand(b, t1, generator=g),
        "terminated": torch.zeros(b, t1, dtype=torch.bool),
        "filled": torch.ones(b, t1, dtype=torch.bool),
    }
    batch["filled"][:, -1] = False
    return {k: v.to(device) for k, v in batch.items()}


def time_update(algo, batch, repeats: int) -> float:
    """Seconds per learner update: loss (with targets), backward, clip, Adam step."""
    opt = torch.optim.Adam(algo.online_parameters(), lr=1e-3)
    isw = torch.ones(batch["obs"].shape[0])

    def once():
        out = algo.compute_loss(batch, isw)
        opt.zero_grad()
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(algo.online_parameters(), 10.0)
        opt.step()

    once()  # warm-up
    t0 = time.perf_counter()
    for _ in range(repeats):
        once()
    return (time.perf_counter() - t0) / repeats


def bench_learner(repeats: int) -> None:
    info = PredatorPrey(1).env_info  # 8 agents, 200 steps
    env = FixedInfoEnv(info)
    batch = fake_batch(info, 128)
    loop = LoopSettings(t_max=1)
    qmix = QMIX(env, UniformSampler(), loop)
    macpo = MACPO(env, MacpoSampler(), loop)
    q, m = time_update(qmix, batch, repeats), time_update(macpo, batch, repeats)
    table("learner update, batch 128 × 201 steps × 8 agents (predator-prey size)",
          ["algorithm", "s / update", "public code (s)", "speed-up"],
          [["QMIX", q, 0.7, 0.7 / q], ["MAC-PO (sampler=macpo)", m, 1.8, 1.8 / m]])


def bench_weights(repeats: int) -> None:
    b, t = 128, 180
    rows = []
    for n in (2, 4, 8, 16, 32, 64):
        g = torch.Generator().manual_seed(n)
        sig = Signals(mask=torch.ones(b, t), td=torch.randn(b, t, generator=g), q_tot=torch.randn(b, t, generator=g),
                      q_star=torch.randn(b, t, generator=g), pi=torch.rand(b, t, n, generator=g))
        row = [n]
        for sampler in (MacpoSampler(), MacpoApproxSampler()):
            sampler.loss_weights(sig)
            t0 = time.perf_counter()
            for _ in range(repeats):
                sampler.loss_weights(sig)
            row.append((time.perf_counter() - t0) / repeats * 1e3)
        rows.append(row)
    table("MAC-PO weights, B=128 × T=180 (ms per batch)", ["n agents", "exact ms", "approx ms"], rows)
    # share of a MAC-PO learner step at MMM2 size
    info = EnvInfo(n_agents=10, n_actions=18, obs_shape=176, state_shape=322, episode_limit=180)
    env = FixedInfoEnv(info)
    batch = fake_batch(info, 128)
    algo = MACPO(env, MacpoSampler(), LoopSettings(t_max=1))
    step = time_update(algo, batch, max(1, repeats // 10))
    sig = Signals(mask=torch.ones(128, 180), td=torch.randn(128, 180), q_tot=torch.randn(128, 180),
                  q_star=torch.randn(128, 180), pi=torch.rand(128, 180, 10))
    s = MacpoSampler()
    t0 = time.perf_counter()
    for _ in range(repeats):
        s.loss_weights(sig)
    weights_ms = (time.perf_counter() - t0) / repeats * 1e3
    table("MAC-PO learner step at MMM2 size (10 agents, 180 steps, batch 128)",
          ["learner s / update", "exact weights ms", "weights share of step"],
          [[step, weights_ms, f"{weights_ms / 1e3 / step:.2%}"]])


def bench_gru(repeats: int) -> None:
    """FusedGRU against nn.GRU (same weights): forward and backward of 256 sequences × 101 steps × 64
    units, timed interleaved in one process (medians), so load from other processes hits both alike."""
    from torch import nn

    from macpo.nn.fused_gru import FusedGRU

    torch.manual_seed(13)
    ref, fused = nn.GRU(64, 64), FusedGRU(64, 64)
    fused.load_state_dict(ref.state_dict())
    x, w = torch.randn(101, 256, 64, requires_grad=True), torch.randn(101, 256, 64)

    def once(gru) -> float:
        t0 = time.perf_counter()
        out, _ = gru(x)
        (out * w).sum().backward()
        return time.perf_counter() - t0

    once(ref), once(fused)  # warm-up
    times: dict[str, list[float]] = {"nn.GRU": [], "FusedGRU": []}
    for _ in range(repeats):
        times["nn.GRU"].append(once(ref))
        times["FusedGRU"].append(once(fused))
    median = {k: statistics.median(v) for k, v in times.items()}
    table(f"GRU forward + backward, 101 steps × 256 sequences × 64 units (median of {repeats}, interleaved)",
          ["layer", "ms", "speed-up vs nn.GRU"], [[k, v * 1e3, median["nn.GRU"] / v] for k, v in median.items()])


def bench_smac(seconds: float) -> None:
    try:
        from macpo.envs.smac import make_smac_env
    except ImportError as e:  # the simulator is optional for this benchmark
        print(f"\n(smac section skipped: {e})")
        return
    backends = ["lite"]
    try:
        from macpo.envs.smax import check_smax

        check_smax("5m_vs_6m")
        backends.append("smax")
    except ValueError as e:
        print(f"\n(SMAX rows skipped: {e})")
    rows, speed = [], {}
    for map_name in ("5m_vs_6m", "MMM2", "27m_vs_30m"):
        for backend in backends:
            if backend == "smax" and map_name == "MMM2":
                continue  # SMAX has no Medivac
            for b in BATCHES:
                env = make_smac_env(map_name, backend=backend, n_envs=b, seed=0)
                random_policy_speed(env, min(seconds, 0.3))  # warm-up (SMAX: jit compile of the first step)
                speed[map_name, backend, b] = random_policy_speed(env, seconds)
                ratio = speed[map_name, backend, b] / speed[map_name, "lite", b] if backend == "smax" else 1.0
                rows.append([map_name, backend, b, speed[map_name, backend, b], f"{ratio:.2f}"])
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    table("SMAC maps: random policy", ["map", "backend", "B", "env steps/s", "vs lite"], rows)
    print(f"\npeak RSS of this process: {peak_mb:,.0f} MiB")


def played_batch(map_name: str, n_episodes: int, seed: int = 0) -> tuple[EnvInfo, dict[str, torch.Tensor]]:
    """``n_episodes`` SMAC-lite episodes played by a random policy, read back from a replay buffer:
    the padded batch a learner gets, with the length mix of real play (not all episode_limit long)."""
    from macpo.envs.smac import make_smac_env
    from macpo.replay.buffer import EpisodeBuffer
    from macpo.rollout import Collector, RandomPolicy

    torch.manual_seed(seed)
    env = make_smac_env(map_name, backend="lite", n_envs=8, seed=seed)
    buffer = EpisodeBuffer(n_episodes, env.env_info)
    collector = Collector(env)
    while len(buffer) < n_episodes:
        episodes, _ = collector.run(RandomPolicy())
        buffer.insert({k: v[: n_episodes - len(buffer)] for k, v in episodes.items()})
    return env.env_info, buffer[torch.arange(n_episodes)]


def time_learn(algo, batch, repeats: int) -> float:
    """Seconds per ``learn`` (every loss, backward and optimiser step of the method: actor-critics)."""
    isw = torch.ones(batch["filled"].shape[0])
    algo.update(batch, isw)  # warm-up
    t0 = time.perf_counter()
    for _ in range(repeats):
        algo.update(batch, isw)
    return (time.perf_counter() - t0) / repeats


def bench_learner_played(repeats: int) -> None:
    from macpo.algos.dop import DOP
    from macpo.algos.fop import FOP
    from macpo.algos.vdac import VDAC

    info, batch = played_batch("MMM2", 128)
    lengths = batch["filled"].sum(1).float()
    env = FixedInfoEnv(info)
    loop = LoopSettings(t_max=1)
    q = time_update(QMIX(env, UniformSampler(), loop), batch, repeats)
    m = time_update(MACPO(env, MacpoSampler(), loop), batch, repeats)
    dop = DOP(env, UniformSampler(), loop)
    dop.recent.insert({k: v[: dop.recent.capacity] for k, v in batch.items()})  # its recent episodes
    ac = [[name, time_learn(algo, batch, repeats)]
          for name, algo in (("DOP", dop), ("FOP", FOP(env, UniformSampler(), loop)),
                             ("VDAC", VDAC(env, UniformSampler(), loop)))]  # fmt: skip
    print(f"\nMMM2 batch: 128 episodes played by a random policy, length mean {lengths.mean():.1f}, "
          f"max {lengths.max():.0f} (padded to {batch['filled'].shape[1]} steps)")
    table("learner update at MMM2 size (10 agents), real length mix", ["algorithm", "s / update"],
          [["QMIX", q], ["MAC-PO (sampler=macpo)", m], *ac])


# ---- replay memory -----------------------------------------------------------------------------
def rss_mib() -> float:
    """Resident set size of this process now (Linux ``/proc/self/statm``; 0 elsewhere)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except OSError:
        return 0.0


def unpacked_bytes_per_episode(info: EnvInfo) -> int:
    """What one episode took in the unpacked layout (every field at T+1 steps, written in full)."""
    from macpo.replay.buffer import episode_layout

    per_step = sum(math.prod(shape) * torch.empty(0, dtype=dt).element_size()
                   for shape, dt in episode_layout(info).values())  # fmt: skip
    return per_step * (info.episode_limit + 1)


def gather_cpu_seconds(buffer, idx: torch.Tensor, repeats: int) -> tuple[float, float]:
    """CPU seconds per ``buffer.gather(idx)`` and per read of the same episodes from an unpacked copy
    (indexing full tensors and trimming: the read before bit packing), interleaved."""
    n = int(idx.max()) + 1
    full = buffer.gather(torch.arange(n))  # the unpacked copy (trimmed to the longest stored)

    def unpacked_read():
        t_len = min(max(int(full["filled"][idx].sum(1).max().item()) + 1, 2), buffer.max_t)
        return {k: v[idx, :t_len] for k, v in full.items()}

    new = old = 0.0
    for _ in range(repeats):
        t0 = time.process_time()
        buffer.gather(idx)
        t1 = time.process_time()
        unpacked_read()
        new, old = new + t1 - t0, old + time.process_time() - t1
    return new / repeats, old / repeats


def bench_buffer(quick: bool, repeats: int) -> None:
    from macpo.envs.smac import make_smac_env
    from macpo.replay.buffer import EpisodeBuffer
    from macpo.rollout import Collector, RandomPolicy

    keep_freed_memory()  # as a training run does: big tensors come from the heap, not mmap
    pp_info, mmm2 = PredatorPrey(1).env_info, make_smac_env("MMM2", n_envs=8, seed=0)
    rows = []
    for label, info in (("predator-prey", pp_info), ("MMM2", mmm2.env_info)):
        before, now = unpacked_bytes_per_episode(info), EpisodeBuffer(1, info).nbytes_per_episode()
        rows.append([label, before, now, f"{before / now:.2f}", before * 5000 / 2**20, now * 5000 / 2**20])
    table("replay storage per episode slot (reserved; written only as far as played)",
          ["env", "unpacked B", "stored B", "ratio", "unpacked MiB @5000", "stored MiB @5000"], rows)  # fmt: skip

    # MMM2 random-policy episodes: resident growth as they are inserted, checkpoint size
    n_episodes = 400 if quick else 2000
    collector = Collector(mmm2)
    torch.manual_seed(0)
    collector.run(RandomPolicy(), seed=0)  # warm-up: the collector's own tensors are resident from here on
    rss0 = rss_mib()
    buffer = EpisodeBuffer(5000, mmm2.env_info)  # the paper's buffer_size
    rss1 = rss_mib()
    played = 0
    t0 = time.perf_counter()
    while len(buffer) < n_episodes:
        episodes, _ = collector.run(RandomPolicy())
        buffer.insert(episodes)
        played += int(episodes["filled"].sum())
        if len(buffer) % 400 == 0:
            print(f"  {len(buffer)} MMM2 episodes inserted ({time.perf_counter() - t0:.0f} s)", flush=True)
    rss2 = rss_mib()
    n = len(buffer)
    lengths = buffer.length[:n].float()
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "buffer.pt")
        torch.save(buffer.state_dict(), path)
        ckpt_mib = os.path.getsize(path) / 2**20
    unpacked_mib = n * unpacked_bytes_per_episode(mmm2.env_info) / 2**20
    row_bytes = sum(v[0, 0].numel() * v.element_size() for v in buffer.data.values())
    real_mib = float((lengths + 1).sum()) * row_bytes / 2**20  # rows t = 0 .. L of every episode
    print(f"\nMMM2: {n} random-policy episodes, length mean {lengths.mean():.1f}, max {lengths.max():.0f} "
          f"(limit {mmm2.env_info.episode_limit})")  # fmt: skip
    table("MMM2 replay buffer (buffer_size 5000) after the inserts", ["what", "MiB"], [
        ["resident growth: creating the buffer", rss1 - rss0],
        ["resident growth: inserting the episodes", rss2 - rss1],
        ["their real rows (t = 0 .. L), stored form", real_mib],
        ["unpacked layout: written by those inserts (full slots)", unpacked_mib],
        ["checkpoint of the buffer (torch.save of state_dict)", ckpt_mib],
        ["unpacked layout: checkpoint tensors", unpacked_mib],
    ])  # fmt: skip

    # reading a batch of 128: CPU time against the unpacked read (same process, interleaved)
    g = torch.Generator().manual_seed(0)
    pp_buffer = EpisodeBuffer(256, pp_info)
    env = PredatorPrey(8, seed=0)
    pp_collector = Collector(env)
    while len(pp_buffer) < 256:
        pp_buffer.insert(pp_collector.run(RandomPolicy())[0])
    rows = []
    for label, buf in (("predator-prey (200 steps)", pp_buffer), ("MMM2 (random-policy lengths)", buffer)):
        idx = torch.randint(0, min(len(buf), 512), (128,), generator=g)
        new, old = gather_cpu_seconds(buf, idx, repeats * 4)
        rows.append([label, old * 1e3, new * 1e3, f"{new / old:.2f}"])
    table("reading a batch of 128 (CPU ms)", ["batch", "unpacked read", "gather (bits, zeroed padding)", "ratio"],
          rows)  # fmt: skip


# ---- end to end -----------------------------------------------------------------------------
#: label → Hydra overrides; each trains with ``budget=paper`` (8 envs, batch 128, buffer 5000)
TRAIN_RUNS = {
    "predator-prey QMIX": ["env=predator_prey", "algo=qmix", "sampler=uniform"],
    "predator-prey MAC-PO": ["env=predator_prey", "algo=macpo", "sampler=macpo"],
    "MMM2 QMIX": ["env=mmm2", "algo=qmix", "sampler=uniform"],
    "MMM2 MAC-PO": ["env=mmm2", "algo=macpo", "sampler=macpo"],
}
#: env steps timed after the replay warm-up (predator-prey: 10 collection rounds of 8 × 200 steps)
WINDOW_STEPS = {"predator_prey": 16_000, "mmm2": 8_000}
#: what a child process runs for one configuration (it imports no macpo module at its top)
TRAIN_JOB_SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "bench_train.py")


def train_in_child(label: str, package_root: str, threads: int, quick: bool, extra: list[str]) -> dict:
    """``bench_train.train_once`` in a fresh process whose ``macpo`` comes from ``package_root`` (own peak RSS)."""
    env_name = TRAIN_RUNS[label][0].split("=")[1]
    window = WINDOW_STEPS[env_name] // (2 if quick else 1)
    with tempfile.TemporaryDirectory() as out_dir:
        job = {"overrides": [*TRAIN_RUNS[label], f"torch_threads={threads}", *extra], "window": window,
               "out_dir": out_dir}  # fmt: skip
        env = {**os.environ, "PYTHONPATH": os.path.abspath(package_root)}
        # run bench_train.py as a script from an empty folder, so `import macpo` finds package_root's
        code = "import runpy, sys; sys.argv = sys.argv[1:]; runpy.run_path(sys.argv[0], run_name='__main__')"
        proc = subprocess.run(
            [sys.executable, "-c", code, TRAIN_JOB_SCRIPT, json.dumps(job)],
            cwd=out_dir, env=env, capture_output=True, text=True,
        )  # fmt: skip
        if proc.returncode != 0:
            raise RuntimeError(f"{label} with {package_root} failed:\n{proc.stderr[-3000:]}")
        return json.loads(proc.stdout.strip().splitlines()[-1])


def load_average() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def bench_train(threads: int, quick: bool, baseline: str | None, variants: list[str], labels: list[str]) -> None:
    """Each run with this code (plus each ``variants`` entry: space-separated Hydra overrides, e.g.
    ``trainer.precision=bf16-mixed``) and, with ``baseline``, the package in that folder, back to back."""
    here = os.path.dirname(os.path.dirname(os.path.abspath(macpo.__file__)))  # the folder holding this macpo
    codes = ([("baseline", baseline, [])] if baseline else []) + [("this", here, [])]
    codes += [(f"this {v}", here, v.split()) for v in variants]
    rows, ratio_rows = [], []
    for label in labels:
        res = {}
        for name, root, extra in codes:
            load = load_average()
            r = train_in_child(label, root, threads, quick, extra)
            res[name] = r
            sh = r["shares"]
            rows.append([label, name, r["env_steps_per_s"], r["s_per_update"], f"{sh['collection']:.0%}",
                         f"{sh['update']:.0%}", f"{sh['evaluation']:.0%}", f"{sh['logging']:.1%}",
                         r["peak_rss_mib"], load])  # fmt: skip
            print(f"  {label} [{name}]: {r['env_steps_per_s']:.0f} env steps/s, {r['s_per_update']:.3f} s/update, "
                  f"peak RSS {r['peak_rss_mib']:.0f} MiB (load {load})", flush=True)  # fmt: skip
        if baseline:
            b = res["baseline"]
            for name, a in res.items():
                if name != "baseline":
                    ratio_rows.append([label, name, a["env_steps_per_s"] / b["env_steps_per_s"],
                                       b["s_per_update"] / a["s_per_update"], a["peak_rss_mib"] / b["peak_rss_mib"]])
    table(f"end to end, paper settings, {threads} thread(s), window after the replay warm-up",
          ["run", "code", "env steps/s", "s / update", "collection", "update", "evaluation", "logging",
           "peak RSS MiB", "load avg (1/5/15 min)"], rows)  # fmt: skip
    if ratio_rows:
        table("vs baseline, measured back to back", ["run", "code", "env steps/s ×", "update speed-up ×",
              "peak RSS ×"], ratio_rows)  # fmt: skip


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--only", default="env,learner,weights,gru,smac", help="comma-separated sections")
    p.add_argument("--quick", action="store_true", help="shorter measurements (noisier)")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default; train: 1)")
    p.add_argument("--baseline", default=None, help="train: also time the macpo package in this folder")
    p.add_argument("--runs", default=",".join(TRAIN_RUNS), help="train: comma-separated run labels")
    p.add_argument("--variant", action="append", default=[],
                   help="train: also time this code with these overrides (repeatable), e.g. 'trainer.precision=bf16-mixed'")  # noqa: E501
    p.add_argument("--bf16", action="store_true",
                   help="learner: time the updates under bf16 autocast, as trainer.precision=bf16-mixed runs them")
    args = p.parse_args(argv)
    cap_kernel_caches()  # as a training run does, before the first oneDNN matmul
    if args.threads:
        torch.set_num_threads(args.threads)
    secs, reps = (0.5, 2) if args.quick else (2.0, 5)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    sections = args.only.split(",")
    if "env" in sections:
        bench_env(secs)
    if "learner" in sections:
        keep_freed_memory()  # as a training run does (macpo.runs.lifecycle.build_run)
        precision = torch.autocast("cpu", dtype=torch.bfloat16) if args.bf16 else contextlib.nullcontext()
        print(f"learner precision: {'bf16-mixed' if args.bf16 else '32-true'}")
        with precision:
            bench_learner(reps)
            bench_learner_played(reps)
    if "weights" in sections:
        bench_weights(reps * 10)
    if "gru" in sections:
        bench_gru(reps)
    if "smac" in sections:
        bench_smac(secs)
    if "buffer" in sections:
        bench_buffer(args.quick, reps)
    if "train" in sections:
        bench_train(args.threads or 1, args.quick, args.baseline, args.variant, args.runs.split(","))


if __name__ == "__main__":
    main()
