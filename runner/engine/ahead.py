"""Committing ahead: the first event of each run in a batch, decided and committed together.

An engine handles a batch's events one by one, each its own atomic transition; alone, each
costs two Redis round trips (its first read, its commit). Before that loop, `commit_ahead`
takes the first event of each run in the batch, reads what their decisions need in one round
trip (`RunReader.decide_many`) and commits them in another (`Store.commit_many`); the loop
then finds those events committed and goes on from there (sends their outboxes, awaits the
confirms, acknowledges), exactly as for an event it committed itself.

Safe because runs are independent: an event's transition reads and writes only its own run,
so deciding the first event of run B before the loop reaches an earlier event of run A
changes nothing either sees. Later events of a run that was committed ahead are decided in
the loop, after it. A commit ahead is guarded like any other: a conflict (another engine
moved the run meanwhile) is decided again in the loop; an event whose decision raised, or
whose run is missing, is left to the loop, which handles it alone (and dead-letters it if
it must). Only the batch's prefix before its first redelivered event is committed ahead: a
redelivered event may be the one that kills engines, and the loop settles what comes before
it first (`Engine._handle_events`); what comes after waits, as it would without this.
A failure here (an outage) commits nothing ahead that the loop would not find: it redoes
each event, and one already committed is a duplicate, its unsent outbox sent again (G1-G3).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import NamedTuple

from runner import protocol
from runner.broker import Delivery
from runner.engine.reader import RunReader
from runner.errors import StoreError
from runner.protocol import Event
from runner.store import Commit, CommitResult, Store

log = logging.getLogger("ackflow.engine")


class Ahead(NamedTuple):
    """An event committed ahead: its decision and the commit's result."""

    event: Event
    commit: Commit
    result: CommitResult


def commit_ahead(reader: RunReader, store: Store, deliveries: Sequence[Delivery]) -> dict[int, Ahead]:
    """Commit the first event of each run among ``deliveries`` (up to the first redelivered
    one) together, when there are at least two: id() of each such delivery -> `Ahead`."""
    if len(deliveries) < 2 or deliveries[0].redelivered or deliveries[1].redelivered:
        return {}  # fewer than two events before the first redelivered one: nothing to decode
    firsts: list[tuple[Delivery, Event]] = []
    runs: set[str] = set()
    for d in deliveries:
        if d.redelivered:
            break
        try:
            event = protocol.decode_delivery(d.content_type, d.body, Event, "the engine queue")
        except Exception:  # noqa: BLE001 - the loop dead-letters it, with the reason
            continue
        if event.run_id not in runs:
            runs.add(event.run_id)
            firsts.append((d, event))
    if len(firsts) < 2:
        return {}
    try:
        decisions = reader.decide_many([e for _, e in firsts])
        decided = [(d, e, c) for (d, e), c in zip(firsts, decisions, strict=True) if isinstance(c, Commit)]
        results = store.commit_many([c for _, _, c in decided])
    except StoreError as e:
        log.info("committing %d events ahead failed (%s); each is committed on its own", len(firsts), e)
        return {}
    except Exception:  # a bug here must not cost the batch (H1): the loop does it all alone
        log.exception("committing %d events ahead failed; each is committed on its own", len(firsts))
        return {}
    return {
        id(d): Ahead(e, c, r)
        for (d, e, c), r in zip(decided, results, strict=True)
        if r.outcome != "conflict"
    }
