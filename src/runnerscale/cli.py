"""The ``runnerscale`` command: it parses options, chooses implementations and wires them.

No logic lives here beyond turning command-line input into the library's objects and turning
the library's errors into clear messages and exit codes. Each command imports what it needs when
it runs: ``sim-runner`` is started once per runner and must not pay for the daemon's imports.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import os
import signal
import sys
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from runnerscale import __version__

if TYPE_CHECKING:
    from rich.console import Console

    from runnerscale.config.problems import Problem
    from runnerscale.config.schema import Config, ControlConfig
    from runnerscale.fakegithub.faults import FaultPlan
    from runnerscale.fakegithub.server import SimulatorOptions
    from runnerscale.fakegithub.tls import ServerTls
    from runnerscale.hosts.fleet import FleetNode
    from runnerscale.logs import RedactSecrets
    from runnerscale.service.install import Outcome
    from runnerscale.service.layout import Layout
    from runnerscale.zeroconfig.decide import Request


app = typer.Typer(
    name="runnerscale",
    help="Autoscaler for GitHub Actions self-hosted runners, with a GitHub simulator.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _console(**options: Any) -> Console:
    """A rich console; rich is imported when a command prints with one (``run`` does not on a
    good start: it is not loaded before ``/healthz``)."""
    from rich.console import Console

    return Console(**options)


@functools.cache
def _err() -> Console:
    """The console of error messages, on standard error."""
    return _console(stderr=True)


def fail(message: str, code: int = 2) -> typer.Exit:
    _err().print(f"[bold red]error:[/] {message}", highlight=False)
    return typer.Exit(code)


def _print_version(value: bool) -> None:
    if value:
        typer.echo(__version__)
        raise typer.Exit


@app.callback()
def _options(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_print_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    """Autoscaler for GitHub Actions self-hosted runners, with a GitHub simulator."""


@app.command()
def version() -> None:
    """Print the version."""
    typer.echo(__version__)


@app.command("fake-github")
def fake_github(
    port: Annotated[int, typer.Option(help="TCP port to listen on (0 picks a free one).")] = 9000,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    token: Annotated[
        list[str] | None,
        typer.Option(
            help="A personal access token the simulator accepts (repeatable). "
            "Also read from RUNNERSCALE_SIM_TOKEN.",
        ),
    ] = None,
    token_scopes: Annotated[
        str | None,
        typer.Option(
            help="Make every --token a classic token with these scopes (comma-separated, "
            "e.g. repo,admin:org; '' for none): answers report them (x-oauth-scopes) and "
            "operations needing another scope are refused. Without it tokens act like "
            "fine-grained ones and may do everything.",
        ),
    ] = None,
    app_id: Annotated[int | None, typer.Option(help="Serve a GitHub App with this id.")] = None,
    app_key: Annotated[
        Path | None,
        typer.Option(help="PEM file with the App's private (or public) key.", dir_okay=False),
    ] = None,
    webhook_url: Annotated[
        list[str] | None,
        typer.Option(
            help="Deliver workflow_job webhooks to this URL (repeatable): with --app-id it is "
            "the App's webhook (target type integration), otherwise an organisation hook on "
            "every organisation and a repository hook on every user-owned repository. "
            "Hooks can also be created through the REST API (POST /repos/O/R/hooks, /orgs/O/hooks)."
        ),
    ] = None,
    webhook_secret: Annotated[
        str | None,
        typer.Option(
            help="Sign deliveries with this secret. Also read from RUNNERSCALE_SIM_WEBHOOK_SECRET."
        ),
    ] = None,
    seed: Annotated[
        int,
        typer.Option(
            help="Seed for tokens, runner credentials and delivery ids "
            "(fault injection takes its own seed in POST /_sim/faults)."
        ),
    ] = 0,
    runner_offline_after: Annotated[
        float, typer.Option(help="Seconds of silence after which a runner shows offline.")
    ] = 90.0,
    unconnected_runner_ttl: Annotated[
        float, typer.Option(help="Seconds before a runner that never connected is removed.")
    ] = 86_400.0,
    lost_runner_timeout: Annotated[
        float, typer.Option(help="Seconds of silence before a busy runner's job fails.")
    ] = 600.0,
    queue_timeout: Annotated[
        float, typer.Option(help="Seconds a job may stay queued before it fails.")
    ] = 86_400.0,
    scale_set_poll_hold: Annotated[
        float,
        typer.Option(help="Seconds a scale set's empty long poll is held before its 202."),
    ] = 50.0,
    scale_set_session_lapse: Annotated[
        float,
        typer.Option(
            help="Seconds after which a scale-set session whose owner stopped polling lapses."
        ),
    ] = 60.0,
    scale_set_queue_token_ttl: Annotated[
        float, typer.Option(help="Seconds a scale-set session's message-queue token is valid.")
    ] = 3_600.0,
    scale_set_admin_token_ttl: Annotated[
        float, typer.Option(help="Seconds an Actions-service admin token (JWT) is valid.")
    ] = 3_600.0,
    scale_set_assign_timeout: Annotated[
        float,
        typer.Option(
            help="Seconds (times the attempt) before a job assigned to a scale set and taken by "
            "no runner is cancelled and reassigned."
        ),
    ] = 120.0,
    scale_set_job_mode: Annotated[
        str,
        typer.Option(
            help="'assigned' (github.com: JobAssigned) or 'available' (older GHES: JobAvailable, "
            "then acquirejobs)."
        ),
    ] = "assigned",
    zero_capacity_is_forever: Annotated[
        bool,
        typer.Option(
            help="A job queued while a scale set announced capacity 0 is never assigned to it "
            "(measured: runpool ADR 2026-08-11)."
        ),
    ] = True,
    tls: Annotated[
        bool,
        typer.Option(
            "--tls",
            help="Serve https, with a server certificate signed by a local CA kept (and reused) "
            "in --tls-dir; clients must trust that CA, whose path is printed at start.",
        ),
    ] = False,
    tls_dir: Annotated[
        Path | None,
        typer.Option(
            help="Where --tls keeps its CA and server certificates; implies --tls "
            "(default: fake-github-tls in $RUNNERSCALE_STATE_DIR, $XDG_STATE_HOME/runnerscale "
            "or ~/.local/state/runnerscale).",
            file_okay=False,
        ),
    ] = None,
    tls_cert: Annotated[
        Path | None,
        typer.Option(
            help="Serve https with this PEM certificate (chain) instead of making one; "
            "needs --tls-key.",
            dir_okay=False,
        ),
    ] = None,
    tls_key: Annotated[
        Path | None,
        typer.Option(
            help="The unencrypted PEM private key of --tls-cert (keep it mode 0600).",
            dir_okay=False,
        ),
    ] = None,
) -> None:
    """Serve a simulated GitHub (REST API at / and /api/v3/, webhooks, control API under /_sim/)."""
    import asyncio

    from runnerscale.fakegithub.server import SimulatorOptions
    from runnerscale.fakegithub.world import WorldSettings

    tokens = list(token or [])
    if env_token := os.environ.get("RUNNERSCALE_SIM_TOKEN"):
        tokens.append(env_token)
    secret = webhook_secret or os.environ.get("RUNNERSCALE_SIM_WEBHOOK_SECRET")
    if not tokens and app_id is None:
        raise fail(
            "the simulator needs credentials to accept: pass --token T (a PAT of your choice) "
            "and/or --app-id ID --app-key PEM"
        )
    if (app_id is None) != (app_key is None):
        raise fail("--app-id and --app-key go together: give both to serve a GitHub App")
    scopes = _token_scopes(token_scopes, tokens)
    if app_key is not None and not app_key.is_file():
        raise fail(f"--app-key {app_key}: no such file")
    for value, name in (
        (runner_offline_after, "--runner-offline-after"),
        (unconnected_runner_ttl, "--unconnected-runner-ttl"),
        (lost_runner_timeout, "--lost-runner-timeout"),
        (queue_timeout, "--queue-timeout"),
        (scale_set_session_lapse, "--scale-set-session-lapse"),
        (scale_set_queue_token_ttl, "--scale-set-queue-token-ttl"),
        (scale_set_admin_token_ttl, "--scale-set-admin-token-ttl"),
        (scale_set_assign_timeout, "--scale-set-assign-timeout"),
    ):
        if value <= 0:
            raise fail(f"{name} must be a positive number of seconds, got {value}")
    if scale_set_poll_hold < 0:
        raise fail(f"--scale-set-poll-hold must be 0 or more seconds, got {scale_set_poll_hold}")
    if scale_set_job_mode not in ("assigned", "available"):
        raise fail(
            f"--scale-set-job-mode must be 'assigned' or 'available', got {scale_set_job_mode!r}"
        )
    server_tls = _server_tls(tls, tls_dir, tls_cert, tls_key, host)
    options = SimulatorOptions(
        host=host,
        port=port,
        tokens=tuple(tokens),
        token_scopes=scopes,
        app_id=app_id,
        app_key=app_key,
        webhook_urls=tuple(webhook_url or ()),
        webhook_secret=secret,
        seed=seed,
        world=WorldSettings(
            runner_offline_after=runner_offline_after,
            unconnected_runner_ttl=unconnected_runner_ttl,
            lost_runner_timeout=lost_runner_timeout,
            queue_timeout=queue_timeout,
            scale_set_poll_hold=scale_set_poll_hold,
            scale_set_session_lapse=scale_set_session_lapse,
            scale_set_queue_token_ttl=scale_set_queue_token_ttl,
            scale_set_admin_token_ttl=scale_set_admin_token_ttl,
            scale_set_assign_timeout=scale_set_assign_timeout,
            scale_set_job_mode="available" if scale_set_job_mode == "available" else "assigned",
            zero_capacity_is_forever=zero_capacity_is_forever,
        ),
        tls=server_tls,
    )
    try:
        asyncio.run(_serve_simulator(options))
    except OSError as error:
        raise fail(f"cannot listen on {host}:{port}: {error.strerror or error}") from None
    except ValueError as error:
        raise fail(str(error)) from None


def _token_scopes(given: str | None, tokens: list[str]) -> dict[str, frozenset[str]]:
    """``--token-scopes`` as the scopes of every token; a clear error for an unknown scope."""
    from runnerscale.fakegithub.scopes import parse_scopes

    if given is None:
        return {}
    if not tokens:
        raise fail("--token-scopes gives the scopes of the tokens: pass --token T as well")
    try:
        scopes = parse_scopes([given])
    except ValueError as error:
        raise fail(
            f"--token-scopes {given!r}: {error}; give a comma-separated list such as repo,admin:org"
        ) from None
    return dict.fromkeys(tokens, scopes)


def _server_tls(
    tls: bool, folder: Path | None, cert: Path | None, key: Path | None, host: str
) -> ServerTls | None:
    """The certificate ``fake-github`` serves https with: made in ``folder`` (``--tls``), the
    user's own (``--tls-cert``/``--tls-key``), or none; every misuse is a clear error."""
    from runnerscale.config.paths import default_state_dir
    from runnerscale.fakegithub.tls import TlsError, ensure_certificates, load_own_certificate

    if (cert is None) != (key is None):
        raise fail(
            "--tls-cert and --tls-key go together: give both to serve your own certificate, "
            "or neither and --tls to have one made"
        )
    try:
        if cert is not None and key is not None:
            if folder is not None:
                raise fail(
                    "--tls-dir is where --tls keeps the certificates it makes; with "
                    "--tls-cert/--tls-key there is nothing to make: drop one or the other"
                )
            for path, name in ((cert, "--tls-cert"), (key, "--tls-key")):
                if not path.is_file():
                    raise fail(f"{name} {path}: no such file")
            return load_own_certificate(cert, key)
        if not tls and folder is None:
            return None
        return ensure_certificates(folder or default_state_dir() / "fake-github-tls", host)
    except TlsError as error:
        raise fail(str(error)) from None
    except OSError as error:
        where = error.filename or folder
        raise fail(
            f"cannot write the TLS certificates to {where}: {error.strerror or error}; "
            "pass a writable --tls-dir"
        ) from None


