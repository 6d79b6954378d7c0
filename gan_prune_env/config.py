"""Strict dataclass configuration loaded from dicts and YAML.

Every configurable part of the library is a dataclass. Users write YAML (or ``key:value`` flags);
a typo must fail loudly *before* any work starts, naming the bad key and the keys that exist.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

T = TypeVar("T")


class ConfigError(ValueError):
    """A configuration key or value is invalid."""


class UnknownKeyError(ConfigError, TypeError):
    """A key the configuration does not have. Also a ``TypeError``, as Python raises for an
    unexpected keyword argument: code that probes optional keywords of ``gymnasium.make``
    (TorchRL's ``GymEnv`` tries ``frameskip``) catches that and retries without it."""


def _check_value(value: Any, annotation: Any, where: str) -> Any:
    """Coerce ``value`` to ``annotation`` where that is unambiguous; raise ConfigError otherwise."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if annotation is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _check_value(value, arg, where)
            except ConfigError as err:
                errors.append(str(err))
        raise ConfigError(f"{where}: {value!r} matches none of {annotation}")
    if origin is typing.Literal:
        if value not in args:
            raise ConfigError(f"{where}: {value!r} is not one of {list(args)}")
        return value
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        inner = args[0] if args else Any
        items = [_check_value(v, inner, f"{where}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        return dict(value)
    if dataclasses.is_dataclass(annotation):
        if isinstance(value, annotation):
            return value
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping for {annotation.__name__}, got {value!r}")
        return from_dict(annotation, value, where=where)
    if annotation is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{where}: expected true/false, got {value!r}")
    if annotation is int:
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                return int(value)
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return value
    if annotation is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if annotation is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return value
    return value


def from_dict(cls: type[T], data: dict[str, Any] | None, *, where: str | None = None) -> T:
    """Build dataclass ``cls`` from ``data``; unknown keys and ill-typed values raise ConfigError."""
    where = where or cls.__name__
    data = dict(data or {})
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        named = ", ".join(f"unexpected keyword argument {key!r}" for key in unknown)
        raise UnknownKeyError(
            f"{where}: unknown key(s) {unknown} ({named}); valid keys are {sorted(fields)}"
        )
    hints = typing.get_type_hints(cls)
    kwargs = {
        name: _check_value(value, hints[name], f"{where}.{name}") for name, value in data.items()
    }
    try:
        obj = cls(**kwargs)
    except (TypeError, ValueError) as err:
        raise ConfigError(f"{where}: {err}") from err
    return obj


def to_dict(obj: Any) -> dict[str, Any]:
    """Plain-dict view of a dataclass (tuples become lists so YAML stays readable)."""

    def plain(value: Any) -> Any:
        if isinstance(value, (list, tuple)):
            return [plain(v) for v in value]
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        return value

    return plain(dataclasses.asdict(obj))


def load_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML mapping; a missing file or a non-mapping document is a ConfigError."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: invalid YAML: {err}") from err
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at top level, got {type(data).__name__}")
    return data


def parse_key_values(items: list[str] | None) -> dict[str, Any]:
    """Parse RL-Zoo style ``key:value`` items; values are read as YAML scalars (``3``, ``true``)."""
    result: dict[str, Any] = {}
    for item in items or []:
        if ":" not in item:
            raise ConfigError(f"expected key:value, got {item!r}")
        key, raw = item.split(":", 1)
        result[key.strip()] = yaml.safe_load(raw) if raw.strip() else None
    return result


def check_same_settings(saved: dict[str, Any], current: dict[str, Any], what: str) -> None:
    """Exact resumption needs the interrupted run's settings: a ConfigError names the keys of
    ``current`` whose value differs in ``saved``."""
    changed = sorted(k for k, v in current.items() if saved.get(k) != v)
    if changed:
        raise ConfigError(f"cannot resume {what}: {changed} differ from the interrupted run; use "
                          "its settings or a new output folder")
