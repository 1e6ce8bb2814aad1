"""The commit script's arguments and replies (runner/store/lua/commit.lua), and the pipelined
commit of several runs' events in one round trip (`RedisStore.commit_many`).

Each commit stays one script, atomic on its own; a pipeline only saves the round trips between
them. The scripts of one pipeline run in order on one connection, so one WAIT after them
covers all their writes when replicas are wanted.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import redis
import redis.exceptions

from runner.protocol import pack
from runner.store import APPLIED_RESULT, Commit, CommitResult, keys
from runner.store.redis_replicas import Replicas

_PART_INDEX = {part: str(i + 1) for i, part in enumerate(keys.RUN_PARTS)}


def commit_result(reply: Any) -> CommitResult:
    tag = reply[0]
    if tag == b"ok":
        return APPLIED_RESULT
    if tag == b"conflict":
        return CommitResult("conflict", conflict_guard=int(reply[1]))
    rest = reply[1:]
    return CommitResult("duplicate", {rest[i].decode(): rest[i + 1] for i in range(0, len(rest), 2)})


def commit_args(prefix: str, c: Commit, global_: bool, publish: str) -> tuple[list[str], list[Any]]:
    """The commit script's KEYS and ARGV; ``global_``: the script keeps the global indexes
    itself (not on a cluster); ``publish``: the command of the notify channels."""
    argv: list[Any] = [c.event_id, c.run_id, keys.notify_channel(prefix, c.run_id)]
    argv.append(len(c.guards))
    for part, fld, expected in c.guards:
        argv += [_PART_INDEX[part], fld, "0" if expected is None else "1", expected or b""]
    writes = [(p, f, v) for p, fv in c.writes.items() for f, v in fv.items()]
    argv.append(len(writes))
    for part, fld, value in writes:
        argv += [_PART_INDEX[part], fld, value]
    argv.append(len(c.history))
    argv += list(c.history)
    argv.append(len(c.outbox))
    for mid, msg in c.outbox.items():
        argv += [mid, msg]
    deletes = [(p, f) for p, fs in c.deletes.items() for f in fs]
    argv.append(len(deletes))
    for part, fld in deletes:
        argv += [_PART_INDEX[part], fld]
    argv.append(len(c.timers))
    for tid, (due, event) in c.timers.items():
        argv += [tid, due, pack([due, event])]
    argv.append(len(c.cancel_timers))
    argv += list(c.cancel_timers)
    old, new = c.status_change or ("", "")
    argv += [
        "0" if not new else ("1" if old else "2"),
        c.created_ms,
        c.expire_s,
        c.flow,
        prefix,
        old,
        new,
        "1" if global_ else "0",
        publish,
    ]
    run_keys = [keys.run_key(prefix, c.run_id, p) for p in keys.RUN_PARTS]
    if global_:
        run_keys += [
            keys.runs_index(prefix),
            keys.status_index(prefix, old or "NONE"),
            keys.status_index(prefix, new or "NONE"),
            keys.timers_index(prefix),
            keys.flow_index(prefix, c.flow or "NONE"),
        ]
    return run_keys, argv


def commit_pipelined(
    client: redis.Redis,
    script: Any,
    calls: Sequence[tuple[list[str], list[Any]]],
    replicas: Replicas,
    wait_timeout_ms: int,
) -> list[Any]:
    """Run the commit script once per (KEYS, ARGV) of ``calls`` in one pipeline: their replies,
    in order, an error in place of a call's reply where it failed on its own. A server without
    the script (new or restarted) gets it loaded and runs again only the calls it refused (a
    refused call wrote nothing)."""
    wanted = replicas.wanted(client)
    replies: list[Any] = [None] * len(calls)
    todo = list(range(len(calls)))
    for _ in range(2):
        pipe: Any = client.pipeline(transaction=False)  # redis-py's stubs leave WAIT untyped
        for i in todo:
            script_keys, args = calls[i]
            pipe.evalsha(script.sha, len(script_keys), *script_keys, *args)
        if wanted:
            pipe.execute_command("WAIT", wanted, wait_timeout_ms)
        got = pipe.execute(raise_on_error=False)
        if wanted:
            replicas.check(got.pop(), wanted)
        missing = []
        for i, reply in zip(todo, got, strict=True):
            if isinstance(reply, redis.exceptions.NoScriptError):
                missing.append(i)
            else:
                replies[i] = reply
        if not missing:
            return replies
        client.script_load(script.script)
        todo = missing
    raise redis.exceptions.ConnectionError("redis lost the script just loaded (restarting?)")
