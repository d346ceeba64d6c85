"""Self-contained HTML pages: templates, the Content-Security-Policy, inlined scripts and data.

A page loads nothing from anywhere: the CSP allows inline style and only the page's own inline
scripts, named by their SHA-256, so a script that an escaping slip let into the page would not
run. vis-network's script is inlined from the installed pyvis package, and data reach scripts as
JSON that no value can break out of.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import importlib.util
import json
import re
from pathlib import Path
from typing import Any

import jinja2
from markupsafe import Markup

from ringfinder.errors import RingfinderError
from ringfinder.visualize.text import visible_output, visible_strings

CSP = "default-src 'none'; script-src {scripts}; style-src 'unsafe-inline'; img-src data:"
# An executable inline script: a <script> tag without attributes (data blocks have a type).
INLINE_SCRIPT = re.compile(r"<script>(.*?)</script>", re.DOTALL)
CSP_MARK = "ringfinder-content-security-policy"
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
    """``templates/<template>`` rendered with ``context`` (autoescaped) and the page's ``csp``:
    ``CSP`` naming the hash of each inline script the page holds."""
    html = _environment().get_template(template).render(csp=CSP_MARK, **context)
    return html.replace(CSP_MARK, page_csp(html), 1)


def page_csp(html: str) -> str:
    """``CSP`` for a page: its inline scripts by SHA-256 (``'none'`` when it has none).

    >>> page_csp("<script>1</script>")[:60]
    "default-src 'none'; script-src 'sha256-a4ayc/80/OGda4BO/1o/V"
    """
    digests = [
        "'sha256-" + base64.b64encode(hashlib.sha256(code.encode()).digest()).decode() + "'"
        for code in dict.fromkeys(INLINE_SCRIPT.findall(html))
    ]
    return CSP.format(scripts=" ".join(digests) or "'none'")


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
