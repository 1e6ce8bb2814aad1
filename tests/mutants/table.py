"""The mutants: small, plausible bugs in the core, each an exact string replacement in one file.

Every guarantee the README states should have a test that fails when the code that keeps it
breaks. Each mutant below breaks one such piece of code; `make mutants` (tests/mutants/run.py)
applies each alone to a copy of the tree and runs the fast suites: a mutant no test kills is a
guarantee nothing checks. ``old`` must occur exactly once in ``file`` (the runner refuses to
start otherwise), so the table cannot silently go stale when the code moves.

M1-M13 are the mutations of the test audit (../shared/findings/test-audit.md §1), adapted to
today's code; M14 on are further ones. ``first`` names the tests run before the whole fast
suite (the likely killer, so a killed mutant costs seconds); a mutant survives only if the
whole fast suite passes.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Mutant:
    id: str
    file: str
    old: str
    new: str
    what: str
    first: tuple[str, ...] = ()


ORDER = "tests/unit/test_delivery_order.py"
GUARANTEES = "tests/unit/test_guarantees.py"
RULES = "tests/unit/test_decide_rules.py"
STORE = "tests/contract/test_store_contract.py"
APPLIED = "tests/contract/test_store_contract.py"

MUTANTS: tuple[Mutant, ...] = (
    # --- the audit's thirteen ------------------------------------------------------------
    Mutant(
        "M1",
        "runner/store/lua/commit.lua",
        "if done then",
        "if false then",
        "Lua commit ignores an already-applied event id",
        (STORE,),
    ),
    Mutant(
        "M2",
        "runner/store/lua/commit.lua",
        "redis.call('HSET', KEYS[6], eid, table.concat(ids, '\\n'))",
        "if #ids > 0 then redis.call('HSET', KEYS[6], eid, table.concat(ids, '\\n')) end",
        "Lua records the applied event id only when the commit has an outbox",
        (APPLIED,),
    ),
    Mutant(
        "M3",
        "runner/engine/loop.py",
        """            self.broker.confirm()
            metrics.CONFIRM_SECONDS.labels("engine").observe(time.perf_counter() - started)
            faults.hit("engine.after_publish")
            self._store_call(lambda: self.store.mark_sent_many(sent))""",
        """            self._store_call(lambda: self.store.mark_sent_many(sent))
            self.broker.confirm()
            metrics.CONFIRM_SECONDS.labels("engine").observe(time.perf_counter() - started)
            faults.hit("engine.after_publish")""",
        "engine marks its outbox sent before it awaits the publisher confirms",
        (ORDER,),
    ),
    Mutant(
        "M4",
        "runner/engine/loop.py",
        """        sent: dict[str, list[str]] = {}
        for _, msg, outbox in done:""",
        """        for d, _, _ in done:
            self.broker.ack(d)
        sent: dict[str, list[str]] = {}
        for _, msg, outbox in done:""",
        "engine acks the batch before the confirms and mark-sent",
        (ORDER,),
    ),
    Mutant(
        "M5",
        "runner/decide/events.py",
        "            d.timer(protocol.TIMER_TIMEOUT, d.at + int(timeout * 1000), e.task, e.attempt)",
        "            pass",
        "task.started no longer arms the task's timeout timer",
        (GUARANTEES,),
    ),
    Mutant(
        "M6",
        "runner/decide/progress.py",
        "        if taken and ok == spec.needs:",
        "        if taken and ok >= spec.needs:",
        # The audit's M6 mutated the per-predecessor join record, which nothing read; it is
        # removed. What keeps a join from firing twice is this count (and M7's guard, M12).
        "a join=N fires again for each taken edge after the N-th",
        (GUARANTEES,),
    ),
    Mutant(
        "M7",
        "runner/decide/progress.py",
        "        d.guard(keys.JOINS, s, d.view.joins.get(s))",
        "        pass",
        "join counter written without its guard (lost updates when engines race)",
        (GUARANTEES,),
    ),
    Mutant(
        "M8",
        "runner/decide/events.py",
        "    if st.attempt != e.attempt:",
        "    if False:",
        "no fencing by attempt number",
        (RULES,),
    ),
    Mutant(
        "M9",
        "runner/decide/progress.py",
        "    if sorted(values) != sorted(spec.provides):",
        "    if False:",
        "a result's value names are not checked against provides",
        (GUARANTEES,),
    ),
    Mutant(
        "M10",
        "runner/decide/progress.py",
        "    tries = attempt - (st.free_attempts or 0)",
        "    tries = attempt",
        "every attempt counts as a try of the retry policy (re-dispatches too)",
        (GUARANTEES,),
    ),
    Mutant(
        "M11",
        "workers/loop.py",
        """        batch = self._unpublished
        try:
            self._publish(
                [Outgoing(ENGINE_QUEUE, r.result.id, protocol.encode(r.result)) for r in batch if r.result]
            )
        except BrokerError as e:
            log.warning("could not publish %d results (%s); retrying", len(batch), e)
            return
        faults.hit("worker.after_publish")
        self._unpublished = []
        faults.hit("worker.before_ack")
        with self._running_lock:
            for r in batch:
                self._running.pop(id(r.running), None)
        for r in batch:
            if r.dead_reason:
                if r.running.leased:  # its delivery is gone: the lease's expiry retries it
                    log.error("request %s failed in the worker: %s", r.running.req.id, r.dead_reason)
                else:
                    self._reject(r.running.delivery, r.dead_reason, "error")
            elif not r.running.leased:
                self.broker.ack(r.running.delivery)""",
        """        batch = self._unpublished
        for r in batch:  # acked before the publish, once (a failed publish is retried)
            if not (r.dead_reason or r.running.leased or getattr(r, "acked", False)):
                self.broker.ack(r.running.delivery)
                r.acked = True  # type: ignore[attr-defined]
        try:
            self._publish(
                [Outgoing(ENGINE_QUEUE, r.result.id, protocol.encode(r.result)) for r in batch if r.result]
            )
        except BrokerError as e:
            log.warning("could not publish %d results (%s); retrying", len(batch), e)
            return
        faults.hit("worker.after_publish")
        self._unpublished = []
        faults.hit("worker.before_ack")
        with self._running_lock:
            for r in batch:
                self._running.pop(id(r.running), None)
        for r in batch:
            if r.dead_reason:
                if r.running.leased:  # its delivery is gone: the lease's expiry retries it
                    log.error("request %s failed in the worker: %s", r.running.req.id, r.dead_reason)
                else:
                    self._reject(r.running.delivery, r.dead_reason, "error")""",
        "worker acks the request before publishing its result",
        (ORDER,),
    ),
    Mutant(
        "M12",
        "runner/decide/events.py",
        "    elif st.status not in active:",
        "    elif False:",
        "stale() no longer refuses events for finished tasks",
        (RULES,),
    ),
    Mutant(
        "M13",
        "runner/engine/loop.py",
        "        if n < self.config.delivery_limit:",
        "        if True:",
        "engine never dead-letters an event that keeps killing engines",
        (GUARANTEES,),
    ),
    # --- more: engine, reader, decisions, stores, worker ------------------------------------
    Mutant(
        "M14",
        "runner/decide/revert.py",
        "    return order[::-1]",
        "    return order",
        "compensation reverts predecessors before their successors",
        (RULES,),
    ),
    Mutant(
        "M15",
        "runner/decide/revert.py",
        "        after = any(s in unsettled for s in specs[n].succs if s != END)",
        "        after = False",
        "a predecessor is reverted while a successor is still active",
        (RULES,),
    ),
    Mutant(
        "M16",
        "runner/decide/events.py",
        "        if int(attempt) == e.attempt and int(until) > e.at_ms:",
        "        if False:",
        "a renewed lease is ignored: the lease timer fails a task whose worker is alive",
        (GUARANTEES,),
    ),
    Mutant(
        "M17",
        "runner/decide/events.py",
        "        if st.status != states.FAILED or st.attempt != e.attempt - 1 or st.retry_at_ms is None:",
        "        if st.status != states.FAILED:",
        "a retry timer of an attempt that is not next starts one",
        (GUARANTEES,),
    ),
    Mutant(
        "M18",
        "runner/decide/progress.py",
        "        d.cancel.append(protocol.timer_id(protocol.TIMER_TIMEOUT, d.run_id, name, st.attempt))",
        "        pass",
        "an attempt that ended leaves its timeout timer behind",
        (GUARANTEES,),
    ),
    Mutant(
        "M19",
        "runner/decide/progress.py",
        "    if d.run_status == states.PAUSED:",
        "    if False:",
        "a paused run starts what becomes ready",
        (RULES,),
    ),
    Mutant(
        "M20",
        "runner/decide/control.py",
        "        if st.status in (states.PENDING, states.SCHEDULED):",
        "        if st.status == states.PENDING:",
        "cancel leaves scheduled tasks to run",
        (RULES,),
    ),
    Mutant(
        "M21",
        "runner/decide/progress.py",
        "    while nxt < n and started < count and d.run_status in (states.RUNNING, states.PAUSED):",
        "    while nxt < n and d.run_status in (states.RUNNING, states.PAUSED):",
        "a map starts every element at once, ignoring its limit",
        (GUARANTEES,),
    ),
    Mutant(
        "M22",
        "runner/store/memory.py",
        "            if done is not None:",
        "            if False:",
        "memory store applies an already-applied event id again",
        (STORE,),
    ),
    Mutant(
        "M23",
        "runner/store/memory.py",
        "                if run[part].get(fld) != expected:",
        "                if False:",
        "memory store ignores guards",
        (STORE,),
    ),
    Mutant(
        "M24",
        "runner/store/lua/commit.lua",
        "    if cur ~= ARGV[i + 3] then return {'conflict', tostring(g - 1)} end",
        "    if false then return {'conflict', tostring(g - 1)} end",
        "Lua commit ignores a guard's expected value",
        (STORE,),
    ),
    Mutant(
        "M25",
        "runner/store/lua/claim.lua",
        "'-inf', ARGV[1], 'LIMIT'",
        "'-inf', '+inf', 'LIMIT'",
        "Lua claim hands out timers before they are due",
        (STORE,),
    ),
    Mutant(
        "M26",
        "runner/store/lua/beat.lua",
        "    if a == ARGV[2] then",
        "    if true then",
        "a heartbeat of an old attempt renews the new attempt's lease",
        (STORE,),
    ),
    Mutant(
        "M27",
        "runner/engine/loop.py",
        "        if d.redelivered:\n            try:",
        "        if False:\n            try:",
        "an outage's redelivery counts towards engine poison",
        ("tests/unit/test_engine.py",),
    ),
    Mutant(
        "M28",
        "workers/loop.py",
        """        try:  # the lease is durable before the delivery goes
            self._publish([leased_event(r, self.name) for r in due])
        except BrokerError as e:""",
        """        try:
            for r in due:
                self.broker.ack(r.delivery)
            self._publish([leased_event(r, self.name) for r in due])
        except BrokerError as e:""",
        "worker gives a long task's delivery back before its lease event is confirmed",
        (ORDER,),
    ),
    Mutant(
        "M29",
        "workers/skip.py",
        "    if d.delivery_count < delivery_limit - 1:",
        "    if True:",
        "worker never dead-letters a request that keeps killing workers",
        (GUARANTEES,),
    ),
    Mutant(
        "M30",
        "workers/skip.py",
        "    if status == CANCELLED.encode():",
        "    if False:",
        "worker runs a request of a cancelled run",
        (GUARANTEES,),
    ),
    Mutant(
        "M31",
        "workers/execute.py",
        "    if size > max_payload_bytes:",
        "    if False:",
        "worker sends a result over the payload limit",
        ("tests/unit/test_local.py",),
    ),
    Mutant(
        "M32",
        "runner/engine/reader.py",
        "            if not (event.kind == protocol.RUN_CANCEL and digest is not None):",
        "            if False:",
        "engine decides events of runs that do not exist",
        ("tests/unit/test_engine.py",),
    ),
    Mutant(
        "M33",
        "runner/store/memory.py",
        """            run[keys.APPLIED][c.event_id] = "\\n".join(c.outbox).encode()""",
        """            if c.outbox:
                run[keys.APPLIED][c.event_id] = "\\n".join(c.outbox).encode()""",
        "memory store records the applied event id only when the commit has an outbox",
        (GUARANTEES, APPLIED),
    ),
    Mutant(
        "M34",
        "runner/store/memory.py",
        "                self._timers[key] = now_ms + hold_ms",
        "                del self._timers[key]",
        "memory store drops a timer when it is claimed (an engine dying before it fires loses it)",
        (STORE,),
    ),
    Mutant(
        "M35",
        "runner/engine/ahead.py",
        "        if event.run_id not in runs:",
        "        if True:",
        "engine commits ahead a run's second event of a batch with its first (read before it)",
        ("tests/unit/test_commit_ahead.py",),
    ),
    Mutant(
        "M36",
        "runner/engine/ahead.py",
        "        if d.redelivered:\n            break",
        "        if d.redelivered:\n            continue",
        "engine commits ahead the events after a redelivered one (a possible engine killer)",
        ("tests/unit/test_commit_ahead.py",),
    ),
    Mutant(
        "M37",
        "runner/store/redis_commit.py",
        "        client.script_load(script.script)",
        "        return replies",
        "redis commits together on a server without the script are not retried once it is loaded",
        (STORE,),
    ),
)
