"""The console's pure pieces: glyphs, durations, countdowns, bars, params."""

from __future__ import annotations

import pytest

from engine.state import NodeStatus, RunStatus
from tui import format as fmt


def test_every_node_state_has_a_distinct_glyph_in_unicode_and_in_ascii() -> None:
    for ascii in (False, True):
        glyphs = [fmt.node_glyph(status, ascii=ascii) for status in NodeStatus]
        assert len(set(glyphs)) == len(NodeStatus)
        assert "?" not in glyphs


def test_the_glyphs_are_the_documented_ones() -> None:
    assert "".join(fmt.node_glyph(s) for s in NodeStatus) == "·▶↻⏸✔✖⌛⊘■"
    assert "".join(fmt.node_glyph(s, ascii=True) for s in NodeStatus) == ".>RW+XT-#"


def test_ascii_glyphs_are_plain_ascii() -> None:
    for status in NodeStatus:
        assert fmt.node_glyph(status, ascii=True).isascii()
    for run_status in RunStatus:
        assert fmt.run_glyph(run_status, ascii=True).isascii()


def test_every_run_state_has_a_glyph() -> None:
    assert all(fmt.run_glyph(status) != "?" for status in RunStatus)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(None, "-"), (0.42, "420ms"), (4.24, "4.2s"), (65, "1m05s"), (7380, "2h03m"), (-3, "0ms")],
)
def test_durations_read_short(seconds: float | None, text: str) -> None:
    assert fmt.duration(seconds) == text


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(None, "-"), (0.01, "1s"), (0.0, "0s"), (9.2, "10s"), (59.5, "1m00s"), (3601, "1h00m")],
)
def test_a_countdown_rounds_up_so_it_never_shows_zero_before_the_deadline(
    seconds: float | None, text: str
) -> None:
    assert fmt.countdown(seconds) == text


def test_remaining_is_never_negative_and_none_without_a_deadline() -> None:
    assert fmt.remaining(None, 100.0) is None
    assert fmt.remaining(90.0, 100.0) == 0.0
    assert fmt.remaining(112.5, 100.0) == 12.5


def test_elapsed_counts_to_now_while_running_and_to_the_end_once_ended() -> None:
    start = "2025-05-01T09:00:00.000000Z"
    end = "2025-05-01T09:00:05.500000Z"
    now = fmt.epoch(start)
    assert now is not None
    assert fmt.elapsed(start, None, now + 2) == pytest.approx(2.0)
    assert fmt.elapsed(start, end, now + 100) == pytest.approx(5.5)
    assert fmt.elapsed(None, end, now) is None


def test_a_bar_fills_in_eighths_and_keeps_its_width() -> None:
    assert fmt.bar(1.0, 4) == "████"
    assert fmt.bar(0.0, 4) == "░░░░"
    assert fmt.bar(0.5, 4) == "██░░"
    assert fmt.bar(1 / 16, 2) == "▏░"
    assert fmt.bar(2.0, 3) == "███"
    assert fmt.bar(0.5, 4, ascii=True) == "##--"
    assert all(len(fmt.bar(f / 10, 7)) == 7 for f in range(11))


def test_a_countdown_bar_drains_and_ends_with_the_time_left() -> None:
    assert fmt.countdown_bar(30, 60, 10) == "███░░░ 30s"
    assert fmt.countdown_bar(30, 60, 10, ascii=True) == "###--- 30s"
    assert fmt.countdown_bar(None, 60, 6) == "      "
    assert fmt.countdown_bar(5, 60, 3) == " 5s"


@pytest.mark.parametrize(
    ("seconds", "text"), [(None, "never"), (0.2, "just now"), (12.9, "12s ago"), (130, "2m ago")]
)
def test_ages_read_like_a_person_would_say_them(seconds: float | None, text: str) -> None:
    assert fmt.ago(seconds) == text


def test_one_line_keeps_the_first_line_and_cuts_with_an_ellipsis() -> None:
    assert fmt.one_line("first\nsecond", 20) == "first"
    assert fmt.one_line("abcdefgh", 5) == "abcd…"
    assert fmt.one_line(None, 5) == ""


@pytest.mark.parametrize(
    ("text", "value"),
    [("10", 10), ("1.5", 1.5), ("true", True), ("prod", "prod"), ("", ""), ("[1, 2]", "[1, 2]")],
)
def test_a_param_typed_in_the_form_is_read_like_the_cli_reads_it(text: str, value: object) -> None:
    assert fmt.parse_param(text) == value


def test_a_default_shown_in_the_form_reads_back_as_itself() -> None:
    for value in (10, 1.5, True, False, "staging"):
        assert fmt.parse_param(fmt.show_param(value)) == value
    assert fmt.show_param(None) == ""


def test_a_param_of_thousands_of_digits_typed_in_the_form_is_a_sentence_not_a_crash() -> None:
    with pytest.raises(ValueError, match="a number of 5,000 digits is too long"):
        fmt.parse_param("9" * 5000)


def test_terminal_controls_from_nodes_are_shown_escaped_and_plain_text_is_untouched() -> None:
    from tui.escape import printable, printable_lines

    assert printable("\x1b]0;PWNED\x07\x1b[2J") == "\\x1b]0;PWNED\\x07\\x1b[2J"
    assert printable("a\rb\x08c\x7fd\x9be") == "a\\x0db\\x08c\\x7fd\\x9be"
    assert printable("evil\u202eexe.txt") == "evil\\u202eexe.txt"  # a right-to-left override
    assert printable("tab\tkept, ünïcode ✔ kept") == "tab\tkept, ünïcode ✔ kept"
    assert printable("one\ntwo") == "one\\x0atwo"
    assert printable_lines("one\x07\ntwo") == "one\\x07\ntwo"
    assert fmt.one_line("\x1b[31mred", 20) == "\\x1b[31mred"
