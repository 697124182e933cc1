"""The cockpit's keys and flows, driven with Textual's Pilot over a scripted cluster and gateway."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest
from textual.pilot import Pilot
from textual.widgets import Input

from kube_llm_data import version
from tests.tui.scripted import NOW, TWO_PODS, Rig, ScriptedGateway, hpa, pod, rig, snapshot
from tui.cockpit.screens import ConfirmScreen, HelpScreen
from tui.cockpit.widgets import ChatPane, ChatTurn, EventLog, PodsTable, StatusLine
from tui.core.model import ClusterEvent, Condition, Connection, HealthSample
from tui.core.sanitize import multi_line

SIZE = (160, 48)


async def wait_until(
    pilot: Pilot[int], predicate: Callable[[], object], timeout: float = 5.0
) -> None:
    """Let the app run until `predicate()` is truthy (no bare sleeps)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {predicate}")
        await pilot.pause(0.02)


def log_text(made: Rig) -> str:
    """Everything the event log shows."""
    log = made.app.query_one(EventLog)
    return "\n".join(strip.text for strip in log.lines)


def status_text(made: Rig) -> str:
    """What the status line shows."""
    return str(made.app.query_one(StatusLine).render())


def notices(made: Rig) -> list[str]:
    """The notices (toasts) raised so far."""
    return [n.message for n in made.app._notifications]


async def connected(pilot: Pilot[int], made: Rig) -> None:
    """Wait until the session is up and the first snapshot is on screen."""
    await wait_until(pilot, lambda: made.app.session is not None and made.clusters)
    await wait_until(pilot, lambda: made.app.query_one(PodsTable).row_count == 2)


async def test_pods_table_shows_the_deployment() -> None:
    made = rig()
    async with made.app.run_test(size=SIZE) as pilot:
        await connected(pilot, made)
        table = made.app.query_one(PodsTable)
        first = [cell.plain for cell in table.cells("llm-backend-5d8f-abcde")]
        assert first[1:5] == ["2/2", "Running", "0", "15m"]
        # CPU and memory against the requests: 35m of 350m, 150Mi of 640Mi.
        assert first[5:7] == ["10%", "23%"]
        assert table.selected_pod is None, "no pod is selected until the user picks one"


async def test_k_evicts_the_selected_pod() -> None:
    made = rig()
    async with made.app.run_test(size=SIZE) as pilot:
        await connected(pilot, made)
        await pilot.press("down", "down", "k")
        await wait_until(pilot, lambda: made.cluster.evicted)
        assert made.cluster.evicted == ["llm-backend-5d8f-fghij"]
        assert made.cluster.deleted == []
        await wait_until(pilot, lambda: "evicted llm-backend-5d8f-fghij" in log_text(made))


async def test_k_without_a_selection_evicts_a_random_ready_pod() -> None:
    terminating = pod("llm-backend-5d8f-zzzzz", deleting=True)
    first = snapshot(
        pod("llm-backend-5d8f-abcde"), pod("llm-backend-5d8f-fghij", ready=False), terminating
    )
    made = rig(first=first)
    async with made.app.run_test(size=SIZE) as pilot:
        await wait_until(
            pilot, lambda: made.clusters and made.app.query_one(PodsTable).row_count == 3
        )
        await pilot.press("k")
        await wait_until(pilot, lambda: made.cluster.evicted)
        # The only Ready pod that is not terminating.
        assert made.cluster.evicted == ["llm-backend-5d8f-abcde"]


async def test_shift_k_force_deletes_and_says_so() -> None:
    made = rig()
    async with made.app.run_test(size=SIZE) as pilot:
        await connected(pilot, made)
        footer = {
            b.binding.description for b in made.app.active_bindings.values() if b.binding.key == "K"
        }
        assert footer == {"Force delete"}
        await pilot.press("K")
        await wait_until(pilot, lambda: made.cluster.deleted)
        assert made.cluster.evicted == []
        assert "force-deleting (grace 0)" in log_text(made)


async def test_a_pdb_refusal_is_shown_and_nothing_is_killed() -> None:
    made = rig(refuse_evictions=True)
    async with made.app.run_test(size=SIZE) as pilot:
        await connected(pilot, made)
        await pilot.press("k")
        await wait_until(pilot, lambda: "PodDisruptionBudget refused" in log_text(made))
        assert any("disruption budget" in n for n in notices(made))
        assert made.cluster.evicted == []
        # The refusal is a finished timeline with its reason, for the report.
        refused = made.app.session.tracker.completed  # type: ignore[union-attr]
        assert refused
        assert refused[0].refused


