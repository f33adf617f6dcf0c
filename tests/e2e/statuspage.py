"""The status page in headless Chromium (:mod:`tests.chromium`), asked what it shows: for the
tests that open it through ``runnerscale dashboard``."""

from __future__ import annotations

from typing import Any

from tests.chromium import Page
from tests.e2e.harness import wait_until

#: What the page shows, read from its DOM; the pool is linux-x64 (the harness's, and the one of
#: docs/configuration.md's example).
SHOWN = """(() => {
  const banner = document.getElementById("problem");
  if (banner === null) return null;  // not loaded yet
  const row = document.querySelector('#pools tr[data-pool="linux-x64"]');
  // The rows of a section that is shown.
  const rows = (id) => document.getElementById(id).hidden ? []
    : [...document.querySelectorAll("#" + id + " tbody tr")];
  const pool = {};
  for (const cell of row ? row.querySelectorAll("[data-field]") : []) {
    pool[cell.dataset.field] = Number(cell.textContent);
  }
  return {
    refreshes: Number(document.body.dataset.refreshes),
    pool: row ? pool : null,
    reason: row ? row.nextElementSibling.textContent : null,
    queued: [...document.querySelectorAll("#queued tbody tr")].map((r) => Number(r.dataset.job)),
    unmatched: [...document.querySelectorAll("#unmatched tbody tr")].map((r) => r.textContent),
    markup: document.querySelectorAll("main img, main script").length,
    plotted: [...document.querySelectorAll("#wait-plot .wait")].map((c) => Number(c.dataset.job)),
    plot: document.getElementById("wait-plot") !== null,
    budget: [...document.querySelectorAll("#budget tbody tr")].map((r) => r.dataset.resource),
    spend: rows("spend").map((r) => [...r.children].map((cell) => cell.textContent)),
    draining: rows("draining").map((r) => r.dataset.runner),
    problem: banner.hidden ? null : banner.textContent,
    address: location.href,
    html: document.documentElement.outerHTML,
  };
})()"""


async def shown(page: Page) -> dict[str, Any] | None:
    """What the page shows, or None before it is loaded."""
    value = await page.evaluate(SHOWN)
    assert value is None or isinstance(value, dict)
    return value


async def showing(page: Page, what: str, check: Any, timeout: float = 90) -> dict[str, Any]:
    """What the page shows once ``check`` holds for it."""
    seen: dict[str, Any] = {}

    async def holds() -> bool:
        now = await shown(page)
        if now is None:
            return False
        seen.update(now)
        return bool(check(seen))

    try:
        await wait_until(holds, timeout, f"the page to show {what}", poll=0.5)
    except AssertionError as error:
        last = {key: value for key, value in seen.items() if key != "html"}
        raise AssertionError(f"{error}; it shows {last}") from None
    return seen