async def _serve_simulator(options: SimulatorOptions) -> None:
    import asyncio

    from runnerscale.fakegithub.server import SimulatorServer

    server = SimulatorServer(options)
    await server.start()
    _err().print(
        f"fake GitHub listening on [bold]{server.url}[/] "
        f"(control API: {server.url}/_sim/, stop with Ctrl-C)",
        highlight=False,
        soft_wrap=True,
    )
    for line in _layout_lines(server.url, options.tls):
        _err().print(line, highlight=False, soft_wrap=True)
    loop = asyncio.get_running_loop()
    stopping = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stopping.set)
    waiter = asyncio.create_task(stopping.wait())
    serving = asyncio.create_task(server.wait())
    await asyncio.wait({waiter, serving}, return_when=asyncio.FIRST_COMPLETED)
    waiter.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await waiter
    await server.stop()


def _layout_lines(url: str, tls: ServerTls | None) -> list[str]:
    """What to tell someone pointing a client at the simulator: both REST layouts, and over
    https which CA to trust (never a key)."""
    authority = url.split("://", 1)[1]
    lines = [f"REST API at {url}/ and {url}/api/v3/ (GitHub Enterprise Server layout)"]
    if tls is None:
        return lines
    lines.append(f"GitHub Enterprise Server clients: GH_HOST={authority}, base URL {url}/api/v3")
    if tls.ca_file is None:
        lines.append(f"TLS: serving the certificate in {tls.certfile}")
    else:
        made = "made a new CA" if tls.ca_created else "reusing the CA"
        lines.append(
            f"TLS: {made} in {tls.ca_file}; clients must trust it, e.g. "
            f"export SSL_CERT_FILE={tls.ca_file}"
        )
    return lines


@app.command("sim-runner")
def sim_runner(
    jitconfig: Annotated[
        str | None,
        typer.Option(
            help="The encoded_jit_config the simulator issued (as `run.sh --jitconfig` takes "
            "it). Default: $ACTIONS_RUNNER_INPUT_JITCONFIG, as the official runner reads it, "
            "which keeps it off the command line.",
            show_default=False,
        ),
    ] = None,
    root: Annotated[
        Path,
        typer.Option(
            help="The runner's folder: with no JIT config given, its settings files (.runner, "
            ".credentials, .credentials_rsaparams) are read there, as the official runner "
            "reads those a boot script fetched.",
        ),
    ] = Path("."),
) -> None:
    """Stand-in for the official runner: take one job from the simulator, run it, exit."""
    import asyncio

    from runnerscale.fakegithub.jitconfig import JitConfigError
    from runnerscale.fakegithub.runner import jitconfig_from_files, run_stand_in, take_jitconfig

    encoded = take_jitconfig(jitconfig)
    if encoded is None:
        try:
            encoded = jitconfig_from_files(root)
        except JitConfigError as error:
            raise fail(f"sim-runner: {error}") from None
    raise typer.Exit(asyncio.run(run_stand_in(encoded)))


