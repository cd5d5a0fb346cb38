"""The sandboxed Jinja2 environment templates run in, and its cheap first-line guards; pure.

Templates are written for `environment()` (StrictUndefined; autoescape for HTML). Rendering
adds guards that refuse, before any work, what would build a value larger than the output
cap in one step: a `range` over 100,000 items, `*` and `**` on huge operands, padding to a
huge width (`center`, `ljust`, `indent`, `format`, `%` and `str.format` widths). They make
the common mistakes fail fast with a clear message; the hard CPU and memory limits of a
render are the render worker's (runner.templating.renderworker), which no template can get around.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from functools import lru_cache
from typing import Any

from jinja2 import StrictUndefined, Template, pass_context
from jinja2.filters import do_center, do_format, do_indent
from jinja2.runtime import Context
from jinja2.sandbox import MAX_RANGE, SandboxedEnvironment

from runner.errors import PostwrightError

MAX_OUTPUT = 1024 * 1024  # characters of one rendered part
_PADDING_METHODS = frozenset({"center", "ljust", "rjust", "zfill", "expandtabs"})
# The width and precision of a %-conversion, and the spec of a {}-field.
_PERCENT_SPEC = re.compile(r"%(?:\([^)]*\))?[#0\- +]*(\*|\d+)?(?:\.(\*|\d+))?")
_BRACE_SPEC = re.compile(r"\{[^{}]*?:((?:[^{}]|\{[^{}]*\})*)\}")
_DIGITS = re.compile(r"\d+")


class RenderError(PostwrightError):
    """A template could not be rendered for one send (the send fails with this message)."""


class KeyedSandbox(SandboxedEnvironment):
    """The sandbox with data first: on a mapping (`event.data`, `subscriber.fields`),
    `x["items"]` is the key and only the key, and `x.items` is the key when there is one
    (docs/file-format.md "Templates").

    Jinja falls back to attributes, so a missing `event.data["items"]` was the dict's
    `items` method: `| default([])` kept it, and the loop failed on a method.
    """

    def getitem(self, obj: Any, argument: Any) -> Any:
        """Subscript: on a mapping, the key or undefined (never a method)."""
        if isinstance(obj, Mapping):
            try:
                return obj[argument]
            except (TypeError, LookupError):
                return self.undefined(obj=obj, name=argument)
        return super().getitem(obj, argument)

    def getattr(self, obj: Any, attribute: str) -> Any:
        """Dotted name: on a mapping holding that key, the key; else as Jinja does."""
        if isinstance(obj, Mapping):
            try:
                return obj[attribute]
            except (TypeError, LookupError):
                pass
        return super().getattr(obj, attribute)


def environment(*, html: bool) -> SandboxedEnvironment:
    """The sandboxed environment templates are written for (the checker parses with it)."""
    return KeyedSandbox(autoescape=html, undefined=StrictUndefined)


def checking_environment() -> SandboxedEnvironment:
    """The environment `validate` compiles with to find what can never render: it compiles
    without running any part of the template.

    Jinja evaluates constant expressions while compiling (its optimizer, and the constant
    outputs of a template), outside the caps of a render: `{{ "x"|center(400000000) }}`
    would build a 400 MB string in the checking process, which is the server on a reload.
    Without the optimizer, and with a finalizer that needs the render's context, every
    expression is left to run time, where the render worker's caps apply.
    """
    return KeyedSandbox(undefined=StrictUndefined, optimized=False, finalize=_finalized_at_render)


@pass_context
def _finalized_at_render(context: Context, value: Any) -> Any:
    """A finalizer that asks for the render's context, so no output is computed earlier."""
    return value


