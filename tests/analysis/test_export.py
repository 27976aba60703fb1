"""analysis.export: a store's runs in marl-eval's JSON layout, read back by marl-eval itself.

marl-eval (PyPI ``id-marl-eval``) is installed by ``make venv`` with ``--no-deps`` (its pins do not
build here); ``data_process_pipeline`` needs only numpy and colorama.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from marl_eval.utils.data_processing_utils import create_matrices_for_rliable, data_process_pipeline
from rliable import library as rly
from rliable import metrics as rly_metrics

from analysis.export import algorithm_name, export, main, marl_eval_data
from analysis.load import load_runs
from tests.helpers import LoggedRun, log_store

T_MAX = 20_000
INTERVAL = 2_000

# final values: predator-prey returns per (algo, sampler, punishment), SMAC win rates per (algo, sampler)
PP_FINALS = {
    ("qmix", "uniform", -2.0): (0.0, 1.0),
    ("macpo", "macpo", -2.0): (6.0, 8.0),
    ("qmix", "uniform", 0.0): (9.0, 10.0),
    ("macpo", "macpo", 0.0): (8.0, 10.0),
}
SMAC_FINALS = {("qmix", "uniform"): (0.25, 0.5), ("macpo", "macpo"): (0.5, 0.75)}
SEEDS = (0, 1)


def _curve(final: float, seed: int) -> list[tuple[int, float]]:
    """Evaluations every 2k env steps (+seed: runs overshoot differently), flat at `final` from 90%."""
    steps = [0] + [k * INTERVAL + seed for k in range(1, T_MAX // INTERVAL + 1)]
    return [(s, final * min(1.0, s / (0.9 * T_MAX))) for s in steps]


def _tags(env, algo, sampler, seed, sweep="grid", **extra) -> dict[str, str]:
    return dict(env=env, algo=algo, sampler=sampler, seed=str(seed), sweep=sweep, t_max=str(T_MAX), **extra)


def synthetic_runs() -> list[LoggedRun]:
    runs = []
    for (algo, sampler, p), finals in PP_FINALS.items():
        for seed, final in zip(SEEDS, finals):
            tags = _tags("predator_prey_small", algo, sampler, seed, punishment=str(p))
            runs.append(LoggedRun(tags, "FINISHED", {"test/return_mean": _curve(final, seed), "loss": [(0, 1.0)]}))
    for (algo, sampler), finals in SMAC_FINALS.items():
        for seed, final in zip(SEEDS, finals):
            points = {"test/battle_won_mean": _curve(final, seed), "test/return_mean": _curve(10 * final, seed)}
            runs.append(LoggedRun(_tags("mmm2", algo, sampler, seed), "FINISHED", points))
    # still running: left out by default; and a run of another sweep that clashes with seed 0
    runs.append(LoggedRun(_tags("mmm2", "qmix", "uniform", 7), "RUNNING", {"test/return_mean": _curve(1.0, 7)[:4]}))
    runs.append(
        LoggedRun(_tags("mmm2", "qmix", "uniform", 0, sweep="other"), "FINISHED", {"test/return_mean": _curve(1, 0)})
    )
    return runs


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> str:
    uri = f"sqlite:///{tmp_path_factory.mktemp('mlflow') / 'mlflow.db'}"
    log_store(uri, "macpo", synthetic_runs())
    return uri


@pytest.fixture(scope="module")
def exported(store, tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("export") / "results.json"
    export(store, out, sweep="grid", cache_dir=None, progress=False)
    return json.loads(out.read_text())


def test_layout_environment_task_algorithm_seed_steps(exported):
    assert set(exported) == {"predator_prey", "smac_lite"}
    assert set(exported["predator_prey"]) == {"predator_prey_small_p-2", "predator_prey_small_p0"}
    assert set(exported["smac_lite"]) == {"mmm2"}
    assert set(exported["smac_lite"]["mmm2"]) == {"qmix", "macpo"}
    assert set(exported["smac_lite"]["mmm2"]["qmix"]) == {"0", "1"}  # the RUNNING seed 7 is left out

    run = exported["predator_prey"]["predator_prey_small_p-2"]["macpo"]["1"]
    steps = [k for k in run if k != "absolute_metrics"]
    assert steps == [f"step_{i}" for i in range(T_MAX // INTERVAL + 1)]
    logged = _curve(8.0, 1)
    assert [run[k]["step_count"] for k in steps] == [s for s, _ in logged]
    assert [run[k]["return"] for k in steps] == [[pytest.approx(v)] for _, v in logged]
    assert "win_rate" not in run["step_3"]  # predator-prey logs no win rate
    assert run["absolute_metrics"] == {"return": [pytest.approx(8.0)]}  # the final-10% mean

    smac = exported["smac_lite"]["mmm2"]["macpo"]["0"]
    assert smac["step_10"]["win_rate"] == [pytest.approx(0.5)]
    assert smac["absolute_metrics"] == {"return": [pytest.approx(5.0)], "win_rate": [pytest.approx(0.5)]}


def test_marl_eval_processes_the_file_and_rliable_aggregates_it(exported):
    raw = json.loads(json.dumps(exported))
    processed = data_process_pipeline(raw_data=raw, metrics_to_normalize=["return"])
    assert "extra" in processed, "marl-eval rejected the file (it returns the raw data on a format error)"
    assert processed["extra"]["number_of_runs"] == 2 and processed["extra"]["number_of_steps"] == 11

    # SMAC win rates are not normalised: the matrices hold the finals exactly
    by_run, over_steps = create_matrices_for_rliable(processed, "smac_lite", ["return"])
    for (algo, sampler), finals in SMAC_FINALS.items():
        np.testing.assert_allclose(by_run["mean_win_rate"][algorithm_name(algo, sampler)], np.array(finals)[:, None])
    assert over_steps["mean_win_rate"]["macpo"].shape == (2, 1, 11)  # [runs, tasks, steps]

    # predator-prey returns are min-max normalised per task; aggregate over both tasks with rliable
    processed = data_process_pipeline(raw_data=json.loads(json.dumps(exported)), metrics_to_normalize=["return"])
    by_run, _ = create_matrices_for_rliable(processed, "predator_prey", ["return"])
    scores = by_run["mean_norm_return"]
    tasks = list(exported["predator_prey"])
    assert scores["macpo"].shape == (2, 2)  # [runs, tasks]
    for j, task in enumerate(tasks):
        p = -2.0 if task.endswith("p-2") else 0.0
        raw_finals = np.array([*PP_FINALS[("qmix", "uniform", p)], *PP_FINALS[("macpo", "macpo", p)]])
        normed = np.concatenate([scores["qmix"][:, j], scores["macpo"][:, j]])
        assert np.all(np.diff(normed[np.argsort(raw_finals, kind="stable")]) >= 0)  # order kept per task
        assert normed.min() >= 0 and normed.max() <= 1
    point, _ = rly.get_interval_estimates(scores, lambda x: np.array([rly_metrics.aggregate_iqm(x)]), reps=50)
    assert point["macpo"][0] > point["qmix"][0]  # MAC-PO's p = -2 lead outweighs its p = 0 deficit


def test_algorithm_names():
    assert algorithm_name("qmix", "uniform") == "qmix"
    assert algorithm_name("macpo", "macpo") == "macpo"
    assert algorithm_name("macpo", "per") == "macpo+per"
    assert algorithm_name("macpo", "uniform") == "macpo+uniform"
    assert algorithm_name("qmix", "per") == "qmix+per"


def test_clashing_runs_are_an_error_and_gaps_are_listed(store, tmp_path):
    out = tmp_path / "all.json"
    with pytest.raises(ValueError, match="share an environment/task/algorithm/seed.*--sweep"):
        export(store, out, cache_dir=None, progress=False)
    assert not out.exists()

    points = load_runs(store, "macpo", sweep="grid", statuses=["FINISHED", "RUNNING"], cache_dir=None, progress=False)
    result = marl_eval_data(points)
    assert set(result.data["smac_lite"]["mmm2"]["qmix"]) == {"0", "1", "7"}
    assert any("runs per task/algorithm differ" in m for m in result.messages)
    assert any("different numbers of evaluations" in m for m in result.messages)


def test_cli_writes_the_file_and_fails_clearly(store, tmp_path, capsys):
    out = tmp_path / "sub" / "results.json"
    assert main(["--tracking-uri", store, "--sweep", "grid", "--out", str(out), "--no-cache", "--no-progress"]) == 0
    assert f"wrote 12 run(s) of predator_prey (2 task(s)), smac_lite (1 task(s)) to {out}" in capsys.readouterr().out
    assert json.loads(out.read_text())["smac_lite"]["mmm2"]["macpo"]["1"]["absolute_metrics"]["win_rate"] == [
        pytest.approx(0.75)
    ]

    missing = tmp_path / "none.json"
    assert main(["--tracking-uri", store, "--sweep", "nope", "--out", str(missing), "--no-cache"]) == 1
    assert "no runs in state FINISHED" in capsys.readouterr().err and not missing.exists()
    assert main(["--tracking-uri", f"sqlite:///{tmp_path / 'absent.db'}", "--out", str(missing)]) == 2
    assert "absent.db" in capsys.readouterr().err and not missing.exists()


def test_smac_runs_of_different_simulators_are_different_environments(store):
    points = load_runs(store, "macpo", sweep="grid", env="mmm2", statuses=["FINISHED"], cache_dir=None, progress=False)
    first_seed = points["seed"] == 0
    points = points.assign(simulator=np.where(first_seed, "lite v3", "sc2"))
    data = marl_eval_data(points).data
    assert set(data) == {"smac_lite_v3", "smac"}
    assert set(data["smac_lite_v3"]["mmm2"]["qmix"]) == {"0"} and set(data["smac"]["mmm2"]["qmix"]) == {"1"}
