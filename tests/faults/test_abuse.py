"""Abuse: hostile pipeline files, hostile data, and secrets that try to get out.

- A YAML `!!python/...` tag is refused, before anything runs (a canary file stays absent).
- Shell metacharacters in a node's inputs are data, never shell: `;`, `$( )`, backticks, quotes
  and newlines reach the command exactly, through stdin JSON and argv, and create no canary.
- The database is created 0600 in directories created 0700, whatever the umask.
- An env value marked secret never appears in events, node logs, the definition snapshot,
  `interlock events`, `interlock status --json`, `interlock run`'s own output, nor the
  database file itself, even when commands echo it (on stdout, stderr, in their JSON output,
  in a failure reason, split over lines, or from a node that did not declare it).
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from engine.errors import PipelineValidationError
from engine.loader import load_dict, load_file, load_text
from engine.manager import RunManager
from engine.state import NodeStatus, RunStatus
from engine.store import Store
from faults.helpers import INTERLOCK

if TYPE_CHECKING:
    from conftest import RunPipeline

# -- YAML tags ---------------------------------------------------------------------------------

TAGS = [
    "!!python/object/apply:os.system ['touch {canary}']",
    "!!python/object:os.system {{}}",
    "!!python/object/new:subprocess.Popen [['touch', '{canary}']]",
    "!!python/name:os.system",
    "!!python/module:os",
    "!!python/tuple [1, 2]",
    "!<tag:yaml.org,2002:python/object/apply:os.system> ['touch {canary}']",
]


@pytest.mark.parametrize("tag", TAGS)
def test_a_python_yaml_tag_is_refused_and_never_constructed(tmp_path: Path, tag: str) -> None:
    canary = tmp_path / "canary"
    text = (
        f"id: evil\nnodes:\n  - id: a\n    type: shell\n    command: {tag.format(canary=canary)}\n"
    )
    path = tmp_path / "evil.yaml"
    path.write_text(text)
    for source in (text, path):
        with pytest.raises(PipelineValidationError) as caught:
            load_file(source) if isinstance(source, Path) else load_text(source, file="evil.yaml")
        assert "refused" in str(caught.value), str(caught.value)
    result = subprocess.run(
        [INTERLOCK, "run", str(path), "--db", str(tmp_path / "db")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert not canary.exists()


# -- shell metacharacters are data -------------------------------------------------------------

ECHO_SCRIPT = textwrap.dedent(
    """
    import json, os, sys
    payload = json.load(sys.stdin)
    with open(os.environ["FAULTS_OUT"], "w") as out:
        json.dump({"argv": sys.argv[1:], "params": payload["params"]}, out)
    """
)


def hostile_strings(canary: Path) -> list[str]:
    c = str(canary)
    return [
        f"; touch {c}",
        f"$(touch {c})",
        f"`touch {c}`",
        f"'; touch {c}; '",
        f'" && touch {c} && "',
        f"a\ntouch {c}\n",
        f"| touch {c}",
        f"> {c}",
        f"${{IFS}}touch${{IFS}}{c}",
        f"\\\"'$(touch {c})'`touch {c}`;\r\n\x1b[31m",
    ]


async def test_shell_metacharacters_in_inputs_are_passed_as_data(
    run_pipeline: RunPipeline, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    canary = tmp_path / "canary"
    evil = hostile_strings(canary)
    out = tmp_path / "seen.json"
    monkeypatch.setenv("FAULTS_OUT", str(out))
    state, _ = await run_pipeline(
        {
            "params": {f"p{i}": {"default": s} for i, s in enumerate(evil)},
            "nodes": [
                {
                    "id": "show",
                    "type": "shell",
                    "command": [sys.executable, "-c", ECHO_SCRIPT, *evil],
                },
                {
                    "id": "words",
                    "type": "shell",
                    "needs": ["show"],
                    "command": f"echo $(touch {canary}) ; touch {canary} `touch {canary}` && x",
                },
            ],
        }
    )
    assert state.state is RunStatus.SUCCEEDED, state.nodes
    seen = json.loads(out.read_text())
    assert seen["argv"] == evil
    assert seen["params"] == {f"p{i}": s for i, s in enumerate(evil)}
    words = state.nodes["words"]
    assert words.state is NodeStatus.SUCCEEDED
    assert words.logs == [f"$(touch {canary}) ; touch {canary} `touch {canary}` && x"]
    assert not canary.exists()


# -- file modes --------------------------------------------------------------------------------


@pytest.mark.parametrize("umask", [0o022, 0o000])
async def test_the_database_is_created_0600_in_directories_created_0700(
    tmp_path: Path, umask: int
) -> None:
    db = tmp_path / "a" / "b" / "c" / "interlock.db"
    old = os.umask(umask)
    try:
        async with Store(db) as store:
            await store.flush()
            modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in db.parent.iterdir()}
    finally:
        os.umask(old)
    assert modes["interlock.db"] == 0o600
    assert all(mode & 0o077 == 0 for mode in modes.values()), {k: oct(v) for k, v in modes.items()}
    for directory in (db.parent, db.parent.parent, db.parent.parent.parent):
        assert stat.S_IMODE(directory.stat().st_mode) == 0o700, directory


# -- secrets -----------------------------------------------------------------------------------

SECRET = 's3cr3t-"quoted"-\\back-VALUE'
MULTILINE = "first-line-of-key-9f8e\nsecond-line-of-key-7a6b"

SECRETS_PIPELINE = r"""
id: secrets
nodes:
  - id: leak
    type: shell
    env: {TOKEN: {from_env: FAULTS_SECRET, secret: true}, PEM: {from_env: FAULTS_PEM, secret: true}}
    command:
      - sh
      - -c
      - |
        printf 'token=%s\n' "$TOKEN"
        printf 'to stderr: %s\n' "$TOKEN" >&2
        printf '%s\n' "$PEM"
        python3 -c 'import json, os; print(json.dumps({"token": os.environ["TOKEN"], os.environ["TOKEN"]: [os.environ["PEM"]]}))'
  - id: undeclared
    type: shell
    needs: [leak]
    command: [sh, -c, 'printf "sibling sees %s\\n%s\\n" "$FAULTS_SECRET" "$FAULTS_PEM"']
  - id: fails
    type: shell
    optional: true
    env: {TOKEN: {from_env: FAULTS_SECRET, secret: true}}
    command: [sh, -c, 'printf "bad token %s\\n" "$TOKEN" >&2; exit 3']
