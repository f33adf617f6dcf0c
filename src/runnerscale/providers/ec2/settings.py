"""The ``ec2:`` block of a pool: the EC2 backend's settings (validated with the file).

Why these checks here: what AWS would refuse at the first launch (a region, subnet or
instance type misspelled, a tag key AWS reserves, an SSM name AWS cannot store) is cheaper to
fix before the daemon starts, with the line it is on, than from an API error at the first
queued job. Whether the launch template and the credentials exist is asked of AWS when the
pool is built (the provider), not here: a configuration validates on a host without boto3 or
credentials.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Field, field_validator

from runnerscale.config.base import Advice, ConfigModel
from runnerscale.config.problems import fail
from runnerscale.providers.ec2 import tags
from runnerscale.providers.ec2.prices import Ec2Price, Market, hourly_price

__all__ = ["Ec2Config", "Ec2Price"]

_REGION_RE = re.compile(r"^[a-z]{2}(-[a-z]+)+-[0-9]{1,2}$")
_TEMPLATE_ID_RE = re.compile(r"^lt-[0-9a-f]{8,17}$")
_TEMPLATE_NAME_RE = re.compile(r"^[A-Za-z0-9().\-/_]{3,128}$")
_VERSION_RE = re.compile(r"^(\$Default|\$Latest|[1-9][0-9]*)$")
_INSTANCE_TYPE_RE = re.compile(r"^[a-z][a-z0-9-]*\.[a-z0-9-]+$")
_SUBNET_RE = re.compile(r"^subnet-[0-9a-f]{1,17}$")
_SSM_SEGMENT_RE = re.compile(r"^[A-Za-z0-9_.-]+$")
_URL_RE = re.compile(r"^https?://[^\s/]+(/\S*)?$")
_PROFILE_RE = re.compile(r"^\S+$")
#: The characters of a tag key the instance metadata can show (the boot script reads tags
#: there, so every tag of the launch must be one of these: AWS refuses the launch otherwise).
_TAG_KEY_RE = re.compile(r"^[A-Za-z0-9+\-=.,_:@]{1,127}$")
_TAG_VALUE_MAX = 255
#: AWS's cap on an instance's tags, less the backend's own (:mod:`.tags`: controller, pool,
#: runner, SSM prefix, hand-off, and the interruption the boot script may add).
_MAX_USER_TAGS = 50 - 6
#: The instance id the longest parameter name is checked with.
_LONGEST_INSTANCE_ID = "i-0123456789abcdef0"
#: AWS's limit on a parameter's name, with its prefix.
_SSM_NAME_MAX = 1011

_MARKETS: dict[str, tuple[Market, ...]] = {
    "spot": ("spot",),
    "on-demand": ("on-demand",),
    "spot-then-on-demand": ("spot", "on-demand"),
}


def _unique(values: list[str], what: str) -> list[str]:
    seen: dict[str, int] = {}
    for index, value in enumerate(values):
        first = seen.setdefault(value, index)
        if first != index:
            raise fail(
                f"{value!r} is written twice (also at [{first}])",
                f"list every {what} once",
                at=(index,),
                echo=False,
            )
    return values


def _matching(pattern: re.Pattern[str], message: str, hint: str) -> AfterValidator:
    """A check that the whole value matches ``pattern``, failing with ``message`` and ``hint``."""

    def check(value: str) -> str:
        if not pattern.fullmatch(value):
            raise fail(message, hint)
        return value

    return AfterValidator(check)


def _instance_type(value: str, at: tuple[str | int, ...]) -> None:
    if not _INSTANCE_TYPE_RE.fullmatch(value):
        raise fail(
            f"{value!r} is not an instance type",
            "write an EC2 instance type in lower case, e.g. m7i.large or c7g.xlarge",
            at=at,
            echo=False,
        )


class Ec2Config(ConfigModel):
    """The ``ec2`` backend: each runner is an EC2 instance launched from a launch template."""

    region: Annotated[
        str,
        _matching(_REGION_RE, "is not an AWS region", "write the region's code, e.g. eu-west-1"),
    ] = Field(description="The AWS region the pool's instances run in, e.g. eu-west-1.")
    launch_template: str = Field(
        description="The launch template, by name or id (lt-...): it gives the AMI, the "
        "security groups, the instance profile and the user data that runs the boot script."
    )
    launch_template_version: Annotated[
        str,
        _matching(
            _VERSION_RE,
            "is not a launch template version",
            "write $Default, $Latest or a version number, e.g. 3",
        ),
    ] = Field(
        default="$Default",
        description="The template's version: $Default, $Latest or a number.",
    )
    instance_types: list[str] = Field(
        min_length=1,
        description="The instance types to launch, tried in order when capacity is short.",
    )
    subnets: list[str] = Field(
        default_factory=list,
        description="The subnets to launch in, tried in order for each instance type "
        "(default: the launch template's network settings).",
    )
    market: Literal["spot", "on-demand", "spot-then-on-demand"] = Field(
        default="on-demand",
        description="spot: spot instances only; on-demand: on-demand only; "
        "spot-then-on-demand: every type and subnet on spot first, then on demand.",
    )
    ssm_parameter_prefix: str = Field(
        default="/runnerscale/jit",
        description="Where the JIT configs are handed over: each instance reads and deletes "
        "the SecureString parameter <prefix>/<instance id>.",
    )
    tags: dict[str, str] = Field(
        default_factory=dict,
        description="More tags for the instances and their parameters (keys starting with "
        "runnerscale: or aws: are reserved).",
    )
    endpoint_url: (
        Annotated[
            str,
            _matching(
                _URL_RE,
                "is not an http(s) URL",
                "write the endpoint's URL, e.g. http://127.0.0.1:5000, or remove endpoint_url",
            ),
        ]
        | None
    ) = Field(
        default=None,
        description="An AWS-compatible endpoint for EC2 and SSM (tests, other clouds); "
        "default: AWS's own.",
    )
    profile: (
        Annotated[
            str,
            _matching(
                _PROFILE_RE,
                "is not a profile name",
                "write a profile of ~/.aws/config, e.g. profile: ci, or remove profile",
            ),
        ]
        | None
    ) = Field(
        default=None,
        description="A named profile of the AWS configuration files (default: the standard "
        "chain: environment, profile, instance role).",
    )
    prices: dict[str, Ec2Price] = Field(
        default_factory=dict,
        description="Hourly prices in US dollars by instance type, over the defaults "
        "(eu-west-1 list prices), e.g. {m7i.large: {on_demand: 0.1008, spot: 0.04}}.",
    )

    @field_validator("launch_template")
    @classmethod
    def _launch_template(cls, value: str) -> str:
        if value.startswith("lt-") and not _TEMPLATE_ID_RE.fullmatch(value):
            raise fail(
                "is not a launch template id",
                "write the id as AWS shows it (lt- and 17 hex digits), or the template's name",
            )
        if not _TEMPLATE_NAME_RE.fullmatch(value):
            raise fail(
                "is not a launch template name or id",
                "write the template's name (3 to 128 letters, digits and ( ) . - / _), e.g. "
                "runnerscale-runner, or its id lt-...",
            )
        return value

    @field_validator("launch_template_version", mode="before")
    @classmethod
    def _version_number(cls, value: Any) -> Any:
        return str(value) if isinstance(value, int) and not isinstance(value, bool) else value

    @field_validator("instance_types")
    @classmethod
    def _instance_types(cls, value: list[str]) -> list[str]:
        for index, item in enumerate(value):
            _instance_type(item, (index,))
        return _unique(value, "instance type")

    @field_validator("subnets")
    @classmethod
    def _subnets(cls, value: list[str]) -> list[str]:
        for index, item in enumerate(value):
            if not _SUBNET_RE.fullmatch(item):
                raise fail(
                    f"{item!r} is not a subnet id",
                    "write the subnet's id, e.g. subnet-0123456789abcdef0 (aws ec2 "
                    "describe-subnets lists them)",
                    at=(index,),
                    echo=False,
                )
        return _unique(value, "subnet")

    @field_validator("ssm_parameter_prefix")
    @classmethod
    def _prefix(cls, value: str) -> str:
        hint = "write an absolute parameter path, e.g. /runnerscale/jit"
        stripped = value.rstrip("/")
        if not value.startswith("/"):
            raise fail("is not an absolute parameter path", hint)
        segments = stripped[1:].split("/")
        if any(not _SSM_SEGMENT_RE.fullmatch(segment) for segment in segments):
            raise fail(
                "is not a parameter path",
                f"{hint}: each level letters, digits and _ . - only",
            )
        if segments[0].lower().startswith(("aws", "ssm")):
            raise fail(
                "starts with a name AWS reserves (aws or ssm)",
                "choose another first level, e.g. /runnerscale/jit",
            )
        if len(segments) + 1 > 15 or len(f"{stripped}/{_LONGEST_INSTANCE_ID}") > _SSM_NAME_MAX:
            raise fail(
                "is too deep or too long for a parameter name",
                "keep it under 14 levels and 990 characters, e.g. /runnerscale/jit",
            )
        return stripped

    @field_validator("tags")
    @classmethod
    def _tags(cls, value: dict[str, str]) -> dict[str, str]:
        for key, text in value.items():
            if key.lower().startswith(tags.RESERVED_PREFIXES):
                raise fail(
                    "is reserved",
                    "runnerscale writes runnerscale:controller, :pool and :runner itself, and "
                    "AWS reserves aws:; choose another key",
                    at=(key,),
                    echo=False,
                )
            if not _TAG_KEY_RE.fullmatch(key):
                raise fail(
                    "is not a tag key the instance metadata can show",
                    "use letters, digits and + - = . , _ : @ only (no / or space), at most "
                    "127 characters: the boot script reads the instance's tags there",
                    at=(key,),
                    echo=False,
                )
            if len(text) > _TAG_VALUE_MAX:
                raise fail(
                    f"is {len(text)} characters long",
                    f"keep a tag value to {_TAG_VALUE_MAX} characters",
                    at=(key,),
                    echo=False,
                )
        if len(value) > _MAX_USER_TAGS:
            raise fail(
                f"has {len(value)} tags",
                f"keep to {_MAX_USER_TAGS}: AWS allows 50 per instance and runnerscale writes "
                f"{50 - _MAX_USER_TAGS}",
                echo=False,
            )
        return value

    @field_validator("prices")
    @classmethod
    def _prices(cls, value: dict[str, Ec2Price]) -> dict[str, Ec2Price]:
        for key in value:
            _instance_type(key, (key,))
        return value

    @property
    def markets(self) -> tuple[Market, ...]:
        """The markets a launch tries, in order."""
        return _MARKETS[self.market]

    @property
    def launch_template_spec(self) -> dict[str, str]:
        """The ``LaunchTemplate`` argument of ``RunInstances``: by id or by name, and the
        version."""
        key = "LaunchTemplateId" if self.launch_template.startswith("lt-") else "LaunchTemplateName"
        return {key: self.launch_template, "Version": self.launch_template_version}

    def parameter_name(self, instance_id: str) -> str:
        """The SSM parameter an instance's JIT config is handed over in."""
        return f"{self.ssm_parameter_prefix}/{instance_id}"

    def price(self, instance_type: str, market: Market) -> float | None:
        """An instance's hourly price in US dollars (this block's ``prices``, else the
        defaults; None: unknown)."""
        return hourly_price(instance_type, market, self.prices)

    def advice(self) -> list[Advice]:
        found: list[Advice] = []
        for index, instance_type in enumerate(self.instance_types):
            unknown = [m for m in self.markets if self.price(instance_type, m) is None]
            if unknown:
                fields = ", ".join(f"{m.replace('-', '_')}: 0.1" for m in unknown)
                found.append(
                    Advice(
                        f"has no known {' or '.join(unknown)} price for {instance_type}: the "
                        "pool's cost and budget count its instances as free",
                        f"add prices: {{{instance_type}: {{{fields}}}}} (US dollars per hour)",
                        at=("instance_types", index),
                    )
                )
        found += [
            Advice(
                "is not among instance_types: it is not used",
                f"remove it, or add {key} to instance_types",
                at=("prices", key),
            )
            for key in self.prices
            if key not in self.instance_types
        ]
        return found