# ---------------------------------------------------------------------- the daemon

config_app = typer.Typer(help="Check a configuration file, or print its JSON Schema.")
scale_app = typer.Typer(help="Scale a pool by hand through the running daemon.")
app.add_typer(config_app, name="config")
app.add_typer(scale_app, name="scale")
pools_app = typer.Typer(
    help="Take a pool out of service safely (busy runners finish their jobs), or put it back, "
    "through the running daemon."
)
app.add_typer(pools_app, name="pools")

ConfigOption = Annotated[
    Path,
    typer.Option("--config", "-c", help="The runnerscale YAML file.", dir_okay=False),
]


def _load_control(path: Path) -> ControlConfig:
    """What ``status`` and ``scale`` need of the file (the control API's address and its
    credential): the daemon's GitHub secrets need not be set for them."""
    from runnerscale.config.load import load_control_config
    from runnerscale.config.problems import ConfigError

    try:
        return load_control_config(path)
    except ConfigError as error:
        raise fail(f"the configuration is not valid:\n{error}") from None


def _check(
    path: Path, env: dict[str, str] | None = None, advice: str = ""
) -> tuple[Config, list[Problem]]:
    """The configuration and its warnings (what works but should change), loaded with
    ``env`` (default: this process's environment); ``advice`` follows the problems."""
    from runnerscale.config.load import check_config

    return _checked(lambda: check_config(path, env), advice)


def _checked(
    check: Callable[[], tuple[Config, list[Problem]]], advice: str = ""
) -> tuple[Config, list[Problem]]:
    """What ``check`` gives, or its ``ConfigError`` as a clear refusal."""
    from runnerscale.config.problems import ConfigError

    try:
        return check()
    except ConfigError as error:
        raise fail(f"the configuration is not valid:\n{error}{advice}") from None


@config_app.command("validate")
def config_validate(config: ConfigOption) -> None:
    """Check a configuration file: every problem with its line and how to fix it, and a
    warning for every setting that works but should change."""
    loaded, warnings = _check(config)
    pools = ", ".join(f"{p.name} ({p.provider}, max {p.max_runners})" for p in loaded.pools)
    typer.echo(f"{config}: valid. pools: {pools}")
    for warning in warnings:
        typer.echo(f"warning: {warning}", err=True)


@config_app.command("schema")
def config_schema() -> None:
    """Print the configuration's JSON Schema (for editors and CI checks)."""
    from runnerscale.config.schema import config_json_schema

    typer.echo(json.dumps(config_json_schema(), indent=2))


ZERO_CONFIG = "Zero-config start (in place of -c: docs/configuration.md)"


@app.command()
def run(
    config: Annotated[
        Path | None,
        typer.Option("--config", "-c", help="The runnerscale YAML file.", dir_okay=False),
    ] = None,
    log_level: Annotated[str, typer.Option(help="debug, info, warning or error.")] = "info",
    owner: Annotated[
        str | None,
        typer.Option(
            help="Serve this organisation's jobs, without a config file (token from GH_TOKEN, "
            "GITHUB_TOKEN or gh auth token; GitHub Enterprise Server from GH_HOST).",
            rich_help_panel=ZERO_CONFIG,
        ),
    ] = None,
    repo: Annotated[
        str | None,
        typer.Option(
            help="Serve this repository's jobs (OWNER/NAME), without a config file.",
            rich_help_panel=ZERO_CONFIG,
        ),
    ] = None,
    max_runners: Annotated[
        int | None,
        typer.Option(min=1, help="At most this many runners at once.", rich_help_panel=ZERO_CONFIG),
    ] = None,
    runner_dir: Annotated[
        Path | None,
        typer.Option(
            help="Run the runners as processes here, each a copy of the official runner "
            "unpacked in this folder (default: Docker when an engine answers, else "
            "/opt/actions-runner).",
            file_okay=False,
            resolve_path=True,
            rich_help_panel=ZERO_CONFIG,
        ),
    ] = None,
    image: Annotated[
        str | None,
        typer.Option(
            help="Run the runners in Docker containers of this image (default, when an engine "
            "answers: runnerscale-runner:2.328.0, built from images/runner).",
            rich_help_panel=ZERO_CONFIG,
        ),
    ] = None,
    webhook_secret_env: Annotated[
        str | None,
        typer.Option(
            help="The environment variable holding the webhook secret, for workflow_job "
            "webhooks to /webhook (default: none, polling alone).",
            rich_help_panel=ZERO_CONFIG,
        ),
    ] = None,
    listen: Annotated[
        str | None,
        typer.Option(
            help="HOST:PORT of /webhook, /metrics and /healthz (default 127.0.0.1:8787).",
            rich_help_panel=ZERO_CONFIG,
        ),
    ] = None,
    api_url: Annotated[
        str | None,
        typer.Option(
            help="GitHub's API, for a GitHub Enterprise Server that GH_HOST does not name "
            "(https://HOST/api/v3) or the simulator (fake-github's URL).",
            rich_help_panel=ZERO_CONFIG,
        ),
    ] = None,
    print_config: Annotated[
        bool,
        typer.Option(
            "--print-config",
            help="Print the zero-config start's config file on standard output and exit.",
            rich_help_panel=ZERO_CONFIG,
        ),
    ] = False,
) -> None:
    """Run the autoscaler daemon (webhooks, loops, /metrics, /healthz, the control API), from
    a config file (-c), or without one (--owner or --repo, and --max-runners: the zero-config
    start, which prints the config it runs)."""
    import asyncio

    from runnerscale.daemon import StartupError
    from runnerscale.logs import setup_logging
    from runnerscale.zeroconfig.decide import Request

    if log_level.lower() not in ("debug", "info", "warning", "error"):
        raise fail(f"--log-level must be debug, info, warning or error, not {log_level!r}")
    zero = {
        "--owner": owner,
        "--repo": repo,
        "--max-runners": max_runners,
        "--runner-dir": runner_dir,
        "--image": image,
        "--webhook-secret-env": webhook_secret_env,
        "--listen": listen,
        "--api-url": api_url,
        "--print-config": print_config or None,
    }
    given = [flag for flag, value in zero.items() if value is not None]
    if config is not None and given:
        raise fail(
            f"-c runs the config file given, and {', '.join(given)} belong to the zero-config "
            "start, which makes one: give -c alone, or leave it out"
        )
    if config is None and owner is None and repo is None:
        raise fail(
            "give -c FILE (a runnerscale config: docs/configuration.md), or start without "
            "one: --owner ORG or --repo OWNER/NAME, and --max-runners N"
        )
    if config is not None:
        loaded, warnings = _check(config)
    else:
        request = Request(
            owner=owner,
            repo=repo,
            max_runners=max_runners,
            listen=listen,
            api_url=api_url,
            webhook_secret_env=webhook_secret_env,
            runner_dir=runner_dir,
            image=image,
        )
        loaded, warnings = _zero_config(request, print_config)
    redactor = setup_logging(log_level, _secrets_of(loaded))
    for warning in warnings:
        logging.getLogger("runnerscale").warning("configuration: %s", warning)
    try:
        asyncio.run(_run_daemon(config, loaded, redactor))
    except StartupError as error:
        raise fail(str(error)) from None
    except OSError as error:
        raise fail(f"cannot listen on {loaded.server.listen}: {error.strerror or error}") from None


