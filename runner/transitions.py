"""What each event means: pure functions from (the event, the fields read) to a commit.

The engine reads a few fields of the run into a `View` and calls `decide`. A decision that
needs a field the view lacks raises `Need`; the engine reads it and decides again. So the
common events read O(degree of the task) — the task, its successors' specs and join counts,
the inputs of the successors it makes ready — and only rare ones (cancel, retry of a run,
compensation) read the whole run. The resulting `runner.store.Commit` is applied only if its
guards still hold; a conflicting commit is re-read and re-decided.

Nothing here does I/O, so every rule is testable without a network and is the same for local
and distributed runs. Run control (cancel, pause, resume, retry) lives in `runner.control`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from runner import caps, conditions, keys, protocol, states
from runner.broker import task_queue
from runner.config import Config
from runner.flows import END, FlowSpec, TaskSpec
from runner.protocol import Event, TaskRequest, pack, unpack
from runner.retry import Retry
from runner.store import Commit, Guard

META_FIELDS = (
    "status",
    "created_ms",
    "sinks",
    "outputs",
    "held",
    "reverts",
    "plan",
    "error",
    "deadline_s",
    "deadline_timer",
    "spec_id",
)


class Need(Exception):
    """The decision needs fields the view lacks: part -> names; no parts means the whole run."""

    def __init__(self, parts: Mapping[str, Iterable[str]] | None = None) -> None:
        self.parts = {p: sorted(set(ns)) for p, ns in (parts or {}).items() if ns}
        super().__init__(f"need {self.parts or 'the whole run'}")


@dataclass(frozen=True)
class Rules:
    """The settings decisions depend on."""

    retention_s: int = 7 * 24 * 3600
    delivery_limit: int = 5
    lease_s: float = 30.0

    @classmethod
    def of(cls, config: Config) -> Rules:
        return cls(config.retention_s, config.delivery_limit, config.lease_s)


@dataclass
class View:
    """The fields of one run a decision depends on, as read from the store.

    A name present in a dict was read (its value None when absent from the store); with
    ``full`` every field of the run was read, so a missing name is simply absent.
    """

    meta: dict[str, bytes | None] = field(default_factory=dict)
    tasks: dict[str, bytes | None] = field(default_factory=dict)  # raw state, None = PENDING
    specs: dict[str, TaskSpec] = field(default_factory=dict)
    joins: dict[str, bytes | None] = field(default_factory=dict)  # raw count, None = 0
    data: dict[str, bytes | None] = field(default_factory=dict)  # packed values
    leases: dict[str, bytes | None] = field(default_factory=dict)  # "<attempt>:<until ms>"
    absent_specs: set[str] = field(default_factory=set)  # read, and not in the run's spec
    full: bool = False
    applied_ms: int = 0  # when the engine applies the event (history "t", timer due times)
    redelivered: bool = False  # the broker redelivered the event (an engine or link died)

    def _get(self, part: str, values: Mapping[str, Any], names: Iterable[str]) -> None:
        missing = [n for n in names if n not in values]
        if missing and not self.full:
            raise Need({part: missing})

    def prefetch(self, parts: Mapping[str, Iterable[str]]) -> None:
        """Ask for all of these at once (one round trip) rather than one `Need` per field."""
        if self.full:
            return
        have = {
            keys.TASKS: self.tasks,
            keys.JOINS: self.joins,
            keys.DATA: self.data,
            keys.LEASES: self.leases,
        }
        missing = {}
        for part, names in parts.items():
            known = have.get(part, self.specs if part == keys.SPEC else {})
            gone = self.absent_specs if part == keys.SPEC else set()
            missing[part] = [n for n in names if n not in known and n not in gone]
        if any(missing.values()):
            raise Need(missing)

    def task_raw(self, name: str) -> bytes | None:
        if name not in self.tasks:
            self._get(keys.TASKS, self.tasks, [name])
        return self.tasks.get(name)

    def has_spec(self, name: str) -> bool:
        item = keys.item_of(name)
        if item is not None:  # an element of a map node
            return self.has_spec(item[0]) and self.specs[item[0]].map is not None
        if name in self.specs:
            return True
        if name in self.absent_specs or self.full:
            return False
        raise Need({keys.SPEC: [name]})

    def spec(self, name: str) -> TaskSpec:
        found = self.specs.get(name)
        if found is not None:  # the usual case (a map element's name is never a key here)
            return found
        item = keys.item_of(name)
        if item is not None:
            return self.spec(item[0]).item(name)
        self._get(keys.SPEC, self.specs, [name])
        return self.specs[name]

    def join(self, name: str) -> int:
        if name not in self.joins:
            self._get(keys.JOINS, self.joins, [name])
        return int(self.joins.get(name) or 0)

    def values(self, names: Iterable[str]) -> dict[str, bytes | None]:
        names = list(names)
        self._get(keys.DATA, self.data, names)
        return {n: self.data.get(n) for n in names}

    def lease(self, name: str) -> bytes | None:
        if name not in self.leases:
            self._get(keys.LEASES, self.leases, [name])
        return self.leases.get(name)


def task_state(raw: bytes | None) -> dict[str, Any]:
    return {"s": states.PENDING, "a": 0} if raw is None else dict(unpack(raw))


def status_of(view: View) -> str | None:
    raw = view.meta.get("status")
    return None if raw is None else raw.decode()


def outbox_entry(routing_key: str, msg: protocol.Message) -> bytes:
    return pack([routing_key, protocol.encode(msg)])


def error_dict(error: Mapping[str, Any]) -> dict[str, Any]:
    """An error as stored, each part cut to its cap whoever sent it (a worker, an outside
    system, a forged event): it is stored three times (the task, the history, the run)."""
    return caps.cap_error(error)


class Draft:
    """Collects what one event changes; `commit` turns it into a `Commit`."""

    def __init__(self, event: Event, view: View, rules: Rules) -> None:
        self.event, self.view, self.rules = event, view, rules
        self.run_id = event.run_id
        self.now = view.applied_ms or protocol.now_ms()
        self.at = event.at_ms or self.now
        self.run_status = status_of(view)
        self.guards: list[Guard] = []
        self._guarded: set[tuple[str, str]] = set()
        self.writes: dict[str, dict[str, bytes]] = {}
        self.deletes: dict[str, list[str]] = {}
        self.history: list[bytes] = []
        self.outbox: dict[str, bytes] = {}
        self.timers: dict[str, tuple[int, bytes]] = {}
        self.cancel: list[str] = []
        self.status_change: tuple[str, str] | None = None
        self.flow = ""  # set when the event creates the run: indexes it by flow
        self._states: dict[str, dict[str, Any]] = {}
        self._new_data: dict[str, bytes] = {}

    # --- reading, through what this draft already changed ---------------------------------

    def state(self, name: str) -> dict[str, Any]:
        if name not in self._states:
            self._states[name] = task_state(self.view.task_raw(name))
        return self._states[name]

    def data(self, names: Iterable[str]) -> dict[str, bytes | None]:
        names = list(names)
        out = self.view.values([n for n in names if n not in self._new_data])
        out.update({n: self._new_data[n] for n in names if n in self._new_data})
        return out

    def join(self, name: str) -> int:
        """A join count, as this draft left it (a skip can reach one join twice)."""
        written = self.writes.get(keys.JOINS, {}).get(name)
        return int(written) if written is not None else self.view.join(name)

    def meta_list(self, name: str) -> list[Any]:
        raw = self.writes.get(keys.META, {}).get(name, self.view.meta.get(name))
        return list(unpack(raw)) if raw else []

    # --- writing -----------------------------------------------------------------------

    def guard(self, part: str, name: str, expected: bytes | None) -> None:
        if (part, name) not in self._guarded:
            self._guarded.add((part, name))
            self.guards.append((part, name, expected))

    def write(self, part: str, name: str, value: bytes) -> None:
        self.writes.setdefault(part, {})[name] = value
        if name in self.deletes.get(part, ()):
            self.deletes[part].remove(name)  # written again after a delete: the write wins

    def set_task(self, name: str, new: dict[str, Any]) -> None:
        self.guard(keys.TASKS, name, self.view.task_raw(name))
        self._states[name] = new
        self.write(keys.TASKS, name, pack(new))

    def set_meta_list(self, name: str, items: list[Any]) -> None:
        self.guard(keys.META, name, self.view.meta.get(name))
        if items:
            self.write(keys.META, name, pack(items))
        else:
            self.writes.get(keys.META, {}).pop(name, None)
            self.deletes.setdefault(keys.META, []).append(name)

    def set_data(self, values: Mapping[str, bytes]) -> None:
        self._new_data.update(values)
        self.writes.setdefault(keys.DATA, {}).update(values)

    def hist(self, scope: str, old: str, new: str, attempt: int = 0, **extra: Any) -> None:
        """One history entry (see `history_entry`): when the event was made, how much later it
        was applied, the event (its id with the run id left out), what changed, and extras."""
        if self.view.redelivered:
            extra["redelivered"] = True
        lag = self.view.applied_ms - self.at if self.view.applied_ms else None
        event = self.event.id.replace(self.run_id, RUN_MARK, 1)
        self.history.append(
            pack([self.at, lag, event, self.event.kind, scope, old, new, attempt, extra or None])
        )

    def note(self, scope: str, attempt: int, note: str) -> None:
        st = (self.run_status or states.PENDING) if scope == "run" else self.state(scope)["s"]
        self.hist(scope, st, st, attempt, note=note)

    def timer(self, purpose: str, due_ms: int, task: str = "", attempt: int = 0, extra: str = "") -> str:
        tid = protocol.timer_id(purpose, self.run_id, task, attempt, extra)
        event = Event(protocol.TIMER_FIRED, tid, self.run_id, task, attempt, {"purpose": purpose}, due_ms)
        self.timers[tid] = (due_ms, protocol.encode(event))
        return tid

    def set_run(self, new: str, **extra: Any) -> None:
        old = self.run_status or states.PENDING
        states.check_run(old, new)
        self.guard(keys.META, "status", self.view.meta.get("status"))
        self.write(keys.META, "status", new.encode())
        if new in states.RUN_TERMINAL:
            self.write(keys.META, "finished_ms", str(self.at).encode())
        first = self.status_change[0] if self.status_change else (self.run_status or "")
        self.status_change = (first, new)
        self.run_status = new
        self.hist("run", old, new, **extra)

    def commit(self) -> Commit:
        if self.writes or self.history:
            self.write(keys.META, "updated_ms", str(self.at).encode())
        done = self.run_status in states.RUN_TERMINAL
        sc = self.status_change
        revived = sc is not None and sc[0] in states.RUN_TERMINAL and not done
        return Commit(
            run_id=self.run_id,
            event_id=self.event.id,
            guards=self.guards,
            writes=self.writes,
            deletes=self.deletes,
            history=self.history,
            outbox=self.outbox,
            timers=self.timers,
            cancel_timers=[t for t in self.cancel if t not in self.timers],
            status_change=self.status_change,
            created_ms=int(self.view.meta.get("created_ms") or 0),
            flow=self.flow,
            expire_s=self.rules.retention_s if done else (-1 if revived else 0),
        )

    # --- scheduling --------------------------------------------------------------------

    def request(self, name: str, attempt: int, mode: str = protocol.MODE_RUN) -> TaskRequest:
        spec = self.view.spec(name)
        wanted = list(spec.args.values()) + list(spec.optional.values())
        if mode == protocol.MODE_REVERT:
            wanted += spec.provides
        data = self.data(wanted)
        args: dict[str, Any] = {}
        for param, data_name in spec.args.items():
            raw = data.get(data_name)
            args[param] = None if raw is None else unpack(raw)
        for param, data_name in spec.optional.items():
            raw = data.get(data_name)
            if raw is not None:
                args[param] = unpack(raw)
        result: Any = None
        if mode == protocol.MODE_REVERT:
            outs = {p: unpack(r) for p in spec.provides if (r := data.get(p)) is not None}
            result = outs if spec.unpack else outs.get(spec.provides[0]) if spec.provides else None
        rid = (protocol.revert_request_id if mode == protocol.MODE_REVERT else protocol.request_id)(
            self.run_id, name, attempt
        )
        return TaskRequest(
            id=rid,
            run_id=self.run_id,
            task=name,
            fn=spec.revert if mode == protocol.MODE_REVERT else spec.fn,
            attempt=attempt,
            args=args,
            provides=spec.provides,
            unpack=spec.unpack,
            at_ms=self.now,
            mode=mode,
            result=result,
            run_created=int(self.view.meta.get("created_ms") or 0),
        )

    def schedule(self, name: str, attempt: int, note: str = "") -> None:
        """Send the task's request for this attempt; held instead while the run is paused."""
        st = self.state(name)
        extra = {"note": note} if note else {}
        if self.run_status == states.PAUSED:
            held = self.meta_list("held")
            if [name, attempt] not in held:
                self.set_meta_list("held", [*held, [name, attempt]])
            self.hist(name, st["s"], st["s"], attempt, note="held: the run is paused")
            return
        if self.view.spec(name).map is not None and keys.item_of(name) is None:
            self.start_map(name, attempt, note)
            return
        states.check_task(st["s"], states.SCHEDULED)
        req = self.request(name, attempt)
        new: dict[str, Any] = {"s": states.SCHEDULED, "a": attempt, "t": self.at}
        for carried in ("ra", "ll"):
            if carried in st:
                new[carried] = st[carried]
        self.set_task(name, new)
        self.outbox[req.id] = outbox_entry(task_queue(self.view.spec(name).queue), req)
        self.hist(name, st["s"], states.SCHEDULED, attempt, **extra)

    # --- map (with-items) ----------------------------------------------------------------

    def start_map(self, name: str, attempt: int, note: str = "") -> None:
        """A map node starts: store its items one per field, start the first ``limit``.

        A later attempt (a retried run) keeps the elements that succeeded, lets running ones
        finish, and starts the others again.
        """
        spec = self.view.spec(name)
        assert spec.map is not None
        st = self.state(name)
        over = spec.args[spec.map["param"]]
        raw = self.data([over])[over]
        items = None if raw is None else unpack(raw)
        states.check_task(st["s"], states.SCHEDULED)
        extra = {"note": note} if note else {}
        self.hist(name, st["s"], states.SCHEDULED, attempt, **extra)
        n = len(items) if isinstance(items, list) else 0
        limit = int(spec.map.get("limit") or 0) or n
        names = [keys.item_name(name, i) for i in range(n)]
        fresh = attempt == 1
        if not fresh:
            self.view.prefetch({keys.TASKS: names})
        done = 0 if fresh else sum(1 for x in names if self.state(x)["s"] == states.SUCCESS)
        new: dict[str, Any] = {"s": states.RUNNING, "a": attempt, "t": self.at, "st": self.at}
        new.update({k: st[k] for k in ("ra", "ll") if k in st}, n=n, next=0, done=done, fresh=fresh)
        self.set_task(name, new)
        kept = f"; {done} kept from before" if done else ""
        self.hist(
            name,
            states.SCHEDULED,
            states.RUNNING,
            attempt,
            note=f"mapping {n} items, {limit} at a time{kept}",
        )
        if not isinstance(items, list):
            got = type(items).__name__ if raw is not None else "nothing"
            self.fail_attempt(
                name, {"type": "TypeError", "message": f"map over {over!r} needs a list, got {got}"}
            )
            return
        if fresh:
            self.set_data({keys.item_input(x): pack(v) for x, v in zip(names, items, strict=True)})
        active = 0 if fresh else sum(1 for x in names if self.state(x)["s"] in states.TASK_ACTIVE)
        self.start_items(name, limit - active)
        if done == n:
            self.finish_map(name)

    def start_items(self, node: str, count: int) -> None:
        """Start up to ``count`` elements of a running map node that still need to run."""
        st = dict(self.state(node))
        n, nxt, fresh = int(st["n"]), int(st["next"]), bool(st.get("fresh"))
        started = 0
        while nxt < n and started < count and self.run_status in (states.RUNNING, states.PAUSED):
            x = keys.item_name(node, nxt)
            nxt += 1
            if fresh:
                self.view.tasks.setdefault(x, None)  # never started: nothing to read
            else:
                self.view.prefetch(
                    {keys.TASKS: [keys.item_name(node, i) for i in range(nxt - 1, min(n, nxt + count))]}
                )
            xs = self.state(x)
            if xs["s"] == states.PENDING:
                self.schedule(x, 1)
            elif xs["s"] == states.FAILED:  # failed for good before: a fresh retry budget
                self.set_task(x, {k: v for k, v in xs.items() if k != "retry_at"} | {"ra": xs["a"]})
                self.schedule(x, int(xs["a"]) + 1)
            else:
                continue  # succeeded, or still running from before
            started += 1
        self.set_task(node, dict(self.state(node), next=nxt))

    def map_item_done(self, item: str) -> None:
        """An element succeeded: start the next one; after the last, gather the results."""
        node = (keys.item_of(item) or ("", 0))[0]
        st = self.state(node)
        if st["s"] != states.RUNNING:
            return  # the node failed: the element's result is recorded, nothing more
        self.set_task(node, dict(st, done=int(st["done"]) + 1))
        self.start_items(node, 1)
        if self.state(node)["done"] == st["n"]:
            self.finish_map(node)

    def finish_map(self, node: str) -> None:
        st = self.state(node)
        names = [keys.item_name(node, i) for i in range(int(st["n"]))]
        vals = self.data(names)
        results = [None if vals[x] is None else unpack(vals[x]) for x in names]  # type: ignore[arg-type]
        self.set_task(node, dict(self.end_attempt(node, st), s=states.SUCCESS, ft=self.at))
        self.set_data({self.view.spec(node).provides[0]: pack(results)})
        self.hist(node, states.RUNNING, states.SUCCESS, int(st["a"]), note=f"{len(names)} items done")
        advance(self, node)

    def end_attempt(self, name: str, st: dict[str, Any]) -> dict[str, Any]:
        """Forget the timers and lease of the attempt that just ended; return its state."""
        spec = self.view.spec(name)
        if spec.timeout_s:
            self.cancel.append(protocol.timer_id(protocol.TIMER_TIMEOUT, self.run_id, name, st["a"]))
        if "wl" in st:
            self.cancel.append(
                protocol.timer_id(protocol.TIMER_TIMEOUT, self.run_id, name, st["a"], WAIT_TIMER)
            )
        if "lk" in st:
            self.cancel.append(
                protocol.timer_id(protocol.TIMER_LEASE, self.run_id, name, st["a"], str(st["lk"]))
            )
            self.deletes.setdefault(keys.LEASES, []).append(name)
        return {k: v for k, v in st.items() if k not in ("lk", "retry_at", "wl")}

    def implied_start(self, name: str, st: dict[str, Any], worker: str) -> str:
        """A result can overtake its "started" event; history still shows the task RUNNING once."""
        if st["s"] != states.SCHEDULED:
            return str(st["s"])
        self.hist(
            name, states.SCHEDULED, states.RUNNING, st["a"], worker=worker, note="implied by its result"
        )
        return states.RUNNING

    # --- failure -----------------------------------------------------------------------

    def fail_attempt(
        self, name: str, error: Mapping[str, Any], worker: str = "", lease_lost: bool = False
    ) -> None:
        """The current attempt failed: retry it if its policy allows, else fail the run."""
        st = self.state(name)
        err = error_dict(error)
        states.check_task(st["s"], states.FAILED)
        old = self.implied_start(name, st, worker)
        new = dict(self.end_attempt(name, st), s=states.FAILED, ft=self.at, err=err, w=worker)
        spec = self.view.spec(name)
        attempt = int(st["a"])
        live = self.run_status in (states.RUNNING, states.PAUSED)
        if lease_lost and live and int(st.get("ll", 0)) + 1 < self.rules.delivery_limit:
            # The worker vanished: like a redelivery, this costs no try of the retry policy.
            new.update(ll=int(st.get("ll", 0)) + 1, ra=int(st.get("ra", 0)) + 1)
            self.set_task(name, new)
            self.hist(name, old, states.FAILED, attempt, error_type=err["type"], error=err["message"])
            self.schedule(name, attempt + 1, note="re-dispatched: the lease of the previous attempt expired")
            return
        tries = attempt - int(st.get("ra", 0))
        pol = Retry.from_data(spec.retry) if spec.retry else None
        if pol is not None and live and pol.allows(tries, err["types"]):
            delay = pol.delay_before(tries, f"{self.run_id}:{name}:{attempt}")
            note = f"retry {tries + 1} of {pol.attempts} in {delay:.3g} s"
            if delay > 0:
                due = self.now + int(delay * 1000)
                new["retry_at"] = due
                self.timer(protocol.TIMER_RETRY, due, name, attempt + 1)
            self.set_task(name, new)
            self.hist(
                name, old, states.FAILED, attempt, error_type=err["type"], error=err["message"], note=note
            )
            if delay <= 0:
                self.schedule(name, attempt + 1)
            return
        self.set_task(name, new)
        self.hist(name, old, states.FAILED, attempt, error_type=err["type"], error=err["message"])
        item = keys.item_of(name)
        if item is not None:  # an element gave up: its map node fails with it
            node, index = item
            nst = self.state(node)
            node_attempt = int(nst["a"])
            if nst["s"] != states.RUNNING:
                return
            nerr = dict(err, message=f"item {index}: {err['message']}")
            self.set_task(node, dict(self.end_attempt(node, nst), s=states.FAILED, ft=self.at, err=nerr))
            self.hist(
                node,
                states.RUNNING,
                states.FAILED,
                node_attempt,
                error_type=err["type"],
                error=nerr["message"],
            )
            self.fail_run({**nerr, "task": node, "attempt": node_attempt, "item": index})
            return
        self.fail_run({**err, "task": name, "attempt": attempt})

    def fail_run(self, error: Mapping[str, Any]) -> None:
        """Fail the run; with compensation to do, revert its completed tasks first."""
        if self.run_status == states.REVERTING:
            self.revert_step()  # a task ended while compensating: maybe the next step
            return
        if self.run_status not in (states.RUNNING, states.PAUSED):
            return  # already failed or cancelled: the failure is in the task's history
        extra = {
            "task": error.get("task", ""),
            "error_type": error.get("type", ""),
            "error": str(error.get("message", "")),  # the history line shows what went wrong
        }
        self.write(keys.META, "error", pack(dict(error)))
        self.set_meta_list("held", [])
        if not int(self.view.meta.get("reverts") or 0):
            self.set_run(states.FAILED, **extra)
            return
        done = self.to_revert()
        if not done and not self.revertable_running():
            self.set_run(states.FAILED, **extra)
            return
        self.set_run(states.REVERTING, **extra, note=f"reverting {len(done)} completed task(s)")
        self.revert_step()

    # --- compensation ------------------------------------------------------------------
    #
    # A completed task is reverted only once every task after it (transitively) has settled:
    # pending, skipped, failed, or succeeded and already reverted. A successor still
    # scheduled, running or waiting may yet read the task's outputs, and if it succeeds its
    # own revert must run first; so compensation waits for it (a worker skips a failing
    # run's requests that have not started, and reports them, so the wait is short). The
    # order is decided afresh at each step from the tasks' states, not from a plan made when
    # the run failed: a plan would not know which successors finish after it was made.

    def successors_first(self) -> list[str]:
        """The run's tasks, every task before its predecessors (reverse topological order)."""
        if not self.view.full:
            raise Need()
        order: list[str] = []
        specs = self.view.specs
        indeg = {n: len(s.preds) for n, s in specs.items()}
        ready = sorted(n for n, d in indeg.items() if d == 0)
        while ready:
            n = ready.pop(0)
            order.append(n)
            for s in specs[n].succs:
                if s != END:
                    indeg[s] -= 1
                    if indeg[s] == 0:
                        ready.append(s)
        return order[::-1]

    def revertable(self, name: str) -> bool:
        """Completed, with a revert handler that has not run yet."""
        return bool(self.view.spec(name).revert) and self.state(name)["s"] == states.SUCCESS

    def active(self, name: str) -> bool:
        """Still able to act: scheduled, running, waiting, or its revert in flight.

        A map node left RUNNING by a failed run starts no more elements: it is active only
        while one of the elements it started is.
        """
        st = self.state(name)
        if st["s"] == states.REVERTING:
            return True
        if st["s"] not in states.TASK_ACTIVE:
            return False
        if self.view.spec(name).map is None or st["s"] != states.RUNNING or "next" not in st:
            return True
        started = [keys.item_name(name, i) for i in range(int(st["next"]))]
        return any(self.state(x)["s"] in states.TASK_ACTIVE for x in started)

    def to_revert(self) -> list[str]:
        """Completed tasks with a revert handler, successors before predecessors."""
        return [n for n in self.successors_first() if self.revertable(n)]

    def next_revert(self) -> str | None:
        """The first task to revert whose successors, direct and transitive, have all settled."""
        unsettled: set[str] = set()  # tasks with something unsettled at or after them
        specs = self.view.specs
        for n in self.successors_first():  # successors are decided before their predecessors
            after = any(s in unsettled for s in specs[n].succs if s != END)
            if self.revertable(n) and not after:
                return n
            if after or self.active(n) or self.revertable(n):
                unsettled.add(n)
        return None

    def revertable_running(self) -> bool:
        """Whether a task with a revert handler is still running (its success is reverted too)."""
        if not self.view.full:
            raise Need()
        return any(spec.revert and self.active(n) for n, spec in self.view.specs.items())

    def revert_step(self) -> None:
        """Start the next revert; once none is left and nothing revertable still runs, finish:
        REVERTED (FAILED if there was nothing to revert after all)."""
        if not self.view.full:
            raise Need()
        if any(self.state(n)["s"] == states.REVERTING for n in self.view.specs):
            return  # one at a time: the one in flight calls this again when it ends
        name = self.next_revert()
        if name is not None:
            self.start_revert(name)
            return
        if self.to_revert() or self.revertable_running():
            return  # a successor still runs: its end (success, failure, skip) calls this again
        reverted = any(self.state(n)["s"] == states.REVERTED for n in self.view.specs)
        self.forget_plan()
        self.set_run(states.REVERTED if reverted else states.FAILED)

    def start_revert(self, name: str) -> None:
        """Send the revert request of a completed task."""
        st = self.state(name)
        states.check_task(st["s"], states.REVERTING)
        req = self.request(name, int(st["a"]), protocol.MODE_REVERT)
        self.set_task(name, dict(st, s=states.REVERTING, rt=self.at))
        self.outbox[req.id] = outbox_entry(task_queue(self.view.spec(name).queue), req)
        self.hist(name, states.SUCCESS, states.REVERTING, int(st["a"]))

    def forget_plan(self) -> None:
        """Runs that failed before compensation was decided step by step kept a revert plan."""
        if self.view.meta.get("plan"):
            self.set_meta_list("plan", [])


