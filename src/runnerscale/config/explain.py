"""Pydantic's validation errors, turned into problems a person can act on.

Why: pydantic reports by path (``loc``), in its own words. Each error becomes a ``Problem`` at
the line the source recorded for that path, with a message in the file's terms and a hint:
for an unknown key the nearest valid key (typos are the most common mistake in hand-written
YAML) or where the key belongs, for a missing one an example. The input is echoed only when it
is neither secret nor from the environment. It reads the schema to know which keys exist, so
it sits above ``schema``, which needs only ``problems``.
"""

from __future__ import annotations

import difflib
import typing
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ValidationError

from runnerscale.config.problems import DOCS, ERROR_TYPE, SECRET_KEYS, Problem, render_path
from runnerscale.config.schema import Config, PoolConfig, installed_providers
from runnerscale.config.source import Document, KeyPath

_PROVIDERS_LATER = ("aws", "ec2", "ssh", "kubernetes")


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    found: list[type[BaseModel]] = []
    for argument in typing.get_args(annotation):
        found += _models_in(argument)
    return found


def _models_at(path: KeyPath) -> list[type[BaseModel]]:
    """The models a mapping at ``path`` may be: one, or several where a key takes more than
    one form (``min_idle``: a list of windows, or a base and windows)."""
    models: list[type[BaseModel]] = [Config]
    for part in path:
        if isinstance(part, int):
            continue
        models = [
            inner
            for model in models
            if (info := model.model_fields.get(part)) is not None
            for inner in _models_in(info.annotation)
        ]
        if not models:
            return []
    return models


def _key_homes() -> dict[str, list[str]]:
    homes: dict[str, list[str]] = {}

    def walk(model: type[BaseModel], where: str) -> None:
        for name, info in model.model_fields.items():
            homes.setdefault(name, []).append(where or "the top level")
            annotation = info.annotation
            is_list = typing.get_origin(annotation) is list
            for inner in _models_in(annotation):
                walk(inner, f"{where}.{name}" if where else name + ("[]" if is_list else ""))

    walk(Config, "")
    return homes


_EXAMPLES = {
    "github": "github: {token: ${GITHUB_TOKEN}}",
    "targets": "targets: [{repo: OWNER/NAME}]",
    "pools": "pools: [{name: linux-x64, labels: [self-hosted, linux, x64], provider: local, "
    "max_runners: 4, local: {command: [./run.sh]}}]",
    "name": "name: linux-x64",
    "labels": "labels: [self-hosted, linux, x64]",
    "provider": "provider: local",
    "max_runners": "max_runners: 4",
    "command": "command: [./run.sh]",
    "id": "id: 4242",
    "cron": 'cron: "0 8 * * 1-5"',
    "duration": "duration: 10h",
    "count": "count: 4",
}


def _describe(value: Any) -> str:
    if value is None:
        return "nothing"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return f"{value:g}" if isinstance(value, float) else str(value)
    if isinstance(value, str):
        shown = value if len(value) <= 60 else value[:57] + "..."
        return repr(shown)
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return type(value).__name__


def _unknown_key_hint(path: KeyPath) -> str:
    key = path[-1]
    models = _models_at(path[:-1])
    valid = sorted({name for model in models for name in model.model_fields})
    if isinstance(key, str):
        if key in _PROVIDERS_LATER and key not in valid and PoolConfig in models:
            return (
                f"the {key} backend is not available in this version; "
                f"these are: {', '.join(installed_providers())}"
            )
        close = difflib.get_close_matches(key, valid, n=1, cutoff=0.6) or [
            name
            for name in valid
            if min(len(name), len(key)) >= 3 and (key.startswith(name) or name.startswith(key))
        ]
        if close:
            return f"did you mean {close[0]!r}?"
        homes = _key_homes().get(key)
        if homes:
            return f"{key!r} belongs under {' or '.join(sorted(set(homes)))}, not here"
    return f"remove it; valid keys here: {', '.join(valid)}" if valid else "remove it"


