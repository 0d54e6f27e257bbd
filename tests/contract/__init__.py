"""The store contract: one suite, run against every store backend (`conftest.BACKENDS`)."""
