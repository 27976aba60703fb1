"""One timed training run of ``python -m macpo.tools.bench --only train``, in a child process.

``bench`` runs this file as a script with ``PYTHONPATH`` set to the folder whose ``macpo`` is
timed: this checkout's, or with ``--baseline DIR`` an older one's. So it imports no macpo module
at its top, and inside ``train_once`` only what every version has (``macpo.train.run``, the
algorithm base, the collector, the evaluation callback, ``conf/``), looked up in either layout.

``python bench_train.py '{"overrides": [...], "window": N, "out_dir": DIR}'`` prints one JSON line.
"""

from __future__ import annotations

import json
import os
import resource
import sys
import time


class _Clock:
    """Seconds spent in collection / evaluation / logging while the timing window is open."""

    def __init__(self) -> None:
        self.open = False
        self.in_eval = False
        self.spent = {"collection": 0.0, "evaluation": 0.0, "logging": 0.0}

    def wrap(self, owner, name: str, part: str) -> None:
        original = getattr(owner, name)
        clock = self

        def timed(*args, **kwargs):
            if not clock.open or (part == "collection" and clock.in_eval):
                return original(*args, **kwargs)
            clock.in_eval |= part == "evaluation"
            t0 = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                clock.spent[part] += time.perf_counter() - t0
                if part == "evaluation":
                    clock.in_eval = False

        setattr(owner, name, timed)


def train_once(overrides: list[str], window: int, out_dir: str) -> dict:
    """Train one configuration (in this process) for ``window`` env steps after the replay warm-up."""
    from hydra import compose, initialize_config_dir

    import macpo
    from macpo import train
    from macpo.algos import base
    from macpo.rollout import Collector

    try:
        from macpo.runs import callbacks
    except ImportError:  # a --baseline checkout older than macpo.runs.callbacks
        from macpo import callbacks

    clock = _Clock()
    clock.wrap(Collector, "run", "collection")
    clock.wrap(callbacks.GreedyEvaluation, "evaluate", "evaluation")
    clock.wrap(base.MarlAlgorithm, "flush_logs", "logging")
    result: dict = {}
    batch_end = base.MarlAlgorithm.on_train_batch_end

    def on_train_batch_end(self, *args):
        batch_end(self, *args)
        c = self.counters
        if not clock.open and c["updates"] >= 1:  # the first update ran: the window opens
            clock.open = True
            result.update(t0=time.perf_counter(), steps0=c["env_steps"], updates0=c["updates"])
        elif clock.open and c["env_steps"] - result["steps0"] >= window:
            clock.open = False
            result.update(t1=time.perf_counter(), steps1=c["env_steps"], updates1=c["updates"])
            self.trainer.should_stop = True

    base.MarlAlgorithm.on_train_batch_end = on_train_batch_end
    try:
        from macpo.config.paths import CONF_DIR
    except ImportError:  # a --baseline checkout older than macpo.config.paths: conf/ beside its package
        CONF_DIR = os.path.join(os.path.dirname(macpo.__file__), "..", "conf")
    with initialize_config_dir(config_dir=os.path.abspath(CONF_DIR), version_base="1.3"):
        cfg = compose("train", overrides=[
            *overrides, "budget=paper", "device=cpu", "progress_bar=false",
            f"logger.tracking_uri=sqlite:///{out_dir}/mlflow.db", f"checkpoint.dir={out_dir}/checkpoints",
            "checkpoint.keep_final=false",
        ])  # fmt: skip
    train.run(cfg)
    wall = result["t1"] - result["t0"]
    steps, updates = result["steps1"] - result["steps0"], result["updates1"] - result["updates0"]
    shares = {k: v / wall for k, v in clock.spent.items()}
    shares["update"] = 1.0 - sum(shares.values())  # the rest: sample, loss, backward, optimiser, Lightning
    return {
        "env_steps_per_s": steps / wall,
        "s_per_update": wall * shares["update"] / max(updates, 1),
        "shares": shares,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "window_steps": steps,
        "updates": updates,
    }


if __name__ == "__main__":
    job = json.loads(sys.argv[1])
    print(json.dumps(train_once(job["overrides"], job["window"], job["out_dir"])))