def _zero_config(request: Request, print_config: bool) -> tuple[Config, list[Problem]]:
    """The zero-config start's configuration, printed (on standard error while it runs, on
    standard output for --print-config) and checked as its file would be; with
    --print-config, exit when it is checked."""
    from runnerscale.config.load import check_text
    from runnerscale.zeroconfig.decide import ZeroConfigError
    from runnerscale.zeroconfig.host import ThisHost
    from runnerscale.zeroconfig.start import SOURCE, build

    try:
        made = build(request, os.environ, ThisHost())
    except ZeroConfigError as error:
        raise fail(str(error)) from None
    typer.echo(made.header(printing=print_config), err=True)
    typer.echo(made.text, nl=False, err=not print_config)
    loaded, warnings = _checked(lambda: check_text(made.text, source=SOURCE, env=made.env))
    if print_config:
        for warning in warnings:
            typer.echo(f"warning: {warning}", err=True)
        raise typer.Exit(0)
    return loaded, warnings


def _secrets_of(config: Config) -> list[str]:
    github = config.github
    values = [github.token, github.webhook_secret, config.server.api_token]
    pem = ""
    if github.app is not None:
        values.append(github.app.private_key)
        if github.app.private_key is not None:
            pem = github.app.private_key.get_secret_value()
        elif github.app.private_key_file is not None:
            with contextlib.suppress(OSError, UnicodeDecodeError):
                pem = github.app.private_key_file.read_text()
    secrets = [value.get_secret_value() for value in values if value is not None]
    # A key quoted in part (one line of it) is redacted too.
    lines = [line.strip() for line in pem.splitlines()]
    secrets += [line for line in lines if len(line) >= 16 and not line.startswith("-----")]
    return secrets


async def _run_daemon(path: Path | None, config: Config, redactor: RedactSecrets) -> None:
    """The daemon until SIGTERM or SIGINT; SIGHUP reloads the config file at ``path`` (None:
    the zero-config start's, which has no file to read again)."""
    import asyncio

    from runnerscale.config.load import load_config
    from runnerscale.config.problems import ConfigError
    from runnerscale.daemon import Daemon, StartupError
    from runnerscale.protocols import ProviderError

    try:
        daemon = Daemon.build(config, on_secret=redactor.add)
    except ProviderError as error:
        raise StartupError(f"a backend cannot start: {error}") from None
    try:
        await daemon.start()
    except ProviderError as error:
        await daemon.stop()
        raise StartupError(f"a backend cannot start: {error}") from None
    loop = asyncio.get_running_loop()
    stopping = asyncio.Event()

    def reload() -> None:
        if path is None:
            logging.getLogger("runnerscale").info(
                "reload: nothing to read again, this daemon runs the zero-config start's "
                "config (printed at start): save it and run runnerscale run -c FILE to change it"
            )
            return
        try:
            fresh = load_config(path)
        except ConfigError as error:
            logging.getLogger("runnerscale").error(
                "reload refused, keeping the running config:\n%s", error
            )
            return
        for secret in _secrets_of(fresh):
            redactor.add(secret)
        try:
            changes = daemon.reload(fresh)
        except StartupError as error:
            logging.getLogger("runnerscale").error(
                "reload refused, keeping the running config: %s", error
            )
            return
        for change in changes or ["nothing to change"]:
            logging.getLogger("runnerscale").info("reload: %s", change)

    loop.add_signal_handler(signal.SIGTERM, stopping.set)
    loop.add_signal_handler(signal.SIGINT, stopping.set)
    loop.add_signal_handler(signal.SIGHUP, reload)
    try:
        await stopping.wait()
    finally:
        logging.getLogger("runnerscale").info(
            "stopping; runners keep running and are adopted on start"
        )
        await daemon.stop()


def _call_daemon(
    config: ControlConfig, method: str, path: str, body: object = None
) -> dict[str, Any]:
    from runnerscale.controlclient import ControlClientError, request_json

    try:
        return request_json(config, method, path, body)
    except ControlClientError as error:
        raise fail(str(error), code=1) from None


@app.command()
def status(
    config: ConfigOption,
    watch: Annotated[
        bool, typer.Option("--watch", "-w", help="Keep showing it, read afresh; Ctrl-C stops.")
    ] = False,
    interval: Annotated[
        float, typer.Option(min=0.5, help="Seconds between two reads with --watch.")
    ] = 2.0,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the status API's JSON as it is, for scripts.")
    ] = False,
) -> None:
    """Show each pool's runners and jobs, from the running daemon (through its control socket,
    or server.control: run it as the daemon's user or root)."""
    import time

    from runnerscale.controlclient import ControlClientError, request_json
    from runnerscale.statusview import print_status
    from runnerscale.statusview import watch as watch_status

    if watch and as_json:
        raise fail("--json prints the status once: run it in a loop to follow it")
    loaded = _load_control(config)

    def read() -> dict[str, Any]:
        return request_json(loaded, "GET", "/api/v1/status")

    try:
        if as_json:
            typer.echo(json.dumps(read(), indent=2))
        elif watch:
            watch_status(read, interval, _console(), unavailable=(ControlClientError,))
        else:
            print_status(_console(), read(), time.time())
    except ControlClientError as error:
        raise fail(str(error), code=1) from None


@app.command()
def dashboard(
    config: ConfigOption,
    port: Annotated[
        int, typer.Option(min=0, max=65535, help="Port on 127.0.0.1 (0 picks a free one).")
    ] = 0,
) -> None:
    """Show the status page in a browser: serve it on 127.0.0.1, through a read-only relay of
    the daemon's control API, at a link with a key of its own (printed); Ctrl-C stops."""
    import asyncio

    from runnerscale.controlclient import ControlUnreachableError
    from runnerscale.dashboard import Dashboard, serve
    from runnerscale.logs import setup_logging

    loaded = _load_control(config)
    redactor = setup_logging("warning")

    def announce(relay: Dashboard) -> None:
        port = relay.port
        _err().print(
            "runnerscale dashboard: the daemon's status page, read-only, for a browser on this "
            f"machine (from another: ssh -L {port}:127.0.0.1:{port} THIS-HOST); open this link, "
            "whose key works until this stops (Ctrl-C):",
            highlight=False,
        )
        typer.echo(relay.link)

    try:
        asyncio.run(serve(loaded, port, announce, on_secret=redactor.add))
    except ControlUnreachableError as error:
        raise fail(str(error), code=1) from None
    except OSError as error:
        raise fail(f"cannot listen on 127.0.0.1:{port}: {error.strerror or error}") from None


@scale_app.command("up")
def scale_up(
    config: ConfigOption,
    pool: Annotated[str, typer.Option(help="The pool to add runners to.")],
    count: Annotated[int, typer.Option("-n", "--count", min=1, help="How many runners.")] = 1,
) -> None:
    """Start runners now, whatever the demand (up to the pool's cap)."""
    body = _call_daemon(
        _load_control(config), "POST", f"/api/v1/pools/{pool}/scale-up", {"count": count}
    )
    created = body.get("created", [])
    assert isinstance(created, list)
    # (the pool's cap, or on a pool over several hosts its nodes' free slots)
    said = ", ".join(created) or "none (cap or free node slots reached?)"
    typer.echo(f"created {len(created)} of {count}: {said}")


