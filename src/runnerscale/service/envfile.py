"""The service's environment file: the values of the config's ``${VAR}`` references.

Why a file of its own: the config names its secrets (``token: ${GITHUB_TOKEN}``) so that it can
be shared and kept in version control; the values must reach the daemon without being on a
command line or in the unit (readable by every local user: ``systemctl show``). systemd reads
``EnvironmentFile=`` as root before it starts the service, so the file is root's, mode 0600.

Values are written double-quoted, with the four characters systemd's parser unescapes there
(``\\ " $ ```) escaped, so a value is read back as it was, spaces and all. A line break or
another control character has no reliable spelling in that format and is refused (a GitHub
App's key belongs in ``github.app.private_key_file``). ``parse`` reads the file back, for an
upgrade that runs ``service install`` again without the variables in its environment.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

__all__ = ["EnvFileError", "parse", "render"]

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_ESCAPED = '\\"$`'
_HEADER = (
    "# Written by `runnerscale service install`: the values of the config's ${VAR} references.\n"
    "# Root's, mode 0600: systemd reads it before starting the service. Run the install again\n"
    "# to change a value (it takes the new one from its environment).\n"
)


class EnvFileError(ValueError):
    """A value the file cannot hold; the message names the variable, never its value."""


def render(values: Mapping[str, str]) -> str:
    """The file's text for ``values``, in their order."""
    lines = [_HEADER]
    for name, value in values.items():
        if not _NAME.fullmatch(name):
            raise EnvFileError(f"{name!r} is not a variable name")
        if any(ord(character) < 0x20 or ord(character) == 0x7F for character in value):
            raise EnvFileError(
                f"the value of {name} holds a line break or another control character, which "
                "an environment file cannot carry: give it without (a GitHub App's key goes "
                "in a file named by github.app.private_key_file)"
            )
        escaped = "".join("\\" + c if c in _ESCAPED else c for c in value)
        lines.append(f'{name}="{escaped}"\n')
    return "".join(lines)


def parse(text: str) -> dict[str, str]:
    """The variables of a file ``render`` wrote (or one edited by hand in the same form:
    ``NAME="VALUE"`` or ``NAME=VALUE`` lines, ``#`` comments)."""
    values: dict[str, str] = {}
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped or stripped[0] in "#;" or "=" not in stripped:
            continue
        name, _, value = stripped.partition("=")
        name = name.strip()
        if not _NAME.fullmatch(name):
            continue
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] == '"':
            value = re.sub(r"\\([\\\"$`])", r"\1", value[1:-1])
        elif len(value) >= 2 and value[0] == value[-1] == "'":
            value = value[1:-1]
        values[name] = value
    return values