# --- run.submit ------------------------------------------------------------------------


def decide_submit(event: Event, view: View, rules: Rules) -> Commit:
    """Create the run, store its spec and inputs, schedule its root tasks."""
    if status_of(view) is not None:  # the run exists (or was cancelled first): nothing to do
        return Commit(event.run_id, event.id)
    spec = FlowSpec.from_data(event.body["spec"])
    inputs = event.body["inputs"]
    d = Draft(event, View(meta=dict(view.meta), full=True, applied_ms=view.applied_ms), rules)
    d.view.specs = dict(spec.tasks)
    d.guard(keys.META, "status", None)
    meta = {
        "flow": spec.name.encode(),
        "version": spec.version.encode(),
        "created_ms": str(d.at).encode(),
        "sinks": str(len(spec.sinks)).encode(),
        "outputs": pack(spec.outputs),
        "ntasks": str(len(spec.tasks)).encode(),
        "reverts": str(spec.reverts).encode(),
        # the digest of the flow spec: engines share cached task specs between its runs
        "spec_id": hashlib.sha256(pack(event.body["spec"])).hexdigest()[:32].encode(),
    }
    deadline = float(event.body.get("timeout_s") or 0)
    if deadline > 0:
        meta["deadline_s"] = repr(deadline).encode()
        meta["deadline_timer"] = d.timer(protocol.TIMER_DEADLINE, d.now + int(deadline * 1000)).encode()
    d.view.meta["created_ms"] = meta["created_ms"]
    for k, v in meta.items():
        d.write(keys.META, k, v)
    for n, t in spec.tasks.items():
        d.write(keys.SPEC, n, pack(t.to_data()))
    d.set_data({k: pack(v) for k, v in inputs.items()})
    d.set_run(states.RUNNING, flow=spec.name)
    for name, t in spec.tasks.items():
        if not t.preds:
            d.schedule(name, 1)
    d.flow = spec.name
    return d.commit()


