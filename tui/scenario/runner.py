"""Run a parsed scenario on the cockpit's session, then judge its expectations.

Steps run one after the other on the same services the cockpit uses: the load engine (bursts
wait for their end unless `background`; sustained and rate load run in the background until
their duration or `stop_load`), the session's kill (evict or force delete, followed by the
recovery tracker), `tui.cluster.rollout` for rollout restarts and scales (a rollout is judged
from the Deployment's status, as `kubectl rollout status` judges it), and the session's snapshot
for waits. Each step that can fail (a kill refused, a wait that ran out, a rollout that did not
finish or exceeded its progress deadline) gives a `Verdict`, as each expectation does; the
scenario passes when all of them hold.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from tui.cluster.hpa_timing import HpaTimingError
from tui.cluster.rollout import DeploymentControl, DeploymentWriteError, rollout_status
from tui.core.figures import ROLLOUT_NOTE, SCALE_NOTE, CockpitRecord, LoadPhase
from tui.core.hpa_timing import HpaTiming
from tui.core.model import BackendMetrics, ClusterSnapshot, RolloutState
from tui.gateway.target import GatewayError
from tui.scenario import bounds
from tui.scenario.judge import StepWindow, judge
from tui.scenario.spec import AUTO, WAIT_CONDITIONS, Expectation, Scenario, Step
from tui.scenario.words import describe_expectation, describe_step
from tui.services.load import LoadError
from tui.services.phase import LoadPlan, run_phase
from tui.services.session import Session

_POLL = 0.2
_KILL_SEEN_WITHIN = 10.0
"""Seconds a kill step waits for the watch to show its pod going."""
_SAMPLE_WITHIN = 3.0
"""Seconds a kill step waits for the pod's `/metrics` just before the kill."""


@dataclass(frozen=True)
class Verdict:
    """Whether one expectation (or one step that can fail) held, and by how much."""

    source: str
    """`expect` or `step`."""
    line: int
    what: str
    held: bool
    detail: str


@dataclass(frozen=True)
class ScenarioResult:
    """What came of a scenario: the record of the run, the verdicts, and whether it stopped."""

    name: str
    record: CockpitRecord
    verdicts: tuple[Verdict, ...]
    windows: tuple[StepWindow, ...]
    aborted: str | None = None
    """Why the steps stopped early (a 403 on a rollout restart, say), if they did."""
    interrupted: bool = False
    """The user stopped the steps with Ctrl+C, SIGTERM or SIGHUP (`aborted` says at which step)."""
    interrupted_by: str = "Ctrl+C"
    """What stopped them, in words, when they were stopped."""
    bounds: tuple[str, ...] = ()
    """The HPA's timing and every `within: auto` computed from it, in words."""

    @property
    def passed(self) -> bool:
        """Every step and expectation held, and every step ran."""
        return self.aborted is None and all(v.held for v in self.verdicts)


class ScenarioAborted(Exception):
    """A step that cannot run at all (not a measurement that failed)."""


