"""Launchers: joblib and submitit_local run for real; slurm and ray compose and match their plugins' schemas."""

from __future__ import annotations

import importlib
import importlib.util

import pytest
from hydra import compose, initialize_config_dir
from mlflow.tracking import MlflowClient
from omegaconf import OmegaConf

from macpo.config.paths import CONF_DIR
from tests.helpers import TINY, run_cli

LAUNCHERS = {
    "joblib": "hydra_plugins.hydra_joblib_launcher.joblib_launcher.JoblibLauncher",
    "submitit_local": "hydra_plugins.hydra_submitit_launcher.submitit_launcher.LocalLauncher",
    "slurm": "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher",
    "ray": "hydra_plugins.hydra_ray_launcher.ray_launcher.RayLauncher",
}
#: the plugin dataclass each of our launcher files must fit (module, class)
SCHEMAS = {
    "joblib": ("hydra_plugins.hydra_joblib_launcher.config", "JobLibLauncherConf"),
    "submitit_local": ("hydra_plugins.hydra_submitit_launcher.config", "LocalQueueConf"),
    "slurm": ("hydra_plugins.hydra_submitit_launcher.config", "SlurmQueueConf"),
    "ray": ("hydra_plugins.hydra_ray_launcher._config", "RayLauncherConf"),
}


def launcher_cfg(name: str):
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(config_name="train", overrides=[f"hydra/launcher={name}"], return_hydra_config=True)
    return cfg.hydra.launcher


@pytest.mark.parametrize("name", sorted(LAUNCHERS))
def test_launcher_config_composes_with_its_target(name):
    launcher = launcher_cfg(name)
    assert launcher._target_ == LAUNCHERS[name]


@pytest.mark.parametrize("name", sorted(SCHEMAS))
def test_launcher_config_fits_the_plugin_schema(name):
    """Every key is one the plugin knows, with a value of its type (skipped where the plugin is absent)."""
    module, cls = SCHEMAS[name]
    if importlib.util.find_spec(module.rsplit(".", 1)[0]) is None:
        pytest.skip(f"{module.split('.')[1]} is not installed (optional extra)")
    schema = OmegaConf.structured(getattr(importlib.import_module(module), cls))
    ours = OmegaConf.to_container(launcher_cfg(name), resolve=False)
    OmegaConf.merge(schema, ours)  # raises on an unknown key or a wrongly typed value


def test_slurm_settings_live_in_one_file():
    slurm = launcher_cfg("slurm")
    for key in ("partition", "timeout_min", "gpus_per_node", "cpus_per_task", "mem_gb", "max_num_timeout"):
        assert key in slurm, key
    assert slurm.max_num_timeout > 0  # a timed-out run is requeued and resumes from its checkpoint


def test_ray_config_names_its_resources():
    ray = launcher_cfg("ray").ray
    assert "address" in ray.init and {"num_cpus", "num_gpus"} <= set(ray.remote)


def two_jobs(tmp_path, launcher: str, *extra: str):
    uri = f"sqlite:///{tmp_path / 'm.db'}"
    res = run_cli(["-m", "macpo.train", "-m", *TINY, "t_max=400", "seed=0,1", f"hydra/launcher={launcher}",
                   *extra, f"logger.tracking_uri={uri}", f"hydra.sweep.dir={tmp_path / 'sweep'}"])  # fmt: skip
    assert res.returncode == 0, res.stderr[-3000:]
    client = MlflowClient(uri)
    runs = client.search_runs([client.get_experiment_by_name("macpo").experiment_id])
    assert sorted(r.data.tags["seed"] for r in runs) == ["0", "1"]
    assert {r.info.status for r in runs} == {"FINISHED"}
    return runs


@pytest.mark.slow
def test_joblib_runs_two_jobs(tmp_path):
    two_jobs(tmp_path, "joblib", "hydra.launcher.n_jobs=2")


@pytest.mark.slow
def test_submitit_local_runs_two_jobs(tmp_path):
    two_jobs(tmp_path, "submitit_local", "hydra.launcher.timeout_min=10")
    assert list((tmp_path / "sweep" / ".submitit").iterdir())  # submitit ran them
