"""Helpers shared by the tests (the fixtures are in ``conftest.py``).

The tiny run and the CLI; small envs; reading back a run's MLflow store; the learning checks'
baselines; reference computations and padded forms of the learners' row computations; a synthetic
MLflow store for the analysis tests.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import mlflow
import numpy as np
import torch
import torch.nn.functional as F
from mlflow.entities import Metric
from mlflow.tracking import MlflowClient

from macpo.envs.predator_prey import PredatorPrey
from macpo.nn import soft_targets, tree_backup, vdac
from macpo.nn.packing import EpisodePacking
from macpo.rollout import Collector, RandomPolicy

#: the checkout (the CLI runs from here)
REPO = Path(__file__).resolve().parents[1]

# ---- the tiny run and the CLI ------------------------------------------------------------------
#: a run small enough for tests: a few seconds on one core
TINY = [
    "env=predator_prey_small", "t_max=1500", "batch_size=8", "buffer_size=64", "batch_size_run=4",
    "test_interval=500", "test_nepisode=4", "log_interval=500", "target_update_interval=20",
    "progress_bar=false",
]  # fmt: skip


def run_cli(args, cwd=REPO, timeout=600, env_extra=None):
    """Run ``python -m macpo.train`` (or another module) and return the CompletedProcess."""
    env = dict(os.environ, PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1")
    env.update(env_extra or {})
    return subprocess.run(
        [sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )


def refused_in_one_line(tmp_path: Path, args, module: str = "macpo.train") -> str:
    """Run ``python -m <module> args`` from an empty folder under ``tmp_path`` and check the refusal:
    exit code 2, one line on stderr and no traceback, nothing created anywhere under ``tmp_path``
    (no store, lock, checkpoint or Hydra folder). Returns the line."""
    before = sorted(tmp_path.rglob("*"))
    cwd = tmp_path / "launch"
    cwd.mkdir()
    res = run_cli(["-m", module, *args], cwd=cwd, env_extra={"PYTHONPATH": str(REPO)})
    lines = res.stderr.strip().splitlines()
    assert res.returncode == 2, res.stderr[-3000:]
    assert len(lines) == 1 and "Traceback" not in res.stderr, res.stderr[-3000:]
    cwd.rmdir()  # fails if anything was written in the launch folder
    assert sorted(tmp_path.rglob("*")) == before, "the refused command created files"
    return lines[0]


# ---- small envs --------------------------------------------------------------------------------
def small_env(n_envs: int = 4) -> PredatorPrey:
    """2 predators, 1 prey on 5x5, 10 steps: learners' tests on real batches."""
    return PredatorPrey(n_envs, seed=0, grid_size=5, n_agents=2, n_prey=1, episode_limit=10)


# ---- a run's MLflow store ----------------------------------------------------------------------
def runs_of(db, experiment="macpo"):
    """The runs of the SQLite store ``db`` (a DataFrame) and a client on it."""
    uri = f"sqlite:///{db}"
    mlflow.set_tracking_uri(uri)
    return mlflow.search_runs(experiment_names=[experiment]), MlflowClient(uri)


def history(client, run_id, metric):
    """(step, value) pairs of one metric of one run."""
    return [(m.step, m.value) for m in client.get_metric_history(run_id, metric)]


#: the tiny run, long enough for two checkpoints and several metric writes
RESUMABLE = [*TINY, "t_max=3000", "checkpoint_interval=700", "device=cpu"]
#: env steps one fit-loop iteration can add (batch_size_run 4 x episode_limit 25): the slack of every interval
ITERATION_STEPS = 4 * 25


def store_uri(path) -> str:
    return f"sqlite:///{path}"


def the_run(uri: str):
    """A client and the store's only run (asserted: one run, not two)."""
    client = MlflowClient(uri)
    runs = client.search_runs([client.get_experiment_by_name("macpo").experiment_id])
    assert len(runs) == 1, f"expected one MLflow run, found {len(runs)}"
    return client, runs[0]


def crash_then_damage(tmp_path: Path, crash_once_after, overrides, damage, damaged: str):
    """Train `overrides` until a simulated crash (a FAILED run with a checkpoint), then apply
    ``damage`` to the file `damaged` of its checkpoint folder; returns ``cfg, uri, run_dir, histories``."""
    import pytest

    import macpo.train as train
    from macpo.runs.checkpoints import LAST_CKPT, run_checkpoint_dir
    from macpo.runs.identity import run_identity

    uri = store_uri(tmp_path / "m.db")
    cfg = train.compose([*overrides, f"logger.tracking_uri={uri}"])
    run_dir = run_checkpoint_dir(cfg, run_identity(cfg), tmp_path)
    crash_once_after(1000)
    with pytest.raises(RuntimeError, match="simulated crash"):
        train.run(cfg)
    status, before = metric_histories(uri)
    assert status == "FAILED" and (run_dir / LAST_CKPT).exists()
    damage(run_dir / damaged)
    return cfg, uri, run_dir, before


