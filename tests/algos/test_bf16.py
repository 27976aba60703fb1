"""bf16 mixed precision (``trainer.precision=bf16-mixed``): what it changes and what it must not."""

import statistics

import pytest
import torch
from scipy.stats import spearmanr

import macpo.train as train
from macpo.algos.base import LoopSettings
from macpo.algos.macpo import MACPO
from macpo.envs.predator_prey import PredatorPrey
from macpo.nn.fused_gru import FusedGRU
from macpo.replay.samplers.macpo import MacpoSampler
from macpo.rollout import Collector, RandomPolicy


def played_batch(env, n_batches: int = 2):
    """Episodes of a random policy, concatenated into one padded batch."""
    col = Collector(env)
    parts = [col.run(RandomPolicy(), seed=s)[0] for s in range(n_batches)]
    return {k: torch.cat([p[k] for p in parts]) for k in parts[0]}


def test_macpo_weights_under_bf16_rank_like_fp32():
    """One batch of full-size predator-prey episodes: MAC-PO's loss weights computed with the
    bf16 learner rank the timesteps as the fp32 learner does (Spearman ≥ 0.99)."""
    torch.manual_seed(0)
    env = PredatorPrey(4, seed=0, episode_limit=60)
    algo = MACPO(env, MacpoSampler(), LoopSettings(t_max=1))
    batch = played_batch(env)
    isw = torch.ones(batch["obs"].shape[0])
    out32 = algo.compute_loss(batch, isw)
    w32 = algo.sampler.loss_weights(out32.signals, isw)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out16 = algo.compute_loss(batch, isw)
    w16 = algo.sampler.loss_weights(out16.signals, isw)
    assert w16.dtype == torch.float32 and out16.signals.td.dtype == torch.float32  # sampler side stays fp32
    valid = out32.signals.mask.bool()
    assert not torch.equal(w16[valid], w32[valid])  # bf16 did change the numbers
    rho = spearmanr(w32[valid].numpy(), w16[valid].numpy()).statistic
    assert rho >= 0.99, rho
    out16.loss.backward()  # gradients reach the float32 parameters through the bf16 GRU
    assert all(p.grad is not None and p.grad.dtype == torch.float32 for p in algo.online_parameters())


def test_fused_gru_runs_in_bf16_under_autocast_and_keeps_fp32_grads():
    torch.manual_seed(0)
    gru = FusedGRU(8, 16)
    sizes = [5, 5, 3, 1]
    x = torch.randn(sum(sizes), 8)
    h32 = gru.packed(x, sizes)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        h16 = gru.packed(x, sizes)
        seq16, _ = gru(torch.randn(4, 3, 8))  # the padded path too
    assert h16.dtype == torch.bfloat16 and seq16.dtype == torch.bfloat16
    torch.testing.assert_close(h16.float(), h32, atol=3e-2, rtol=0)
    h16.float().sum().backward()
    assert all(p.grad.dtype == torch.float32 and torch.isfinite(p.grad).all() for p in gru.parameters())


@pytest.mark.slow
def test_qmix_bf16_final_returns_within_seed_noise_of_fp32(tmp_path, compose_cfg):
    """QMIX on the small predator-prey (the demo budget, 12k steps), 3 seeds each: bf16-mixed ends within
    seed noise of fp32 (difference of means ≤ 2 standard errors of that difference)."""
    finals = {}
    for precision in ("32-true", "bf16-mixed"):
        finals[precision] = [
            train.run(compose_cfg([
                "env=predator_prey_small", "algo=qmix", "sampler=uniform", "budget=demo", "device=cpu",
                f"seed={seed}", f"trainer.precision={precision}", "progress_bar=false",
                f"logger.tracking_uri=sqlite:///{tmp_path}/{precision}.db",
                f"checkpoint.dir={tmp_path}/ckpt-{precision}",
            ]))  # fmt: skip
            for seed in range(3)
        ]
    a, b = finals["32-true"], finals["bf16-mixed"]
    stderr = (statistics.variance(a) / 3 + statistics.variance(b) / 3) ** 0.5
    print(f"final test returns fp32 {a}, bf16 {b}")
    assert abs(statistics.mean(a) - statistics.mean(b)) <= 2 * stderr + 1e-6, finals


def test_bf16_update_reads_float16_storage():
    """SMAC's replay stores observations and states in float16: the packed update reads them under
    bf16 autocast (nothing concatenates float16 with bfloat16) and matches the float32-stored batch."""
    from macpo.algos.qmix import QMIX
    from macpo.envs.base import EnvInfo, FixedInfoEnv
    from macpo.replay.samplers.uniform import UniformSampler

    info = EnvInfo(n_agents=3, n_actions=5, obs_shape=7, state_shape=9, episode_limit=9)
    g = torch.Generator().manual_seed(0)
    b, t1 = 6, 10
    batch = {
        "obs": torch.rand(b, t1, 3, 7, generator=g).half(),
        "state": torch.rand(b, t1, 9, generator=g).half(),
        "avail_actions": torch.ones(b, t1, 3, 5, dtype=torch.bool),
        "actions": torch.randint(0, 5, (b, t1, 3), generator=g),
        "reward": torch.randn(b, t1, generator=g),
        "terminated": torch.zeros(b, t1, dtype=torch.bool),
        "filled": torch.arange(t1).expand(b, t1) < torch.tensor([9, 1, 4, 9, 3, 6])[:, None],
    }
    algo = QMIX(FixedInfoEnv(info), UniformSampler(), LoopSettings(t_max=1))
    isw = torch.ones(b)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out16 = algo.compute_loss(batch, isw)
        out32 = algo.compute_loss({**batch, "obs": batch["obs"].float(), "state": batch["state"].float()}, isw)
    assert torch.isfinite(out16.loss) and torch.equal(out16.loss, out32.loss)
