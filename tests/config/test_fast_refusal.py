"""Type, range, key and name errors are refused with only Hydra and the schemas loaded.

``macpo.train`` imports torch, Lightning and MLflow only once a run starts; the Hydra callback
runs ``check_config`` before it imports ``macpo.runs.validation``. Each case runs the CLI entry in
a fresh interpreter and reports which heavy modules were imported when it returned. The checks
that need torch (env arguments, algorithm keys, sampler needs, stores) come after, and do import
it: the last case shows the probe sees an import. Speed itself is measured, not asserted (the
closing note of issue 21: ``/usr/bin/time`` on ``python -m macpo.train t_max=1.5``).
"""

from __future__ import annotations

import json

import pytest

from tests.helpers import REPO, TINY, run_cli

HEAVY = ("torch", "pytorch_lightning", "mlflow")
PROBE = (
    "import json, sys\n"
    "from macpo.train import cli\n"
    "code = cli()\n"
    f"print(json.dumps({{m: m in sys.modules for m in {HEAVY!r}}}))\n"
    "sys.exit(code)\n"
)


def imported_when_refused(tmp_path, overrides) -> dict[str, bool]:
    res = run_cli(["-c", PROBE, *TINY, *overrides, f"hydra.run.dir={tmp_path / 'run'}"], cwd=REPO)
    assert res.returncode == 2, res.stderr[-3000:]
    assert len(res.stderr.strip().splitlines()) == 1, res.stderr
    assert not (tmp_path / "run").exists()
    return json.loads(res.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize(
    "override",
    ["t_max=1.5", "seed=abc", "sampler.beta=2", "+t_maxx=5", "t_maxx=5", "logger.experiment=../x", "env=nope"],
)
def test_schema_errors_are_refused_before_torch_lightning_or_mlflow_is_imported(tmp_path, override):
    assert imported_when_refused(tmp_path, [override]) == dict.fromkeys(HEAVY, False)


def test_errors_that_need_torch_are_checked_after_it_is_imported(tmp_path):
    imported = imported_when_refused(tmp_path, ["env.grid_size=2", "env.n_agents=9"])  # the env refuses
    assert imported["torch"]
