"""Confirmation before the first destructive action on a real cluster (T2)."""

from __future__ import annotations

from typing import ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Static

from tui.core.sanitize import one_line


class ConfirmScreen(ModalScreen[bool]):
    """Ask once per session before killing pods or sending load off the sandbox."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("y", "answer(True)", "Yes", id="confirm.yes"),
        Binding("n,escape", "answer(False)", "No", id="confirm.no"),
    ]

    def __init__(self, what: str, context: str) -> None:
        super().__init__()
        self.what = what
        self.context = context

    def compose(self) -> ComposeResult:
        """The question and two buttons."""
        with Vertical(id="confirm-box"):
            yield Static(
                Text.assemble(
                    (f"{one_line(self.what, 200)}\n\n", "bold"),
                    "on the context ",
                    (one_line(self.context, 100), "bold"),
                    ", which is not the kube-llm sandbox.\n",
                    "This affects a real cluster. Allow destructive actions for this session?",
                )
            )
            with Horizontal(id="confirm-buttons"):
                yield Button("Yes (y)", id="yes", variant="error")
                yield Button("No (n)", id="no", variant="primary")

    def on_mount(self) -> None:
        """Default to No."""
        self.query_one("#no", Button).focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        """Answer with the button."""
        self.dismiss(event.button.id == "yes")

    def action_answer(self, answer: bool) -> None:
        """Answer with a key."""
        self.dismiss(answer)
