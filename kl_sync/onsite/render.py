"""Render snippets as JavaScript on Klaviyo's ``klaviyo`` object.

Values are serialised with :func:`json.dumps` and then made safe for an inline ``<script>``: ``<``,
``>`` and ``&`` become ``\\u003c`` / ``\\u003e`` / ``\\u0026`` (so a customer named ``</script>``
cannot close the tag or open a comment), and U+2028 / U+2029, which JSON allows in strings but
older JavaScript engines treat as line ends, are escaped too. Each escape is only possible inside a
JSON string, where JavaScript reads it back as the same character.

The page's layout must already load klaviyo.js with Klaviyo's own loader snippet, which defines the
``klaviyo`` object before the script arrives; these snippets only call it.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from kl_sync.onsite.snippets import OnsiteCall

_JS_UNSAFE = {
    "<": "\\u003c",
    ">": "\\u003e",
    "&": "\\u0026",
    "\u2028": "\\u2028",
    "\u2029": "\\u2029",
}
_JS_UNSAFE_TABLE = str.maketrans(_JS_UNSAFE)


def js_value(value: Any) -> str:
    """``value`` as a JavaScript literal that is safe inside an HTML ``<script>`` element."""
    text = json.dumps(value, ensure_ascii=False, allow_nan=False, indent=2)
    return text.translate(_JS_UNSAFE_TABLE)


def render_call(call: OnsiteCall) -> str:
    arguments = ", ".join(js_value(argument) for argument in call.arguments())
    return f"klaviyo.{call.method}({arguments});"


def render_js(snippet: Iterable[OnsiteCall]) -> str:
    """The snippet's calls as JavaScript statements, one per call, in order."""
    return "\n".join(render_call(call) for call in snippet) + "\n"


def render_script(snippet: Iterable[OnsiteCall]) -> str:
    """The snippet as an inline ``<script>`` element for a page template."""
    return f'<script type="text/javascript">\n{render_js(snippet)}</script>\n'
