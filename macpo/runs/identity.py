"""A run's identity: a hash of its resolved config, without what cannot change its result.

Two launches of the same configuration (the same grid cell re-run tomorrow, on another
machine, with another launcher) get the same identity; any change to the env, algorithm,
sampler, seed, schedule or sweep gives a new one. The identity is stored as the MLflow tag
``identity``; re-running a grid uses it to skip finished runs and to resume interrupted ones,
and it names the run's checkpoint folder.

Left out of the hash: where things are written (``logger``, ``checkpoint``), how often a
checkpoint is taken (``checkpoint_interval``), the console (``progress_bar``), the device
(``device``, ``torch_threads``: a run started on a GPU may be finished on another machine), the
kernels the networks run with (``nn.kernels``: the same networks and results up to float rounding,
as across devices; a run may be resumed with the other setting), the guard's
patience (``max_nonfinite_streak``) and Hydra's own settings (paths, timestamps, launcher); an empty
``t_max_by_env`` (every budget but ``paper``) is left out too, so adding that key changed no identity.
Numbers are canonical: ``-2`` and ``-2.0`` hash alike.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable

from omegaconf import DictConfig, OmegaConf

IDENTITY_TAG = "identity"
#: top-level config keys that do not change what a run computes
EXCLUDED_KEYS: tuple[str, ...] = (
    "hydra", "logger", "checkpoint", "checkpoint_interval", "progress_bar", "device", "torch_threads",
    "max_nonfinite_streak", "nn",
)  # fmt: skip
#: hex digits kept from the SHA-256 (64 bits: no collision in any realistic store)
IDENTITY_LENGTH = 16


def identity_payload(cfg: DictConfig, excluded: Iterable[str] = EXCLUDED_KEYS) -> dict:
    """The resolved config as plain data, minus ``excluded`` keys, numbers canonical."""
    data = OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True)
    for key in excluded:
        data.pop(key, None)
    if not data.get("t_max_by_env"):
        data.pop("t_max_by_env", None)
    return _canonical(data)


def run_identity(cfg: DictConfig) -> str:
    """Hex digest naming this configuration (see the module docstring for what it ignores)."""
    text = json.dumps(identity_payload(cfg), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:IDENTITY_LENGTH]


def _canonical(value):
    if isinstance(value, dict):
        return {str(k): _canonical(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_canonical(v) for v in value]
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)
