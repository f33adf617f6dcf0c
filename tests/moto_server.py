"""AWS for tests: moto in server mode on loopback, a thin proxy in front of it that injects the
launch errors AWS gives when capacity or quota is short, and an account set up as the ec2
backend's configuration needs it.

Why a server and a proxy: the daemon under test is a process of its own (killed with ``kill
-9`` in some tests), so AWS must be a real HTTP endpoint it reaches through ``endpoint_url``,
as it would reach another AWS-compatible cloud. moto has no way to make ``RunInstances`` fail
for capacity (its ``/moto-api/`` configures other services' canned results only), so
:class:`FaultProxy` stands in front of it: it reads each EC2 Query request, answers a
``RunInstances`` that a rule of :class:`Ec2Faults` matches with AWS's error (status, code and
XML body as AWS sends them; ``InsufficientInstanceCapacity`` is a server error, 500, which
botocore retries unless told not to), and passes everything else to moto unchanged. Every
``RunInstances`` it sees is recorded (:attr:`Ec2Faults.launches`), so a test can read the
order the provider tried types, subnets and markets in.

Credentials: moto accepts any. They are given to the tests' own boto3 clients as arguments
(:meth:`MotoServer.client`) and to a process under test in the environment the test builds
for it (:meth:`MotoServer.environment`), never put in this process's ``os.environ``; a test
whose provider runs in this process and reads the standard chain asks for
``aws_environment``, which sets them for that test only.

Fixtures (exposed to ``tests/providers``; elsewhere ``from tests.moto_server import ...`` in a
``conftest.py``):

``moto_server`` (session)
    :class:`MotoServer`: ``url`` is the proxy's endpoint (give it as ``endpoint_url``),
    ``moto_url`` moto's own, ``faults`` the rules. Starting it takes about half a second.
``ec2_setup`` (function)
    :class:`Ec2Setup`: moto emptied and the fault rules cleared, then a VPC with two subnets in
    two zones, an AMI named like the Packer one, and the launch template ``runnerscale-runner``
    in ``eu-west-1``; moto makes the ids up, so the setup carries them (``subnet_ids``,
    ``block()`` for the pool's ``ec2:`` settings).
``aws_environment`` (function)
    The fake credentials and region in ``os.environ`` for one test (restored after it).

No moto installed: the fixtures skip, saying that the ``dev`` extra installs it.
"""

from __future__ import annotations

import http.client
import importlib.util
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Literal
from urllib.parse import parse_qs, urlsplit
from xml.sax.saxutils import escape

import boto3
import pytest
from botocore.config import Config

__all__ = [
    "CREDENTIALS",
    "FAULT_CODES",
    "LAUNCH_TEMPLATE",
    "REGION",
    "Ec2Faults",
    "Ec2Setup",
    "Fault",
    "FaultProxy",
    "Launch",
    "MotoServer",
    "aws_environment",
    "ec2_setup",
    "moto_server",
    "start_moto",
]

#: The region of the issue's pool, and of every test account.
REGION = "eu-west-1"
#: The launch template the issue's pool names.
LAUNCH_TEMPLATE = "runnerscale-runner"
#: moto's default account takes any key; these are what the tests' clients sign with.
CREDENTIALS: Mapping[str, str] = {
    "AWS_ACCESS_KEY_ID": "AKIAMOTOTESTING00000",
    "AWS_SECRET_ACCESS_KEY": "moto-testing-secret-key-not-a-real-one",
}

#: Launch errors the proxy can give, with AWS's HTTP status and a message like AWS's.
FAULT_CODES: Mapping[str, tuple[int, str]] = {
    "InsufficientInstanceCapacity": (
        500,
        "We currently do not have sufficient {instance_type} capacity in the Availability "
        "Zone you requested. Our system will be working on provisioning additional capacity.",
    ),
    "SpotMaxPriceTooLow": (
        400,
        "Your Spot request price is lower than the minimum required Spot request fulfillment "
        "price for {instance_type}.",
    ),
    "MaxSpotInstanceCountExceeded": (400, "Max spot instance count exceeded"),
    "VcpuLimitExceeded": (
        400,
        "You have requested more vCPU capacity than your current vCPU limit allows for the "
        "instance bucket that the specified instance type belongs to.",
    ),
    "InstanceLimitExceeded": (
        400,
        "Your quota allows for 0 more running instance(s). You requested at least 1.",
    ),
}

