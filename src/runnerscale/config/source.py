"""The YAML source: plain data with the line of every key, and ``${VAR}`` substituted.

Why it is built this way:

* **Errors name the line.** The YAML is composed into nodes (PyYAML's ``SafeLoader``) and
  turned into plain data by hand, remembering the line of every mapping key and sequence item
  under its path (``("pools", 0, "max_runners")``), the path pydantic reports errors by.
* **``${VAR}`` is substituted after parsing**, inside scalar string values only: a variable's
  value can never change the structure of the document (no injection of keys or lines, which
  a textual pre-pass would allow), and it keeps its line. What came from the environment, and
  what stands under a secret key, is remembered so that no message shows it.
* **Bounded**: aliases that expand stop at ``_MAX_NODES`` nodes; an alias to itself, a
  duplicate key or a document nested too deeply is a problem, not a crash.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeAlias

import yaml

from runnerscale.config.problems import DOCS, SECRET_KEYS, ConfigError, Problem, render_path

KeyPath: TypeAlias = tuple[str | int, ...]
_STR_TAG = "tag:yaml.org,2002:str"
_MERGE_TAG = "tag:yaml.org,2002:merge"
_MAX_NODES = 200_000


class _Loader(yaml.SafeLoader):
    pass


@dataclass
class Document:
    """Plain data from the YAML, with where everything came from."""

    source: str
    env: Mapping[str, str]
    lines: dict[KeyPath, int] = field(default_factory=dict)
    #: Paths whose value came (partly) from ${VAR}, with the variables' names.
    substituted: dict[KeyPath, list[str]] = field(default_factory=dict)
    #: Values never to show in a message (secrets, and what came from the environment).
    secrets: set[str] = field(default_factory=set)
    problems: list[Problem] = field(default_factory=list)
    nodes: int = 0
    #: The top-level keys to read (None: all). Values elsewhere are kept as written: their
    #: ``${VAR}`` is neither substituted nor needed (the control commands read two keys).
    sections: frozenset[str] | None = None

    def problem(self, path: KeyPath, line: int | None, message: str, hint: str) -> None:
        self.problems.append(Problem(self.source, line, render_path(path), message, hint))

    def line_of(self, path: KeyPath) -> int | None:
        for end in range(len(path), 0, -1):
            line = self.lines.get(path[:end])
            if line is not None:
                return line
        return None


_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_REFERENCE_HINT = "write ${NAME} or ${NAME:-default}, and $$ for a literal $"


def _substitute(text: str, doc: Document, path: KeyPath, line: int) -> str:
    """Replace ``${VAR}``, ``${VAR:-default}`` and ``$$`` in one scalar string."""
    if "$" not in text or (doc.sections is not None and path[:1] and path[0] not in doc.sections):
        return text
    out: list[str] = []
    names: list[str] = []
    referenced = False
    index = 0
    while True:
        dollar = text.find("$", index)
        if dollar < 0:
            out.append(text[index:])
            break
        out.append(text[index:dollar])
        following = text[dollar + 1 : dollar + 2]
        if following == "$":
            out.append("$")
            index = dollar + 2
            continue
        if following != "{":
            out.append("$")  # a lone $ is literal
            index = dollar + 1
            continue
        end = text.find("}", dollar + 2)
        if end < 0:
            doc.problem(path, line, "has a ${ that is never closed", _REFERENCE_HINT)
            return text
        referenced = True
        body = text[dollar + 2 : end]
        name, has_default, default = body.partition(":-")
        if not _NAME_RE.match(name):
            shown = body if len(body) <= 40 else body[:37] + "..."
            doc.problem(path, line, f"has a bad variable reference ${{{shown}}}", _REFERENCE_HINT)
            return text
        value = doc.env.get(name)
        if has_default and not value:
            value = default
        elif value is None:
            doc.problem(
                path,
                line,
                f"uses ${{{name}}}, but {name} is not set",
                f"set {name} in the environment, or give a default with ${{{name}:-...}}",
            )
            value = ""
        elif value:
            names.append(name)
            if len(value) >= 8 or (path and path[-1] in SECRET_KEYS):
                doc.secrets.add(value)
        out.append(value)
        index = end + 1
    if referenced:
        doc.substituted[path] = names or ["(default)"]
    return "".join(out)


def _build(node: yaml.Node, path: KeyPath, loader: _Loader, doc: Document, active: set[int]) -> Any:
    doc.nodes += 1
    if doc.nodes > _MAX_NODES:
        raise _TooLargeError
    if isinstance(node, yaml.ScalarNode):
        if node.tag == _STR_TAG:
            value: Any = _substitute(str(node.value), doc, path, node.start_mark.line + 1)
            if path and path[-1] in SECRET_KEYS and isinstance(value, str) and len(value) >= 3:
                doc.secrets.add(value)
            return value
        return loader.construct_object(node, deep=True)
    if id(node) in active:
        doc.problem(
            path,
            node.start_mark.line + 1,
            "refers to itself through an alias",
            "remove the recursive *alias",
        )
        return None
    active.add(id(node))
    try:
        if isinstance(node, yaml.SequenceNode):
            items = []
            for index, child in enumerate(node.value):
                doc.lines.setdefault((*path, index), child.start_mark.line + 1)
                items.append(_build(child, (*path, index), loader, doc, active))
            return items
        assert isinstance(node, yaml.MappingNode)
        first_line: dict[str, int] = {}
        for key_node, _ in node.value:
            if isinstance(key_node, yaml.ScalarNode) and key_node.tag != _MERGE_TAG:
                key = str(key_node.value)
                line = key_node.start_mark.line + 1
                if key in first_line:
                    doc.problem(
                        (*path, key),
                        line,
                        f"is given twice (first on line {first_line[key]})",
                        "keep one of them",
                    )
                first_line.setdefault(key, line)
        loader.flatten_mapping(node)
        mapping: dict[str, Any] = {}
        for key_node, value_node in node.value:
            line = key_node.start_mark.line + 1
            if not isinstance(key_node, yaml.ScalarNode):
                doc.problem(path, line, "has a key that is not a plain word", "write key: value")
                continue
            key = str(key_node.value)
            doc.lines[(*path, key)] = line
            mapping[key] = _build(value_node, (*path, key), loader, doc, active)
        return mapping
    finally:
        active.discard(id(node))


class _TooLargeError(Exception):
    pass


def _yaml_hint(problem: str) -> str:
    if "\\t" in problem or "tab" in problem:
        return "indent with spaces; YAML does not allow tabs"
    if "mapping values are not allowed" in problem:
        return "quote a value that contains ': ', or check this line's indentation"
    if "could not find expected ':'" in problem:
        return "a key needs ': ' after it; check this line and the one before"
    if "expected <block end>" in problem or "expected <block" in problem:
        return "check the indentation: entries of one list or mapping must line up"
    if "while parsing a flow" in problem:
        return (
            "close every [ and { that is opened, and inside [...] or {...} quote values that "
            'contain , [ ] { } or ${...}, e.g. "${TOKEN}"'
        )
    if "undefined alias" in problem:
        return "define the anchor (&name) before using *name"
    if "constructor for the tag" in problem:
        return "remove the !tag; only plain YAML is accepted"
    if "single document" in problem:
        return "keep one document in the file (remove the extra '---')"
    if "found unexpected end of stream" in problem or "while scanning a quoted" in problem:
        return "close the quote that starts here"
    return "check the quoting and indentation on this line and the line before"


def _yaml_problem(error: yaml.YAMLError, source: str, text: str) -> Problem:
    line: int | None = None
    message = "invalid YAML"
    if isinstance(error, yaml.MarkedYAMLError):
        mark = error.problem_mark or error.context_mark
        if mark is not None:
            line = mark.line + 1
        detail = error.problem or error.context or ""
        if error.context and error.problem and error.context_mark is not None:
            detail = f"{error.problem} ({error.context} on line {error.context_mark.line + 1})"
        if detail:
            message = f"invalid YAML: {detail}"
        hint = _yaml_hint(f"{error.problem} {error.context}")
    elif isinstance(error, yaml.reader.ReaderError):
        line = text[: error.position].count("\n") + 1
        message = "invalid YAML: the file contains a character YAML does not allow"
        hint = "remove the control character on this line"
    else:
        hint = _yaml_hint(str(error))
    return Problem(source, line, "", message, hint)


def read_yaml(
    text: str, source: str, env: Mapping[str, str], sections: frozenset[str] | None = None
) -> tuple[Any, Document]:
    """The file's data and where it came from; with ``sections``, only those top-level keys'
    variables are substituted (and must be set)."""
    doc = Document(source=source, env=env, sections=sections)
    try:
        loader = _Loader(text)
    except yaml.YAMLError as error:  # a character YAML does not allow
        raise ConfigError([_yaml_problem(error, source, text)]) from None
    try:
        root = loader.get_single_node()
        if root is None:
            raise ConfigError(
                [
                    Problem(
                        source,
                        None,
                        "",
                        "the file is empty",
                        f"write at least github, targets and pools; see {DOCS}",
                    )
                ]
            )
        if not isinstance(root, yaml.MappingNode):
            kind = "a list" if isinstance(root, yaml.SequenceNode) else "a single value"
            raise ConfigError(
                [
                    Problem(
                        source,
                        root.start_mark.line + 1,
                        "",
                        f"the top level is {kind}, not a mapping of keys",
                        "start the file with keys such as 'github:', 'targets:' and 'pools:'",
                    )
                ]
            )
        data = _build(root, (), loader, doc, set())
    except yaml.YAMLError as error:
        raise ConfigError([_yaml_problem(error, source, text)]) from None
    except _TooLargeError:
        raise ConfigError(
            [Problem(source, None, "", "the document is too large", "remove aliases that expand")]
        ) from None
    except RecursionError:
        raise ConfigError(
            [Problem(source, None, "", "the document is nested too deeply", "flatten it")]
        ) from None
    finally:
        loader.dispose()
    return data, doc


class _Recorder(Mapping[str, str]):
    """An empty environment that remembers every name looked up in it."""

    def __init__(self) -> None:
        self.names: dict[str, None] = {}

    def __getitem__(self, name: str) -> str:
        self.names[name] = None
        raise KeyError(name)

    def __iter__(self) -> Iterator[str]:
        return iter(())

    def __len__(self) -> int:
        return 0


def referenced_variables(text: str, source: str = "<config>") -> list[str]:
    """The names of the variables the YAML's ``${VAR}`` references read, in order of first
    use: those in string values only (not in comments, not ``$${...}``), whether or not they
    have a default. For whoever must provide the environment the file will be loaded with
    (``service install``, ``simulate``). Raises ``ConfigError`` when the text is not YAML."""
    recorder = _Recorder()
    read_yaml(text, source, recorder)
    return list(recorder.names)
