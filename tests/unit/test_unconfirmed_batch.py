"""An engine batch whose publishes stay unconfirmed (the broker gave up re-sending them, say
after nacks on every channel it tried): nothing of it is acknowledged, and it is handed back
at once, on the same live connection, so the run goes on instead of waiting for the
connection to close (local broker made to fail its confirms; no network)."""

from __future__ import annotations

from runner.broker import Delivery
from runner.broker.local import LocalBroker, LocalHub
from runner.client import Client
from runner.engine import Engine
from runner.errors import BrokerUnavailable
from runner.store.memory import MemoryStore
from tests.helpers import flows
from tests.helpers.harness import CFG


class RefusingConfirms(LocalBroker):
    """Confirms fail ``failures`` times, as KombuBroker's do once its re-sends are used up."""

    def __init__(self, hub: LocalHub, failures: int) -> None:
        super().__init__(hub)
        self.failures = failures
        self.log: list[str] = []

    def confirm(self) -> None:
        if self.failures:
            self.failures -= 1
            self.log.append("confirm failed")
            raise BrokerUnavailable("1 message(s) nacked by the broker on 5 publishing channels in a row")
        self.log.append("confirmed")

    def ack(self, delivery: Delivery) -> None:
        self.log.append(f"ack {delivery.message_id}")
        super().ack(delivery)


def test_a_batch_whose_publishes_were_not_confirmed_is_requeued_not_acked_and_then_applied() -> None:
    hub = LocalHub()
    store = MemoryStore()
    broker = RefusingConfirms(hub, failures=2)
    engine = Engine(CFG, store, broker)
    engine.start()
    client = Client(CFG, store, hub.connect)
    tasks = hub.connect()
    tasks.consume(["task.default"], 100)
    rid = client.submit(flows.chain(1), {"v0": 1})
    for _ in range(3):  # two failed confirms, then one that goes through
        assert engine.run_once(0) == 1
    acks = [e for e in broker.log if e.startswith("ack ")]
    assert len(acks) == 1  # the submit event, once
    assert broker.log.index(acks[0]) > broker.log.index("confirmed")
    assert broker.log[:2] == ["confirm failed", "confirm failed"]
    requests = tasks.poll(0)
    assert requests and {d.message_id for d in requests} == {f"req:{rid}:s1:1"}
    assert client.status(rid).status == "RUNNING"
    assert engine.run_once(0) == 0  # nothing left unacknowledged or pending
