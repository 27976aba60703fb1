"""Bad input fails with a one-line message naming the key, before any env, network, store or folder.

Typed keys fail while the config is composed (``macpo.config.compose``: Hydra + the schemas of
``macpo.config.schema`` + their ranges); everything else in ``validate``, which a Hydra callback
runs before Hydra makes the run's folder. The CLI cases check that nothing was created.
"""

import dataclasses

import pytest
import torch
from omegaconf import MISSING

from macpo.config import ConfigError, compose, schema
from macpo.runs.tracking import StoreError, check_tracking_uri, probe_server_store
from macpo.runs.validation import check_launcher, validate
from tests.helpers import REPO, TINY, run_cli


@pytest.mark.parametrize(
    "override, message",
    [
        ("t_max=1.5", "t_max: expected an integer ≥ 1, got 1.5"),
        ("t_max=true", "t_max: expected an integer ≥ 1, got true"),
        ("t_max=abc", "t_max: expected an integer ≥ 1, got abc"),
        ("t_max=0", "t_max: expected an integer ≥ 1, got 0"),
        ("seed=1.5", "seed: expected an integer in [0, 4294967295], got 1.5"),
        ("seed=abc", "seed: expected an integer in [0, 4294967295], got abc"),
        ("seed=-1", "seed: expected an integer in [0, 4294967295], got -1"),
        ("batch_size=2.5", "batch_size: expected an integer ≥ 1, got 2.5"),
        ("batch_size=-1", "batch_size: expected an integer ≥ 1, got -1"),
        ("buffer_size=0", "buffer_size: expected an integer ≥ 1, got 0"),
        ("test_nepisode=0", "test_nepisode: expected an integer ≥ 1, got 0"),
        ("max_nonfinite_streak=0", "max_nonfinite_streak: expected an integer ≥ 1, got 0"),
        ("torch_threads=-1", "torch_threads: expected an integer ≥ 0, got -1"),
        ("env.punishment=abc", "env.punishment: expected a number ≤ 0, got abc"),
        ("env.punishment=0.5", "env.punishment: expected a number ≤ 0, got 0.5"),
        ("env.n_agents=two", "env.n_agents: expected an integer ≥ 1, got two"),
        ("logger.experiment=", "logger.experiment: expected a non-empty string, got an empty string"),
        ("logger.enabled=maybe", "logger.enabled: expected true or false, got maybe"),
        ("checkpoint.save_buffer=sometimes", "checkpoint.save_buffer: expected true or false, got sometimes"),
        ("sampler.mode=sometimes", "sampler.mode: expected one of reweight, resample, got sometimes"),
        ("sampler.beta=2", "sampler.beta: expected a number in [0, 1], got 2"),
        ("sampler.temperature=0", "sampler.temperature: expected a number > 0, got 0"),
        ("algo.lr=-0.1", "algo.lr: expected a number > 0, got -0.1"),
        ("algo.gamma=abc", "algo.gamma: expected a number in [0, 1], got abc"),
        ("algo.agent_hidden_dim=1.5", "algo.agent_hidden_dim: expected an integer ≥ 1, got 1.5"),
        ("t_maxx=5", "t_maxx: no such key"),
        ("algo.lrr=5", "algo.lrr: no such key"),
        ("+algo.hidden=3", "algo.hidden: no such key"),
    ],
)
def test_typed_keys_fail_at_composition_naming_the_key(override, message):
    with pytest.raises(ConfigError) as error:
        compose([*TINY, override])
    assert str(error.value).startswith(message), str(error.value)
    assert "\n" not in str(error.value)


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["batch_size=65"], "exceeds the replay capacity buffer_size"),
        (["device=tpu"], "device must be auto, cpu or cuda"),
        (["trainer.precision=16-mixed"], "trainer.precision=16-mixed is not supported"),
        (["env.grid_size=2", "env.n_agents=9"], "env=predator_prey_small: "),
        (["logger.tracking_uri=foo://x"], "unknown scheme 'foo'"),
        (["logger.tracking_uri=outputs/m.db"], "give a database URI"),
        (["logger.tracking_uri=sqlite:////tmp"], "/tmp is a folder"),
    ],
)
def test_invalid_values_raise_config_error(overrides, message):
    cfg = compose([*TINY, *overrides])
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(".", r"\.")):
        validate(cfg)


