"""The warnings of a valid configuration: every model's :meth:`~runnerscale.config.base.
ConfigModel.advice`, with the file and the line, as ``config validate`` prints them; and, the
same way, what of it cannot work on this host (:meth:`~runnerscale.config.base.ConfigModel.
host_problems`), which ``config validate`` and ``run`` refuse.

Why a walk over the loaded models: advice comes from the model that owns the setting (a
backend's settings know what of theirs is unwise), wherever it sits in the file, so nothing
here names a setting; the path of each model in the tree is the path of its YAML keys, which
the source maps to lines the same way errors are mapped.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pydantic import BaseModel

from runnerscale.config.base import Advice, ConfigModel
from runnerscale.config.problems import Problem, redact, render_path, sort_problems
from runnerscale.config.source import Document, KeyPath

__all__ = ["host_problems_of", "warnings_of"]


def warnings_of(config: BaseModel, doc: Document) -> list[Problem]:
    """Every model's advice in the loaded ``config``, by line, secrets redacted."""
    return _collect(config, doc, lambda model: model.advice())


def host_problems_of(config: BaseModel, doc: Document) -> list[Problem]:
    """What every model in the loaded ``config`` finds it cannot do on this host, by line,
    secrets redacted."""
    return _collect(config, doc, lambda model: model.host_problems())


def _collect(
    config: BaseModel, doc: Document, ask: Callable[[ConfigModel], list[Advice]]
) -> list[Problem]:
    found: list[Problem] = []

    def walk(value: Any, path: KeyPath) -> None:
        if isinstance(value, ConfigModel):
            for item in ask(value):
                where = (*path, *item.at)
                found.append(
                    Problem(
                        doc.source, doc.line_of(where), render_path(where), item.message, item.hint
                    )
                )
        if isinstance(value, BaseModel):
            for name in type(value).model_fields:
                walk(getattr(value, name), (*path, name))
        elif isinstance(value, (list, tuple)):
            for index, item in enumerate(value):
                walk(item, (*path, index))
        elif isinstance(value, dict):
            for key, item in value.items():
                walk(item, (*path, key))

    walk(config, ())
    return redact(sort_problems(found), doc.secrets)
