"""Turn simulation figures into tables and a one-page HTML report.

Why this module exists: ``runnerscale simulate`` answers one question, "is this configuration
good enough?", and the answer is only convincing next to its alternatives: the same trace served
by a polling autoscaler (``poll-60``), by a fixed fleet (``static-N``), and by the lower bound
that no autoscaler can beat. The numbers go to three places that must agree with each other:

- the terminal (``--compare``, ``--sweep``): a :class:`rich.table.Table`;
- benchmarks and pull requests: GitHub-flavoured markdown;
- ``--report OUT.html``: one self-contained page (inline CSS, plots embedded as PNG data URIs,
  no external resource), because a report gets attached to an issue, mailed, or opened from an
  artifact store where nothing beside it can be fetched.

So every table is built from the same rows of already formatted strings
(:func:`comparison_rows`, :func:`pool_rows`, :func:`sweep_rows`), and each figure is formatted
one way everywhere: waits in seconds with one decimal, runner time in hours with two, cost in
dollars with two. Where a pool is priced by market (ec2), a table of those pools
(:func:`market_rows`) and the sweep's table add :data:`MARKET_HEADER`: the cost on each
market, and what spot took besides money.

The report is deterministic: the same result gives the same bytes (fixed style, sizes and DPI,
no timestamps in the PNG metadata), so it can be checked into a benchmark folder and diffed.
Plotting needs matplotlib, an optional extra (``runnerscale[report]``); it is imported only
when a report is drawn, so the tables and the rest of the simulator work without it.

The timelines are samples; :attr:`~runnerscale.simulation.results.TimelinePoint.cost` is read as the
cost accrued from the start of the trace up to that sample.
"""

from __future__ import annotations

import base64
import html
import io
import math
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, TypeVar

from rich.table import Table

from runnerscale.simulation.occupancy import State
from runnerscale.simulation.pools import ON_DEMAND, SPOT
from runnerscale.simulation.results import Figures, MarketFigures, PolicyResult, PoolFigures

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = [
    "COMPARISON_HEADER",
    "DEMAND_HEADER",
    "LOWER_BOUND",
    "MARKET_HEADER",
    "MARKET_POOL_HEADER",
    "POOL_HEADER",
    "SWEEP_FIGURES_HEADER",
    "comparison_rows",
    "comparison_table",
    "demand_markdown",
    "demand_rows",
    "demand_table",
    "markdown_table",
    "market_rows",
    "market_table",
    "pool_rows",
    "pool_table",
    "render_html",
    "sweep_header",
    "sweep_markdown",
    "sweep_rows",
    "sweep_table",
]

#: The name the lower bound goes by in every table and plot.
LOWER_BOUND = "lower bound"

#: What a run and each of its pools have alike: how jobs were served and the runners' time.
_SERVICE_HEADER: tuple[str, ...] = (
    "jobs",
    "served",
    "unserved",
    "p50 wait (s)",
    "p95 wait (s)",
    "p99 wait (s)",
    "max wait (s)",
    "busy runner-h",
    "idle runner-h",
    "booting runner-h",
    "idle ratio",
)

COMPARISON_HEADER: tuple[str, ...] = ("policy", *_SERVICE_HEADER, "API calls", "calls/job", "cost")

#: The demand sources side by side (``--demand-sources``): waits against what hearing of the
#: jobs cost, REST calls and the Actions service's apart, and the webhooks delivered and lost.
DEMAND_HEADER: tuple[str, ...] = (
    "demand source",
    "jobs",
    "served",
    "p50 wait (s)",
    "p95 wait (s)",
    "REST calls",
    "REST calls/job",
    "Actions-service calls",
    "Actions-service calls/job",
    "webhooks delivered",
    "webhooks lost",
    "cost",
)

#: A policy's figures per pool: the comparison's columns but the API calls, which are the
#: run's (GitHub is called per target, not per pool).
POOL_HEADER: tuple[str, ...] = ("pool", *_SERVICE_HEADER, "cost")

