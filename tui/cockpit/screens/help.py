"""The help screen (`?`): every key, and what the panels mean."""

from __future__ import annotations

from typing import ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

from kube_llm_data import version

PANELS = """\
Pods     one row per pod of the Deployment: ready containers, STATUS as kubectl shows it,
         restarts, age, CPU and memory against the pod's requests (metrics.k8s.io),
         chats in flight (its /metrics), its share of the chats served, their TTFT p50.
         ✚ marks a pod younger than a minute, ✖ a pod that is terminating.
HPA      current → desired replicas, each metric against its target, the conditions,
         one line saying why it is or is not scaling, and the replicas over 10 minutes.
Latency  health p50/p99 (GET /healthz every second through the Service), chat TTFT and
         end-to-end p50/p95, tokens/s, requests/s, chats shed (429) and failed by kind.
Chat     a conversation through the Service; under each reply the pod that served it.
Events   Kubernetes events, what the cockpit did, and each kill's recovery timeline."""


class HelpScreen(ModalScreen[None]):
    """Keys and panels; any of Escape, q or ? closes it."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,q,question_mark", "dismiss", "Close", id="help.close"),
    ]

    def __init__(self, keys: list[tuple[str, str]], read_only: bool) -> None:
        super().__init__()
        self.keys = keys
        self.read_only = read_only

    def compose(self) -> ComposeResult:
        """The key table and the panel notes."""
        lines = [f"  {key:<10} {description}" for key, description in self.keys]
        if self.read_only:
            lines.append("  (read-only: the keys that kill pods or send load are off)")
        text = Text(f"kube-llm {version()}\n\n", style="bold")
        text.append("Keys\n", style="bold")
        text.append("\n".join(lines) + "\n\n")
        text.append("Panels\n", style="bold")
        text.append(PANELS)
        with VerticalScroll(id="help-body"):
            yield Static(text)

    def action_dismiss(self, result: None = None) -> None:  # type: ignore[override]
        """Close the help."""
        self.dismiss(result)
