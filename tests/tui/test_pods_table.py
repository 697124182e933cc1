"""The pods table as a user drives it: many pods, scrolling, clicks, redrawing what changed."""

from __future__ import annotations

from dataclasses import replace

from textual.pilot import Pilot

from tests.tui.scripted import Rig, pod, rig, snapshot
from tests.tui.test_app import SIZE, wait_until
from tui.cockpit.widgets import PodsTable
from tui.core.model import ClusterSnapshot

NAMES = [f"llm-backend-5d8f-p{index:03d}" for index in range(40)]


def many_pods(restarts_of_fifth: int = 0) -> ClusterSnapshot:
    """40 pods, oldest first (the table's order); the fifth with the given restarts."""
    return snapshot(
        *(
            pod(name, age=4000.0 - index, restarts=restarts_of_fifth if index == 4 else 0)
            for index, name in enumerate(NAMES)
        )
    )


def screen_lines(table: PodsTable) -> list[str]:
    """The table's lines as they are drawn now (header first)."""
    return ["".join(s.text for s in table.render_line(y)) for y in range(table.size.height)]


async def showing_all(pilot: Pilot[int], made: Rig) -> PodsTable:
    """The app connected, then told of 40 pods, and showing them."""
    await wait_until(pilot, lambda: made.app.session is not None and made.clusters)
    made.cluster.push(many_pods())
    table = made.app.query_one(PodsTable)
    await wait_until(pilot, lambda: table.row_count == len(NAMES), timeout=10)
    await pilot.pause()
    return table


async def test_the_highlight_scrolls_into_view_and_the_header_stays() -> None:
    made = rig()
    async with made.app.run_test(size=SIZE) as pilot:
        table = await showing_all(pilot, made)
        visible = table.size.height - 1
        assert 0 < visible < len(NAMES), "the test needs more pods than fit"
        await pilot.press("end")
        assert table.selected_pod == NAMES[-1]
        lines = screen_lines(table)
        assert lines[0].split()[0] == "NAME"
        assert any(NAMES[-1] in line for line in lines[1:])
        assert not any(NAMES[0] in line for line in lines[1:])
        await pilot.press("home")
        assert table.selected_pod == NAMES[0]
        assert NAMES[0] in screen_lines(table)[1]
        await pilot.press("pagedown")
        assert table.selected_pod == NAMES[visible - 1]
        assert any(NAMES[visible - 1] in line for line in screen_lines(table)[1:])


async def test_the_first_key_shows_the_highlight_and_escape_clears_it() -> None:
    made = rig()
    async with made.app.run_test(size=SIZE) as pilot:
        table = await showing_all(pilot, made)
        assert table.selected_pod is None
        await pilot.press("down")
        assert table.selected_pod == NAMES[0], "the first press highlights the first pod"
        await pilot.press("down", "down")
        assert table.selected_pod == NAMES[2]
        await pilot.press("escape")
        assert table.selected_pod is None


async def test_a_click_highlights_the_clicked_pod() -> None:
    made = rig()
    async with made.app.run_test(size=SIZE) as pilot:
        table = await showing_all(pilot, made)
        # The border is one line, then the header: the third row is 4 lines down.
        await pilot.click(PodsTable, offset=(4, 4))
        assert table.selected_pod == NAMES[2]
        await pilot.click(PodsTable, offset=(4, 1))  # the header selects nothing new
        assert table.selected_pod == NAMES[2]


async def test_the_highlight_follows_its_pod_when_others_leave() -> None:
    made = rig()
    async with made.app.run_test(size=SIZE) as pilot:
        table = await showing_all(pilot, made)
        await pilot.press("down", "down", "down", "down")
        assert table.selected_pod == NAMES[3]
        made.cluster.push(replace(many_pods(), pods=many_pods().pods[2:]))
        await wait_until(pilot, lambda: table.row_count == len(NAMES) - 2, timeout=10)
        assert table.selected_pod == NAMES[3]


async def test_a_changed_pod_redraws_its_row_only() -> None:
    made = rig()
    async with made.app.run_test(size=SIZE) as pilot:
        table = await showing_all(pilot, made)
        drawn: list[str] = []
        draw = table._draw

        def counting(cells: tuple[object, ...], style: object) -> object:
            drawn.append(cells[0].plain)  # type: ignore[attr-defined]
            return draw(cells, style)  # type: ignore[arg-type]

        table._draw = counting  # type: ignore[assignment,method-assign]
        made.cluster.push(many_pods(restarts_of_fifth=3))
        await wait_until(pilot, lambda: table.cells(NAMES[4])[3].plain == "3", timeout=10)
        await pilot.pause()
        assert any(NAMES[4] in line for line in screen_lines(table))
        assert [name.strip() for name in drawn] == [NAMES[4]] * len(drawn)
        assert drawn, "the changed row was drawn again"
