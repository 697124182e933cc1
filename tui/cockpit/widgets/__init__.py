"""The cockpit's widgets, one per module; they only render and forward keys."""

from tui.cockpit.widgets.chat_pane import ChatPane, ChatTurn
from tui.cockpit.widgets.event_log import EventLog
from tui.cockpit.widgets.hpa_panel import HpaPanel
from tui.cockpit.widgets.latency_panel import LatencyPanel
from tui.cockpit.widgets.pods_table import PodsTable
from tui.cockpit.widgets.status_line import StatusLine

__all__ = [
    "ChatPane",
    "ChatTurn",
    "EventLog",
    "HpaPanel",
    "LatencyPanel",
    "PodsTable",
    "StatusLine",
]
