"""Email addresses written in an automation file (`email.from`, `email.reply_to`); pure.

The address itself is checked by email-validator for syntax only: no DNS
lookup, and the `.test` names reserved for testing are accepted. A display
name before `<address>` is taken as mail programs take it: any text, except
the characters that would split or end it (docs/rules.md `invalid-address`).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from functools import lru_cache
from typing import Any

from runner.core import findings
from runner.core.findings import Finding
from runner.core.loader import Loaded

# Every key of an automation file that holds an email address.
ADDRESS_KEYS: tuple[tuple[str, str], ...] = (("email", "from"), ("email", "reply_to"))
# Outside quotes these end a display name or start another address.
_UNQUOTED_SPECIALS = frozenset(',;:<>"@')
# The everyday address, `news@shop.example`, in a form email-validator always accepts
# (tests/test_addresses.py checks that): such an address skips the library, whose import
# alone costs a clean `validate` of a thousand files about 3% of its time. No `--`
# (IDNA rules), letters only in the last label, and none of the special-use names.
_LABEL = r"[A-Za-z0-9](?:-?[A-Za-z0-9])*"
_EVERYDAY = re.compile(
    rf"[A-Za-z0-9_+-]{{1,64}}(?:\.[A-Za-z0-9_+-]+)*@(?:{_LABEL}\.)+[A-Za-z]{{2,63}}"
)
_SPECIAL_USE = frozenset({"arpa", "invalid", "local", "localhost", "onion"})


@lru_cache(maxsize=4096)  # a repository repeats its few senders in every file
def address_problem(value: str) -> str | None:
    """Why `value` is not `name@domain` or `Display Name <name@domain>`; None when it is."""
    text = value.strip()
    if any(ord(char) < 32 or ord(char) == 127 for char in text):
        return "an address holds no line breaks or control characters"
    address = text
    if "<" in text or ">" in text:
        if not text.endswith(">") or text.count("<") != 1 or text.count(">") != 1:
            return "write one address in angle brackets at the end: `Name <name@domain>`"
        opening = text.index("<")
        address = text[opening + 1 : -1].strip()
        problem = _display_name_problem(text[:opening].strip())
        if problem is not None:
            return problem
    if not address:
        return "the address is empty"
    if everyday(address):
        return None
    from email_validator import EmailNotValidError, validate_email  # see _EVERYDAY

    try:
        validate_email(address, check_deliverability=False, test_environment=True)
    except EmailNotValidError as error:
        return f"`{address}` is not an email address: {error}"
    return None


def everyday(address: str) -> bool:
    """Whether `address` is plainly valid without asking email-validator."""
    if len(address) > 254 or _EVERYDAY.fullmatch(address) is None:
        return False
    local, domain = address.split("@")
    labels = domain.split(".")
    return (
        len(local) <= 64
        and all(len(label) <= 63 for label in labels)
        and labels[-1].lower() not in _SPECIAL_USE
    )


def _display_name_problem(name: str) -> str | None:
    if len(name) >= 2 and name.startswith('"') and name.endswith('"'):
        inner = name[1:-1].replace("\\\\", "").replace('\\"', "")
        return None if '"' not in inner else 'escape `"` inside a quoted display name as `\\"`'
    found = sorted(set(name) & _UNQUOTED_SPECIALS)
    if found:
        shown = " ".join(f"`{char}`" for char in found)
        return f'the display name holds {shown}: put it in double quotes, `"{name}" <...>`'
    return None


def address_findings(loaded: Loaded[Any]) -> Iterator[Finding]:
    """`invalid-address` for each address key of an automation file that is not an address.

    Reads the file as written, so it also runs on a file that is invalid for
    other reasons; a value another finding already concerns is skipped.
    """
    data = loaded.document.data if loaded.document is not None else None
    model = loaded.model or loaded.partial
    ident = model.id if model is not None and loaded.readable("id") else None
    for section, key in ADDRESS_KEYS:
        parent = data.get(section) if isinstance(data, dict) else None
        value = parent.get(key) if isinstance(parent, dict) else None
        if not isinstance(value, str) or not loaded.readable(section, key):
            continue
        problem = address_problem(value)
        if problem is not None:
            line, col = loaded.position(section, key)
            message = f"`{section}.{key}`: {problem}"
            yield findings.make(
                "invalid-address", loaded.path, message, line, col, automation=ident
            )
