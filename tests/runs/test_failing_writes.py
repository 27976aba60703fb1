"""Full disks and failing writes: the run ends FAILED with one line naming what could not be written
and why, its temporary files removed, the data it logged kept, and nothing left claiming to train.

The failure is injected in a real ``python -m macpo.train`` process (no root, no tiny filesystem
needed): the second checkpoint's write runs out of space, torch's writer fails, the sidecar's
fsync fails, or the MLflow store refuses a write. The code under test is general: any exception
while writing a checkpoint becomes ``macpo.runs.WriteFailed`` (``checkpoints.writing``), and so
does one from the store (``ResumableMLFlowLogger``).
"""

from __future__ import annotations

import pytest
from mlflow.tracking import MlflowClient

from macpo.config import compose
from macpo.runs.checkpoints import LAST_CKPT, SIDECAR, RunLock, check_checkpoint, read_sidecar, run_checkpoint_dir
from macpo.runs.grids import run_state
from macpo.runs.identity import run_identity
from tests.helpers import REPO, TINY, run_cli, store_uri

ARGS = [*TINY, "t_max=3000", "checkpoint_interval=700", "device=cpu"]

#: run the CLI with one write made to fail; ``MODE`` picks which
INJECT = '''
import errno, os, sys
import pytorch_lightning as pl
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

MODE = {mode!r}
calls = {{"save": 0, "fsync": 0, "batch": 0}}
save, fsync, log_batch = pl.Trainer.save_checkpoint, os.fsync, MlflowClient.log_batch

def failing_save(self, path, *args, **kwargs):
    calls["save"] += 1
    if calls["save"] < 2 or MODE not in ("enospc", "torch-writer"):
        return save(self, path, *args, **kwargs)
    with open(path, "wb") as f:
        f.write(b"x" * 100_000)  # a partial file, as a full disk leaves it
    if MODE == "enospc":
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
    raise RuntimeError("[enforce fail at inline_container.cc:603] . "
                       "PytorchStreamWriter failed writing file data/7: file write failed")

def failing_fsync(fd):
    if MODE == "fsync" and os.readlink(f"/proc/self/fd/{{fd}}").endswith("last.json.tmp"):
        calls["fsync"] += 1
        if calls["fsync"] >= 2:
            raise OSError(errno.EIO, os.strerror(errno.EIO))
    return fsync(fd)

def failing_log_batch(self, run_id, metrics=(), *args, **kwargs):
    calls["batch"] += any(m.key == "loss" for m in metrics)
    if MODE == "store" and calls["batch"] >= 2:  # the second write of the training metrics
        raise MlflowException("(sqlite3.OperationalError) database or disk is full")
    return log_batch(self, run_id, metrics, *args, **kwargs)

pl.Trainer.save_checkpoint, os.fsync, MlflowClient.log_batch = failing_save, failing_fsync, failing_log_batch
from macpo.train import cli
sys.exit(cli())
'''


@pytest.mark.parametrize(
    "mode, cause",
    [("enospc", "No space left on device [ENOSPC]"), ("torch-writer", "PytorchStreamWriter failed writing file"),
     ("fsync", "Input/output error [EIO]"), ("store", "database or disk is full")],
)  # fmt: skip
def test_a_run_that_cannot_write_ends_failed_in_one_line_and_cleans_up(tmp_path, mode, cause):
    uri = store_uri(tmp_path / "store" / "m.db")
    args = [*ARGS, f"logger.tracking_uri={uri}", f"hydra.run.dir={tmp_path / 'run'}"]
    res = run_cli(["-c", INJECT.format(mode=mode), *args], cwd=REPO, timeout=600)
    assert res.returncode == 1, res.stderr[-3000:]
    errors = [line for line in res.stderr.splitlines() if line.startswith("error")]
    assert "Traceback" not in res.stderr and len(errors) == 1, res.stderr[-3000:]
    cfg = compose(args[:-1])
    run_dir = run_checkpoint_dir(cfg, run_identity(cfg), tmp_path)
    what = f"to the MLflow store {uri}" if mode == "store" else str(run_dir / LAST_CKPT)
    assert errors[0].startswith(f"error: the run FAILED: cannot write {what}") and cause in errors[0], errors[0]
    assert not [p for p in tmp_path.rglob("*") if p.name.endswith(".tmp")]  # the partial files are gone

    client = MlflowClient(uri)
    (run,) = client.search_runs([client.get_experiment_by_name("macpo").experiment_id])
    assert run.info.status == "FAILED" and run.data.tags["failure"].startswith("cannot write")
    assert client.get_metric_history(run.info.run_id, "loss")  # what was logged before the failure is kept
    assert not RunLock(run_dir).held_elsewhere()
    assert run_state(run.info.status, lock_held=False) == "failed"  # sweeps status: not running
    if mode != "store":  # the first checkpoint is intact: a rerun resumes from it
        meta = read_sidecar(run_dir / SIDECAR)
        assert meta["mlflow_run_id"] == run.info.run_id
        assert check_checkpoint(run_dir / LAST_CKPT, meta["sha256"]) is None
