"""The algorithm layer: required methods, the sampler's weights, the data path, several optimisers,
the non-finite guard, the policies the Collector plays."""

import pytest
import pytorch_lightning as pl
import torch
from omegaconf import OmegaConf

from macpo.algos.base import LoopSettings, LossOutput, MarlAlgorithm, OptimiserSpec, PackedBatch
from macpo.algos.data_path import OnPolicyDataModule, make_datamodule
from macpo.algos.guard import NonFiniteUpdateError
from macpo.algos.policy import CategoricalPolicy, EpsilonGreedyPolicy, available_softmax
from macpo.algos.qmix import QMIX
from macpo.algos.value_based import ValueDecomposition
from macpo.algos.wqmix import WQMIX
from macpo.nn.agent import RNNAgent
from macpo.replay.datamodule import ReplayDataModule
from macpo.replay.samplers.per import PerSampler
from macpo.replay.samplers.uniform import UniformSampler
from macpo.rollout import Collector
from macpo.train import ConfigError, validate
from tests.helpers import TINY, small_env


class ToyActorCritic(MarlAlgorithm):
    """A minimal on-policy actor-critic (REINFORCE with a state-value baseline), two optimisers."""

    on_policy = True
    provides = frozenset({"td"})

    def __init__(self, train_env, sampler, loop, name="toy", lr=1e-2):
        super().__init__(train_env, sampler, loop)
        n, a, o, s = self.info.n_agents, self.info.n_actions, self.info.obs_shape, self.info.state_shape
        self.actor = RNNAgent(o + a + n, a, 16)
        self.critic = torch.nn.Linear(s, 1)
        self.lr = lr

    def explore_policy(self):
        return CategoricalPolicy(self.actor, self.info.n_agents, self.info.n_actions)

    def greedy_policy(self):
        return CategoricalPolicy(self.actor, self.info.n_agents, self.info.n_actions, greedy=True)

    def optimisers(self):
        return {"actor": OptimiserSpec(list(self.actor.parameters()), self.lr),
                "critic": OptimiserSpec(list(self.critic.parameters()), self.lr)}  # fmt: skip

    def learn(self, batch, is_weights):
        ep = PackedBatch.of(batch, self.info.n_actions)
        returns = ep.lambda_returns(torch.zeros_like(ep.reward), 1.0, 1.0)  # [R] undiscounted return-to-go
        value = self.critic(ep.state_tr.float()).squeeze(-1)  # [R]
        adv = (returns - value).detach()
        weights, signals = self.weigh(ep, is_weights, td=value - returns)
        logits = self.actor.forward_packed(ep.inputs, ep.steps)[ep.tr]  # [R, N, A]
        logp = torch.log_softmax(logits.masked_fill(~ep.avail[ep.tr], -1e9), -1)
        logp_taken = logp.gather(-1, ep.taken[..., None]).squeeze(-1).sum(-1)  # [R]
        actor_loss = -ep.mean(weights * adv * logp_taken)
        critic_loss = ep.mean(weights * (value - returns).pow(2))
        self.optimise("actor", actor_loss)
        self.optimise("critic", critic_loss)
        return LossOutput(actor_loss + critic_loss, signals, {"actor_loss": actor_loss, "critic_loss": critic_loss})


def fit(algo, dm, t_max):
    algo.loop.t_max = t_max
    trainer = pl.Trainer(max_epochs=-1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, accelerator="cpu", devices=1)  # fmt: skip
    trainer.fit(algo, datamodule=dm)
    return trainer


# ---- required methods -------------------------------------------------------------------------
def test_missing_required_method_fails_at_class_creation():
    with pytest.raises(TypeError, match="does not implement learn"):

        class NoLearn(MarlAlgorithm):  # noqa: F841
            def explore_policy(self): ...
            def greedy_policy(self): ...
            def optimisers(self): ...

    with pytest.raises(TypeError, match="does not implement targets"):

        class NoTargets(ValueDecomposition):  # noqa: F841
            def forward_values(self, ep): ...

    class Intermediate(ValueDecomposition, abstract=True):  # an intermediate base may stay abstract
        def forward_values(self, ep): ...

    class Complete(Intermediate):
        def targets(self, ep, fwd): ...

    assert Complete.on_policy is False


