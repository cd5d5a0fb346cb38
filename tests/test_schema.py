"""The checked-in JSON Schema matches the models, and the example automations are clean."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from runner.cli.main import main
from runner.core.schema import schema_text

ROOT = Path(__file__).resolve().parent.parent
SCHEMA_PATH = ROOT / "schema" / "automation.schema.json"
EXAMPLES = sorted((ROOT / "automations").rglob("*.yaml"))
SCHEMA_COMMENT = "# yaml-language-server: $schema=../schema/automation.schema.json"
FINDING_LINE = re.compile(r"^\S+:\d+:\d+: (error|warning)\[")


def _schema() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    return loaded


def test_checked_in_schema_matches_the_models() -> None:
    assert SCHEMA_PATH.read_text(encoding="utf-8") == schema_text(), "run `make schema`"


def test_schema_is_valid_draft_2020_12() -> None:
    schema = _schema()
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    jsonschema.Draft202012Validator.check_schema(schema)


def test_schema_command_prints_the_checked_in_schema() -> None:
    out = io.StringIO()
    assert main(["schema"], out) == 0
    assert out.getvalue() == SCHEMA_PATH.read_text(encoding="utf-8")


def test_there_are_examples_for_every_trigger_type() -> None:
    types = {yaml.safe_load(p.read_text(encoding="utf-8"))["trigger"]["type"] for p in EXAMPLES}
    assert len(EXAMPLES) >= 6
    assert types == {"event", "api", "email", "date", "schedule"}


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_example_validates_against_the_json_schema(path: Path) -> None:
    # yaml.safe_load reads YAML 1.1 (unquoted 09:00 is a number, unquoted dates are
    # datetimes): the examples quote such values, so plain editors see what we see.
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    validator = jsonschema.Draft202012Validator(_schema())
    errors = [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(data)]
    assert errors == []


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_example_declares_the_schema_for_editors(path: Path) -> None:
    assert path.read_text(encoding="utf-8").splitlines()[0] == SCHEMA_COMMENT
    assert path.parent == ROOT / "automations"  # the relative $schema path assumes it


def test_validate_on_the_repository_is_clean() -> None:
    out = io.StringIO()
    code = main(["validate", "--repo", str(ROOT)], out)
    findings = [line for line in out.getvalue().splitlines() if FINDING_LINE.match(line)]
    assert findings == []
    assert code == 0


def test_vscode_maps_the_schema_to_the_automations() -> None:
    settings = json.loads((ROOT / ".vscode" / "settings.json").read_text(encoding="utf-8"))
    schemas: dict[str, list[str]] = settings["yaml.schemas"]
    assert schemas == {"./schema/automation.schema.json": ["automations/**/*.yaml"]}
    assert (ROOT / "schema" / "automation.schema.json").is_file()
