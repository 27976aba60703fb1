"""One source per hyperparameter: every algorithm key is typed once (its dataclass in
``macpo.config.schema``) and valued once (``conf/algo``), and each algorithm trains with exactly
the values its yaml gives; ``method=<algo>`` is ``algo=<algo>``; ``budget=paper`` holds only what
differs from ``train.yaml``; today's run identities stay what they were (finished runs are not redone).
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import pkgutil

import hydra
import pytest
import torch
from omegaconf import MISSING, OmegaConf

import macpo.algos
from macpo.algos.base import LoopSettings, MarlAlgorithm
from macpo.config import ConfigError, algo_preset, compose, schema
from macpo.config.paths import CONF_DIR
from macpo.runs.identity import run_identity
from macpo.runs.validation import algorithm_classes
from tests.helpers import small_env

ALGOS = algorithm_classes()  # conf/algo option → class
#: the yamls of conf/algo that hold what a family of algorithms shares → the dataclass they type
FAMILIES = {"base": schema.AlgoConfig, "value_based": schema.ValueBasedConfig,
            "actor_critic": schema.ActorCriticConfig}  # fmt: skip
BUDGETS = ("default", "demo", "paper", "results", "smoke")


def config_classes() -> set[type]:
    """Every dataclass an algorithm's config is built from: the config classes, their bases and mixins."""
    return {k for cls in ALGOS.values() for k in cls.config_class.__mro__ if dataclasses.is_dataclass(k)}


def algorithm_classes_in_code() -> set[type]:
    """Every MarlAlgorithm subclass defined in macpo.algos (abstract bases included)."""
    for info in pkgutil.iter_modules(macpo.algos.__path__):
        importlib.import_module(f"macpo.algos.{info.name}")
    found, todo = set(), [MarlAlgorithm]
    while todo:
        for sub in todo.pop().__subclasses__():
            if sub.__module__.startswith("macpo.algos.") and sub not in found:
                found.add(sub)
                todo.append(sub)
    return found


def raw(name: str) -> tuple[list, dict]:
    """A conf/algo yaml as written: (its defaults list, its own algo keys)."""
    data = OmegaConf.to_container(OmegaConf.load(CONF_DIR / "algo" / f"{name}.yaml"))
    return data.get("defaults", []), data.get("algo", {})


def parents(name: str) -> list[str]:
    """The conf/algo yamls ``name`` extends (its defaults entries in the same group)."""
    return [d for d in raw(name)[0] if isinstance(d, str) and d != "_self_" and "/" not in d]


def inherited(name: str) -> dict:
    """The algo values ``name`` gets from the yamls it extends (in their merge order)."""
    out = {}
    for parent in parents(name):
        out.update(inherited(parent))
        out.update(raw(parent)[1])
    return out


def chain(name: str) -> set[str]:
    return {name}.union(*(chain(p) for p in parents(name)))


# ---- typed once -------------------------------------------------------------------------------
def test_each_key_is_typed_in_one_dataclass_and_valued_in_none():
    declared: dict[str, list[str]] = {}
    for klass in config_classes():
        for name in vars(klass).get("__annotations__", {}):
            declared.setdefault(name, []).append(klass.__name__)
    twice = {name: owners for name, owners in declared.items() if len(owners) > 1}
    assert not twice, f"typed in more than one dataclass: {twice}"
    for klass in config_classes():
        for f in dataclasses.fields(klass):
            assert f.default == MISSING and f.default_factory is dataclasses.MISSING, f"{klass.__name__}.{f.name}"


def test_no_algorithm_constructor_restates_a_hyperparameter():
    keys = {f.name for klass in config_classes() for f in dataclasses.fields(klass)}
    for cls in algorithm_classes_in_code():
        if "__init__" in vars(cls):
            params = set(inspect.signature(vars(cls)["__init__"]).parameters)
            assert not params & keys, f"{cls.__name__}.__init__ takes {sorted(params & keys)}: they belong in cfg"


