"""A zero-config plan as the YAML of the equivalent config file (pure).

Why text, and not a model: the text is what the user saves and edits, and what the start loads
through the normal loader, so the printed config and the running one cannot differ. Its
comments say where each choice came from and how to change it. Every value the user gave is
written as a scalar the loader reads back as exactly that value (:func:`scalar`): quoted when
YAML would read it otherwise, ``$`` doubled so that no ``${...}`` in it is substituted. Only the
secrets' references are written as ``${NAME}``.
"""

from __future__ import annotations

import re
import shlex

import yaml

from runnerscale.zeroconfig.decide import LABELS, POOL, DockerPool, LocalPool, Plan

_PLAIN = re.compile(r"[A-Za-z0-9/._-][A-Za-z0-9/._:@+-]*")
#: Characters written as themselves in a double-quoted scalar: the printable ones YAML takes
#: in a stream, less its line breaks (which a quoted scalar would fold) and the byte order mark.
_AS_IS = re.compile(
    r"[ !#-\[\]-~\xa0-\u2027\u202a-\ud7ff\ue000-\ufefe\uff00-\ufffd\U00010000-\U0010ffff]"
)


def scalar(value: str) -> str:
    """``value`` as a YAML scalar (also inside ``[...]``) that the loader reads as ``value``."""
    text = value.replace("$", "$$")
    if _PLAIN.fullmatch(text) and _reads_back(text):
        return text
    return '"' + "".join(map(_quoted, text)) + '"'


def _reads_back(text: str) -> bool:
    """Whether ``text`` left plain reads back as itself (``...`` is YAML's document end: it
    does not even parse)."""
    try:
        return bool(yaml.safe_load(text) == text)
    except yaml.YAMLError:
        return False


def _quoted(character: str) -> str:
    """One character inside a double-quoted scalar."""
    if _AS_IS.fullmatch(character):
        return character
    if character in '"\\':
        return "\\" + character
    code = ord(character)
    return f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}"


def _comment(text: str) -> str:
    """``text`` on one line of a comment, whatever it holds."""
    line = " ".join(text.split())
    return "".join(c if c in '"\\' or _AS_IS.fullmatch(c) else "?" for c in line)


def render(plan: Plan) -> str:
    """The configuration's YAML, with comments."""
    lines = ["github:"]
    if plan.api_url is not None:
        lines.append(f"  api_url: {scalar(plan.api_url)}")
    lines.append(f"  token: ${{{plan.token_variable}}}  # {_comment(plan.token_hint)}")
    if plan.webhook_secret_variable is None:
        lines += [
            "  # No webhook_secret: polling alone finds jobs (every poll_interval, 15s). For",
            "  # webhooks (runners at once), add webhook_secret: ${WEBHOOK_SECRET} and a",
            f"  # workflow_job webhook to http://{plan.listen}/webhook: docs/github.md",
        ]
    else:
        lines.append(
            f"  webhook_secret: ${{{plan.webhook_secret_variable}}}"
            "  # workflow_job deliveries to /webhook on server.listen"
        )
    lines += [
        "targets:",
        f"  - {plan.target_kind}: {scalar(plan.target)}",
        "server:",
        f"  listen: {scalar(plan.listen)}",
        "pools:",
        f"  - name: {POOL}",
        f"    labels: [{', '.join(LABELS)}]  # auto: the architecture (and accelerators) found",
        *_pool_lines(plan),
    ]
    return "\n".join(lines) + "\n"


def _pool_lines(plan: Plan) -> list[str]:
    pool = plan.pool
    head = [
        f"    provider: {'docker' if isinstance(pool, DockerPool) else 'local'}"
        f"  # {_comment(pool.why)}",
        f"    max_runners: {plan.max_runners}",
    ]
    if isinstance(pool, DockerPool):
        return [
            *head,
            "    docker:",
            f"      image: {scalar(pool.image)}  # from images/runner: docs/backends/docker.md",
        ]
    assert isinstance(pool, LocalPool)
    copy = f"cp -R {shlex.quote(str(pool.runner_dir))}/. . && exec ./run.sh"
    command = ", ".join(scalar(argument) for argument in ("/bin/sh", "-c", copy))
    return [
        *head,
        "    local:",
        "      # Each runner copies the official runner into its own folder and runs it there;",
        "      # as root, run them as another user (user: NAME): docs/backends/local.md.",
        f"      command: [{command}]",
    ]