# --- task events -----------------------------------------------------------------------


def stale(d: Draft, active: frozenset[str] = states.TASK_ACTIVE) -> bool:
    """Record and refuse an event for an attempt that is not current (fencing)."""
    e = d.event
    if not d.view.has_spec(e.task):
        d.hist(e.task, "?", "?", e.attempt, note="unknown task")
        return True
    st = d.state(e.task)
    if st["a"] != e.attempt:
        note = f"fenced: attempt {e.attempt} is not the current attempt {st['a']}"
    elif st["s"] not in active:
        note = f"ignored: task is already {st['s']}"
    else:
        return False
    d.hist(e.task, st["s"], st["s"], e.attempt, note=note)
    return True


def decide_started(d: Draft) -> None:
    """SCHEDULED -> RUNNING; a later delivery of the same attempt is recorded as a redelivery."""
    e = d.event
    if stale(d):
        return
    st = d.state(e.task)
    worker = e.body["worker"]
    delivery = int(e.body.get("delivery", 0))
    if st["s"] == states.SCHEDULED:
        states.check_task(st["s"], states.RUNNING)
        d.set_task(e.task, dict(st, s=states.RUNNING, st=d.at, w=worker, d=delivery))
        d.hist(e.task, st["s"], states.RUNNING, e.attempt, worker=worker)
        timeout = d.view.spec(e.task).timeout_s
        if timeout:
            d.timer(protocol.TIMER_TIMEOUT, d.at + int(timeout * 1000), e.task, e.attempt)
    elif delivery > int(st.get("d", 0)):
        d.set_task(e.task, dict(st, w=worker, d=delivery))
        d.hist(
            e.task,
            st["s"],
            st["s"],
            e.attempt,
            worker=worker,
            note=f"redelivered to {worker} (delivery {delivery + 1})",
            redelivery=delivery,
        )


