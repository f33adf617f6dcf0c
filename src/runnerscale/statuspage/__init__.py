"""The status page: one self-contained HTML document, served by the control API at ``/``.

Why it is made this way:

- **Served by the daemon**, beside the status API it reads, so the page and the JSON always
  come from the same version. It is behind the control API's gate like the rest of it; a
  browser reaches it through ``runnerscale dashboard`` (:mod:`runnerscale.dashboard`).
- **Self-contained.** Its style (``page.css``) and script (``page.js``) are put inline into
  ``page.html``: nothing loads from anywhere else (no CDN: the operator's network may reach
  none, and no third party should learn who looks at a fleet).
- **Nothing else may run.** The Content-Security-Policy allows exactly that style and that
  script, by their SHA-256, and requests to the page's own origin only; the script sets what
  came from outside (a repository, a job's labels) as text only, never as HTML.
- **No data, no secret in it.** The script reads ``api/v1/status``, relative to where the
  page was loaded, every few seconds, with the key the dashboard's link carries after ``#``
  (kept in the browser tab, sent as ``Authorization: Bearer``); it renders and decides
  nothing itself.
"""

from __future__ import annotations

import base64
import hashlib
from importlib.resources import files

__all__ = ["HEADERS", "PAGE"]


def _asset(name: str) -> str:
    return files(__package__).joinpath(name).read_text(encoding="utf-8")


def _source(text: str) -> str:
    """A CSP source allowing the inline element whose text is ``text``."""
    digest = hashlib.sha256(text.encode()).digest()
    return f"'sha256-{base64.b64encode(digest).decode()}'"


_STYLE = _asset("page.css")
_SCRIPT = _asset("page.js")

#: The page, with its style and script inline.
PAGE: bytes = (
    _asset("page.html").replace("/*STYLE*/", _STYLE).replace("/*SCRIPT*/", _SCRIPT).encode()
)

#: What the page is answered with: its policy (only its own style and script, requests to
#: its own origin only, no framing), and no caching (a page of a daemon's version).
HEADERS: dict[str, str] = {
    "Content-Security-Policy": "; ".join(
        (
            "default-src 'none'",
            f"script-src {_source(_SCRIPT)}",
            f"style-src {_source(_STYLE)}",
            "connect-src 'self'",
            "img-src data:",
            "base-uri 'none'",
            "form-action 'none'",
            "frame-ancestors 'none'",
        )
    ),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
