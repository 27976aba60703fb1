"""Names never become paths: every string joined into a path stays one folder name, or is refused.

``logger.experiment``, ``env.name``, ``algo.name``, ``sampler.name`` and ``sweep_name`` are typed
``filename`` in the schema (``macpo.config.checks.name_problem``: no ``/`` or ``\\``, not ``.`` or
``..``, no control character, at most ``NAME_MAX_BYTES``); user paths (``checkpoint.dir``, a SQLite
store, ``hydra.run.dir``) must be paths a filesystem accepts (``path_problem``). Either way the
command is refused at validation: one line, exit code 2, nothing created.
"""

from __future__ import annotations

import pytest
from omegaconf import OmegaConf

from macpo.config import ConfigError
from macpo.config.checks import NAME_MAX_BYTES, name_problem, path_problem
from macpo.runs.checkpoints import run_checkpoint_dir
from macpo.tools.sweeps import main as sweeps_main
from tests.helpers import TINY, refused_in_one_line

LONG = "x" * 10_000


@pytest.mark.parametrize(
    "override, named",
    [
        ("logger.experiment=../../x", "logger.experiment"),
        ("logger.experiment=a/b", "logger.experiment"),
        (f"logger.experiment={LONG}", "logger.experiment"),
        ("env.name=../../../escape", "env.name"),
        ("algo.name=..", "algo.name"),
        ("sampler.name=a\\\\b", "sampler.name"),
        ("sweep_name=../grid", "sweep_name"),
        (f"checkpoint.dir=ck/{'y' * 300}", "checkpoint.dir"),
        (f"hydra.run.dir=runs/{'z' * 300}", "hydra.run.dir"),
        (f"logger.tracking_uri=sqlite:///{'w' * 300}/m.db", "logger.tracking_uri"),
    ],
    ids=["experiment-up", "experiment-slash", "experiment-10k", "env-name", "algo-dotdot", "sampler-backslash",
         "sweep-name", "checkpoint-dir-long", "hydra-dir-long", "store-path-long"],
)  # fmt: skip
def test_a_name_that_would_leave_its_folder_is_refused_in_one_line(tmp_path, override, named):
    line = refused_in_one_line(tmp_path, [*TINY, "device=cpu", override])
    assert line.startswith(f"error: {named}"), line
    assert len(line) < 400  # a 10,000-character name is not echoed whole


@pytest.mark.parametrize("name", ["../x", "a/b", "a\\b", ".", "..", "a\x00b", "tab\there", "é" * 33, "x" * 65])
def test_name_problem_refuses_paths_controls_and_long_names(name):
    assert name_problem(name)


@pytest.mark.parametrize("name", ["macpo", "fig4_ablation-smoke.v2", "x" * NAME_MAX_BYTES, "déjà vu"])
def test_name_problem_accepts_folder_names(name):
    assert name_problem(name) is None


def test_path_problem_names_the_filesystem_limits():
    assert "255" in path_problem("/tmp/" + "a" * 256)
    assert "4096" in path_problem("/tmp/" + "/".join(["a" * 200] * 21))
    assert path_problem("/tmp/" + "a" * 255) is None


def test_the_checkpoint_folder_stays_inside_its_root_whatever_reaches_it(tmp_path):
    """A config built in Python skips Hydra's check: the join itself refuses to leave the root."""
    cfg = OmegaConf.create({"checkpoint": {"dir": str(tmp_path / "ck")},
                            "logger": {"experiment": "../../x", "tracking_uri": "sqlite:///m.db"}})  # fmt: skip
    with pytest.raises(ConfigError, match="leads outside"):
        run_checkpoint_dir(cfg, "0123456789abcdef", tmp_path)
    cfg.logger.experiment = "macpo"
    assert run_checkpoint_dir(cfg, "0123456789abcdef", tmp_path) == tmp_path / "ck" / "macpo" / "0123456789abcdef"


@pytest.mark.parametrize("name", ["../conf/train", "../sweeps/demo", "/etc/passwd"])
def test_sweeps_status_reads_no_yaml_outside_sweeps(name, capsys):
    assert sweeps_main(["status", name]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"no sweep named {name!r}" in err[0], err
