"""A runner command's placeholders, filled the same way by every backend that runs one.

Why here: the local and Docker backends both take a command from the configuration whose
arguments may name ``{jitconfig}`` (the one-job secret), ``{runner_name}``, ``{pool}`` and
backend-specific values; they must not differ in how, and backends do not import each other.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

JITCONFIG_PLACEHOLDER = "{jitconfig}"


def fill_placeholders(templates: Sequence[str], values: Mapping[str, str]) -> list[str]:
    """Each argument with every placeholder of ``values`` replaced, in ``values``' order (put
    the JIT config last: nothing is substituted into the secret)."""
    argv = []
    for template in templates:
        argument = template
        for placeholder, value in values.items():
            argument = argument.replace(placeholder, value)
        argv.append(argument)
    return argv
