"""The cockpit's keys, once: each key's action and its words, which the footer (the bindings),
the `?` help and the command palette all read.

The table is plain data; `bindings()` turns it into Textual's `Binding`s.
"""

from __future__ import annotations

from dataclasses import dataclass

from textual.binding import Binding, BindingType


@dataclass(frozen=True)
class CockpitKey:
    """One of the cockpit's keys and the words each place shows for it."""

    keys: str
    """Textual's key names, comma-separated; empty for a key bound elsewhere (a widget's, or
    Textual's own) that the help still explains."""
    action: str
    """The action, with its arguments (`kill(False)`); its name (`kill`) decides read-only."""
    help: str
    """The help screen's line (and the palette's, after the key)."""
    shown_as: str = ""
    """How the help writes the key (`c or /`); empty: not in the help."""
    label: str = ""
    """The footer's word(s)."""
    id: str = ""
    tooltip: str = ""
    footer: bool = True
    """Whether the footer shows the key."""
    priority: bool = False
    palette: str = ""
    """The command palette's title; empty: not in the palette."""
    destructive: bool = False
    """Kills pods or sends load: gone with --read-only, confirmed once off the sandbox."""

    @property
    def action_name(self) -> str:
        """The action without its arguments."""
        return self.action.partition("(")[0]


KEYS: tuple[CockpitKey, ...] = (
    CockpitKey(
        "k",
        "kill(False)",
        "evict a pod (the selected one, else a random Ready one; the PDB may refuse)",
        shown_as="k",
        label="Evict pod",
        id="evict",
        tooltip="Evict the selected pod (else a random Ready one); the PDB may refuse",
        palette="Evict a pod",
        destructive=True,
    ),
    CockpitKey(
        "K",
        "kill(True)",
        "FORCE delete a pod (grace period 0: its open streams are cut)",
        shown_as="K",
        label="Force delete",
        id="force-delete",
        tooltip="FORCE delete a pod with grace period 0: its streams are cut",
        palette="Force delete a pod (grace 0)",
        destructive=True,
    ),
    CockpitKey(
        "l",
        "burst",
        "load burst: N users x 3 chats (N is the burst size)",
        shown_as="l",
        label="Burst",
        id="burst",
        tooltip="N users x 3 chats at once",
        palette="Load burst",
        destructive=True,
    ),
    CockpitKey(
        "L",
        "sustained",
        "sustained load on/off",
        shown_as="L",
        label="Sustained",
        id="sustained",
        tooltip="Sustained load on or off",
        palette="Sustained load on/off",
        destructive=True,
    ),
    CockpitKey(
        "plus,equals_sign",
        "burst_size(1)",
        "burst size up / down",
        shown_as="+ / -",
        label="+user",
        id="burst-bigger",
        footer=False,
        destructive=True,
    ),
    CockpitKey(
        "minus",
        "burst_size(-1)",
        "burst size down",
        label="-user",
        id="burst-smaller",
        footer=False,
        destructive=True,
    ),
    CockpitKey(
        "r",
        "report",
        "write a report of what the cockpit has seen so far (reports/)",
        shown_as="r",
        label="Report",
        id="report",
        tooltip="Write a report (Markdown, JSON, chart) of what the cockpit has seen",
        palette="Write report",
    ),
    CockpitKey(
        "c,slash",
        "focus_chat",
        "type a chat message (Enter sends, Escape stops a reply)",
        shown_as="c or /",
        label="Chat",
        id="chat",
    ),
    CockpitKey(
        "",
        "select",
        "select a pod in the table (Escape clears the selection)",
        shown_as="↑ ↓ PgUp PgDn Home End",
    ),
    CockpitKey("", "palette", "command palette", shown_as="ctrl+p"),
    CockpitKey(
        "question_mark",
        "help",
        "this help",
        shown_as="?",
        label="Help",
        id="help",
        palette="Help",
    ),
    CockpitKey(
        "q",
        "quit",
        "quit (stops the load, and the sandbox when `make demo` started it)",
        shown_as="q",
        label="Quit",
        id="quit",
    ),
    CockpitKey(
        "ctrl+c", "quit", "quit", label="Quit", id="quit-ctrl-c", footer=False, priority=True
    ),
)

DESTRUCTIVE = frozenset(key.action_name for key in KEYS if key.destructive)
"""Actions that kill pods or send load: gone with --read-only, confirmed once off the sandbox."""


def bindings() -> list[BindingType]:
    """The app's bindings (what the footer shows), from the table."""
    return [
        Binding(
            key.keys,
            key.action,
            key.label,
            show=key.footer,
            priority=key.priority,
            id=key.id or None,
            tooltip=key.tooltip,
        )
        for key in KEYS
        if key.keys
    ]


def help_rows(*, read_only: bool) -> list[tuple[str, str]]:
    """(key, what it does) for the help screen; --read-only leaves out the destructive keys."""
    return [
        (key.shown_as, key.help)
        for key in KEYS
        if key.shown_as and not (read_only and key.destructive)
    ]


def palette_keys(*, read_only: bool) -> list[CockpitKey]:
    """The keys the command palette offers; --read-only leaves out the destructive ones."""
    return [key for key in KEYS if key.palette and not (read_only and key.destructive)]
