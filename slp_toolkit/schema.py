"""Plain YAML values onto typed, frozen dataclasses: every value converted to its field's type and
checked against the field's `rule` (min, max, gt), every problem one line naming the source and the
dotted key, with a suggestion where a near spelling exists. Knows nothing of recipes (see config.py)."""

from __future__ import annotations

import dataclasses
import difflib
import re
import types
import typing
from typing import Any, Literal

import yaml

from slp_toolkit.errors import ConfigError

CMDLINE = "<command line>"


def rule(**rules: Any) -> dict:
    """Field metadata for value checks: min/max (inclusive), gt (exclusive), path (must exist)."""
    return rules


class DuplicateKey(Exception):
    pass


class StrictLoader(yaml.SafeLoader):
    """safe_load that refuses a key given twice in one mapping (plain YAML keeps the last one, silently)."""

    def construct_mapping(self, node, deep=False):
        seen: dict = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if not isinstance(key, (str, int, float, bool)) or key is None:
                continue  # an unhashable key is SafeLoader's error to report
            if key in seen:
                line = key_node.start_mark.line + 1
                raise DuplicateKey(f"duplicate key {key!r} (line {line}; first on line {seen[key]}): keep one")
            seen[key] = key_node.start_mark.line + 1
        return super().construct_mapping(node, deep=deep)


_YAML_BOOLS = {False: ("no", "off", "false"), True: ("yes", "on", "true")}


# ---------------------------------------------------------------- generic dataclass conversion
def field_types(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def convert(value: Any, hint: Any, key: str, src: str, sources: dict[str, str]) -> Any:
    where = src_for(key, src, sources)
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return convert(value, inner[0], key, src, sources)
    if dataclasses.is_dataclass(hint):
        return convert_section(value, hint, key, src, sources)
    if origin is Literal:
        if isinstance(value, bool):  # YAML 1.1 reads an unquoted no/off/yes/on as a boolean
            value = next((a for a in args if str(a).lower() in _YAML_BOOLS[value]), value)
        if value not in args:
            raise ConfigError(
                f"{where}: {key!r} must be one of {fmt_choices(args)}, got {value!r}"
                f"{suggest(str(value), [str(a) for a in args])}"
            )
        return value
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"{where}: {key!r} must be a list, got {show(value)}")
        return [convert(v, args[0], f"{key}[{i}]", src, sources) for i, v in enumerate(value)]
    return convert_scalar(value, hint, key, where)


_FLOAT_RE = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")


def convert_scalar(value: Any, hint: Any, key: str, where: str) -> Any:
    if value is None:
        raise ConfigError(f"{where}: {key!r} must not be empty (expected {type_name(hint)})")
    if hint is bool:
        if isinstance(value, bool):
            return value
    elif hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif hint is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        # PyYAML reads `1e-4` (no dot) as a string; accept it as the number everyone means.
        if isinstance(value, str) and _FLOAT_RE.match(value.strip()):
            return float(value)
    elif hint is str:
        if isinstance(value, str):
            return value
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)
    else:  # pragma: no cover - a dataclass field of an unsupported type is a bug here
        raise TypeError(f"unsupported config type {hint!r} for {key}")
    raise ConfigError(f"{where}: {key!r} must be {type_name(hint)}, got {show(value)}")


def convert_section(value: Any, cls: type, key: str, src: str, sources: dict[str, str]) -> Any:
    where = src_for(key, src, sources)
    if value is None:
        value = {}
    if not isinstance(value, dict):
        raise ConfigError(f"{where}: {key!r} must be a mapping of keys, got {show(value)}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = field_types(cls)
    kwargs = {}
    for sub, v in value.items():
        dotted = f"{key}.{sub}"
        if sub not in fields:
            options = [f"{key}.{f}" for f in fields]
            raise ConfigError(f"{src_for(dotted, src, sources)}: unknown key {dotted!r}{suggest(dotted, options)}")
        kwargs[sub] = convert(v, hints[sub], dotted, src, sources)
        check_range(kwargs[sub], fields[sub].metadata, dotted, src_for(dotted, src, sources))
    return cls(**kwargs)


def check_range(value: Any, rules: Any, key: str, where: str) -> None:
    if value is None or not rules:
        return
    if "min" in rules and value < rules["min"]:
        raise ConfigError(f"{where}: {key!r} must be >= {rules['min']}, got {value}")
    if "max" in rules and value > rules["max"]:
        raise ConfigError(f"{where}: {key!r} must be <= {rules['max']}, got {value}")
    if "gt" in rules and value <= rules["gt"]:
        raise ConfigError(f"{where}: {key!r} must be > {rules['gt']}, got {value}")


# ---------------------------------------------------------------- overrides and small helpers
def parse_override(item: str) -> tuple[str, Any]:
    if "=" not in item:
        raise ConfigError(f"{CMDLINE}: override {item!r} must look like key.sub=value")
    key, text = item.split("=", 1)
    key = key.strip()
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*", key):
        raise ConfigError(f"{CMDLINE}: override {item!r} has a malformed key {key!r}")
    try:
        value = yaml.safe_load(text) if text.strip() else None
    except yaml.YAMLError:
        value = text
    return key, value


def set_dotted(raw: dict, key: str, value: Any) -> None:
    *parents, last = key.split(".")
    node = raw
    for i, part in enumerate(parents):
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        if not isinstance(child, dict):
            dotted = ".".join(parents[: i + 1])
            raise ConfigError(f"{CMDLINE}: cannot set {key!r}: {dotted!r} is not a section")
        node = child
    node[last] = value


def src_for(key: str, src: str, sources: dict[str, str]) -> str:
    parts = key.split(".")
    for i in range(len(parts), 0, -1):
        if ".".join(parts[:i]) in sources:
            return sources[".".join(parts[:i])]
    return src


def suggest(word: str, options: Any) -> str:
    close = difflib.get_close_matches(word, list(options), n=1, cutoff=0.5)
    return f" (did you mean {close[0]!r}?)" if close else ""


def fmt_choices(choices: Any) -> str:
    return ", ".join(repr(c) for c in choices)


def show(value: Any) -> str:
    return f"{value!r} ({type(value).__name__})"


def type_name(hint: Any) -> str:
    return {bool: "true or false", int: "an integer", float: "a number", str: "a string"}.get(hint, str(hint))