def test_store_under_a_file_is_refused(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(StoreError, match="is a file"):
        check_tracking_uri(f"sqlite:///{tmp_path / 'file' / 'm.db'}")
    assert check_tracking_uri(f"sqlite:///{tmp_path / 'a' / 'b' / 'm.db'}").endswith("m.db")
    assert not (tmp_path / "a").exists()  # checking creates nothing


def test_unreachable_server_is_refused_after_one_request_without_retries(monkeypatch):
    """Nothing listens on port 9: MLflow's defaults retried for minutes; the run is refused after one
    request, made with MLflow's retries off and a timeout of at most ten seconds."""
    from mlflow.environment_variables import MLFLOW_HTTP_REQUEST_MAX_RETRIES, MLFLOW_HTTP_REQUEST_TIMEOUT
    from mlflow.utils import rest_utils

    requests, http_request = [], rest_utils.http_request

    def recorded(*args, max_retries=None, timeout=None, **kwargs):
        requests.append((MLFLOW_HTTP_REQUEST_MAX_RETRIES.get() if max_retries is None else max_retries,
                         MLFLOW_HTTP_REQUEST_TIMEOUT.get() if timeout is None else timeout))  # fmt: skip
        return http_request(*args, max_retries=max_retries, timeout=timeout, **kwargs)

    monkeypatch.setattr(rest_utils, "http_request", recorded)
    cfg = compose([*TINY, "logger.tracking_uri=http://127.0.0.1:9"])
    with pytest.raises(ConfigError, match=r"http://127\.0\.0\.1:9.*no MLflow server answered"):
        validate(cfg)
    assert len(requests) == 1
    with pytest.raises(StoreError, match="no MLflow server answered"):
        probe_server_store("http://127.0.0.1:9")
    assert len(requests) == 2
    assert all(retries == 0 and 0 < timeout <= 10 for retries, timeout in requests), requests


@pytest.mark.parametrize(
    "overrides",
    [["env.n_agents=30", "env.grid_size=2"], ["seed=4294967296"], ["logger.tracking_uri=foo://x"],
     ["sampler=discor", "algo=qmix"]],
)  # fmt: skip
def test_a_refused_run_creates_no_store_lock_or_folder(tmp_path, overrides, monkeypatch):
    import macpo.train as train

    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError):
        train.run(compose([*TINY, f"logger.tracking_uri=sqlite:///{tmp_path / 'store' / 'm.db'}", *overrides]))
    assert list(tmp_path.iterdir()) == []


def test_missing_launcher_plugin_names_its_install_line():
    from omegaconf import OmegaConf

    hydra_cfg = OmegaConf.create({"launcher": {"_target_": "hydra_plugins.hydra_ray_launcher.ray_launcher.RayLauncher"},
                                  "runtime": {"choices": {"hydra/launcher": "ray"}}})  # fmt: skip
    try:
        import hydra_plugins.hydra_ray_launcher  # noqa: F401
    except ImportError:
        with pytest.raises(ConfigError, match=r'hydra/launcher=ray needs its Hydra plugin.*pip install -e "\.\[ray\]"'):
            check_launcher(hydra_cfg)
    else:
        check_launcher(hydra_cfg)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message shown when CUDA is missing")
def test_cuda_without_cuda():
    with pytest.raises(ConfigError, match="CUDA is not available"):
        validate(compose([*TINY, "device=cuda"]))


@pytest.mark.parametrize("sampler", ["discor", "remern", "macpo", "macpo_approx"])
def test_sampler_needing_q_star_is_refused_for_qmix(sampler):
    cfg = compose([*TINY, "algo=qmix", f"sampler={sampler}"])
    with pytest.raises(ConfigError, match=r"needs the signals \['q_star'\].*algo=macpo"):
        validate(cfg)


def test_defaults_validate():
    validate(compose(TINY))


def test_one_source_of_defaults():
    """The schemas give types and ranges only; every value comes from a yaml file."""
    for schemas in (*schema.SCHEMAS.values(), {"train": schema.TrainConfig}):
        for node in schemas.values():
            for f in dataclasses.fields(node):
                if f.default_factory is not dataclasses.MISSING:
                    nested = f.default_factory()
                    assert all(getattr(nested, g.name) == MISSING for g in dataclasses.fields(nested)), f.name
                else:
                    assert f.default == MISSING, f"{node.__name__}.{f.name} has a default in the schema"


def slow(*values):
    """A CLI case run only with the slow tests (each one starts Python, torch and Lightning)."""
    return pytest.param(*values, marks=pytest.mark.slow)