def decide_leased(d: Draft) -> None:
    """A long task's worker gave its delivery back: from now on a lease in Redis covers it."""
    e = d.event
    if stale(d):
        return
    st = d.state(e.task)
    until = d.now + int(d.rules.lease_s * 1000)
    new = dict(st, lk=until)
    if "lk" in st:
        d.cancel.append(protocol.timer_id(protocol.TIMER_LEASE, d.run_id, e.task, e.attempt, str(st["lk"])))
    timeout = d.view.spec(e.task).timeout_s
    if timeout:  # armed when started; again here, should the started event have been lost
        d.timer(protocol.TIMER_TIMEOUT, int(st.get("st") or d.at) + int(timeout * 1000), e.task, e.attempt)
    d.set_task(e.task, new)
    d.write(keys.LEASES, e.task, f"{e.attempt}:{until}".encode())
    d.timer(protocol.TIMER_LEASE, until, e.task, e.attempt, str(until))
    worker = e.body["worker"]
    d.hist(
        e.task, st["s"], st["s"], e.attempt, worker=worker, note=f"leased by {worker}; delivery acknowledged"
    )


NOT_STARTED = "NotStarted"  # the error type of a request a worker skipped: its run was failing
RUN_MARK = "~"  # stands for the run id inside event ids stored in a run's own history


