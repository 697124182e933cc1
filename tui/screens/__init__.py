"""The cockpit's modal screens."""

from tui.screens.confirm import ConfirmScreen
from tui.screens.help import HelpScreen

__all__ = ["ConfirmScreen", "HelpScreen"]
