"""What one template text contains, independent of the automation using it: syntax and
loading problems, unknown names, the event fields it reads, and placeholder links; pure.

Templates are only parsed here (`env.parse`), never compiled: the runner compiles them
at load. Analysis runs on the parse tree, which is cached by text so a body shared by many
files, or unchanged across a history, is analysed once.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

from jinja2 import TemplateSyntaxError, meta, nodes

from runner.templating.sandbox import checking_environment, environment

KNOWN_NAMES = frozenset({"subscriber", "event", "automation", "unsubscribe_url"})
_KNOWN_LIST = "subscriber, event, automation, unsubscribe_url"
PLACEHOLDER_DOMAINS = ("example.com", "example.org", "example.net")
_LOADING_TAGS: dict[type[nodes.Node], str] = {
    nodes.Include: "include",
    nodes.Extends: "extends",
    nodes.Import: "import",
    nodes.FromImport: "import",
}
_DICT_METHODS = frozenset({"get", "items", "keys", "values"})
_MARKERS = ("{{", "{%", "{#")
_HREF = re.compile(r"""\bhref\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s"'>]+))""", re.IGNORECASE)
_WHOLE_EXPRESSION = re.compile(r"^\{\{.*\}\}$", re.DOTALL)
_SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*://")


# Parsing does not depend on autoescape, so one environment parses every body.
_PARSER = environment(html=False)
_GLOBALS = frozenset(_PARSER.globals)
_COMPILER = checking_environment()


@dataclass(frozen=True)
class Problem:
    """One problem inside a template text, at a 1-based line and column of that text."""

    rule: str
    line: int
    col: int
    message: str


@dataclass(frozen=True)
class Analysis:
    """What a template text contains, independent of the automation using it."""

    problems: tuple[Problem, ...]  # syntax, loading and unknown-name problems
    event_reads: tuple[tuple[str, int], ...]  # ("data.<key>" or "occurred_at", line)


# --- analysis of one text (cached) ------------------------------------------------


@lru_cache(maxsize=8192)
def analyse(text: str) -> Analysis:
    """Parse `text` and collect its syntax, loading, name and `event` reads."""
    if not any(marker in text for marker in _MARKERS):
        return Analysis((), ())
    simple = _analyse_simple(text)
    return simple if simple is not None else _analyse_parsed(text)


def _analyse_parsed(text: str) -> Analysis:
    try:
        tree = _PARSER.parse(text)
        walk = _Walk()
        walk.visit(tree, None)
        problems = walk.problems
        problems.extend(_unknown_names(tree, walk.names))
        # Compiling finds what parses but can never render: Python's limits on nested
        # blocks (20 loops) and indentation. It evaluates nothing of the template.
        _COMPILER.compile(tree)
    except TemplateSyntaxError as error:
        return Analysis(
            (Problem("template-syntax", error.lineno or 1, 1, error.message or ""),), ()
        )
    except (RecursionError, SyntaxError, MemoryError) as error:
        detail = error.msg if isinstance(error, SyntaxError) else "nesting too deep"
        message = f"the template nests too deeply to render ({detail})"
        return Analysis((Problem("template-too-complex", 1, 1, message),), ())
    problems.sort(key=lambda p: (p.line, p.col))
    return Analysis(tuple(problems), tuple(walk.event_reads))


# Most templates use a small part of Jinja: outputs of dotted names, perhaps with a
# `default(...)`, and `if`/`elif`/`else` on such names. Reading that part with regular
# expressions is ~20x cheaper than Jinja's parser; anything else goes to the parser.
_LITERAL = r"""(?:'[^'\\{}%]*'|"[^"\\{}%]*"|-?\d+(?:\.\d+)?|true|false|none|True|False|None)"""
_SIMPLE_EXPRESSION = re.compile(
    r"\s*(?:not\s+)?([A-Za-z_]\w*)((?:\.[A-Za-z_]\w*)*)\s*"
    rf"(\|\s*(?:default|d)\s*\(\s*{_LITERAL}\s*\))?"
    rf"(?:\s*(?:==|!=)\s*{_LITERAL})?\s*"
)
_SIMPLE_DEPTH = 8
_TAG = re.compile(r"\{\{-?(.*?)-?\}\}|\{%-?\s*(if|elif|else|endif)\b(.*?)-?%\}", re.DOTALL)


def _analyse_simple(text: str) -> Analysis | None:
    """The analysis of a text written in the simple part of Jinja (see _TAG).

    None when the text holds anything else (other statements, comments, other
    expressions, unknown names, unbalanced blocks): the parser decides those.
    """
    if "{#" in text:
        return None
    reads: list[tuple[str, int]] = []
    rest: list[str] = []
    position = 0
    depth = 0
    for match in _TAG.finditer(text):
        output, keyword, condition = match.groups()
        rest.append(text[position : match.start()])
        position = match.end()
        if keyword in ("else", "endif"):
            if condition.strip() or depth == 0:
                return None
            depth -= keyword == "endif"
            continue
        if keyword == "if":
            depth += 1
            if depth > _SIMPLE_DEPTH:
                return None  # the parser and compiler judge deep nesting
        elif keyword == "elif" and depth == 0:
            return None
        expression = _SIMPLE_EXPRESSION.fullmatch(output if keyword is None else condition)
        if expression is None or expression.group(1) not in KNOWN_NAMES:
            return None
        read = _simple_event_read(*expression.groups())
        if read is not None:
            reads.append((read, text.count("\n", 0, match.start()) + 1))
    rest.append(text[position:])
    if depth or any("{{" in piece or "{%" in piece for piece in rest):
        return None  # another kind of tag, or a syntax error: let the parser say
    return Analysis((), tuple(reads))


