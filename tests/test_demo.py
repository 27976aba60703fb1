"""The demo grid (`make demo`, sweep=demo) and the headline sentences it prints.

The slow test trains the demo sweep at a tiny budget and checks what `make demo` promises: a
figure with a MAC-PO line and a QMIX line, headlines naming both, and a marl-eval file.
"""

from __future__ import annotations

import json

import pandas as pd
import pytest
from marl_eval.utils.data_processing_utils import create_matrices_for_rliable, data_process_pipeline

from analysis.export import main as export_main
from analysis.figures import main as figures_main
from analysis.figures import predator_prey_figure
from analysis.load import load_runs
from analysis.selection import FIG2_PREDATOR_PREY
from analysis.tables import headlines
from tests.helpers import run_cli


def _scores(finals: dict[str, list[float]]) -> pd.DataFrame:
    rows = [
        {"run_id": f"{method}{i}", "task": "pp, p=-0.5", "method": method, "seed": i, "final": value}
        for method, values in finals.items()
        for i, value in enumerate(values)
    ]
    return pd.DataFrame(rows)


def test_headline_says_whether_the_runs_separate():
    (apart,) = headlines(_scores({"macpo": [6.0, 8.0], "qmix": [0.0, 1.0]}), FIG2_PREDATOR_PREY)
    assert apart.sentence.startswith("On pp, p=-0.5, MAC-PO outperforms the second best, QMIX, by 6.50")
    assert apart.sentence.endswith(
        "Over 2 and 2 runs, MAC-PO's final values span [6.00, 8.00] and QMIX's [0.00, 1.00]: they do not overlap."
    )
    (mixed,) = headlines(_scores({"macpo": [0.0, 8.0], "qmix": [1.0, 2.0]}), FIG2_PREDATOR_PREY)
    assert "outperforms" in mixed.sentence
    assert mixed.sentence.endswith("they overlap, so the gap is within seed-to-seed variation.")
    (tie,) = headlines(_scores({"macpo": [0.0, 0.0, 0.0], "qmix": [0.0, 0.0]}), FIG2_PREDATOR_PREY)
    assert "ties with QMIX" in tie.sentence and "Over 3 and 2 runs" in tie.sentence
    assert tie.sentence.endswith("they overlap.")


def test_demo_grid_is_qmix_and_macpo_on_the_demo_preset(compose_cfg):
    for method, sampler in (("qmix", "uniform"), ("macpo", "macpo")):
        cfg = compose_cfg(["sweep=demo", f"method={method}", "budget=demo", "env=predator_prey_demo"])
        assert cfg.sweep_name == "demo" and cfg.algo.name == method and cfg.sampler.name == sampler
        assert cfg.env.punishment < 0  # the paper's effect needs relative overgeneralisation


@pytest.mark.slow
def test_demo_sweep_end_to_end(tmp_path):
    uri = f"sqlite:///{tmp_path / 'demo.db'}"
    tiny = ["t_max=600", "batch_size=4", "buffer_size=32", "test_interval=300", "test_nepisode=2",
            "log_interval=300", "algo.epsilon_anneal_time=300", "progress_bar=false"]  # fmt: skip
    res = run_cli(["-m", "macpo.train", "-m", "sweep=demo", "hydra/launcher=joblib", *tiny,
                   f"logger.tracking_uri={uri}", f"hydra.sweep.dir={tmp_path}/multirun"])  # fmt: skip
    assert res.returncode == 0, res.stderr[-3000:]

    points = load_runs(uri, "macpo", sweep="demo", cache_dir=None, progress=False)
    runs = points.drop_duplicates("run_id")
    assert sorted(zip(runs.algo, runs.seed)) == [("macpo", 0), ("macpo", 1), ("qmix", 0), ("qmix", 1)]
    labels = {line.get_label() for ax in predator_prey_figure(points).axes for line in ax.get_lines()}
    assert {"MAC-PO", "QMIX"} <= labels

    out = tmp_path / "figures"
    args = ["--tracking-uri", uri, "--sweep", "demo", "--no-cache", "--no-progress"]
    assert figures_main([*args, "--out", str(out), "--reps", "100"]) == 0
    headline = (out / "headlines.md").read_text()
    assert "MAC-PO" in headline and "QMIX" in headline
    assert export_main([*args, "--out", str(tmp_path / "marl_eval.json")]) == 0
    data = data_process_pipeline(json.loads((tmp_path / "marl_eval.json").read_text()), ["return"])
    scores, _ = create_matrices_for_rliable(data, "predator_prey", ["return"])
    assert set(scores["mean_norm_return"]) == {"qmix", "macpo"}
    assert scores["mean_norm_return"]["macpo"].shape == (2, 1)  # [seeds, tasks]
