"""The engine is headless: importing it pulls in no console code (no textual, rich or tui)."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
ENGINE_MODULES = (
    "engine",
    "engine.executor",
    "engine.manager",
    "engine.loader",
    "engine.store",
    "engine.metrics",
)


def test_importing_the_engine_loads_no_console_modules() -> None:
    present = [m for m in ENGINE_MODULES if importlib.util.find_spec(m) is not None]
    assert {"engine", "engine.executor", "engine.manager"} <= set(present)
    code = (
        f"import {', '.join(present)}; import json, sys; "
        "print(json.dumps(sorted(m for m in sys.modules "
        "if m.split('.')[0] in ('textual', 'rich', 'tui'))))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == []


def test_the_import_linter_contract_keeps_the_engine_headless() -> None:
    """`lint-imports` (import-linter) checks every import path, not only the ones executed."""
    result = subprocess.run(
        [sys.executable, "-c", "import sys; from importlinter.cli import lint_imports_command; "
         "sys.exit(lint_imports_command())"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "The engine is headless KEPT" in result.stdout
