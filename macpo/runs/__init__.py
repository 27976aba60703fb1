"""A run's lifecycle (``lifecycle``) and the checks made before it has any side effect (``validation``)."""

from macpo.config import ConfigError
from macpo.runs.lifecycle import run
from macpo.runs.validation import validate

__all__ = ["ConfigError", "run", "validate"]