#: A pool priced by market (ec2): its cost on each market, spot launches refused for capacity
#: (they went on demand, or failed), instances taken back, the jobs running on them, and the
#: lost jobs runnerscale re-ran.
MARKET_HEADER: tuple[str, ...] = (
    "spot cost",
    "on-demand cost",
    "spot refused",
    "interrupted",
    "jobs lost",
    "re-run",
)
#: The table of a policy's pools priced by market: each pool's cost, its launches on each
#: market, then :data:`MARKET_HEADER`.
MARKET_POOL_HEADER: tuple[str, ...] = (
    "pool",
    "cost",
    "spot launches",
    "on-demand launches",
    *MARKET_HEADER,
)

#: The figure columns of the sweep table; the swept parameters come before them.
SWEEP_FIGURES_HEADER: tuple[str, ...] = (
    "unserved",
    "p50 wait (s)",
    "p95 wait (s)",
    "idle ratio",
    "cost",
)

_T = TypeVar("_T")

_MISSING_MATPLOTLIB = "the HTML report needs matplotlib: pip install 'runnerscale[report]'"

# Plot geometry: fixed so the same result always gives the same image.
_DPI = 120
_FIGSIZE = (10.0, 4.4)
_STATE_COLOURS = {"booting": "#f2a541", "idle": "#b8c4d0", "busy": "#2f6db5"}
_QUEUED_COLOUR = "#c0392b"
_LOWER_BOUND_COLOUR = "#222222"


# --- formatting ---------------------------------------------------------------------------


def _wait(seconds: float) -> str:
    return f"{seconds:.1f}"


def _hours(seconds: float) -> str:
    return f"{seconds / 3600:.2f}"


def _ratio(value: float) -> str:
    return f"{value:.2f}"


def _cost(dollars: float) -> str:
    return f"-${-dollars:.2f}" if dollars < 0 else f"${dollars:.2f}"


# --- comparison ---------------------------------------------------------------------------


def _service_cells(figures: PoolFigures) -> list[str]:
    """The :data:`_SERVICE_HEADER` cells of a run or of one of its pools."""
    wait = figures.queue_wait
    runner = figures.runner_seconds
    return [
        str(figures.jobs),
        str(figures.served),
        str(figures.unserved),
        _wait(wait.p50),
        _wait(wait.p95),
        _wait(wait.p99),
        _wait(wait.max),
        _hours(runner.busy),
        _hours(runner.idle),
        _hours(runner.booting),
        _ratio(figures.idle_ratio),
    ]


def comparison_rows(results: Sequence[tuple[str, Figures]]) -> list[list[str]]:
    """One row of formatted strings per ``(name, figures)``, in :data:`COMPARISON_HEADER` order."""
    return [
        [
            name,
            *_service_cells(figures),
            str(figures.api_calls),
            _ratio(figures.api_calls_per_job),
            _cost(figures.cost),
        ]
        for name, figures in results
    ]


def comparison_table(results: Sequence[tuple[str, Figures]], title: str | None = None) -> Table:
    """The comparison for the terminal: names left-aligned, figures right-aligned."""
    return _rich_table(COMPARISON_HEADER, comparison_rows(results), text_columns=1, title=title)


def markdown_table(results: Sequence[tuple[str, Figures]]) -> str:
    """The comparison as a GitHub-flavoured markdown table (for benchmarks and pull requests)."""
    return _markdown(COMPARISON_HEADER, comparison_rows(results), text_columns=1)


# --- demand sources ----------------------------------------------------------------------


