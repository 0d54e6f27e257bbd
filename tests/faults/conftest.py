"""The fault suite's setup (`slow` tests are skipped unless `-m slow`: tests/conftest.py)."""

from __future__ import annotations

import contextlib
import warnings

# Hypothesis imports its patch writer (libcst, which warns on import) only when an example fails;
# under `filterwarnings = error` that warning turned every falsifying example into an
# INTERNALERROR that hid it. Importing it now, warnings silenced, keeps failures readable.
with warnings.catch_warnings(), contextlib.suppress(ImportError):
    warnings.simplefilter("ignore", DeprecationWarning)
    import hypothesis.extra._patching  # noqa: F401