def metric_histories(uri: str, skip_prefix: str = "perf/") -> tuple[str, dict[str, list[tuple[int, float]]]]:
    """Status of the store's only run and, per metric, its (step, value) pairs in logged order."""
    client, run = the_run(uri)
    out = {}
    for key in run.data.metrics:
        if key.startswith(skip_prefix):
            continue  # wall-clock throughput
        history = sorted(client.get_metric_history(run.info.run_id, key), key=lambda m: (m.timestamp, m.step))
        out[key] = [(m.step, m.value) for m in history]
    return run.info.status, out


def assert_continuous(histories: dict, log_interval: int, test_interval: int, t_max: int) -> None:
    for key, points in histories.items():
        steps = [s for s, _ in points]
        assert steps == sorted(set(steps)), f"{key}: steps not strictly increasing / duplicated: {steps}"
        interval = test_interval if key.startswith("test/") else log_interval
        gaps = np.diff(steps)
        assert (gaps < interval + ITERATION_STEPS).all(), f"{key}: a gap wider than {interval}: {steps}"
        assert steps[-1] >= t_max, f"{key}: curve ends at {steps[-1]} < t_max={t_max}"


# ---- learning checks: a trained run against the random policy ----------------------------------
def random_policy_return(episodes=512):
    """The uniform random policy's mean return on ``predator_prey_small`` (torch's global RNG)."""
    env = PredatorPrey(episodes, seed=123, grid_size=5, n_agents=2, n_prey=1, episode_limit=25)
    _, stats = Collector(env).run(RandomPolicy())
    return stats["return"].mean().item()


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


# ---- reference computations --------------------------------------------------------------------
def brute_force_lambda_return(r, v, length, terminated, gamma, lam):
    """G^λ_t = (1-λ) Σ_{n<L-t} λ^{n-1} G^(n)_t + λ^{L-t-1} G^(L-t)_t for one episode of L transitions."""
    out = []
    for t in range(length):
        def n_step(n, t=t):
            g = sum(gamma**k * r[t + k] for k in range(n))
            end = t + n
            boot = 0.0 if (end == length and terminated) else v[end]
            return g + gamma**n * boot

        horizon = length - t
        g = sum((1 - lam) * lam ** (n - 1) * n_step(n) for n in range(1, horizon))
        g += lam ** (horizon - 1) * n_step(horizon)
        out.append(g)
    return out


# ---- padded forms of the learners' row computations ---------------------------------------------
# Every learner reads a packed batch (macpo.nn.packing): returns and network inputs are computed on
# transition and observation rows. Many test cases read better as padded episodes [B, T] with a mask:
# the adapters (td_lambda_targets, entropy_regularised_targets, vdac_advantages, expected_sarsa_errors,
# tree_backup_targets) pack such a case, call the library's row function and scatter the result back
# to [B, T] (0 at padding); reference_td_lambda_targets and reference_agent_inputs are those computations
# as they were written over the padded batch before every learner was packed: oracles, independent of
# the library's code.
def reference_td_lambda_targets(reward, terminated, mask, next_values, gamma, td_lambda):
    """λ-returns G_t = r_t + γ(1 − term_t)[(1 − λ) V_{t+1} + λ G_{t+1}] over padded episodes.

    reward, terminated, mask [B, T]; next_values [B, T+1] (the value of every timestep). Where step
    t+1 is not a real transition, G_{t+1} is replaced by V_{t+1}. Returns [B, T].
    """
    b, t = reward.shape
    not_term = 1.0 - terminated.to(reward.dtype)
    out = torch.empty_like(reward)
    g_next = next_values[:, t]  # [B]
    for i in range(t - 1, -1, -1):
        v_next = next_values[:, i + 1]
        valid_next = mask[:, i + 1] if i + 1 < t else torch.zeros_like(v_next)
        g_next = torch.where(valid_next > 0, g_next, v_next)
        g = reward[:, i] + gamma * not_term[:, i] * ((1 - td_lambda) * v_next + td_lambda * g_next)
        out[:, i] = g
        g_next = g
    return out


