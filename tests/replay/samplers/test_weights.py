"""Per-timestep weights of every sampler (reweight mode), π_a, diagnostics, configs and bad input."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from macpo.config.paths import CONF_DIR
from macpo.replay.samplers import (
    DisCorSampler,
    MacpoApproxSampler,
    MacpoSampler,
    PerSampler,
    PserSampler,
    RemernSampler,
    UniformSampler,
    taken_action_probs,
)
from macpo.replay.signals import Signals

CONF_SAMPLER = CONF_DIR / "sampler"

# ---- a hand-made batch: B=2 episodes, T=3 steps, N=2 agents; episode 1 is padded at t=2 ---------
MASK = [[1, 1, 1], [1, 1, 0]]
TD = [[0.5, -2.0, 1.0], [-0.25, 3.0, 99.0]]
Q_TOT = [[1.0, 0.0, 2.0], [0.5, -1.0, 50.0]]
Q_STAR = [[1.5, 0.0, 1.0], [0.5, 1.0, -50.0]]
PI = [[[0.9, 0.8], [0.1, 1.0], [0.5, 0.5]], [[1.0, 1.0], [0.0, 1.0], [0.3, 0.3]]]
VALID = [(b, t) for b in range(2) for t in range(3) if MASK[b][t]]


def assert_weights(w: torch.Tensor, expected: list[list[float]], rel: float = 1e-9, abs: float = 0.0) -> None:
    torch.testing.assert_close(w, torch.tensor(expected, dtype=w.dtype), rtol=rel, atol=abs)


def hand_batch(dtype=torch.float32) -> Signals:
    return Signals(
        mask=torch.tensor(MASK, dtype=dtype),
        td=torch.tensor(TD, dtype=dtype),
        q_tot=torch.tensor(Q_TOT, dtype=dtype),
        q_star=torch.tensor(Q_STAR, dtype=dtype),
        pi=torch.tensor(PI, dtype=dtype),
    )


def bellman(b, t):
    return abs(TD[b][t])


def value(b, t):
    return math.exp(-abs(Q_TOT[b][t] - Q_STAR[b][t]))


def f_two_agents(b, t):
    p1, p2 = PI[b][t]
    return 1 + p2 + p1 - 2 * p1 * p2  # 1 + Σ_i Π_{j≠i} π_j − n Π π for n = 2


def remern_term(b, t):
    p1, p2 = PI[b][t]
    return 2 - p1 * p2


def approx_level(b, t):
    q = f_two_agents(b, t) - 1
    return 0.75 if q >= 2 / 3 else (0.5 if q >= 1 / 3 else 0.25)


def normalised(raw: dict) -> list[list[float]]:
    """Divide by the mean over real timesteps; padding weight 0."""
    mean = sum(raw.values()) / len(raw)
    return [[raw[(b, t)] / mean if (b, t) in raw else 0.0 for t in range(3)] for b in range(2)]


HAND_RAW = {
    "uniform": lambda b, t: 1.0,
    "per": lambda b, t: bellman(b, t) ** 0.6,
    "discor": lambda b, t: bellman(b, t) * value(b, t),
    "remern": lambda b, t: bellman(b, t) * value(b, t) * remern_term(b, t),
    "macpo": lambda b, t: bellman(b, t) * value(b, t) * f_two_agents(b, t),
    "macpo_approx": lambda b, t: bellman(b, t) * value(b, t) * approx_level(b, t),
    "macpo_no_bellman": lambda b, t: value(b, t) * f_two_agents(b, t),
    "macpo_no_value": lambda b, t: bellman(b, t) * f_two_agents(b, t),
    "macpo_no_joint": lambda b, t: bellman(b, t) * value(b, t),
}

SAMPLERS = {
    "uniform": lambda **kw: UniformSampler(**kw),
    "per": lambda **kw: PerSampler(**kw),
    "discor": lambda **kw: DisCorSampler(**kw),
    "remern": lambda **kw: RemernSampler(**kw),
    "macpo": lambda **kw: MacpoSampler(**kw),
    "macpo_approx": lambda **kw: MacpoApproxSampler(**kw),
    "macpo_no_bellman": lambda **kw: MacpoSampler(use_bellman=False, **kw),
    "macpo_no_value": lambda **kw: MacpoSampler(use_value=False, **kw),
    "macpo_no_joint": lambda **kw: MacpoSampler(use_joint=False, **kw),
}


@pytest.mark.parametrize("name", sorted(HAND_RAW))
def test_weights_on_hand_made_batch(name):
    raw = {(b, t): HAND_RAW[name](b, t) for b, t in VALID}
    sampler = SAMPLERS[name]()
    w = sampler.loss_weights(hand_batch(torch.float64))
    assert w.shape == (2, 3)
    assert_weights(w, normalised(raw))
    assert w.requires_grad is False


@pytest.mark.parametrize("name", sorted(HAND_RAW))
def test_raw_weights_are_the_unnormalised_product(name):
    sampler = SAMPLERS[name](normalize=False)
    w = sampler.loss_weights(hand_batch(torch.float64))
    expected = [[HAND_RAW[name](b, t) if MASK[b][t] else 0.0 for t in range(3)] for b in range(2)]
    assert_weights(w, expected)


def test_pser_propagates_priority_backwards_within_the_window():
    mask = torch.tensor([[1.0, 1.0, 1.0, 1.0], [1.0, 1.0, 0.0, 0.0]])
    td = torch.tensor([[0.1, 0.2, 5.0, 0.0], [0.25, 3.0, 50.0, 50.0]])
    signals = Signals(mask=mask, td=td)
    # p_t = max_k 0.4^k |δ_{t+k}|, by hand; the padded 50s of episode 1 must not leak backwards
    wide = [[0.16 * 5.0, 0.4 * 5.0, 5.0, 0.0], [0.4 * 3.0, 3.0, 0, 0]]
    narrow = [[0.1, 0.4 * 5.0, 5.0, 0.0], [0.4 * 3.0, 3.0, 0, 0]]
    for window, expected in ((5, wide), (2, narrow)):
        w = PserSampler(window=window, decay=0.4, alpha=1.0, normalize=False).loss_weights(signals)
        assert_weights(w, expected, rel=1e-6, abs=1e-6)


def test_macpo_equals_remern_for_one_agent():
    gen = torch.Generator().manual_seed(0)
    signals = Signals(
        mask=torch.ones(4, 6),
        td=torch.randn(4, 6, generator=gen),
        q_tot=torch.randn(4, 6, generator=gen),
        q_star=torch.randn(4, 6, generator=gen),
        pi=torch.rand(4, 6, 1, generator=gen),
    )
    assert torch.allclose(MacpoSampler().loss_weights(signals), RemernSampler().loss_weights(signals))
    # ... but not for several agents (so the comparison above can fail)
    signals.pi = torch.rand(4, 6, 3, generator=gen)
    assert not torch.allclose(MacpoSampler().loss_weights(signals), RemernSampler().loss_weights(signals))


def test_normalisation_ignores_padding():
    signals = hand_batch()
    w = MacpoSampler().loss_weights(signals)
    changed = hand_batch()
    changed.td[1, 2], changed.q_tot[1, 2], changed.pi[1, 2] = 1e30, float("nan"), float("nan")
    w_changed = MacpoSampler().loss_weights(changed)
    assert torch.equal(w, w_changed)
    valid = signals.mask.bool()
    assert w[valid].mean().item() == pytest.approx(1.0, rel=1e-6)
    assert (w[~valid] == 0).all()


def test_normalised_weights_survive_a_common_underflowing_scale():
    """exp(−|Q_tot − Q*|) ≈ e^-200 everywhere underflows in float32; normalisation still sees the ratios."""
    signals = Signals(
        mask=torch.ones(1, 3),
        td=torch.tensor([[1.0, 2.0, 3.0]]),
        q_tot=torch.full((1, 3), 200.0),
        q_star=torch.zeros(1, 3),
    )
    w = DisCorSampler().loss_weights(signals)
    assert_weights(w, [[0.5, 1.0, 1.5]], rel=1e-5)


@pytest.mark.parametrize("name", sorted(HAND_RAW))
@pytest.mark.parametrize("normalize", [True, False])
def test_no_nan_or_inf_in_extreme_batches(name, normalize):
    gen = torch.Generator().manual_seed(1)
    b, t, n = 8, 20, 16
    mask = torch.ones(b, t)
    mask[:, 15:] = 0
    base = Signals(
        mask=mask,
        td=torch.randn(b, t, generator=gen),
        q_tot=torch.randn(b, t, generator=gen),
        q_star=torch.randn(b, t, generator=gen),
        pi=torch.rand(b, t, n, generator=gen),
    )
    underflow = Signals(mask=mask, td=base.td, q_tot=base.q_tot, q_star=base.q_star, pi=base.pi * 1e-38)
    underflow.pi[:, :, 0] = 0.0
    huge_q = Signals(
        mask=mask,
        td=base.td * 1e4,
        q_tot=torch.full((b, t), 1e4),
        q_star=torch.full((b, t), -1e4),
        pi=base.pi,
    )
    zero_td = Signals(mask=mask, td=torch.zeros(b, t), q_tot=base.q_tot, q_star=base.q_star, pi=base.pi)
    for signals in (underflow, huge_q, zero_td):
        w = SAMPLERS[name](normalize=normalize).loss_weights(signals)
        assert torch.isfinite(w).all()
        assert (w >= 0).all()
        if normalize:
            assert w[mask.bool()].mean().item() == pytest.approx(1.0, rel=1e-5)
            assert (w[mask.bool()] > 0).all()  # clamped ≥ eps: no real timestep is dropped entirely


def test_zero_td_everywhere_gives_uniform_normalised_weights():
    signals = hand_batch()
    signals.td = torch.zeros(2, 3)
    w = MacpoSampler().loss_weights(signals)
    assert w.tolist() == [[1.0, 1.0, 1.0], [1.0, 1.0, 0.0]]


def test_alpha_is_the_exponent_on_the_score():
    signals = hand_batch(torch.float64)
    w1 = MacpoSampler(alpha=1.0, normalize=False).loss_weights(signals)
    w_half = MacpoSampler(alpha=0.5, normalize=False).loss_weights(signals)
    assert torch.allclose(w_half, w1.sqrt())
    assert (UniformSampler(alpha=3.0).loss_weights(signals) == signals.mask).all()


def test_needs_shrink_with_the_ablations():
    assert UniformSampler().needs == frozenset()
    assert PerSampler().needs == PserSampler().needs == {"td"}
    assert DisCorSampler().needs == {"td", "q_star"}
    assert (
        RemernSampler().needs == MacpoSampler().needs == MacpoApproxSampler().needs == {"td", "q_star", "pi"}
    )
    assert MacpoSampler(use_bellman=False).needs == {"q_star", "pi"}
    assert MacpoSampler(use_value=False).needs == {"td", "pi"}
    assert MacpoSampler(use_joint=False).needs == {"td", "q_star"}


def test_missing_signal_is_a_clear_error():
    signals = hand_batch()
    signals.q_star = None
    with pytest.raises(ValueError, match="q_star"):
        MacpoSampler().loss_weights(signals)
    signals.q_star, signals.pi = hand_batch().q_star, None
    with pytest.raises(ValueError, match="pi"):
        RemernSampler().loss_weights(signals)
    MacpoSampler(use_joint=False).loss_weights(signals)  # the ablation does not need π


@pytest.mark.parametrize(
    ("make", "option"),
    [
        (lambda: MacpoSampler(mode="sometimes"), "sampler.mode"),
        (lambda: PerSampler(alpha=-0.1), "sampler.alpha"),
        (lambda: PerSampler(alpha=float("nan")), "sampler.alpha"),
        (lambda: PerSampler(beta=1.5), "sampler.beta"),
        (lambda: PerSampler(beta_end=-1.0), "sampler.beta_end"),
        (lambda: PerSampler(episode_priority="median"), "sampler.episode_priority"),
        (lambda: PerSampler(eps=0.0), "sampler.eps"),
        (lambda: MacpoSampler(temperature=0.0), "sampler.temperature"),
        (lambda: MacpoSampler(pi_over="some"), "sampler.pi_over"),
        (lambda: MacpoSampler(normalize="yes"), "sampler.normalize"),
        (lambda: MacpoApproxSampler(levels=[0.75, 0.5, 0.25]), "sampler.levels"),
        (lambda: MacpoApproxSampler(cut_points=[0.9, 0.1]), "sampler.cut_points"),
        (lambda: PserSampler(window=0), "sampler.window"),
        (lambda: PserSampler(decay=2.0), "sampler.decay"),
    ],
)
def test_invalid_options_raise_value_error(make, option):
    with pytest.raises(ValueError, match=option):
        make()


# ---- Boltzmann probabilities of the taken actions -------------------------------------------------


def test_taken_action_probs_softmax_over_available_actions():
    qs = torch.tensor([[[[1.0, 2.0, 3.0, 4.0], [0.0, 0.0, 0.0, 0.0]]]])  # [1, 1, 2, 4]
    actions = torch.tensor([[[1, 3]]])  # [1, 1, 2]
    avail = torch.tensor([[[[True, True, False, True], [False, True, True, True]]]])
    pi = MacpoSampler(temperature=1.0).taken_action_probs(qs, actions, avail)
    e = math.e
    assert pi.shape == (1, 1, 2)
    assert pi[0, 0, 0].item() == pytest.approx(e**2 / (e**1 + e**2 + e**4), rel=1e-6)
    assert pi[0, 0, 1].item() == pytest.approx(1 / 3, rel=1e-6)
    pi_all = MacpoSampler(pi_over="all").taken_action_probs(qs, actions, avail)
    assert pi_all[0, 0, 0].item() == pytest.approx(e**2 / (e + e**2 + e**3 + e**4), rel=1e-6)
    assert pi_all[0, 0, 1].item() == pytest.approx(1 / 4, rel=1e-6)
    hot = MacpoSampler(temperature=2.0).taken_action_probs(qs, actions, avail)
    assert hot[0, 0, 0].item() == pytest.approx(e**1 / (e**0.5 + e**1 + e**2), rel=1e-6)


def test_taken_action_probs_are_nan_free_in_extremes():
    gen = torch.Generator().manual_seed(0)
    b, t, n, a = 4, 5, 3, 12
    qs = torch.randn(b, t, n, a, generator=gen) * 1e4  # huge utilities
    actions = torch.randint(0, a, (b, t, n), generator=gen)
    avail = torch.zeros(b, t, n, a, dtype=torch.bool)
    avail[..., 0] = True  # only no-op available: most actions masked
    avail.scatter_(-1, actions[..., None], True)
    avail[0, 0] = False  # a padded step: no action available at all
    pi = taken_action_probs(qs, actions, avail, temperature=0.01)
    assert torch.isfinite(pi).all() and (pi >= 0).all() and (pi <= 1).all()
    assert (pi == 0).any()  # underflow happens (huge gaps) and gives exact zeros, not NaN
    f = MacpoSampler().loss_weights(
        Signals(
            mask=torch.ones(b, t), td=torch.ones(b, t), q_tot=torch.ones(b, t), q_star=torch.ones(b, t), pi=pi
        )
    )
    assert torch.isfinite(f).all()
    only_noop = torch.zeros(1, 1, 1, a, dtype=torch.bool)
    only_noop[..., 0] = True
    unavailable_taken = taken_action_probs(qs[:1, :1, :1], torch.full((1, 1, 1), 3), only_noop)
    assert (unavailable_taken == 0).all()


def test_taken_action_probs_accepts_trailing_action_dim_and_needs_avail():
    qs = torch.randn(2, 3, 4, 5)
    actions = torch.randint(0, 5, (2, 3, 4))
    avail = torch.ones(2, 3, 4, 5, dtype=torch.bool)
    assert torch.equal(
        taken_action_probs(qs, actions, avail), taken_action_probs(qs, actions[..., None], avail)
    )
    with pytest.raises(ValueError, match="avail"):
        taken_action_probs(qs, actions, None)
    assert torch.isfinite(taken_action_probs(qs, actions, None, over="all")).all()


# ---- diagnostics ---------------------------------------------------------------------------------


def test_diagnostics_report_each_factor_and_the_weights():
    sampler = MacpoSampler()
    assert sampler.diagnostics() == {}
    w = sampler.loss_weights(hand_batch(torch.float64))
    d = sampler.diagnostics()
    bell = [bellman(b, t) for b, t in VALID]
    mean_bell = sum(bell) / len(bell)
    assert d["factor/bellman/mean"] == pytest.approx(mean_bell)
    assert d["factor/bellman/max"] == pytest.approx(max(bell))
    assert d["factor/bellman/std"] == pytest.approx(
        math.sqrt(sum((x - mean_bell) ** 2 for x in bell) / len(bell))
    )
    assert d["factor/value/max"] == pytest.approx(max(value(b, t) for b, t in VALID))
    assert d["factor/joint/mean"] == pytest.approx(sum(f_two_agents(b, t) for b, t in VALID) / len(VALID))
    vals = w[hand_batch().mask.bool()]
    assert d["weights/max"] == pytest.approx(vals.max().item())
    assert d["weights/mean"] == pytest.approx(1.0)
    ess = (vals.sum() ** 2 / (vals.pow(2).sum() * vals.numel())).item()
    assert d["weights/ess_frac"] == pytest.approx(ess)
    assert 0 < ess < 1
    ablated = MacpoSampler(use_joint=False)
    ablated.loss_weights(hand_batch())
    assert not any(k.startswith("factor/joint") for k in ablated.diagnostics())
    uniform = UniformSampler()
    uniform.loss_weights(hand_batch())
    assert uniform.diagnostics()["weights/ess_frac"] == pytest.approx(1.0)


# ---- the Hydra configs -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def config_dir(tmp_path_factory) -> Path:
    """A throwaway primary config (algo before sampler, like train.yaml) around the real conf/sampler."""
    root = tmp_path_factory.mktemp("conf")
    (root / "algo").mkdir()
    (root / "algo" / "fake.yaml").write_text("agent_q_clamp: null\nlr: 0.001\n")
    (root / "sampler").symlink_to(CONF_SAMPLER, target_is_directory=True)
    (root / "train.yaml").write_text("defaults:\n  - algo: fake\n  - sampler: macpo\n  - _self_\n")
    return root


EXPECTED_CLASSES = {
    "uniform": UniformSampler,
    "per": PerSampler,
    "pser": PserSampler,
    "discor": DisCorSampler,
    "remern": RemernSampler,
    "macpo": MacpoSampler,
    "macpo_approx": MacpoApproxSampler,
    "macpo_no_bellman": MacpoSampler,
    "macpo_no_value": MacpoSampler,
    "macpo_no_joint": MacpoSampler,
    "macpo_reference": MacpoSampler,
}


def test_every_sampler_yaml_is_listed_here():
    assert {p.stem for p in CONF_SAMPLER.glob("*.yaml")} - {"base"} == set(EXPECTED_CLASSES)


def test_sampler_yamls_hold_only_what_is_new():
    """Shared keys live in base.yaml; every other yaml extends base or another sampler and restates nothing."""
    from omegaconf import OmegaConf

    def values(name):  # a yaml's own keys, without its defaults list; macpo_reference is a global preset
        raw = OmegaConf.to_container(OmegaConf.load(CONF_SAMPLER / f"{name}.yaml"))
        return raw.pop("defaults", []), raw.get("sampler", raw) if name == "macpo_reference" else raw

    def resolved(name):  # what the yaml inherits, then its own keys
        defaults, own = values(name)
        out = {}
        for parent in defaults:
            parent = parent.split("@")[0]
            if parent != "_self_" and not parent.startswith("/"):
                out.update(resolved(parent))
        return {**out, **own}

    base_defaults, base = values("base")
    assert {"mode", "normalize", "alpha", "beta", "beta_end", "episode_priority", "eps"} <= set(base)
    assert "_target_" not in base  # not a sampler by itself
    for name in EXPECTED_CLASSES:
        defaults, own = values(name)
        parents = [d.split("@")[0] for d in defaults if d != "_self_" and not d.startswith("/")]
        assert parents and parents[0] in {"base", *EXPECTED_CLASSES}, f"{name} extends no sampler yaml"
        inherited = resolved(parents[0])
        restated = {k for k, v in own.items() if k in inherited and inherited[k] == v}
        assert not restated, f"{name}.yaml restates {sorted(restated)} from {parents[0]}.yaml"
    assert values("macpo_approx")[0][0] == "macpo" and values("macpo_reference")[0][0] == "macpo@sampler"


@pytest.mark.parametrize("name", sorted(EXPECTED_CLASSES))
def test_sampler_configs_compose_and_instantiate(config_dir, name):
    with initialize_config_dir(config_dir=str(config_dir), version_base="1.3"):
        cfg = compose("train", overrides=[f"sampler={name}", "sampler.mode=resample"])
    for key in ("_target_", "name", "mode", "normalize", "alpha", "beta"):
        assert key in cfg.sampler, key
    assert cfg.sampler.name == name
    sampler = instantiate(cfg.sampler)
    assert type(sampler) is EXPECTED_CLASSES[name]
    assert sampler.mode == "resample" and sampler.name == name
    assert sampler.alpha == (0.6 if name in ("per", "pser") else 1.0)
    assert sampler.beta == 0.4 and sampler.beta_end == 1.0
    if name.startswith("macpo_no_"):
        dropped = name.removeprefix("macpo_no_")
        assert getattr(sampler, f"use_{dropped}") is False
        assert sampler.needs == {"td", "q_star", "pi"} - {
            {"bellman": "td", "value": "q_star", "joint": "pi"}[dropped]
        }
    expected_clamp = [-5.0, 2.0] if name == "macpo_reference" else None
    assert cfg.algo.agent_q_clamp == expected_clamp
    assert cfg.algo.lr == 0.001  # the preset overrides one algo key, not the whole group


def test_reference_preset_reproduces_the_public_code(config_dir):
    with initialize_config_dir(config_dir=str(config_dir), version_base="1.3"):
        sampler = instantiate(compose("train", overrides=["sampler=macpo_reference"]).sampler)
    assert sampler.pi_over == "all" and sampler.normalize is False and sampler.mode == "reweight"
    # the public code's weight: |δ| · exp(−|Q_tot − Q*|) · (1 + Σ_i Π π / π_i − n Π π), raw
    signals = hand_batch(torch.float64)
    signals.pi = signals.pi.clamp_min(0.05)  # the public code divides by π_i
    pi = signals.pi
    prod = pi.prod(-1)
    public = (
        signals.td.abs()
        * torch.exp(-(signals.q_tot - signals.q_star).abs())
        * (1 + (prod[..., None] / pi).sum(-1) - 2 * prod)
    )
    torch.testing.assert_close(sampler.loss_weights(signals), public * signals.mask, rtol=1e-9, atol=0.0)
