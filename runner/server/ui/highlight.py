"""Syntax highlighting of the applied files on the server (Pygments): the automation's YAML
and its Jinja templates as `<span class>` runs inside `<pre>`, coloured by the stylesheet
(no inline style, no script). Highlighted text is cached by the hash of its content, and a
long file is highlighted up to a line within a size budget, the rest shown plain, so the
first view of a big template stays within the page's time budget."""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from threading import Lock

from markupsafe import Markup, escape
from pygments import highlight as _pygmentize
from pygments.formatters import HtmlFormatter
from pygments.lexer import Lexer
from pygments.lexers import DjangoLexer, HtmlDjangoLexer, YamlLexer

# Xcode's light colours all reach 4.5:1 against the code background (WCAG AA for normal
# text); tests/test_dashboard_highlight.py checks every token colour the stylesheet holds.
STYLE = "xcode"
BACKGROUND = "#f3f5f7"  # the stylesheet's --band, behind every <pre>
CSS_SCOPE = ".hl"
# Characters highlighted per file, by language: about 30 ms of Pygments on the project's
# machine for HTML with Jinja (its lexer runs twice over the text), the others being faster
# (benchmarks/dashboard.py measures it). Lines past it are shown escaped but plain.
HIGHLIGHTED_CHARS = {"yaml": 64 * 1024, "html": 24 * 1024, "text": 64 * 1024}
CACHE_SIZE = 512

# stripnl=False: a file's leading blank lines are shown as they are.
_LEXERS: dict[str, Lexer] = {
    "yaml": YamlLexer(stripnl=False),
    "html": HtmlDjangoLexer(stripnl=False),  # HTML with Jinja tags
    "text": DjangoLexer(stripnl=False),  # plain text with Jinja tags
}
_FORMATTER = HtmlFormatter(style=STYLE, nowrap=True)
_cache: OrderedDict[bytes, Markup] = OrderedDict()
_lock = Lock()  # pages render on the event loop, but a cache shared by threads stays safe


def stylesheet() -> str:
    """The token colours, scoped to `<pre class="hl">`."""
    # Only the token rules: get_style_defs would also style every <pre> and a background.
    rules = _FORMATTER.get_token_style_defs(CSS_SCOPE)  # type: ignore[no-untyped-call]  # stubs
    return "\n".join(rules)


def language_of_template(key: str) -> str:
    """The language of an applied template by its key (`html_file` or `text_file`)."""
    return "html" if key.startswith("html") else "text"


def highlighted(text: str, language: str) -> Markup:
    """`text` as escaped HTML with token spans (past the language's budget, plain lines)."""
    key = hashlib.sha256(f"{language}\0{text}".encode()).digest()
    with _lock:
        found = _cache.get(key)
        if found is not None:
            _cache.move_to_end(key)
            return found
    limit = HIGHLIGHTED_CHARS[language]
    cut = len(text) if len(text) <= limit else text.rfind("\n", 0, limit) + 1
    # Pygments escapes the text it is given: its output is safe HTML of spans.
    made = Markup(_pygmentize(text[:cut], _LEXERS[language], _FORMATTER)) if cut else Markup()
    if cut < len(text):
        made += escape(text[cut:])
    with _lock:
        _cache[key] = made
        while len(_cache) > CACHE_SIZE:
            _cache.popitem(last=False)
    return made