@scale_app.command("down")
def scale_down(
    config: ConfigOption,
    pool: Annotated[str | None, typer.Option(help="Remove this pool's idle runners.")] = None,
    runner: Annotated[str | None, typer.Option(help="Remove this runner (if not busy).")] = None,
) -> None:
    """Remove idle runners now (busy runners are never removed)."""
    if (pool is None) == (runner is None):
        raise fail("give exactly one of --pool POOL or --runner NAME")
    loaded = _load_control(config)
    if runner is not None:
        body = _call_daemon(loaded, "DELETE", f"/api/v1/runners/{runner}")
    else:
        body = _call_daemon(loaded, "POST", f"/api/v1/pools/{pool}/scale-down", {})
    removed = body.get("removed", [])
    assert isinstance(removed, list)
    typer.echo(f"removed {len(removed)}: {', '.join(removed) or 'none idle'}")


@pools_app.command("drain")
def pools_drain(
    pool: Annotated[str, typer.Argument(help="The pool to take out of service.")],
    config: ConfigOption,
    wait: Annotated[
        bool,
        typer.Option(
            "--wait", help="Wait until its busy runners are done and its backend is swept."
        ),
    ] = False,
    timeout: Annotated[
        str, typer.Option(help="With --wait: how long at most (30s, 10m, 1h30m).")
    ] = "30m",
) -> None:
    """Take a pool out of service: it starts no runner (its queued jobs wait), its runners
    without a job are removed now, busy ones finish their job (never killed); once none is
    left, its backend is swept. It stays drained across restarts until `pools resume`."""
    from runnerscale.config.units import parse_duration
    from runnerscale.controlclient import ControlClientError, request_json
    from runnerscale.poolsview import DrainWaitError, drained_lines, wait_drained

    try:
        seconds = parse_duration(timeout)
    except ValueError as error:
        raise fail(f"--timeout {timeout}: {error}") from None
    loaded = _load_control(config)
    answer = _call_daemon(loaded, "POST", f"/api/v1/pools/{pool}/drain", {})
    for line in drained_lines(answer):
        typer.echo(line)
    if not wait:
        return
    try:
        wait_drained(
            lambda: request_json(loaded, "GET", "/api/v1/status"), pool, seconds, typer.echo
        )
    except (DrainWaitError, ControlClientError) as error:
        raise fail(str(error), code=1) from None


@pools_app.command("resume")
def pools_resume(
    pool: Annotated[str, typer.Argument(help="The drained pool to put back in service.")],
    config: ConfigOption,
) -> None:
    """Put a drained pool back in service: it scales as its configuration says again."""
    from runnerscale.poolsview import resumed_line

    answer = _call_daemon(_load_control(config), "POST", f"/api/v1/pools/{pool}/resume", {})
    typer.echo(resumed_line(answer))


# ---------------------------------------------------------------------- the service

service_app = typer.Typer(
    help="Run the daemon as a systemd service: install (enable, start), uninstall, status."
)
app.add_typer(service_app, name="service")

UserOption = Annotated[
    bool, typer.Option("--user", help="Your own user's service manager (systemctl --user).")
]
SystemOption = Annotated[
    bool,
    typer.Option(
        "--system",
        help="The system's service manager, as the dedicated user runnerscale (needs root; "
        "the default when run as root).",
    ),
]
RootOption = Annotated[
    Path | None,
    typer.Option(
        "--root",
        help="Write (or remove, or look for) the files under this folder instead of /, and "
        "run nothing: for packages and tests. The commands left to run are printed.",
        file_okay=False,
    ),
]


def _service_layout(user: bool, system: bool, root: Path | None) -> Layout:
    """The installation's layout for the options, or a clear refusal."""
    from runnerscale.service.layout import Scope, layout_for

    if user and system:
        raise fail("give --user or --system, not both")
    if not user and not system:
        scope = Scope.SYSTEM if os.geteuid() == 0 else Scope.USER
    else:
        scope = Scope.SYSTEM if system else Scope.USER
    target = Path("/") if root is None else root.absolute()
    if scope is Scope.SYSTEM and target == Path("/") and os.geteuid() != 0:
        raise fail(
            "--system writes under /etc, creates the user runnerscale and starts the service: "
            "run it as root (sudo), or pass --user to run the daemon as yourself, or "
            "--root DIR to write the files under DIR"
        )
    return layout_for(scope, target, os.environ)


def _print_outcome(outcome: Outcome) -> None:
    for line in outcome.all_lines():
        typer.echo(line)


@service_app.command("install")
def service_install(
    config: ConfigOption,
    user: UserOption = False,
    system: SystemOption = False,
    root: RootOption = None,
) -> None:
    """Install the daemon as a systemd service for CONFIG, then enable and start it.

    The config is checked first, as the service will load it: the values of its ${VAR}
    references come from this command's environment (or the environment file an earlier
    install wrote) and go into that file, mode 0600. Run it again to upgrade or change them."""
    from runnerscale.config.problems import ConfigError
    from runnerscale.config.source import referenced_variables
    from runnerscale.service import envfile
    from runnerscale.service.install import install
    from runnerscale.service.manager import ManagerError
    from runnerscale.service.plan import entry_point, plan_unit, service_environment

    layout = _service_layout(user, system, root)
    try:
        names = referenced_variables(config.read_text(), str(config))
    except (OSError, UnicodeDecodeError, ConfigError):
        names = []  # the check below says what is wrong with the file
    existing = layout.on_disk(layout.env_file)
    try:
        earlier = envfile.parse(existing.read_text()) if existing.exists() else {}
    except OSError as error:
        raise fail(f"cannot read {existing}: {error.strerror or error}") from None
    values = {
        name: os.environ.get(name, earlier.get(name, ""))
        for name in names
        if name in os.environ or name in earlier
    }
    unset = [name for name in names if name not in values]
    advice = (
        f"\nnot set for the service: {', '.join(unset)}. service install takes the values of "
        f"the config's ${{VAR}} references from its environment (or from {layout.env_file}, "
        "written by an earlier install): set them and run it again (with sudo: "
        f"sudo --preserve-env={','.join(unset)} ...)"
        if unset
        else ""
    )
    loaded, warnings = _check(config, service_environment(layout, values), advice)
    plan = plan_unit(loaded, layout, config.absolute(), entry_point())
    try:
        outcome = install(plan, values)
    except (envfile.EnvFileError, ManagerError) as error:
        raise fail(str(error), code=1) from None
    except OSError as error:
        raise fail(
            f"cannot write {error.filename or layout.root}: {error.strerror or error}", code=1
        ) from None
    for warning in warnings:
        typer.echo(f"warning: {warning}", err=True)
    _print_outcome(outcome)
    journal = "journalctl" if layout.scope.value == "system" else "journalctl --user"
    typer.echo(f"its log: {journal} -u runnerscale; what it does: runnerscale status -c {config}")