class _GuardedEnvironment(KeyedSandbox):
    """The rendering environment: the sandbox plus the size guards of this module."""

    # Intercepted operators compile to `environment.call_binop(...)`.
    intercepted_binops = frozenset({"*", "**", "%"})

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        """`*`, `**` and `%` refuse results that would break the output cap."""
        if operator == "*":
            for sequence, count in ((left, right), (right, left)):
                if (
                    isinstance(sequence, str | list | tuple)
                    and isinstance(count, int)
                    and len(sequence) * count > MAX_OUTPUT
                ):
                    raise RenderError(f"a repeated value would be larger than {MAX_OUTPUT} items")
        elif operator == "**" and isinstance(right, int) and abs(right) > 1024:
            raise RenderError("an exponent larger than 1024 is not allowed")
        elif operator == "%" and isinstance(left, str):
            _check_percent_widths(left, right if isinstance(right, tuple) else (right,))
        return super().call_binop(context, operator, left, right)

    def call(__self, __context: Context, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        """Method calls: `str.center(n)` and its kin refuse a width over the cap."""
        if getattr(__obj, "__name__", None) in _PADDING_METHODS and isinstance(
            getattr(__obj, "__self__", None), str
        ):
            _check_width([*args, *kwargs.values()])
        return super().call(__context, __obj, *args, **kwargs)

    def wrap_str_format(self, value: Any) -> Callable[..., str] | None:
        """`str.format` refuses field widths over the cap."""
        wrapped = super().wrap_str_format(value)
        if wrapped is None:
            return None
        template: str = value.__self__

        def checked(*args: Any, **kwargs: Any) -> str:
            _check_brace_widths(template, [*args, *kwargs.values()])
            return wrapped(*args, **kwargs)

        return checked


def _check_width(values: Iterable[Any]) -> None:
    for value in values:
        if isinstance(value, int) and value > MAX_OUTPUT:
            raise RenderError(f"a width of {value} is larger than the output cap ({MAX_OUTPUT})")


def _check_percent_widths(template: str, args: Iterable[Any]) -> None:
    for match in _PERCENT_SPEC.finditer(template):
        if "*" in match.groups():
            _check_width(args)  # the width comes from an argument
        _check_width(int(group) for group in match.groups() if group and group.isdigit())


def _check_brace_widths(template: str, args: Iterable[Any]) -> None:
    for match in _BRACE_SPEC.finditer(template):
        spec = match.group(1)
        if "{" in spec:
            _check_width(args)  # a nested field: the width comes from an argument
        _check_width(int(digits) for digits in _DIGITS.findall(spec))


def _capped_range(*args: int) -> range:
    """The sandbox's `range`: at most MAX_RANGE items."""
    numbers = range(*args)
    if len(numbers) > MAX_RANGE:
        raise OverflowError(f"range too big, at most {MAX_RANGE} items are allowed")
    return numbers


def _center(value: str, width: int = 80) -> str:
    _check_width([width])
    return do_center(value, width)


def _indent(value: str, width: int | str = 4, first: bool = False, blank: bool = False) -> str:
    if isinstance(width, int):
        _check_width([width * (value.count("\n") + 1)])
    return do_indent(value, width, first, blank)


def _format(value: str, *args: Any, **kwargs: Any) -> str:
    _check_percent_widths(str(value), [*args, *kwargs.values()])
    return do_format(value, *args, **kwargs)


def _rendering_environment(*, html: bool) -> SandboxedEnvironment:
    env = _GuardedEnvironment(autoescape=html, undefined=StrictUndefined)
    env.globals["range"] = _capped_range
    env.filters.update({"center": _center, "indent": _indent, "format": _format})
    return env


_ENVIRONMENTS = {True: _rendering_environment(html=True), False: _rendering_environment(html=False)}


@lru_cache(maxsize=1024)
def compiled(text: str, html: bool) -> Template:
    """A compiled template, cached by text (a body shared by many sends compiles once)."""
    return _ENVIRONMENTS[html].from_string(text)


def render_text(part: str, text: str, values: dict[str, Any], *, html: bool) -> str:
    """Render one part within the output cap; every failure is a RenderError naming `part`."""
    try:
        size = 0
        chunks: list[str] = []
        for chunk in compiled(text, html).generate(values):
            size += len(chunk)
            if size > MAX_OUTPUT:
                raise RenderError(f"{part}: output is larger than {MAX_OUTPUT} characters")
            chunks.append(chunk)
    except RenderError as error:
        if str(error).startswith(f"{part}:"):
            raise
        raise RenderError(f"{part}: {error}") from None
    except MemoryError:
        raise RenderError(f"{part}: rendering needs more memory than a render may use") from None
    except Exception as error:  # a template is user code: any error fails this send only
        raise RenderError(f"{part}: {type(error).__name__}: {error}") from None
    return "".join(chunks)
