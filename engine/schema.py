"""The committed JSON Schema of the pipeline format, generated from `engine.spec`.

Contract: `python -m engine.schema` writes `engine/pipeline.schema.json` (indented, keys sorted,
a trailing newline) from `engine.spec.json_schema()`; `python -m engine.schema --check` writes
nothing and exits 1 if the committed file differs from what the models generate (a test runs
the same check). Editors can point at the file to complete and check pipeline YAML.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from engine.spec import json_schema

__all__ = ["SCHEMA_PATH", "main", "render"]

SCHEMA_PATH = Path(__file__).with_name("pipeline.schema.json")


def render() -> str:
    """The schema file's exact text."""
    return json.dumps(json_schema(), indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m engine.schema", description="Write or check engine/pipeline.schema.json."
    )
    parser.add_argument(
        "--check", action="store_true", help="exit 1 if the committed schema is stale"
    )
    parser.add_argument("--path", type=Path, default=SCHEMA_PATH, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    path: Path = args.path
    text = render()
    if args.check:
        try:
            current = path.read_text(encoding="utf-8")
        except OSError:
            current = None
        if current != text:
            sys.stderr.write(
                f"{path} is stale: regenerate it with `python -m engine.schema`\n"
            )
            return 1
        return 0
    path.write_text(text, encoding="utf-8")
    sys.stderr.write(f"wrote {path}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
