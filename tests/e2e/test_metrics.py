"""The live ``/metrics`` of a real ``runnerscale run`` process that served jobs of the simulator
is what ``docs/metrics.md`` says it is, and what the alert rules and the dashboard read.

One daemon serves a few jobs (webhooks on, runners as local processes) for the whole module;
its ``/metrics`` is read once everything is cleaned up, and each test reads that text.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from runnerscale.fakegithub.server import SimulatorOptions, SimulatorServer
from runnerscale.fakegithub.world import WorldSettings
from tests.deploy.documents import (
    dashboard,
    documented_metrics,
    label_queries,
    series_names,
    unknown_metrics,
    with_some_pools,
)
from tests.e2e.harness import (
    TOKEN,
    WEBHOOK_SECRET,
    all_done,
    free_port,
    leftovers,
    queue_jobs,
    start_daemon_process,
    stop_daemon_process,
    wait_until,
    write_config,
)

pytestmark = pytest.mark.timeout(300)

JOBS = 3
POOL = "linux-x64"


async def _serve_jobs_and_scrape(directory: Path) -> str:
    options = SimulatorOptions(tokens=(TOKEN,), world=WorldSettings(runner_offline_after=30.0))
    async with SimulatorServer(options) as simulator:
        world = simulator.simulator.world
        world.ensure_repo("acme/app")
        port = free_port()
        config = write_config(directory, simulator.url, port=port, poll_interval="2s")
        # The daemon runs this tree's code, as the test does.
        env = {"PYTHONPATH": os.environ["PYTHONPATH"]} if "PYTHONPATH" in os.environ else None
        daemon = await start_daemon_process(config, directory / "daemon.log", env)
        url = f"http://127.0.0.1:{port}"
        try:
            async with httpx.AsyncClient(base_url=url) as http:

                async def ready() -> bool:
                    try:
                        return (await http.get("/readyz")).status_code == 200
                    except httpx.TransportError:
                        return False

                await wait_until(ready, 60, "the daemon to be ready")
                simulator.simulator.webhooks.add_hook(f"{url}/webhook", WEBHOOK_SECRET)
                job_ids = queue_jobs(simulator, JOBS)
                await wait_until(lambda: all_done(world, job_ids), 120, "the jobs to be served")

                async def cleaned_up() -> bool:
                    left = await leftovers(simulator, directory / "runners")
                    return not any(left.values())

                await wait_until(cleaned_up, 60, "every runner to be removed")
                ended = f'runnerscale_job_run_seconds_count{{pool="{POOL}"}} {JOBS}.0'

                async def heard_every_end() -> bool:
                    return ended in (await http.get("/metrics")).text

                await wait_until(heard_every_end, 60, "every job's end to be heard of")
                return (await http.get("/metrics")).text
        finally:
            await stop_daemon_process(daemon)


@pytest.fixture(scope="module")
def exposition(tmp_path_factory: pytest.TempPathFactory) -> str:
    return asyncio.run(_serve_jobs_and_scrape(tmp_path_factory.mktemp("metrics")))


@pytest.fixture(scope="module")
def families(exposition: str) -> dict[str, tuple[str, frozenset[str], set[str]]]:
    """Each exported family: its type, its labels, its sample names."""
    found = {}
    for family in text_string_to_metric_families(exposition):
        labels = frozenset(label for sample in family.samples for label in sample.labels) - {"le"}
        found[family.name] = (family.type, labels, {sample.name for sample in family.samples})
    return found


def family_name(name: str, kind: str) -> str:
    """The family a documented name belongs to (a counter's family has no ``_total``)."""
    return name.removesuffix("_total") if kind == "counter" else name


def test_every_documented_metric_is_exported_with_its_type_and_labels(
    families: dict[str, tuple[str, frozenset[str], set[str]]],
) -> None:
    wrong = {}
    for row in documented_metrics().values():
        exported = families.get(family_name(row.name, row.kind))
        if with_some_pools(row) and not (exported and exported[2]):
            continue  # this daemon's pool has one host (its series exist with a fleet's)
        if exported is None:
            wrong[row.name] = "not exported"
            continue
        kind, labels, samples = exported
        if not samples:
            wrong[row.name] = "no samples"
        elif (kind, labels) != (row.kind, row.labels):
            wrong[row.name] = f"exported as {kind} {sorted(labels)}"
    assert wrong == {}


def test_no_undocumented_runnerscale_metric_is_exported(
    families: dict[str, tuple[str, frozenset[str], set[str]]],
) -> None:
    documented = {family_name(row.name, row.kind) for row in documented_metrics().values()}
    assert {name for name in families if name.startswith("runnerscale_")} - documented == set()


def test_every_query_of_the_rules_and_the_dashboard_reads_an_exported_metric(
    families: dict[str, tuple[str, frozenset[str], set[str]]],
) -> None:
    exported = set().union(*(samples for _, _, samples in families.values()))
    # Those of the hosts of a pool over several: documented, exported with such a pool.
    for row in documented_metrics().values():
        if with_some_pools(row):
            exported |= series_names(row.name, row.kind)
    assert unknown_metrics(exported) == {}


def test_the_dashboard_variables_read_an_exported_label(
    families: dict[str, tuple[str, frozenset[str], set[str]]],
) -> None:
    for variable in label_queries(dashboard()):
        _, labels, _ = families[variable.metric]
        assert variable.label in labels, variable


def test_the_served_jobs_show_in_the_figures(exposition: str) -> None:
    values = {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(exposition)
        for sample in family.samples
    }
    pool = (("pool", POOL),)

    def value(name: str, *labels: tuple[str, str]) -> float:
        return values[(name, tuple(sorted(pool + labels)))]

    assert value("runnerscale_job_queue_wait_seconds_count") == JOBS
    assert value("runnerscale_job_run_seconds_count") == JOBS
    assert 1 <= value("runnerscale_runner_startup_seconds_count") <= JOBS
    assert value("runnerscale_scale_operations_total", ("operation", "create")) >= JOBS
    assert value("runnerscale_runner_removals_total", ("reason", "job_done")) >= JOBS
    assert value("runnerscale_runner_seconds_total", ("state", "busy")) > 0
    assert value("runnerscale_pool_busy_runners") == 0  # all done
    accepted = values[("runnerscale_webhook_deliveries_total", (("outcome", "accepted"),))]
    assert accepted >= JOBS
    assert values[("runnerscale_loop_tick_seconds_count", (("loop", "reconcile"),))] > 0
