"""Reading a params file and parsing command-line values, with errors a person can act on.

    values = read_yaml("params/seed_siamese.yaml")     # a dict; any problem names file and line
    parse_override("epochs=3")                          # ("epochs", 3)
    parse_int_list("0-4")                               # [0, 1, 2, 3, 4]
"""
from __future__ import annotations

import os
from typing import Any

import yaml

from .errors import ConfigError
from .paths import resolve


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys (PyYAML keeps the last one silently)."""

    def construct_mapping(self, node, deep=False):
        seen = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r} (first on line {seen[key] + 1})", key_node.start_mark)
            seen[key] = key_node.start_mark.line
        return super().construct_mapping(node, deep)


def read_yaml(path: str | os.PathLike) -> dict[str, Any]:
    """A YAML mapping from a params file; any problem is a ConfigError naming file and line."""
    p = resolve(path)
    if not p.is_file():
        raise ConfigError(f"params file not found: {p}")
    raw = p.read_bytes()
    if b"\x00" in raw:
        line = raw[: raw.index(b"\x00")].count(b"\n") + 1
        raise ConfigError(f"{p}, line {line}: NUL byte in a params file (is it a binary file?)")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        raise ConfigError(f"{p}, line {line}: not UTF-8 text ({e.reason})") from None
    try:
        loaded = yaml.load(text, Loader=_StrictLoader)
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        where = f", line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        hint = " (YAML indents with spaces, never tabs)" if "\t" in text and "\\t" in repr(e.problem) else ""
        raise ConfigError(f"{p}{where}: {e.problem or e}{hint}") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{p}: {e}") from None
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        line = yaml.compose(text, Loader=yaml.SafeLoader).start_mark.line + 1
        raise ConfigError(f"{p}, line {line}: the file must hold a mapping of key: value, got {type(loaded).__name__}")
    return loaded


def parse_int_list(text: str, what: str) -> list[int]:
    """"0-4" -> [0, 1, 2, 3, 4]; "1,5,9" -> [1, 5, 9]; anything else, or a repeat, is a ConfigError."""
    values: list[int] = []
    try:
        for part in str(text).split(","):
            lo, _, hi = part.strip().partition("-")
            values += list(range(int(lo), int(hi) + 1)) if hi else [int(lo)]
    except ValueError:
        raise ConfigError(f"{what} expects a range like 0-4 or a list like 1,5,9, got {text!r}") from None
    if not values or len(set(values)) != len(values):
        raise ConfigError(f"{what} {text!r} is empty or repeats a value")
    return values


def parse_override(text: str) -> tuple[str, Any]:
    """`key=value` from the command line; the value is parsed as YAML (3 -> int, 1e-3 -> float)."""
    if "=" not in text:
        raise ConfigError(f"--set expects key=value, got {text!r}")
    key, raw = text.split("=", 1)
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError as e:
        raise ConfigError(f"--set {text!r}: the value is not valid YAML ({e})") from None
    return key.strip(), value