@service_app.command("uninstall")
def service_uninstall(
    user: UserOption = False, system: SystemOption = False, root: RootOption = None
) -> None:
    """Stop and disable the service, end the runners it left, remove what install wrote.
    The state directory (and the system user) are kept."""
    from runnerscale.service.install import installed, uninstall
    from runnerscale.service.manager import ManagerError

    layout = _service_layout(user, system, root)
    if not installed(layout):
        raise fail(
            f"runnerscale is not installed here: no {layout.unit} under {layout.root} "
            "(installed with --user or --system? give the same option)",
            code=1,
        )
    try:
        _print_outcome(uninstall(layout))
    except ManagerError as error:
        raise fail(str(error), code=1) from None
    except OSError as error:
        raise fail(f"cannot remove {error.filename}: {error.strerror or error}", code=1) from None


@service_app.command("status")
def service_status(
    user: UserOption = False, system: SystemOption = False, root: RootOption = None
) -> None:
    """What is installed, and systemd's view of the service where systemd runs (its exit
    code is systemctl status's: 3 when it is not running); 1 when nothing is installed."""
    from runnerscale.service.install import installed, status_lines
    from runnerscale.service.layout import UNIT
    from runnerscale.service.manager import Manager

    layout = _service_layout(user, system, root)
    for line in status_lines(layout):
        typer.echo(line)
    if not installed(layout):
        raise typer.Exit(1)
    code = Manager.for_layout(layout).show([*layout.scope.systemctl, "status", "--no-pager", UNIT])
    if code is None:
        typer.echo("systemd does not run here (or --root was given): no service state to show")
        code = 0
    raise typer.Exit(code)


# ---------------------------------------------------------------------- ssh hosts

hosts_app = typer.Typer(help="The nodes of ssh pools: check them, prepare them.")
app.add_typer(hosts_app, name="hosts")

PoolOption = Annotated[
    str | None, typer.Option("--pool", help="Only this ssh pool's nodes (default: every one).")
]


def _fleet(config: Path, pool: str | None, hosts: list[str] | None = None) -> list[FleetNode]:
    """The ssh pools' nodes the options name, or a clear refusal. Only the file's pools are
    read: the daemon's GitHub secrets need not be set."""
    from runnerscale.config.load import load_pools_config
    from runnerscale.config.problems import ConfigError
    from runnerscale.hosts.fleet import FleetError, fleet_nodes

    try:
        return fleet_nodes(load_pools_config(config), pool=pool, hosts=hosts or ())
    except ConfigError as error:
        raise fail(f"the configuration is not valid:\n{error}") from None
    except FleetError as error:
        raise fail(str(error)) from None


@hosts_app.command("check")
def hosts_check(config: ConfigOption, pool: PoolOption = None) -> None:
    """Ask every node of the ssh pools, at once: reachable with a verified host key, its
    engine (docker mode) or runner (process mode), free disk, CPUs and architecture (the
    labels auto stands for), clock skew. Exits 1 when a node is unusable (reasons below the
    table)."""
    import asyncio

    from runnerscale.hosts.check import check_fleet
    from runnerscale.hosts.show import check_table

    reports = asyncio.run(check_fleet(_fleet(config, pool)))
    _console(width=max(_console().width, 160)).print(check_table(reports))
    if not all(report.usable for report in reports):
        raise typer.Exit(1)


@hosts_app.command("bootstrap")
def hosts_bootstrap(
    config: ConfigOption,
    pool: PoolOption = None,
    host: Annotated[
        list[str] | None,
        typer.Option(
            "--host", help="Only this node (its address as the pool writes it); repeat for more."
        ),
    ] = None,
    monitoring: Annotated[
        bool,
        typer.Option(
            help="Also install Debian's prometheus-node-exporter, and print the "
            "Prometheus scrape configuration for the nodes."
        ),
    ] = False,
    admin_user: Annotated[
        str, typer.Option(help="Log in as this user to prepare the nodes (not root: sudo -n).")
    ] = "root",
    image_archive: Annotated[
        Path | None,
        typer.Option(
            help="Docker mode: a docker save tarball of the image, loaded where it is "
            "missing (offline nodes).",
            exists=True,
            dir_okay=False,
        ),
    ] = None,
    build_context: Annotated[
        Path | None,
        typer.Option(
            help="Docker mode: the folder the image is built from where it is "
            "missing (default: this checkout's images/runner).",
            exists=True,
            file_okay=False,
        ),
    ] = None,
    runner_tarball: Annotated[
        Path | None,
        typer.Option(
            help="Process mode: the official actions-runner tarball, unpacked where "
            "the pool's command expects it.",
            exists=True,
            dir_okay=False,
        ),
    ] = None,
) -> None:
    """Prepare the nodes of the ssh pools over SSH, idempotently, printing what changed on
    each: the runner user (and the pool's key), its folders or the docker group, the image
    (docker mode) or the runner (process mode). Exits 1 when a node could not be prepared."""
    import asyncio

    from runnerscale.hosts.bootstrap import (
        BootstrapOptions,
        bootstrap_fleet,
        default_build_context,
    )
    from runnerscale.hosts.scrape import scrape_config
    from runnerscale.hosts.show import bootstrap_lines

    nodes = _fleet(config, pool, host)
    options = BootstrapOptions(
        admin_user=admin_user,
        monitoring=monitoring,
        image_archive=image_archive,
        build_context=build_context or default_build_context(),
        runner_tarball=runner_tarball,
    )
    outcomes = asyncio.run(bootstrap_fleet(nodes, options))
    console = _console(width=max(_console().width, 160), highlight=False)
    for line in bootstrap_lines(outcomes):
        console.print(line)
    if monitoring:
        typer.echo("")
        typer.echo(scrape_config(nodes), nl=False)
    if any(outcome.failure for outcome in outcomes):
        raise typer.Exit(1)


@app.command()
def demo(
    verbose: Annotated[bool, typer.Option(help="Show the daemon's log too.")] = False,
) -> None:
    """The whole system on embedded defaults: simulator, daemon, local runners, a workload."""
    import asyncio

    from runnerscale.demo import run_demo
    from runnerscale.logs import setup_logging

    setup_logging("info" if verbose else "error")
    raise typer.Exit(asyncio.run(run_demo(_console())))


# ---------------------------------------------------------------------- simulation


