"""One message at a time through a quorum queue: ``python -m tests.tools.queue_latency [N]``.

Prints the medians of publish + confirm and of publish -> delivered to a consumer, against the
configured RabbitMQ: the broker's share of each step's latency (a step is two such hops).
"""

from __future__ import annotations

import statistics
import sys
import time
import uuid

from runner.broker import Outgoing
from runner.config import Config
from runner.connect import open_broker


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 200
    cfg = Config.from_env().with_(prefix=f"qlat-{uuid.uuid4().hex[:6]}")
    pub, cons = open_broker(cfg), open_broker(cfg)
    confirmed, delivered = [], []
    try:
        pub.declare(["task.q"])
        cons.consume(["task.q"], 10)
        for i in range(n):
            t0 = time.perf_counter()
            pub.publish([Outgoing("task.q", f"m{i}", b"x" * 200)])
            t1 = time.perf_counter()
            got = []
            while not got:
                got = cons.poll(1.0)
            delivered.append(1000 * (time.perf_counter() - t0))
            confirmed.append(1000 * (t1 - t0))
            for d in got:
                cons.ack(d)
        print(
            f"publish + confirm p50 {statistics.median(confirmed):.2f} ms; "
            f"publish -> delivered p50 {statistics.median(delivered):.2f} ms ({n} messages)"
        )
    finally:
        cons.close()
        pub._declared |= {"task.q"}
        pub.delete_queues()
        pub.close()


if __name__ == "__main__":
    main()