def demand_rows(results: Sequence[tuple[str, Figures]]) -> list[list[str]]:
    """One row per demand-source variant, in :data:`DEMAND_HEADER` order."""
    return [
        [
            name,
            str(figures.jobs),
            str(figures.served),
            _wait(figures.queue_wait.p50),
            _wait(figures.queue_wait.p95),
            str(figures.api_calls),
            _ratio(figures.api_calls_per_job),
            str(figures.actions_service_calls),
            _ratio(figures.actions_service_calls_per_job),
            str(figures.webhooks_delivered),
            str(figures.webhooks_lost),
            _cost(figures.cost),
        ]
        for name, figures in results
    ]


def demand_table(results: Sequence[tuple[str, Figures]], title: str | None = None) -> Table:
    """The demand sources for the terminal."""
    return _rich_table(DEMAND_HEADER, demand_rows(results), text_columns=1, title=title)


def demand_markdown(results: Sequence[tuple[str, Figures]]) -> str:
    """The demand sources as GitHub-flavoured markdown."""
    return _markdown(DEMAND_HEADER, demand_rows(results), text_columns=1)


# --- per pool -----------------------------------------------------------------------------


def _market_cells(market: MarketFigures | None) -> list[str]:
    """The :data:`MARKET_HEADER` cells (``-`` for figures without markets)."""
    if market is None:
        return ["-"] * len(MARKET_HEADER)
    return [
        _cost(market.cost.get(SPOT, 0.0)),
        _cost(market.cost.get(ON_DEMAND, 0.0)),
        str(market.spot_capacity_short),
        str(market.interruptions),
        str(market.jobs_lost),
        str(market.jobs_rerun),
    ]


def _has_markets(figures: Sequence[PoolFigures]) -> bool:
    return any(part.market is not None for part in figures)


def pool_rows(figures: Figures) -> list[list[str]]:
    """One row per pool of a policy's run, in the config's order (:data:`POOL_HEADER`)."""
    return [[name, *_service_cells(pool), _cost(pool.cost)] for name, pool in figures.pools.items()]


def market_rows(figures: Figures) -> list[list[str]]:
    """One row per pool priced by market (:data:`MARKET_POOL_HEADER`); none without such a
    pool."""
    return [
        [
            name,
            _cost(pool.cost),
            str(pool.market.launches.get(SPOT, 0)),
            str(pool.market.launches.get(ON_DEMAND, 0)),
            *_market_cells(pool.market),
        ]
        for name, pool in figures.pools.items()
        if pool.market is not None
    ]


def market_table(figures: Figures, title: str | None = None) -> Table:
    """A policy's pools priced by market, for the terminal: what each market cost, and what
    spot took besides money."""
    return _rich_table(MARKET_POOL_HEADER, market_rows(figures), text_columns=1, title=title)


def pool_table(figures: Figures, title: str | None = None) -> Table:
    """A policy's figures per pool for the terminal: which pool made its waits and its cost."""
    return _rich_table(POOL_HEADER, pool_rows(figures), text_columns=1, title=title)


# --- sweep --------------------------------------------------------------------------------


def _sweep_parameters(points: Sequence[tuple[dict[str, str], Figures]]) -> list[str]:
    names: list[str] = []
    for parameters, _ in points:
        names.extend(name for name in parameters if name not in names)
    return names


def sweep_header(points: Sequence[tuple[dict[str, str], Figures]]) -> list[str]:
    """The swept parameters' names (first-seen order), then :data:`SWEEP_FIGURES_HEADER`, and
    :data:`MARKET_HEADER` when a pool is priced by market."""
    markets = MARKET_HEADER if _has_markets([figures for _, figures in points]) else ()
    return [*_sweep_parameters(points), *SWEEP_FIGURES_HEADER, *markets]