def _simple_event_read(name: str, attributes: str, guard: str | None) -> str | None:
    parts = attributes.split(".")[1:]
    if name != "event" or guard or not parts:
        return None
    if parts[0] == "occurred_at":
        return "occurred_at"
    if parts[0] == "data" and len(parts) > 1 and parts[1] not in _DICT_METHODS:
        return f"data.{parts[1]}"
    return None


class _Walk:
    """One pass over the parse tree collecting names read, loading tags and `event` reads."""

    def __init__(self) -> None:
        self.names: set[str] = set()
        self.problems: list[Problem] = []
        self.event_reads: list[tuple[str, int]] = []

    def visit(self, node: nodes.Node, parent: nodes.Node | None) -> None:
        if isinstance(node, nodes.Name):
            if node.ctx == "load":
                self.names.add(node.name)
        elif type(node) in _LOADING_TAGS:
            message = (
                f"`{{% {_LOADING_TAGS[type(node)]} %}}`: templates cannot load other templates"
            )
            self.problems.append(Problem("template-syntax", node.lineno, 1, message))
        elif isinstance(node, nodes.Getattr | nodes.Getitem | nodes.Call):
            read = _event_read(node)
            guarded = isinstance(parent, nodes.Filter) and parent.name in ("default", "d")
            if read is not None and not guarded:
                self.event_reads.append((read, node.lineno))
        for child in node.iter_child_nodes():
            self.visit(child, node)


def _unknown_names(tree: nodes.Template, used: set[str]) -> list[Problem]:
    if used <= KNOWN_NAMES | _GLOBALS:
        return []  # the common case, without the cost of jinja's scope tracking
    unknown = meta.find_undeclared_variables(tree) - KNOWN_NAMES - _GLOBALS
    return [
        Problem(
            "template-unknown-name",
            _first_undeclared_line(tree, name),
            1,
            f"`{name}` is not defined; templates see {_KNOWN_LIST}",
        )
        for name in sorted(unknown)
    ]


def _first_undeclared_line(tree: nodes.Template, name: str) -> int:
    """The line of the top-level statement where `name` is first read undeclared.

    A name may be declared in one place (a loop) and read undeclared in another, so
    the first read is not enough. Being undeclared in a prefix of the body stays
    true in every longer prefix: a binary search finds the statement.
    """
    body = tree.body
    low, high = 0, len(body) - 1
    while low < high:
        middle = (low + high) // 2
        prefix = nodes.Template(body[: middle + 1], lineno=1, environment=tree.environment)
        if name in meta.find_undeclared_variables(prefix):
            high = middle
        else:
            low = middle + 1
    statement = body[low]
    reads = (n.lineno for n in statement.find_all(nodes.Name) if n.name == name)
    return next(reads, statement.lineno)


def _step(node: nodes.Node) -> tuple[nodes.Node, str] | None:
    """`x.key` or `x['key']` as (x, key)."""
    if isinstance(node, nodes.Getattr):
        return node.node, node.attr
    if (
        isinstance(node, nodes.Getitem)
        and isinstance(node.arg, nodes.Const)
        and isinstance(node.arg.value, str)
    ):
        return node.node, node.arg.value
    return None


def _is_event(node: nodes.Node) -> bool:
    return isinstance(node, nodes.Name) and node.name == "event"


def _event_read(node: nodes.Node) -> str | None:
    """`occurred_at` for `event.occurred_at`, `data.k` for `event.data.k` or `.get('k')`."""
    if isinstance(node, nodes.Call) and node.args and isinstance(node.args[0], nodes.Const):
        step = _step(node.node)
        if step is not None and step[1] == "get" and _is_data(step[0]):
            return f"data.{node.args[0].value}"
        return None
    step = _step(node)
    if step is None:
        return None
    base, key = step
    if _is_event(base) and key == "occurred_at":
        return key
    if _is_data(base) and key not in _DICT_METHODS:
        return f"data.{key}"
    return None


def _is_data(node: nodes.Node) -> bool:
    step = _step(node)
    return step is not None and _is_event(step[0]) and step[1] == "data"


@lru_cache(maxsize=8192)
def link_problems(html: str) -> tuple[Problem, ...]:
    """Links without a target and links to placeholder hosts in an HTML body."""
    found: list[Problem] = []
    for match in _HREF.finditer(html):
        value = next(group for group in match.groups() if group is not None).strip()
        if _WHOLE_EXPRESSION.match(value):
            continue
        start = match.start()
        line = html.count("\n", 0, start) + 1
        col = start - (html.rfind("\n", 0, start) + 1) + 1
        if value in ("", "#"):
            found.append(Problem("link-empty", line, col, f'`href="{value}"` has no target'))
        elif _placeholder(value):
            found.append(Problem("link-placeholder", line, col, f"`{value}` is a placeholder link"))
    return tuple(found)


def _placeholder(url: str) -> bool:
    scheme = _SCHEME.match(url)
    if scheme is None:
        return False
    host = re.split(r"[/?#]", url[scheme.end() :], maxsplit=1)[0].rsplit("@", 1)[-1]
    host = host.split(":", 1)[0].lower().rstrip(".")
    if "{{" in host or "{%" in host:
        return False  # the host is computed when rendering
    return not host or any(host == d or host.endswith("." + d) for d in PLACEHOLDER_DOMAINS)
