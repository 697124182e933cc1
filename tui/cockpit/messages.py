"""Messages shared by the cockpit's widgets: what the session reports, posted to the app."""

from __future__ import annotations

from dataclasses import dataclass

from textual.message import Message
from textual.message_pump import MessagePump

from tui.core.model import BackendMetrics, ClusterEvent, ClusterSnapshot, RecoveryTimeline


@dataclass
class SnapshotArrived(Message):
    """The cluster changed; only the newest waiting snapshot matters."""

    snapshot: ClusterSnapshot

    def can_replace(self, message: Message) -> bool:
        """A newer snapshot replaces an older one still in the queue."""
        return isinstance(message, SnapshotArrived)


@dataclass
class ClusterEventArrived(Message):
    """A Kubernetes event about the Deployment, its pods or the HPA."""

    event: ClusterEvent


@dataclass
class RecoveryCompleted(Message):
    """A kill's recovery timeline is complete."""

    timeline: RecoveryTimeline


@dataclass
class CockpitNote(Message):
    """Something the cockpit did or noticed."""

    text: str
    severity: str = "information"


class SessionMessages:
    """The app as the session's `SessionSink`: each report becomes a message to the app."""

    def __init__(self, app: MessagePump) -> None:
        self.app = app

    def snapshot(self, snapshot: ClusterSnapshot) -> None:
        """The cluster changed."""
        self.app.post_message(SnapshotArrived(snapshot))

    def cluster_event(self, event: ClusterEvent) -> None:
        """A Kubernetes event arrived."""
        self.app.post_message(ClusterEventArrived(event))

    def backend_metrics(self, metrics: BackendMetrics) -> None:
        """A pod's gateway counters were scraped."""
        # Nothing to post: the pods table reads the session's latest metrics when it redraws.

    def recovery(self, timeline: RecoveryTimeline) -> None:
        """A recovery timeline completed."""
        self.app.post_message(RecoveryCompleted(timeline))

    def note(self, text: str, severity: str = "information") -> None:
        """Something the cockpit did or noticed."""
        self.app.post_message(CockpitNote(text, severity))
