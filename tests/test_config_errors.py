"""Bad input fails with a clear message before any env, network or store is built."""

import pytest
import torch

from macpo.train import ConfigError, validate
from tests.conftest import TINY, run_cli


@pytest.mark.parametrize(
    "override, message",
    [
        ("t_max=0", "t_max must be a positive integer"),
        ("batch_size=-1", "batch_size must be a positive integer"),
        ("buffer_size=0", "buffer_size must be a positive integer"),
        ("batch_size_run=0", "batch_size_run must be a positive integer"),
        ("test_nepisode=0", "test_nepisode must be a positive integer"),
        ("batch_size=65", "exceeds the replay capacity buffer_size"),
        ("env.punishment=0.5", "env.punishment must be <= 0"),
        ("device=tpu", "device must be auto, cpu or cuda"),
        ("trainer.precision=16-mixed", "trainer.precision=16-mixed is not supported"),
    ],
)
def test_invalid_values_raise_config_error(compose_cfg, override, message):
    cfg = compose_cfg([*TINY, override])
    with pytest.raises(ConfigError, match=message):
        validate(cfg)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message shown when CUDA is missing")
def test_cuda_without_cuda(compose_cfg):
    with pytest.raises(ConfigError, match="CUDA is not available"):
        validate(compose_cfg([*TINY, "device=cuda"]))


@pytest.mark.parametrize("sampler", ["discor", "remern", "macpo", "macpo_approx"])
def test_sampler_needing_q_star_is_refused_for_qmix(compose_cfg, sampler):
    cfg = compose_cfg([*TINY, "algo=qmix", f"sampler={sampler}"])
    with pytest.raises(ConfigError, match=r"needs the signals \['q_star'\].*algo=macpo"):
        validate(cfg)


def test_sc2_backend_without_starcraft_is_refused_before_the_store(tmp_path):
    db = tmp_path / "never.db"
    res = run_cli(["-m", "macpo.train", *TINY, "env=mmm2", "env.backend=sc2", f"logger.tracking_uri=sqlite:///{db}"],
                  env_extra={"SC2PATH": str(tmp_path / "no_sc2")})
    assert res.returncode != 0
    assert "env.backend=sc2" in res.stderr and "env.backend=lite needs none of this" in res.stderr
    assert not db.exists()


def test_defaults_validate(compose_cfg):
    validate(compose_cfg(TINY))


def test_cli_reports_errors_before_compute(tmp_path):
    db = tmp_path / "never.db"
    res = run_cli(["-m", "macpo.train", *TINY, "batch_size=100", f"logger.tracking_uri=sqlite:///{db}"])
    assert res.returncode != 0
    assert "exceeds the replay capacity" in res.stderr
    assert not db.exists()  # nothing was created


def test_cli_unknown_option_uses_hydra_message():
    res = run_cli(["-m", "macpo.train", "sampler=nope"])
    assert res.returncode != 0
    assert "Could not find 'sampler/nope'" in res.stderr
    assert "uniform" in res.stderr  # Hydra lists the available options
    res = run_cli(["-m", "macpo.train", "t_maxx=5"])
    assert res.returncode != 0 and "t_maxx" in res.stderr
