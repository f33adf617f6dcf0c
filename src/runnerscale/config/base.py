"""The base of every settings model: strict, frozen, and silent about its input.

Why: ``extra="forbid"`` makes an unknown key an error (a misspelled ``max_runner`` silently
ignored would leave the default in force, which is worse than refusing to start); ``frozen``
lets one loaded configuration be shared by every part of the daemon; ``hide_input_in_errors``
keeps pydantic from echoing input that may be secret (``explain`` decides what is shown).
Backends' settings derive from it too, wherever they live.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class ConfigModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)
