"""Where the zero-config start's GitHub token comes from: ``GH_TOKEN``, ``GITHUB_TOKEN``, or
``gh auth token``.

Why this order: it is ``gh``'s own (``GH_TOKEN`` before ``GITHUB_TOKEN``), and someone who
uses ``gh`` is already logged in. ``gh auth token`` is asked for ``GH_HOST``'s host by name
(``--hostname``: gh 2.23 ignores ``GH_HOST`` there), so a GitHub Enterprise Server login is
found, or ``GH_ENTERPRISE_TOKEN``, which gh gives for such a host. The token never goes on a
command line or into a message; what the config references is a variable's name
(:attr:`Token.variable`), and ``gh``'s token is handed to the loader as ``GH_TOKEN``.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from runnerscale.zeroconfig.decide import ZeroConfigError

#: The variables read, in order; gh's token is given to the config as the first.
VARIABLES = ("GH_TOKEN", "GITHUB_TOKEN")
_GH_TIMEOUT = 10.0

#: Runs gh in an environment: its exit code, standard output and standard error (OSError:
#: gh is not there).
RunGh = Callable[[Sequence[str], Mapping[str, str]], tuple[int, str, str]]


@dataclass(frozen=True)
class Token:
    """The token, the variable the config names it by, and how to give it to a saved config."""

    variable: str
    value: str = field(repr=False)
    #: For the config's comment: how ``runnerscale run -c FILE`` gets the token.
    hint: str


def run_gh(argv: Sequence[str], environ: Mapping[str, str]) -> tuple[int, str, str]:
    """``gh`` (found on ``environ``'s ``PATH``) with ``environ``: its config folder, its
    ``GH_ENTERPRISE_TOKEN``."""
    completed = subprocess.run(  # noqa: S603 - a fixed argv, no shell
        list(argv),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=_GH_TIMEOUT,
        check=False,
        env=dict(environ),
    )
    return completed.returncode, completed.stdout, completed.stderr


def find_token(environ: Mapping[str, str], gh: RunGh = run_gh) -> Token:
    """The token of ``environ`` or of ``gh``; :class:`ZeroConfigError` names the three ways."""
    for name in VARIABLES:
        if environ.get(name, "").strip():
            return Token(name, environ[name].strip(), f"read from {name} (set it to run this)")
    host = environ.get("GH_HOST", "").strip()
    argv = ["gh", "auth", "token", *(("--hostname", host) if host else ())]
    command = " ".join(argv)
    try:
        code, out, err = gh(argv, environ)
    except FileNotFoundError:
        why = "gh is not installed"
    except (OSError, subprocess.SubprocessError) as error:
        why = f"{command} failed: {type(error).__name__}"
    else:
        if code == 0 and out.strip():
            hint = f"{command}'s: run this with {VARIABLES[0]}=$({command})"
            return Token(VARIABLES[0], out.strip(), hint)
        said = err.strip().splitlines()[:1]
        why = f"{command} gave none" + (f": {said[0]}" if said else "")
    login = "gh auth login" + (f" --hostname {host}" if host else "")
    raise ZeroConfigError(
        f"no GitHub token: set GH_TOKEN or GITHUB_TOKEN to one, or log in with {login} so "
        f"that gh auth token gives one ({why}); docs/github.md says which permissions the "
        "token needs"
    )