def sweep_rows(points: Sequence[tuple[dict[str, str], Figures]]) -> list[list[str]]:
    """One row per point of the sweep: its parameter values, then the trade-off figures.

    ``unserved`` is there because a setting that leaves jobs unserved has waits that flatter it.
    A parameter a point does not set is shown as ``-``.
    """
    names = _sweep_parameters(points)
    markets = _has_markets([figures for _, figures in points])
    rows: list[list[str]] = []
    for parameters, figures in points:
        wait = figures.queue_wait
        rows.append(
            [
                *(parameters.get(name, "-") for name in names),
                str(figures.unserved),
                _wait(wait.p50),
                _wait(wait.p95),
                _ratio(figures.idle_ratio),
                _cost(figures.cost),
                *(_market_cells(figures.market) if markets else []),
            ]
        )
    return rows


def sweep_table(
    points: Sequence[tuple[dict[str, str], Figures]], title: str | None = None
) -> Table:
    """The trade-off of queue wait against cost over a parameter sweep, for the terminal."""
    header = sweep_header(points)
    text_columns = len(_sweep_parameters(points))
    return _rich_table(header, sweep_rows(points), text_columns=text_columns, title=title)


def sweep_markdown(points: Sequence[tuple[dict[str, str], Figures]]) -> str:
    """The sweep's trade-off table as GitHub-flavoured markdown."""
    header = sweep_header(points)
    text_columns = len(_sweep_parameters(points))
    return _markdown(header, sweep_rows(points), text_columns=text_columns)


# --- table renderers ----------------------------------------------------------------------


def _rich_table(
    header: Sequence[str], rows: Sequence[Sequence[str]], *, text_columns: int, title: str | None
) -> Table:
    table = Table(title=title)
    for index, name in enumerate(header):
        text = index < text_columns
        table.add_column(name, justify="left" if text else "right", no_wrap=not text)
    for row in rows:
        table.add_row(*row)
    return table


def _markdown(header: Sequence[str], rows: Sequence[Sequence[str]], *, text_columns: int) -> str:
    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(_markdown_cell(cell) for cell in cells) + " |"

    align = ["---" if index < text_columns else "---:" for index in range(len(header))]
    lines = [line(header), "| " + " | ".join(align) + " |", *(line(row) for row in rows)]
    return "\n".join(lines) + "\n"


def _markdown_cell(text: str) -> str:
    # A pipe would end the cell and a newline the row; nothing else is special inside a cell.
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")


# --- HTML report --------------------------------------------------------------------------


def render_html(
    title: str,
    subtitle: str,
    policies: Sequence[PolicyResult],
    limit: Figures | None,
    *,
    demand: bool = False,
) -> str:
    """One self-contained HTML page: the comparison table and three plots.

    ``policies[0]`` is the main policy (runnerscale as configured): the runners-by-state plot
    shows its timeline. ``limit``, when given, is the lower bound, shown as the table's last row
    and in the queue-wait plot. ``demand``: the policies are demand sources, compared in
    :data:`DEMAND_HEADER`'s table. Raises :class:`RuntimeError` when matplotlib is not
    installed.
    """
    try:
        import matplotlib  # noqa: PLC0415 - optional extra, needed only for the report
    except ImportError as error:
        raise RuntimeError(_MISSING_MATPLOTLIB) from error
    matplotlib.use("Agg")
    import matplotlib.style  # noqa: PLC0415

    named = [(policy.policy, policy.figures) for policy in policies]
    if limit is not None:
        named.append((LOWER_BOUND, limit))

    # The default style, not the user's matplotlibrc: the same result gives the same bytes.
    with (
        matplotlib.style.context("default"),
        matplotlib.rc_context({"svg.hashsalt": "runnerscale"}),
    ):
        plots = [
            (
                "Queue-wait distribution",
                "Share of jobs that waited longer than a given time for a runner, per policy, "
                "on a log scale, so that the slowest 5% and 1% of jobs get as much room as the "
                "median: a curve crosses the dotted p50, p95 and p99 lines at that policy's "
                "percentiles (the dots) and ends at its longest wait. Lower and further left "
                "is better.",
                _png(_plot_queue_waits, (named, limit is not None)),
            ),
            (
                "Runners by state against queued jobs",
                _runners_caption(policies[0] if policies else None),
                _png(_plot_runners, policies),
            ),
            (
                "Cost over time",
                "Cumulative cost of the runners each policy kept, over the trace.",
                _png(_plot_costs, (policies, limit)),
            ),
        ]
    return _page(title, subtitle, named, plots, has_limit=limit is not None, demand=demand)


