"""The zero-config start, in order: find the token, decide, render (the steps' modules say why).

What it gives the command line: the config's text, the environment to load it with (the
process's, plus ``gh``'s token under the name the text references), and the one line that
says how to save it and run it as a file.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from runnerscale.zeroconfig.decide import Host, Request, decide
from runnerscale.zeroconfig.render import render
from runnerscale.zeroconfig.token import RunGh, find_token, run_gh

#: The name the config's text goes by in messages ("zero-config:12: pools[0]...").
SOURCE = "zero-config"
SAVE_AS = "runnerscale.yaml"


@dataclass(frozen=True)
class ZeroConfig:
    """A zero-config start's configuration, ready to load."""

    text: str
    env: Mapping[str, str] = field(repr=False)
    #: The token, for the log's redaction.
    secret: str = field(repr=False)

    def header(self, *, printing: bool) -> str:
        """One comment line: how to keep this config and run it from the file."""
        if printing:
            return (
                "# runnerscale's zero-config start, as a config file: change it if you like "
                "(docs/configuration.md), and run runnerscale run -c FILE"
            )
        return (
            "# runnerscale's zero-config start runs this config: save it (the same command "
            f"with --print-config > {SAVE_AS}), change it if you like, and run runnerscale run "
            f"-c {SAVE_AS}"
        )


def build(
    request: Request, environ: Mapping[str, str], host: Host, gh: RunGh = run_gh
) -> ZeroConfig:
    """The configuration ``request`` asks for on ``host``; ``ZeroConfigError`` says what is
    wrong."""
    token = find_token(environ, gh)
    plan = decide(
        request,
        token_variable=token.variable,
        token_hint=token.hint,
        gh_host=environ.get("GH_HOST"),
        host=host,
    )
    return ZeroConfig(render(plan), {**environ, token.variable: token.value}, token.value)