async def test_the_replacement_is_followed_to_ready_and_logged() -> None:
    made = rig()
    async with made.app.run_test(size=SIZE) as pilot:
        await connected(pilot, made)
        await pilot.press("down", "k")
        await wait_until(pilot, lambda: made.cluster.evicted)
        victim = made.cluster.evicted[0]
        survivor = "llm-backend-5d8f-fghij"
        made.cluster.push(
            snapshot(
                pod(victim, deleting=True),
                pod(survivor),
                pod("llm-backend-5d8f-new01", age=0.5, ready=False, status="Init:0/2"),
            )
        )
        table = made.app.query_one(PodsTable)
        await wait_until(pilot, lambda: table.row_count == 3)
        names = [table.cells(key)[0].plain for key in table.row_names]
        assert "✖ " + victim in names, names
        assert "✚ llm-backend-5d8f-new01" in names, names
        made.cluster.push(snapshot(pod(survivor), pod("llm-backend-5d8f-new01", age=4.0)))
        made.app.session.tick(NOW + 60)  # type: ignore[union-attr]
        await wait_until(pilot, lambda: "replacement llm-backend-5d8f-new01" in log_text(made))


async def test_burst_runs_the_load_engine_and_fills_the_latency_panel() -> None:
    made = rig()
    async with made.app.run_test(size=SIZE) as pilot:
        await connected(pilot, made)
        await pilot.press("minus", "minus", "minus", "minus", "minus", "minus", "minus")
        assert made.app.session.burst_users == 3  # type: ignore[union-attr]
        await pilot.press("plus")
        assert made.app.session.burst_users == 4  # type: ignore[union-attr]
        await pilot.press("l")
        await wait_until(pilot, lambda: len(made.gateway.chats) >= 12)
        await wait_until(pilot, lambda: "burst done: 12/12" in log_text(made))
        summary = made.app.session.recorder.summary(60, NOW)  # type: ignore[union-attr]
        assert summary.ok == 12
        assert summary.served_by == (("llm-backend-5d8f-abcde", 12),)


async def test_sustained_load_toggles_and_stops_on_quit() -> None:
    gateway = ScriptedGateway(piece_delay=0.01)
    made = rig(gateway=gateway)
    async with made.app.run_test(size=SIZE) as pilot:
        await connected(pilot, made)
        await pilot.press("L")
        session = made.app.session
        assert session is not None
        await wait_until(pilot, lambda: session.load_status.sustained_users == 4)
        made.app._refresh_status()
        assert "sustained 4 users" in status_text(made)
        await pilot.press("L")
        await wait_until(pilot, lambda: session.load_status.sustained_users == 0)
        await pilot.press("L")
        await wait_until(pilot, lambda: session.load_status.in_flight > 0)
        await pilot.press("q")
    # T5: quitting stops the load, closes the stream and the clients.
    assert session.load_status.sustained_users == 0
    assert session.load_status.in_flight == 0
    assert gateway.closed
    assert made.cluster.closed


async def test_r_writes_a_report(tmp_path: Path) -> None:
    made = rig(tmp_path)
    async with made.app.run_test(size=SIZE) as pilot:
        await connected(pilot, made)
        await pilot.press("l")
        await wait_until(pilot, lambda: "burst done" in log_text(made))
        await pilot.press("r")
        await wait_until(pilot, lambda: any("Report written" in n for n in notices(made)))
    reports = list((tmp_path / "reports").glob("*/report.md"))
    assert len(reports) == 1
    assert (reports[0].parent / "report.json").exists()
    assert (reports[0].parent / "timeline.png").exists()
    text = reports[0].read_text()
    assert "30" in text
    assert "llm-backend-5d8f-abcde" in text


async def test_a_report_that_cannot_be_written_is_a_notice(tmp_path: Path) -> None:
    made = rig(tmp_path)
    (tmp_path / "reports").write_text("a file where the folder should be")
    async with made.app.run_test(size=SIZE) as pilot:
        await connected(pilot, made)
        await pilot.press("r")
        await wait_until(pilot, lambda: any("Could not write" in n for n in notices(made)))
        assert made.app.is_running


