"""A store shared by the runs of a grid (part of ``make test``: no cluster needed).

On a tracking server there is no file lock around the creation of the experiment, so the first
runs of a grid, starting at once on several workers, may each find no experiment and create it.
"""

from __future__ import annotations

from mlflow.tracking import MlflowClient

from macpo.runs.tracking import prepare_store


def test_a_run_uses_the_experiment_another_run_created_meanwhile(tmp_path, monkeypatch):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    other = prepare_store(uri, "grid")  # the other run: it looked, found nothing, created the experiment
    looked_up = MlflowClient.get_experiment_by_name
    calls = []

    def not_yet_the_first_time(self, name):  # this run looked just before the other created it
        calls.append(name)
        return None if len(calls) == 1 else looked_up(self, name)

    monkeypatch.setattr(MlflowClient, "get_experiment_by_name", not_yet_the_first_time)
    assert prepare_store(uri, "grid") == other
    assert len(calls) == 2
