"""The cockpit's widgets, one per module; they only render and forward keys."""

from tui.widgets.chat_pane import ChatPane, ChatTurn
from tui.widgets.event_log import EventLog
from tui.widgets.hpa_panel import HpaPanel
from tui.widgets.latency_panel import LatencyPanel
from tui.widgets.pods_table import PodsTable
from tui.widgets.status_line import StatusLine

__all__ = [
    "ChatPane",
    "ChatTurn",
    "EventLog",
    "HpaPanel",
    "LatencyPanel",
    "PodsTable",
    "StatusLine",
]
