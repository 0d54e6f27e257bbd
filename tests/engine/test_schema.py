"""The committed JSON Schema matches the models, and the pipelines we ship conform to it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from engine import schema
from engine.loader import parse_text
from engine.spec import BUILTIN_TYPES, json_schema

ROOT = Path(__file__).resolve().parents[2]


def test_the_committed_json_schema_is_current() -> None:
    assert schema.SCHEMA_PATH == ROOT / "engine" / "pipeline.schema.json"
    committed = schema.SCHEMA_PATH.read_text(encoding="utf-8")
    assert committed == schema.render(), "run `python -m engine.schema` and commit the result"
    assert schema.main(["--check"]) == 0


def test_the_schema_file_is_pretty_sorted_and_ends_with_a_newline() -> None:
    text = schema.render()
    assert text.endswith("}\n")
    assert json.loads(text) == json_schema()
    assert text == json.dumps(json.loads(text), indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def test_check_mode_flags_a_stale_or_missing_file(tmp_path: Path) -> None:
    stale = tmp_path / "pipeline.schema.json"
    stale.write_text("{}\n")
    assert schema.main(["--check", "--path", str(stale)]) == 1
    assert stale.read_text() == "{}\n", "--check never writes"
    assert schema.main(["--check", "--path", str(tmp_path / "missing.json")]) == 1


def test_write_mode_regenerates_the_file(tmp_path: Path) -> None:
    target = tmp_path / "pipeline.schema.json"
    assert schema.main(["--path", str(target)]) == 0
    assert target.read_text(encoding="utf-8") == schema.render()
    assert schema.main(["--check", "--path", str(target)]) == 0


def test_the_module_runs_as_a_command() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "engine.schema", "--check"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr


def test_the_schema_describes_every_node_type() -> None:
    document = json_schema()
    assert document["title"] == "Interlock pipeline"
    assert document["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert set(document["required"]) == {"id", "nodes"}
    branches = document["properties"]["nodes"]["items"]["oneOf"]
    names = {ref["$ref"].rsplit("/", 1)[1] for ref in branches}
    for node_type in BUILTIN_TYPES:
        assert f"{node_type.capitalize()}Node" in names
    plugin_type = document["$defs"]["PluginNode"]["properties"]["type"]
    assert set(plugin_type["not"]["enum"]) == set(BUILTIN_TYPES)


BUNDLED = sorted((ROOT / "pipelines").glob("*.yaml"))


@pytest.mark.parametrize("path", BUNDLED, ids=[p.name for p in BUNDLED])
def test_bundled_pipelines_conform_to_the_committed_schema(path: Path) -> None:
    jsonschema = pytest.importorskip("jsonschema")
    document = json.loads(schema.SCHEMA_PATH.read_text(encoding="utf-8"))
    data = parse_text(path.read_text(encoding="utf-8"), file=str(path))
    validator = jsonschema.Draft202012Validator(document)
    assert [error.message for error in validator.iter_errors(data)] == []
