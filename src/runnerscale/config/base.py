"""The base of every settings model: strict, frozen, and silent about its input; and the advice
a model may give about settings that work but should change.

Why: ``extra="forbid"`` makes an unknown key an error (a misspelled ``max_runner`` silently
ignored would leave the default in force, which is worse than refusing to start); ``frozen``
lets one loaded configuration be shared by every part of the daemon; ``hide_input_in_errors``
keeps pydantic from echoing input that may be secret (``explain`` decides what is shown).
Backends' settings derive from it too, wherever they live.

Some settings are valid but unwise (a ``{jitconfig}`` on a runner's command line). Refusing
them would break configurations that work; saying nothing would leave the risk unseen. So a
model names them in :meth:`ConfigModel.advice`, and ``config validate`` prints each as a
warning with its line and its fix (``runnerscale run`` logs them), through
:mod:`runnerscale.config.advice`.

Some settings are well-formed but cannot work on this host (a runner command that is not
there, an architecture the host does not have): the file alone cannot tell, the host can. A
model names them in :meth:`ConfigModel.host_problems`; ``config validate`` and ``runnerscale
run`` refuse the file with each as an error, rather than ``run`` failing at its first runner.
"""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict


@dataclass(frozen=True)
class Advice:
    """One setting that works but should change: what is wrong and how to fix it."""

    message: str
    hint: str
    #: Where, below the model that gives it (``("command", 3)``); () for the model itself.
    at: tuple[str | int, ...] = ()


class ConfigModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)

    def advice(self) -> list[Advice]:
        """What in this model's own settings works but should change (none by default)."""
        return []

    def host_problems(self) -> list[Advice]:
        """What in this model's own settings cannot work on this host (none by default)."""
        return []
