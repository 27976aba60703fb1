"""Algorithms the cluster test runs as jobs (``algo._target_=tests.cluster.jobs.<Name>``; a job
imports them from its working directory, the repository root).

Both are QMIX with one change, so everything a job goes through (submission, signals,
checkpoints, requeue, MLflow) is the real code path:

- ``PacedQMIX`` waits ``PACE_S`` before collecting each batch of episodes until its SLURM job has
  been requeued (``SLURM_RESTART_COUNT``), then runs at full speed. The preemption test needs a
  run that is still training when the time-limit signal arrives, however fast the machine (SLURM
  checks time limits only every 30 s), and that finishes soon after its first requeue; waiting
  uses no CPU. A job never requeued (the cancelled one) waits throughout.
- ``FailingQMIX`` raises at its first step: the planted failure whose message must reach the
  sweep's error output.
"""

from __future__ import annotations

import os
import time

from macpo.algos.qmix import QMIX

#: seconds a PacedQMIX run waits before each collection (one batch of episodes) until requeued
PACE_S = 2.0
#: the error FailingQMIX raises
PLANTED_ERROR = "planted failure: this job raises on purpose"


class PacedQMIX(QMIX):
    def collect(self, data) -> None:
        if int(os.environ.get("SLURM_RESTART_COUNT", "0")) == 0:
            time.sleep(PACE_S)
        super().collect(data)


class FailingQMIX(QMIX):
    def collect(self, data) -> None:
        raise RuntimeError(f"{PLANTED_ERROR} (env step {self.env_steps})")
