"""The ``external:`` block of a pool: which garm provider program to run, and what it is told.

Why these checks here: a relative executable, an empty pass-through prefix (which would hand
the provider every variable of the daemon, tokens included) or a ``GARM`` prefix (garm never
passes those) are mistakes the file alone shows, so they are refused with their line. Whether
the executable exists and may be run is a fact of the host the daemon runs on: it is checked
when the pool is built (:func:`runnerscale.providers.external.build`), not here.
"""

from __future__ import annotations

import posixpath
from typing import Any, Literal, TypeAlias

from pydantic import Field, field_validator

from runnerscale.config.base import Advice, ConfigModel
from runnerscale.config.problems import fail
from runnerscale.config.units import PositiveDuration

__all__ = ["Arch", "ExternalConfig", "InterfaceVersion", "OsType"]

#: The contract versions runnerscale speaks (garm-provider-common's constants).
InterfaceVersion: TypeAlias = Literal["v0.1.0", "v0.1.1"]
#: garm's ``OSType`` values a pool may ask for.
OsType: TypeAlias = Literal["linux", "windows"]
#: garm's ``OSArch`` values.
Arch: TypeAlias = Literal["amd64", "arm64", "arm", "i386"]


def _absolute(value: str, what: str) -> str:
    if not posixpath.isabs(value):
        raise fail(
            f"{what} {value!r} is not an absolute path",
            "give its absolute path (the provider runs with a clean environment and no PATH), "
            f"e.g. /usr/local/bin/{posixpath.basename(value) or 'garm-provider-lxd'}",
            echo=False,
        )
    return value


class ExternalConfig(ConfigModel):
    """The ``external`` backend: runs a garm-compatible provider program per operation."""

    executable: str = Field(
        description="The provider program, by absolute path (e.g. "
        "/usr/local/bin/garm-provider-lxd). Run once per operation with GARM_COMMAND set, as "
        "garm runs it.",
    )
    config_file: str | None = Field(
        default=None,
        description="The provider's own configuration file, by absolute path: passed as "
        "GARM_PROVIDER_CONFIG_FILE (runnerscale never reads it).",
    )
    interface_version: InterfaceVersion = Field(
        default="v0.1.0",
        description="The contract version the provider speaks: v0.1.0 (garm-provider-lxd "
        "and other providers built on the first interface) or v0.1.1 (adds "
        "GARM_POOL_EXTRASPECS, and GARM_POOL_ID on every command).",
    )
    image: str = Field(default="", description="The image, as the provider names it.")
    flavor: str = Field(default="", description="The flavor (size), as the provider names it.")
    os_type: OsType = Field(default="linux", description="The instances' OS: linux or windows.")
    arch: Arch | None = Field(
        default=None,
        description="The instances' architecture: amd64, arm64, arm or i386 (default: from "
        "the pool's labels x64, arm64 or arm, else amd64).",
    )
    extra_specs: dict[str, Any] = Field(
        default_factory=dict,
        description="The pool's extra specs, handed to the provider as JSON (in the "
        "bootstrap parameters' extra_specs, and with v0.1.1 as GARM_POOL_EXTRASPECS).",
    )
    environment_variables: list[str] = Field(
        default_factory=list,
        description="Name prefixes of the daemon's environment variables the provider gets "
        "(e.g. [PATH, LXD_]); it gets no others but the proxy variables, as with garm.",
    )
    timeout: PositiveDuration = Field(
        default=300.0,
        description="Kill a provider run (its whole process group) after this long.",
    )

    @field_validator("executable")
    @classmethod
    def _executable(cls, value: str) -> str:
        return _absolute(value, "the executable")

    @field_validator("config_file")
    @classmethod
    def _config_file(cls, value: str | None) -> str | None:
        return None if value is None else _absolute(value, "the config file")

    @field_validator("environment_variables")
    @classmethod
    def _prefixes(cls, value: list[str]) -> list[str]:
        for index, prefix in enumerate(value):
            if not prefix.strip():
                raise fail(
                    "an empty prefix would pass every variable of the daemon, its tokens included",
                    "name the variables' prefix, e.g. PATH or LXD_",
                    at=(index,),
                    echo=False,
                )
            if prefix.upper().startswith("GARM"):
                raise fail(
                    f"{prefix!r} would pass GARM_ variables, which runnerscale sets itself",
                    "remove it (garm never passes them either)",
                    at=(index,),
                    echo=False,
                )
        return value

    def advice(self) -> list[Advice]:
        if self.config_file is not None:
            return []
        return [
            Advice(
                "no config_file: providers built on garm-provider-common (LXD, Incus, "
                "OpenStack, ...) refuse to run without one (GARM_PROVIDER_CONFIG_FILE is then "
                "empty)",
                "give the provider's configuration file as config_file (a shell provider that "
                "needs none may ignore this)",
                at=("config_file",),
            )
        ]