def reference_agent_inputs(obs, actions, n_actions):
    """obs [B, T, N, O], actions [B, T, N] long (taken at each t) → obs ⊕ last action one-hot ⊕ agent id
    [B, T, N, O + A + N]; the last action at t = 0 is all zeros."""
    b, t, n, _ = obs.shape
    last = torch.zeros(b, t, n, n_actions, device=obs.device, dtype=obs.dtype)  # [B, T, N, A]
    last[:, 1:] = F.one_hot(actions[:, :-1].long(), n_actions).to(obs.dtype)
    ids = torch.eye(n, device=obs.device, dtype=obs.dtype).expand(b, t, n, n)  # [B, T, N, N]
    return torch.cat([obs, last, ids], dim=-1)


def packing_of(mask: torch.Tensor) -> EpisodePacking:
    """The packing of padded episodes whose real transitions are ``mask`` [B, T] (a prefix per row)."""
    return EpisodePacking(torch.cat([mask.bool(), mask.new_zeros(mask.shape[0], 1).bool()], dim=1))


def rows(pk: EpisodePacking, x: torch.Tensor) -> torch.Tensor:
    """Padded transitions [B, T, ...] → transition rows [R, ...]."""
    return x.flatten(0, 1)[pk.trans_pad_index]


def next_rows(pk: EpisodePacking, x: torch.Tensor) -> torch.Tensor:
    """Values of every timestep [B, T+1, ...] → those of each transition's next timestep [R, ...]."""
    return rows(pk, x[:, 1:])


def td_lambda_targets(reward, terminated, mask, next_values, gamma, td_lambda):
    pk = packing_of(mask)
    got = pk.td_lambda_targets(rows(pk, reward), rows(pk, terminated), next_rows(pk, next_values), gamma, td_lambda)
    return pk.unpack(got)


def entropy_regularised_targets(reward, terminated, mask, next_q_tot, next_log_pi, alpha, gamma, td_lambda):
    pk = packing_of(mask)
    got = soft_targets.entropy_regularised_targets(pk, rows(pk, reward), rows(pk, terminated),
                                                   next_rows(pk, next_q_tot), next_rows(pk, next_log_pi),
                                                   alpha, gamma, td_lambda)  # fmt: skip
    return pk.unpack(got)


def vdac_advantages(reward, terminated, mask, v_tot, gamma, td_lambda):
    pk = packing_of(mask)
    targets, adv = vdac.vdac_advantages(pk, rows(pk, reward), rows(pk, terminated), rows(pk, v_tot[:, :-1]),
                                        next_rows(pk, v_tot), gamma, td_lambda)  # fmt: skip
    return pk.unpack(targets), pk.unpack(adv)


def expected_sarsa_errors(reward, terminated, mask, q_taken, q_expected, gamma):
    pk = packing_of(mask)
    got = tree_backup.expected_sarsa_errors(rows(pk, reward), rows(pk, terminated), rows(pk, q_taken),
                                            next_rows(pk, q_expected), gamma)  # fmt: skip
    return pk.unpack(got)


def tree_backup_targets(td, q_taken, trace, mask, gamma, tb_lambda, n_steps):
    pk = packing_of(mask)
    got = tree_backup.tree_backup_targets(pk, rows(pk, td), rows(pk, q_taken), rows(pk, trace), gamma, tb_lambda,
                                          n_steps)  # fmt: skip
    return pk.unpack(got)


# ---- a synthetic store for the analysis tests --------------------------------------------------
# Built with the MLflow client API, following the schema the training code logs (tags
# env/algo/sampler/seed/sweep/punishment/t_max, metrics keyed by env steps), with final values
# chosen so that the tables can be checked against numbers worked out by hand.
EXPERIMENT = "macpo"
T_MAX = 100_000
TEST_INTERVAL = 10_000


@dataclass
class LoggedRun:
    """What one synthetic run logs: its tags, final MLflow status and metric points."""

    tags: dict[str, str]
    status: str = "FINISHED"
    points: dict[str, list[tuple[int, float]]] = field(default_factory=dict)


def ramp_curve(final: float, seed: int, last_k: int) -> list[tuple[int, float]]:
    """Evaluations at k*10k env steps (+16*seed, as runs overshoot differently), ramping to
    `final` by 90% of the budget and flat after: the final-10% mean is exactly `final`."""
    steps = [0] + [k * TEST_INTERVAL + 16 * seed for k in range(1, last_k + 1)]
    return [(s, final * min(1.0, s / (0.9 * T_MAX))) for s in steps]


