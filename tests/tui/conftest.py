"""The console fixtures; see `console_fixtures` for why they live there."""

from console_fixtures import *  # noqa: F403
