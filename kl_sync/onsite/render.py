"""Render snippets as JavaScript on Klaviyo's ``klaviyo`` object.

Values are serialised with :func:`json.dumps` and then made safe for an inline ``<script>``: ``<``,
``>`` and ``&`` become ``\\u003c`` / ``\\u003e`` / ``\\u0026`` (so a customer named ``</script>``
cannot close the tag or open a comment), and U+2028 / U+2029, which JSON allows in strings but
older JavaScript engines treat as line ends, are escaped too. Each escape is only possible inside a
JSON string, where JavaScript reads it back as the same character.

The page's layout must already load klaviyo.js with Klaviyo's own loader snippet, which defines the
``klaviyo`` object before the script arrives; these snippets only call it. :func:`render_loader` is
that loader: the script tag Klaviyo's docs give, and a stub that behaves as the documented one
(``klaviyo`` answers every method by queueing ``[method, ...args, callback]`` in ``_klOnsite`` and
returning a Promise the script later settles; ``klaviyo.push([...])`` queues as it is). A store may
paste Klaviyo's own copy of the stub from its docs instead; the snippets work with either.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from html import escape
from typing import Any
from urllib.parse import quote

from kl_sync.onsite.snippets import OnsiteCall

#: Where Klaviyo serves klaviyo.js (protocol-relative, as in Klaviyo's docs).
KLAVIYO_ONSITE_ORIGIN = "//static.klaviyo.com"

# The documented stub, written out readably. It must run before any snippet calls klaviyo.
_LOADER_STUB = """<script type="text/javascript">
(function () {
  if (window.klaviyo) return;
  window._klOnsite = window._klOnsite || [];
  window.klaviyo = new Proxy({}, {
    get: function (target, method) {
      if (method === "push") {
        return function () { window._klOnsite.push.apply(window._klOnsite, arguments); };
      }
      return function () {
        var args = Array.prototype.slice.call(arguments);
        var callback = typeof args[args.length - 1] === "function" ? args.pop() : undefined;
        return new Promise(function (resolve) {
          window._klOnsite.push([method].concat(args, [function (result) {
            if (callback) callback(result);
            resolve(result);
          }]));
        });
      };
    }
  });
})();
</script>
"""

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


def loader_url(public_key: str, origin: str = KLAVIYO_ONSITE_ORIGIN) -> str:
    """klaviyo.js for an account: ``<origin>/onsite/js/<public key>/klaviyo.js`` (the docs' form)."""
    return f"{origin.rstrip('/')}/onsite/js/{quote(public_key, safe='')}/klaviyo.js"


def render_loader(public_key: str, origin: str = KLAVIYO_ONSITE_ORIGIN) -> str:
    """The layout's ``<head>`` part: klaviyo.js, loaded async, and the stub that queues calls until it
    runs. ``origin`` is Klaviyo's, or a Klaviyo emulator's (``http://127.0.0.1:8765``)."""
    tag = f'<script async type="text/javascript" src="{escape(loader_url(public_key, origin))}"></script>\n'
    return tag + loader_stub()


def loader_stub() -> str:
    """The stub alone, as an inline ``<script>`` element."""
    return _LOADER_STUB