def _png(draw: Callable[[Axes, _T], None], data: _T) -> str:
    """Draw on a fresh figure (no pyplot: no global state) and return it as a data URI."""
    from matplotlib.figure import Figure  # noqa: PLC0415

    figure: Figure = Figure(figsize=_FIGSIZE, dpi=_DPI, layout="constrained")
    draw(figure.add_subplot(), data)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=_DPI, facecolor="white", metadata={"Software": None})
    encoded = base64.b64encode(buffer.getvalue()).decode("ascii")
    return f"data:image/png;base64,{encoded}"


def _label(text: str) -> str:
    """Text as matplotlib shows it literally: ``$`` would start mathtext, ``_`` hide a label."""
    text = text.replace("$", r"\$")
    return "\N{NO-BREAK SPACE}" + text if text.startswith("_") else text


def _colour(index: int) -> str:
    return f"C{index % 10}"


#: The percentiles marked on the queue-wait plot, as the share of jobs that waited longer.
_TAIL_MARKS = (("p50", 0.5), ("p95", 0.05), ("p99", 0.01))


def _plot_queue_waits(axes: Axes, data: tuple[Sequence[tuple[str, Figures]], bool]) -> None:
    """The complementary CDF (share of jobs that waited longer than x) on a log y axis.

    A CDF on a linear axis gives the median and the slowest 5% of jobs the same height as any
    5% of the others: p99 and the longest waits, the ones people complain about, end up in a
    sliver under 100%. On a log axis every tenth of the jobs gets the same room (50% to 5% to
    0.5%), so p95 and p99 are as readable as the median, and each percentile is where a curve
    crosses a horizontal line.
    """
    from matplotlib.ticker import FixedLocator, FuncFormatter, NullLocator  # noqa: PLC0415
    from matplotlib.transforms import blended_transform_factory  # noqa: PLC0415

    named, has_limit = data
    drawn = 0
    fewest = 1.0  # the share one job is, in the policy with the most jobs served
    longest = 0.0
    for index, (name, figures) in enumerate(named):
        waits = figures.queue_waits
        if not waits:
            continue
        is_limit = has_limit and index == len(named) - 1
        colour = _LOWER_BOUND_COLOUR if is_limit else _colour(index)
        axes.ecdf(
            waits,
            complementary=True,
            label=_label(name),
            color=colour,
            linestyle="--" if is_limit else "-",
            linewidth=1.8,
        )
        wait = figures.queue_wait
        axes.plot(
            [wait.p50, wait.p95, wait.p99],
            [share for _, share in _TAIL_MARKS],
            linestyle="none",
            marker="o",
            markersize=4.5,
            color=colour,
        )
        fewest = min(fewest, 1 / len(waits))
        longest = max(longest, wait.max)
        drawn += 1
    # Down to half the share of one job, so that the last job's step shows before the curve
    # leaves the axis at the longest wait (zero is not on a log axis).
    bottom = min(fewest, _TAIL_MARKS[-1][1]) / 2
    axes.set_yscale("log", nonpositive="clip")
    axes.set_ylim(bottom, 1.6)
    ticks = [share * 10.0**-exponent for exponent in range(7) for share in (1.0, 0.5)]
    axes.yaxis.set_major_locator(FixedLocator([tick for tick in ticks if tick >= bottom]))
    axes.yaxis.set_minor_locator(NullLocator())
    axes.yaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value * 100:g}%"))
    beside = blended_transform_factory(axes.transAxes, axes.transData)
    for mark, share in _TAIL_MARKS:
        axes.axhline(share, color="#777777", linestyle=":", linewidth=1.0)
        axes.text(1.005, share, mark, transform=beside, va="center", ha="left", color="#555555")
    # Waits span from zero (a warm runner) to hours (a saturated fleet): a symmetric log axis
    # shows both, with plain numbers on it.
    axes.set_xscale("symlog", linthresh=1.0)
    # A little room left of zero, so a policy whose jobs never waited is not hidden by the axis.
    # ... and some on the right, so that where the longest wait's curve ends shows.
    axes.set_xlim(-0.3, max(2.0, longest * 1.5))
    axes.xaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
    axes.grid(visible=True, alpha=0.3)
    axes.set_xlabel("queue wait (s, log scale)")
    axes.set_ylabel("jobs that waited longer (log scale)")
    axes.set_title("Queue-wait distribution per policy: the tail")
    if drawn:
        # Below the plot: curves may run anywhere in it.
        axes.legend(loc="upper center", bbox_to_anchor=(0.5, -0.16), ncols=min(drawn, 5))
    else:
        _no_data(axes, "no job was served")


