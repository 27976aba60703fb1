"""A non-editable install trains: the wheel carries conf/ and sweeps/, ``python -m macpo.train`` runs
from a folder that is not the checkout, with the installed package (not this checkout's)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from tests.helpers import REPO

#: what a build reads from the checkout (pyproject's packages, their package data, the readme)
BUILD_INPUTS = ("pyproject.toml", "README.md", "macpo", "analysis", "conf", "sweeps")


def clean_env() -> dict[str, str]:
    """This process's environment without anything that would put the checkout on sys.path."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP")}
    return dict(env, PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1", PYTHONNOUSERSITE="1")


def run(args, cwd, timeout=600):
    res = subprocess.run(args, cwd=cwd, env=clean_env(), capture_output=True, text=True, timeout=timeout)
    assert res.returncode == 0, f"{' '.join(map(str, args))}\n{res.stdout[-2000:]}\n{res.stderr[-3000:]}"
    return res


def venv_with(wheel: Path, root: Path) -> Path:
    """A fresh venv with ``wheel`` installed, then this venv's site-packages behind its own (torch and
    the rest, not downloaded again). The wheel goes in first, by this venv's pip, so that pip never
    sees this venv's macpo; a plain path line in a .pth adds a folder without running the .pth files
    in it, so this venv's editable macpo (its finder is set up by such a file) is never active there."""
    run([sys.executable, "-m", "venv", "--without-pip", str(root)], cwd=root.parent)
    python = root / "bin" / "python"
    run([sys.executable, "-m", "pip", "--python", str(python), "install", "--quiet", "--no-deps", "--no-index",
         str(wheel)], cwd=root.parent)  # fmt: skip
    site = Path(run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], root).stdout.strip())
    ours = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    (site / "dev_venv.pth").write_text("".join(f"{p}\n" for p in sorted(ours)))
    return python


@pytest.mark.slow
def test_a_non_editable_install_trains_from_another_folder(tmp_path):
    pytest.importorskip("setuptools")
    pytest.importorskip("wheel")
    # build a wheel from a copy (an in-tree build would write build/ and *.egg-info into the checkout)
    src = tmp_path / "src"
    src.mkdir()
    for name in BUILD_INPUTS:
        path = REPO / name
        if path.is_dir():
            shutil.copytree(path, src / name, symlinks=True, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(path, src / name)
    wheels = tmp_path / "wheels"
    run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation", "--wheel-dir",
         str(wheels), str(src)], cwd=tmp_path)  # fmt: skip
    (wheel,) = wheels.glob("macpo-*.whl")

    python = venv_with(wheel, tmp_path / "venv")
    shutil.rmtree(src)  # the installed package must not need its sources

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    where = run([python, "-c", "import macpo, macpo.config.paths as p; print(macpo.__file__); print(p.CONF_DIR)"],
                elsewhere).stdout.split()  # fmt: skip
    venv = (tmp_path / "venv").resolve()
    assert all(Path(p).resolve().is_relative_to(venv) for p in where), where  # the installed copy, not the checkout

    db = tmp_path / "store" / "mlflow.db"
    run([python, "-m", "macpo.train", "budget=smoke", "env=predator_prey_small", "algo=qmix", "sampler=uniform",
         "t_max=600", "test_interval=300", "log_interval=300", "checkpoint_interval=300", "progress_bar=false",
         f"logger.tracking_uri=sqlite:///{db}"], cwd=elsewhere)  # fmt: skip
    client = MlflowClient(tracking_uri=f"sqlite:///{db}")
    (run_,) = client.search_runs([client.get_experiment_by_name("macpo").experiment_id])
    assert run_.info.status == "FINISHED"
    assert (elsewhere / "outputs" / "runs").is_dir()  # Hydra's run folder, under the folder it was launched from
