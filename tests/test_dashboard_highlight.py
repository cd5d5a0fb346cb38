"""Highlighting of the applied files on the automation page (docs/dashboard.md): escaped
token spans, colours with WCAG AA contrast on the code background, a cache by content."""

from __future__ import annotations

import re
from importlib import resources

from runner.server.ui import highlight, routes

YAML = 'id: welcome\nemail:\n  subject: "Hi </pre><script>alert(1)</script>"  # note\n'
TEMPLATE = '<p class="x">Hi {{ subscriber.email }}</p>{% if a %}<script>x()</script>{% endif %}'


def contrast(first: str, second: str) -> float:
    """The WCAG contrast ratio of two `#rrggbb` / `#rgb` colours."""

    def luminance(colour: str) -> float:
        text = colour.lstrip("#")
        if len(text) == 3:
            text = "".join(c * 2 for c in text)
        channels = [int(text[i : i + 2], 16) / 255 for i in (0, 2, 4)]
        linear = [c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
        return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]

    high, low = sorted((luminance(first), luminance(second)), reverse=True)
    return (high + 0.05) / (low + 0.05)


def test_yaml_is_highlighted_and_escaped() -> None:
    shown = str(highlight.highlighted(YAML, "yaml"))
    assert '<span class="' in shown
    assert "<script>" not in shown and "</pre>" not in shown
    assert "&lt;/pre&gt;&lt;script&gt;alert(1)&lt;/script&gt;" in shown
    assert re.search(r'<span class="c1?">#\s*note</span>', shown), shown  # a comment token
    plain = re.sub(r"<[^>]+>", "", shown)
    assert (
        plain.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", '"')
        .replace("&#39;", "'")
        .replace("&amp;", "&")
        == YAML
    )


def test_templates_are_highlighted_as_jinja() -> None:
    assert highlight.language_of_template("html_file") == "html"
    assert highlight.language_of_template("text_file") == "text"
    html = str(highlight.highlighted(TEMPLATE, "html"))
    assert "<script" not in html and '<span class="nt">script</span>' in html
    assert '<span class="cp">{{</span>' in html  # a Jinja delimiter is its own token
    assert '<span class="p">&lt;</span><span class="nt">p</span>' in html  # an HTML tag
    text = str(highlight.highlighted("Hi {{ subscriber.email }}", "text"))
    assert '<span class="cp">{{</span>' in text


def test_every_token_colour_meets_wcag_aa_on_the_code_background() -> None:
    css = highlight.stylesheet()
    assert "background" not in css  # only colours: the <pre> keeps the page's own background
    colours = re.findall(r"color: (#[0-9A-Fa-f]{3,6})", css)
    assert len(colours) > 20
    weak = {c for c in colours if contrast(c, highlight.BACKGROUND) < 4.5}
    assert weak == set()
    ours = resources.files("runner.server.ui").joinpath("static/style.css").read_text()
    assert f"--band: {highlight.BACKGROUND};" in ours
    assert re.search(r"^pre \{ background: var\(--band\);", ours, re.MULTILINE)


def test_the_served_stylesheet_holds_the_token_colours() -> None:
    assert routes._CSS.startswith(b"/* Postwright dashboard")
    assert b".hl .s2 { color: #C41A16 }" in routes._CSS


def test_highlighting_is_cached_by_content() -> None:
    text = YAML + "# cached\n"
    first = highlight.highlighted(text, "yaml")
    assert highlight.highlighted(text, "yaml") is first
    assert highlight.highlighted(text, "text") is not first  # the language is in the key


def test_lines_past_the_budget_are_shown_plain() -> None:
    line = '<p class="x">{{ name }}</p>\n'
    count = highlight.HIGHLIGHTED_CHARS["html"] // len(line)
    text = "\n" + line * (count + 40)  # a leading blank line is kept
    shown = str(highlight.highlighted(text, "html"))
    head, _, tail = shown.rpartition("</span>")
    assert head.startswith("\n<span") and head.count('<span class="cp">{{</span>') == count
    assert tail.count("&lt;p class=&#34;x&#34;&gt;{{ name }}&lt;/p&gt;\n") == 40
    one_line = "<b>" + "x" * highlight.HIGHLIGHTED_CHARS["yaml"]
    assert highlight.highlighted(one_line, "yaml") == "&lt;b&gt;" + "x" * (len(one_line) - 3)