def _runners_caption(main: PolicyResult | None) -> str:
    name = main.policy if main is not None else "-"
    caption = (
        f"The main policy, {name}: runners busy, booting and idle (stacked), and the jobs "
        "waiting in the queue"
    )
    if main is None or main.occupancy is None:
        return caption + "."
    return (
        f"{caption}, each the mean count over a {_span_phrase(main.occupancy.width)} bucket, "
        "from every runner's and job's exact times: a band's area is its runner time in "
        "the table."
    )


def _span_phrase(seconds: float) -> str:
    """``180`` as "3-minute", for a caption."""
    for unit, name in ((3600.0, "hour"), (60.0, "minute")):
        if seconds >= unit:
            return f"{seconds / unit:g}-{name}"
    return f"{seconds:g}-second"


def _plot_runners(axes: Axes, policies: Sequence[PolicyResult]) -> None:
    occupancy = policies[0].occupancy if policies else None
    name = policies[0].policy if policies else "-"
    axes.set_title(_label(f"Runners by state against queued jobs: {name}"))
    axes.set_ylabel("runners / queued jobs (mean)")
    axes.grid(visible=True, alpha=0.3)
    if occupancy is None or occupancy.edges[-1] <= 0:
        _no_data(axes, "no timeline recorded")
        return

    def series(state: State) -> list[float]:
        # A step drawn "post" needs a value at the last edge too: the last bucket's, again.
        means = list(occupancy.means[state])
        return [*means, means[-1]]

    # The work at the bottom, what it costs on top of it: booting, then idle.
    axes.stackplot(
        occupancy.edges,
        series("busy"),
        series("booting"),
        series("idle"),
        labels=["busy", "booting", "idle"],
        colors=[_STATE_COLOURS["busy"], _STATE_COLOURS["booting"], _STATE_COLOURS["idle"]],
        step="post",
        alpha=0.9,
    )
    axes.plot(
        occupancy.edges,
        series("queued"),
        drawstyle="steps-post",
        color=_QUEUED_COLOUR,
        linewidth=1.4,
        label="queued jobs",
    )
    _time_axis(axes, occupancy.edges[-1])
    axes.set_ylim(bottom=0)
    axes.legend(loc="upper right")


#: Time-axis tick steps to choose from, in seconds: 1, 5, 10, 15, 30 minutes, then hours.
_TICK_STEPS = (60, 300, 600, 900, 1800, *(3600 * h for h in (1, 2, 3, 4, 6, 12, 24)))
#: At most this many ticks on a time axis, about one per 100 pixels.
_MOST_TICKS = 12


