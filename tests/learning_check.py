"""Shared by the learning tests of the actor-critic baselines: one seeded run on the small
predator-prey through ``python -m macpo.train``, read back from its MLflow store, and the
random policy's return on the same env."""

import torch

from macpo.envs.predator_prey import PredatorPrey
from macpo.rollout import Collector, RandomPolicy
from tests.conftest import run_cli
from tests.test_train_e2e import history, runs_of


def seeded_random_return(episodes: int = 4096) -> float:
    """The uniform random policy's mean return (its draws seeded, so the baseline is one number)."""
    state = torch.random.get_rng_state()
    torch.manual_seed(0)
    try:
        env = PredatorPrey(episodes, seed=123, grid_size=5, n_agents=2, n_prey=1, episode_limit=25)
        return Collector(env).run(RandomPolicy())[1]["return"].mean().item()
    finally:
        torch.random.set_rng_state(state)


def learned_return(tmp_path, overrides, timeout=600):
    """Mean test return of the last three greedy evaluations, the random policy's return, the curve."""
    db = tmp_path / "learn.db"
    args = ["-m", "macpo.train", "env=predator_prey_small", "sampler=uniform", "seed=0", "progress_bar=false",
            *overrides, f"logger.tracking_uri=sqlite:///{db}", f"hydra.run.dir={tmp_path}/run"]  # fmt: skip
    res = run_cli(args, timeout=timeout)
    assert res.returncode == 0, res.stderr[-3000:]
    df, client = runs_of(db)
    test = history(client, df.run_id[0], "test/return_mean")
    return sum(v for _, v in test[-3:]) / 3, seeded_random_return(), test
