"""The figures notebook runs end to end under papermill, in this virtualenv's interpreter."""

from __future__ import annotations

import sys

import nbformat
import pytest

from tests.helpers import EXPERIMENT, REPO, log_store, synthetic_runs

NOTEBOOK = REPO / "analysis" / "notebooks" / "figures.ipynb"


def test_notebook_has_a_papermill_parameters_cell():
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    (parameters,) = [c for c in notebook.cells if "parameters" in c.metadata.get("tags", [])]
    for name in ("tracking_uri", "experiment", "sweep", "out"):
        assert f"{name} = " in parameters.source
    assert notebook.metadata["kernelspec"]["name"] == "python3"


@pytest.mark.slow
def test_notebook_regenerates_figures_and_tables(tmp_path):
    papermill = pytest.importorskip("papermill")
    from jupyter_client.kernelspec import KernelSpecManager

    # "python3" must start this interpreter: jupyter_client swaps a bare "python" in the
    # kernelspec for sys.executable; a user-level spec pointing elsewhere would break that.
    spec = KernelSpecManager().get_kernel_spec("python3")
    assert spec.argv[0] in {"python", "python3", sys.executable}, spec.argv

    store = tmp_path / "mlflow.db"
    log_store(f"sqlite:///{store}", EXPERIMENT, synthetic_runs())
    out = tmp_path / "figures"
    executed = papermill.execute_notebook(
        str(NOTEBOOK),
        str(tmp_path / "executed.ipynb"),
        parameters={
            "tracking_uri": f"sqlite:///{store}",
            "experiment": EXPERIMENT,
            "sweep": None,
            "out": str(out),
            "reps": 200,
            "cache_dir": str(tmp_path / "cache"),
        },
        kernel_name="python3",
        cwd=str(tmp_path),
        progress_bar=False,
    )
    outputs = [o for cell in executed.cells if cell.cell_type == "code" for o in cell.get("outputs", [])]
    text = "".join(o.get("text", "") for o in outputs if o.get("output_type") == "stream")
    assert f"kernel interpreter: {sys.executable}" in text
    images = [o for o in outputs if "image/png" in o.get("data", {})]
    assert len(images) == 4  # Figures 1-4, inline
    markdown = "".join(o["data"]["text/markdown"] for o in outputs if "text/markdown" in o.get("data", {}))
    assert "fig1_replay_final_performance" in markdown and "MAC-PO trails the best method, QMIX" in markdown
    for name in ("fig1_replay", "fig2_predator_prey", "fig3_smac_marl", "fig4_ablation"):
        assert (out / f"{name}.png").is_file() and (out / f"{name}.pdf").is_file()
    assert (out / "headlines.md").is_file()
