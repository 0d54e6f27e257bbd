"""Every key of the console in one table: the help screen and the command palette read it."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Key:
    key: str  # as Textual spells it
    shown: str  # as the help screen shows it
    action: str  # the action name (`action_<name>` on a screen or the app)
    title: str  # the command palette's title
    help: str  # one line: what it does
    where: str = "everywhere"  # the screens it works on


RUNS = "home, run, node"

COMMANDS: tuple[Key, ...] = (
    Key("l", "l", "launch", "Launch a run", "pick a pipeline, edit its params, enter starts it"),
    Key("c", "c", "cancel", "Cancel the run", "cancel the selected run (asks first)", RUNS),
    Key("d", "d", "diff", "Diff with the previous run",
        "compare the run with the previous run of its pipeline", RUNS),
    Key("K", "K", "force_kill", "Kill now", "a cancel in its grace: SIGKILL its nodes now (asks)",
        RUNS),
    Key("r", "r", "replay", "Replay the run",
        "a new run from a stored run's definition (asks first)", RUNS),
    Key("R", "R", "resume", "Resume the run", "continue an interrupted run here (asks first)",
        RUNS),
    Key("a", "a", "approve", "Approve", "approve the waiting approval (asks; reason optional)",
        RUNS),
    Key("x", "x", "reject", "Reject", "reject the waiting approval (asks why)", RUNS),
    Key("p", "p", "playback", "Play the run back", "scrub through a stored run's events", RUNS),
    Key("f", "f", "retry", "Retry from failure",
        "a new run reusing what succeeded (asks; on a node: from that node)", RUNS),
    Key("T", "T", "timeline", "Timeline", "the run's attempts and waits on a time axis", RUNS),
    Key("b", "b", "breakers", "Breakers", "circuit breakers: state, cool-down, reset"),
    Key("slash", "/", "filter", "Filter", "filter the runs (state:failed ...) or search the log",
        "home, run"),
    Key("enter", "enter", "open", "Open", "open the selected run or node", "home, run"),
    Key("escape", "escape", "back", "Back", "close this screen, or clear the filter first"),
    Key("H", "H", "home", "Home", "straight to the home screen"),
    Key("question_mark", "?", "help", "Help", "this list of keys"),
    Key("q", "q", "quit", "Quit", "quit (asks first while this console's runs are active)"),
)

# Keys that only mean something on one screen (shown on the help screen, not in the palette).
SCREEN_KEYS: tuple[tuple[str, str, str], ...] = (
    ("home", "s", "sort the runs table by the next column"),
    ("home", "1-5 / 0", "quick filter: active, failed, succeeded, cancelled, interrupted / all"),
    ("home", "tab", "move between the pipelines and the runs"),
    ("run", "arrows", "move the selection along the DAG"),
    ("run", "m", "DAG drawing: boxes, compact, groups"),
    ("run", "tab", "move between the DAG, the node table and the event log"),
    ("run", "F", "the event log follows the run, or stays put"),
    ("node", "L", "the node's log full screen (L or escape: back)"),
    ("lists", "j k g G", "down, up, top, bottom (the DAG: j k)"),
    ("playback", "space", "play / pause"),
    ("playback", "left / right", "step one event back / forward"),
    ("playback", "home / end", "jump to the start / the end"),
    ("playback", "+ / -", "faster / slower"),
    ("breakers", "enter", "reset the selected breaker (asks first)"),
    ("node", "t", "test the node alone on its inputs from this run (records nothing)"),
    ("launch", "ctrl+s", "start the run"),
    ("launch", "enter / ctrl+s", "start the run (space toggles simulate)"),
    ("dialogs", "enter / escape", "the main action (yes) / no"),
    ("any", "ctrl+p", "command palette"),
)

BY_ACTION: dict[str, Key] = {k.action: k for k in COMMANDS}