@app.command()
def simulate(
    trace: Annotated[Path, typer.Option(help="Trace to replay (JSON lines).", dir_okay=False)],
    config: ConfigOption,
    json_out: Annotated[
        Path | None, typer.Option("--json", help="Write the result as JSON here.", dir_okay=False)
    ] = None,
    report: Annotated[
        Path | None, typer.Option(help="Write a self-contained HTML report here.", dir_okay=False)
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed of every random draw.")] = 0,
    compare: Annotated[
        bool, typer.Option(help="Also run poll-60 and static-N on the same trace.")
    ] = False,
    faults: Annotated[
        Path | None,
        typer.Option(
            help="JSON fault plan (the body of the simulator's POST /_sim/faults): webhook "
            "loss, API errors, rate limits.",
            dir_okay=False,
        ),
    ] = None,
    sweep: Annotated[
        list[str] | None,
        typer.Option(
            help="Run a grid: KEY=V1,V2,... with KEY min_idle, max_runners or idle_timeout "
            "(applied to every pool), or market (spot, on-demand, spot-then-on-demand: applied "
            "to every ec2 pool); repeatable for a grid of several keys."
        ),
    ] = None,
    start: Annotated[
        str | None,
        typer.Option(
            help="When the trace's at 0 is on the virtual clock: an ISO date and time, e.g. "
            "2026-01-05T07:00:00+01:00 (UTC without an offset; default "
            "2026-01-01T00:00:00Z). Warm windows open at times of day: start a trace at the "
            "time it was taken."
        ),
    ] = None,
    demand_sources: Annotated[
        bool,
        typer.Option(
            "--demand-sources",
            help="Compare how runnerscale hears of jobs: webhooks with polling, polling only, "
            "scale sets, with and without 30% of webhooks lost (waits, REST and "
            "Actions-service calls per job).",
        ),
    ] = False,
) -> None:
    """Replay a trace against a config on a virtual clock (deterministic, no GitHub)."""
    import asyncio

    from runnerscale.logs import setup_logging
    from runnerscale.simulation.report import (
        comparison_table,
        market_rows,
        market_table,
        pool_table,
        render_html,
    )
    from runnerscale.simulation.run import simulate as run
    from runnerscale.simulation.trace import TraceError, read_trace

    loaded = _load_for_simulation(config)
    begins = _trace_start(start)
    try:
        jobs = read_trace(trace)
    except TraceError as error:
        raise fail(f"the trace is not valid:\n{error}") from None
    plan = _fault_plan(faults)
    setup_logging("error")  # the controller's warnings would tear the progress display
    if sweep:
        if json_out or report or compare or demand_sources:
            raise fail(
                "--sweep prints its own table: run it without --json, --report, --compare, "
                "--demand-sources"
            )
        _run_sweep(loaded, jobs, trace.name, seed, plan, sweep, begins)
        return
    if demand_sources:
        if compare:
            raise fail(
                "--demand-sources and --compare are two different comparisons: run one, then "
                "the other"
            )
        _run_demand_sources(
            loaded,
            jobs,
            trace.name,
            seed,
            plan,
            begins,
            json_file=_output_file("--json", json_out),
            report_file=_output_file("--report", report),
            title=f"{trace.name} with {config.name}",
        )
        return
    # Before the run, not after it: a mistyped folder must not cost the whole simulation.
    json_file = _output_file("--json", json_out)
    report_file = _output_file("--report", report)
    with _progress_bars() as progress:
        result = asyncio.run(
            run(
                loaded,
                jobs,
                trace_name=trace.name,
                seed=seed,
                compare=compare,
                faults=plan,
                progress=progress,
                start=begins,
            )
        )
    rows = [(result.result.policy, result.result.figures)]
    rows += [(p.policy, p.figures) for p in result.compared]
    rows.append(("lower bound", result.limit))
    # Files and pipes get the full table.
    wide = _console(width=None if sys.stdout.isatty() else 220)
    wide.print(comparison_table(rows, title=f"{trace.name} with {config.name}"))
    for name, figures in rows:  # which pool made each policy's waits and cost
        if figures.pools:
            wide.print(pool_table(figures, title=f"{name}, by pool"))
    for name, figures in rows:  # an ec2 pool's cost by market, and spot's interruptions
        if market_rows(figures):
            wide.print(market_table(figures, title=f"{name}, by market"))
    _write_results(
        json_file,
        result.as_json(),
        report_file,
        lambda: render_html(
            f"runnerscale simulation: {trace.name}",
            f"config {config.name}, seed {seed}",
            [result.result, *result.compared],
            result.limit,
        ),
    )


def _write_results(
    json_file: Path | None,
    body: dict[str, Any],
    report_file: Path | None,
    html: Callable[[], str],
) -> None:
    """``--json`` and ``--report``, each when asked (the report drawn only then)."""
    if json_file is not None:
        _write_output(json_file, json.dumps(body, indent=2) + "\n", "the JSON")
    if report_file is not None:
        try:
            page = html()
        except RuntimeError as error:  # matplotlib is missing
            raise fail(str(error)) from None
        _write_output(report_file, page, "the report", "(open it in a browser)")


@contextlib.contextmanager
def _progress_bars() -> Iterator[Callable[[str, float], None]]:
    """A progress bar on stderr for each policy (or variant) the hook hears of; gone when
    done, so that only the tables stay."""
    from rich.progress import Progress

    with Progress(console=_console(stderr=True), transient=True) as bar:
        tasks: dict[str, Any] = {}

        def progress(name: str, fraction: float) -> None:
            if name not in tasks:
                tasks[name] = bar.add_task(f"simulating {name}", total=1.0)
            bar.update(tasks[name], completed=fraction)

        yield progress


def _output_file(option: str, path: Path | None) -> Path | None:
    """Where ``option`` writes, as an absolute path (said after writing, so it can be found
    from any folder). Its folder must exist: a missing one is more often a typo than a wish,
    so it is refused (exit 2) rather than made. (An existing folder as the path is refused by
    the option itself: ``dir_okay=False``.)"""
    if path is None:
        return None
    absolute = Path(os.path.abspath(path.expanduser()))
    if not absolute.parent.is_dir():
        raise fail(
            f"{option} {path}: the folder {absolute.parent} does not exist; create it "
            "(mkdir -p) or write somewhere else"
        )
    return absolute


def _write_output(path: Path, text: str, what: str, then: str = "") -> None:
    """Write ``what`` to ``path`` and say so; a failure to write ends the command (exit 1)."""
    try:
        path.write_text(text, encoding="utf-8")
    except OSError as error:
        raise fail(f"could not write {what} to {path}: {error.strerror or error}", code=1) from None
    typer.echo(f"wrote {what} to {path}" + (f" {then}" if then else ""))


def _trace_start(text: str | None) -> float:
    """``--start``: when the trace's ``at: 0`` is, in seconds since the epoch."""
    from runnerscale.simulation.engine import EPOCH

    if text is None:
        return EPOCH
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise fail(
            f"--start {text!r} is not a date and time: write it as ISO 8601, e.g. "
            "2026-01-05T07:00:00+01:00 (UTC without an offset)"
        ) from None
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()


def _load_for_simulation(path: Path) -> Config:
    """A config for simulation: secrets it names need not be set (nothing reaches GitHub)."""
    from runnerscale.config.load import load_config
    from runnerscale.config.problems import ConfigError
    from runnerscale.config.source import referenced_variables

    env = dict(os.environ)
    try:
        named = referenced_variables(path.read_text())
    except (OSError, UnicodeDecodeError, ConfigError):
        named = []  # load_config says what is wrong with the file
    for name in named:
        env.setdefault(name, "unused-in-simulation")
    try:
        loaded = load_config(path, env=env)
    except ConfigError as error:
        raise fail(f"the configuration is not valid:\n{error}") from None
    _check_simulated_pools(loaded)
    return _expand_auto_here(loaded)


def _check_simulated_pools(config: Config) -> None:
    """Each pool's ``simulation:`` block agrees with its backend's (an ec2 pool's prices are
    its ``ec2:`` block's, say)."""
    from runnerscale.simulation.pools import ModelError, backend_models

    try:
        backend_models(config.pools)
    except ModelError as error:
        raise fail(f"the configuration cannot be simulated: {error}") from None


def _expand_auto_here(config: Config) -> Config:
    """``auto`` in a simulated pool stands for this machine's labels (no backend is asked)."""
    from runnerscale.hostlabels import HostLabelError, detect_local_host, expand_labels
    from runnerscale.model import AUTO_LABEL

    if not any(AUTO_LABEL in (label.lower() for label in pool.labels) for pool in config.pools):
        return config
    facts = detect_local_host()
    pools = []
    for pool in config.pools:
        if AUTO_LABEL not in (label.lower() for label in pool.labels):
            pools.append(pool)
            continue
        try:
            labels = expand_labels(pool.labels, facts, pool=pool.name)
        except HostLabelError as error:
            raise fail(str(error)) from None
        pools.append(pool.model_copy(update={"labels": list(labels)}))
    return config.model_copy(update={"pools": pools})


def _fault_plan(path: Path | None) -> FaultPlan | None:
    from pydantic import ValidationError

    from runnerscale.fakegithub.faults import FaultPlan

    if path is None:
        return None
    try:
        return FaultPlan.model_validate_json(path.read_text())
    except OSError as error:
        raise fail(f"--faults {path}: {error.strerror or error}") from None
    except ValidationError as error:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in item['loc']) or 'body'}: {item['msg']}"
            for item in error.errors()
        )
        raise fail(f"--faults {path} is not a valid fault plan: {problems}") from None


