"""The comparison and sweep tables, and the HTML report as a browser shows it."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import itertools
import re
import struct
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from matplotlib import image as mpimg
from rich.console import Console
from rich.table import Table

from runnerscale.simulation.occupancy import STATES, Buckets, Span, bucketed
from runnerscale.simulation.report import (
    COMPARISON_HEADER,
    LOWER_BOUND,
    POOL_HEADER,
    SWEEP_FIGURES_HEADER,
    comparison_rows,
    comparison_table,
    markdown_table,
    pool_rows,
    pool_table,
    render_html,
    sweep_header,
    sweep_markdown,
    sweep_rows,
    sweep_table,
)
from runnerscale.simulation.results import (
    Figures,
    PolicyResult,
    PoolFigures,
    RunnerSeconds,
    TimelinePoint,
)
from tests.chromium import Page, headless

HOSTILE = "<script>alert('x')</script> & co"
PNG_URI = "data:image/png;base64,"


def figures(
    *,
    waits: tuple[float, ...],
    busy: float,
    idle: float,
    booting: float,
    cost: float,
    api_calls: int,
    unserved: int = 0,
) -> Figures:
    return Figures(
        jobs=len(waits) + unserved,
        served=len(waits),
        unserved=unserved,
        queue_waits=waits,
        runner_seconds=RunnerSeconds(busy=busy, idle=idle, booting=booting),
        cost=cost,
        api_calls=api_calls,
    )


def timeline(*, boot: int, spare: int, total: float, points: int = 50) -> tuple[TimelinePoint, ...]:
    """A made-up day: demand rises and falls; the policy keeps ``spare`` idle runners.

    The cost accrues with the runners alive and adds up to ``total`` at the last sample.
    """
    states = []
    for index in range(points):
        demand = max(0, 12 - abs(index - 25) // 2)
        busy = max(0, demand - boot)
        queued = demand - busy + (3 if index % 7 == 3 else 0)
        booting = min(queued, boot)
        states.append((index * 300.0, queued, booting, spare + index % 3, busy))
    alive = [booting + idle + busy for _, _, booting, idle, busy in states]
    samples = []
    spent = 0
    for (at, queued, booting, idle, busy), count in zip(states, alive, strict=True):
        spent += count
        cost = round(total * spent / sum(alive), 4)
        samples.append(TimelinePoint(at, queued, booting, idle, busy, cost))
    return tuple(samples)


def occupancy(samples: tuple[TimelinePoint, ...]) -> Buckets:
    """Runners by state as the samples say, each count holding until the next sample."""
    spans = [
        Span(state, point.at, following.at)
        for point, following in itertools.pairwise(samples)
        for state in STATES
        for _ in range(getattr(point, state))
    ]
    return bucketed(spans, samples[0].at, samples[-1].at)


def pool(waits: range, *, busy: float, idle: float, booting: float, cost: float) -> PoolFigures:
    """A pool that served every one of its jobs, which waited ``waits`` seconds."""
    return PoolFigures(
        jobs=len(waits),
        served=len(waits),
        unserved=0,
        queue_waits=tuple(float(wait) for wait in waits),
        runner_seconds=RunnerSeconds(busy=busy, idle=idle, booting=booting),
        cost=cost,
    )


# The main policy's two pools, which add up to its figures below.
X64_POOL = pool(range(1, 81), busy=5400, idle=1800, booting=600, cost=2.3)
GPU_POOL = pool(range(81, 101), busy=1800, idle=0, booting=300, cost=10.0)
# Waits 1..100 s give exact nearest-rank percentiles: p50 50, p95 95, p99 99, max 100.
MAIN = PolicyResult(
    policy="runnerscale",
    figures=dataclasses.replace(
        figures(
            waits=tuple(float(i) for i in range(1, 101)),
            busy=7200,
            idle=1800,
            booting=900,
            cost=12.3,
            api_calls=250,
        ),
        pools={"x64": X64_POOL, "gpu": GPU_POOL},
    ),
    timeline=timeline(boot=2, spare=1, total=12.3),
    occupancy=occupancy(timeline(boot=2, spare=1, total=12.3)),
)
POLL = PolicyResult(
    policy="poll-60",
    figures=figures(
        waits=tuple(30.0 + 0.5 * i for i in range(100)),
        busy=7200,
        idle=3600,
        booting=1800,
        cost=15.75,
        api_calls=1440,
    ),
    timeline=timeline(boot=4, spare=2, total=15.75),
)
STATIC = PolicyResult(
    policy="static-4",
    figures=figures(
        waits=tuple(float(i * i) for i in range(95)),
        busy=7200,
        idle=21600,
        booting=0,
        cost=40.0,
        api_calls=12,
        unserved=5,
    ),
    timeline=timeline(boot=0, spare=4, total=40.0),
)
LIMIT = figures(
    waits=tuple(0.0 for _ in range(100)), busy=7200, idle=0, booting=0, cost=8.0, api_calls=0
)
POLICIES = (MAIN, POLL, STATIC)
NAMED = [(p.policy, p.figures) for p in POLICIES] + [(LOWER_BOUND, LIMIT)]

# The rows the tables must show, figure by figure.
EXPECTED_MAIN = [
    "runnerscale", "100", "100", "0",
    "50.0", "95.0", "99.0", "100.0",
    "2.00", "0.50", "0.25", "0.25",
    "250", "2.50", "$12.30",
]  # fmt: skip
EXPECTED_STATIC_TAIL = ["2.00", "6.00", "0.00", "3.00", "12", "0.12", "$40.00"]


def render(console_width: int, table: Table) -> str:
    console = Console(width=console_width, record=True, color_system=None)
    console.print(table)
    return console.export_text()


# --- comparison --------------------------------------------------------------------------


def test_comparison_rows_format_each_figure_one_way() -> None:
    rows = comparison_rows(NAMED)
    assert len(COMPARISON_HEADER) == 15
    assert all(len(row) == len(COMPARISON_HEADER) for row in rows)
    assert rows[0] == EXPECTED_MAIN
    assert rows[2][:4] == ["static-4", "100", "95", "5"]
    assert rows[2][-7:] == EXPECTED_STATIC_TAIL
    assert rows[3] == [
        "lower bound", "100", "100", "0", "0.0", "0.0", "0.0", "0.0",
        "2.00", "0.00", "0.00", "0.00", "0", "0.00", "$8.00",
    ]  # fmt: skip


def test_markdown_table_lists_every_policy_with_its_numbers() -> None:
    text = markdown_table(NAMED)
    lines = text.splitlines()
    assert len(lines) == 2 + len(NAMED)
    assert lines[0] == "| " + " | ".join(COMPARISON_HEADER) + " |"
    assert lines[1] == "| --- | " + " | ".join(["---:"] * 14) + " |"
    assert lines[2] == "| " + " | ".join(EXPECTED_MAIN) + " |"
    for name, _ in NAMED:
        assert f"| {name} |" in text
    assert "$15.75" in lines[3]
    assert lines[4].endswith(" | " + " | ".join(EXPECTED_STATIC_TAIL) + " |")


def test_markdown_escapes_pipes_in_names() -> None:
    text = markdown_table([("a|b", LIMIT)])
    assert "| a\\|b |" in text
    assert all(line.count(" | ") == 14 for line in text.splitlines())


def test_rich_comparison_table_shows_every_policy_and_number() -> None:
    table = comparison_table(NAMED, title="trace.jsonl")
    assert [column.header for column in table.columns] == list(COMPARISON_HEADER)
    assert table.columns[0].justify == "left"
    assert all(column.justify == "right" for column in table.columns[1:])
    text = render(300, table)
    assert "trace.jsonl" in text
    for name, _ in NAMED:
        assert name in text
    for cell in EXPECTED_MAIN + EXPECTED_STATIC_TAIL + ["$15.75", "$8.00"]:
        assert cell in text


# --- per pool ----------------------------------------------------------------------------

EXPECTED_POOLS = [
    ["x64", "80", "80", "0", "40.0", "76.0", "80.0", "80.0",
     "1.50", "0.50", "0.17", "0.33", "$2.30"],
    ["gpu", "20", "20", "0", "90.0", "99.0", "100.0", "100.0",
     "0.50", "0.00", "0.08", "0.00", "$10.00"],
]  # fmt: skip


def test_pool_rows_are_the_comparisons_columns_but_the_api_calls() -> None:
    assert ("pool", *COMPARISON_HEADER[1:12], "cost") == POOL_HEADER
    assert pool_rows(MAIN.figures) == EXPECTED_POOLS
    # A run of one pool: its pool's row is its comparison row, less the API calls.
    alone = dataclasses.replace(MAIN.figures, pools={"all": MAIN.figures})
    [comparison] = comparison_rows([("all", alone)])
    assert pool_rows(alone) == [[*comparison[:12], comparison[-1]]]
    assert pool_rows(POLL.figures) == []


def test_rich_pool_table_shows_every_pool_and_number() -> None:
    table = pool_table(MAIN.figures, title="runnerscale, by pool")
    assert [column.header for column in table.columns] == list(POOL_HEADER)
    text = render(300, table)
    assert "runnerscale, by pool" in text
    for row in EXPECTED_POOLS:
        for cell in row:
            assert cell in text


# --- sweep -------------------------------------------------------------------------------


SWEEP = [
    ({"min_idle": "0"}, STATIC.figures),
    ({"min_idle": "1"}, POLL.figures),
    ({"min_idle": "2", "idle_timeout": "300"}, MAIN.figures),
]


def test_sweep_rows_put_parameters_before_the_trade_off() -> None:
    assert sweep_header(SWEEP) == ["min_idle", "idle_timeout", *SWEEP_FIGURES_HEADER]
    assert sweep_rows(SWEEP) == [
        ["0", "-", "5", "2209.0", "8100.0", "3.00", "$40.00"],
        ["1", "-", "0", "54.5", "77.0", "0.50", "$15.75"],
        ["2", "300", "0", "50.0", "95.0", "0.25", "$12.30"],
    ]


def test_sweep_table_and_markdown_agree() -> None:
    text = render(200, sweep_table(SWEEP, title="min_idle sweep"))
    markdown = sweep_markdown(SWEEP)
    assert markdown.splitlines()[1] == "| --- | --- | ---: | ---: | ---: | ---: | ---: |"
    for row in sweep_rows(SWEEP):
        assert "| " + " | ".join(row) + " |" in markdown
        for cell in row:
            assert cell in text


# --- HTML --------------------------------------------------------------------------------


def report(policies: tuple[PolicyResult, ...] = POLICIES, limit: Figures | None = LIMIT) -> str:
    return render_html("Simulation: busy-day.jsonl", "seed 7, config ci.yaml", policies, limit)


def png_size(uri: str) -> tuple[int, int]:
    data = base64.b64decode(uri.removeprefix(PNG_URI), validate=True)
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def images(page: str) -> list[str]:
    return re.findall(r'<img src="(data:image/png;base64,[A-Za-z0-9+/=]+)"', page)


@pytest.mark.slow
def test_html_is_self_contained_with_three_plots() -> None:
    page = report()
    assert page.startswith("<!DOCTYPE html>")
    assert page.count(PNG_URI) == 3
    assert len(images(page)) == 3
    for uri in images(page):
        width, height = png_size(uri)
        assert width > 800
        assert height > 300
    # Nothing to fetch: no external src/href, no stylesheet links, no scripts, no URL at all.
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", page, re.IGNORECASE)
    assert "<link" not in page
    assert "<script" not in page
    assert "://" not in page
    assert "<style>" in page


@pytest.mark.slow
def test_html_shows_the_comparison_table() -> None:
    page = report()
    for name, _ in NAMED:
        assert f'<td class="text">{name}</td>' in page
    assert "".join(f"<td>{cell}</td>" for cell in EXPECTED_MAIN[1:]) in page
    assert "".join(f"<td>{cell}</td>" for cell in EXPECTED_STATIC_TAIL) in page
    assert '<tr class="limit"><td class="text">lower bound</td>' in page
    assert "Simulation: busy-day.jsonl" in page
    assert "seed 7, config ci.yaml" in page


@pytest.mark.slow
def test_html_shows_a_table_per_pool_for_each_policy_that_has_pools() -> None:
    page = report()
    by_pool = page.split("<h2>By pool</h2>")[1].split("</section>")[0]
    assert by_pool.count('<table class="pools">') == 1  # only the main policy has pools here
    assert "<h3>runnerscale</h3>" in by_pool
    assert "<h3>poll-60</h3>" not in by_pool
    for row in EXPECTED_POOLS:
        assert (
            f'<tr><td class="text">{row[0]}</td>'
            + "".join(f"<td>{cell}</td>" for cell in row[1:])
            + "</tr>"
            in by_pool
        )
    limit = dataclasses.replace(LIMIT, pools={"x64": X64_POOL})
    both = render_html("t", "", POLICIES, limit)
    assert both.count('<table class="pools">') == 2
    assert "<h3>lower bound</h3>" in both
    # Figures without pools (made by hand, or by an older runnerscale): no section at all.
    assert "By pool" not in render_html("t", "", (POLL, STATIC), LIMIT)


def test_html_escapes_every_text() -> None:
    hostile_figures = dataclasses.replace(MAIN.figures, pools={HOSTILE: X64_POOL})
    hostile = PolicyResult(policy=HOSTILE, figures=hostile_figures, timeline=MAIN.timeline)
    page = render_html(f"<b>{HOSTILE}</b>", HOSTILE, (hostile, POLL), None)
    assert "<script" not in page
    assert "<b>" not in page
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt; &amp; co" in page
    assert "lower bound" not in page.split("<tbody>")[1].split("</tbody>")[0]
    assert page.count(PNG_URI) == 3


@pytest.mark.slow
def test_html_says_what_the_runners_plot_averages_over() -> None:
    # 50 samples 5 minutes apart: 4 h 5 min, in 245 buckets of 1 minute (at most 300).
    assert "each the mean count over a 1-minute bucket" in report()
    without = dataclasses.replace(MAIN, occupancy=None)
    page = render_html("t", "", (without,), None)
    assert "mean count" not in page
    assert page.count(PNG_URI) == 3


def test_the_wait_plot_gives_the_tail_room() -> None:
    from matplotlib.figure import Figure  # noqa: PLC0415 - as the report does

    from runnerscale.simulation.report import _plot_queue_waits  # noqa: PLC0415 - its drawing

    axes = Figure().add_subplot()
    _plot_queue_waits(axes, (NAMED, True))
    # Shares of jobs that waited longer, on a log axis down to below one job in a hundred.
    assert axes.get_yscale() == "log"
    bottom, top = axes.get_ylim()
    assert bottom <= 1 / 100 / 2
    assert top >= 1.0
    # Each policy's p50, p95 and p99 sit where its curve crosses 50%, 5% and 1%.
    marks = {
        (line.get_color(), tuple(line.get_xdata())): tuple(line.get_ydata())
        for line in axes.get_lines()
        if line.get_marker() == "o"
    }
    assert ("C0", (50.0, 95.0, 99.0)) in marks
    assert set(marks.values()) == {(0.5, 0.05, 0.01)}
    assert len(marks) == len(NAMED)
    assert [text.get_text() for text in axes.texts] == ["p50", "p95", "p99"]
    assert axes.get_xlim()[1] >= max(max(f.queue_waits) for _, f in NAMED)


@pytest.mark.slow
def test_html_is_deterministic() -> None:
    assert report() == report()


@pytest.mark.slow
def test_html_copes_with_missing_data() -> None:
    # No timelines, no served jobs, names matplotlib would misread ($ is mathtext, _ hides).
    empty = figures(waits=(), busy=0, idle=0, booting=0, cost=0, api_calls=0, unserved=3)
    odd = (
        PolicyResult(policy="static-$5", figures=empty),
        PolicyResult(policy="_hidden", figures=empty),
    )
    page = render_html("empty", "", odd, empty)
    assert page.count(PNG_URI) == 3
    assert "static-$5" in page
    assert "_hidden" in page
    single = PolicyResult(policy="one", figures=MAIN.figures, timeline=MAIN.timeline[:1])
    assert render_html("one point", "", (single,), None).count(PNG_URI) == 3
    assert render_html("nothing", "", (), None).count(PNG_URI) == 3


def test_html_without_matplotlib_says_how_to_get_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(RuntimeError, match=r"pip install 'runnerscale\[report\]'"):
        report()


# --- in a browser ------------------------------------------------------------------------

#: What the report shows once loaded, read from its DOM: the tables per pool under their
#: headings, and each plot as decoded and laid out.
SHOWN = """(() => {
  if (document.readyState !== "complete") return null;
  const box = (element) => element.getBoundingClientRect();
  return {
    pools: [...document.querySelectorAll("table.pools")].map((table) => ({
      policy: table.closest(".table-wrap").previousElementSibling.textContent,
      header: [...table.tHead.rows[0].cells].map((cell) => cell.textContent),
      rows: [...table.tBodies[0].rows].map((row) => [...row.cells].map((c) => c.textContent)),
      width: box(table).width,
    })),
    plots: [...document.images].map((image) => ({
      alt: image.alt,
      complete: image.complete,
      natural: [image.naturalWidth, image.naturalHeight],
      shown: [box(image).width, box(image).height],
    })),
  };
})()"""


async def loaded(page: Page) -> dict[str, Any]:
    """What :data:`SHOWN` reads, once the page and its images are loaded."""
    async with asyncio.timeout(30):
        while (value := await page.evaluate(SHOWN)) is None:
            await asyncio.sleep(0.1)
    assert isinstance(value, dict)
    return value


@pytest.mark.chromium
async def test_report_renders_in_headless_chromium(tmp_path: Path) -> None:
    page_file = tmp_path / "report.html"
    limit = dataclasses.replace(LIMIT, pools={"x64": X64_POOL, "gpu": GPU_POOL})
    page_file.write_text(render_html("Simulation", "seed 7", POLICIES, limit), encoding="utf-8")
    shot = tmp_path / "shot.png"
    async with headless(tmp_path / "profile", tmp_path / "chromium.log") as browser:
        page = await browser.open(page_file.as_uri())
        shown = await loaded(page)
        await page.screenshot(shot)

    # A table per policy that has pools, under its name, with a row per pool as formatted.
    assert [table["policy"] for table in shown["pools"]] == ["runnerscale", LOWER_BOUND]
    main = shown["pools"][0]
    assert main["header"] == list(POOL_HEADER)
    assert main["rows"] == EXPECTED_POOLS
    assert all(table["width"] > 600 for table in shown["pools"])
    # Every plot was decoded (a broken image has no natural size) and laid out at full width.
    assert [plot["alt"] for plot in shown["plots"]] == [
        "Queue-wait distribution",
        "Runners by state against queued jobs",
        "Cost over time",
    ]
    for plot in shown["plots"]:
        assert plot["complete"], plot
        width, height = plot["natural"]
        assert width > 800, plot
        assert height > 300, plot
        width, height = plot["shown"]
        assert width > 1000, plot
        assert height > 300, plot

    pixels = (mpimg.imread(shot)[..., :3] * 255).round().astype(np.uint32)
    assert pixels.shape[1] == 1280
    assert pixels.shape[0] > 2400  # the whole page: tables per pool, then three plots
    packed = (pixels[..., 0] << 16) | (pixels[..., 1] << 8) | pixels[..., 2]
    assert len(np.unique(packed)) > 50, "the screenshot is (nearly) one flat colour"
    # The plots were drawn: the busy runners' blue (#2f6db5 at alpha 0.9 on white) fills a
    # sizeable area of the runners-by-state plot.
    busy = np.array([0x2F, 0x6D, 0xB5]) * 0.9 + 255 * 0.1
    near = np.abs(pixels.astype(np.float64) - busy).max(axis=-1) <= 8
    assert near.sum() > 5_000