def smac_run(sweep, env, algo, sampler, seed, final, *, status="FINISHED", last_k=10) -> LoggedRun:
    wins = ramp_curve(final, seed, last_k)
    tags = dict(env=env, algo=algo, sampler=sampler, seed=str(seed), sweep=sweep, t_max=str(T_MAX))
    return LoggedRun(
        tags,
        status,
        {
            "test/battle_won_mean": wins,
            "test/return_mean": [(s, 20 * v) for s, v in wins],
            "train/return_mean": [(5_000 * k + 8 * seed, float(k)) for k in range(1, 2 * last_k + 1)],
            "loss": [(5_000 * k, 1.0 / k) for k in range(1, 2 * last_k + 1)],
        },
    )


def predator_prey_run(sweep, algo, sampler, seed, punishment, final) -> LoggedRun:
    tags = dict(
        env="predator_prey_small",
        algo=algo,
        sampler=sampler,
        seed=str(seed),
        sweep=sweep,
        t_max=str(T_MAX),
        punishment=str(float(punishment)),
    )
    return LoggedRun(
        tags,
        "FINISHED",
        {
            "test/return_mean": ramp_curve(final, seed, 10),
            "train/return_mean": [(5_000 * k + 8 * seed, float(k)) for k in range(1, 21)],
            "loss": [(5_000 * k, 1.0 / k) for k in range(1, 21)],
        },
    )


# Final values (win rates as fractions; predator-prey returns). Worked-out numbers are in the
# table tests; every method x task has two seeds, so a task's IQM is the mean of the two and
# its 95% bootstrap CI is [lower, higher].
FINALS = {
    # figure 1 (sweep fig1_replay): samplers on the MAC-PO backbone
    ("fig1_replay", "3s_vs_5z", "macpo", "macpo"): (0.8, 0.9),
    ("fig1_replay", "3s_vs_5z", "macpo", "per"): (0.5, 0.85),
    ("fig1_replay", "mmm2", "macpo", "macpo"): (0.6, 0.7),
    ("fig1_replay", "mmm2", "macpo", "per"): (0.4, 0.5),
    # figure 3 (sweep fig3_smac_marl): here MAC-PO loses to QMIX
    ("fig3_smac_marl", "3s_vs_5z", "macpo", "macpo"): (0.5, 0.6),
    ("fig3_smac_marl", "3s_vs_5z", "qmix", "uniform"): (0.7, 0.8),
    # figure 4 (sweep fig4_ablation)
    ("fig4_ablation", "mmm2", "macpo", "macpo"): (0.6, 0.8),
    ("fig4_ablation", "mmm2", "macpo", "macpo_no_joint"): (0.4, 0.5),
}
PREDATOR_PREY_FINALS = {  # figure 2 by content: sweep "demo" is none of the paper's grids
    ("qmix", "uniform", 0.0): (3.0, 5.0),
    ("macpo", "macpo", 0.0): (4.0, 6.0),
    ("qmix", "uniform", -2.0): (-1.0, 2.0),
    ("macpo", "macpo", -2.0): (1.0, 3.0),
}


def synthetic_runs() -> list[LoggedRun]:
    runs = [
        smac_run(sweep, env, algo, sampler, seed, final)
        for (sweep, env, algo, sampler), finals in FINALS.items()
        for seed, final in zip((1, 2), finals)
    ]
    runs += [
        predator_prey_run("demo", algo, sampler, seed, punishment, final)
        for (algo, sampler, punishment), finals in PREDATOR_PREY_FINALS.items()
        for seed, final in zip((1, 2), finals)
    ]
    # a run still going (half its budget: no point in the final window) and a crashed one
    runs.append(smac_run("fig1_replay", "3s_vs_5z", "macpo", "per", 3, 0.3, status="RUNNING", last_k=5))
    runs.append(smac_run("fig1_replay", "mmm2", "macpo", "per", 9, 1.0, status="FAILED", last_k=3))
    return runs


def log_store(tracking_uri: str, experiment: str, runs: list[LoggedRun]) -> dict[str, LoggedRun]:
    """Log `runs` through the MLflow client API; returns them by run id."""
    client = MlflowClient(tracking_uri=tracking_uri)
    experiment_id = client.create_experiment(experiment)
    logged = {}
    for run in runs:
        created = client.create_run(experiment_id, tags=run.tags)
        metrics = [
            Metric(key, value, 1_700_000_000_000 + step, step)
            for key, points in run.points.items()
            for step, value in points
        ]
        client.log_batch(created.info.run_id, metrics=metrics)
        if run.status != "RUNNING":
            client.set_terminated(created.info.run_id, status=run.status)
        logged[created.info.run_id] = run
    return logged