def history_entry(raw: bytes, run_id: str) -> dict[str, Any]:
    """A stored history entry as a dict: at, event, kind, scope, from, to, attempt, extras
    (``t``: when it was applied). Entries are compact arrays; older ones were dicts."""
    d = unpack(raw)
    if isinstance(d, dict):
        return dict(d)
    at, lag, event, kind, scope, old, new, attempt, extra = d
    out = {"at": at, "event": event.replace(RUN_MARK, run_id, 1), "kind": kind, "scope": scope}
    out.update({"from": old, "to": new, "attempt": attempt}, **(extra or {}))
    if lag is not None:
        out["t"] = at + lag
    return out


WAIT_TIMER = "wait"  # timer id suffix of a lazy task's waiting timeout
NOT_TAKEN = "\x1eno"  # joins field suffix: how many incoming edges were not taken


def join_fields(succs: Iterable[str]) -> list[str]:
    """The joins fields a task's completion reads for its successors."""
    return [f for s in succs for f in (s, s + NOT_TAKEN)]


def join_outcome(d: Draft, s: str, taken: bool) -> str | None:
    """Count one more decided predecessor of ``s``: "run", "skip", or None (not yet)."""
    done, no = d.join(s) + 1, d.join(s + NOT_TAKEN) + (0 if taken else 1)
    if s == END:
        return "run" if done == int(d.view.meta["sinks"] or 0) else None
    spec = d.view.spec(s)
    ok, total = done - no, len(spec.preds)
    if spec.join:  # at least N taken edges; decided the moment the N-th arrives
        if taken and ok == spec.needs:
            return "run"
        return "skip" if done == total and ok < spec.needs else None
    return ("run" if ok > 0 else "skip") if done == total else None


