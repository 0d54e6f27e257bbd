"""Params typed by an operator are YAML 1.2 scalars: `no`, `on`, `0755`, `1:30` stay text."""

from __future__ import annotations

import pytest
from console_helpers import SIZE, MakeApp, app_of, wait_until

from tui import format as fmt
from tui.params import parse_param
from tui.screens.launch import LaunchScreen
from tui.screens.run import RunScreen


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("no", "no"), ("yes", "yes"), ("on", "on"), ("off", "off"), ("y", "y"),
        ("0755", "0755"), ("007", "007"), ("1:30", "1:30"), ("null", "null"),
        ("true", True), ("False", False), ("TRUE", True),
        ("42", 42), ("-3", -3), ("0", 0), ("0o17", 15), ("0x1f", 31),
        ("1.5", 1.5), ("1e3", 1000.0), ("-.5", -0.5),
        ('"42"', "42"), ("'true'", "true"), ("prod", "prod"), ("[1, 2]", "[1, 2]"), ("", ""),
    ],
)
def test_a_param_is_read_as_a_yaml_1_2_scalar(text: str, value: object) -> None:
    parsed = parse_param(text)
    assert parsed == value
    assert type(parsed) is type(value)


@pytest.mark.parametrize(("text", "sign"), [(".inf", 1), ("-.inf", -1), ("+.Inf", 1)])
def test_yaml_infinities_are_read_as_floats_for_the_strict_json_check_to_refuse(
    text: str, sign: int
) -> None:
    assert parse_param(text) == sign * float("inf")


def test_yaml_nan_is_read_as_a_float_for_the_strict_json_check_to_refuse() -> None:
    value = parse_param(".nan")
    assert isinstance(value, float)
    assert value != value  # NaN


@pytest.mark.parametrize("value", ["42", "true", "no", "0755", 7, 1.5, False, "staging"])
def test_a_default_shown_in_the_launch_form_reads_back_as_itself(value: object) -> None:
    parsed = fmt.parse_param(fmt.show_param(value))
    assert parsed == value
    assert type(parsed) is type(value)


async def test_the_launch_dialog_keeps_no_as_text(make_app: MakeApp) -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(pilot, lambda: app_of(pilot).bridge.ready, what="the database")
        await pilot.press("l")
        await wait_until(pilot, lambda: isinstance(app.screen, LaunchScreen))
        screen = app.screen
        assert isinstance(screen, LaunchScreen)
        screen.picker.value = "hello"
        await pilot.pause()
        await pilot.press("ctrl+a", "ctrl+k", "n", "o", "enter")
        await wait_until(pilot, lambda: isinstance(app.screen, RunScreen), what="the run view")
        run = app.screen
        assert isinstance(run, RunScreen)
        state = await app.bridge.run_state(run.run_id)
    assert state.params == {"who": "no"}
    assert not state.simulate