def _explain(error: Any, path: KeyPath) -> tuple[str, str, bool]:
    """(message, hint, may echo the input) for one pydantic error."""
    kind: str = error["type"]
    ctx: Mapping[str, Any] = error.get("ctx") or {}
    name = next((str(part) for part in reversed(path) if isinstance(part, str)), "it")
    parent = render_path(path[:-1])
    where = f"under {parent}" if parent else "at the top level"
    value = error.get("input")
    if kind == ERROR_TYPE:
        return str(ctx["message"]), str(ctx["hint"]), bool(ctx.get("echo", True))
    if kind == "missing":
        example = _EXAMPLES.get(name, f"{name}: ...")
        return "is required", f"add '{example}' {where}", False
    if kind == "extra_forbidden":
        return "is not a known key", _unknown_key_hint(path), False
    if kind in ("int_type", "int_parsing", "int_from_float"):
        return "must be a whole number", f"write a number, e.g. {name}: 4", True
    if kind in ("float_type", "float_parsing", "finite_number"):
        return "must be a number", f"write a number, e.g. {name}: 0.5", True
    if kind in ("bool_type", "bool_parsing"):
        return "must be true or false", f"write {name}: true or {name}: false", True
    if kind == "string_type":
        if isinstance(value, (list, dict)):
            return (
                "must be a single value",
                f"write one value for {name}, not {_describe(value)}",
                True,
            )
        return "must be text", "put the value in quotes", True
    if kind == "list_type":
        if isinstance(value, str):
            return "must be a list", f"write {name}: [{value}] or one '- item' per line", False
        return "must be a list", f"write {name}: [a, b] or one '- item' per line", True
    if kind in ("model_type", "model_attributes_type", "dict_type"):
        if value is None:
            return "is empty", f"indent its keys under '{name}:', or remove the line", False
        if isinstance(path[-1] if path else None, int):
            entries = {"targets": "- repo: OWNER/NAME", "pools": "- name: linux-x64"}
            hint = f"write each entry as keys, e.g. '{entries.get(name, '- key: value')}'"
            return f"must be a mapping of keys, not {_describe(value)}", hint, False
        return (
            f"must be a mapping of keys, not {_describe(value)}",
            f"indent its keys under '{name}:'",
            False,
        )
    if kind == "too_short":
        minimum = ctx.get("min_length", 1)
        example = _EXAMPLES.get(name, f"{name}: [...]")
        if minimum == 1:
            return "must not be empty", f"give at least one item, e.g. {example}", False
        return f"needs at least {minimum} items", f"give at least {minimum} items", False
    if kind == "too_long":
        return (
            f"has too many items (at most {ctx.get('max_length')})",
            f"remove items until there are {ctx.get('max_length')} or fewer",
            False,
        )
    if kind == "greater_than_equal":
        limit = _describe(ctx["ge"])
        return f"must be at least {limit}", f"set {name} to {limit} or more", True
    if kind == "greater_than":
        limit = _describe(ctx["gt"])
        return f"must be more than {limit}", f"set {name} to more than {limit}", True
    if kind == "less_than_equal":
        limit = _describe(ctx["le"])
        return f"must be at most {limit}", f"set {name} to {limit} or less", True
    if kind == "less_than":
        limit = _describe(ctx["lt"])
        return f"must be less than {limit}", f"set {name} to less than {limit}", True
    if kind == "literal_error":
        expected = str(ctx.get("expected", "")).replace("'", "")
        return f"must be one of {expected}", f"set {name} to one of {expected}", True
    if kind == "string_pattern_mismatch":
        return "has the wrong form", f"it must match {ctx.get('pattern')}", True
    message = str(error.get("msg", "is not valid")).removeprefix("Value error, ")
    return message, f"see the entry for '{name}' in {DOCS}", True


def problems_from(error: ValidationError, doc: Document) -> list[Problem]:
    problems: list[Problem] = []
    for item in error.errors(include_url=False):
        path: KeyPath = tuple(
            part for part in item["loc"] if isinstance(part, int) or "[" not in part
        )
        ctx = item.get("ctx") or {}
        at = ctx.get("at") if item["type"] == ERROR_TYPE else None
        if at:
            path = (*path, *at)
        message, hint, echo = _explain(item, path)
        sensitive = (
            any(part in SECRET_KEYS for part in path)
            or path in doc.substituted
            or path[:1] == ("state",)
        )
        value = item.get("input")
        if echo and not sensitive and not isinstance(value, (dict, list)):
            message = f"{message} (got {_describe(value)})"
        names = [name for name in doc.substituted.get(path, []) if name != "(default)"]
        if names:
            message += " (from " + ", ".join(f"${{{name}}}" for name in names) + ")"
        problems.append(Problem(doc.source, doc.line_of(path), render_path(path), message, hint))
    return problems