"""  # noqa: E501


def _cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [INTERLOCK, *args], capture_output=True, text=True, timeout=60, env=env, check=False
    )


def _pieces(secret: str) -> list[str]:
    """The secret and each of its lines: none may be written anywhere."""
    return list(dict.fromkeys([secret, *(line for line in secret.splitlines() if line)]))


def test_secret_env_values_never_leave_the_node(tmp_path: Path) -> None:
    pipeline = tmp_path / "secrets.yaml"
    pipeline.write_text(SECRETS_PIPELINE)
    db = tmp_path / "interlock.db"
    env = {**os.environ, "FAULTS_SECRET": SECRET, "FAULTS_PEM": MULTILINE, "NO_COLOR": "1"}
    env.pop("INTERLOCK_DEBUG", None)

    run = _cli("run", str(pipeline), "--db", str(db), "--json", env=env)
    assert run.returncode == 0, run.stderr
    run_id = run.stdout.splitlines()[0]
    outputs: dict[str, str] = {
        "run stdout": run.stdout,
        "run stderr": run.stderr,
        "events": _cli("events", run_id, "--db", str(db), env=env).stdout,
        "status": _cli("status", run_id, "--json", "--db", str(db), env=env).stdout,
        "summary": _cli("summary", run_id, "--db", str(db), env=env).stdout,
    }
    events = [json.loads(line) for line in outputs["events"].splitlines()]
    status: dict[str, Any] = json.loads(outputs["status"])
    assert status["state"] == "succeeded", status
    assert status["nodes"]["fails"]["state"] == "failed"
    logs = [e["data"]["line"] for e in events if e["event_type"] == "node.log"]
    assert any("token=***" in line for line in logs), logs  # the node did echo it
    definition = events[0]["data"]["definition"]
    assert "FAULTS_SECRET" in json.dumps(definition)  # a reference, not the value

    outputs["database file"] = b"".join(
        p.read_bytes() for p in tmp_path.iterdir() if p.name.startswith(db.name)
    ).decode("utf-8", errors="replace")
    leaks = [
        f"{piece!r} in {where}" + (" (JSON-escaped)" if form != piece else "")
        for piece in _pieces(SECRET) + _pieces(MULTILINE)
        for form in {piece, json.dumps(piece)[1:-1]}
        for where, text in outputs.items()
        if form in text
    ]
    assert not leaks, "secret leaked:\n" + "\n".join(leaks)


# -- data that is not JSON ---------------------------------------------------------------------


async def test_outputs_that_are_not_json_are_the_same_live_and_after_a_resume(
    tmp_path: Path,
) -> None:
    """A condition must decide the same live as over the log (which is what a resume folds)."""
    pipeline = load_dict(
        {
            "id": "odd-outputs",
            "nodes": [
                {"id": "odd", "type": "python", "call": "faults.work:odd_output"},
                {
                    "id": "same",
                    "type": "condition",
                    "needs": ["odd"],
                    "expr": "odd.t == [1, 2] and odd.d == '2024-01-02' and odd['7'] == 'int key'",
                },
                {
                    "id": "unkeyable",
                    "type": "python",
                    "call": "faults.work:unkeyable_output",
                    "optional": True,
                },
            ],
        }
    )
    async with Store(tmp_path / "odd.db") as store:
        async with RunManager(store=store) as manager:
            handle = await manager.start(pipeline)
            live = await handle.wait(30)
        stored = await store.fold_run(handle.run_id)
    assert stored == live
    assert live.nodes["same"].output == {"result": True}
    unkeyable = live.nodes["unkeyable"]
    assert unkeyable.state is NodeStatus.FAILED
    assert unkeyable.reason is not None and "not JSON data" in unkeyable.reason
