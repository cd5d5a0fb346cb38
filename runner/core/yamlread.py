"""Safe YAML reading with a position for every value (pure: bytes in, data out).

Built on the event stream of PyYAML's parser (the C one when present) rather
than its constructor, so that it can refuse what an automation file must not
contain before any cost is paid: anchors and aliases (alias bombs), custom
tags, duplicate keys, nesting deeper than 64, YAML 1.1 boolean words. Plain
scalars resolve by the YAML 1.2 core rules only, so `22:00` stays a string
and `no` is an error instead of False.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import yaml

from runner.core import findings
from runner.core.findings import Finding

MAX_BYTES = 1 << 20
MAX_DEPTH = 64

Path = tuple[str | int, ...]

# libyaml's parser when PyYAML was built with it: about ten times faster.
_Parser: Any = getattr(getattr(yaml, "cyaml", None), "CParser", None)
_NULLS = frozenset({"", "~", "null", "Null", "NULL"})
_TRUE = frozenset({"true", "True", "TRUE"})
_FALSE = frozenset({"false", "False", "FALSE"})
_YAML11_BOOLS = frozenset("yes Yes YES no No NO on On ON off Off OFF".split())
_INT = re.compile(r"^[-+]?(0|[1-9][0-9]*)$")
_FLOAT = re.compile(r"^[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?$")
_STR_TAG = "tag:yaml.org,2002:str"


class _Abort(Exception):
    """Stops reading: the rest of the file cannot be trusted."""


@dataclass
class Document:
    """Plain data read from YAML, with the 1-based position of every value and key."""

    data: Any = None
    values: dict[Path, tuple[int, int]] = field(default_factory=dict)
    keys: dict[Path, tuple[int, int]] = field(default_factory=dict)
    # Paths whose value or key is a YAML 1.1 boolean word: already reported, so later
    # checks neither report them again nor trust them.
    booleans: set[Path] = field(default_factory=set)

    def position(self, path: Path, *, key: bool = False) -> tuple[int, int]:
        """Where `path` is written; the nearest written ancestor when it is not."""
        for end in range(len(path), -1, -1):
            prefix = path[:end]
            if key and prefix in self.keys:
                return self.keys[prefix]
            if prefix in self.values:
                return self.values[prefix]
        return (1, 1)


def _resolve_plain(text: str) -> Any:
    if text in _NULLS:
        return None
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    if _INT.match(text):
        return int(text)
    if _FLOAT.match(text) and any(c in text for c in ".eE"):
        return float(text)
    return text


@dataclass
class _Frame:
    container: dict[str, Any] | list[Any]
    path: Path
    key: str | None = None


class _Reader:
    def __init__(self, path: str) -> None:
        self.path = path
        self.doc = Document()
        self.found: list[Finding] = []
        self.stack: list[_Frame] = []
        self.documents = 0
        self.boolean = False  # the scalar being added is a YAML 1.1 boolean word

    def problem(self, rule: str, message: str, mark: Any) -> None:
        self.found.append(findings.make(rule, self.path, message, mark.line + 1, mark.column + 1))

    def run(self, text: str) -> None:
        parser: Any = _Parser(text) if _Parser is not None else yaml.SafeLoader(text)
        # Dispatch on the exact event class: this loop runs for every node of every file.
        handlers: dict[type, Any] = {
            yaml.ScalarEvent: self.on_scalar,
            yaml.MappingStartEvent: self.on_collection,
            yaml.SequenceStartEvent: self.on_collection,
            yaml.MappingEndEvent: self.on_end,
            yaml.SequenceEndEvent: self.on_end,
            yaml.AliasEvent: self.on_alias,
            yaml.DocumentStartEvent: self.on_document,
        }
        while True:
            event = parser.get_event()
            if event is None or type(event) is yaml.StreamEndEvent:
                return
            handler = handlers.get(type(event))
            if handler is not None:
                handler(event)

    def on_document(self, event: Any) -> None:
        self.documents += 1
        if self.documents > 1:
            self.problem(
                "yaml-multiple-documents", "a second YAML document starts here", event.start_mark
            )
            raise _Abort

    def on_alias(self, event: Any) -> None:
        self.problem("yaml-anchor", f"alias `*{event.anchor}` is not allowed", event.start_mark)
        raise _Abort

    def on_scalar(self, event: Any) -> None:
        if event.anchor is not None or event.tag is not None:
            self.check_node(event)
        self.add(self.scalar_value(event), event)

    def on_collection(self, event: Any) -> None:
        self.check_node(event)
        if len(self.stack) >= MAX_DEPTH:
            self.problem(
                "yaml-too-deep", f"nesting deeper than {MAX_DEPTH} levels", event.start_mark
            )
            raise _Abort
        container: dict[str, Any] | list[Any] = {} if type(event) is yaml.MappingStartEvent else []
        path = self.add(container, event)
        self.stack.append(_Frame(container, path))

    def on_end(self, event: Any) -> None:
        self.stack.pop()

    def check_node(self, event: Any) -> None:
        if event.anchor is not None:
            self.problem(
                "yaml-anchor", f"anchor `&{event.anchor}` is not allowed", event.start_mark
            )
            raise _Abort
        scalar = isinstance(event, yaml.ScalarEvent)
        if event.tag is not None and not (scalar and event.tag == _STR_TAG):
            self.problem("yaml-tag", f"tag `{event.tag}` is not allowed", event.start_mark)
            raise _Abort

    def scalar_value(self, event: Any) -> Any:
        if event.style or event.tag == _STR_TAG:  # plain scalars have style None or ""
            return event.value
        if event.value in _YAML11_BOOLS:
            self.problem(
                "yaml-boolean",
                f"`{event.value}` is a boolean in YAML 1.1 and a string in YAML 1.2; "
                f'write "{event.value}" or true/false',
                event.start_mark,
            )
            self.boolean = True
            return event.value
        return _resolve_plain(event.value)

    def add(self, value: Any, event: Any) -> Path:
        mark = event.start_mark
        position = (mark.line + 1, mark.column + 1)
        if not self.stack:
            self.doc.data = value
            self.doc.values[()] = position
            self.note_boolean(())
            return ()
        frame = self.stack[-1]
        if isinstance(frame.container, list):
            path = (*frame.path, len(frame.container))
            frame.container.append(value)
            self.doc.values[path] = position
            self.note_boolean(path)
            return path
        if frame.key is None:
            if type(event) is not yaml.ScalarEvent:
                self.problem("schema", "mapping keys must be plain strings", mark)
                raise _Abort
            key = event.value
            if key in frame.container:
                first = self.doc.keys[(*frame.path, key)]
                self.problem(
                    "yaml-duplicate-key",
                    f"key `{key}` is repeated (first written at line {first[0]})",
                    mark,
                )
                raise _Abort
            frame.key = key
            self.doc.keys[(*frame.path, key)] = position
            self.note_boolean((*frame.path, key))
            return frame.path
        path = (*frame.path, frame.key)
        frame.container[frame.key] = value
        frame.key = None
        self.doc.values[path] = position
        self.note_boolean(path)
        return path

    def note_boolean(self, path: Path) -> None:
        if self.boolean:
            self.boolean = False
            self.doc.booleans.add(path)


def read_yaml(path: str, content: bytes) -> tuple[Document | None, list[Finding]]:
    """Parse `content` (the file at `path`) into a Document, or say why not.

    Never raises on bad input: every problem is a finding with a position.
    """
    if len(content) > MAX_BYTES:
        return None, [
            findings.make(
                "file-too-large",
                path,
                f"the file has {len(content):,} bytes; at most {MAX_BYTES:,} are read",
            )
        ]
    try:
        text = content.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        return None, [findings.make("file-encoding", path, f"byte {error.start} is not UTF-8")]
    reader = _Reader(path)
    try:
        reader.run(text)
    except _Abort:
        return None, reader.found
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark is not None else (1, 1)
        if "maximum nesting depth" in (error.problem or ""):
            # libyaml looks ahead over runs of `[`/`{` and stops at its own limit (1,000)
            # before the reader sees level 65.
            message = f"nesting deeper than {MAX_DEPTH} levels"
            reader.found.append(findings.make("yaml-too-deep", path, message, line, col))
            return None, reader.found
        message = " ".join(part for part in (error.context, error.problem) if part)
        reader.found.append(findings.make("yaml-syntax", path, message or str(error), line, col))
        return None, reader.found
    except yaml.YAMLError as error:
        reader.found.append(findings.make("yaml-syntax", path, str(error)))
        return None, reader.found
    return reader.doc, reader.found
