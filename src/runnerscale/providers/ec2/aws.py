"""A pool's AWS clients, the check made before it starts, and what AWS's errors say.

Why it looks the way it does:

*The standard credential chain, nothing of our own.* The clients come from a boto3 session
over the environment, the shared config files (``ec2.profile`` names a profile there) and
the instance role, as every AWS tool finds them: runnerscale's file holds no AWS key.
``endpoint_url`` points both clients at an AWS-compatible endpoint (moto in the tests).

*Two EC2 clients.* RunInstances goes through a client that never retries: botocore retries
server errors, and ``InsufficientInstanceCapacity`` is one, but a capacity error is an
answer (the next attempt is another type, subnet or market, :mod:`.launch`), not a glitch to
repeat three times with back-off while a job waits. Every other call is retried in botocore's
standard mode (throttling, 5xx, dropped connections), each call bounded by timeouts.

*A pool that cannot work refuses to start* (:func:`check`), naming what to fix: no
credentials anywhere in the chain, credentials AWS rejects, a missing launch template, a
missing permission. An AWS that does not answer right now is not a reason to refuse: the
start goes on with a warning and the pool's creations fail (and back off) until it answers.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import boto3.session
import botocore.config
import botocore.exceptions

from runnerscale.protocols import ProviderError
from runnerscale.providers.ec2.settings import Ec2Config

__all__ = [
    "CREDENTIAL_CODES",
    "Clients",
    "check",
    "connect",
    "error_code",
    "reason",
]

log = logging.getLogger("runnerscale.providers.ec2")

#: AWS refused who we are (no such key, a wrong secret, an expired session).
CREDENTIAL_CODES = frozenset(
    {
        "AuthFailure",
        "UnrecognizedClientException",
        "InvalidClientTokenId",
        "InvalidAccessKeyId",
        "SignatureDoesNotMatch",
        "ExpiredToken",
        "ExpiredTokenException",
        "RequestExpired",
    }
)
#: AWS knows who we are, but the policy does not allow the call.
PERMISSION_CODES = frozenset({"UnauthorizedOperation", "AccessDenied", "AccessDeniedException"})
_TEMPLATE_MISSING = frozenset(
    {
        "InvalidLaunchTemplateName.NotFoundException",
        "InvalidLaunchTemplateId.NotFound",
        "InvalidLaunchTemplateId.Malformed",
        "InvalidLaunchTemplateName.MalformedException",
    }
)
#: Seconds to connect, and to wait for an answer, per call.
CONNECT_TIMEOUT = 10
READ_TIMEOUT = 60
_FIX_CREDENTIALS = (
    "give the daemon AWS credentials the standard way: an instance role (on EC2), "
    "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY in its environment, or a profile of "
    "~/.aws/credentials named by ec2.profile or AWS_PROFILE"
)


@dataclass(frozen=True)
class Clients:
    """The boto3 clients of one pool (thread-safe: every call runs in a worker thread)."""

    #: EC2, retried in botocore's standard mode.
    ec2: Any
    #: EC2 for RunInstances only: never retried (see the module docstring).
    launch: Any
    #: SSM (the JIT config's parameters), retried in standard mode.
    ssm: Any
    #: Where they go, for messages: the region, and the endpoint when one is set.
    where: str


def connect(settings: Ec2Config, pool: str) -> Clients:
    """The pool's clients, from the standard credential chain; :class:`ProviderError` when
    the chain has no credentials (nothing is asked of AWS here)."""
    try:
        session = boto3.session.Session(profile_name=settings.profile, region_name=settings.region)
        credentials = session.get_credentials()
    except botocore.exceptions.ProfileNotFound:
        raise ProviderError(
            f"pool {pool}: the AWS profile {settings.profile!r} (ec2.profile) is in no AWS "
            "config file: create it (aws configure --profile NAME), or remove ec2.profile to "
            "use the environment or the instance role"
        ) from None
    except botocore.exceptions.BotoCoreError as error:
        raise ProviderError(
            f"pool {pool}: cannot read the AWS credentials: {reason(error)}; {_FIX_CREDENTIALS}"
        ) from None
    if credentials is None:
        raise ProviderError(f"pool {pool}: no AWS credentials found; {_FIX_CREDENTIALS}")

    def client(service: str, attempts: int) -> Any:
        config = botocore.config.Config(
            connect_timeout=CONNECT_TIMEOUT,
            read_timeout=READ_TIMEOUT,
            retries={"mode": "standard", "total_max_attempts": attempts},
            user_agent_extra="runnerscale",
        )
        return session.client(service, endpoint_url=settings.endpoint_url, config=config)

    where = f"region {settings.region}"
    if settings.endpoint_url:
        where += f" at {settings.endpoint_url}"
    return Clients(ec2=client("ec2", 3), launch=client("ec2", 1), ssm=client("ssm", 3), where=where)


def check(clients: Clients, settings: Ec2Config, pool: str) -> None:
    """Refuse (:class:`ProviderError`) when AWS rejects the credentials, the policy forbids
    reading the launch template, or the template does not exist; only warn when AWS cannot
    be reached now (blocking: called once, at start)."""
    key = next(iter(settings.launch_template_spec))  # LaunchTemplateId or LaunchTemplateName
    value = settings.launch_template
    missing = (
        f"pool {pool}: the launch template {value!r} (ec2.launch_template) does not exist "
        f"in {clients.where}: create it (docs/backends/ec2.md), or name an existing one by "
        "its name or its id (lt-...)"
    )
    try:
        answer = clients.ec2.describe_launch_templates(**{f"{key}s": [value]})
    except botocore.exceptions.ClientError as error:
        code = error_code(error)
        if code in _TEMPLATE_MISSING:
            raise ProviderError(missing) from None
        if code in CREDENTIAL_CODES:
            raise ProviderError(
                f"pool {pool}: AWS rejects the credentials ({reason(error)}); {_FIX_CREDENTIALS}"
            ) from None
        if code in PERMISSION_CODES:
            raise ProviderError(
                f"pool {pool}: the AWS credentials may not read the launch template "
                f"({reason(error)}): give them the daemon's policy "
                "(images/ec2/iam/daemon-policy.json)"
            ) from None
        log.warning("pool %s: cannot check the launch template now: %s", pool, reason(error))
        return
    except botocore.exceptions.NoCredentialsError:
        raise ProviderError(f"pool {pool}: no AWS credentials found; {_FIX_CREDENTIALS}") from None
    except botocore.exceptions.BotoCoreError as error:
        log.warning(
            "pool %s: cannot reach AWS (%s) to check the launch template now: %s; its "
            "creations fail until it answers",
            pool,
            clients.where,
            reason(error),
        )
        return
    if not answer.get("LaunchTemplates"):
        raise ProviderError(missing)


def error_code(error: BaseException) -> str:
    """AWS's error code (``InsufficientInstanceCapacity``); empty for an error AWS did not
    answer with (a timeout, a refused connection)."""
    if isinstance(error, botocore.exceptions.ClientError):
        return str(error.response.get("Error", {}).get("Code", ""))
    return ""


def reason(error: BaseException) -> str:
    """A short cause: AWS's code and message, or botocore's first line."""
    if isinstance(error, botocore.exceptions.ClientError):
        details = error.response.get("Error", {})
        code, message = details.get("Code", ""), details.get("Message", "")
        return f"{code}: {message}" if message else str(code or error)
    text = str(error) or type(error).__name__
    return text.splitlines()[0][:500]
