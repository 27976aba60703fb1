"""``nn.kernels``: the hand-written kernels and plain PyTorch train every algorithm alike.

A few updates of each algorithm on episodes of the small predator-prey and of SMAC-lite, once with
``nn.kernels=fused`` and once with ``nn.kernels=torch`` from the same networks and data: the losses
and the parameters agree to float32 rounding, the fused run calls the kernels and the torch run
calls none of them. Then the switch as configured: a run applies it, a typo fails fast, and it does
not change a run's identity.
"""

from __future__ import annotations

import copy

import pytest
import torch

from macpo.algos.base import LoopSettings
from macpo.algos.dop import DOP
from macpo.algos.fop import FOP
from macpo.algos.macpo import MACPO
from macpo.algos.qmix import QMIX
from macpo.algos.qplex import QPLEX
from macpo.algos.vdac import VDAC
from macpo.algos.wqmix import WQMIX
from macpo.config.checks import ConfigError, compose
from macpo.envs.predator_prey import PredatorPrey
from macpo.envs.smac import make_smac_env
from macpo.nn import central_q, kernels
from macpo.nn.kernels import gru, matmul, mixers
from macpo.replay.samplers.macpo import MacpoSampler
from macpo.replay.samplers.per import PerSampler
from macpo.replay.samplers.uniform import UniformSampler
from macpo.rollout import Collector, RandomPolicy
from macpo.runs.identity import run_identity
from tests.helpers import TINY

ENVS = {
    # conf/env/predator_prey_small.yaml
    "predator_prey_small": lambda: PredatorPrey(4, seed=0, grid_size=5, n_agents=2, n_prey=1, episode_limit=25),
    "smac_lite_3m": lambda: make_smac_env("3m", n_envs=4, seed=0),
}
ALGOS = {
    "qmix": lambda env, loop: QMIX(env, UniformSampler(), loop),
    "cw_qmix": lambda env, loop: WQMIX(env, PerSampler(), loop, weighting="cw"),
    "macpo": lambda env, loop: MACPO(env, MacpoSampler(), loop),
    "qplex": lambda env, loop: QPLEX(env, UniformSampler(), loop),
    "dop": lambda env, loop: DOP(env, PerSampler(), loop, critic_hidden_dim=32, on_buffer_size=8, on_batch_size=4),
    "fop": lambda env, loop: FOP(env, UniformSampler(), loop),
    "vdac": lambda env, loop: VDAC(env, UniformSampler(), loop),
}
UPDATES = 3


class KernelCalls:
    """Counts calls of every kernel entry point; ``forbid`` makes each raise instead."""

    def __init__(self, monkeypatch) -> None:
        self.count, self.forbidden = 0, False
        entries = [(gru._PackedGRU, "apply"), (gru._PackedRecurrence, "__init__"), (mixers._MonotonicMix, "apply"),
                   (mixers._CentralMLP, "apply"), (central_q, "central_rows"), (matmul._DataLinear, "apply"),
                   (matmul._OneDNNLinear, "apply")]  # fmt: skip
        for owner, name in entries:
            label = f"{getattr(owner, '__name__', owner)}.{name}"
            monkeypatch.setattr(owner, name, self.wrap(getattr(owner, name), label))

    def wrap(self, fn, label):
        def call(*args, **kwargs):
            if self.forbidden:
                raise AssertionError(f"nn.kernels=torch called the kernel {label}")
            self.count += 1
            return fn(*args, **kwargs)

        return call


def train(algo, batches, mode: str):
    """UPDATES updates of ``algo`` under ``nn.kernels=mode`` → the losses of each."""
    losses = []
    with kernels.using(mode):
        for i, batch in enumerate(batches):
            torch.manual_seed(100 + i)
            out = algo.update(batch, torch.linspace(0.5, 1.5, batch["filled"].shape[0]))
            losses.append(out.loss.detach())
    return torch.stack(losses)


@pytest.fixture(scope="module", params=list(ENVS))
def played(request):
    """(env, UPDATES batches of random-policy episodes)."""
    torch.manual_seed(0)
    env = ENVS[request.param]()
    collector = Collector(env)
    return env, [collector.run(RandomPolicy(), seed=i)[0] for i in range(UPDATES)]


@pytest.mark.parametrize("algo_name", list(ALGOS))
def test_fused_and_torch_kernels_train_alike(algo_name, played, monkeypatch):
    env, batches = played
    torch.manual_seed(0)
    algo = ALGOS[algo_name](env, LoopSettings(t_max=10_000))
    if isinstance(algo, DOP):
        for batch in batches:
            algo.recent.insert(batch)
    twin = copy.deepcopy(algo)
    calls = KernelCalls(monkeypatch)
    fused = train(algo, batches, "fused")
    assert calls.count > 0, "nn.kernels=fused ran no kernel"
    calls.forbidden = True
    plain = train(twin, batches, "torch")
    torch.testing.assert_close(fused, plain, rtol=1e-4, atol=1e-5)
    for (name, p), q in zip(algo.named_parameters(), twin.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-4, atol=2e-5, msg=lambda m, k=name: f"{k}: {m}")


def test_acting_runs_no_kernel_with_torch(monkeypatch):
    """The Collector's policies step the agents through nn.GRU too."""
    env = ENVS["predator_prey_small"]()
    algo = QMIX(env, UniformSampler(), LoopSettings(t_max=100))
    calls = KernelCalls(monkeypatch)
    calls.forbidden = True
    with kernels.using("torch"):
        Collector(env).run(algo.explore_policy(), seed=0)


def test_a_run_applies_the_configured_kernels(tmp_path):
    from macpo.runs.lifecycle import build_run

    cfg = compose([*TINY, "logger.enabled=false", "nn.kernels=torch"])
    with kernels.using("fused"):
        build_run(cfg, "identity", tmp_path, "", None)
        assert kernels.mode() == "torch"
    assert kernels.mode() == "fused"


def test_the_switch_is_checked_and_leaves_the_identity_alone():
    with pytest.raises(ConfigError, match="nn.kernels: expected one of fused, torch, got cuda"):
        compose([*TINY, "nn.kernels=cuda"])
    with pytest.raises(ValueError, match="nn.kernels must be one of"):
        kernels.use("cuda")
    # the same networks, results to float rounding: a run may be resumed or skipped across the setting
    assert run_identity(compose([*TINY, "nn.kernels=torch"])) == run_identity(compose(TINY))


def test_kernel_cache_caps_are_set_on_request_unless_the_user_set_them(monkeypatch):
    for name in kernels.KERNEL_CACHE_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("LRU_CACHE_CAPACITY", "7")
    import os

    kernels.cap_kernel_caches()
    assert os.environ["ONEDNN_PRIMITIVE_CACHE_CAPACITY"] == str(kernels.KERNEL_CACHE_CAPACITY)
    assert os.environ["LRU_CACHE_CAPACITY"] == "7"
