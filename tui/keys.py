"""The cockpit's key map: the bindings, the help's key table, and which actions are destructive."""

from __future__ import annotations

from textual.binding import Binding, BindingType

DESTRUCTIVE = frozenset({"kill", "burst", "sustained", "burst_size"})
"""Actions that kill pods or send load: gone with --read-only, confirmed once off the sandbox."""

BINDINGS: list[BindingType] = [
    Binding(
        "k",
        "kill(False)",
        "Evict pod",
        id="evict",
        tooltip="Evict the selected pod (else a random Ready one); the PDB may refuse",
    ),
    Binding(
        "K",
        "kill(True)",
        "Force delete",
        id="force-delete",
        tooltip="FORCE delete a pod with grace period 0: its streams are cut",
    ),
    Binding("l", "burst", "Burst", id="burst", tooltip="N users x 3 chats at once"),
    Binding("L", "sustained", "Sustained", id="sustained", tooltip="Sustained load on or off"),
    Binding("plus,equals_sign", "burst_size(1)", "+user", id="burst-bigger", show=False),
    Binding("minus", "burst_size(-1)", "-user", id="burst-smaller", show=False),
    Binding(
        "r",
        "report",
        "Report",
        id="report",
        tooltip="Write a report (Markdown, JSON, chart) of what the cockpit has seen",
    ),
    Binding("c,slash", "focus_chat", "Chat", id="chat"),
    Binding("question_mark", "help", "Help", id="help"),
    Binding("q", "quit", "Quit", id="quit"),
    Binding("ctrl+c", "quit", "Quit", id="quit-ctrl-c", show=False, priority=True),
]

KEYS_HELP: list[tuple[str, str, str]] = [
    (
        "k",
        "evict a pod (the selected one, else a random Ready one; the PDB may refuse)",
        "kill",
    ),
    ("K", "FORCE delete a pod (grace period 0: its open streams are cut)", "kill"),
    ("l", "load burst: N users x 3 chats (N is the burst size)", "burst"),
    ("L", "sustained load on/off", "sustained"),
    ("+ / -", "burst size up / down", "burst_size"),
    ("r", "write a report of what the cockpit has seen so far (reports/)", "report"),
    ("c or /", "type a chat message (Enter sends, Escape stops a reply)", "chat"),
    ("↑ ↓ PgUp PgDn Home End", "select a pod in the table (Escape clears the selection)", "select"),
    ("ctrl+p", "command palette", "palette"),
    ("?", "this help", "help"),
    ("q", "quit (stops the load, and the sandbox when `make demo` started it)", "quit"),
]
"""(key, what it does, action) for the help screen; the action decides --read-only hiding."""
