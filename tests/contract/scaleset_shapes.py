"""The shape language of the scale-set contract fixtures (``tests/contract/scaleset/*.json``),
and the checker both sides use: the simulator's answers (``test_scaleset_fixtures.py``) and,
later, the production client's requests.

A shape is JSON:

* ``"$int"``, ``"$str"``, ``"$bool"``, ``"$uuid"``, ``"$time"`` (RFC 3339), ``"$jwt"`` (three
  base64url parts whose payload has an integer ``exp``), ``"$url"`` (http or https),
  ``"$any"``; ``"$int?"`` etc. also allow null;
* ``{"$json": SHAPE}``: a *string* holding JSON that matches ``SHAPE`` (the envelope's
  ``body``);
* ``{"$def": NAME, ...}``: the shape ``NAME`` of ``_definitions.json``, with the other keys
  added or replaced (:func:`resolve` expands these before anything is checked);
* ``{"$each": SHAPE}``: a list whose every item matches ``SHAPE`` (``"$min": N`` items at
  least);
* any other object: each key must be present and match (other keys are allowed, as the Go
  client ignores unknown fields);
* any other list: the same length, item by item; any other value: equal.

Fixtures are written from ``actions/scaleset``'s ``types.go`` (field names and types),
``client.go`` / ``session_client.go`` (paths, methods, statuses) and its README (rules); each
file's ``source`` names where its flow comes from.
"""

from __future__ import annotations

import base64
import json
import re
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

FIXTURES = Path(__file__).parent / "scaleset"


def fixtures() -> Iterator[tuple[str, dict[str, Any]]]:
    """Every fixture, by file stem (``_definitions.json`` is not one)."""
    for path in sorted(FIXTURES.glob("*.json")):
        if not path.name.startswith("_"):
            yield path.stem, json.loads(path.read_text())


def definitions() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((FIXTURES / "_definitions.json").read_text())
    return loaded


def resolve(shape: Any, defs: dict[str, Any]) -> Any:
    """``shape`` with every ``{"$def": NAME, ...}`` expanded (other keys overlay the def)."""
    if isinstance(shape, list):
        return [resolve(item, defs) for item in shape]
    if not isinstance(shape, dict):
        return shape
    if "$def" in shape:
        base = resolve(defs[shape["$def"]], defs)
        overlay = {k: resolve(v, defs) for k, v in shape.items() if k != "$def"}
        return {**base, **overlay}
    return {k: resolve(v, defs) for k, v in shape.items()}


def _is_jwt(value: Any) -> bool:
    if not isinstance(value, str) or value.count(".") != 2:
        return False
    payload = value.split(".")[1]
    try:
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except ValueError:
        return False
    return isinstance(claims, dict) and isinstance(claims.get("exp"), int)


def _is_time(value: Any) -> bool:
    if not isinstance(value, str):
        return False
    try:
        datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return False
    return True


def _is_uuid(value: Any) -> bool:
    try:
        uuid.UUID(str(value))
    except ValueError:
        return False
    return isinstance(value, str)


_TYPES: dict[str, Callable[[Any], bool]] = {
    "$int": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "$str": lambda v: isinstance(v, str),
    "$bool": lambda v: isinstance(v, bool),
    "$uuid": _is_uuid,
    "$time": _is_time,
    "$jwt": _is_jwt,
    "$url": lambda v: isinstance(v, str) and re.match(r"^https?://", v) is not None,
    "$any": lambda v: True,
}


