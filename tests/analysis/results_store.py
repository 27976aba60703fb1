"""A small MLflow store of finished runs tagged as training tags them, for the results tests.

``FakeRun`` holds what ``macpo.runs.lifecycle`` records for a run: the tags of ``run_tags``
(env, algo, sampler, seed, sweep, t_max, punishment or map_name and simulator, identity, budget,
sweep_cell, commit and machine), the params the results export reads (``trainer/precision``,
``test_interval``), test curves every ``INTERVAL`` env steps, per-update metrics (which the
export must leave out) and ``perf/cpu_seconds``. Final values are chosen per test; curves ramp
to them by 90% of the budget and stay there, so a run's final value is exactly ``final``.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from mlflow.entities import Metric, Param, RunTag
from mlflow.tracking import MlflowClient

T_MAX = 50_000
INTERVAL = 5_000
MACHINE = {"machine.cpu": "Test CPU", "machine.cores": "2", "machine.avx512_bf16": "false"}


@dataclass
class FakeRun:
    sweep: str
    env: str
    algo: str
    sampler: str
    seed: int
    final: float  # test return (predator-prey) or win rate as a fraction (SMAC)
    punishment: float | None = None
    budget: str = "results"
    status: str = "FINISHED"
    precision: str = "32-true"
    commit: str = "0123456789abcdef0123456789abcdef01234567"
    cpu_seconds: float | None = 1800.0
    rise: float = 0.9  # fraction of the budget by which the curve reaches `final`
    salt: str = ""  # changes the identity (another configuration of the same cell)
    extra_tags: dict[str, str] = field(default_factory=dict)

    @property
    def is_smac(self) -> bool:
        return not self.env.startswith("predator_prey")

    @property
    def identity(self) -> str:
        key = f"{self.sweep}|{self.env}|{self.algo}|{self.sampler}|{self.seed}|{self.punishment}|{self.budget}"
        return hashlib.sha256((key + self.salt + self.precision).encode()).hexdigest()[:16]

    def curve(self) -> list[tuple[int, float]]:
        steps = [0] + [k * INTERVAL + 8 * self.seed for k in range(1, T_MAX // INTERVAL + 1)]
        return [(s, self.final * min(1.0, s / (self.rise * T_MAX))) for s in steps]

    def tags(self) -> dict[str, str]:
        tags = {
            "env": self.env,
            "algo": self.algo,
            "sampler": self.sampler,
            "seed": str(self.seed),
            "sweep": self.sweep,
            "t_max": str(T_MAX),
            "identity": self.identity,
            "budget": self.budget,
            "code.commit": self.commit,
            **MACHINE,
        }
        if self.punishment is not None:
            tags["punishment"] = str(float(self.punishment))
            tags["sweep_cell"] = f"env.punishment={self.punishment:g} method={self.algo} seed={self.seed}"
        if self.is_smac:
            tags.update({"map_name": self.env, "env.backend": "lite", "env.sim_version": "3"})
            tags["sweep_cell"] = f"env={self.env} sampler={self.sampler} seed={self.seed}"
        tags.update(self.extra_tags)
        return tags

    def params(self) -> dict[str, str]:
        target = "macpo.envs.smac.make_smac_env" if self.is_smac else "macpo.envs.predator_prey.PredatorPrey"
        params = {"trainer/precision": self.precision, "test_interval": str(INTERVAL), "env/_target_": target}
        if self.is_smac:
            params["env/backend"] = "lite"
        return params

    def metrics(self) -> dict[str, list[tuple[int, float]]]:
        curve = self.curve()
        points = {"loss": [(s + 100, 1.0 / (1 + k)) for k, (s, _) in enumerate(curve)]}  # per update: not exported
        if self.is_smac:
            points["test/battle_won_mean"] = curve
            points["test/return_mean"] = [(s, 20 * v) for s, v in curve]
        else:
            points["test/return_mean"] = curve
        if self.cpu_seconds is not None:  # logged per segment, the last value is the total
            points["perf/cpu_seconds"] = [(T_MAX // 2, self.cpu_seconds / 2), (T_MAX + 8 * self.seed, self.cpu_seconds)]
        return points


def log_runs(tracking_uri: str, experiment: str, runs: list[FakeRun]) -> dict[str, FakeRun]:
    """Log `runs` into `experiment` (created if missing); returns them by MLflow run id."""
    client = MlflowClient(tracking_uri=tracking_uri)
    found = client.get_experiment_by_name(experiment)
    experiment_id = found.experiment_id if found is not None else client.create_experiment(experiment)
    logged = {}
    for run in runs:
        created = client.create_run(experiment_id)
        run_id = created.info.run_id
        metrics = [
            Metric(key, value, 1_700_000_000_000 + step, step)
            for key, points in run.metrics().items()
            for step, value in points
        ]
        client.log_batch(
            run_id,
            metrics=metrics,
            params=[Param(k, v) for k, v in run.params().items()],
            tags=[RunTag(k, v) for k, v in run.tags().items()],
        )
        if run.status != "RUNNING":
            client.set_terminated(run_id, status=run.status, end_time=1_700_000_100_000)
        logged[run_id] = run
    return logged