def _time_axis(axes: Axes, end: float) -> None:
    """An x axis of seconds since the start, from 0 to ``end``, labelled as hours:minutes
    ("10:30") at round steps: the clock a reader of a day's trace thinks in."""
    from matplotlib.ticker import FuncFormatter, MultipleLocator  # noqa: PLC0415

    step = next((s for s in _TICK_STEPS if end / s <= _MOST_TICKS), None)
    if step is None:
        step = 86_400 * math.ceil(end / (86_400 * _MOST_TICKS))
    axes.xaxis.set_major_locator(MultipleLocator(step))
    axes.xaxis.set_major_formatter(
        FuncFormatter(lambda value, _: f"{int(value // 3600)}:{int(value % 3600 // 60):02d}")
    )
    axes.set_xlim(0, max(end, 1.0))
    axes.set_xlabel("time since the trace started (h:mm)")


def _plot_costs(axes: Axes, data: tuple[Sequence[PolicyResult], Figures | None]) -> None:
    policies, limit = data
    axes.set_title("Cumulative cost per policy")
    axes.set_ylabel("cost ($)")
    axes.grid(visible=True, alpha=0.3)
    end = 0.0
    drawn = 0
    for index, policy in enumerate(policies):
        if not policy.timeline:
            continue
        seconds = [point.at for point in policy.timeline]
        end = max(end, seconds[-1])
        axes.plot(
            seconds,
            [point.cost for point in policy.timeline],
            color=_colour(index),
            linewidth=1.8,
            label=_label(f"{policy.policy} ({_cost(policy.figures.cost)})"),
        )
        drawn += 1
    if not drawn:
        _no_data(axes, "no timeline recorded")
        return
    if limit is not None:
        # The lower bound has no timeline: its total, at the end of the trace.
        axes.plot(
            [end],
            [limit.cost],
            marker="D",
            linestyle="none",
            color=_LOWER_BOUND_COLOUR,
            label=_label(f"{LOWER_BOUND}, total ({_cost(limit.cost)})"),
            clip_on=False,  # (on the axis's right end)
        )
    _time_axis(axes, end)
    axes.set_ylim(bottom=0)
    axes.legend(loc="upper left")


def _no_data(axes: Axes, message: str) -> None:
    axes.text(0.5, 0.5, message, ha="center", va="center", transform=axes.transAxes)


_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif;
       margin: 0; padding: 24px 32px; color: #1f2328; background: #ffffff; }
