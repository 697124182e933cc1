"""SVG snapshots of the cockpit's main states (pytest-textual-snapshot, Textual pinned).

Every number on screen comes from the scripted cluster and gateway and a fixed clock, so a
snapshot changes only when the screen does. `pytest --snapshot-update` rewrites them after a
deliberate change; look at the report it makes before committing new ones.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from textual.pilot import Pilot
from textual.widgets import Input

from tests.tui.scripted import TWO_PODS, Rig, ScriptedGateway, pod, rig, snapshot
from tests.tui.test_app import wait_until
from tui.cockpit.widgets import ChatPane, PodsTable
from tui.core.model import Connection

SIZE = (150, 44)
Compare = Callable[..., bool]


def steady(
    made: Rig, then: Callable[[Pilot[Any]], Any] | None = None
) -> Callable[[Pilot[Any]], Any]:
    """Wait for the first snapshot, turn the input's cursor blink off, then run `then`."""

    async def run_before(pilot: Pilot[Any]) -> None:
        made.app.query_one("#chat-input", Input).cursor_blink = False
        await wait_until(pilot, lambda: made.clusters and made.app.query_one(PodsTable).row_count)
        if then is not None:
            await then(pilot)
        made.app._refresh_panels()
        await pilot.pause()

    return run_before


def test_connecting(snap_compare: Compare) -> None:
    made = rig(connecting=True)

    async def run_before(pilot: Pilot[Any]) -> None:
        made.app.query_one("#chat-input", Input).cursor_blink = False
        await wait_until(pilot, lambda: "starting the sandbox" in made.app.snapshot.detail)

    assert snap_compare(made.app, terminal_size=SIZE, run_before=run_before)


def test_two_pods_ready(snap_compare: Compare) -> None:
    made = rig()
    assert snap_compare(made.app, terminal_size=SIZE, run_before=steady(made))


def test_pod_terminating_and_its_replacement_starting(snap_compare: Compare) -> None:
    made = rig()

    async def kill(pilot: Pilot[Any]) -> None:
        await pilot.press("down", "k")
        await wait_until(pilot, lambda: made.cluster.evicted)
        made.cluster.push(
            snapshot(
                pod("llm-backend-5d8f-abcde", deleting=True),
                pod("llm-backend-5d8f-fghij", age=840),
                pod("llm-backend-5d8f-kq7wz", age=2, ready=False, status="Init:1/2"),
            )
        )
        await pilot.pause()

    assert snap_compare(made.app, terminal_size=SIZE, run_before=steady(made, kill))


def test_burst_running(snap_compare: Compare) -> None:
    gateway = ScriptedGateway(hold=asyncio.Event())
    made = rig(gateway=gateway)

    async def burst(pilot: Pilot[Any]) -> None:
        await pilot.press("l")
        await wait_until(pilot, lambda: len(gateway.chats) == 10)

    assert snap_compare(made.app, terminal_size=SIZE, run_before=steady(made, burst))


def test_chat_reply(snap_compare: Compare) -> None:
    made = rig()

    async def chat(pilot: Pilot[Any]) -> None:
        await pilot.press("c", *"What keeps you running?", "enter")
        pane = made.app.query_one(ChatPane)
        await wait_until(pilot, lambda: made.gateway.chats and pane.current is None)

    assert snap_compare(made.app, terminal_size=SIZE, run_before=steady(made, chat))


def test_api_unreachable(snap_compare: Compare) -> None:
    made = rig()

    async def unreachable(pilot: Pilot[Any]) -> None:
        made.cluster.push(
            replace(
                TWO_PODS,
                connection=Connection.RETRYING,
                detail="retrying in 8 s: cannot connect to 127.0.0.1:6443 (connection refused)",
            )
        )
        await pilot.pause()

    assert snap_compare(made.app, terminal_size=SIZE, run_before=steady(made, unreachable))