@pytest.mark.parametrize("read_only", [False, True])
async def test_the_command_palette_offers_the_cockpits_actions(read_only: bool) -> None:
    made = rig(read_only=read_only)
    async with made.app.run_test(size=SIZE) as pilot:
        await connected(pilot, made)
        screen = made.app.screen
        titles = {command.title for command in made.app.get_system_commands(screen)}
        assert {"Write report", "Help"} <= titles
        destructive = {"Evict a pod", "Force delete a pod (grace 0)", "Load burst"}
        assert (destructive & titles == set()) is read_only
        await pilot.press("ctrl+p")
        await wait_until(pilot, lambda: type(made.app.screen).__name__ == "CommandPalette")
        await pilot.press(*"Load burst")
        await pilot.pause(0.3)
        await pilot.press("enter")
        await pilot.pause(0.3)
        if read_only:
            assert made.gateway.chats == []
        else:
            await wait_until(pilot, lambda: len(made.gateway.chats) >= 10)


async def test_help_lists_the_keys_and_closes() -> None:
    made = rig()
    async with made.app.run_test(size=SIZE) as pilot:
        await connected(pilot, made)
        await pilot.press("question_mark")
        assert isinstance(made.app.screen, HelpScreen)
        keys = [key for key, _ in made.app.screen.keys]
        assert {"k", "K", "l", "L", "r", "q"} <= set(keys)
        shown = str(made.app.screen.query_one("#help-body Static").render())
        assert f"kube-llm {version()}" in shown  # what `kube-llm --version` says
        await pilot.press("escape")
        assert not isinstance(made.app.screen, HelpScreen)


async def test_the_panels_keep_updating_under_the_help_screen() -> None:
    made = rig()
    async with made.app.run_test(size=SIZE) as pilot:
        await connected(pilot, made)
        await pilot.press("question_mark")
        assert isinstance(made.app.screen, HelpScreen)
        made.cluster.push(snapshot(pod("llm-backend-5d8f-abcde")))
        made.cluster.on_event(ClusterEvent(NOW, "Normal", "Killing", "Pod", "p", "while in help"))
        made.app._refresh_panels()
        await wait_until(pilot, lambda: made.app.pods_table.row_count == 1)
        await pilot.press("escape")
        assert "while in help" in log_text(made)


async def test_read_only_removes_every_destructive_key() -> None:
    made = rig(read_only=True)
    async with made.app.run_test(size=SIZE) as pilot:
        await connected(pilot, made)
        shown = {
            b.binding.key for b in made.app.active_bindings.values() if b.enabled and b.binding.show
        }
        assert not shown & {"k", "K", "l", "L"}
        await pilot.press("k", "K", "l", "L", "plus")
        await pilot.pause(0.1)
        assert made.cluster.evicted == []
        assert made.cluster.deleted == []
        assert made.gateway.chats == []
        await pilot.press("question_mark")
        keys = [key for key, _ in made.app.screen.keys]  # type: ignore[attr-defined]
        assert "k" not in keys
        assert "K" not in keys
        assert "l" not in keys
        assert "READ-ONLY" in status_text(made)


async def test_the_status_line_says_which_sandbox_profile_runs() -> None:
    made = rig(profile="minikube")
    async with made.app.run_test(size=SIZE) as pilot:
        await connected(pilot, made)
        assert status_text(made).endswith("│ sandbox profile minikube")
    plain = rig()
    async with plain.app.run_test(size=SIZE) as pilot:
        await connected(pilot, plain)
        assert "profile" not in status_text(plain)


async def test_first_destructive_action_off_the_sandbox_asks_once() -> None:
    made = rig(sandbox=False)
    async with made.app.run_test(size=SIZE) as pilot:
        await connected(pilot, made)
        await pilot.press("k")
        await wait_until(pilot, lambda: isinstance(made.app.screen, ConfirmScreen))
        await pilot.press("n")
        await pilot.pause(0.05)
        assert made.cluster.evicted == []
        await pilot.press("k")
        await wait_until(pilot, lambda: isinstance(made.app.screen, ConfirmScreen))
        await pilot.press("y")
        await wait_until(pilot, lambda: made.cluster.evicted)
        # Asked once per session: the next kill goes straight through.
        await pilot.press("K")
        await wait_until(pilot, lambda: made.cluster.deleted)
        assert not isinstance(made.app.screen, ConfirmScreen)


async def test_chat_streams_a_reply_with_who_served_it() -> None:
    made = rig()
    async with made.app.run_test(size=SIZE) as pilot:
        await connected(pilot, made)
        await pilot.press("c")
        await pilot.press(*"Hello there")
        await pilot.press("enter")
        pane = made.app.query_one(ChatPane)
        await wait_until(pilot, lambda: pane.current is None and made.gateway.chats)
        turn = pane.query("ChatTurn").last(ChatTurn)
        assert turn.reply == ScriptedGateway.reply
        footer = str(turn.query_one(".reply-footer").render())
        assert "served by llm-backend-5d8f-abcde" in footer
        assert "TTFT 210 ms" in footer
        # The conversation goes along with the next prompt.
        await pilot.press(*"And then?", "enter")
        await wait_until(pilot, lambda: len(made.gateway.chats) == 2 and pane.current is None)
        assert [m["role"] for m in made.gateway.chats[1]] == ["user", "assistant", "user"]


