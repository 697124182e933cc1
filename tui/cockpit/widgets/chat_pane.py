"""The chat pane: a conversation with the Service, streamed, with who served each reply.

Replies are model output, so they are shown as literal text (sanitised, in a `Text`), never as
Markdown: a Markdown reply could carry links, and T1 says a reply must not create one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical, VerticalScroll
from textual.message import Message
from textual.widgets import Input, Static

from tui.core.format import seconds
from tui.core.model import ChatSample, Outcome
from tui.core.sanitize import multi_line, one_line

PLACEHOLDER = "Ask the model (Enter sends, Escape stops a reply or leaves the box)"


def reply_footer(sample: ChatSample) -> str:
    """The line under a reply: who served it, how soon, how fast (or what went wrong)."""
    pod = one_line(sample.pod or "unknown pod", 63)
    if sample.outcome is Outcome.OK:
        rate = sample.tokens_per_second
        unit = "tok/s" if sample.tokens_from_usage else "chunks/s"
        speed = "" if rate is None else f" · {rate:.0f} {unit}"
        return f"served by {pod} · TTFT {seconds(sample.ttft)}{speed} · {seconds(sample.e2e)}"
    kind = one_line(sample.error_kind or sample.outcome.value, 40)
    if sample.error_kind == "cancelled":
        return f"stopped · {pod} · after {seconds(sample.e2e)}"
    if sample.outcome is Outcome.SHED:
        return f"shed (429): the gateway had no room · {pod}"
    status = f" {sample.status}" if sample.status else ""
    return f"failed:{status} {kind} · {pod}"


class ChatTurn(Vertical):
    """One prompt and its streamed reply."""

    def __init__(self, prompt: str) -> None:
        super().__init__(classes="turn")
        self.prompt = prompt
        self.reply = ""

    def compose(self) -> ComposeResult:
        """The prompt, the reply as it streams, and the footer once it ends."""
        yield Static(Text(multi_line(self.prompt)), classes="prompt")
        yield Static(Text("…"), classes="reply")
        yield Static(Text(""), classes="reply-footer")

    def append(self, text: str) -> None:
        """Add streamed text to the reply."""
        self.reply += text
        self.query_one(".reply", Static).update(Text(multi_line(self.reply)))

    def finish(self, sample: ChatSample) -> None:
        """Show who served the reply, its TTFT and speed (or the failure)."""
        if not self.reply:
            self.query_one(".reply", Static).update(Text("(no reply)", style="dim"))
        footer = self.query_one(".reply-footer", Static)
        footer.update(Text(reply_footer(sample), style="dim italic"))
        if sample.outcome is not Outcome.OK:
            footer.add_class("failed")


class ChatPane(Vertical):
    """The conversation and the box to type in."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "stop", "Stop reply", id="chat.stop", tooltip="Stop the reply or leave"),
    ]

    @dataclass
    class Asked(Message):
        """The user sent a prompt."""

        prompt: str

    @dataclass
    class StopRequested(Message):
        """The user pressed Escape in the chat pane."""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.border_title = "Chat"
        self.current: ChatTurn | None = None
        self._pending: list[str] = []
        self._flush_scheduled = False

    def compose(self) -> ComposeResult:
        """The turns, then the input box."""
        yield VerticalScroll(id="chat-log")
        yield Input(placeholder=PLACEHOLDER, id="chat-input", max_length=4000)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        """Send a non-empty prompt unless a reply is still streaming."""
        event.stop()
        prompt = event.value.strip()
        if not prompt:
            return
        if self.current is not None:
            self.notify("A reply is still streaming: Escape stops it.", severity="warning")
            return
        event.input.value = ""
        self.post_message(self.Asked(prompt))

    def start_turn(self, prompt: str) -> ChatTurn:
        """Add a turn for a prompt; its reply streams into it."""
        turn = ChatTurn(prompt)
        self.current = turn
        log = self.query_one("#chat-log", VerticalScroll)
        log.mount(turn)
        log.scroll_end(animate=False)
        return turn

    def stream(self, text: str) -> None:
        """Add streamed text to the current reply, shown at most every 50 ms.

        Tokens come faster than a screen needs; redrawing the reply for each would cost more
        than the reply itself.
        """
        self._pending.append(text)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self.set_timer(0.05, self._flush)

    def _flush(self) -> None:
        self._flush_scheduled = False
        if self._pending and self.current is not None:
            self.current.append("".join(self._pending))
            self.query_one("#chat-log", VerticalScroll).scroll_end(animate=False)
        self._pending.clear()

    def finish(self, sample: ChatSample) -> None:
        """End the current turn with its sample (what is still pending is shown first)."""
        self._flush()
        if self.current is not None:
            self.current.finish(sample)
            self.current = None
            self.query_one("#chat-log", VerticalScroll).scroll_end(animate=False)

    def action_stop(self) -> None:
        """Escape: stop the streaming reply, or give the focus back to the pods table."""
        self.post_message(self.StopRequested())
