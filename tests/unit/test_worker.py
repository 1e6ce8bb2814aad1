"""The worker runtime's bookkeeping, driven step by step on the in-process transport."""

from __future__ import annotations

import threading
from collections.abc import Sequence

from runner import flow, task
from runner.broker import Outgoing
from runner.broker.local import LocalBroker
from runner.config import Config
from runner.define.tasks import Registry
from runner.errors import PublishError
from tests.helpers.harness import Harness
from workers.loop import Worker

reg = Registry()


@task(provides="o", registry=reg)
def quick() -> int:
    return 1


class FlakyBroker(LocalBroker):
    failing = False

    def publish(self, messages: Sequence[Outgoing]) -> None:
        if self.failing and any(m.message_id.startswith("result:") for m in messages):
            raise PublishError("broker hiccup")
        super().publish(messages)


def test_a_finished_task_whose_result_is_not_yet_published_is_never_leased() -> None:
    h = Harness()
    h.tasks.close()  # the worker under test takes the requests
    cfg = Config(ack_after_s=0, lease_s=30)
    broker = FlakyBroker(h.hub)
    w = Worker(cfg, broker, reg, concurrency=1, name="w1", store=h.store, max_long=4)
    w.start()
    finished = threading.Event()
    execute = w._execute

    def tracked(r):  # type: ignore[no-untyped-def]
        execute(r)
        finished.set()

    w._execute = tracked  # type: ignore[method-assign]
    rid = h.client.submit(flow.linear("q", quick).compile(reg), {})
    h.pump()
    broker.failing = True
    w.run_once(0)  # dispatches
    assert finished.wait(10)
    w.run_once(0)  # the result cannot be published: kept, the delivery still held
    assert len(broker._unacked) == 1, "a request must not be acknowledged before its result is published"
    assert (w._freed, w._inflight) == (0, 0)
    assert not any(r.leased for r in w._running.values())
    broker.failing = False
    w.run_once(0)
    h.pump()
    assert h.client.status(rid).status == "SUCCESS"
    assert (w._freed, w._inflight, len(w._running)) == (0, 0, 0)
    w._pool.shutdown()
