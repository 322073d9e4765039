"""Config dataclasses from the command line and from JSON, with errors that list the valid keys.

Every config in labkit is a plain dataclass whose fields carry a comment. This module turns
`--key value` pairs (or a dict read from a run's config.json) into such a dataclass, converting each
value to the field's declared type and rejecting unknown keys and values of the wrong type.
"""

from __future__ import annotations

import dataclasses
import math
import re
import types
import typing
from typing import Any, TypeVar

C = TypeVar("C")


class ConfigError(ValueError):
    """A config key or value that cannot be used; the message says which and what would work."""


def _field_types(cls: type) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def _convert(name: str, text: Any, annotation: Any) -> Any:
    """Convert `text` (a string from the command line, or a JSON value) to `annotation`."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):  # Optional[X] and X | None
        is_none = text is None or (isinstance(text, str) and text.lower() in {"none", "null"})
        if is_none and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _convert(name, text, arg)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError("; ".join(errors))
    if origin is tuple:
        items = text if isinstance(text, list | tuple) else [s for s in str(text).split(",") if s]
        inner = args[0] if args else str
        return tuple(_convert(name, item, inner) for item in items)
    if origin is typing.Literal:
        if text not in args:
            raise ConfigError(f"--{name} must be one of {', '.join(map(repr, args))}, got {text!r}")
        return text
    if annotation is bool:
        if isinstance(text, bool):
            return text
        lowered = str(text).lower()
        if lowered in {"1", "true", "yes", "on"}:
            return True
        if lowered in {"0", "false", "no", "off"}:
            return False
        raise ConfigError(f"--{name} expects true or false, got {text!r}")
    if annotation in (int, float):
        if isinstance(text, bool):
            raise ConfigError(f"--{name} expects {annotation.__name__}, got {text!r}")
        try:
            if annotation is int and isinstance(text, float) and not text.is_integer():
                raise ValueError
            if annotation is float:
                value = float(text)
            else:
                return int(text) if isinstance(text, float) else int(str(text))
        except ValueError:
            raise ConfigError(f"--{name} expects {annotation.__name__}, got {text!r}") from None
        if not math.isfinite(value):  # nan and inf parse as floats, but no setting can use them
            raise ConfigError(f"--{name} expects a finite number, got {text!r}")
        return value
    if annotation is str:
        return str(text)
    raise ConfigError(f"--{name}: unsupported field type {annotation!r}")


def from_dict(cls: type[C], values: dict[str, Any], base: C | None = None) -> C:
    """Build a `cls` from `values`, starting from `base` (or the defaults).

    Returns:
        A new config instance.
    Raises:
        ConfigError: an unknown key (the message lists the valid ones) or a value of the wrong type.
    """
    fields = _field_types(cls)
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise ConfigError(
            f"unknown config key(s) {', '.join(unknown)} for {cls.__name__}; "
            f"valid keys: {', '.join(fields)}"
        )
    converted = {k: _convert(k, v, fields[k]) for k, v in values.items()}
    start = base if base is not None else cls()
    return dataclasses.replace(start, **converted)


def parse_overrides(argv: list[str]) -> dict[str, str]:
    """Parse `--key value` and `--key=value` pairs into a dict (dashes in keys become underscores).

    Raises:
        ConfigError: a stray value or a key without a value.
    """
    out: dict[str, str] = {}
    i = 0
    while i < len(argv):
        arg = argv[i]
        if not arg.startswith("--"):
            raise ConfigError(f"expected --key value, got {arg!r}")
        key = arg[2:]
        if "=" in key:
            key, value = key.split("=", 1)
            i += 1
        else:
            if i + 1 >= len(argv):
                raise ConfigError(f"--{key} needs a value")
            value = argv[i + 1]
            i += 2
        out[key.replace("-", "_")] = value
    return out


def to_dict(cfg: Any) -> dict[str, Any]:
    """A JSON-ready dict of a config dataclass (tuples become lists)."""
    return dataclasses.asdict(cfg)


def help_text(cls: type) -> str:
    """One line per field, for `--help`: name, default and the comment written beside the field."""
    import inspect

    comments: dict[str, str] = {}
    for klass in reversed([k for k in cls.__mro__ if dataclasses.is_dataclass(k)]):  # bases first
        for line in inspect.getsource(klass).splitlines():
            m = re.match(r"\s+(\w+)\s*:[^#]*#\s*(.*)$", line)
            if m:
                comments[m.group(1)] = m.group(2)
    lines = []
    for f in dataclasses.fields(cls):
        missing = f.default is dataclasses.MISSING
        default = f.default_factory() if missing else f.default  # type: ignore[misc]
        lines.append(f"  --{f.name:<20} {default!r:<14} {comments.get(f.name, '')}".rstrip())
    return "\n".join(lines)


def require_positive(cfg: Any, *names: str) -> None:
    """Raise ConfigError if any named field is zero, negative or NaN."""
    for name in names:
        value = getattr(cfg, name)
        if value is not None and not value > 0:  # `not >` also catches NaN
            raise ConfigError(
                f"{type(cfg).__name__}.{name} must be positive, got {value}; "
                f"set --{name} to a value above 0."
            )