def join_ready(d: Draft, s: str) -> bool:
    """Whether ``s``'s join is already satisfied (for a retried run's pending tasks)."""
    spec = d.view.spec(s)
    done, no = d.join(s), d.join(s + NOT_TAKEN)
    if spec.join:
        return done - no >= spec.needs
    return done == len(spec.preds) and done - no > 0


def _taken(d: Draft, spec: TaskSpec, s: str) -> bool:
    cond = spec.when.get(s)
    if cond is None:
        return True
    raw = d.data([cond["value"]])[cond["value"]]
    return conditions.holds(cond, None if raw is None else unpack(raw))


def advance(d: Draft, name: str, taken: bool = True) -> None:
    """``name`` finished (or was skipped): count it in its successors' joins, then start,
    skip or finish what that decides."""
    spec = d.view.spec(name)
    real = [s for s in spec.succs if s != END]
    d.view.prefetch({keys.SPEC: real, keys.JOINS: join_fields(spec.succs)})  # one read, not one per successor
    edges = [(s, taken and _taken(d, spec, s)) for s in spec.succs]
    live = d.run_status in (states.RUNNING, states.PAUSED)
    # What the successors that start will need, in one round trip (a tentative look: the
    # outcomes are decided again below, as the draft stands when each one's turn comes).
    starts = [s for s, edge in edges if s != END and join_outcome(d, s, edge) == "run"]
    if live and starts:
        wanted = [
            v for s in starts for v in (*d.view.spec(s).args.values(), *d.view.spec(s).optional.values())
        ]
        d.view.prefetch({keys.TASKS: starts, keys.DATA: [w for w in wanted if w not in d._new_data]})
    for s, edge in edges:
        # Decided now, not before the loop: skipping an earlier successor may have reached
        # this join already within this same commit.
        out = join_outcome(d, s, edge)
        d.guard(keys.JOINS, s, d.view.joins.get(s))
        d.write(keys.JOINS, s, str(d.join(s) + 1).encode())
        d.write(keys.JOINS, keys.join_member(s, name), b"1" if edge else b"0")
        if not edge:
            d.guard(keys.JOINS, s + NOT_TAKEN, d.view.joins.get(s + NOT_TAKEN))
            d.write(keys.JOINS, s + NOT_TAKEN, str(d.join(s + NOT_TAKEN) + 1).encode())
        if out is None:
            continue
        if out == "skip" and s != END:
            # Bookkeeping, whatever the run's state: a retried run must find its joins whole.
            st = d.state(s)
            states.check_task(st["s"], states.SKIPPED)
            d.set_task(s, dict(st, s=states.SKIPPED, ft=d.at))
            why = (
                "no incoming edge taken"
                if not spec.when.get(s)
                else f"condition false: {_describe(spec.when[s])}"
            )
            d.hist(s, st["s"], states.SKIPPED, 0, note=why)
            advance(d, s, taken=False)
        elif d.run_status not in (states.RUNNING, states.PAUSED):
            continue  # a failed run starts nothing; a retry looks at its joins again
        elif s == END:
            finish_run(d)
        else:
            d.schedule(s, 1)


