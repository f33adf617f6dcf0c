"""The JIT config's way to its instance: an SSM ``SecureString`` parameter named by the
instance id.

Why it looks the way it does:

*Never in user data or tags.* Whoever may describe an instance reads its user data and tags;
a parameter is encrypted with KMS and read only by who may decrypt it: the daemon, which
writes it, and the instance's role, which may read and delete only the parameter tagged with
its own ARN (``runnerscale:instance-arn``, the instance role's policy in ``images/ec2/iam/``),
named ``<prefix>/<instance-id>``.
The instance's boot script reads it, deletes it and starts the runner with it in the
environment. The parameter carries the instance's tags (controller, pool, runner), so a
sweep finds this pool's parameters without reading any of them.

*Never in a log either.* botocore logs every request's parameters at DEBUG, the parameter's
value included: while a value is written, the loggers that may show it replace it
(:class:`_Scrub`), and every error text is scrubbed before it goes anywhere.

*Deleting what is gone is success*, as everywhere in a provider: the boot script and the
daemon both delete the parameter, in either order.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import botocore.exceptions

__all__ = ["Handoff", "Parameter", "scrubbed"]

#: The loggers that may show a request's parameters or body (botocore at DEBUG).
_LOGGERS = (
    "botocore.endpoint",
    "botocore.parsers",
    "botocore.hooks",
    "botocore.handlers",
    "botocore.awsrequest",
    "botocore.httpsession",
    "botocore.auth",
    "botocore.retryhandler",
    "botocore.retries.standard",
    "urllib3.connectionpool",
)
REDACTED = "***"
_GONE = frozenset({"ParameterNotFound", "InvalidResourceId"})


class _Scrub(logging.Filter):
    """Replaces the values being written in the records of the loggers it is on."""

    def __init__(self) -> None:
        super().__init__()
        self._lock = threading.Lock()
        self._secrets: dict[str, int] = {}

    @contextlib.contextmanager
    def hiding(self, secret: str) -> Iterator[None]:
        with self._lock:
            self._secrets[secret] = self._secrets.get(secret, 0) + 1
        try:
            yield
        finally:
            with self._lock:
                left = self._secrets.pop(secret) - 1
                if left:
                    self._secrets[secret] = left

    def scrub(self, text: str) -> str:
        for secret in list(self._secrets):
            text = text.replace(secret, REDACTED)
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        if self._secrets:
            message = record.getMessage()
            scrubbed = self.scrub(message)
            if scrubbed != message:
                record.msg, record.args = scrubbed, None
        return True


_SCRUB = _Scrub()
for _name in _LOGGERS:
    logging.getLogger(_name).addFilter(_SCRUB)


def scrubbed(text: str, secret: str) -> str:
    """``text`` without ``secret`` (for an error's text)."""
    return text.replace(secret, REDACTED) if secret else text


@dataclass(frozen=True)
class Parameter:
    """One of this pool's parameters, as a sweep sees it (its value is never read)."""

    instance_id: str
    #: When it was written (seconds since the epoch).
    written_at: float


class Handoff:
    """The pool's parameters under ``prefix``, tagged with ``owner`` (controller and pool)."""

    def __init__(self, ssm: Any, prefix: str, owner: Mapping[str, str]) -> None:
        self.ssm = ssm
        self.prefix = prefix.rstrip("/")
        self.owner = dict(owner)

    def name(self, instance_id: str) -> str:
        """The parameter of an instance: ``<prefix>/<instance-id>``."""
        return f"{self.prefix}/{instance_id}"

    def write(self, instance_id: str, jitconfig: str, tags: Mapping[str, str]) -> None:
        """Write the JIT config for the instance (blocking). Errors are botocore's, their
        text scrubbed of the JIT config by the caller."""
        with _SCRUB.hiding(jitconfig):
            self.ssm.put_parameter(
                Name=self.name(instance_id),
                Description="runnerscale: a runner's one-job JIT config, read once at boot",
                Value=jitconfig,
                Type="SecureString",
                Tier="Intelligent-Tiering",  # standard up to 4 KB, advanced beyond
                Tags=[{"Key": key, "Value": value} for key, value in tags.items()],
            )

    def delete(self, instance_id: str) -> bool:
        """Delete the instance's parameter (blocking); True when it was there."""
        try:
            self.ssm.delete_parameter(Name=self.name(instance_id))
        except botocore.exceptions.ClientError as error:
            if error.response.get("Error", {}).get("Code") in _GONE:
                return False
            raise
        return True

    def owned(self, instance_id: str) -> bool:
        """Whether the instance's parameter exists and carries this pool's tags."""
        try:
            answer = self.ssm.list_tags_for_resource(
                ResourceType="Parameter", ResourceId=self.name(instance_id)
            )
        except botocore.exceptions.ClientError as error:
            if error.response.get("Error", {}).get("Code") in _GONE:
                return False
            raise
        tags = {tag["Key"]: tag["Value"] for tag in answer.get("TagList", [])}
        return all(tags.get(key) == value for key, value in self.owner.items())

    def existing(self) -> dict[str, Parameter]:
        """This pool's parameters by instance id (blocking; their values are not read)."""
        filters = [{"Key": "Path", "Option": "OneLevel", "Values": [self.prefix]}] + [
            {"Key": f"tag:{key}", "Option": "Equals", "Values": [value]}
            for key, value in self.owner.items()
        ]
        found: dict[str, Parameter] = {}
        paginator = self.ssm.get_paginator("describe_parameters")
        for page in paginator.paginate(ParameterFilters=filters):
            for entry in page.get("Parameters", []):
                name = str(entry["Name"])
                instance_id = name.rpartition("/")[2]
                written = entry.get("LastModifiedDate")
                found[instance_id] = Parameter(
                    instance_id, written.timestamp() if written is not None else 0.0
                )
        return found
