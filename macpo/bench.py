"""Speed and memory benchmark: ``python -m macpo.bench [--only env,learner,weights,smac] [--quick]``.

Not a test: timings on a shared machine are noisy, so each table reports ratios measured in the
same process next to absolute numbers. Sections:
  env      predator-prey env steps/s with a random policy, B = 1, 8, 64, 256
  learner  seconds per QMIX / MAC-PO update at batch 128 (full 200-step episodes, 8 agents)
  weights  MAC-PO weight computation vs n agents (exact, approx) and its share of a learner step at MMM2 size
  smac     SMAC-lite (5m_vs_6m, MMM2, 27m_vs_30m) and, with jaxmarl installed, SMAX (5m_vs_6m,
           27m_vs_30m) env steps/s at B = 1, 8, 64, 256 with a random policy, SMAX/lite ratio, peak RSS
"""

from __future__ import annotations

import argparse
import resource
import time

import torch

from macpo.algos.base import LoopSettings
from macpo.algos.macpo import MACPO
from macpo.algos.qmix import QMIX
from macpo.envs.base import BatchedEnv, EnvInfo
from macpo.envs.predator_prey import PredatorPrey
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


class FixedInfoEnv(BatchedEnv):
    """A shape-only env for building learners of a given size (never stepped)."""

    def __init__(self, info: EnvInfo, device="cpu"):
        self.n_envs, self.device, self._info = 1, torch.device(device), info

    @property
    def env_info(self) -> EnvInfo:
        return self._info

    def reset(self, seed=None):
        raise NotImplementedError

    step = get_obs = get_state = get_avail_actions = reset


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


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--only", default="env,learner,weights,smac", help="comma-separated sections")
    p.add_argument("--quick", action="store_true", help="shorter measurements (noisier)")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    secs, reps = (0.5, 2) if args.quick else (2.0, 5)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    sections = args.only.split(",")
    if "env" in sections:
        bench_env(secs)
    if "learner" in sections:
        bench_learner(reps)
    if "weights" in sections:
        bench_weights(reps * 10)
    if "smac" in sections:
        bench_smac(secs)


if __name__ == "__main__":
    main()