SWEEPABLE = ("min_idle", "max_runners", "idle_timeout", "market")
#: Swept keys that are a backend's, not the pool's: set in the block of every pool whose
#: backend has them (``market``: the ec2 pools, :func:`runnerscale.simulation.pools.market_pools`).
BACKEND_SWEEPABLE = ("market",)


def _parse_sweep(values: list[str]) -> list[tuple[str, list[str]]]:
    grid = []
    for value in values:
        key, _, options = value.partition("=")
        key = key.strip()
        if key not in SWEEPABLE or not options.strip():
            raise fail(
                f"--sweep {value!r}: write KEY=V1,V2,... with KEY one of {', '.join(SWEEPABLE)}"
            )
        grid.append((key, [option.strip() for option in options.split(",") if option.strip()]))
    return grid


def _run_sweep(
    config: Config,
    jobs: list[Any],
    trace_name: str,
    seed: int,
    plan: FaultPlan | None,
    sweep: list[str],
    start: float,
) -> None:
    """Every combination of the swept values, applied to every pool; one table of the
    trade-off between queue wait and cost."""
    import asyncio
    import itertools

    from pydantic import ValidationError
    from rich.progress import Progress

    from runnerscale.simulation.engine import RUNNERSCALE
    from runnerscale.simulation.pools import market_pools
    from runnerscale.simulation.report import sweep_table
    from runnerscale.simulation.run import run_policy

    grid = _parse_sweep(sweep)
    priced = set(market_pools(config))
    if any(key in BACKEND_SWEEPABLE for key, _ in grid) and not priced:
        raise fail(
            "--sweep market: no pool launches on a market; market applies to pools with "
            "provider: ec2 (the others have no spot or on-demand to choose)"
        )
    points = []
    combinations = list(itertools.product(*(options for _, options in grid)))
    with Progress(console=_console(stderr=True), transient=True) as bar:
        task = bar.add_task(f"sweeping {len(combinations)} settings", total=len(combinations))
        for combination in combinations:
            values = dict(zip((key for key, _ in grid), combination, strict=True))
            data = config.model_dump()
            for pool in data["pools"]:
                backend = {k: v for k, v in values.items() if k in BACKEND_SWEEPABLE}
                pool.update({k: v for k, v in values.items() if k not in backend})
                if pool["name"] in priced:
                    pool[pool["provider"]].update(backend)
                if isinstance(pool["min_idle"], int | str):  # (warm windows: as written)
                    pool["min_idle"] = min(int(pool["min_idle"]), int(pool["max_runners"]))
            try:
                variant = type(config).model_validate(data)
            except ValidationError as error:
                raise fail(f"--sweep {values}: {error.errors()[0]['msg']}") from None
            result = asyncio.run(
                run_policy(
                    variant, jobs, RUNNERSCALE, seed=seed, faults=plan, progress=None, start=start
                )
            )
            points.append((values, result.figures))
            bar.advance(task)
    wide = _console(width=None if sys.stdout.isatty() else 220)
    wide.print(sweep_table(points, title=f"{trace_name}: queue wait against cost"))


def _run_demand_sources(
    config: Config,
    jobs: list[Any],
    trace_name: str,
    seed: int,
    plan: FaultPlan | None,
    start: float,
    *,
    json_file: Path | None,
    report_file: Path | None,
    title: str,
) -> None:
    """Every demand-source variant on the trace (:mod:`runnerscale.simulation.demand`); one
    table, and the variants skipped with why."""
    import asyncio

    from runnerscale.simulation.demand import compare_demand_sources
    from runnerscale.simulation.report import demand_table, render_html

    with _progress_bars() as progress:
        comparison = asyncio.run(
            compare_demand_sources(
                config,
                jobs,
                trace_name=trace_name,
                seed=seed,
                faults=plan,
                progress=progress,
                start=start,
            )
        )
    rows = [(result.policy, result.figures) for result in comparison.results]
    wide = _console(width=None if sys.stdout.isatty() else 220)
    wide.print(demand_table(rows, title=f"{title}: demand sources"))
    for variant, reason in comparison.skipped.items():
        typer.echo(f"skipped {variant}: {reason}")
    _write_results(
        json_file,
        comparison.as_json(),
        report_file,
        lambda: render_html(
            f"runnerscale simulation: {trace_name}, demand sources",
            f"seed {seed}",
            comparison.results,
            None,
            demand=True,
        ),
    )


trace_app = typer.Typer(help="Make workload traces for runnerscale simulate.")
app.add_typer(trace_app, name="trace")


@trace_app.command("export")
def trace_export(
    repo: Annotated[str, typer.Option(help="The repository, OWNER/NAME.")],
    output: Annotated[Path, typer.Option("-o", "--output", help="Trace file to write.")],
    since: Annotated[str, typer.Option(help="How far back: 7d, 24h, 90m or an ISO date.")] = "7d",
    api_url: Annotated[
        str, typer.Option(help="GitHub's API (GHES: https://HOST/api/v3).")
    ] = "https://api.github.com",
) -> None:
    """Write a repository's recent jobs as a trace (token from GITHUB_TOKEN)."""
    import asyncio

    from githubkit import GitHub
    from rich.progress import Progress

    from runnerscale.simulation.export import ExportError, export_trace, parse_since
    from runnerscale.simulation.trace import write_trace

    token = os.environ.get("GITHUB_TOKEN")
    if not token:
        raise fail("set GITHUB_TOKEN to a token that can read the repository's Actions runs")
    try:
        since_epoch = parse_since(since)
    except ValueError as error:
        raise fail(str(error)) from None
    client = GitHub(token, base_url=api_url.rstrip("/") + "/", auto_retry=False, http_cache=False)
    with Progress(console=_console(stderr=True), transient=True) as bar:
        task = bar.add_task(f"reading {repo}", total=None)

        def progress(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        try:
            jobs = asyncio.run(export_trace(client, repo, since_epoch, progress=progress))
        except (ExportError, ValueError) as error:
            raise fail(str(error), code=1) from None
    if not jobs:
        raise fail(
            f"{repo} has no finished jobs since {since}: nothing written (try a longer --since)",
            code=1,
        )
    write_trace(jobs, output)
    typer.echo(f"wrote {len(jobs)} jobs to {output}")


def main() -> None:
    app()
