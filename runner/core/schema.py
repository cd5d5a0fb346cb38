"""The JSON Schema of automation files, generated from the pydantic models."""

from __future__ import annotations

import json
from typing import Any

from runner.core.model import Automation

SCHEMA_ID = "https://postwright.dev/schema/automation.schema.json"


def automation_schema() -> dict[str, Any]:
    """JSON Schema 2020-12 for one automation file."""
    generated = Automation.model_json_schema(by_alias=True, mode="validation")
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": SCHEMA_ID,
        "title": "Postwright automation",
        **{key: value for key, value in generated.items() if key != "title"},
    }


def schema_text() -> str:
    """The schema as checked in under schema/ (stable key order, trailing newline)."""
    return json.dumps(automation_schema(), indent=2, ensure_ascii=False) + "\n"
