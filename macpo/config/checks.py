"""Range checks of the composed config, and one-line messages that name the offending key.

OmegaConf checks each key's type while Hydra composes the config; ``check_config`` then checks
the ranges and choices declared in ``macpo.config.schema``. Both report the same way:
``t_max: expected an integer ≥ 1, got 1.5``.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import functools
import math
import typing
from collections.abc import Sequence

from omegaconf import MISSING, DictConfig, ListConfig, OmegaConf
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


def algo_targets() -> dict[str, str]:
    """The options of ``conf/algo`` that are algorithms → the class each names (``algo._target_``, in
    its own yaml or one it extends; ``base``, ``value_based`` and ``actor_critic`` hold shared values)."""

    def target(name: str) -> str | None:
        raw = OmegaConf.load(CONF_DIR / "algo" / f"{name}.yaml")
        if OmegaConf.select(raw, "algo._target_"):
            return str(raw.algo._target_)
        parents = [d for d in raw.get("defaults", []) if isinstance(d, str) and d != "_self_" and "/" not in d]
        return target(parents[0]) if parents else None

    targets = {p.stem: target(p.stem) for p in sorted((CONF_DIR / "algo").glob("*.yaml"))}
    return {name: t for name, t in targets.items() if t}


def algo_preset(name: str):
    """The hyperparameters of ``conf/algo/<name>.yaml`` as its schema dataclass (a fresh copy).

    What an algorithm built in Python without a ``cfg`` trains with (tests, benchmarks).
    """
    return copy.deepcopy(_algo_preset(name))


@functools.cache
def _algo_preset(name: str):
    return OmegaConf.to_object(compose([f"algo={name}"]).algo)


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


#: bytes a name that becomes one folder name may have: three of them and a timestamp still fit
#: the 255 bytes a filesystem allows a folder name (``hydra.run.dir`` joins env, algo and sampler)
NAME_MAX_BYTES = 64


def name_problem(value: str) -> str | None:
    """Why ``value`` cannot be used as one folder name, or None (the rule of every ``filename`` key)."""
    if value in (".", "..") or any(c in value for c in "/\\"):
        return "a name, not a path: no / or \\, not . or .."
    if any(ord(c) < 32 or ord(c) == 127 for c in value):
        return "a name may not hold control characters"
    size = len(value.encode("utf-8", "surrogatepass"))
    if size > NAME_MAX_BYTES:
        return f"{size} bytes long; a name becomes a folder name, so at most {NAME_MAX_BYTES} bytes"
    return None


#: what Linux filesystems allow: bytes in one folder or file name, bytes in a whole path
NAME_MAX, PATH_MAX = 255, 4096


def path_problem(path) -> str | None:
    """Why the filesystem would refuse ``path`` (a name too long, a NUL byte), or None."""
    text = str(path)
    if "\0" in text:
        return "the path holds a NUL byte"
    encoded = [len(part.encode("utf-8", "surrogateescape")) for part in text.split("/")]
    if max(encoded, default=0) > NAME_MAX:
        return f"a folder or file name in it is {max(encoded)} bytes long; a filesystem allows {NAME_MAX}"
    if sum(encoded) + len(encoded) >= PATH_MAX:
        return f"the path is longer than the {PATH_MAX} bytes a filesystem allows"
    return None


def unknown_key_message(full_key: str, known) -> str:
    """``t_maxx: no such key (did you mean t_max?)``: the nearest real key, never a fix that does nothing."""
    prefix, _, name = full_key.rpartition(".")
    near = difflib.get_close_matches(name, [str(k) for k in known if not str(k).startswith("_")], n=1, cutoff=0.6)
    hint = f" (did you mean {prefix + '.' if prefix else ''}{near[0]}?)" if near else ""
    return f"{full_key}: no such key{hint}"


def _shown(value) -> str:
    if isinstance(value, str) and len(value) > 60:
        return repr(value[:40] + "…")
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
    if rules.get("filename") and name_problem(str(value)):
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
    """Every key a schema declares: set (not ``???``), in range, one of its choices; a name that
    becomes a folder is one safe folder name; a closed schema holds no key it does not declare
    (``+t_maxx=5`` would be logged, change the run's identity and do nothing).

    Needs only Hydra and the schemas: the CLI calls it before importing torch, Lightning or MLflow.
    """
    _check_node(cfg, "")


def check_fields(obj, prefix: str = "") -> None:
    """The ranges and choices a schema dataclass declares, on an instance of it (``algo.w: ...``)."""
    for name, (tp, rules) in _fields(type(obj)).items():
        value = getattr(obj, name)
        if isinstance(value, str) and value == MISSING:
            raise ConfigError(f"{prefix}{name}: no value given")
        if rules and _violates(value, rules):
            raise ConfigError(f"{prefix}{name}: expected {expectation(tp, rules)}, got {_shown(value)}")


def _check_node(node, prefix: str) -> None:
    if isinstance(node, ListConfig):
        return
    schema = OmegaConf.get_type(node)
    fields = _fields(schema) if dataclasses.is_dataclass(schema) else {}
    closed = dataclasses.is_dataclass(schema) and not issubclass(schema, dict)  # open ones pass extras on
    for name in node.keys():
        name = str(name)
        full = f"{prefix}{name}"
        if name == "hydra" and not prefix:
            continue
        if closed and name not in fields:
            raise ConfigError(unknown_key_message(full, fields))
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
        if rules.get("filename") and isinstance(value, str) and name_problem(value):
            raise ConfigError(f"{full}={_shown(value)}: {name_problem(value)}")
        if rules and _violates(value, rules):
            raise ConfigError(f"{full}: expected {expectation(tp, rules)}, got {_shown(value)}")


def _first_line(error: BaseException) -> str:
    return str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__


def composition_error_message(error: BaseException) -> str | None:
    """One line for an error Hydra raised while composing, naming the key; None if not a config error."""
    from hydra.errors import CompactHydraException, MissingConfigException

    cause, source = error.__cause__ if isinstance(error.__cause__, OmegaConfBaseException) else error, None
    if not isinstance(cause, OmegaConfBaseException) and isinstance(error.__context__, OmegaConfBaseException):
        cause = error.__context__  # Hydra re-raises a config file's merge error unchained: "In 'group/option': ..."
        source = str(error).split("'")[1] if str(error).startswith("In '") else None
    if isinstance(cause, OmegaConfBaseException) and getattr(cause, "full_key", None):
        full_key = str(cause.full_key)
        schema, name = getattr(cause, "object_type", None), str(getattr(cause, "key", "") or "")
        if dataclasses.is_dataclass(schema) and name in _fields(schema) and "not in" not in str(cause):
            tp, rules = _fields(schema)[name]
            return f"{full_key}: expected {expectation(tp, rules)}, got {_shown(getattr(cause, 'value', None))}"
        if source and "not in" in _first_line(cause):  # e.g. a sampler preset setting a key this algo lacks
            return f"{full_key}: no such key in {getattr(schema, '__name__', schema)} (conf/{source}.yaml sets it)"
        if "not in" in _first_line(cause) or "is not in struct" in _first_line(cause):
            parent = getattr(cause, "parent_node", None)
            return unknown_key_message(full_key, parent.keys() if isinstance(parent, DictConfig) else ())
        return f"{full_key}: {_first_line(cause)}"
    if isinstance(error, MissingConfigException):
        return " ".join(str(error).split("Config search path")[0].split())
    if isinstance(error, CompactHydraException):  # Hydra's user-facing errors: bad override, unknown option
        return " ".join(str(error).split())
    return None
