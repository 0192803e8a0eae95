"""Loading the effective configuration from its four sources.

Highest first: command-line flags, ``KLOGHUB_...`` environment variables (nested with
``__``: ``KLOGHUB_AGENT__BUFFER__MAX_BYTES=512MiB``), the YAML file given by ``--config``,
and the preset of the chosen level (``presets/<level>.yaml`` in this package). The sources
are deep-merged: a file that sets ``agent.buffer.when_full`` keeps the preset's other
buffer keys.

Every problem is reported at once, each naming the full path of the key, the value and
what was expected, as :class:`kloghub.core.ConfigError`.

The environment is read as pydantic-settings reads it (case-insensitive names, ``__``
between levels, JSON for a value whose field is a list, a mapping or a model), by the few
lines of :func:`_env_layer` rather than by pydantic-settings itself: importing it cost
every daemon ~5 MiB of resident memory and a tenth of a second for that alone.
"""

from __future__ import annotations

import difflib
import json
import os
import types
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from kloghub.config._models import AgentConfig, CollectorConfig, SearchConfig
from kloghub.core import ConfigError

__all__ = ["LEVELS", "Level", "Settings", "dump", "load", "load_preset"]

Level = Literal["crawl", "walk", "run"]
LEVELS: tuple[str, ...] = get_args(Level)
DEFAULT_LEVEL: Level = "walk"
ENV_PREFIX = "KLOGHUB_"


class Settings(BaseModel):
    """Everything kloghub can be configured with; each command uses its own section."""

    model_config = ConfigDict(
        extra="forbid",
        validate_default=True,
        use_attribute_docstrings=True,
    )

    level: Level = DEFAULT_LEVEL
    """crawl: node-local store; walk: central collector archive; run: SIEM and detections."""
    agent: AgentConfig = Field(default_factory=AgentConfig)
    collector: CollectorConfig = Field(default_factory=CollectorConfig)
    search: SearchConfig = Field(default_factory=SearchConfig)


# --------------------------------------------------------------------------- environment

_COMPLEX = (list, dict, set, frozenset, tuple)
_NESTED = "__"


def _members(annotation: Any) -> list[Any]:
    """The types an annotation allows (``Annotated`` and unions unwrapped)."""
    origin = get_origin(annotation)
    if origin is Annotated:
        return _members(get_args(annotation)[0])
    if origin is Union or origin is types.UnionType:
        return [m for arg in get_args(annotation) for m in _members(arg)]
    return [annotation]


def _is_complex(annotation: Any) -> bool:
    base = get_origin(annotation) or annotation
    return (isinstance(base, type) and issubclass(base, _COMPLEX)) or _is_model(annotation)


def _is_model(annotation: Any) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, BaseModel)


def _child(annotation: Any, key: str) -> Any:
    """The annotation of ``key`` inside a value of ``annotation`` (None: unknown)."""
    for member in _members(annotation):
        if _is_model(member):
            field = member.model_fields.get(key)
            if field is not None:
                return field.annotation
        elif get_origin(member) is dict and len(get_args(member)) == 2:
            return get_args(member)[1]
    return None


def _env_value(name: str, value: str, annotation: Any) -> Any:
    """A variable's value: JSON when its field takes a list, a mapping or a model."""
    members = [m for m in _members(annotation) if m is not type(None)]
    if not value or not any(_is_complex(m) for m in members):
        return value
    try:
        return json.loads(value)
    except ValueError as exc:
        if all(_is_complex(m) for m in members):
            raise ConfigError([f"environment: {name}: not valid JSON ({exc})"]) from None
        return value  # a union with a plain type: the text is the value


def _env_layer(environ: Mapping[str, str]) -> dict[str, Any]:
    """The ``KLOGHUB_...`` variables that name settings, as nested data."""
    layer: dict[str, Any] = {}
    prefix = ENV_PREFIX.lower()
    for name, value in sorted(environ.items()):
        lowered = name.lower()
        if not lowered.startswith(prefix):
            continue
        keys = lowered[len(prefix) :].split(_NESTED)
        annotation: Any = Settings
        for key in keys:
            annotation = _child(annotation, key) if annotation is not None else None
        if keys[0] not in Settings.model_fields or not all(keys):
            continue  # another program's variable (KLOGHUB_KERNELS, ...)
        parsed = _env_value(name, value, annotation)
        for key in reversed(keys):
            parsed = {key: parsed}
        layer = _deep_merge(layer, parsed)
    return layer


