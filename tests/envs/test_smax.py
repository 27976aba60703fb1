"""JaxMARL's SMAX as a backend: config-time refusals (with or without jaxmarl), SMAX's sizes, our
batched protocol (frozen finished battles, battle_won), and the PettingZoo view. Tests that need
jaxmarl skip cleanly without it (pip install -e ".[smax]")."""

from __future__ import annotations

import importlib.util
import warnings

import pytest
import torch

from macpo.envs.smac import check_smac_config
from macpo.train import ConfigError, validate
from tests.helpers import run_cli

HAS_JAXMARL = importlib.util.find_spec("jaxmarl") is not None
needs_jaxmarl = pytest.mark.skipif(not HAS_JAXMARL, reason='needs jaxmarl (pip install -e ".[smax]")')
TINY = ["t_max=100", "batch_size=2", "buffer_size=4", "batch_size_run=1", "algo=qmix", "sampler=uniform"]


@pytest.mark.skipif(HAS_JAXMARL, reason="checks the message shown when jaxmarl is missing")
def test_missing_jaxmarl_is_a_config_error_saying_how_to_install(compose_cfg):
    with pytest.raises(ConfigError, match=r'pip install -e "\.\[smax\]"'):
        validate(compose_cfg([*TINY, "env=5m_vs_6m", "env.backend=smax"]))


@needs_jaxmarl
def test_mmm2_on_smax_is_refused_naming_smax_maps(compose_cfg):
    with pytest.raises(ConfigError, match="no map 'MMM2'.*5m_vs_6m"):
        validate(compose_cfg([*TINY, "env=mmm2", "env.backend=smax"]))
    check_smac_config("3s_vs_5z", "smax")  # a map SMAX has passes


@pytest.fixture(scope="module")
def smax_env():
    from macpo.envs.smac import make_smac_env

    return make_smac_env("5m_vs_6m", backend="smax", n_envs=4, seed=0)


@needs_jaxmarl
def test_smax_sizes_and_a_whole_batched_episode(smax_env):
    env = smax_env
    info = env.env_info
    assert (info.n_agents, info.obs_shape, info.state_shape, info.n_actions) == (5, 140, 132, 11)  # SMAX's own
    obs, state, avail = env.reset(seed=1)
    assert obs.shape == (4, 5, 140) and state.shape == (4, 132) and avail.shape == (4, 5, 11)
    assert avail.dtype == torch.bool and bool(avail.any(-1).all())
    gen = torch.Generator().manual_seed(0)
    for _ in range(info.episode_limit):
        act = torch.multinomial(avail.float().view(-1, 11), 1, generator=gen).view(4, 5)
        reward, terminated, truncated, step_info = env.step(act)
        avail = env.get_avail_actions()
        if bool((terminated | truncated).all()):
            break
    assert bool((terminated | truncated).all()), "every battle ends within episode_limit"
    won = step_info["battle_won"]
    assert not bool((won & truncated).any()) and bool((won <= terminated).all())
    assert torch.equal(won, (step_info["dead_enemies"] == 6) & (step_info["dead_allies"] < 5))
    frozen = env.get_state().clone()
    reward, terminated2, truncated2, _ = env.step(act)  # finished battles stay frozen
    assert bool((reward == 0).all()) and torch.equal(terminated2, terminated) and torch.equal(frozen, env.get_state())


@needs_jaxmarl
def test_parallel_api_test_on_a_smax_map():
    from pettingzoo.test import parallel_api_test

    from macpo.envs.pettingzoo import ParallelEnvView
    from macpo.envs.smac import make_smac_env

    view = ParallelEnvView(make_smac_env("3m", backend="smax", n_envs=1, seed=0))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        parallel_api_test(view, num_cycles=200)
    assert not [str(w.message) for w in caught if "pettingzoo" in w.filename.replace("\\", "/")]


@needs_jaxmarl
@pytest.mark.slow
def test_cli_trains_on_smax_and_logs_win_rates_and_backend_tags(tmp_path):
    """``python -m macpo.train env=5m_vs_6m env.backend=smax`` trains end to end (a short budget)."""
    import mlflow
    from mlflow.tracking import MlflowClient

    db = tmp_path / "smax.db"
    res = run_cli(["-m", "macpo.train", "env=5m_vs_6m", "env.backend=smax", "algo=qmix", "sampler=uniform",
                   "t_max=600", "batch_size=4", "buffer_size=16", "batch_size_run=4", "test_interval=300",
                   "test_nepisode=4", "log_interval=300", "progress_bar=false",
                   f"logger.tracking_uri=sqlite:///{db}", f"hydra.run.dir={tmp_path}/run"])  # fmt: skip
    assert res.returncode == 0, res.stderr[-3000:]
    mlflow.set_tracking_uri(f"sqlite:///{db}")
    run = mlflow.search_runs(experiment_names=["macpo"]).iloc[0]
    assert run["status"] == "FINISHED" and run["tags.env.backend"] == "smax"
    won = MlflowClient(f"sqlite:///{db}").get_metric_history(run.run_id, "test/battle_won_mean")
    assert len(won) >= 2 and all(0.0 <= m.value <= 1.0 for m in won)
    assert run["metrics.train/battle_won_mean"] >= 0.0