def finish_run(d: Draft) -> None:
    """Every sink is done: the run succeeded; its result is the flow's outputs."""
    outputs = unpack(d.view.meta["outputs"] or pack([]))
    vals = d.data(outputs)
    result = {o: unpack(raw) for o in outputs if (raw := vals.get(o)) is not None}
    d.write(keys.META, "result", pack(result))
    d.set_meta_list("held", [])
    d.set_run(states.SUCCESS)


def _describe(cond: Mapping[str, Any]) -> str:
    return str(conditions.When(cond["value"], cond["op"], cond["arg"]))


def decide_succeeded(d: Draft) -> None:
    """Record the task's outputs, then advance its successors."""
    if stale(d):
        return
    e = d.event
    succeed(d, e.task, e.body["values"], e.body["worker"], e.body.get("ms"))


def succeed(
    d: Draft, name: str, values: Mapping[str, Any], worker: str, ms: Any = None, note: str = ""
) -> None:
    """The current attempt of ``name`` produced ``values``: SUCCESS, then its successors."""
    e = d.event
    st = d.state(name)
    spec = d.view.spec(name)
    if sorted(values) != sorted(spec.provides):
        msg = f"result names {sorted(values)} differ from provides {spec.provides}"
        d.fail_attempt(name, {"type": "ProtocolError", "message": msg}, worker)
        return
    states.check_task(st["s"], states.SUCCESS)
    old = d.implied_start(name, st, worker)
    new = dict(d.end_attempt(name, st), s=states.SUCCESS, ft=d.at, w=worker)
    new.pop("err", None)
    if ms is not None:
        new["ms"] = ms
    d.set_task(name, new)
    d.set_data({k: pack(v) for k, v in values.items()})
    d.hist(name, old, states.SUCCESS, e.attempt, worker=worker, **({"note": note} if note else {}))
    if keys.item_of(name) is not None:
        d.map_item_done(name)
        return
    if d.run_status == states.REVERTING:
        d.revert_step()  # finished after the run failed: reverted too, before its inputs
    advance(d, name)


def decide_waiting(d: Draft) -> None:
    """A lazy task deferred: WAITING for an outside completion, holding nothing."""
    if stale(d):
        return
    e = d.event
    st = d.state(e.task)
    worker = e.body["worker"]
    old = d.implied_start(e.task, st, worker)
    states.check_task(old, states.WAITING)
    new = dict(d.end_attempt(e.task, st), s=states.WAITING, wt=d.at, w=worker)
    limit = float(e.body.get("timeout_s") or d.view.spec(e.task).timeout_s or 0)
    if limit:
        new["wl"] = limit
        d.timer(protocol.TIMER_TIMEOUT, d.now + int(limit * 1000), e.task, e.attempt, WAIT_TIMER)
    d.set_task(e.task, new)
    note = "waiting for an outside completion" + (f": {e.body['note']}" if e.body.get("note") else "")
    d.hist(e.task, old, states.WAITING, e.attempt, worker=worker, note=note)


COMPLETABLE = (states.RUNNING, states.PAUSED, states.REVERTING)  # runs that take a completion


def decide_complete(d: Draft) -> None:
    """An outside system completed (or failed) a task with its token."""
    e = d.event
    if not d.view.has_spec(e.task):
        d.hist(e.task, "?", "?", e.attempt, note="unknown task")
        return
    st = d.state(e.task)
    if d.run_status not in COMPLETABLE:
        d.hist(e.task, st["s"], st["s"], e.attempt, note=f"completion refused: the run is {d.run_status}")
        return
    # Only the current attempt, while it is active: waiting (it deferred) — or still running,
    # as when an outside system answers before the task's defer() is recorded: the
    # completion is then the attempt's result, and the task's own report that follows is
    # ignored like any duplicate. While the run is reverting, a completed task is reverted
    # like any that finished late (compensation waits for it).
    if stale(d):
        return
    by = f"outside:{e.body['by']}"
    if "error" in e.body:
        d.fail_attempt(e.task, dict(e.body["error"]), by)
    else:
        succeed(d, e.task, dict(e.body.get("values") or {}), by, note="completed from outside")


def decide_failed(d: Draft) -> None:
    """The attempt failed: retry per the task's policy, or fail the run."""
    if stale(d):
        return
    if d.event.body.get("not_started"):
        not_started(d, d.event.task, d.event.body["error"], d.event.body["worker"])
        return
    d.fail_attempt(d.event.task, d.event.body["error"], d.event.body["worker"])


def not_started(d: Draft, name: str, error: Mapping[str, Any], worker: str) -> None:
    """A worker skipped the attempt's request because its run was failing: the attempt
    ended without effect. SKIPPED while compensating (so its predecessors can be reverted);
    FAILED in a FAILED run, so that a retry of the run runs it again."""
    st = d.state(name)
    err = error_dict(error)
    attempt = int(st["a"])
    ended = d.end_attempt(name, st)
    if st["s"] == states.SCHEDULED and d.run_status in (states.REVERTING, states.REVERTED, states.CANCELLED):
        d.set_task(name, dict(ended, s=states.SKIPPED, ft=d.at))
        d.hist(name, st["s"], states.SKIPPED, attempt, worker=worker, note=err["message"])
    else:
        states.check_task(st["s"], states.FAILED)
        new = dict(ended, s=states.FAILED, ft=d.at, err=err, w=worker)
        live = d.run_status in (states.RUNNING, states.PAUSED)
        if live:  # the run was retried while the report was on its way: no try spent
            new["ra"] = int(st.get("ra", 0)) + 1
        d.set_task(name, new)
        d.hist(name, st["s"], states.FAILED, attempt, error_type=err["type"], error=err["message"])
        if live:
            d.schedule(name, attempt + 1, note="sent again: its request was skipped while the run was failed")
            return
    if d.run_status == states.REVERTING:
        d.revert_step()