def check(shape: Any, value: Any, where: str = "$") -> list[str]:
    """What in ``value`` does not match ``shape``, one line per mismatch (empty: it matches)."""
    if isinstance(shape, str) and shape.startswith("$"):
        name = shape.rstrip("?")
        if name not in _TYPES:
            return [f"{where}: unknown shape {shape!r}"]
        if value is None and shape.endswith("?"):
            return []
        return [] if _TYPES[name](value) else [f"{where}: expected {shape}, got {value!r}"]
    if isinstance(shape, dict) and "$json" in shape:
        if not isinstance(value, str):
            return [f"{where}: expected a JSON string, got {type(value).__name__}"]
        try:
            inner = json.loads(value)
        except ValueError:
            return [f"{where}: not JSON: {value[:60]!r}"]
        return check(shape["$json"], inner, f"{where}<json>")
    if isinstance(shape, dict) and "$each" in shape:
        if not isinstance(value, list):
            return [f"{where}: expected a list, got {type(value).__name__}"]
        problems = []
        if len(value) < shape.get("$min", 0):
            problems.append(f"{where}: expected at least {shape['$min']} items, got {len(value)}")
        for index, item in enumerate(value):
            problems += check(shape["$each"], item, f"{where}[{index}]")
        return problems
    if isinstance(shape, dict):
        if not isinstance(value, dict):
            return [f"{where}: expected an object, got {value!r}"]
        problems = []
        for key, inner_shape in shape.items():
            if key not in value:
                problems.append(f"{where}.{key}: missing")
            else:
                problems += check(inner_shape, value[key], f"{where}.{key}")
        return problems
    if isinstance(shape, list):
        if not isinstance(value, list) or len(value) != len(shape):
            return [f"{where}: expected {len(shape)} items, got {value!r}"]
        return [p for i, s in enumerate(shape) for p in check(s, value[i], f"{where}[{i}]")]
    return [] if shape == value else [f"{where}: expected {shape!r}, got {value!r}"]


def pick(value: Any, path: list[str | int]) -> Any:
    """The part of an answer a step saves (``"$json"`` in a path parses a JSON string)."""
    for part in path:
        value = json.loads(value) if part == "$json" else value[part]
    return value


_PLACEHOLDER = re.compile(r"\{([a-z_]+)\}")
#: Placeholders that stand for a URL prefix (slashes and all); the others are one segment.
_URL_PLACEHOLDERS = frozenset({"base", "tenant", "queue_url"})


def _template_regex(template: str) -> re.Pattern[str]:
    parts: list[str] = []
    last = 0
    for found in _PLACEHOLDER.finditer(template):
        parts.append(re.escape(template[last : found.start()]))
        parts.append(".+" if found.group(1) in _URL_PLACEHOLDERS else "[^/?&]+")
        last = found.end()
    parts.append(re.escape(template[last:]))
    return re.compile("".join(parts))


def request_problems(
    expected: dict[str, Any],
    method: str,
    url: str,
    headers: dict[str, str],
    body: Any,
) -> list[str]:
    """What in a sent request differs from a fixture step's ``request`` (``$def`` already
    resolved, placeholders *not* filled): the method, the URL's path (placeholders match
    anything), every query parameter and header the step names, and the body's shape.

    The production client's tests record its requests and check each against its step.
    """
    problems: list[str] = []
    if method.upper() != expected["method"]:
        problems.append(f"method: expected {expected['method']}, sent {method}")
    sent_path = url.split("?", 1)[0]
    template = expected["url"].split("?", 1)[0] + expected.get("path_suffix", "")
    if not _template_regex(template).fullmatch(sent_path):
        problems.append(f"url: {sent_path} does not match {template}")
    query_text = url.split("?", 1)[1] if "?" in url else ""
    sent_query = dict(parse_qsl(query_text, keep_blank_values=True))
    for name, value in expected.get("query", {}).items():
        if name not in sent_query:
            problems.append(f"query: {name} missing")
        elif not _template_regex(str(value)).fullmatch(sent_query[name]):
            problems.append(f"query: {name}={sent_query[name]} does not match {value}")
    lowered = {key.lower(): value for key, value in headers.items()}
    for name, value in expected.get("headers", {}).items():
        sent = lowered.get(name.lower())
        if sent is None:
            problems.append(f"header: {name} missing")
        elif not _template_regex(str(value)).fullmatch(sent):
            problems.append(f"header: {name} does not match {value}")
    if "body_shape" in expected:
        problems += check(expected["body_shape"], body, "body")
    return problems
