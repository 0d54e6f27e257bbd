"""`interlock web`: the console in a real headless browser (Debian's chromium, driven by
selenium). The page's terminal shows the home screen, a key typed in the page reaches the
console, SIGTERM ends the server with exit 0; a non-loopback host needs a token."""

from __future__ import annotations

import os
import re
import shutil
import signal
import tempfile
import time
import urllib.error
import urllib.request
from typing import TYPE_CHECKING

import pytest

from e2e.conftest import PIPELINES, assert_clean_error, descendants, is_gone, wait_until

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    import psutil
    from selenium.webdriver.remote.webdriver import WebDriver

    from e2e.conftest import Cli

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--window-size=1200,800",
)
# The page draws its terminal on a canvas, so its text is not in the DOM: this records what
# the console writes to the page's websocket (the terminal's input) as text, as it arrives.
CAPTURE = """
(() => {
  window.__terminal = "";
  const Native = window.WebSocket;
  window.WebSocket = function (...args) {
    const socket = new Native(...args);
    socket.addEventListener("message", (event) => {
      if (typeof event.data !== "string") {
        window.__terminal += new TextDecoder().decode(event.data);
      }
    });
    return socket;
  };
  window.WebSocket.prototype = Native.prototype;
})();
"""
ESCAPES = re.compile(r"\x1b\[[0-9;?<>=]*[ -/]*[@-~]|\x1b[()][0-9A-Za-z]|\x1b[=>78]")


def _screen_text(driver: WebDriver) -> str:
    return ESCAPES.sub("", str(driver.execute_script("return window.__terminal || ''")))


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[WebDriver]:
    if not (os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER)):
        pytest.skip("chromium and chromedriver are not installed (apt install chromium "
                    "chromium-driver); .ci/run installs them")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in FLAGS:
        options.add_argument(flag)
    profile = tempfile.mkdtemp(dir=tmp_path, prefix="chromium-")
    options.add_argument(f"--user-data-dir={profile}")
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    try:
        yield driver
    finally:
        driver.quit()


@pytest.mark.parametrize("token", [None, "s3cret-token"], ids=["loopback", "with-token"])
def test_the_console_renders_in_a_headless_browser_and_answers_a_key(
    cli: Cli, browser: WebDriver, tmp_path: Path, token: str | None
) -> None:
    from selenium.webdriver.common.by import By

    args: list[str | Path] = ["web", "--port", "0", "--pipelines", PIPELINES]
    if token is not None:  # the page's websocket must carry the cookie `?token=` set
        (tmp_path / "token").write_text(token)
        args += ["--token-file", tmp_path / "token"]
    server = cli.spawn(*args)
    url = server.next_line()
    assert url.startswith("http://127.0.0.1:")

    browser.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": CAPTURE})
    browser.get(url.split("?")[0] + (f"?token={token}" if token else ""))
    wait_until(
        lambda: "Runs" in _screen_text(browser) and "hello" in _screen_text(browser),
        timeout=60, interval=0.2, what="the home screen in the page's terminal",
    )
    assert "Interlock - keys" not in _screen_text(browser)

    browser.find_element(By.CSS_SELECTOR, ".xterm-helper-textarea").send_keys("?")

    wait_until(
        lambda: "Interlock - keys" in _screen_text(browser),
        timeout=30, interval=0.2, what="the help screen after '?'",
    )
    consoles = descendants(server.pid)
    assert consoles  # the tab's console process
    os.kill(server.pid, signal.SIGTERM)
    assert server.wait(30) == 0
    wait_until(lambda: all(map(is_gone, consoles)), timeout=15, what="the console to quit")
    for noise in ("Exception ignored", "Traceback", "is closed"):
        assert noise not in server.stderr()


