"""The typed config: schemas in Hydra's ConfigStore, checked when the config is composed.

``macpo.config.schema`` registers the dataclasses (importing this package is enough);
``macpo.config.checks`` checks ranges and turns composition errors into one line naming the key;
``algo_preset`` reads an algorithm's values from ``conf/algo`` as its dataclass.
"""

from macpo.config.checks import (
    ConfigError,
    ConfigRejected,
    algo_preset,
    check_config,
    check_fields,
    compose,
    composition_error_message,
)
from macpo.config.schema import register

register()

__all__ = ["ConfigError", "ConfigRejected", "algo_preset", "check_config", "check_fields", "compose",
           "composition_error_message", "register"]
