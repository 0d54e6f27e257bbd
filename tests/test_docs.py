"""The documentation a user of the repository gets: links that resolve inside it, a pipeline
format reference naming every field the loader accepts, one test command for README and CI."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from pydantic import BaseModel

from engine import spec
from engine.loader import load_file

ROOT = Path(__file__).resolve().parents[1]
LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")


@pytest.mark.parametrize("doc", ["README.md", "docs/pipeline-format.md"])
def test_every_relative_link_of_the_docs_names_a_file_inside_the_repository(doc: str) -> None:
    path = ROOT / doc
    for target in LINK.findall(path.read_text()):
        if re.match(r"^[a-z]+:", target):
            continue  # http(s), mailto: outside on purpose
        resolved = (path.parent / target).resolve()
        assert resolved.is_relative_to(ROOT), f"{doc} links outside the repository: {target}"
        assert resolved.exists(), f"{doc} links to a missing file: {target}"


def _fields(model: type[BaseModel]) -> set[str]:
    return {info.alias or name for name, info in model.model_fields.items()}


def test_the_format_reference_names_every_field_the_loader_accepts() -> None:
    text = (ROOT / "docs" / "pipeline-format.md").read_text()
    models = [
        value for value in vars(spec).values()
        if isinstance(value, type) and issubclass(value, BaseModel) and value is not BaseModel
    ]
    missing = sorted(
        f"{model.__name__}.{field}"
        for model in models
        for field in _fields(model)
        if f"`{field}`" not in text and f"{field}:" not in text
    )
    assert not missing, f"docs/pipeline-format.md does not mention: {missing}"


def _section(text: str, heading: str) -> str:
    """The text under `heading` up to the next heading of the same or a higher level."""
    level = heading.split(" ", 1)[0]
    start = text.index(f"\n{heading}\n")
    rest = text[start + len(heading) + 2:]
    ends = [m.start() for m in re.finditer(rf"^#{{1,{len(level)}}} ", rest, re.M)]
    return rest[: ends[0]] if ends else rest


@pytest.mark.parametrize(("model", "heading"), [(spec.Notify, "### `notify`")])
def test_a_nested_block_has_its_own_section_naming_each_of_its_fields(
    model: type[BaseModel], heading: str
) -> None:
    """`notify:` fields also exist elsewhere (`timeout`, `command`): the check above passed
    while the reference did not describe `notify` at all."""
    text = (ROOT / "docs" / "pipeline-format.md").read_text()
    assert f"\n{heading}\n" in text, f"docs/pipeline-format.md has no {heading} section"
    section = _section(text, heading)
    missing = sorted(field for field in _fields(model) if f"| `{field}` |" not in section)
    assert not missing, f"the {heading} section has no row for: {missing}"


def test_ci_runs_the_test_command_the_readme_prints() -> None:
    readme = (ROOT / "README.md").read_text()
    command = re.search(r"&& (python -m pytest[^#\n]*?)\s+#", readme)
    assert command is not None
    assert command[1].strip() in (ROOT / ".ci" / "run").read_text()
    assert "-n " in command[1]  # pytest-xdist


def test_the_bundled_release_pipeline_stages_its_files_inside_the_project() -> None:
    pipeline = load_file(ROOT / "pipelines" / "release.yaml")
    workdir = pipeline.params["workdir"].default
    assert not Path(workdir).is_absolute()
    assert "tmp" not in Path(workdir).parts
