"""The status page in headless Chromium, reached as an operator reaches it: the daemon serves
jobs from the simulated GitHub, ``runnerscale dashboard`` (a process of its own) prints its
link, and Chromium opens it. While jobs queue, run and finish, the page is asked what it shows
(the DevTools protocol, :mod:`tests.chromium`): the pool's runners, the queued jobs, the plot
of queue waits, the pool's spend against its budget and the API budget, each updated without
reloading (an EC2 pool's spend and draining runners: ``tests/test_statuspage.py``).
Screenshots are kept in the test's folder. The page loads nothing from elsewhere and breaks
no rule of its policy, and its key is nowhere but in the link."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import numpy as np
import pytest
from matplotlib import image as mpimg

from runnerscale.fakegithub.server import SimulatorServer
from runnerscale.fakegithub.world import JobSpec
from tests.chromium import headless
from tests.e2e.harness import (
    LINUX,
    WEBHOOK_SECRET,
    all_done,
    in_process_daemon,
    local_pool,
    simulator,
    start_dashboard_process,
    wait_until,
    write_config,
)
from tests.e2e.statuspage import showing

__all__ = ["simulator"]  # a fixture, imported

pytestmark = [pytest.mark.chromium, pytest.mark.timeout(240)]

#: A label as a workflow file may write it: shown as text, never run.
HOSTILE = "<img src=x onerror=document.title='owned'>"


def flat(png: Path) -> bool:
    pixels = (mpimg.imread(png)[..., :3] * 255).round().astype(np.uint32)
    packed = (pixels[..., 0] << 16) | (pixels[..., 1] << 8) | pixels[..., 2]
    return len(np.unique(packed)) < 30


async def test_the_status_page_follows_jobs_as_they_queue_run_and_finish(
    tmp_path: Path, simulator: SimulatorServer
) -> None:
    # A budget on a pool whose backend tells no price: it spends nothing, and says so.
    pool = local_pool(tmp_path, 2, "2s") + "    budget: {per_day: 50.0}\n"
    config = write_config(tmp_path, simulator.url, poll_interval="1s", pools=pool)
    world = simulator.simulator.world
    async with in_process_daemon(config) as daemon:
        simulator.simulator.webhooks.add_hook(f"{daemon.url}/webhook", WEBHOOK_SECRET)
        dashboard, link = await start_dashboard_process(config, tmp_path / "dashboard.log")
        assert link.startswith("http://127.0.0.1:"), link
        try:
            async with headless(tmp_path / "profile", tmp_path / "chromium.log") as browser:
                page = await browser.open(link)
                first = await showing(page, "the pool", lambda seen: seen["pool"] is not None)
                assert first["pool"]["busy"] == 0
                assert first["pool"]["max_runners"] == 2
                assert first["plot"]
                assert first["plotted"] == []
                assert first["problem"] is None
                assert "key=" not in first["address"]  # taken out of the address bar
                assert first["spend"] == [
                    ["linux-x64", "$0.00 of $50.00", "$50.00", "$0.00", "not held back"]
                ]
                assert first["draining"] == []  # (a local runner never drains)

                jobs = world.create_jobs(
                    [JobSpec("acme/app", tuple(LINUX), 8.0, None, f"job-{i}") for i in range(4)]
                    + [JobSpec("acme/app", ("self-hosted", HOSTILE), 1.0, None, "nowhere")]
                )
                simulator.simulator.notify()
                ids = [job.id for job in jobs[:4]]
                busy = await showing(
                    page,
                    "two busy runners and two queued jobs",
                    lambda seen: seen["pool"]["busy"] == 2 and len(seen["queued"]) == 2,
                )
                assert set(busy["queued"]) < set(ids)
                unmatched = await showing(page, "the job no pool serves", lambda s: s["unmatched"])
                assert HOSTILE in unmatched["unmatched"][0]
                assert unmatched["markup"] == 0
                assert await page.evaluate("document.title") == "runnerscale"
                assert "at the cap of 2" in busy["reason"]
                await page.screenshot(tmp_path / "busy.png")

                await wait_until(lambda: all_done(world, ids), 120, "the jobs served")
                done = await showing(
                    page,
                    "every job's queue wait",
                    lambda seen: sorted(seen["plotted"]) == sorted(ids) and not seen["queued"],
                )
                assert done["refreshes"] > busy["refreshes"] > first["refreshes"]
                assert "core" in done["budget"]
                assert done["problem"] is None
                await page.screenshot(tmp_path / "done.png")

                requested = [
                    event["request"]["url"] for event in page.events("Network.requestWillBeSent")
                ]
                logged = [event["entry"] for event in page.events("Log.entryAdded")]
        finally:
            dashboard.send_signal(signal.SIGINT)
            async with asyncio.timeout(30):
                code = await dashboard.wait()

    origin = link.split("/#", 1)[0]
    assert requested, "no request seen"
    assert all(url.startswith(origin) for url in requested), requested  # nothing from elsewhere
    assert [entry for entry in logged if entry["level"] == "error"] == []  # no policy broken
    key = link.split("#key=", 1)[1]
    assert key not in done["html"]
    assert key not in (tmp_path / "dashboard.log").read_text()
    assert code == 0
    for shot in ("busy.png", "done.png"):
        assert not flat(tmp_path / shot), f"{shot} is (nearly) one flat colour"
