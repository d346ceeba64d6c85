"""Self-contained HTML pages: templates, the Content-Security-Policy, inlined scripts and data.

A page loads nothing from anywhere: the CSP allows inline script and style only, vis-network's
script is inlined from the installed pyvis package, and data reach scripts as JSON that no value
can break out of.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import re
from pathlib import Path
from typing import Any

import jinja2
from markupsafe import Markup

from ringfinder.errors import RingfinderError
from ringfinder.visualize.text import visible_output, visible_strings

CSP = "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src data:"
VIS_NETWORK_JS = ("lib", "vis-9.1.2", "vis-network.min.js")


@functools.lru_cache(maxsize=1)
def _environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.PackageLoader("ringfinder", "templates"),
        autoescape=jinja2.select_autoescape(["html", "j2"], default_for_string=True, default=True),
        undefined=jinja2.StrictUndefined,
        finalize=visible_output,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )


def render_page(template: str, **context: Any) -> str:
    """``templates/<template>`` rendered with ``context`` (autoescaped) and the page's ``csp``."""
    return _environment().get_template(template).render(csp=CSP, **context)


def script_json(data: Any) -> Markup:
    """JSON for a ``<script type="application/json">`` block that no value can break out of.

    ``<``, ``>`` and ``&`` are written as ``\\u003c``-style escapes, which ``JSON.parse`` reads
    back unchanged, so no string can put ``</script>`` or ``<!--`` in front of the HTML parser.
    Strings are ``visible_text``, as in the page's HTML.

    Examples
    --------
    >>> str(script_json({"id": "</script><b>"}))
    '{"id":"\\\\u003c/script\\\\u003e\\\\u003cb\\\\u003e"}'
    """
    text = json.dumps(
        visible_strings(data), ensure_ascii=True, separators=(",", ":"), allow_nan=False
    )
    text = text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    return Markup(text)  # noqa: S704 - escaped above for the script-data context


@functools.lru_cache(maxsize=1)
def vis_network_js() -> Markup:
    """vis-network's standalone script from the installed pyvis package, safe to inline.

    Found without importing pyvis (which would import networkx and IPython helpers).
    """
    spec = importlib.util.find_spec("pyvis")
    if spec is None or not spec.submodule_search_locations:
        raise RingfinderError("pyvis is not installed; it provides the vis-network script")
    path = Path(next(iter(spec.submodule_search_locations))).joinpath(*VIS_NETWORK_JS)
    script = path.read_text(encoding="utf-8")
    # Inside <script> only "</script" and "<!--" mean something to the HTML parser.
    script = re.sub(r"</(script)", r"<\\/\1", script, flags=re.IGNORECASE)
    script = script.replace("<!--", "<\\!--")
    return Markup(script)  # noqa: S704 - a packaged library, made inert for the script context
