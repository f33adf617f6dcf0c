"""How a runner gets its JIT config, and a runner command's placeholders, the same for every
backend that runs one.

Why here: the local and Docker backends both start a runner, and backends do not import each
other; they must not differ in how the one-job secret reaches it.

*The JIT config travels in the environment*, as :data:`JITCONFIG_ENV`, never on a command
line by default: a process's command line is readable by every local user (``ps``,
``/proc/PID/cmdline``), its environment only by its own user and root. The official runner
reads it there: actions/runner's ``CommandSettings`` (``src/Runner.Listener/CommandSettings.cs``)
takes every ``ACTIONS_RUNNER_INPUT_<NAME>`` variable as the value of the option ``--<name>``
when the command line does not give it, masks it in its logs (``jitconfig`` is one of its
secret options) and removes it from its environment, so the job's processes do not inherit it.

*Placeholders*: a command from the configuration may name ``{runner_name}``, ``{pool}`` and
backend-specific values. ``{jitconfig}`` still works (:data:`JITCONFIG_PLACEHOLDER`) but puts
the secret on the command line; ``config validate`` warns about it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

#: The environment variable that carries a runner's JIT config (the official runner's name).
JITCONFIG_ENV = "ACTIONS_RUNNER_INPUT_JITCONFIG"
#: A command argument that becomes the JIT config (on the command line: warned about).
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
