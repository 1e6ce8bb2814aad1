"""The in-memory store for local mode: the Redis store's semantics under one lock.

Expiry of finished runs is honoured lazily (checked on read), which is enough for one
process; nothing here survives the process, as local mode intends.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping, Sequence

from runner.store import APPLIED_RESULT, Beat, Commit, CommitResult, DueTimer, keys


class _MemoryWatch:
    """Woken by the commits of one run (not by every commit of the store)."""

    def __init__(self, store: MemoryStore, run_id: str) -> None:
        self._store = store
        self._run_id = run_id
        self._any = threading.Event()
        self._status = threading.Event()
        with store._lock:
            store._watchers.setdefault(run_id, []).append(self)

    def notify(self, status_changed: bool) -> None:
        self._any.set()
        if status_changed:
            self._status.set()

    def wait(self, timeout_s: float, status_only: bool = False) -> bool:
        changed = (self._status if status_only else self._any).wait(timeout_s)
        self._any.clear()  # the caller reads the run after this, so nothing is missed
        self._status.clear()
        return changed

    def close(self) -> None:
        with self._store._lock:
            watchers = self._store._watchers.get(self._run_id, [])
            if self in watchers:
                watchers.remove(self)
            if not watchers:
                self._store._watchers.pop(self._run_id, None)


class MemoryStore:
    """Implements `runner.store.Store` in process memory."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._runs: dict[str, dict[str, dict[str, bytes]]] = {}
        self._flows: dict[str, bytes] = {}  # name -> info of its latest version
        self._flow_specs: dict[str, dict[str, bytes]] = {}  # name -> digest -> spec
        self._tasks: dict[str, bytes] = {}  # task name -> info of its latest catalogue entry
        self._task_entries: dict[str, dict[str, bytes]] = {}  # task name -> digest -> entry
        self._history: dict[str, list[bytes]] = {}
        self._expires: dict[str, float] = {}
        self._index: dict[str, dict[str, int]] = {}  # status ("" = all) -> run -> created ms
        self._watchers: dict[str, list[_MemoryWatch]] = {}
        self._timers: dict[tuple[str, str], int] = {}  # (run, timer id) -> due ms
        self._epoch: str | None = None
        self._lost: dict[str, int] = {}  # run id -> when its loss was noticed (ms)
        self._workers: dict[str, tuple[bytes, int]] = {}  # worker id -> (record, ms last heard)
        self._queues: dict[str, int] = {}  # task queue -> ms last noted
        self._schedules: dict[str, bytes] = {}  # name -> packed record

    def _run(self, run_id: str) -> dict[str, dict[str, bytes]]:
        exp = self._expires.get(run_id)
        if exp is not None and exp <= time.monotonic():
            self._runs.pop(run_id, None)
            self._history.pop(run_id, None)
            self._expires.pop(run_id, None)
        run = self._runs.get(run_id)
        if run is None:
            run = self._runs[run_id] = {
                p: {} for p in (*keys.RUN_HASHES, keys.DELIVERIES, keys.TIMERS, keys.LEASES)
            }
        return run

    def read(self, run_id: str, wants: Mapping[str, Sequence[str]]) -> dict[str, list[bytes | None]]:
        with self._lock:
            run = self._run(run_id)
            return {part: [run[part].get(f) for f in fs] for part, fs in wants.items()}

    def read_all(self, run_id: str, part: str) -> dict[str, bytes]:
        with self._lock:
            return dict(self._run(run_id)[part])

    def commit(self, c: Commit) -> CommitResult:
        with self._lock:
            run = self._run(c.run_id)
            done = run[keys.APPLIED].get(c.event_id)
            if done is not None:
                ids = done.decode().split("\n") if done else []
                out = run[keys.OUTBOX]
                return CommitResult("duplicate", {i: out[i] for i in ids if i in out})
            for n, (part, fld, expected) in enumerate(c.guards):
                if run[part].get(fld) != expected:
                    return CommitResult("conflict", conflict_guard=n)
            for part, values in c.writes.items():
                run[part].update(values)
            self._history.setdefault(c.run_id, []).extend(c.history)
            run[keys.OUTBOX].update(c.outbox)
            run[keys.APPLIED][c.event_id] = "\n".join(c.outbox).encode()
            for part, fields in c.deletes.items():
                for f in fields:
                    run[part].pop(f, None)
            for tid, (due, event) in c.timers.items():
                run[keys.TIMERS][tid] = event
                self._timers[(c.run_id, tid)] = due
            for tid in c.cancel_timers:
                run[keys.TIMERS].pop(tid, None)
                self._timers.pop((c.run_id, tid), None)
            if c.status_change:
                old, new = c.status_change
                if old:
                    self._index.get(old, {}).pop(c.run_id, None)
                else:
                    self._index.setdefault("", {})[c.run_id] = c.created_ms
                self._index.setdefault(new, {})[c.run_id] = c.created_ms
            if c.expire_s > 0:
                self._expires[c.run_id] = time.monotonic() + c.expire_s
            elif c.expire_s < 0:
                self._expires.pop(c.run_id, None)
            for w in self._watchers.get(c.run_id, ()):
                w.notify(bool(c.status_change))
            return APPLIED_RESULT

    def count_delivery(self, run_id: str, event_id: str, delta: int = 1) -> int:
        with self._lock:
            counts = self._run(run_id)[keys.DELIVERIES]
            n = int(counts.get(event_id, b"0")) + delta
            counts[event_id] = str(n).encode()
            return n

    def mark_sent(self, run_id: str, message_ids: Sequence[str]) -> None:
        with self._lock:
            out = self._run(run_id)[keys.OUTBOX]
            for i in message_ids:
                out.pop(i, None)

    def read_many(
        self, reads: Sequence[tuple[str, Mapping[str, Sequence[str]]]]
    ) -> list[dict[str, list[bytes | None]]]:
        return [self.read(run_id, wants) for run_id, wants in reads]

    def commit_many(self, commits: Sequence[Commit]) -> list[CommitResult]:
        return [self.commit(c) for c in commits]

    def mark_sent_many(self, sent: Mapping[str, Sequence[str]]) -> None:
        for run_id, message_ids in sent.items():
            self.mark_sent(run_id, message_ids)

    def history(self, run_id: str, start: int = 0) -> list[bytes]:
        with self._lock:
            self._run(run_id)
            return list(self._history.get(run_id, [])[start:])

    def claim_timers(self, now_ms: int, limit: int, hold_ms: int) -> tuple[list[DueTimer], int | None]:
        with self._lock:
            out: list[DueTimer] = []
            for key, due in sorted(self._timers.items(), key=lambda kv: kv[1]):
                if due > now_ms or len(out) >= limit:
                    break
                event = self._run(key[0])[keys.TIMERS].get(key[1])
                if event is None:
                    del self._timers[key]
                    continue
                self._timers[key] = now_ms + hold_ms
                out.append(DueTimer(key[0], key[1], event))
            return out, min(self._timers.values(), default=None)

    def get_schedule(self, name: str) -> bytes | None:
        with self._lock:
            return self._schedules.get(name)

    def list_schedules(self) -> dict[str, bytes]:
        with self._lock:
            return dict(self._schedules)

    def swap_schedule(self, name: str, expected: bytes | None, new: bytes | None, arm_ms: int | None) -> bool:
        with self._lock:
            current = self._schedules.get(name)
            if current != expected:
                return current == new  # a repeat of this very swap (as Redis answers one)
            if new is None:
                self._schedules.pop(name, None)
            else:
                self._schedules[name] = new
            if arm_ms is not None:
                self._arm(name, arm_ms)
            return True

    def arm_schedule(self, name: str, due_ms: int) -> None:
        with self._lock:
            self._arm(name, due_ms)

    def _arm(self, name: str, due_ms: int) -> None:
        run, tid = keys.schedule_timer_run(name), str(due_ms)
        self._run(run)[keys.TIMERS][tid] = b""
        self._timers.setdefault((run, tid), due_ms)

    def remove_timers(self, timers: Sequence[DueTimer]) -> None:
        with self._lock:
            for t in timers:
                self._timers.pop((t.run_id, t.timer_id), None)
                self._run(t.run_id)[keys.TIMERS].pop(t.timer_id, None)

    def heartbeat(self, run_id: str, task: str, attempt: int, until_ms: int, progress: bytes | None) -> Beat:
        with self._lock:
            run = self._run(run_id)
            leases = run[keys.LEASES]
            leased = False
            cur = leases.get(task)
            if until_ms > 0 and cur is not None and cur.split(b":")[0] == str(attempt).encode():
                leases[task] = f"{attempt}:{until_ms}".encode()
                leased = True
            status = run[keys.META].get("status")
            if progress and status is not None:
                leases[keys.progress_field(task)] = progress
                for w in self._watchers.get(run_id, ()):
                    w.notify(False)
            return Beat(leased, status.decode() if status else None)

    def put_flow(self, name: str, digest: str, spec: bytes, info: bytes) -> None:
        with self._lock:
            self._flow_specs.setdefault(name, {})[digest] = spec
            self._flows[name] = info

    def get_flow(self, name: str, digest: str) -> bytes | None:
        with self._lock:
            return self._flow_specs.get(name, {}).get(digest)

    def list_flows(self) -> dict[str, bytes]:
        with self._lock:
            return dict(self._flows)

    def flow_digests(self, name: str) -> list[str]:
        with self._lock:
            return sorted(self._flow_specs.get(name, {}))

    def put_task(self, name: str, digest: str, entry: bytes, info: bytes) -> None:
        with self._lock:
            self._task_entries.setdefault(name, {})[digest] = entry
            self._tasks[name] = info

    def get_task(self, name: str, digest: str) -> bytes | None:
        with self._lock:
            return self._task_entries.get(name, {}).get(digest)

    def list_tasks(self) -> dict[str, bytes]:
        with self._lock:
            return dict(self._tasks)

    def reserve(self, run_id: str, digest: bytes) -> bytes | None:
        with self._lock:
            meta = self._run(run_id)[keys.META]
            old = meta.get("digest")
            if old is None:
                meta["digest"] = digest
            return old

    def list_runs(self, status: str | None, limit: int) -> list[str]:
        with self._lock:
            idx = self._index.get(status or "", {})
            live = [r for r in idx if self._run(r)[keys.META]]
            return sorted(live, key=lambda r: idx[r], reverse=True)[:limit]

    def page_runs(
        self,
        status: str | None,
        flow: str | None,
        since_ms: int = 0,
        before_ms: int | None = None,
        limit: int = 50,
    ) -> tuple[list[tuple[str, int]], int | None]:
        with self._lock:
            idx = self._index.get(status or "", {})
            rows = []
            for r, created in sorted(idx.items(), key=lambda kv: (-kv[1], kv[0])):
                if created < since_ms or (before_ms is not None and created >= before_ms):
                    continue
                meta = self._run(r)[keys.META]
                if not meta or (flow and meta.get("flow", b"").decode() != flow):
                    continue
                rows.append((r, created))
                if len(rows) == limit:
                    return rows, created
            return rows, None

    def count_runs(self, status: str | None) -> int:
        with self._lock:
            return len(self._index.get(status or "", {}))

    def watch(self, run_id: str) -> _MemoryWatch:
        return _MemoryWatch(self, run_id)

    def session(self) -> int:
        return 0  # never reconnects

    def durability_settings(self) -> dict[str, str] | None:
        return {"memory": "yes"}  # volatile by design: local mode lives and dies with its process

    def epoch(self, candidate: str) -> str:
        with self._lock:
            if self._epoch is None:
                self._epoch = candidate
            return self._epoch

    def record_lost(self, run_id: str, now_ms: int, keep_s: int) -> bool:
        with self._lock:
            for r in [r for r, at in self._lost.items() if at < now_ms - keep_s * 1000]:
                del self._lost[r]
            if run_id in self._lost:
                return False
            self._lost[run_id] = now_ms
            return True

    def is_lost(self, run_id: str) -> bool:
        with self._lock:
            return run_id in self._lost

    def beat_worker(self, worker_id: str, record: bytes, now_ms: int, keep_s: int) -> None:
        with self._lock:
            self._workers[worker_id] = (record, now_ms)
            for w in [w for w, (_, at) in self._workers.items() if at < now_ms - keep_s * 1000]:
                del self._workers[w]

    def workers(self, now_ms: int, keep_s: int) -> list[tuple[str, bytes, int]]:
        with self._lock:
            return [
                (w, rec, at) for w, (rec, at) in sorted(self._workers.items()) if at >= now_ms - keep_s * 1000
            ]

    def note_queues(self, queues: Sequence[str], now_ms: int) -> None:
        with self._lock:
            for q in queues:
                self._queues[q] = max(now_ms, self._queues.get(q, 0))

    def noted_queues(self, since_ms: int) -> list[str]:
        with self._lock:
            for q in [q for q, at in self._queues.items() if at < since_ms]:
                del self._queues[q]
            return sorted(self._queues)

    def close(self) -> None:
        pass
