"""The calibration command's table: milestone means over test evaluations and seeds, simulator
filtering, target checks, and bad input refused before any compute."""

from __future__ import annotations

import pytest
from omegaconf import OmegaConf

from macpo.envs.smac_lite import SIM_VERSION
from macpo.tools import calibrate


def log_run(client, experiment_id, map_name, seed, curve, sim_version=SIM_VERSION, t_max=1_000_000):
    run = client.create_run(experiment_id, tags={
        "algo": "qmix", "sampler": "uniform", "map_name": map_name, "seed": str(seed), "t_max": str(t_max),
        "env.backend": "lite", "env.sim_version": str(sim_version),
    })  # fmt: skip
    for step, value in curve:
        client.log_metric(run.info.run_id, calibrate.WIN_RATE, value, step=step)
    client.set_terminated(run.info.run_id)


def test_table_from_a_tiny_store(tmp_path):
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path}/mlflow.db"
    client = MlflowClient(tracking_uri=uri)
    exp = client.create_experiment("calibration")
    steps = range(10_000, 510_001, 10_000)
    # 5m_vs_6m seed 0: 0.2 everywhere, but 0.6 on the 5 evaluations up to 0.5M; seed 1: 0.1 / 0.2
    log_run(client, exp, "5m_vs_6m", 0, [(s, 0.6 if 450_000 < s <= 500_000 else 0.2) for s in steps])
    log_run(client, exp, "5m_vs_6m", 1, [(s, 0.2 if 450_000 < s <= 500_000 else 0.1) for s in steps])
    log_run(client, exp, "5m_vs_6m", 2, [(s, 1.0) for s in steps], sim_version=SIM_VERSION - 1)  # old simulator
    log_run(client, exp, "MMM2", 0, [(s, 0.5) for s in range(10_000, 260_001, 10_000)])  # stopped at 0.26M

    points = calibrate.read_points(uri, "calibration", 1_000_000, "lite")
    assert set(points["map"]) == {"5m_vs_6m", "MMM2"}
    assert 2 not in set(points.loc[points["map"] == "5m_vs_6m", "seed"])  # the old simulator's run is left out
    reference = OmegaConf.to_container(OmegaConf.load(calibrate.REFERENCE))
    table = calibrate.calibration_table(points, reference, ["5m_vs_6m", "MMM2"], window=50_000).set_index("map")

    assert table.loc["5m_vs_6m", "lite 0.5M"] == "40% (n=2)"  # mean(60, 20)
    assert table.loc["5m_vs_6m", "lite 0.25M"] == "15% (n=2)"  # mean(20, 10)
    assert table.loc["5m_vs_6m", "lite 1M"] == "-"
    assert table.loc["5m_vs_6m", "real 0.5M"] == "32%" and table.loc["5m_vs_6m", "real 1M"] == "57%"
    assert table.loc["5m_vs_6m", "target"] == "pending"  # 40% at 0.5M is inside 15-50; 1M not reached
    assert table.loc["MMM2", "lite 0.25M"] == "50% (n=1)" and table.loc["MMM2", "lite 0.5M"] == "-"
    assert table.loc["MMM2", "runs"] == 1 and table.loc["MMM2", "steps reached"] == "0.26M"


def test_target_status():
    one_seed = calibrate.target_status({500_000: 30.0}, {"at": 500_000, "min": 15, "max": 50}, {500_000: 1})
    assert one_seed.startswith("in band, 1 seed")  # the targets are judged on >= 2 seeds
    assert calibrate.target_status({500_000: 30.0}, {"at": 500_000, "min": 15, "max": 50}, {500_000: 2}) == "met"
    assert calibrate.target_status({500_000: 70.0}, {"at": 500_000, "max": 60}).startswith("MISSED (70% at 0.5M")
    assert calibrate.target_status({500_000: 30.0, 1_000_000: 50.0}, [{"at": 500_000, "min": 15, "max": 50},
                                                                      {"at": 1_000_000, "min": 40}]) == "met"


def test_commands_and_bad_input():
    args = calibrate.parse_args(["maps=mmm2,5m_vs_6m", "seeds=3", "t_max=2e5"])
    cmds = calibrate.train_commands(args)
    assert [c[3] for c in cmds] == ["env=mmm2", "env=5m_vs_6m"]
    assert "t_max=200000" in cmds[0] and "algo=qmix" in cmds[0] and "seed=3" in cmds[0]
    with pytest.raises(ValueError, match="unknown SMAC maps"):
        calibrate.main(["maps=4m", "train=false"])
    with pytest.raises(ValueError, match="key=value"):
        calibrate.main(["mapz=3m"])
