"""Stand-ins for the cockpit that `kube-llm web` runs per browser session (tests/web).

`calm` is a real Textual app, run with the driver textual-serve chose (`TEXTUAL_DRIVER`, the
WebDriver): it draws a line and quits when the server sends "quit", as the cockpit does.
`deaf` is what a trial saw after a browser vanished: a process that said it was a Textual app
(the `__GANGLION__` line Textual's WebDriver writes first, textual/drivers/web_driver.py), then
spins at full CPU and ignores its input, SIGTERM and SIGINT.
"""

from __future__ import annotations

import signal
import sys

from textual.app import App, ComposeResult
from textual.widgets import Static


class Calm(App[None]):
    """A small Textual app."""

    def compose(self) -> ComposeResult:
        yield Static("calm app: here")


def deaf() -> None:
    """Announce a Textual app, then spin deaf to everything but SIGKILL."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    sys.stdout.write("__GANGLION__\n")
    sys.stdout.flush()
    while True:
        pass


if __name__ == "__main__":
    if sys.argv[1:] == ["deaf"]:
        deaf()
    else:
        Calm().run()
