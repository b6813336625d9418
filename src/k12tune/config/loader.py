"""Load a YAML file into a stage's pydantic model, apply `key.path=value` overrides, fail early.

Why strict: a typo such as `val_fracton: 0.1` that is silently dropped costs a whole training run.
Every model derives from `StrictModel` (`extra="forbid"`), so an unknown key or a wrong type is
reported before any work, with the dotted key and the file (or "command line") it came from.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from k12tune.errors import ConfigError

M = TypeVar("M", bound=BaseModel)


class StrictModel(BaseModel):
    """Base for every config section: unknown keys are errors, assignments are validated."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, frozen=False)


def parse_override(text: str) -> tuple[list[str], Any]:
    """Split `a.b.0.c=value` into its key path and a YAML-typed value (`0.5`, `true`, `[1, 2]`)."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"override {text!r} is not of the form key.path=value")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError as exc:
        raise ConfigError(f"override {text!r}: value is not valid YAML ({exc})") from None
    return key.strip().split("."), value


def _set_path(tree: dict[str, Any], path: list[str], value: Any, origin: str) -> None:
    node: Any = tree
    for depth, part in enumerate(path[:-1]):
        where = ".".join(path[: depth + 1])
        if isinstance(node, list):
            node = node[_list_index(node, part, where, origin)]
        else:
            node = node.setdefault(part, {})
        if not isinstance(node, dict | list):
            raise ConfigError(f"{origin}: {where} is a value, not a section; cannot set {'.'.join(path)}")
    last = path[-1]
    if isinstance(node, list):
        node[_list_index(node, last, ".".join(path), origin)] = value
    else:
        node[last] = value


def _list_index(node: list[Any], part: str, where: str, origin: str) -> int:
    if not part.isdigit() or int(part) >= len(node):
        raise ConfigError(f"{origin}: {where}: list index {part!r} out of range (0..{len(node) - 1})")
    return int(part)


def _format_validation_error(exc: ValidationError, source: str) -> str:
    lines = [f"invalid config in {source}:"]
    for err in exc.errors():
        key = ".".join(str(p) for p in err["loc"]) or "(top level)"
        if err["type"] == "extra_forbidden":
            lines.append(f"  unknown key '{key}' (check the spelling; see --help for the keys)")
        else:
            got = err.get("input")
            shown = repr(got) if not isinstance(got, dict | list) else type(got).__name__
            lines.append(f"  {key}: {err['msg']} (got {shown})")
    return "\n".join(lines)


def load_config(model: type[M], path: str | Path | None, overrides: list[str] | None = None) -> M:
    """Read `path` (YAML mapping), apply overrides, validate against `model`.

    Errors from the file are reported against the file; errors that only appear after the
    overrides are reported against "command line overrides" too, so the user knows which to fix.
    """
    tree: dict[str, Any] = {}
    source = "defaults"
    if path is not None:
        path = Path(path)
        source = str(path)
        if not path.is_file():
            raise ConfigError(f"config file {path} does not exist")
        try:
            loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path}: not valid YAML: {exc}") from None
        except UnicodeDecodeError as exc:
            raise ConfigError(f"{path}: not UTF-8 text ({exc})") from None
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, dict):
            raise ConfigError(f"{path}: the top level must be a mapping of keys, got {type(loaded).__name__}")
        tree = loaded
        try:
            model.model_validate(tree)
        except ValidationError as exc:
            raise ConfigError(_format_validation_error(exc, source)) from None
    if overrides:
        # Overrides edit the validated, defaults-filled tree so that list items that came from
        # defaults (e.g. `sft_sources.0.weight=0`) can be addressed too.
        tree = model.model_validate(tree).model_dump(mode="json")
        for text in overrides:
            key_path, value = parse_override(text)
            _set_path(tree, key_path, value, "command line")
        source = f"{source} + command line overrides"
    try:
        return model.model_validate(tree)
    except ValidationError as exc:
        raise ConfigError(_format_validation_error(exc, source)) from None


def describe_fields(model: type[BaseModel], prefix: str = "") -> list[str]:
    """One line per config key (dotted), with type, default and description, for `--help`."""
    lines: list[str] = []
    for name, field in model.model_fields.items():
        key = f"{prefix}{name}"
        ann = field.annotation
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            lines.append(f"  {key}: section. {field.description or ''}".rstrip())
            lines.extend(describe_fields(ann, prefix=f"{key}."))
            continue
        default = "required" if field.is_required() else repr(field.get_default(call_default_factory=True))
        if len(default) > 60:
            default = default[:57] + "..."
        type_name = getattr(ann, "__name__", None) or str(ann).replace("typing.", "")
        lines.append(f"  {key} ({type_name}, default {default}): {field.description or ''}".rstrip())
    return lines
