"""The just-in-time runner configuration the simulator hands out.

GitHub's ``encoded_jit_config`` is base64 of a JSON object holding the runner's settings files
(``.runner``, ``.credentials``, ``.credentials_rsaparams``), each itself base64 JSON. The
official runner decodes it in ``run.sh --jitconfig``. The simulator keeps that outer shape so a
backend treats it exactly as it would treat GitHub's: an opaque secret handed to the runner.
Only the stand-in runner (``runnerscale sim-runner``) ever decodes it.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any


class JitConfigError(ValueError):
    """The encoded configuration is not one the simulator issued."""


@dataclass(frozen=True)
class JitConfig:
    server_url: str
    runner_id: int
    runner_name: str
    credential: str
    work_folder: str = "_work"
    ephemeral: bool = True
    #: The CA (PEM) that signed an https ``server_url`` (``fake-github --tls``), trusted by the
    #: stand-in runner on top of the usual ones, so it needs no ``SSL_CERT_FILE``.
    server_ca: str | None = None

    def __repr__(self) -> str:  # never print the credential
        return f"JitConfig(server_url={self.server_url!r}, runner_id={self.runner_id})"


def _b64_json(value: dict[str, Any]) -> str:
    return base64.b64encode(json.dumps(value, separators=(",", ":")).encode()).decode()


def _from_b64_json(text: str) -> dict[str, Any]:
    decoded = json.loads(base64.b64decode(text, validate=True))
    if not isinstance(decoded, dict):
        raise JitConfigError("expected a JSON object")
    return decoded


def encode(config: JitConfig) -> str:
    runner_file: dict[str, Any] = {
        "AgentId": config.runner_id,
        "AgentName": config.runner_name,
        "PoolId": 1,
        "ServerUrl": config.server_url,
        "GitHubUrl": config.server_url,
        "WorkFolder": config.work_folder,
        "Ephemeral": config.ephemeral,
        "DisableUpdate": True,
    }
    if config.server_ca is not None:
        runner_file["ServerCaCertificate"] = config.server_ca
    credentials_file = {"Scheme": "OAuthAccessToken", "Data": {"token": config.credential}}
    return _b64_json(
        {
            ".runner": _b64_json(runner_file),
            ".credentials": _b64_json(credentials_file),
            ".credentials_rsaparams": _b64_json({"simulated": True}),
        }
    )


#: The settings files an encoded config holds, as the official runner names them in its folder.
SETTINGS_FILES = (".runner", ".credentials", ".credentials_rsaparams")


def from_files(root: Path) -> str:
    """The encoded configuration of the settings files in ``root`` (each file's content, as
    the runner's folder holds it, is one base64 value of the outer object)."""
    files = {}
    for name in SETTINGS_FILES:
        try:
            files[name] = base64.b64encode((root / name).read_bytes()).decode()
        except OSError as error:
            raise JitConfigError(
                f"cannot read the runner's settings file {name} in {root}: {error.strerror}"
            ) from None
    return base64.b64encode(json.dumps(files, separators=(",", ":")).encode()).decode()


def _optional_text(value: Any) -> str | None:
    if value is None or isinstance(value, str):
        return value
    raise TypeError("expected text")


def decode(encoded: str) -> JitConfig:
    """Read a configuration back; raises :class:`JitConfigError` on anything else."""
    try:
        outer = _from_b64_json(encoded.strip())
        runner_file = _from_b64_json(outer[".runner"])
        credentials_file = _from_b64_json(outer[".credentials"])
        return JitConfig(
            server_url=str(runner_file["ServerUrl"]).rstrip("/"),
            runner_id=int(runner_file["AgentId"]),
            runner_name=str(runner_file["AgentName"]),
            credential=str(credentials_file["Data"]["token"]),
            work_folder=str(runner_file.get("WorkFolder", "_work")),
            ephemeral=bool(runner_file.get("Ephemeral", True)),
            server_ca=_optional_text(runner_file.get("ServerCaCertificate")),
        )
    except (binascii.Error, ValueError, KeyError, TypeError) as error:
        raise JitConfigError(
            "not a JIT configuration issued by the runnerscale simulator "
            f"({type(error).__name__}); pass the encoded_jit_config value unchanged"
        ) from None