def test_learn_that_skips_the_sampler_is_an_error():
    class Forgetful(ToyActorCritic):
        def learn(self, batch, is_weights):
            return LossOutput(torch.zeros(()))

    algo = Forgetful(small_env(), UniformSampler(), LoopSettings(t_max=100))
    episodes, _ = Collector(algo.env).run(algo.explore_policy(), seed=1)
    with pytest.raises(RuntimeError, match="never called self.weigh"):
        algo.update(episodes, torch.ones(4))


# ---- the data path -------------------------------------------------------------------------------
def test_on_policy_refuses_a_replay_sampler_before_compute(compose_cfg):
    env = small_env()
    with pytest.raises(ValueError, match="on-policy.*use sampler=uniform"):
        ToyActorCritic(env, PerSampler(), LoopSettings(t_max=100))
    with pytest.raises(ValueError, match="on-policy"):
        make_datamodule(ToyActorCritic, env.env_info, PerSampler(), 64, 8)
    assert isinstance(make_datamodule(ToyActorCritic, env.env_info, UniformSampler(), 64, 8), OnPolicyDataModule)
    assert isinstance(make_datamodule(QMIX, env.env_info, PerSampler(), 64, 8), ReplayDataModule)
    cfg = compose_cfg([*TINY, "sampler=per"])
    cfg.algo = OmegaConf.create({"_target_": f"{__name__}.ToyActorCritic", "name": "toy"})  # only its own keys
    with pytest.raises(ConfigError, match="on-policy"):
        validate(cfg)


def test_on_policy_trains_on_each_collected_batch_once_with_two_optimisers():
    env = small_env()
    algo = ToyActorCritic(env, UniformSampler(), LoopSettings(t_max=100, log_interval=10**6))
    dm = make_datamodule(ToyActorCritic, env.env_info, algo.sampler, 64, 8)
    seen = []
    original = dm.sample

    def spy(progress=0.0):
        idx, batch, isw = original(progress)
        seen.append(batch["obs"])
        assert not dm.ready()  # taken once
        return idx, batch, isw

    dm.sample = spy
    actor0 = [p.clone() for p in algo.actor.parameters()]
    critic0 = [p.clone() for p in algo.critic.parameters()]
    fit(algo, dm, t_max=100)
    assert algo.counters["updates"] == len(seen) == algo.counters["episodes"] // 4  # one update per batch
    assert all(b.shape[0] == 4 for b in seen)  # the batch_size_run episodes just played, no buffer
    assert any(not torch.equal(a, b) for a, b in zip(actor0, algo.actor.parameters()))
    assert any(not torch.equal(a, b) for a, b in zip(critic0, algo.critic.parameters()))
    assert {"grad_norm/actor", "grad_norm/critic", "actor_loss"} <= set(algo.last_logged)


# ---- the non-finite guard ------------------------------------------------------------------------------
def test_non_finite_loss_or_gradient_skips_the_step_and_a_streak_raises():
    algo = QMIX(small_env(), UniformSampler(), LoopSettings(t_max=100, max_nonfinite_streak=3))
    episodes, _ = Collector(algo.env).run(algo.explore_policy(), seed=2)
    isw = torch.ones(4)
    poisoned = dict(episodes, reward=torch.full_like(episodes["reward"], float("nan")))
    params = lambda: [p.detach().clone() for p in algo.online_parameters()]  # noqa: E731

    before = params()
    algo.update(poisoned, isw)  # NaN loss
    assert all(torch.equal(a, b) for a, b in zip(before, params()))
    assert algo.counters["skipped_updates"] == 1 and algo.counters["nonfinite_streak"] == 1

    hook = algo.mixer.hyper_b1.weight.register_hook(lambda g: g * float("inf"))  # finite loss, Inf gradient
    algo.update(episodes, isw)
    hook.remove()
    assert all(torch.equal(a, b) for a, b in zip(before, params()))
    assert algo.counters["skipped_updates"] == 2

    algo.update(episodes, isw)  # a finite update steps and ends the streak
    assert any(not torch.equal(a, b) for a, b in zip(before, params()))
    assert algo.counters["nonfinite_streak"] == 0 and algo.counters["skipped_updates"] == 2

    algo.counters["env_steps"] = 1234
    algo.update(poisoned, isw)
    algo.update(poisoned, isw)
    with pytest.raises(NonFiniteUpdateError) as err:
        algo.update(poisoned, isw)
    assert err.value.step == 1234 and err.value.streak == 3
    assert algo.counters["skipped_updates"] == 5