def load_preset(level: str) -> dict[str, Any]:
    """The preset of ``level`` as plain data."""
    if level not in LEVELS:
        raise ConfigError([f"level: got {level!r}; expected one of: {', '.join(LEVELS)}"])
    text = resources.files("kloghub.config").joinpath("presets", f"{level}.yaml").read_text()
    data = yaml.safe_load(text) or {}
    if not isinstance(data, dict):
        raise ConfigError([f"preset {level}: not a mapping"])
    data["level"] = level
    return data


def _read_file(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError([f"config file {path}: not found"]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError([f"config file {path}: cannot be read ({exc})"]) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError([f"config file {path}: invalid YAML: {exc}"]) from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(
            [
                f"config file {path}: expected a mapping at the top (agent:, collector:, ...), "
                f"got {type(data).__name__}"
            ]
        )
    return data


def _deep_merge(base: dict[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in over.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _pick_level(flags: Mapping[str, Any], file_data: Mapping[str, Any]) -> str:
    for candidate in (
        flags.get("level"),
        os.environ.get(f"{ENV_PREFIX}LEVEL"),
        file_data.get("level"),
    ):
        if candidate is not None:
            return str(candidate)
    return DEFAULT_LEVEL


def load(
    config_file: Path | None = None,
    flags: Mapping[str, Any] | None = None,
) -> Settings:
    """The effective settings. ``flags`` is a nested mapping of what the command line set."""
    flags = dict(flags or {})
    file_data = _read_file(config_file) if config_file is not None else {}
    level = _pick_level(flags, file_data)
    layers = _deep_merge(load_preset(level), file_data)
    layers = _deep_merge(_deep_merge(layers, _env_layer(os.environ)), flags)
    try:
        return Settings.model_validate(layers)
    except ValidationError as exc:
        raise ConfigError(_describe(exc)) from None


def dump(settings: BaseModel, section: str | None = None) -> str:
    """The settings as YAML, secrets masked; optionally one section only."""
    data = settings.model_dump(mode="json")
    if section is not None:
        data = {"level": data["level"], section: data[section]}
    return yaml.safe_dump(data, sort_keys=False, default_flow_style=False)


# --------------------------------------------------------------------------- errors


def _path(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif "[" in part or part.startswith("function-"):
            continue  # pydantic's tags for unions and validators, not user keys
        else:
            out += f".{part}" if out else part
    return out or "(top level)"


def _known_keys(loc: tuple[int | str, ...]) -> list[str]:
    """Field names of the model that holds the key at ``loc``."""
    model: Any = Settings
    for part in loc[:-1]:
        if isinstance(part, int):
            continue
        field = getattr(model, "model_fields", {}).get(part)
        if field is None:
            return []
        annotation = field.annotation
        args = get_args(annotation)
        candidates = [annotation, *args]
        model = next(
            (c for c in candidates if isinstance(c, type) and issubclass(c, BaseModel)),
            None,
        )
        if model is None:
            # list[Model]
            for arg in args:
                inner = get_args(arg)
                model = next(
                    (c for c in inner if isinstance(c, type) and issubclass(c, BaseModel)), None
                )
                if model is not None:
                    break
        if model is None:
            return []
    return list(getattr(model, "model_fields", {}))


def _describe(exc: ValidationError) -> list[str]:
    problems = []
    for err in exc.errors(include_url=False):
        loc = tuple(err["loc"])
        where = _path(loc)
        value = err.get("input")
        if err["type"] == "extra_forbidden":
            known = _known_keys(loc)
            hint = difflib.get_close_matches(str(loc[-1]), known, n=1)
            text = f"{where}: unknown key"
            if hint:
                text += f" (did you mean {hint[0]!r}?)"
            elif known:
                text += f" (known keys: {', '.join(known)})"
            problems.append(text)
            continue
        if err["type"] == "secret_file":
            # A secret's file: the message names the key and the file, never the content.
            prefix = f"{where}." if loc else ""
            problems.append(prefix + err["msg"])
            continue
        shown = "(missing)" if err["type"] == "missing" else _show(value, loc)
        problems.append(f"{where}: got {shown}; {_expected(err['msg'])}")
    return problems


_SECRET_WORDS = ("password", "token", "shared_key", "api_key", "secret")


def _show(value: Any, loc: tuple[int | str, ...]) -> str:
    if any(word in str(part) for part in loc for word in _SECRET_WORDS):
        return "(a secret, not shown)"
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _expected(msg: str) -> str:
    msg = msg.removeprefix("Value error, ")
    if msg.startswith("Input should be"):
        return "expected " + msg.removeprefix("Input should be ").rstrip(".")
    return msg[0].lower() + msg[1:] if msg else msg
