"""What the README and the docs tell a reader to write and to run, taken from their text: a
test that walks them runs what a reader reads, and fails when the text changes under it."""

from __future__ import annotations

import re
import shlex
from collections.abc import Mapping
from pathlib import Path

ROOT = Path(__file__).parents[1]
README = ROOT / "README.md"
CONFIGURATION = ROOT / "docs" / "configuration.md"
DEPLOY = ROOT / "docs" / "deploy.md"
EXTERNAL = ROOT / "docs" / "backends" / "external.md"


def documented_example() -> str:
    """The first YAML block of docs/configuration.md."""
    found = re.search(r"```yaml\n(.*?)```", CONFIGURATION.read_text(), re.DOTALL)
    assert found is not None, f"no yaml block in {CONFIGURATION}"
    return found.group(1)


def example_here(example: str, directory: Path, api_url: str, port: int) -> Path:
    """The example written to ``directory``, pointed at the simulator at ``api_url``, the port
    ``port`` and a state in ``directory`` (nothing else changed)."""
    text = example.replace("http://127.0.0.1:9000", api_url)
    text = text.replace("127.0.0.1:8787", f"127.0.0.1:{port}")
    text = re.sub(r"^state: \S+", f"state: sqlite:///{directory}/state.db", text, flags=re.M)
    assert text.count(api_url) == 1
    assert text.count(f":{port}") == 1
    assert str(directory) in text
    path = directory / "runnerscale.yaml"
    path.write_text(text)
    return path


def says(page: Path, text: str) -> str:
    """``text``, which ``page`` must say word for word."""
    assert text in page.read_text(), f"{page.relative_to(ROOT)} no longer says {text!r}"
    return text


def shell_block(
    page: Path, containing: str, replace: Mapping[str, str] | None = None
) -> list[list[str]]:
    """The commands of the first ``sh`` block of ``page`` that holds ``containing``, each as
    the shell splits it into words (comments and line continuations dropped), after each
    pattern of ``replace`` (a regular expression) is replaced by its value."""
    blocks = re.findall(r"^```sh\n(.*?)^```", page.read_text(), re.DOTALL | re.MULTILINE)
    found = [block for block in blocks if containing in block]
    assert found, f"{page.relative_to(ROOT)} has no sh block with {containing!r}"
    text = found[0].replace("\\\n", " ")
    for pattern, value in (replace or {}).items():
        text = re.sub(pattern, value, text)
    commands = (shlex.split(line, comments=True) for line in text.splitlines())
    return [command for command in commands if command]


def fenced_block(page: Path, language: str, containing: str) -> str:
    """The first fenced block in ``language`` (```bash) of ``page`` that holds ``containing``,
    as written (its text between the fences)."""
    blocks = re.findall(
        rf"^```{re.escape(language)}\n(.*?)^```", page.read_text(), re.DOTALL | re.M
    )
    found = [block for block in blocks if containing in block]
    assert found, f"{page.relative_to(ROOT)} has no {language} block with {containing!r}"
    return str(found[0])
