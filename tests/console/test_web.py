"""`mnist-tui web`: the console served by textual-serve, opened in a real headless chromium.

The page draws the terminal with xterm.js on a canvas, so the test reads xterm's own screen buffer: a
script installed before the page's scripts keeps each xterm Terminal the page opens. Skipped where
chromium or chromedriver is missing (`.ci/run` installs both).
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from engine.mqtt.broker import EmbeddedBroker, free_port
from tui.web import console_argv, console_command

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = "/usr/bin/chromedriver" if Path("/usr/bin/chromedriver").exists() else shutil.which("chromedriver")
ROOT = Path(__file__).resolve().parents[2]
DEADLINE = 25.0

# Runs before the page's own scripts: keep the exports objects webpack marks as modules, and once the
# bundle has run, wrap xterm's Terminal.open so that every opened terminal is kept in window.__terms.
KEEP_TERMINALS = """
window.__modules = [];
window.__terms = [];
const define = Object.defineProperty;
Object.defineProperty = function (target, key, descriptor) {
  if (key === "__esModule") window.__modules.push(target);
  return define.call(this, target, key, descriptor);
};
document.addEventListener("DOMContentLoaded", () => {
  for (const module of window.__modules) {
    if (typeof module.Terminal !== "function") continue;
    const open = module.Terminal.prototype.open;
    module.Terminal.prototype.open = function (...args) { window.__terms.push(this); return open.apply(this, args); };
  }
});
"""

SCREEN_TEXT = """
const term = window.__terms.find(t => t.buffer && t.buffer.active);
if (!term) return "";
const lines = [];
for (let i = 0; i < term.rows; i++) {
  const line = term.buffer.active.getLine(i);
  lines.push(line ? line.translateToString(true) : "");
}
return lines.join("\\n");
"""


def test_console_argv_is_what_comes_before_web() -> None:
    assert console_argv(["--broker", "mqtt://h:1", "--id", "web", "web", "--host", "web", "--port", "9"]) == [
        "--broker", "mqtt://h:1", "--id", "web"]
    assert console_argv(["web"]) == []
    command = console_command(["--broker", "mqtt://h:1/a b", "web"])
    assert command.endswith("-m tui.cli --broker 'mqtt://h:1/a b'")  # quoted: textual-serve runs it in a shell


def test_a_port_in_use_is_one_line_before_any_banner() -> None:
    """The port is tried before textual-serve prints its start banner: one line on stderr, nothing on stdout."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        # the timeout ends the test should the server ever start on the port after all
        done = subprocess.run([sys.executable, "-m", "tui.cli", "web", "--port", str(port)], cwd=ROOT,
                              capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert done.returncode == 1, done.stderr
    assert done.stdout == "", "printed before the error: " + done.stdout
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith("mnist-tui: cannot serve on") and f"127.0.0.1:{port}" in line, line


@pytest.fixture
def web_console(mosquitto_broker: EmbeddedBroker) -> Iterator[str]:
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "tui.cli", "--broker", mosquitto_broker.address.url, "web", "--port", str(port)],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        yield f"http://127.0.0.1:{port}/"
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


@pytest.fixture
def browser() -> Iterator[Any]:
    if CHROMIUM is None or CHROMEDRIVER is None:
        pytest.skip("chromium and chromedriver are not installed (apt-get install chromium chromium-driver)")
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    profile = tempfile.mkdtemp(prefix="mnist-tui-chromium-")
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--disable-background-networking", "--no-first-run", "--disable-component-update",
                 "--disable-sync", "--window-size=1400,900", f"--user-data-dir={profile}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        driver.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": KEEP_TERMINALS})
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def _until(predicate: Callable[[], bool], what: str, screen: Callable[[], str]) -> None:
    deadline = time.monotonic() + DEADLINE
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError(f"{what} within {DEADLINE:.0f}s; the browser's terminal shows:\n{screen()}")


@pytest.mark.slow
def test_browser_shows_the_four_panes_and_takes_a_key(web_console: str, browser: Any) -> None:
    from selenium.common.exceptions import WebDriverException
    from selenium.webdriver.common.by import By

    def loaded() -> bool:
        try:
            browser.get(web_console)
            return True
        except WebDriverException:  # the server is still starting
            return False

    def screen() -> str:
        return str(browser.execute_script(SCREEN_TEXT))

    _until(loaded, "the page loads", lambda: "")
    panes = ("Publisher", "Workers", "Results", "Topics")
    _until(lambda: all(f"─ {name} ─" in screen() for name in panes), "the four panes appear", screen)
    # the session's console reached the broker given before `web` (the screen is read again: a frame
    # being redrawn can read blank)
    _until(lambda: "● connected" in screen(), "the header says connected", screen)
    assert "mnist-tui: keys" not in screen()

    browser.find_element(By.CSS_SELECTOR, ".xterm-helper-textarea").send_keys("?")
    _until(lambda: "mnist-tui: keys" in screen(), "? opens the keys and help screen", screen)
