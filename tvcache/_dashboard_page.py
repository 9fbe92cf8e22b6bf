"""The dashboard as one self-contained HTML page: its script, styles and uPlot inlined.

``tvcache serve`` answers ``/`` with it (the script then reads ``/v1/dashboard/*``);
``tvcache tree ROOT --html FILE`` writes it with one root's data inlined, so the file needs
no server and no network. The sources are in tvcache/service/static/ (uPlot vendored by
scripts/build-dashboard-assets.sh, with its licence).
"""

from __future__ import annotations

import json
import re
from functools import cache
from pathlib import Path
from typing import Any

STATIC = Path(__file__).parent / "service" / "static"
_MARKER = re.compile(r"/\*@([A-Z_]+)@\*/")


@cache
def _asset(name: str) -> str:
    return (STATIC / name).read_text(encoding="utf-8")


def _script_json(data: Any) -> str:
    """JSON that is safe inside <script>: no '</script>', no '<!--', no line separators."""
    text = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    return (
        text.replace("<", "\\u003c")
        .replace(">", "\\u003e")
        .replace("&", "\\u0026")
        .replace("\u2028", "\\u2028")
        .replace("\u2029", "\\u2029")
    )


def render_page(data: dict[str, Any] | None) -> str:
    """The page; ``data`` (from ``tvcache._tree_view.export``) makes it a standalone file."""
    boot = {"mode": "live"} if data is None else {"mode": "file", "data": data}
    parts = {
        "UPLOT_CSS": _asset("vendor/uPlot.min.css"),
        "DASHBOARD_CSS": _asset("dashboard.css"),
        "UPLOT_JS": _asset("vendor/uPlot.iife.min.js"),
        "BOOT": f"window.TVCACHE_BOOT = {_script_json(boot)};",
        "DASHBOARD_JS": _asset("dashboard.js"),
    }
    # one pass over the template: nothing inserted (tool output above all) is read as a marker
    return _MARKER.sub(lambda match: parts[match.group(1)], _asset("dashboard.html"))
