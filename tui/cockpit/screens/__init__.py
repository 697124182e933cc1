"""The cockpit's modal screens."""

from tui.cockpit.screens.confirm import ConfirmScreen
from tui.cockpit.screens.help import HelpScreen

__all__ = ["ConfirmScreen", "HelpScreen"]
