"""What the ``hosts`` commands found, printed for a person: a table per command, and each
unusable node's reasons in full below it (a table cell would cut them)."""

from __future__ import annotations

from collections.abc import Sequence

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from runnerscale.hosts.bootstrap import NodeOutcome
from runnerscale.hosts.check import NodeReport

__all__ = ["bootstrap_lines", "check_table"]


def _engine(report: NodeReport) -> str:
    facts, settings = report.facts, report.node.settings
    if facts is None:
        return ""
    if settings.mode == "docker":
        if facts.engine is None:
            return "docker: none"
        image = "image ok" if facts.engine.image_present else "no image"
        return f"docker {facts.engine.version}, {image}"
    return "runner ok" if facts.runner_present else "no runner"


def _slots(report: NodeReport) -> str:
    facts = report.facts
    cpus = "?" if facts is None or facts.cpus is None else str(facts.cpus)
    slots = "?" if report.slots is None else str(report.slots)
    return f"{slots} / {cpus}"


def _disk(report: NodeReport) -> str:
    facts = report.facts
    if facts is None or facts.disk_free is None:
        return ""
    return f"{facts.disk_free / 1024**3:.1f} GiB ({facts.disk_path})"


def _clock(report: NodeReport) -> str:
    facts = report.facts
    if facts is None or facts.clock_skew is None:
        return ""
    return f"{facts.clock_skew:+.2f}s"


def check_table(reports: Sequence[NodeReport]) -> RenderableType:
    """The table of ``hosts check``, then every node's problems and notes."""
    table = Table(title="runnerscale hosts check", title_justify="left")
    for column in (
        "pool",
        "node",
        "status",
        "host key",
        "engine / runner",
        "arch",
        "labels",
        "slots / cpus",
        "free disk",
        "clock",
        "ping",
    ):
        table.add_column(column)
    for report in reports:
        facts = report.facts
        status = Text("ok", style="green") if report.usable else Text("UNUSABLE", style="bold red")
        table.add_row(
            report.node.pool,
            report.node.name,
            status,
            "verified" if facts is not None else "",
            _engine(report),
            "" if facts is None else facts.machine,
            ", ".join(report.labels),
            _slots(report),
            _disk(report),
            _clock(report),
            "" if facts is None else f"{facts.round_trip * 1000:.0f} ms",
        )
    lines: list[RenderableType] = [table]
    for report in reports:
        where = f"{report.node.name} ({report.node.pool})"
        for problem in report.problems:
            lines.append(Text.assemble((f"{where}: ", "bold"), ("unusable: ", "red"), problem))
        for note in report.notes:
            lines.append(Text.assemble((f"{where}: ", "bold"), ("note: ", "yellow"), note))
    return Group(*lines)


def bootstrap_lines(outcomes: Sequence[NodeOutcome]) -> list[Text]:
    """What ``hosts bootstrap`` changed, a line per change, per node in order."""
    lines: list[Text] = []
    for outcome in outcomes:
        where = (f"{outcome.node.name} ({outcome.node.pool}): ", "bold")
        for change in outcome.changes:
            lines.append(Text.assemble(where, change))
        if outcome.failure:
            lines.append(Text.assemble(where, ("FAILED: ", "bold red"), outcome.failure))
        elif not outcome.changes:
            lines.append(Text.assemble(where, ("nothing to change", "green")))
    return lines
