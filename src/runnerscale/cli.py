"""The ``runnerscale`` command: it parses options, chooses implementations and wires them.

No logic lives here beyond turning command-line input into the library's objects and turning
the library's errors into clear messages and exit codes.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from runnerscale import __version__
from runnerscale.sim.runner import run_stand_in
from runnerscale.sim.server import SimulatorOptions, SimulatorServer
from runnerscale.sim.world import WorldSettings

app = typer.Typer(
    name="runnerscale",
    help="Autoscaler for GitHub Actions self-hosted runners, with a GitHub simulator.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
err = Console(stderr=True)


def fail(message: str, code: int = 2) -> typer.Exit:
    err.print(f"[bold red]error:[/] {message}", highlight=False)
    return typer.Exit(code)


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
    app_id: Annotated[int | None, typer.Option(help="Serve a GitHub App with this id.")] = None,
    app_key: Annotated[
        Path | None,
        typer.Option(help="PEM file with the App's private (or public) key.", dir_okay=False),
    ] = None,
    webhook_url: Annotated[
        list[str] | None,
        typer.Option(help="Deliver workflow_job webhooks to this URL (repeatable)."),
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
) -> None:
    """Serve a simulated GitHub (REST API, webhooks, control API under /_sim/)."""
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
    if app_key is not None and not app_key.is_file():
        raise fail(f"--app-key {app_key}: no such file")
    for value, name in (
        (runner_offline_after, "--runner-offline-after"),
        (unconnected_runner_ttl, "--unconnected-runner-ttl"),
        (lost_runner_timeout, "--lost-runner-timeout"),
        (queue_timeout, "--queue-timeout"),
    ):
        if value <= 0:
            raise fail(f"{name} must be a positive number of seconds, got {value}")
    options = SimulatorOptions(
        host=host,
        port=port,
        tokens=tuple(tokens),
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
        ),
    )
    try:
        asyncio.run(_serve_simulator(options))
    except OSError as error:
        raise fail(f"cannot listen on {host}:{port}: {error.strerror or error}") from None
    except ValueError as error:
        raise fail(str(error)) from None


async def _serve_simulator(options: SimulatorOptions) -> None:
    server = SimulatorServer(options)
    await server.start()
    err.print(
        f"fake GitHub listening on [bold]{server.url}[/] "
        f"(control API: {server.url}/_sim/, stop with Ctrl-C)",
        highlight=False,
        soft_wrap=True,
    )
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


@app.command("sim-runner")
def sim_runner(
    jitconfig: Annotated[
        str,
        typer.Option(
            help="The encoded_jit_config the simulator issued (as `run.sh --jitconfig` takes it)."
        ),
    ],
) -> None:
    """Stand-in for the official runner: take one job from the simulator, run it, exit."""
    raise typer.Exit(asyncio.run(run_stand_in(jitconfig)))


def main() -> None:
    app()
