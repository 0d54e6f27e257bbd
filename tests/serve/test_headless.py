"""The service is headless: it never imports the console's libraries."""

from __future__ import annotations

import subprocess
import sys


def test_the_service_modules_import_neither_textual_nor_rich() -> None:
    code = (
        "import sys, tui.cli, tui.serve.service, tui.serve.app, tui.serve.scheduler, "
        "tui.serve.metrics, tui.serve.sse, tui.serve.auth; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('textual', 'rich')))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60, check=True)
    assert done.stdout.strip() == "[]"
