"""Dataclasses read back from the manifest's JSON, checked against their type hints.

Hand-written rather than pydantic: pydantic comes only with the serve extra, and the bundle
layer is read by every runtime install (the smallest edge images included); the checks needed
are few (numbers, strings, flags, lists, nested records), and each error names the key path
that is wrong.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any, Union


def build(cls: type, data: Any, where: str, ignore: frozenset[str] = frozenset()) -> Any:
    """``cls`` from parsed JSON: every key known (``ignore``: keys accepted and dropped), every
    required one present, every value of its field's type; a TypeError names the key."""
    if dataclasses.is_dataclass(data) and isinstance(data, cls):
        return data
    if not isinstance(data, dict):
        raise TypeError(f"{where}: expected an object, got {type(data).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields) - ignore)
    if unknown:
        raise TypeError(
            f"{where}: unknown key(s) {unknown} for {cls.__name__} (known: {sorted(fields)})"
        )
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for name, f in fields.items():
        if name not in data:
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise TypeError(f"{where}.{name}: missing (required by {cls.__name__})")
            continue
        kwargs[name] = _value(hints[name], data[name], f"{where}.{name}")
    return cls(**kwargs)


def _value(hint: Any, value: Any, where: str) -> Any:
    """``value`` checked against (and converted to) the field's type hint."""
    origin = typing.get_origin(hint)
    if origin in (Union, types.UnionType):
        options = typing.get_args(hint)
        if value is None:
            if type(None) in options:
                return None
            raise TypeError(f"{where}: may not be null")
        errors = []
        for option in options:
            if option is type(None):
                continue
            try:
                return _value(option, value, where)
            except TypeError as exc:
                errors.append(str(exc))
        raise TypeError(errors[0])
    if dataclasses.is_dataclass(hint):
        return build(hint, value, where)
    if origin in (tuple, list):  # tuple[X, ...] or list[X]: a JSON list of X
        if not isinstance(value, (list, tuple)):
            raise TypeError(f"{where}: expected a list, got {value!r}")
        item = typing.get_args(hint)[0]
        return origin(_value(item, v, f"{where}[{i}]") for i, v in enumerate(value))
    if origin is dict or hint is dict:
        if not isinstance(value, dict):
            raise TypeError(f"{where}: expected an object, got {value!r}")
        return dict(value)
    if hint is bool:
        if not isinstance(value, bool):
            raise TypeError(f"{where}: expected true or false, got {value!r}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"{where}: expected an integer, got {value!r}")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise TypeError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise TypeError(f"{where}: expected a string, got {value!r}")
        return value
    if hint is Any:
        return value
    raise TypeError(f"{where}: no check for type {hint!r}")
