"""analysis on a store made by real training runs (two methods × two seeds through macpo.train)."""

import pytest

from analysis.figures import main as figures_main
from analysis.figures import predator_prey_figure
from analysis.load import load_runs
from tests.helpers import TINY, run_cli

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def trained_store(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("trained")
    uri = f"sqlite:///{tmp / 'runs.db'}"
    res = run_cli(["-m", "macpo.train", "-m", *TINY, "algo=qmix,macpo", "sampler=uniform", "seed=0,1",
                   "sweep_name=e2e", f"logger.tracking_uri={uri}", f"hydra.sweep.dir={tmp}/multirun"])
    assert res.returncode == 0, res.stderr[-3000:]
    return uri, tmp


def test_tidy_frame_from_trained_runs(trained_store):
    uri, tmp = trained_store
    points = load_runs(uri, "macpo", sweep="e2e", cache_dir=tmp / "cache", progress=False)
    runs = points.drop_duplicates("run_id")
    assert len(runs) == 4
    assert sorted(zip(runs.algo, runs.seed.astype(int))) == [("macpo", 0), ("macpo", 1), ("qmix", 0), ("qmix", 1)]
    assert set(runs.env) == {"predator_prey_small"} and set(runs.status) == {"FINISHED"}
    test = points[points.metric == "test/return_mean"]
    assert test.groupby("run_id").step.max().min() >= 1500  # curves reach t_max


def test_figure_two_has_one_line_per_algorithm(trained_store):
    uri, tmp = trained_store
    points = load_runs(uri, "macpo", sweep="e2e", cache_dir=tmp / "cache", progress=False)
    fig = predator_prey_figure(points)
    labels = {line.get_label() for ax in fig.axes for line in ax.get_lines() if not line.get_label().startswith("_")}
    assert len(labels) == 2
    assert any("QMIX" in label for label in labels) and any("MAC-PO" in label for label in labels)


def test_cli_renders_figures_for_the_trained_grid(trained_store, capsys):
    uri, tmp = trained_store
    out = tmp / "figures"
    code = figures_main(["--tracking-uri", uri, "--sweep", "e2e", "--out", str(out), "--no-progress",
                         "--cache-dir", str(tmp / "cache"), "--reps", "200"])
    assert code == 0
    printed = capsys.readouterr().out
    pngs = sorted(p.name for p in out.glob("*.png"))
    assert pngs and all(str(out / name) in printed for name in pngs)
    assert list(out.glob("*.pdf")) and list(out.glob("*.csv"))