def test_skipped_updates_are_logged():
    algo = QMIX(small_env(), UniformSampler(), LoopSettings(t_max=100))
    algo.counters["skipped_updates"] = 2
    algo._accumulate({"x": torch.ones(1)})
    algo.flush_logs()
    assert algo.last_logged["guard/skipped_updates"] == 2.0


# ---- WQMIX's targets ---------------------------------------------------------------------------------
def test_wqmix_keeps_only_the_targets_it_reads_and_honours_double_q():
    env = small_env()
    double = WQMIX(env, UniformSampler(), LoopSettings(t_max=100), double_q=True)
    single = WQMIX(env, UniformSampler(), LoopSettings(t_max=100), double_q=False)
    assert not hasattr(double, "target_mixer") and not hasattr(double, "target_agent")
    assert hasattr(single, "target_agent") and not hasattr(single, "target_mixer")
    episodes, _ = Collector(env).run(single.explore_policy(), seed=4)
    isw = torch.ones(4)

    def target_mean(algo):
        return algo.compute_loss(episodes, isw).metrics["target_mean"]

    y_single, y_double = target_mean(single), target_mean(double)
    for p in single.target_agent.parameters():  # a different target agent picks other greedy actions
        p.data.normal_(generator=torch.Generator().manual_seed(9))
    assert not torch.allclose(target_mean(single), y_single)
    with torch.no_grad():  # double-Q: the online agent picks, the target QMIX agent is never read
        double.agent.fc2.bias.add_(torch.arange(6.0) * 10)
    assert not torch.allclose(target_mean(double), y_double)


# ---- policies ----------------------------------------------------------------------------------------
def test_categorical_policy_samples_only_available_actions_and_greedy_takes_the_argmax():
    torch.manual_seed(0)
    actor = RNNAgent(5 + 3 + 2, 3, 8)
    with torch.no_grad():
        actor.fc2.weight.zero_()
        actor.fc2.bias.copy_(torch.tensor([0.0, 5.0, 1.0]))  # action 1 is the actor's favourite
    avail = torch.tensor([[True, False, True], [True, True, True]]).expand(64, 2, 3)
    obs = torch.zeros(64, 2, 5)
    sampler = CategoricalPolicy(actor, 2, 3)
    sampler.reset(64)
    acts = sampler.act(obs, avail)
    assert (acts[:, 0] != 1).all()  # never the unavailable action
    assert (acts[:, 1] == 1).float().mean() > 0.8
    greedy = CategoricalPolicy(actor, 2, 3, greedy=True)
    greedy.reset(64)
    assert greedy.act(obs, avail).tolist() == [[2, 1]] * 64
    probs = available_softmax(torch.tensor([0.0, 5.0, 1.0]), torch.tensor([True, False, True]), epsilon=0.5)
    assert probs[1] == 0 and torch.isclose(probs.sum(), torch.tensor(1.0)) and probs[0] > 0.25


def test_collector_plays_any_policy():
    env = small_env()
    actor = RNNAgent(env.env_info.obs_shape + 6 + 2, 6, 8)
    for policy in (CategoricalPolicy(actor, 2, 6), EpsilonGreedyPolicy(actor, 2, 6, lambda: 0.3)):
        episodes, stats = Collector(env).run(policy, seed=0)
        taken = episodes["actions"][:, :-1]
        avail = episodes["avail_actions"][:, :-1].gather(-1, taken[..., None]).squeeze(-1)
        assert avail[episodes["filled"][:, :-1]].all()