header { border-bottom: 1px solid #d0d7de; margin-bottom: 20px; }
h1 { font-size: 1.6em; margin: 0 0 4px 0; }
header p { color: #57606a; margin: 0 0 14px 0; }
h2 { font-size: 1.2em; margin: 28px 0 6px 0; }
h3 { font-size: 1em; margin: 16px 0 4px 0; }
.note { color: #57606a; font-size: 0.9em; margin: 4px 0 10px 0; max-width: 70em; }
.table-wrap { overflow-x: auto; }
table { border-collapse: collapse; font-size: 0.85em; font-variant-numeric: tabular-nums; }
th, td { padding: 5px 8px; border-bottom: 1px solid #d0d7de; white-space: nowrap; }
th { background: #f6f8fa; text-align: right; font-weight: 600; white-space: normal;
     vertical-align: bottom; }
td { text-align: right; }
th.text, td.text { text-align: left; }
tr.main td { font-weight: 600; }
tr.limit td { color: #57606a; font-style: italic; background: #fbfbfb; }
figure { margin: 8px 0 0 0; }
figure img { width: 100%; max-width: 1200px; height: auto; border: 1px solid #d0d7de; }
footer { color: #57606a; font-size: 0.8em; margin-top: 28px; }
"""


def _page(
    title: str,
    subtitle: str,
    named: Sequence[tuple[str, Figures]],
    plots: Sequence[tuple[str, str, str]],
    *,
    has_limit: bool,
    demand: bool = False,
) -> str:
    esc = html.escape
    last = len(named) - 1
    header, rows = (
        (DEMAND_HEADER, demand_rows(named))
        if demand
        else (COMPARISON_HEADER, comparison_rows(named))
    )
    comparison = _html_table(
        header,
        rows,
        [
            "limit" if has_limit and index == last else "main" if index == 0 else ""
            for index in range(len(named))
        ],
    )
    note = (
        "Waits are the time from a job being queued to a runner starting it. Runner-hours are "
        "summed over all runners; the idle ratio is idle over busy runner time."
    )
    if demand:
        note += (
            " REST calls are those GitHub charged; Actions-service calls are the requests a "
            "scale set's listener and runners make to the Actions service, counted apart."
        )
    if has_limit:
        note += (
            " The lower bound is the best any autoscaler could do with the same pools: it learns "
            "of each job the instant it is queued and keeps no runner it does not need."
        )
    figures = "\n".join(
        f'<section>\n<h2>{esc(heading)}</h2>\n<p class="note">{esc(caption)}</p>\n'
        f'<figure><img src="{uri}" alt="{esc(heading)}"></figure>\n</section>'
        for heading, caption, uri in plots
    )
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{esc(title)}</title>
<style>{_CSS}</style>
</head>
<body>
<header>
<h1>{esc(title)}</h1>
<p>{esc(subtitle)}</p>
</header>
<section>
<h2>Comparison</h2>
<p class="note">{esc(note)}</p>
{comparison}
</section>
{_by_pool(named)}
{figures}
<footer>Made by runnerscale simulate.</footer>
</body>
</html>
"""


def _by_pool(named: Sequence[tuple[str, Figures]]) -> str:
    """A table per policy of its figures per pool; nothing when no figures have pools."""
    esc = html.escape
    tables = [
        f"<h3>{esc(name)}</h3>\n{_html_table(POOL_HEADER, pool_rows(figures), [], kind='pools')}"
        for name, figures in named
        if figures.pools
    ]
    tables += [
        f"<h3>{esc(name)}, by market</h3>\n"
        f"{_html_table(MARKET_POOL_HEADER, market_rows(figures), [], kind='pools')}"
        for name, figures in named
        if market_rows(figures)
    ]
    if not tables:
        return ""
    note = (
        "Each policy's figures, pool by pool: a job counts in the pool it is routed to (its "
        "most specific matching pool), runner time and cost are the pool's own runners'. "
        "Jobs no pool matches count in the comparison only, and so do API calls."
    )
    if any(figures.market is not None for _, figures in named):
        note += (
            " By market: an ec2 pool's cost split by market; spot refused counts spot "
            "launches refused for capacity, interrupted the spot instances taken back, jobs "
            "lost the jobs running on them, re-run those runnerscale re-ran (rerun_lost_jobs)."
        )
    body = "\n".join(tables)
    return f'<section>\n<h2>By pool</h2>\n<p class="note">{esc(note)}</p>\n{body}\n</section>'


def _html_table(
    header: Sequence[str], rows: Sequence[Sequence[str]], classes: Sequence[str], kind: str = ""
) -> str:
    """A table whose first column is text and the others figures; ``classes`` gives the rows'
    (``main``, ``limit``, or none), ``kind`` the table's own class."""
    esc = html.escape

    def cells(tag: str, row: Sequence[str]) -> str:
        return "".join(
            f'<{tag} class="text">{esc(cell)}</{tag}>'
            if column == 0
            else f"<{tag}>{esc(cell)}</{tag}>"
            for column, cell in enumerate(row)
        )

    body = []
    for index, row in enumerate(rows):
        row_class = classes[index] if index < len(classes) else ""
        opening = f'<tr class="{row_class}">' if row_class else "<tr>"
        body.append(f"{opening}{cells('td', row)}</tr>")
    table = f'<table class="{kind}">' if kind else "<table>"
    return (
        f'<div class="table-wrap">\n{table}\n<thead><tr>{cells("th", header)}</tr></thead>\n'
        f"<tbody>\n{chr(10).join(body)}\n</tbody>\n</table>\n</div>"
    )