async def test_escape_stops_a_streaming_reply() -> None:
    gateway = ScriptedGateway(reply=" ".join(["word"] * 400), piece_delay=0.02)
    made = rig(gateway=gateway)
    async with made.app.run_test(size=SIZE) as pilot:
        await connected(pilot, made)
        await pilot.press("slash", *"Tell me a long story", "enter")
        pane = made.app.query_one(ChatPane)
        await wait_until(pilot, lambda: pane.current is not None and pane.current.reply)
        await pilot.press("escape")
        await wait_until(pilot, lambda: pane.current is None, timeout=2)
        turn = pane.query("ChatTurn").last(ChatTurn)
        assert "stopped" in str(turn.query_one(".reply-footer").render())
        assert len(turn.reply.split()) < 400


async def test_a_connection_failure_is_shown_not_a_blank_screen() -> None:
    made = rig(fail_with=RuntimeError("the sandbox exited with code 2 before it was ready: boom"))
    async with made.app.run_test(size=SIZE) as pilot:
        await wait_until(pilot, lambda: made.app.failure is not None)
        assert "the sandbox exited with code 2" in status_text(made)
        assert any("boom" in n for n in notices(made))
        assert "boom" in log_text(made)


async def test_connection_state_follows_the_adapter() -> None:
    made = rig()
    async with made.app.run_test(size=SIZE) as pilot:
        await connected(pilot, made)
        made.cluster.push(
            replace(
                TWO_PODS,
                connection=Connection.RETRYING,
                detail="retrying in 4 s: connection refused",
            )
        )
        await pilot.pause(0.05)
        assert "API retrying" in status_text(made)
        assert "connection refused" in status_text(made)
        made.cluster.push(TWO_PODS)
        await wait_until(pilot, lambda: "API live" in status_text(made))
        # The log keeps the history: the outage and the recovery.
        await wait_until(pilot, lambda: "API live: watching" in log_text(made))
        assert "API retrying: retrying in 4 s: connection refused" in log_text(made)


async def test_a_repeating_event_is_shown_once_a_minute() -> None:
    made = rig()
    async with made.app.run_test(size=SIZE) as pilot:
        await connected(pilot, made)
        for count, at in ((1, NOW), (2, NOW + 2), (3, NOW + 4), (40, NOW + 70)):
            made.cluster.on_event(
                ClusterEvent(at, "Warning", "Unhealthy", "Pod", "p", "probe failed", count)
            )
        await wait_until(pilot, lambda: "(x40)" in log_text(made))
        assert log_text(made).count("probe failed") == 2


async def test_failed_health_checks_are_counted_by_kind() -> None:
    made = rig()
    async with made.app.run_test(size=SIZE) as pilot:
        await connected(pilot, made)
        session = made.app.session
        assert session is not None
        for _ in range(3):
            session.recorder.add_health(HealthSample(NOW - 1, None, 503, None, "http_503"))
        made.app._refresh_panels()
        numbers = str(made.app.query_one("#latency-numbers").render())
        assert "3 failed: http_503" in numbers


async def test_kubernetes_events_reach_the_log() -> None:
    made = rig()
    async with made.app.run_test(size=SIZE) as pilot:
        await connected(pilot, made)
        made.cluster.on_event(
            ClusterEvent(
                NOW,
                "Warning",
                "Unhealthy",
                "Pod",
                "llm-backend-5d8f-abcde",
                "Readiness probe failed",
            )
        )
        await wait_until(pilot, lambda: "Readiness probe failed" in log_text(made))


