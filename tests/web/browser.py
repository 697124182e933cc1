"""Debian's chromium, headless, driven over the DevTools protocol with playwright.

The test owns the browser process (so it can stop or kill it like a user's browser going away)
and playwright connects to it over CDP; playwright's own browser download is never used.
textual-serve's page draws the terminal (xterm.js) on a canvas, so the text is read from
xterm.js's accessibility tree: an init script finds the page's `Terminal` as textual.js stores
it (`this.terminal = new Terminal(...)`) and turns on `screenReaderMode`, which mirrors every
row of the terminal's buffer into `.xterm-accessibility-tree` in the DOM.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest

CHROMIUM = Path("/usr/bin/chromium")
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
)
ACCESSIBILITY_ROWS = ".xterm-accessibility-tree > div"
# Runs before textual.js: the first object to set a `terminal` that looks like xterm.js's
# Terminal keeps it as an own property, and the Terminal is kept for the test with its
# accessibility tree on.
FIND_TERMINAL = """
Object.defineProperty(Object.prototype, "terminal", {
  configurable: true,
  get() { return undefined; },
  set(value) {
    Object.defineProperty(this, "terminal", {value, writable: true, configurable: true,
                                             enumerable: true});
    if (value && value.buffer && value.options && !window.__xterm) {
      window.__xterm = value;
      value.options.screenReaderMode = true;
    }
  },
});
"""


def chromium() -> Path:
    """Debian's chromium, installed with apt-get when missing; a skip that says why otherwise."""
    if CHROMIUM.exists():
        return CHROMIUM
    apt = shutil.which("apt-get")
    if apt is None or os.geteuid() != 0:
        pytest.skip("no /usr/bin/chromium, and apt-get cannot install it here (not root)")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    # One install at a time: parallel test workers would fight over dpkg's lock.
    with open("/tmp/kube-llm-chromium-install.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if CHROMIUM.exists():
            return CHROMIUM
        for command in ([apt, "update", "-qq"], [apt, "install", "-y", "-qq", "chromium"]):
            done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=900)
            if done.returncode != 0:
                pytest.skip(f"chromium could not be installed: {done.stderr.strip()[-300:]}")
    return CHROMIUM


@dataclass
class Chromium:
    """A headless chromium process with its DevTools endpoint."""

    process: subprocess.Popen[bytes]
    endpoint: str

    def stop(self) -> None:
        """Kill the browser (and collect it)."""
        if self.process.poll() is None:
            with contextlib.suppress(psutil.NoSuchProcess):
                for child in psutil.Process(self.process.pid).children(recursive=True):
                    child.kill()
            self.process.kill()
        self.process.wait()


def launch(profile: Path) -> Chromium:
    """Start chromium with a fresh profile and a DevTools port of its choosing."""
    profile.mkdir(parents=True, exist_ok=True)
    process = subprocess.Popen(
        [
            str(chromium()),
            *FLAGS,
            f"--user-data-dir={profile}",
            "--remote-debugging-port=0",
            "--window-size=1400,900",
            "about:blank",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    port_file = profile / "DevToolsActivePort"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if port_file.exists() and port_file.read_text().strip():
            port = port_file.read_text().splitlines()[0]
            return Chromium(process, f"http://127.0.0.1:{port}")
        if process.poll() is not None:
            raise AssertionError(f"chromium exited with {process.returncode}")
        time.sleep(0.1)
    process.kill()
    raise AssertionError("chromium did not open its DevTools port within 60 s")