MarketName = Literal["spot", "on-demand"]


@dataclass(frozen=True)
class Fault:
    """One rule: a ``RunInstances`` for these types, subnets and market fails with ``code``
    (None in a field: any), the next ``times`` times (None: every time)."""

    code: str
    instance_types: frozenset[str] | None = None
    subnets: frozenset[str] | None = None
    market: MarketName | None = None

    def matches(self, launch: Launch) -> bool:
        return (
            (self.instance_types is None or launch.instance_type in self.instance_types)
            and (self.subnets is None or launch.subnet in self.subnets)
            and (self.market is None or launch.market == self.market)
        )


@dataclass(frozen=True)
class Launch:
    """One ``RunInstances`` the proxy saw: what it asked for, and what came of it (``launched``,
    the injected code, or moto's own error code)."""

    instance_type: str | None
    subnet: str | None
    market: MarketName
    count: int
    outcome: str = ""


class Ec2Faults:
    """The fault rules the proxy applies, and the launches it saw. Thread-safe: the proxy's
    threads read it while a test changes it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._rules: list[tuple[Fault, int | None]] = []
        self._launches: list[Launch] = []

    def fail(
        self,
        code: str,
        *,
        instance_types: Iterable[str] | None = None,
        subnets: Iterable[str] | None = None,
        market: MarketName | None = None,
        times: int | None = None,
    ) -> None:
        """From now on, a ``RunInstances`` that matches fails with ``code`` (one of
        :data:`FAULT_CODES`), ``times`` times or (None) until :meth:`clear`."""
        if code not in FAULT_CODES:
            raise ValueError(f"no fault {code!r}; the proxy knows {', '.join(FAULT_CODES)}")
        rule = Fault(
            code,
            None if instance_types is None else frozenset(instance_types),
            None if subnets is None else frozenset(subnets),
            market,
        )
        with self._lock:
            self._rules.append((rule, times))

    def insufficient_capacity(
        self,
        instance_types: Iterable[str] | None = None,
        *,
        subnets: Iterable[str] | None = None,
        market: MarketName | None = None,
        times: int | None = None,
    ) -> None:
        """AWS has none of these types (in these subnets, on this market) to give."""
        self.fail(
            "InsufficientInstanceCapacity",
            instance_types=instance_types,
            subnets=subnets,
            market=market,
            times=times,
        )

    def spot_unavailable(
        self,
        code: str = "InsufficientInstanceCapacity",
        *,
        instance_types: Iterable[str] | None = None,
        subnets: Iterable[str] | None = None,
        times: int | None = None,
    ) -> None:
        """A spot launch fails (``InsufficientInstanceCapacity``, ``SpotMaxPriceTooLow`` or
        ``MaxSpotInstanceCountExceeded``); on-demand ones still succeed."""
        self.fail(code, instance_types=instance_types, subnets=subnets, market="spot", times=times)

    def quota_exceeded(
        self,
        code: str = "VcpuLimitExceeded",
        *,
        instance_types: Iterable[str] | None = None,
        market: MarketName | None = None,
        times: int | None = None,
    ) -> None:
        """The account's quota is used up (``VcpuLimitExceeded`` or ``InstanceLimitExceeded``)."""
        self.fail(code, instance_types=instance_types, market=market, times=times)

    def clear(self) -> None:
        """No rule any more, and no launch remembered."""
        with self._lock:
            self._rules.clear()
            self._launches.clear()

    @property
    def launches(self) -> list[Launch]:
        """Every ``RunInstances`` seen since the last :meth:`clear`, in order."""
        with self._lock:
            return list(self._launches)

    def decide(self, launch: Launch) -> str | None:
        """The code this launch fails with (a rule's ``times`` counts down), or None."""
        with self._lock:
            for index, (rule, times) in enumerate(self._rules):
                if rule.matches(launch):
                    if times is not None:
                        if times <= 1:
                            del self._rules[index]
                        else:
                            self._rules[index] = (rule, times - 1)
                    return rule.code
        return None

    def record(self, launch: Launch) -> None:
        with self._lock:
            self._launches.append(launch)