# ---- valued once ------------------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(ALGOS))
def test_the_yaml_gives_every_field_of_the_algorithms_dataclass_and_nothing_else(compose_cfg, name):
    cls = ALGOS[name]
    node = compose_cfg([f"algo={name}"]).algo
    assert OmegaConf.get_type(node) is cls.config_class
    assert set(node) == {f.name for f in dataclasses.fields(cls.config_class)}
    assert not [k for k in node if OmegaConf.is_missing(node, k)]


@pytest.mark.parametrize("name", sorted({*ALGOS, *FAMILIES}))
def test_no_yaml_restates_a_value_it_inherits(name):
    _, own = raw(name)
    before = inherited(name)
    restated = sorted(k for k, v in own.items() if k in before and before[k] == v)
    assert not restated, f"conf/algo/{name}.yaml restates {restated} from the yamls it extends"


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_a_value_every_algorithm_of_a_family_shares_is_written_once_in_the_family_yaml(compose_cfg, family):
    members = [name for name in ALGOS if family in chain(name)]
    assert members, family
    values = {name: compose_cfg([f"algo={name}"]).algo for name in members}
    written = {**inherited(family), **raw(family)[1]}
    for f in dataclasses.fields(FAMILIES[family]):
        seen = {repr(OmegaConf.to_container(values[m])[f.name]) for m in members}
        if len(seen) == 1 and f.name not in ("_target_", "name"):
            assert f.name in written, f"every {family} algorithm has {f.name}={seen.pop()}: write it in {family}.yaml"


def test_families_are_not_algorithms_and_every_algorithm_extends_one():
    assert not set(FAMILIES) & set(ALGOS)
    for name in ALGOS:
        assert "base" in chain(name), name


# ---- what each algorithm receives -------------------------------------------------------------
@pytest.mark.parametrize("budget", BUDGETS)
@pytest.mark.parametrize("name", sorted(ALGOS))
def test_each_algorithm_receives_exactly_the_yaml_values(compose_cfg, name, budget):
    cfg = compose_cfg([f"algo={name}", f"budget={budget}", "env=predator_prey_small"])
    values = OmegaConf.to_container(cfg.algo, resolve=True)
    cls = hydra.utils.get_class(cfg.algo._target_)
    sampler = hydra.utils.instantiate(cfg.sampler)
    algo = cls.from_config(cfg.algo, small_env(), sampler, LoopSettings(t_max=100))
    assert dataclasses.asdict(algo.cfg) == values
    # the same through hydra.utils.instantiate (every key a keyword), as tools that build from a config do
    built = hydra.utils.instantiate(cfg.algo, _partial_=True, _convert_="all")
    assert built(train_env=small_env(), sampler=sampler, loop=LoopSettings(t_max=100)).cfg == algo.cfg
    # and where the values act: learning rates, clipping, the exploration schedule
    specs = algo.optimisers()
    assert {round(s.lr, 12) for s in specs.values()} <= {values["lr"], values.get("critic_lr", values["lr"])}
    assert values["lr"] in {s.lr for s in specs.values()}
    assert {s.grad_clip for s in specs.values()} == {values["grad_clip"]}
    assert algo.epsilon() == pytest.approx(values["epsilon_start"])
    algo.counters["env_steps"] = values["epsilon_anneal_time"]
    assert algo.epsilon() == pytest.approx(values["epsilon_finish"])