@pytest.mark.parametrize(
    "hostile",
    [
        "\x1b]0;pwned\x07\x1b[2J\x1b[31mred",
        "[bold red]markup[/] [@click=app.quit]click me[/]",
        "[link=https://evil.example]a link[/link] \x1b]8;;https://evil.example\x1b\\osc8\x1b]8;;\x1b\\",
    ],
    ids=["escape-sequences", "markup-and-click", "links"],
)
async def test_untrusted_text_renders_literally(hostile: str) -> None:
    """T1: a reply, a pod name and an event message cannot style, click, link or escape."""
    gateway = ScriptedGateway(reply=hostile, pod=f"llm-backend-{hostile}")
    first = snapshot(pod(f"llm-backend-{hostile}"), pod("llm-backend-5d8f-fghij"))
    made = rig(gateway=gateway, first=first)
    async with made.app.run_test(size=SIZE) as pilot:
        await wait_until(
            pilot, lambda: made.clusters and made.app.query_one(PodsTable).row_count == 2
        )
        made.cluster.on_event(ClusterEvent(NOW, "Warning", hostile, "Pod", hostile, hostile))
        await pilot.press("c", *"hi", "enter")
        pane = made.app.query_one(ChatPane)
        await wait_until(pilot, lambda: pane.current is None and gateway.chats)
        await pilot.pause(0.05)
        svg = made.app.export_screenshot()
        assert "\x1b" not in svg
        assert "\x07" not in svg
        turn = pane.query("ChatTurn").last(ChatTurn)
        shown = str(turn.query_one(".reply").render())
        # Shown as typed, with every control character visible: markup is not applied,
        # so no style, click action or link comes of it.
        assert shown == multi_line(hostile)
        assert "\x1b" not in shown
        if "\x1b" in hostile:
            assert "␛" in shown
        # Clicking the reply does nothing: the app is still here.
        await pilot.click(".reply")
        assert made.app.is_running
        assert "\x1b" not in log_text(made)
        table = made.app.query_one(PodsTable)
        assert all("\x1b" not in cell.plain for key in table.row_names for cell in table.cells(key))


async def test_chat_box_keeps_letters_from_the_keys() -> None:
    """Typing k or l in the chat box types them; it does not kill a pod or send load."""
    made = rig()
    async with made.app.run_test(size=SIZE) as pilot:
        await connected(pilot, made)
        await pilot.press("c", "k", "l", "K", "L")
        assert made.app.query_one("#chat-input", Input).value == "klKL"
        assert made.cluster.evicted == []
        assert made.cluster.deleted == []
        await pilot.press("escape")
        assert isinstance(made.app.focused, PodsTable)


async def test_hpa_panel_explains_scaling() -> None:
    made = rig()
    async with made.app.run_test(size=SIZE) as pilot:
        await connected(pilot, made)
        made.cluster.push(
            snapshot(
                pod("llm-backend-5d8f-abcde"),
                pod("llm-backend-5d8f-fghij"),
                hpa_view=hpa(2, 4, cpu=187),
            )
        )
        await wait_until(pilot, lambda: "scaling" in str(made.app.query_one("#hpa-why").render()))
        why = str(made.app.query_one("#hpa-why").render())
        assert "scaling up" in why
        assert "2 -> 4" in why or "2 → 4" in why
        assert made.app.session.replicas[-1].desired == 4  # type: ignore[union-attr]


async def test_a_rollout_shows_in_the_pods_title_and_a_failure_is_a_notice() -> None:
    """Issue 14 item 3: the cockpit follows the Deployment's status as `kubectl rollout
    status` reads it; a rollout past its progress deadline is an error notice with the reason."""
    made = rig()
    async with made.app.run_test(size=SIZE) as pilot:
        await connected(pilot, made)
        table = made.app.query_one(PodsTable)
        assert table.border_title == "Pods"
        done = TWO_PODS.deployment
        assert done is not None
        rolling = replace(done, replicas=2, generation=2, observed_generation=2, updated_replicas=1)
        made.cluster.push(replace(TWO_PODS, deployment=rolling))
        await wait_until(pilot, lambda: "rolling out" in str(table.border_title))
        assert table.border_title == "Pods · rolling out: 1 out of 2 new replicas have been updated"
        assert "rollout started: Waiting for deployment" in log_text(made)
        stuck = replace(
            rolling,
            conditions=(
                Condition(
                    "Progressing",
                    "False",
                    "ProgressDeadlineExceeded",
                    'ReplicaSet "llm-backend-6b8d9c7f4" has timed out progressing.',
                ),
            ),
        )
        made.cluster.push(replace(TWO_PODS, deployment=stuck))
        await wait_until(pilot, lambda: "rollout failed" in str(table.border_title))
        assert table.border_title == "Pods · rollout failed: ProgressDeadlineExceeded"
        await wait_until(
            pilot, lambda: any("exceeded its progress deadline" in n for n in notices(made))
        )
        assert 'ReplicaSet "llm-backend-6b8d9c7f4" has timed out progressing.' in log_text(made)
        made.cluster.push(
            replace(
                TWO_PODS,
                deployment=replace(
                    rolling, updated_replicas=2, status_replicas=2, available_replicas=2
                ),
            )
        )
        await wait_until(pilot, lambda: table.border_title == "Pods")
        assert 'deployment "llm-backend" successfully rolled out' in log_text(made)