def _launch_of(form: Mapping[str, list[str]]) -> Launch:
    """What a ``RunInstances`` asks for, from its Query parameters (the subnet may be given
    directly or on the first network interface; the type and subnet may be the template's, and
    then are None here)."""

    def first(*names: str) -> str | None:
        for name in names:
            if form.get(name):
                return form[name][0]
        return None

    market: MarketName = (
        "spot" if first("InstanceMarketOptions.MarketType") == "spot" else "on-demand"
    )
    return Launch(
        instance_type=first("InstanceType"),
        subnet=first("SubnetId", "NetworkInterface.1.SubnetId"),
        market=market,
        count=int(first("MaxCount") or "1"),
    )


def _error_body(code: str, message: str) -> bytes:
    request_id = f"{time.monotonic_ns():032x}"
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f"<Response><Errors><Error><Code>{escape(code)}</Code><Message>{escape(message)}"
        f"</Message></Error></Errors><RequestID>{request_id}</RequestID></Response>"
    ).encode()


def _error_code(body: bytes) -> str:
    start = body.find(b"<Code>")
    end = body.find(b"</Code>", start)
    return body[start + 6 : end].decode() if start >= 0 and end > start else "error"


class FaultProxy:
    """An HTTP proxy on loopback in front of moto: ``RunInstances`` requests go through
    :class:`Ec2Faults`, everything else to moto unchanged."""

    def __init__(self, upstream: str, faults: Ec2Faults) -> None:
        self.faults = faults
        target = urlsplit(upstream)
        host, port = target.hostname or "127.0.0.1", target.port or 80
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                """Quiet: moto's own log has every request."""

            def _relay(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                launch = proxy._launch(self.headers.get("Content-Type", ""), body)
                code = proxy.faults.decide(launch) if launch is not None else None
                if launch is not None and code is not None:
                    status, message = FAULT_CODES[code]
                    text = message.format(instance_type=launch.instance_type or "that")
                    proxy.faults.record(_with_outcome(launch, code))
                    self._answer(status, {"Content-Type": "text/xml"}, _error_body(code, text))
                    return
                connection = http.client.HTTPConnection(host, port, timeout=60)
                try:
                    headers = {k: v for k, v in self.headers.items() if k.lower() != "connection"}
                    connection.request(self.command, self.path, body=body, headers=headers)
                    response = connection.getresponse()
                    answer = response.read()
                    if launch is not None:
                        outcome = "launched" if response.status < 300 else _error_code(answer)
                        proxy.faults.record(_with_outcome(launch, outcome))
                    passed = {
                        k: v
                        for k, v in response.getheaders()
                        if k.lower() not in ("transfer-encoding", "connection", "content-length")
                    }
                    self._answer(response.status, passed, answer)
                finally:
                    connection.close()

            def _answer(self, status: int, headers: Mapping[str, str], body: bytes) -> None:
                self.send_response(status)
                for key, value in headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            def do_GET(self) -> None:
                self._relay()

            def do_POST(self) -> None:
                self._relay()

            def do_PUT(self) -> None:
                self._relay()

            def do_DELETE(self) -> None:
                self._relay()

            def do_HEAD(self) -> None:
                self._relay()

            def do_PATCH(self) -> None:
                self._relay()

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="ec2-fault-proxy", daemon=True
        )
        self._thread.start()
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"

    @staticmethod
    def _launch(content_type: str, body: bytes) -> Launch | None:
        if "x-www-form-urlencoded" not in content_type or b"RunInstances" not in body:
            return None
        form = parse_qs(body.decode(), keep_blank_values=True)
        if form.get("Action") != ["RunInstances"]:
            return None
        return _launch_of(form)

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


def _with_outcome(launch: Launch, outcome: str) -> Launch:
    return Launch(launch.instance_type, launch.subnet, launch.market, launch.count, outcome)


