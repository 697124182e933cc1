"""The pods table: one row per pod of the Deployment, with what k9s cannot show.

A Line API widget rather than Textual's `DataTable`: the DataTable keys its render caches on a
table-wide update count, so one changed cell re-renders every visible cell (about 47 ms for 22
rows on the benchmark machine, enough to hold a key press past 50 ms). Here each row is drawn as
one line and kept until its cells, the column widths, its highlight or the styles change: a
snapshot that changes three pods redraws three lines.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar, NamedTuple

from rich.segment import Segment
from rich.style import Style
from rich.text import Text
from textual import events
from textual.binding import Binding, BindingType
from textual.geometry import Size
from textual.scroll_view import ScrollView
from textual.strip import Strip

from tui.core.format import age, millicores, percent_of, share
from tui.core.model import BackendMetrics, ClusterSnapshot, LatencySummary, PodView
from tui.core.sanitize import one_line

NEW_POD_SECONDS = 60.0
"""A pod younger than this is marked new."""

COLUMNS = (
    ("name", "NAME"),
    ("ready", "READY"),
    ("status", "STATUS"),
    ("restarts", "RESTARTS"),
    ("age", "AGE"),
    ("cpu", "CPU"),
    ("memory", "MEM"),
    ("inflight", "INFL"),
    ("share", "SERVED"),
    ("ttft", "TTFT50"),
)
"""CPU and MEM are percent of the pod's requests; INFL the chats in flight in its gateway;
SERVED its share of the chats the cockpit saw answered; TTFT50 their median first token."""

PADDING = 1
"""Blank cells each side of a column."""

Cells = tuple[Text, ...]

HEADER: Cells = tuple(Text(label) for _, label in COLUMNS)


class _LineKey(NamedTuple):
    """Everything a drawn row depends on."""

    cells: tuple[tuple[str, str], ...]
    widths: tuple[int, ...]
    style: Style


class PodsTable(ScrollView, can_focus=True):
    """The Deployment's pods; the highlighted row is the pod that `k` and `K` hit.

    No row is highlighted until the user moves to one (arrow keys or a click), and Escape clears
    the highlight: with none, the kill keys pick a random Ready pod. The header stays in place
    while the rows scroll.
    """

    COMPONENT_CLASSES: ClassVar[set[str]] = {
        "pods-table--header",
        "pods-table--even-row",
        "pods-table--cursor",
    }

    DEFAULT_CSS = """
    PodsTable {
        background: $surface;
        color: $foreground;
        height: auto;
        max-height: 100%;
        & > .pods-table--header {
            text-style: bold;
            background: $panel;
            color: $foreground;
        }
        & > .pods-table--even-row {
            background: $surface-lighten-1 50%;
        }
        & > .pods-table--cursor {
            background: $block-cursor-blurred-background;
            color: $block-cursor-blurred-foreground;
            text-style: $block-cursor-blurred-text-style;
        }
        &:focus {
            background-tint: $foreground 5%;
            & > .pods-table--cursor {
                background: $block-cursor-background;
                color: $block-cursor-foreground;
                text-style: $block-cursor-text-style;
            }
        }
    }
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("up", "cursor_up", "Up", show=False),
        Binding("down", "cursor_down", "Down", show=False),
        Binding("pageup", "page_up", "Page up", show=False),
        Binding("pagedown", "page_down", "Page down", show=False),
        Binding("home", "first", "First pod", show=False),
        Binding("end", "last", "Last pod", show=False),
        Binding("escape", "deselect", "Clear selection", show=False, id="pods.deselect"),
    ]

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.border_title = "Pods"
        self.show_cursor = False
        self.cursor_row = 0
        self._names: list[str] = []
        self._rows: dict[str, Cells] = {}
        self._widths = tuple(len(label) for _, label in COLUMNS)
        self._drawn: dict[str, tuple[_LineKey, Strip]] = {}

    # -- what the app and tests read ----------------------------------------------------------

    @property
    def row_count(self) -> int:
        """Pods listed."""
        return len(self._names)

    @property
    def row_names(self) -> list[str]:
        """The listed pods, top to bottom."""
        return list(self._names)

    def cells(self, name: str) -> Cells:
        """The cells shown for pod `name` (KeyError when it is not listed)."""
        return self._rows[name]

    @property
    def selected_pod(self) -> str | None:
        """The highlighted pod, if the user highlighted one."""
        if not self._names or not self.show_cursor:
            return None
        return self._names[min(self.cursor_row, len(self._names) - 1)]

    # -- keys and mouse -----------------------------------------------------------------------

    def action_cursor_down(self) -> None:
        """Down: highlight the first row, then move down."""
        self._move(self.cursor_row + 1)

    def action_cursor_up(self) -> None:
        """Up: highlight the first row, then move up."""
        self._move(self.cursor_row - 1)

    def action_page_down(self) -> None:
        """Page down: a screenful of rows further."""
        self._move(self.cursor_row + self._page())

    def action_page_up(self) -> None:
        """Page up: a screenful of rows back."""
        self._move(self.cursor_row - self._page())

    def action_first(self) -> None:
        """Home: the first pod."""
        self._move(0, reveal_only=False)

    def action_last(self) -> None:
        """End: the last pod."""
        self._move(len(self._names) - 1, reveal_only=False)

    def action_deselect(self) -> None:
        """Escape: no pod selected (the kill keys then pick a random Ready pod)."""
        if self.show_cursor:
            self.show_cursor = False
            self._refresh_row(self.cursor_row)

    def on_click(self, event: events.Click) -> None:
        """A click highlights the clicked row."""
        offset = event.get_content_offset(self)
        if offset is None or offset.y < 1:
            return
        row = int(self.scroll_offset.y) + offset.y - 1
        if 0 <= row < len(self._names):
            self.show_cursor = True
            self._set_cursor(row)

    def _page(self) -> int:
        return max(1, self.size.height - 2)

    def _move(self, row: int, *, reveal_only: bool = True) -> None:
        """Move the highlight to `row`; the first move only shows it where it is."""
        if not self._names:
            return
        if not self.show_cursor:
            self.show_cursor = True
            if reveal_only:
                row = self.cursor_row
        self._set_cursor(row)

    def _set_cursor(self, row: int) -> None:
        before = self.cursor_row
        self.cursor_row = max(0, min(row, len(self._names) - 1))
        self._refresh_row(before)
        self._refresh_row(self.cursor_row)
        self._scroll_to_cursor()

    def _scroll_to_cursor(self) -> None:
        visible = self.size.height - 1  # under the header
        if visible <= 0:
            return
        top = int(self.scroll_offset.y)
        if self.cursor_row < top:
            self.scroll_to(y=self.cursor_row, animate=False)
        elif self.cursor_row >= top + visible:
            self.scroll_to(y=self.cursor_row - visible + 1, animate=False)

    def _refresh_row(self, row: int) -> None:
        if 0 <= row < len(self._names):
            self.refresh_line(row + 1)  # under the header; ScrollView subtracts the scroll

    # -- data ---------------------------------------------------------------------------------

    def show(
        self,
        snapshot: ClusterSnapshot,
        metrics: Mapping[str, BackendMetrics],
        summary: LatencySummary,
        now: float,
    ) -> None:
        """Show the snapshot, keeping the highlight on the same pod where it is still listed."""
        selected = self.selected_pod
        served = dict(summary.served_by)
        total_served = sum(served.values())
        ttft = dict(summary.ttft_p50_by_pod)
        usage = {u.pod: u for u in snapshot.usage}
        no_metrics = "-" if snapshot.metrics_available is False else ""
        pods = sorted(snapshot.pods, key=lambda p: (p.created_at or 0.0, p.name))
        rows: dict[str, Cells] = {}
        for pod in pods:
            used = usage.get(pod.name)
            if used is not None:
                cpu = percent_of(used.cpu_millicores, pod.cpu_request_millicores, millicores)
                memory = percent_of(used.memory_bytes, pod.memory_request_bytes, None)
            else:
                cpu = memory = no_metrics
            backend = metrics.get(pod.name)
            p50 = ttft.get(pod.name)
            rows[pod.name] = (
                self._name_cell(pod, now),
                Text(f"{pod.ready_containers}/{pod.total_containers}"),
                self._status_cell(pod),
                Text(str(pod.restarts)),
                Text(age(pod.created_at, now)),
                Text(cpu),
                Text(memory),
                Text("" if backend is None else f"{backend.inflight:g}"),
                Text(share(served.get(pod.name, 0), total_served)),
                Text("" if p50 is None else f"{p50 * 1000:.0f} ms"),
            )
        names = list(rows)
        widths = tuple(
            max([len(label)] + [cells[index].cell_len for cells in rows.values()])
            for index, (_, label) in enumerate(COLUMNS)
        )
        if names != self._names:
            if selected is not None and selected in rows:
                self.cursor_row = names.index(selected)
            else:
                # The highlighted pod left: stay on the same row number, not the top.
                self.cursor_row = max(0, min(self.cursor_row, len(names) - 1))
        for gone in self._drawn.keys() - rows.keys() - {""}:
            del self._drawn[gone]
        changed = [
            row
            for row, name in enumerate(names)
            if [(c.plain, c.style) for c in rows[name]]
            != [(c.plain, c.style) for c in self._rows.get(name, ())]
        ]
        whole = names != self._names or widths != self._widths
        self._names, self._rows, self._widths = names, rows, widths
        if whole:
            self._size_to_rows()
            self.refresh()
        else:
            for row in changed:
                self._refresh_row(row)

    def on_mount(self) -> None:
        """The header shows from the start, before any pod is known."""
        self._size_to_rows()

    def _size_to_rows(self) -> None:
        width = sum(self._widths) + 2 * PADDING * len(self._widths)
        self.virtual_size = Size(width, len(self._names) + 1)

    # -- drawing ------------------------------------------------------------------------------

    def render_line(self, y: int) -> Strip:
        """Line `y` of the widget: the header, then the rows from the scroll position."""
        scroll_x, scroll_y = self.scroll_offset
        width = self.size.width
        base = self.rich_style
        if y == 0:
            header = self.get_component_rich_style("pods-table--header")
            strip = self._line("", HEADER, base + header)
        else:
            row = int(scroll_y) + y - 1
            if row >= len(self._names):
                return Strip.blank(width, base)
            style = base
            if row % 2 == 1:
                style += self.get_component_rich_style("pods-table--even-row")
            if self.show_cursor and row == self.cursor_row:
                style += self.get_component_rich_style("pods-table--cursor")
            name = self._names[row]
            strip = self._line(name, self._rows[name], style)
        return strip.crop_extend(int(scroll_x), int(scroll_x) + width, base)

    def _line(self, name: str, cells: Cells, style: Style) -> Strip:
        """The drawn line of `cells` (the row of pod `name`, or "" for the header), drawn
        again only when what it shows changed."""
        key = _LineKey(tuple((c.plain, str(c.style)) for c in cells), self._widths, style)
        drawn = self._drawn.get(name)
        if drawn is not None and drawn[0] == key:
            return drawn[1]
        strip = self._draw(cells, style)
        self._drawn[name] = (key, strip)
        return strip

    def _draw(self, cells: Cells, style: Style) -> Strip:
        """One line of `cells` padded to the column widths, over `style`."""
        line = Text(no_wrap=True, end="")
        pad = " " * PADDING
        for cell, width in zip(cells, self._widths, strict=True):
            fitted = cell.copy()
            fitted.truncate(width, overflow="ellipsis", pad=True)
            line.append(pad)
            line.append_text(fitted)
            line.append(pad)
        segments = Segment.apply_style(line.render(self.app.console), style)
        return Strip(list(segments), line.cell_len)

    # -- cells --------------------------------------------------------------------------------

    def _name_cell(self, pod: PodView, now: float) -> Text:
        name = one_line(pod.name, 63)
        if pod.terminating:
            return Text(f"✖ {name}", style="strike dim")
        if pod.created_at is not None and now - pod.created_at < NEW_POD_SECONDS:
            return Text(f"✚ {name}", style="bold")
        return Text(f"  {name}")

    def _status_cell(self, pod: PodView) -> Text:
        status = one_line(pod.status, 30)
        variables = self.app.theme_variables
        if pod.terminating:
            return Text(status, style=variables.get("warning", "yellow"))
        if pod.ready:
            return Text(status, style=variables.get("success", "green"))
        if "BackOff" in status or "Err" in status or pod.phase == "Failed":
            return Text(status, style=variables.get("error", "red"))
        return Text(status, style=variables.get("accent", "cyan"))
