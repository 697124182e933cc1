"""The cockpit: a Textual app over the session's services.

`make_cockpit` builds it from settings and a connector (which makes the `Session`); the CLI and
every test go through it, so tests can hand in a scripted cluster and gateway. Widgets only
render and forward keys; everything that talks to the cluster or the gateway lives in the
session's services, which have no Textual import.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable
from functools import partial
from typing import ClassVar

from textual import on, work
from textual.app import App, ComposeResult, SystemCommand
from textual.binding import BindingType
from textual.containers import Horizontal, Vertical
from textual.notifications import SeverityLevel
from textual.screen import Screen
from textual.widgets import Footer, Header
from textual.worker import Worker, WorkerState

from tui.cluster.rollout import rollout_change, rollout_summary
from tui.cockpit.keys import DESTRUCTIVE, bindings, help_rows, palette_keys
from tui.cockpit.messages import (
    ClusterEventArrived,
    CockpitNote,
    RecoveryCompleted,
    SessionMessages,
    SnapshotArrived,
)
from tui.cockpit.screens import ConfirmScreen, HelpScreen
from tui.cockpit.widgets import ChatPane, EventLog, HpaPanel, LatencyPanel, PodsTable, StatusLine
from tui.cockpit.widgets.latency_panel import CHARTS
from tui.core.model import (
    ChatSample,
    ClusterSnapshot,
    Connection,
    LatencySummary,
    Outcome,
)
from tui.core.sanitize import one_line
from tui.core.settings import CockpitSettings
from tui.report.writer import ReportError, write_report_folder
from tui.services.session import Session, SessionSink

Connector = Callable[[CockpitSettings, SessionSink, Callable[[str], None]], Awaitable[Session]]
"""Makes the session: loads the kubeconfig (after starting the sandbox, for the demo)."""

LATENCY_WINDOW = 60.0
CLUSTER_REFRESH_SECONDS = 1.0
CHART_SPAN = 120.0


class CockpitApp(App[int]):
    """Live pods, HPA and latency next to a chat pane, with keys that kill pods and spike load."""

    CSS_PATH = "app.tcss"
    TITLE = "kube-llm"
    BINDINGS: ClassVar[list[BindingType]] = bindings()

    def __init__(
        self,
        settings: CockpitSettings,
        connector: Connector,
        *,
        clock: Callable[[], float] = time.time,
        refresh_interval: float = 1.0,
    ) -> None:
        super().__init__()
        self.settings = settings
        self.connector = connector
        self.clock = clock
        self.refresh_interval = refresh_interval
        self.session: Session | None = None
        """The connected session, once the connector has made it."""
        self.snapshot = ClusterSnapshot(
            namespace=settings.namespace or "", connection=Connection.CONNECTING
        )
        self.destructive_allowed = False
        """Set once the user confirmed destructive actions (or the context is the sandbox)."""
        self.failure: str | None = None
        """Why the session could not start or stopped, shown in the status line."""
        self._chat_stop: asyncio.Event | None = None
        self._summary_cache: LatencySummary | None = None
        self._cluster_shown_at = 0.0
        self._cluster_pending = False

    # -- layout -------------------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        """Header, status line, the panels and the footer."""
        # Kept as attributes: `query_one` on the app searches the active screen, which is not
        # this one while the help or a confirmation is open.
        self.status_line = StatusLine(id="status", profile=self.settings.profile)
        self.pods_table = PodsTable(id="pods")
        self.hpa_panel = HpaPanel(id="hpa")
        self.latency_panel = LatencyPanel(id="latency")
        self.event_log = EventLog(id="events")
        self.chat_pane = ChatPane(id="chat")
        yield Header(show_clock=False, icon="⎈")
        yield self.status_line
        with Horizontal(id="main"):
            with Vertical(id="left"):
                yield self.pods_table
                with Horizontal(id="middle"):
                    yield self.hpa_panel
                    yield self.latency_panel
                yield self.event_log
            yield self.chat_pane
        yield Footer()

    def on_mount(self) -> None:
        """Connect, and refresh the panels every second."""
        self.sub_title = "connecting"
        self.pods_table.focus()
        self._refresh_panels()
        self.set_interval(self.refresh_interval, self._tick)
        self._run_session()

    # -- the session --------------------------------------------------------------------------

    @work(exclusive=True, group="session", exit_on_error=False)
    async def _run_session(self) -> None:
        """Make the session (showing progress), then run its services until the app ends."""
        session = await self.connector(self.settings, SessionMessages(self), self._progress)
        self.session = session
        self.destructive_allowed = session.sandbox
        self.sub_title = " · ".join(
            part for part in (one_line(session.context, 60), session.snapshot.namespace) if part
        )
        self.log_note(
            f"connected to {session.context or 'the cluster'}; chats via {session.target}"
        )
        self._refresh_panels()
        try:
            await session.run()
        finally:
            await session.close()

    def _progress(self, text: str) -> None:
        self.snapshot = ClusterSnapshot(
            namespace=self.snapshot.namespace, connection=Connection.CONNECTING, detail=text
        )
        self._refresh_status()

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        """One place turns a failed worker into a notice and an event-log line."""
        if event.state is not WorkerState.ERROR:
            return
        error = event.worker.error
        lines = (str(error) or type(error).__name__).splitlines()
        if event.worker.group == "session":
            self.failure = lines[0] if lines else "stopped"
            self.snapshot = ClusterSnapshot(
                namespace=self.snapshot.namespace,
                connection=Connection.RETRYING,
                detail=self.failure,
            )
            self._refresh_status()
        for line in lines[:30]:
            self.log_note(line, "error")
        self.notify(
            "\n".join(one_line(line, 300) for line in lines[:8]),
            title="kube-llm",
            severity="error",
            timeout=15,
        )

    # -- messages -------------------------------------------------------------------------------

    @on(SnapshotArrived)
    def _on_snapshot(self, message: SnapshotArrived) -> None:
        previous = self.snapshot
        self.snapshot = message.snapshot
        self._refresh_status()
        if message.snapshot.connection is not previous.connection and (
            previous.connection is not Connection.CONNECTING
            or message.snapshot.connection is not Connection.LIVE
        ):
            # The log keeps the connection's history; the status line shows only its state now.
            state = message.snapshot.connection
            self.log_note(
                f"API {state.value}: {message.snapshot.detail}",
                "information" if state is Connection.LIVE else "warning",
            )
        rollout = rollout_change(previous.deployment, message.snapshot.deployment)
        if rollout is not None:
            self.post_message(CockpitNote(*rollout))
        # Watch events can come many a second: the table and HPA panel follow at most every
        # CLUSTER_REFRESH_SECONDS, always ending on the newest snapshot.
        since = time.monotonic() - self._cluster_shown_at
        if since >= CLUSTER_REFRESH_SECONDS:
            self._refresh_cluster()
        elif not self._cluster_pending:
            self._cluster_pending = True
            self.set_timer(CLUSTER_REFRESH_SECONDS - since, self._refresh_cluster)

    @on(ClusterEventArrived)
    def _on_cluster_event(self, message: ClusterEventArrived) -> None:
        self.event_log.cluster_event(message.event)

    @on(RecoveryCompleted)
    def _on_recovery(self, message: RecoveryCompleted) -> None:
        from tui.services.chaos import (
            describe,  # the session's module; imported late to keep it light
        )

        for line in describe(message.timeline):
            self.log_note(line)
        seconds = message.timeline.recovery_seconds
        if seconds is not None:
            self.notify(
                f"{one_line(message.timeline.pod, 63)}: replacement Ready in {seconds:.1f} s"
            )

    @on(CockpitNote)
    def _on_note(self, message: CockpitNote) -> None:
        self.log_note(message.text, message.severity)
        if message.severity != "information":
            self.notify(one_line(message.text, 300), severity=_severity(message.severity))

    def log_note(self, text: str, severity: str = "information") -> None:
        """Add one of the cockpit's own lines to the event log."""
        self.event_log.note(self.clock(), text, severity)

    # -- refreshing ----------------------------------------------------------------------------

    def _summary(self, now: float, fresh: bool = False) -> LatencySummary:
        """The latency window's summary, computed at most once per refresh tick."""
        session = self.session
        if session is None:
            return LatencySummary(window_seconds=LATENCY_WINDOW)
        if fresh or self._summary_cache is None:
            self._summary_cache = session.recorder.summary(LATENCY_WINDOW, now)
        return self._summary_cache

    def _tick(self) -> None:
        """Every second: the panels, and the cluster's unless a snapshot just redrew them."""
        recent = time.monotonic() - self._cluster_shown_at < CLUSTER_REFRESH_SECONDS * 0.9
        self._refresh_panels(cluster=not recent)

    def _refresh_panels(self, cluster: bool = True) -> None:
        if self._panels_gone():
            return
        now = self.clock()
        summary = self._summary(now, fresh=True)
        if cluster:
            self._refresh_cluster()
        self._refresh_status()
        session = self.session
        if session is None:
            return
        series = {
            name: [value or 0.0 for value in session.recorder.series(name, CHART_SPAN, now=now)]
            for name, _, _ in CHARTS
        }
        failed = Counter(
            h.error or f"http_{h.status}"
            for h in session.recorder.healths(now - LATENCY_WINDOW)
            if not h.ok
        )
        self.latency_panel.show(summary, series, tuple(failed.most_common()))

    def _panels_gone(self) -> bool:
        """The app is closing: a timer that fires now has nothing left to draw on."""
        return not self.hpa_panel.is_attached

    def _refresh_cluster(self) -> None:
        if self._panels_gone():
            return
        self._cluster_pending = False
        self._cluster_shown_at = time.monotonic()
        now = self.clock()
        session = self.session
        summary = self._summary(now)
        why, history = (session.hpa_line(), session.replicas) if session else ("", [])
        metrics = session.metrics if session else {}
        self.pods_table.show(self.snapshot, metrics, summary, now)
        live = self.snapshot.connection is Connection.LIVE or not self.snapshot.pods
        title = "Pods" if live else f"Pods (as last seen: API {self.snapshot.connection.value})"
        rollout = rollout_summary(self.snapshot.deployment)
        self.pods_table.border_title = f"{title} · {rollout}" if rollout else title
        self.hpa_panel.show(self.snapshot.hpa, why, history, now)

    def _refresh_status(self) -> None:
        session = self.session
        target = session.target if session else (self.settings.backend_url or "service proxy")
        self.status_line.show(
            self.snapshot.connection,
            self.failure or self.snapshot.detail,
            target,
            session.load_status if session else None,
            session.burst_users if session else self.settings.burst_users,
            self.settings.read_only,
        )

    # -- keys ------------------------------------------------------------------------------------

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """--read-only removes every key that kills pods or sends load (T2)."""
        return not (self.settings.read_only and action in DESTRUCTIVE)

    def _confirmed(self, what: str, then: Callable[[], object]) -> None:
        """Run `then`, asking first if this is the first destructive action off the sandbox."""
        if self.destructive_allowed:
            then()
            return
        context = self.session.context if self.session else "?"

        def answered(allowed: bool | None) -> None:
            if allowed:
                self.destructive_allowed = True
                self.log_note(f"destructive actions allowed on {context} for this session")
                then()
            else:
                self.log_note(f"not done: {what}")

        self.push_screen(ConfirmScreen(what, context), answered)

    def _session_or_notice(self) -> Session | None:
        if self.session is None:
            self.notify("Not connected yet.", severity="warning")
        return self.session

    def action_kill(self, force: bool) -> None:
        """`k` evicts, `K` force-deletes: the selected pod, else a random Ready one."""
        session = self._session_or_notice()
        if session is None:
            return
        plan = session.plan_kill(self.pods_table.selected_pod)
        if plan.pod is None:
            self.notify(plan.reason, severity="warning")
            return
        pod = plan.pod
        what = f"{'Force delete (grace 0)' if force else 'Evict'} pod {pod} ({plan.reason})"
        self._confirmed(what, lambda: self._kill(pod, force))

    @work(group="kill", exit_on_error=False)
    async def _kill(self, pod: str, force: bool) -> None:
        assert self.session is not None
        await self.session.kill(pod, force=force)

    def action_burst(self) -> None:
        """`l`: a burst of N users x 3 chats."""
        session = self._session_or_notice()
        if session is not None:
            self._confirmed(f"Send a load burst of {session.burst_users} users", session.burst)

    def action_sustained(self) -> None:
        """`L`: sustained load on or off."""
        session = self._session_or_notice()
        if session is None:
            return
        if session.load_status.sustained_users:
            session.toggle_sustained()
        else:
            self._confirmed("Start sustained load", lambda: self._toggle(session))
        self._refresh_status()

    def _toggle(self, session: Session) -> None:
        session.toggle_sustained()
        self._refresh_status()

    def action_burst_size(self, step: int) -> None:
        """`+`/`-`: change the burst size."""
        session = self._session_or_notice()
        if session is not None:
            size = session.change_burst(step)
            self.notify(f"burst size: {size} users", timeout=2)
            self._refresh_status()

    def action_report(self) -> None:
        """`r`: write the report of what the cockpit has seen so far."""
        session = self._session_or_notice()
        if session is not None:
            self._write_report(session)

    @work(exclusive=True, group="report", exit_on_error=False)
    async def _write_report(self, session: Session) -> None:
        try:
            path = await session.write_report(write_report_folder)
        except ReportError as error:
            self.notify(f"Could not write the report: {error}", severity="error", timeout=10)
            return
        self.notify(f"Report written: {path}", title="Report", timeout=8)

    def action_focus_chat(self) -> None:
        """`c` or `/`: type a chat message."""
        self.chat_pane.query_one("#chat-input").focus()

    def action_help(self) -> None:
        """`?`: the keys and what the panels mean."""
        keys = help_rows(read_only=self.settings.read_only)
        self.push_screen(HelpScreen(keys, self.settings.read_only))

    def get_system_commands(self, screen: Screen[object]) -> Iterable[SystemCommand]:
        """The command palette (ctrl+p) offers the cockpit's actions too."""
        yield from super().get_system_commands(screen)
        for key in palette_keys(read_only=self.settings.read_only):
            yield SystemCommand(
                key.palette, f"{key.shown_as}: {key.help}", partial(self.run_action, key.action)
            )

    # -- chat ------------------------------------------------------------------------------------

    @on(ChatPane.Asked)
    def _on_asked(self, message: ChatPane.Asked) -> None:
        if self._session_or_notice() is not None:
            self._chat(message.prompt)

    @on(ChatPane.StopRequested)
    def _on_stop(self) -> None:
        if self._chat_stop is not None and not self._chat_stop.is_set():
            self._chat_stop.set()
        else:
            self.pods_table.focus()

    @work(exclusive=True, group="chat", exit_on_error=False)
    async def _chat(self, prompt: str) -> None:
        assert self.session is not None
        pane = self.chat_pane
        pane.start_turn(prompt)
        started = self.clock()
        self._chat_stop = stop = asyncio.Event()
        try:
            sample = await self.session.chat(prompt, pane.stream, stop)
        except asyncio.CancelledError:  # the app is quitting
            pane.finish(
                ChatSample(
                    started_at=started,
                    origin="chat",
                    outcome=Outcome.ERROR,
                    error_kind="cancelled",
                    e2e=self.clock() - started,
                )
            )
            raise
        finally:
            self._chat_stop = None
        pane.finish(sample)

    async def action_quit(self) -> None:
        """Stop the load and the session, then leave (the CLI stops a demo's sandbox)."""
        if self.session is not None:
            self.notify("Stopping the load…", timeout=2)
            await self.session.load.stop()
        self.exit(0)


def _severity(severity: str) -> SeverityLevel:
    if severity == "warning":
        return "warning"
    if severity == "error":
        return "error"
    return "information"


def make_cockpit(
    settings: CockpitSettings,
    connector: Connector,
    *,
    clock: Callable[[], float] = time.time,
    refresh_interval: float = 1.0,
) -> CockpitApp:
    """Build the cockpit from settings and a connector; the CLI and every test come here."""
    return CockpitApp(settings, connector, clock=clock, refresh_interval=refresh_interval)
