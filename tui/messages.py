"""Messages shared by the cockpit's widgets: what the session reports, posted to the app."""

from __future__ import annotations

from dataclasses import dataclass

from textual.message import Message

from tui.model import BackendMetrics, ClusterEvent, ClusterSnapshot, RecoveryTimeline


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
class BackendMetricsArrived(Message):
    """A pod's gateway counters were scraped."""

    metrics: BackendMetrics


@dataclass
class RecoveryCompleted(Message):
    """A kill's recovery timeline is complete."""

    timeline: RecoveryTimeline


@dataclass
class CockpitNote(Message):
    """Something the cockpit did or noticed."""

    text: str
    severity: str = "information"
