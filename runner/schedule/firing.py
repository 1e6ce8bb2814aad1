"""How an engine fires a due schedule, exactly once per scheduled time.

A schedule's next firing is a timer (`runner.store.keys.schedule_timer_run`) whose id is the
firing time. An engine claims it with the other timers (hidden from other engines for a while)
and then, in this order:

1. reads the schedule; gone, paused, or its next firing is no longer this timer's time (an
   engine advanced it already): it arms the schedule's current next firing (a no-op if armed)
   and forgets this timer. Nothing else;
2. plans the firings to start (`timing.plan`: the catch-up policy) and, for each, applies the
   overlap policy against the previous firing's run, reserves the run id ``<schedule>:<time>``
   and publishes its submit (with confirms) — a run id is idempotent: submitted again, it is
   the same run;
3. swaps the schedule's record for the advanced one (next firing, last run), arming the timer
   of the next firing in the same step, if the record is still the one read in 1 — a
   compare-and-swap, so of two engines firing the same time only one advances it;
4. forgets the claimed timer.

A crash after 1 or 2 leaves the timer claimed: it comes back after the hold and the same
firings are planned (their runs exist: submitting them again changes nothing). After 3 it
comes back too, and 1 finds the schedule advanced. A lost swap (another engine, or an
operator's pause or delete, changed the record) leaves the timer to be judged again.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from runner import faults, metrics, protocol, states, submission
from runner.broker import ENGINE_QUEUE, Outgoing
from runner.config import Config
from runner.define.spec import FlowSpec, validate_inputs
from runner.errors import AckflowError, StoreError, UnknownFlowError
from runner.protocol import Event, unpack
from runner.schedule.model import Schedule
from runner.schedule.timing import iso, plan
from runner.store import DueTimer, Store, keys

log = logging.getLogger("ackflow.engine.schedules")


def spec_of(store: Store, flow: str, version: str | None) -> FlowSpec:
    """The registered spec a firing runs: the pinned version, or the latest now."""
    if version is None:
        raw_info = store.list_flows().get(flow)
        if raw_info is None:
            raise UnknownFlowError(flow, list(store.list_flows()))
        version = str(unpack(raw_info)["digest"])
    raw = store.get_flow(flow, version)
    if raw is None:
        raise UnknownFlowError(flow, store.flow_digests(flow), version)
    return FlowSpec.from_data(unpack(raw))


class Firing:
    """Fires the due schedules an engine claimed (`fire`); ``publish`` sends with confirms."""

    def __init__(self, config: Config, store: Store, publish: Callable[[list[Outgoing]], None]) -> None:
        self.config = config
        self.store = store
        self.publish = publish
        self.started = 0  # runs submitted (repeats included)
        self._counts: dict[str, int] = {}  # the outcomes of the firing being fired

    def fire(self, timer: DueTimer, now_ms: int) -> int | None:
        """Fire the schedule of a claimed timer; returns its next firing time, if any."""
        name = keys.schedule_of_timer(timer.run_id) or ""
        at = int(timer.timer_id)
        raw = self.store.get_schedule(name)
        if raw is None:
            self.store.remove_timers([timer])
            return None
        s = Schedule.unpack(raw)
        if s.paused or s.next_ms != at:
            if not s.paused and s.next_ms is not None:
                self.store.arm_schedule(name, s.next_ms)
            self.store.remove_timers([timer])
            return None if s.paused else s.next_ms
        p = plan(s.when, at, now_ms, s.catchup, s.window_s)
        last_run, last_ms, started, note = self._start(s, p.fire)
        if p.missed and not note:
            note = f"firings missed while no engine ran were skipped (catch-up {s.catchup})"
        new = s.with_(
            next_ms=p.next_ms,
            last_run=last_run,
            last_ms=last_ms,
            fired=s.fired + started,
            note=note,
        )
        faults.hit("schedule.after_submit")
        if self.store.swap_schedule(name, raw, new.pack(), p.next_ms):
            faults.hit("schedule.after_advance")
            self.store.remove_timers([timer])
            for outcome, n in self._counts.items():  # once per firing: after the advance
                metrics.SCHEDULE_FIRINGS.labels(outcome).inc(n)
            if started:
                log.info("schedule %s fired %s: %d run(s), the last %s", name, iso(at), started, last_run)
            return p.next_ms
        log.info("schedule %s changed while firing %s; its timer is judged again", name, iso(at))
        return None

    def _start(self, s: Schedule, times: list[int]) -> tuple[str | None, int | None, int, str]:
        """Start the runs of ``times`` by the overlap policy: (last run, its time, runs
        started, a note if some started none)."""
        last_run, last_ms, note = s.last_run, s.last_ms, ""
        self._counts = {"started": 0, "skipped": 0, "failed": 0}
        if not times:
            return last_run, last_ms, 0, note
        try:
            spec = spec_of(self.store, s.flow, s.version)
            validate_inputs(spec, dict(s.inputs))
        except AckflowError as e:
            log.error("schedule %s: firing %s starts no run: %s", s.name, iso(times[-1]), e)
            self._counts["failed"] = len(times)
            return last_run, last_ms, 0, f"{iso(times[-1])}: {e}"[:500]
        if s.overlap == "cancel_previous" and len(times) > 1:  # a catch-up: each would cancel the one before
            self._counts["skipped"] = len(times) - 1
            times = times[-1:]
        messages: list[Outgoing] = []
        started = 0
        for t in times:
            run_id = s.run_id_of(t)
            running = (
                s.overlap != "allow"
                and last_run is not None
                and last_run != run_id
                and self._running(last_run, messages)
            )
            if running and s.overlap == "skip":
                note = f"{iso(t)} skipped: {last_run} was still running (overlap skip)"
                self._counts["skipped"] += 1
                continue
            if running and s.overlap == "cancel_previous" and last_run is not None:
                messages.append(self._cancel(s, last_run, t))
            try:
                event, payload, digest = submission.build(
                    spec, s.inputs, run_id, None, self.config.max_payload_bytes
                )
                existing = self.store.reserve(run_id, digest)
            except StoreError:
                raise
            except AckflowError as e:
                note = f"{iso(t)}: {e}"[:500]
                self._counts["failed"] += 1
                continue
            if existing is not None and existing != digest:
                note = f"{iso(t)}: run id {run_id} is taken by another flow or other inputs"
                log.error("schedule %s: %s", s.name, note)
                self._counts["failed"] += 1
                continue
            messages.append(Outgoing(ENGINE_QUEUE, event.id, payload))
            last_run, last_ms, started = run_id, t, started + 1
            self._counts["started"] += 1
        if messages:
            self.publish(messages)
            self.started += started
        return last_run, last_ms, started, note

    def _running(self, run_id: str, sending: list[Outgoing]) -> bool:
        """Whether a schedule's previous run is still going: not finished, or submitted in this
        very step. A run the store does not know (expired, or its submit not applied yet) does
        not count as running."""
        if any(m.message_id == protocol.submit_id(run_id) for m in sending):
            return True
        status = self.store.read(run_id, {keys.META: ["status"]})[keys.META][0]
        return status is not None and status.decode() not in states.RUN_TERMINAL

    def _cancel(self, s: Schedule, run_id: str, at_ms: int) -> Outgoing:
        event = Event(
            protocol.RUN_CANCEL,
            f"{protocol.RUN_CANCEL}:{run_id}:{s.name}@{at_ms}",  # one cancel per firing, however repeated
            run_id,
            body={"by": f"schedule {s.name}", "reason": f"overlap cancel_previous: {iso(at_ms)} fired"},
            at_ms=protocol.now_ms(),
        )
        return Outgoing(ENGINE_QUEUE, event.id, protocol.encode(event))

    def reconcile(self) -> int:
        """Arm the next firing of every active schedule (a no-op for those armed): what a crash
        between a record's change and its timer's could leave unarmed (Redis Cluster, where
        they are two steps). Returns how many were looked at."""
        n = 0
        for name, raw in self.store.list_schedules().items():
            s = Schedule.unpack(raw)
            if not s.paused and s.next_ms is not None:
                self.store.arm_schedule(name, s.next_ms)
                n += 1
        return n
