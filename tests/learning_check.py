"""Shared by the learning tests of the actor-critic baselines: one seeded run on the small
predator-prey through ``python -m macpo.train``, read back from its MLflow store."""

from tests.conftest import run_cli
from tests.test_train_e2e import history, random_policy_return, runs_of


def learned_return(tmp_path, overrides):
    """Mean test return of the last three greedy evaluations, the random policy's return, the curve."""
    db = tmp_path / "learn.db"
    res = run_cli(["-m", "macpo.train", "env=predator_prey_small", "sampler=uniform", "seed=0", "progress_bar=false",
                   *overrides, f"logger.tracking_uri=sqlite:///{db}", f"hydra.run.dir={tmp_path}/run"])  # fmt: skip
    assert res.returncode == 0, res.stderr[-3000:]
    df, client = runs_of(db)
    test = history(client, df.run_id[0], "test/return_mean")
    return sum(v for _, v in test[-3:]) / 3, random_policy_return(), test