def test_a_token_guards_every_page_and_a_non_loopback_host_needs_one(
    cli: Cli, tmp_path: Path
) -> None:
    assert_clean_error(
        cli("web", "--host", "0.0.0.0", "--port", "0"), expect="needs a token"
    )
    token_file = tmp_path / "token"
    token_file.write_text("s3cret-token\n")
    server = cli.spawn("web", "--host", "127.0.0.1", "--port", "0", "--token-file", token_file)
    base = server.next_line().split("?")[0]

    def status(url: str, headers: dict[str, str] | None = None) -> int:
        request = urllib.request.Request(url, headers=headers or {})
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return int(response.status)
        except urllib.error.HTTPError as exc:
            return exc.code

    assert status(base) == 401  # listening before the URL is printed: no retry needed
    assert status(base + "?token=wrong") == 401
    assert status(base + "?token=s3cret-token") == 200
    assert status(base + "static/css/xterm.css", {"Authorization": "Bearer s3cret-token"}) == 200
    assert status(base + "static/css/xterm.css", {"Cookie": "interlock_token=s3cret-token"}) == 200
    os.kill(server.pid, signal.SIGTERM)
    assert server.wait(30) == 0


@pytest.mark.parametrize("port", ["99999", "-1", "9" * 40, "http"])
def test_a_port_out_of_range_is_one_sentence_and_exit_2(cli: Cli, port: str) -> None:
    result = cli("web", "--port", port)
    assert_clean_error(result, expect="a TCP port must be")
    assert "report it" not in result.stderr
    assert len(result.stderr.strip().splitlines()) <= 3  # usage line(s) and the sentence


# A console that closes its screen a second before its process ends, as one cancelling its
# runs at quit can: the server must wait for the process, not only for the end of its output
# (a console still exiting when the server's loop closed made asyncio write "Loop ... that
# handles pid N is closed" and an ignored traceback, in about half the stops with a browser).
SLOW_EXIT = """
import atexit, os, sys, time
if sys.argv[1:2] == ["tui"]:
    def _linger():
        os.close(1)
        time.sleep(1.0)
    atexit.register(_linger)
"""


def test_sigterm_with_a_tab_connected_waits_for_its_console_and_writes_no_noise(
    cli: Cli, tmp_path: Path
) -> None:
    import asyncio

    import aiohttp

    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(SLOW_EXIT)
    cli.env["PYTHONPATH"] = os.pathsep.join(p for p in (cli.env.get("PYTHONPATH"), str(hook)) if p)
    server = cli.spawn("web", "--port", "0", "--pipelines", PIPELINES)
    url = server.next_line().split("?")[0]
    consoles: list[psutil.Process] = []
    stopped: list[float] = []

    async def tab() -> None:  # what the page does: a websocket to /ws, reading the screen
        async with aiohttp.ClientSession() as session, session.ws_connect(
            url.replace("http", "ws", 1) + "ws?width=80&height=24"
        ) as socket:
            seen = b""
            while b"Runs" not in seen:
                message = await asyncio.wait_for(socket.receive(), 60)
                assert message.type in (aiohttp.WSMsgType.BINARY, aiohttp.WSMsgType.TEXT)
                if message.type is aiohttp.WSMsgType.BINARY:
                    seen += message.data
            consoles.extend(descendants(server.pid))
            stopped.append(time.monotonic())
            os.kill(server.pid, signal.SIGTERM)
            while not socket.closed:
                message = await asyncio.wait_for(socket.receive(), 60)
                if message.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED):
                    break

    asyncio.run(tab())
    assert consoles  # the tab's console
    assert server.wait(60) == 0
    # The console is asked to quit at once (it took aiohttp's shutdown wait, about 25 s, for
    # the tab's handler to be cancelled); it lingers 1 s.
    assert time.monotonic() - stopped[0] < 10
    left = [p.pid for p in consoles if not is_gone(p)]
    assert left == [], "interlock web ended before its tab's console"
    stderr = server.stderr()
    for noise in ("Exception ignored", "Traceback", "is closed"):
        assert noise not in stderr, stderr