class ScenarioRunner:
    """Runs one scenario's steps on a session; `run()` returns the result."""

    def __init__(
        self,
        scenario: Scenario,
        session: Session,
        control: DeploymentControl | None,
        log: Callable[[str], None] = lambda line: None,
        clock: Callable[[], float] = time.time,
        timing: HpaTiming | None = None,
        reread: Callable[[], Awaitable[HpaTiming]] | None = None,
    ) -> None:
        """Run `scenario` on `session`; `control` writes to the Deployment (None: no writes);
        `timing` bounds the waits on the HPA (`within: auto`; None: no HPA was read);
        `reread` reads it again, which `auto` does while the metrics resolution was assumed
        (the pods had no metrics yet when the run began)."""
        self.scenario = scenario
        self.session = session
        self.control = control
        self.log = log
        self.clock = clock
        self.verdicts: list[Verdict] = []
        self.windows: list[StepWindow] = []
        self.phases: list[LoadPhase] = []
        self.notes: list[tuple[float, str]] = []
        self._load: list[asyncio.Task[LoadPhase]] = []
        self._started = clock()
        self._steps: asyncio.Task[str | None] | None = None
        self._line = 0
        self.interrupted = False
        self.interrupted_by = "Ctrl+C"
        self._took: tuple[str, BackendMetrics | None] | None = None
        """The pod the current kill step took, and its `/metrics` just before."""
        self.timing = timing
        self._reread = reread
        self.bounds: list[str] = timing.words() if timing is not None else []
        self._load_started_at: float | None = None
        self._load_stopped_at: float | None = None

    def interrupt(self, cause: str = "Ctrl+C") -> None:
        """Stop the steps now (Ctrl+C, SIGTERM, SIGHUP: `cause`): the load stops, and the run
        ends with what was done, its expectations not judged."""
        self.interrupted = True
        self.interrupted_by = cause
        if self._steps is not None:
            self._steps.cancel()

    async def run(self) -> ScenarioResult:
        """Every step, then the expectations on what was recorded."""
        this = asyncio.current_task()
        if self._preflight():
            aborted: str | None = "fixed waits shorter than the HPA can possibly scale (above)"
            self.log(f"stopped: {aborted}")
            return ScenarioResult(
                self.scenario.name,
                self.session.record(),
                tuple(self.verdicts),
                (),
                aborted,
                bounds=tuple(self.bounds),
            )
        self._steps = steps = asyncio.create_task(self._run_steps())
        try:
            aborted = await steps
        except asyncio.CancelledError:
            if not self.interrupted or (this is not None and this.cancelling()):
                raise
            aborted = f"line {self._line}: interrupted by {self.interrupted_by}"
            self.log(f"stopped: {aborted}")
        finally:
            await self._stop_load()
        if aborted is None:
            await self._settle_recoveries()
        record = self.session.record()
        record = dataclasses.replace(
            record,
            phases=tuple(sorted(self.phases, key=lambda p: p.started_at)),
            events=tuple(sorted([*record.events, *self.notes])),
        )
        verdicts = [*self.verdicts]
        if aborted is None:
            if any(e.get("within") == AUTO for e in self.scenario.expectations):
                await self._fresh_timing()
            verdicts += [self._judge(e, record) for e in self.scenario.expectations]
        return ScenarioResult(
            self.scenario.name,
            record,
            tuple(verdicts),
            tuple(self.windows),
            aborted,
            interrupted=self.interrupted,
            interrupted_by=self.interrupted_by,
            bounds=tuple(self.bounds),
        )

    def _current_replicas(self) -> int:
        hpa = self.session.snapshot.hpa
        if hpa is not None and hpa.current_replicas > 0:
            return hpa.current_replicas
        return self.timing.min_replicas if self.timing is not None else 0

    def _preflight(self) -> bool:
        """Fail at once every fixed bound this HPA can never meet; True when there were any."""
        if self.timing is None:
            return False
        found = bounds.preflight(self.scenario, self.timing, self._current_replicas())
        words = {step.line: describe_step(step) for step in self.scenario.steps}
        words.update({e.line: describe_expectation(e) for e in self.scenario.expectations})
        for line, what, why in found:
            source = "step" if what == "wait_for" else "expect"
            self.verdicts.append(Verdict(source, line, words.get(line, what), False, why))
            self.log(f"line {line}: {why}")
        return bool(found)

    async def _run_steps(self) -> str | None:
        """Each step in turn; why they stopped early, if they did."""
        for step in self.scenario.steps:
            self._line = step.line
            self.log(
                f"[+{self.clock() - self._started:6.1f} s] line {step.line}: {describe_step(step)}"
            )
            try:
                await self._step(step)
            except (ScenarioAborted, DeploymentWriteError, LoadError) as error:
                aborted = f"line {step.line}: {error}"
                self.log(f"stopped: {aborted}")
                return aborted
        return None

    # -- steps --------------------------------------------------------------------------

    async def _step(self, step: Step) -> None:
        get = step.get
        started = self.clock()
        self._took = None
        match step.kind:
            case "burst":
                plan = LoadPlan(users=get("users"), chats_per_user=get("chats_per_user"))
                if get("background"):
                    self._background(plan)
                else:
                    await self._foreground(plan)
            case "sustained":
                self._background(LoadPlan(users=get("users"), duration=get("duration")))
            case "rate":
                plan = LoadPlan(
                    users=get("users"), duration=get("duration"), rate=get("per_second")
                )
                self._background(plan)
            case "stop_load":
                await self._stop_load()
            case "sleep":
                await asyncio.sleep(get("seconds"))
            case "evict" | "kill":
                await self._kill(step, force=step.kind == "kill")
            case "rollout_restart":
                await self._rollout(step)
            case "scale":
                await self._writer().scale(get("replicas"))
                self.notes.append((started, f"{SCALE_NOTE}{get('replicas')} replicas"))
            case "wait_for":
                await self._wait_for(step)
        pod, metrics = self._took or (None, None)
        self.windows.append(StepWindow(step.kind, step.line, started, self.clock(), pod, metrics))

    async def _settle_recoveries(self) -> None:
        """Give each kill's replacement time to become Ready (or be removed) before the record
        is taken, so a kill late in the scenario still has its recovery measured."""
        deadline = self.clock() + self.scenario.recovery_wait
        while self.clock() < deadline:
            self.session.tick()
            waiting = [
                t
                for t in self.session.tracker.active
                if t.replacement_ready_at is None and t.replacement_removed_at is None
            ]
            if not waiting:
                return
            await asyncio.sleep(_POLL)
        self.log(
            f"some kills had no replacement Ready {self.scenario.recovery_wait:g} s after the steps"
        )

    async def _foreground(self, plan: LoadPlan) -> None:
        started = self.clock()
        if not self._load:
            self._load_started_at = started
        try:
            self.phases.append(await run_phase(self.session, plan, self.clock))
            if not self._load:
                self._load_stopped_at = self.clock()
        except asyncio.CancelledError:
            if self.interrupted:  # the burst as far as it went is in the record
                label = f"{plan.describe()} (interrupted by {self.interrupted_by})"
                self.phases.append(LoadPhase(plan.kind, plan.users, started, self.clock(), label))
            raise

    def _background(self, plan: LoadPlan) -> None:
        plan.check()
        if not self._load:
            self._load_started_at = self.clock()
        self._load.append(asyncio.create_task(run_phase(self.session, plan, self.clock)))

    async def _stop_load(self) -> None:
        if not self._load:
            return
        await self.session.load.stop()
        self._load_stopped_at = self.clock()
        tasks, self._load = self._load, []
        for outcome in await asyncio.gather(*tasks, return_exceptions=True):
            if isinstance(outcome, LoadPhase):
                self.phases.append(outcome)
            elif isinstance(outcome, BaseException):
                raise outcome

    def _writer(self) -> DeploymentControl:
        if self.control is None:
            raise ScenarioAborted("this run cannot write to the Deployment")
        return self.control

    async def _kill(self, step: Step, *, force: bool) -> None:
        wanted = step.get("pod")
        pod = self.session.plan_kill(None if wanted == "random" else wanted).pod
        if wanted != "random" and pod != wanted:
            pod = None
        if pod is None:
            missing = "no Ready pod to kill" if wanted == "random" else f"no pod {wanted} alive"
            self._step_verdict(step, False, missing)
            return
        held = await self._pod_metrics(pod)
        result = await self.session.kill(pod, force=force)
        if result.ok:
            self._took = (pod, held)
        else:
            self._step_verdict(step, False, result.message)
            return

        # The step ends once the watch shows the pod going, so a `wait_for` after it judges
        # the cluster after the kill, not a snapshot from just before it.
        def going(snapshot: ClusterSnapshot) -> bool:
            seen = snapshot.pod(pod)
            return seen is None or seen.terminating or not seen.ready

        await self._until(going, self.clock() + _KILL_SEEN_WITHIN)

    async def _until(self, done: Callable[[ClusterSnapshot], bool], deadline: float) -> bool:
        """Poll the watched snapshot until `done` holds (True) or the clock passes `deadline`
        (False)."""
        while not done(self.session.snapshot):
            if self.clock() > deadline:
                return False
            await asyncio.sleep(_POLL)
        return True

    async def _pod_metrics(self, pod: str) -> BackendMetrics | None:
        """What `pod` holds just before a kill (running and queued chats): a fresh `/metrics`
        through the pod proxy, else the session's last poll of it (up to 2 s old)."""
        try:
            return await asyncio.wait_for(
                self.session.gateway.pod_metrics(pod), timeout=_SAMPLE_WITHIN
            )
        except (GatewayError, ValueError, TimeoutError):
            return self.session.metrics.get(pod)

    async def _rollout(self, step: Step) -> None:
        requested = self.clock()
        stamp, generation = await self._writer().restart(requested)
        self.notes.append((requested, f"{ROLLOUT_NOTE}restartedAt {stamp})"))
        within = step.get("within")
        deadline = requested + within

        def state(snapshot: ClusterSnapshot) -> RolloutState | None:
            # Judged as `kubectl rollout status` judges it, from the Deployment's status once
            # the watch shows the restart's generation (before that, the old status would say
            # the previous rollout is done).
            deployment = snapshot.deployment
            if deployment is None or deployment.generation < generation:
                return None
            return rollout_status(deployment)

        def settled(snapshot: ClusterSnapshot) -> bool:
            now = state(snapshot)
            return now is not None and (now.done or now.failed)

        reached = await self._until(settled, deadline)
        last = state(self.session.snapshot)
        if last is not None and last.failed:
            self._step_verdict(step, False, f"the rollout failed: {last.message}")
            return
        if not reached or last is None or not last.done:
            words = last.message if last is not None else "the watch never showed the restart"
            self._step_verdict(step, False, f"not rolled out within {within:g} s: {words}")
            return
        took = self.clock() - requested
        deployment = self.session.snapshot.deployment
        count = deployment.updated_replicas if deployment is not None else 0
        replaced = f"{count} pods replaced, all Ready, in {took:.1f} s"
        self.notes.append((self.clock(), f"rollout restart done: {replaced}"))
        self._step_verdict(step, True, f"{replaced} ({within - took:.1f} s to spare)")

    def _since_load(self, condition: str) -> float | None:
        """Seconds since the load started (a scale-up wait) or stopped (a scale-down wait), when
        this run knows; None when it does not."""
        moment = self._load_started_at if condition == "replicas" else self._load_stopped_at
        running = bool(self._load)
        if moment is None or running != (condition == "replicas"):
            return None
        return max(0.0, self.clock() - moment)

    async def _fresh_timing(self) -> None:
        """Read the HPA's timing again if its metrics resolution was only assumed."""
        if self.timing is None or not self.timing.resolution_assumed or self._reread is None:
            return
        try:
            timing = await self._reread()
        except HpaTimingError as error:
            self.log(f"the HPA's timing could not be read again ({error}): keeping the assumed")
            return
        if not timing.resolution_assumed:
            self.timing = timing
            self.bounds += [f"read again: {line}" for line in timing.sources]

    async def _within(self, step: Step, condition: str, wanted: int) -> float | None:
        """The wait's bound in seconds; None when a fixed one cannot hold (its verdict is
        given at once)."""
        within = step.get("within")
        if within == AUTO:
            await self._fresh_timing()
        bound = None
        if self.timing is not None:
            bound = bounds.wait_bound(self.timing, condition, wanted, self._current_replicas())
        elapsed = self._since_load(condition)
        if within == AUTO:
            resolved = bounds.resolve(within, bound, elapsed or 0.0)
            self.bounds.append(f"line {step.line}: {resolved.words}")
            self.log(f"line {step.line}: within {resolved.words}")
            return resolved.seconds
        why = bounds.too_short(float(within), bound, elapsed)
        if why is not None:
            self._step_verdict(step, False, why)
            return None
        return float(within)

    async def _wait_for(self, step: Step) -> None:
        condition = next(name for name in WAIT_CONDITIONS if step.get(name) is not None)
        wanted: int = step.get(condition)
        words = "Ready pods" if condition == "ready_pods" else "HPA current replicas"
        within = await self._within(step, condition, wanted)
        if within is None:
            return

        def value(snapshot: ClusterSnapshot) -> int:
            if condition == "ready_pods":
                return len(snapshot.serving_pods)
            return snapshot.hpa.current_replicas if snapshot.hpa else -1

        def met(seen: int) -> bool:
            if condition == "replicas_at_most":
                return 0 <= seen <= wanted
            return seen >= wanted

        started = self.clock()
        reached = await self._until(lambda snapshot: met(value(snapshot)), started + within)
        seen = value(self.session.snapshot)
        if not reached:
            self._step_verdict(step, False, f"{words} {seen} after {within:g} s, not {wanted}")
            return
        took = self.clock() - started
        self._step_verdict(
            step,
            True,
            f"{words} {seen} after {took:.1f} s ({max(0.0, within - took):.1f} s to spare)",
        )

    def _step_verdict(self, step: Step, held: bool, detail: str) -> None:
        """Note how a step went: its line, its words, whether it held and by how much."""
        self.verdicts.append(Verdict("step", step.line, describe_step(step), held, detail))

    # -- expectations -------------------------------------------------------------------

    def _judge(self, expectation: Expectation, record: CockpitRecord) -> Verdict:
        if expectation.get("within") == AUTO:
            expectation = self._resolve_auto(expectation, record)
        held, detail = judge(expectation, record, tuple(self.windows))
        return Verdict("expect", expectation.line, describe_expectation(expectation), held, detail)

    def _resolve_auto(self, expectation: Expectation, record: CockpitRecord) -> Expectation:
        """The expectation with `within: auto` replaced by the HPA's bound for what the run
        saw: from the replicas at the first load's start up, or from the peak down."""
        points = sorted(record.replicas, key=lambda p: p.at)
        start_at = min((p.started_at for p in record.phases), default=record.started_at)
        before = [p.current for p in points if p.at <= start_at]
        start = before[-1] if before else self._current_replicas()
        peak = max((p.current for p in points), default=start)
        bound = None
        if self.timing is not None:
            bound = bounds.expectation_bound(expectation, self.timing, start, peak)
        resolved = bounds.resolve(AUTO, bound)
        self.bounds.append(f"line {expectation.line}: {resolved.words}")
        params = tuple(
            (name, resolved.seconds if name == "within" else value)
            for name, value in expectation.params
        )
        return dataclasses.replace(expectation, params=params)


__all__ = ["ScenarioResult", "ScenarioRunner", "Verdict"]
