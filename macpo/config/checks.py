"""Range checks of the composed config, and one-line messages that name the offending key.

OmegaConf checks each key's type while Hydra composes the config; ``check_config`` then checks
the ranges and choices declared in ``macpo.config.schema``. Both report the same way:
``t_max: expected an integer ≥ 1, got 1.5``.
"""

from __future__ import annotations

import dataclasses
import math
import typing
from collections.abc import Sequence

from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from macpo.config.paths import CONF_DIR


class ConfigError(ValueError):
    """A configuration that cannot run; raised before any env, network, store or folder is made."""


class ConfigRejected(SystemExit):
    """A ``ConfigError`` raised where Hydra swallows ``Exception`` (its callbacks): it stops the
    command before Hydra creates anything. Uncaught, Python prints the message and exits 1."""

    def __init__(self, error: ConfigError) -> None:
        super().__init__(f"error: {error}")
        self.error = error


def compose(overrides: Sequence[str] = (), config_name: str = "train") -> DictConfig:
    """Compose ``conf/<config_name>.yaml`` as ``python -m macpo.train`` does, then ``check_config`` it.

    A wrong type or range raises ``ConfigError`` with the one-line message the CLI prints.
    """
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    try:
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
            cfg = hydra_compose(config_name=config_name, overrides=list(overrides))
    except Exception as error:
        message = composition_error_message(error)
        if message is None:
            raise
        raise ConfigError(message) from error
    check_config(cfg)
    return cfg


# ---- what a field expects -----------------------------------------------------------------
def _kind(tp) -> tuple[str, bool]:
    """(noun phrase for the type, whether None is allowed)."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is typing.Union:
        inner = [a for a in args if a is not type(None)]
        return _kind(inner[0])[0], True
    if tp is bool:
        return "true or false", False
    if tp is int:
        return "an integer", False
    if tp is float:
        return "a number", False
    if tp is str:
        return "a string", False
    if origin in (list, typing.List):  # noqa: UP006
        return f"a list of {_kind(args[0])[0].removeprefix('a ').removeprefix('an ')}s" if args else "a list", False
    if origin in (dict, typing.Dict):  # noqa: UP006
        return "a mapping", False
    return "a value", False


def _fmt(number) -> str:
    return f"{number:g}" if isinstance(number, float) else str(number)


def expectation(tp, rules: dict) -> str:
    """``an integer ≥ 1``, ``a number in [0, 1]``, ``one of reweight, resample``, ..."""
    if rules.get("choices"):
        return "one of " + ", ".join(rules["choices"])
    noun, nullable = _kind(tp)
    lo = ("[", rules["ge"]) if "ge" in rules else ("(", rules["gt"]) if "gt" in rules else None
    hi = ("]", rules["le"]) if "le" in rules else (")", rules["lt"]) if "lt" in rules else None
    if lo and hi:
        noun += f" in {lo[0]}{_fmt(lo[1])}, {_fmt(hi[1])}{hi[0]}"
    elif lo:
        noun += f" {'≥' if lo[0] == '[' else '>'} {_fmt(lo[1])}"
    elif hi:
        noun += f" {'≤' if hi[0] == ']' else '<'} {_fmt(hi[1])}"
    if rules.get("nonempty"):
        noun = "a non-empty string"
    return noun + (" or null" if nullable else "")


def _shown(value) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if value is None:
        return "null"
    if isinstance(value, str) and value == "":
        return "an empty string"
    return str(value)


def _fields(schema: type) -> dict[str, tuple[object, dict]]:
    """field name -> (its type, its range rules) for a schema dataclass."""
    hints = typing.get_type_hints(schema)
    return {f.name: (hints.get(f.name, f.type), dict(f.metadata)) for f in dataclasses.fields(schema)}


def _violates(value, rules: dict) -> bool:
    if value is None:
        return False  # a None the type forbids is OmegaConf's to refuse
    if "choices" in rules and value not in rules["choices"]:
        return True
    if rules.get("nonempty") and not str(value).strip():
        return True
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if isinstance(value, float) and not math.isfinite(value):
            return True
        if "ge" in rules and not value >= rules["ge"]:
            return True
        if "gt" in rules and not value > rules["gt"]:
            return True
        if "le" in rules and not value <= rules["le"]:
            return True
        if "lt" in rules and not value < rules["lt"]:
            return True
    return False


# ---- checks -------------------------------------------------------------------------------
def check_config(cfg: DictConfig) -> None:
    """Every key a schema declares: set (not ``???``), in range, one of its choices."""
    _check_node(cfg, "")


def _check_node(node, prefix: str) -> None:
    if isinstance(node, ListConfig):
        return
    schema = OmegaConf.get_type(node)
    fields = _fields(schema) if dataclasses.is_dataclass(schema) else {}
    for name in node.keys():
        name = str(name)
        full = f"{prefix}{name}"
        if name == "hydra" and not prefix:
            continue
        if OmegaConf.is_missing(node, name):
            raise ConfigError(f"{full}: no value given; set one ({full}=...)")
        try:
            value = node[name]
        except OmegaConfBaseException as error:
            raise ConfigError(f"{full}: {_first_line(error)}") from None
        if isinstance(value, DictConfig):
            _check_node(value, full + ".")
            continue
        tp, rules = fields.get(name, (None, {}))
        if rules and _violates(value, rules):
            raise ConfigError(f"{full}: expected {expectation(tp, rules)}, got {_shown(value)}")


def _first_line(error: BaseException) -> str:
    return str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__


def composition_error_message(error: BaseException) -> str | None:
    """One line for an error Hydra raised while composing, naming the key; None if not a config error."""
    from hydra.errors import CompactHydraException, MissingConfigException

    cause = error.__cause__ if isinstance(error.__cause__, OmegaConfBaseException) else error
    if isinstance(cause, OmegaConfBaseException) and getattr(cause, "full_key", None):
        full_key = str(cause.full_key)
        schema, name = getattr(cause, "object_type", None), str(getattr(cause, "key", "") or "")
        if dataclasses.is_dataclass(schema) and name in _fields(schema) and "not in" not in str(cause):
            tp, rules = _fields(schema)[name]
            return f"{full_key}: expected {expectation(tp, rules)}, got {_shown(getattr(cause, 'value', None))}"
        if "not in" in _first_line(cause) or "is not in struct" in _first_line(cause):
            return f"{full_key}: no such key (a new key is added with +{full_key}=...)"
        return f"{full_key}: {_first_line(cause)}"
    if isinstance(error, MissingConfigException):
        return " ".join(str(error).split("Config search path")[0].split())
    if isinstance(error, CompactHydraException):  # Hydra's user-facing errors: bad override, unknown option
        return " ".join(str(error).split())
    return None