@pytest.mark.parametrize("name", sorted(ALGOS))
def test_an_algorithm_built_in_python_takes_its_yaml_values(compose_cfg, name):
    cls = ALGOS[name]
    preset = OmegaConf.to_object(compose_cfg([f"algo={cls.preset}"]).algo)
    sampler = hydra.utils.instantiate(compose_cfg([f"algo={cls.preset}"]).sampler)
    torch.manual_seed(0)
    assert cls(small_env(), sampler, LoopSettings(t_max=100)).cfg == preset == algo_preset(cls.preset)
    changed = cls(small_env(), sampler, LoopSettings(t_max=100), gamma=0.5).cfg
    assert changed == dataclasses.replace(preset, gamma=0.5)
    with pytest.raises(TypeError, match=r"algo\.hidden: not a parameter"):
        cls(small_env(), sampler, LoopSettings(t_max=100), hidden=3)
    with pytest.raises(ValueError, match=r"algo\.gamma: expected a number in \[0, 1\], got 2"):
        cls(small_env(), sampler, LoopSettings(t_max=100), gamma=2.0)


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["algo=dop", "sampler=macpo_reference"],
         "algo.agent_q_clamp: no such key in DopConfig (conf/sampler/macpo_reference.yaml sets it)"),
        (["algo=qmix", "algo._target_=macpo.algos.dop.DOP"], "algo.double_q: not a parameter of macpo.algos.dop.DOP"),
        (["algo=dop", "algo.on_batch_size=64"], "algo.on_batch_size must lie in [1, algo.on_buffer_size=32], got 64"),
        (["algo=fop", "algo.alpha_finish=0"], "algo.alpha_start and algo.alpha_finish must be > 0, got 0.5, 0"),
        (["algo=qplex", "algo.optimiser=sgd"], "algo.optimiser: optimiser must be one of ['adam', 'rmsprop']"),
    ],
)  # fmt: skip
def test_a_bad_algorithm_config_is_refused_before_the_run_naming_the_key(overrides, message):
    from macpo.runs.validation import validate

    with pytest.raises(ConfigError) as error:
        validate(compose(["env=predator_prey_small", *overrides]), build_env=False)
    assert str(error.value).startswith(message) and "\n" not in str(error.value), str(error.value)


# ---- method= and budget= ------------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(ALGOS))
def test_method_is_the_algorithm_with_its_paired_sampler(compose_cfg, name):
    by_method = compose_cfg([f"method={name}"])
    by_algo = compose_cfg([f"algo={name}"])
    assert OmegaConf.to_container(by_method, resolve=True) == OmegaConf.to_container(by_algo, resolve=True)
    assert by_algo.sampler.name == ("macpo" if name == "macpo" else "uniform")
    assert compose_cfg([f"method={name}", "sampler=per"]).sampler.name == "per"  # the command line wins


def test_analysis_names_the_same_pairings(compose_cfg):
    from analysis.export import OWN_SAMPLER

    pairs = {name: compose_cfg([f"algo={name}"]).sampler.name for name in ALGOS}
    assert OWN_SAMPLER == {name: sampler for name, sampler in pairs.items() if sampler != "uniform"}


def test_the_paper_budget_holds_only_what_differs_from_train_yaml():
    train = OmegaConf.load(CONF_DIR / "train.yaml")
    paper = OmegaConf.load(CONF_DIR / "budget" / "paper.yaml")
    same = sorted(k for k in paper if k in train and not OmegaConf.is_interpolation(paper, k) and paper[k] == train[k])
    assert not same, f"budget/paper.yaml restates {same} from train.yaml"


#: run identities of configurations as main (27c10bc) computed them: finished runs stay finished
IDENTITIES = {
    "env=predator_prey method=qmix budget=paper": "f6cac425f4fe43dc",
    "env=predator_prey method=ow_qmix budget=paper": "77320fb679918c91",
    "env=predator_prey method=cw_qmix budget=paper": "ff52cbddb6de2b62",
    "env=predator_prey method=qplex budget=paper": "3a6f00e4b8f05dda",
    "env=predator_prey method=vdac budget=paper": "52f0fb6498f617fc",
    "env=predator_prey method=fop budget=paper": "f2a1e217ff70a604",
    "env=predator_prey method=dop budget=paper": "66312aab04b60ab8",
    "env=predator_prey method=macpo budget=paper": "6d48aadc5bf18374",
    "env=mmm2 algo=macpo sampler=macpo_no_joint budget=results": "61566bc9b19e988e",
    "env=mmm2 algo=qmix sampler=per budget=smoke": "26ddd53ded5f3618",
    "env=predator_prey algo=ow_qmix sampler=macpo_reference budget=default": "60ac24a92b96ce41",
}


@pytest.mark.parametrize("overrides", sorted(IDENTITIES))
def test_run_identities_are_unchanged(compose_cfg, overrides):
    assert run_identity(compose_cfg(overrides.split())) == IDENTITIES[overrides]
