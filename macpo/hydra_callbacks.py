"""Hydra callbacks: prepare the MLflow store once before a multirun launches its jobs."""

from __future__ import annotations

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from macpo.tracking import prepare_store, resolve_tracking_uri


class PrepareMlflowStore(Callback):
    def on_multirun_start(self, config: DictConfig, **kwargs) -> None:
        uri = resolve_tracking_uri(config.logger.tracking_uri)
        prepare_store(uri, config.logger.experiment)