def _nothing_created(tmp_path, db):
    assert not db.exists() and not (tmp_path / "checkpoints").exists()
    assert not (tmp_path / "outputs").exists()  # Hydra's run folder: refused before it is made
    assert [p.name for p in tmp_path.iterdir()] == []


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["t_max=1.5"], "error: t_max: expected an integer ≥ 1, got 1.5"),
        (["env.n_agents=30", "env.grid_size=2"], "error: env=predator_prey_small: "),
        slow(["batch_size=100"], "exceeds the replay capacity"),
        slow(["seed=-1"], "error: seed: expected an integer"),
        slow(["env.punishment=0.5"], "error: env.punishment: expected a number ≤ 0, got 0.5"),
        slow(["logger.experiment= "], "error: logger.experiment: expected a non-empty string"),
        slow(["logger.tracking_uri=foo://store"], "unknown scheme 'foo'"),
        slow(["logger.tracking_uri=http://127.0.0.1:9"], "http://127.0.0.1:9"),
    ],
)
def test_cli_refuses_in_one_line_and_creates_nothing(tmp_path, overrides, message):
    db = tmp_path / "never.db"
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    res = run_cli(["-m", "macpo.train", *TINY, f"logger.tracking_uri=sqlite:///{db}", *overrides], cwd=cwd,
                  env_extra={"PYTHONPATH": str(REPO)})  # fmt: skip
    assert res.returncode == 2, res.stderr[-2000:]
    assert message in res.stderr
    assert "Traceback" not in res.stderr and len(res.stderr.strip().splitlines()) == 1, res.stderr
    cwd.rmdir()  # fails if Hydra or the run wrote anything in the launch directory
    _nothing_created(tmp_path, db)


@pytest.mark.slow
def test_cli_multirun_with_a_missing_launcher_creates_nothing(tmp_path):
    try:
        import hydra_plugins.hydra_ray_launcher  # noqa: F401

        pytest.skip("the ray launcher is installed here")
    except ImportError:
        pass
    db = tmp_path / "never.db"
    res = run_cli(["-m", "macpo.train", "-m", *TINY, "seed=0,1", "hydra/launcher=ray",
                   f"logger.tracking_uri=sqlite:///{db}", f"hydra.sweep.dir={tmp_path / 'sweep'}"])  # fmt: skip
    assert res.returncode == 2, res.stderr[-2000:]
    assert 'hydra/launcher=ray needs its Hydra plugin' in res.stderr and "[ray]" in res.stderr
    _nothing_created(tmp_path, db)


def test_cli_multirun_checks_every_job_before_launching(tmp_path):
    db = tmp_path / "never.db"
    res = run_cli(["-m", "macpo.train", "-m", *TINY, "env.punishment=0,-1", "algo=qmix", "sampler=uniform,discor",
                   f"logger.tracking_uri=sqlite:///{db}", f"hydra.sweep.dir={tmp_path / 'sweep'}"])  # fmt: skip
    assert res.returncode == 2, res.stderr[-2000:]
    assert "sampler=discor needs the signals ['q_star']" in res.stderr
    _nothing_created(tmp_path, db)


@pytest.mark.slow
def test_full_traceback_on_request(tmp_path):
    res = run_cli(["-m", "macpo.train", *TINY, "t_max=1.5", f"logger.tracking_uri=sqlite:///{tmp_path / 'm.db'}"],
                  env_extra={"HYDRA_FULL_ERROR": "1"})  # fmt: skip
    assert res.returncode != 0 and "Traceback" in res.stderr


def test_cli_unknown_option_uses_hydra_message():
    res = run_cli(["-m", "macpo.train", "sampler=nope"])
    assert res.returncode == 2
    assert "Could not find 'sampler/nope'" in res.stderr
    assert "uniform" in res.stderr  # Hydra lists the available options
    res = run_cli(["-m", "macpo.train", "t_maxx=5"])
    assert res.returncode == 2 and "t_maxx: no such key" in res.stderr


def test_sc2_backend_without_starcraft_is_refused_before_the_store(tmp_path):
    db = tmp_path / "never.db"
    res = run_cli(["-m", "macpo.train", *TINY, "env=mmm2", "env.backend=sc2", f"logger.tracking_uri=sqlite:///{db}"],
                  env_extra={"SC2PATH": str(tmp_path / "no_sc2")})
    assert res.returncode == 2
    assert "env.backend=sc2" in res.stderr and "env.backend=lite needs none of this" in res.stderr
    assert not db.exists()