@dataclass
class MotoServer:
    """moto in server mode on loopback (a process of its own), behind the fault proxy."""

    moto_url: str
    process: subprocess.Popen[bytes]
    proxy: FaultProxy
    log: Path
    boto3_session: Any = field(default=None, repr=False)

    @property
    def url(self) -> str:
        """The endpoint to give as ``endpoint_url``: the fault proxy (everything passes through
        unless a rule says otherwise)."""
        return self.proxy.url

    @property
    def faults(self) -> Ec2Faults:
        return self.proxy.faults

    def client(
        self, service: str, region: str = REGION, *, direct: bool = False, retries: int = 3
    ) -> Any:
        """A boto3 client of this moto, signing with :data:`CREDENTIALS` (given as arguments:
        nothing of this process's environment is read or changed). ``direct``: moto itself,
        past the proxy; ``retries``: attempts in all (1: an injected 500 is raised at once)."""
        return self._session().client(
            service,
            region_name=region,
            endpoint_url=self.moto_url if direct else self.url,
            aws_access_key_id=CREDENTIALS["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
            config=Config(retries={"mode": "standard", "total_max_attempts": retries}),
        )

    def _session(self) -> Any:
        """One boto3 session for the tests' clients (its clients share the loaded service
        models: a new session takes a third of a second per client)."""
        if self.boto3_session is None:
            self.boto3_session = boto3.session.Session()
        return self.boto3_session

    def environment(self, region: str = REGION) -> dict[str, str]:
        """What a process under test needs in its environment to reach this moto through the
        standard chain: the credentials and region, no configuration files, no instance
        metadata probe. (The endpoint is the pool's ``endpoint_url``.)"""
        return {
            **CREDENTIALS,
            "AWS_DEFAULT_REGION": region,
            "AWS_CONFIG_FILE": os.devnull,
            "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
            "AWS_EC2_METADATA_DISABLED": "true",
        }

    def reset(self) -> None:
        """Every resource of every account gone (moto's ``/moto-api/reset``), and every fault
        rule and remembered launch."""
        request = urllib.request.Request(f"{self.moto_url}/moto-api/reset", method="POST")
        with urllib.request.urlopen(request, timeout=30) as response:
            response.read()
        self.faults.clear()

    def stop(self) -> None:
        self.proxy.close()
        self.process.kill()  # moto keeps nothing worth a clean exit
        self.process.wait()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def start_moto(directory: Path, patience: float = 30.0) -> MotoServer:
    """Start ``python -m moto.server`` on a free loopback port (its log in ``directory``) and
    the fault proxy in front of it; returns once moto answers."""
    port = _free_port()
    log = directory / "moto.log"
    # moto needs no credentials; none of this process's reach it. Without its thousand
    # default AMIs a region comes up in milliseconds (the setup registers the one it needs).
    environ = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    environ["MOTO_EC2_LOAD_DEFAULT_AMIS"] = "false"
    with log.open("wb") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            stdout=output,
            stderr=subprocess.STDOUT,
            env=environ,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + patience
    while True:
        try:
            with urllib.request.urlopen(f"{url}/moto-api/data.json", timeout=5) as response:
                response.read()
            break
        except (urllib.error.URLError, ConnectionError):
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                process.wait()
                raise RuntimeError(
                    f"moto server did not start on {url}: {log.read_text()[-2000:]}"
                ) from None
            time.sleep(0.05)
    return MotoServer(url, process, FaultProxy(url, Ec2Faults()), log)


@dataclass
class Ec2Setup:
    """What the issue's configuration needs in the account, as moto made it."""

    server: MotoServer
    region: str
    vpc_id: str
    subnet_ids: list[str]
    image_id: str
    launch_template_id: str
    launch_template_name: str = LAUNCH_TEMPLATE
    ec2: Any = field(repr=False, default=None)
    ssm: Any = field(repr=False, default=None)

    def block(self, **overrides: Any) -> dict[str, Any]:
        """The pool's ``ec2:`` settings of the issue, with this account's subnets and the
        proxy's endpoint (``overrides`` replace keys)."""
        return {
            "region": self.region,
            "launch_template": self.launch_template_name,
            "instance_types": ["m7i.large", "m6i.large", "m5.large"],
            "subnets": list(self.subnet_ids),
            "market": "spot-then-on-demand",
            "ssm_parameter_prefix": "/runnerscale/jit",
            "tags": {"team": "ci"},
            "endpoint_url": self.server.url,
            **overrides,
        }

    def instances(self, **filters: str) -> list[dict[str, Any]]:
        """Every instance moto has (terminated ones too), optionally only those with these
        tags (``{"runnerscale:pool": "ec2-x64"}``)."""
        spec = [{"Name": f"tag:{key}", "Values": [value]} for key, value in filters.items()]
        found = []
        for page in self.ec2.get_paginator("describe_instances").paginate(Filters=spec):
            for reservation in page["Reservations"]:
                found.extend(reservation["Instances"])
        return found

    def parameters(self, prefix: str = "/runnerscale/jit") -> list[str]:
        """The names of the SSM parameters under ``prefix``."""
        names: list[str] = []
        paginator = self.ssm.get_paginator("get_parameters_by_path")
        for page in paginator.paginate(Path=prefix, Recursive=True):
            names.extend(parameter["Name"] for parameter in page["Parameters"])
        return names


def make_ec2_setup(server: MotoServer, region: str = REGION) -> Ec2Setup:
    """A VPC with two subnets in two zones, an AMI and the launch template
    ``runnerscale-runner`` (its user data a plain boot line: no secret) in ``region``."""
    ec2 = server.client("ec2", region, direct=True)
    vpc_id = ec2.create_vpc(CidrBlock="10.15.0.0/16")["Vpc"]["VpcId"]
    subnet_ids = [
        ec2.create_subnet(
            VpcId=vpc_id, CidrBlock=f"10.15.{index}.0/24", AvailabilityZone=f"{region}{zone}"
        )["Subnet"]["SubnetId"]
        for index, zone in enumerate("ab")
    ]
    image_id = ec2.register_image(
        Name="runnerscale-runner-2.328.0-test",
        Architecture="x86_64",
        RootDeviceName="/dev/sda1",
        VirtualizationType="hvm",
    )["ImageId"]
    template = ec2.create_launch_template(
        LaunchTemplateName=LAUNCH_TEMPLATE,
        LaunchTemplateData={
            "ImageId": image_id,
            "InstanceType": "m7i.large",
            "UserData": "IyEvYmluL3NoCmV4ZWMgL29wdC9ydW5uZXJzY2FsZS9ib290LnNoCg==",
            "MetadataOptions": {"HttpTokens": "required", "InstanceMetadataTags": "enabled"},
        },
    )["LaunchTemplate"]
    return Ec2Setup(
        server=server,
        region=region,
        vpc_id=vpc_id,
        subnet_ids=subnet_ids,
        image_id=image_id,
        launch_template_id=template["LaunchTemplateId"],
        ec2=server.client("ec2", region),
        ssm=server.client("ssm", region),
    )


@pytest.fixture(scope="session")
def moto_server() -> Iterator[MotoServer]:
    if importlib.util.find_spec("moto") is None:
        pytest.skip("moto is not installed: pip install -e '.[dev]' installs it")
    with tempfile.TemporaryDirectory(prefix="runnerscale-moto-") as directory:
        server = start_moto(Path(directory))
        try:
            yield server
        finally:
            server.stop()


@pytest.fixture
def ec2_setup(moto_server: MotoServer) -> Ec2Setup:
    moto_server.reset()
    return make_ec2_setup(moto_server)


@pytest.fixture
def aws_environment(moto_server: MotoServer, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """The credentials and region in ``os.environ`` for this test only (a provider in this
    process reading the standard chain finds them); returns what was set."""
    environment = moto_server.environment()
    for key in [key for key in os.environ if key.startswith("AWS_")]:
        monkeypatch.delenv(key)
    for key, value in environment.items():
        monkeypatch.setenv(key, value)
    return environment