def decide_reverted(d: Draft) -> None:
    """A revert handler finished: REVERTED, then the next one; a failed revert fails the run."""
    e = d.event
    if stale(d, frozenset({states.REVERTING})):
        return
    st = d.state(e.task)
    worker = e.body["worker"]
    if e.kind == protocol.TASK_REVERTED:
        states.check_task(st["s"], states.REVERTED)
        d.set_task(e.task, dict(st, s=states.REVERTED, rft=d.at))
        d.hist(e.task, states.REVERTING, states.REVERTED, e.attempt, worker=worker)
        if d.run_status == states.REVERTING:
            d.revert_step()
        return
    err = error_dict(e.body["error"])
    d.set_task(e.task, dict(st, s=states.FAILED, rft=d.at, rerr=err))
    d.hist(e.task, states.REVERTING, states.FAILED, e.attempt, error_type=err["type"], error=err["message"])
    if d.run_status == states.REVERTING:
        raw_err = d.view.meta.get("error")
        cause = unpack(raw_err) if raw_err else {}
        error = {
            "type": "RevertFailed",
            "message": f"revert of task {e.task!r} failed: {err['type']}: {err['message']}",
            "traceback": err["traceback"],
            "task": e.task,
            "attempt": e.attempt,
            "cause": cause,
        }
        d.write(keys.META, "error", pack(error))
        d.forget_plan()
        d.set_run(states.FAILED, task=e.task, error_type="RevertFailed", error=error["message"])


# --- timers ----------------------------------------------------------------------------


def decide_timer(d: Draft) -> None:
    e = d.event
    purpose = e.body["purpose"]
    if purpose == protocol.TIMER_DEADLINE:
        if (d.view.meta.get("deadline_timer") or b"").decode() != e.id:
            d.note("run", 0, "an earlier deadline passed; ignored: the run was retried with a new one")
        elif d.run_status in (states.RUNNING, states.PAUSED):
            secs = (d.view.meta.get("deadline_s") or b"?").decode()
            d.fail_run(
                {"type": "RunTimeout", "message": f"the run did not finish within {secs} s", "task": ""}
            )
        else:
            d.note("run", 0, f"deadline passed; ignored: run is {d.run_status}")
        return
    if purpose == protocol.TIMER_RETRY:
        st = d.state(e.task)
        if st["s"] != states.FAILED or st["a"] != e.attempt - 1 or "retry_at" not in st:
            d.hist(e.task, st["s"], st["s"], e.attempt, note="retry timer ignored: the task moved on")
        elif d.run_status not in (states.RUNNING, states.PAUSED):
            d.hist(e.task, st["s"], st["s"], e.attempt, note=f"retry not started: run is {d.run_status}")
        else:
            d.schedule(e.task, e.attempt)
        return
    if stale(d):
        return
    st = d.state(e.task)
    if purpose == protocol.TIMER_TIMEOUT:
        if (st["s"] == states.WAITING) != e.id.endswith(":" + WAIT_TIMER):
            d.hist(
                e.task, st["s"], st["s"], e.attempt, note="timeout ignored: it was for the task's other phase"
            )
            return
        if st["s"] == states.WAITING:
            msg = f"attempt {e.attempt} was not completed within {float(st.get('wl', 0)):g} s"
        else:
            msg = f"attempt {e.attempt} did not finish within {d.view.spec(e.task).timeout_s:g} s"
        d.fail_attempt(e.task, {"type": "TaskTimeout", "message": msg, "types": ["TaskTimeout"]})
        return
    if purpose == protocol.TIMER_LEASE:
        raw = d.view.lease(e.task)
        attempt, _, until = (raw or b"0:0").decode().partition(":")
        if int(attempt) == e.attempt and int(until) > e.at_ms:  # renewed since: look again when it ends
            d.set_task(e.task, dict(st, lk=int(until)))
            d.timer(protocol.TIMER_LEASE, int(until), e.task, e.attempt, until)
            return
        lost = int(st.get("ll", 0)) + 1
        msg = (
            f"the worker's lease expired (no heartbeat for {d.rules.lease_s:g} s); lease lost {lost} time(s)"
        )
        d.fail_attempt(e.task, {"type": "LeaseExpired", "message": msg}, lease_lost=True)
        return
    d.hist(e.task, st["s"], st["s"], e.attempt, note=f"unknown timer {purpose!r}")


# --- dispatch --------------------------------------------------------------------------


def decide(event: Event, view: View, rules: Rules) -> Commit:
    """The commit for one event; raises `Need` when the view lacks a field it depends on."""
    from runner import control  # control builds on this module

    if event.kind == protocol.RUN_SUBMIT:
        return decide_submit(event, view, rules)
    d = Draft(event, view, rules)
    handler = {
        protocol.TASK_STARTED: decide_started,
        protocol.TASK_LEASED: decide_leased,
        protocol.TASK_WAITING: decide_waiting,
        protocol.TASK_COMPLETE: decide_complete,
        protocol.TASK_SUCCEEDED: decide_succeeded,
        protocol.TASK_FAILED: decide_failed,
        protocol.TASK_REVERTED: decide_reverted,
        protocol.TASK_REVERT_FAILED: decide_reverted,
        protocol.TIMER_FIRED: decide_timer,
        protocol.RUN_CANCEL: control.decide_cancel,
        protocol.RUN_PAUSE: control.decide_pause,
        protocol.RUN_RESUME: control.decide_resume,
        protocol.RUN_RETRY: control.decide_retry,
    }[event.kind]
    handler(d)
    return d.commit()
