"""The demo, distributed: an engine and a worker process on RabbitMQ + Redis.

Run by ``make demo`` when ``ACKFLOW_BROKER_URL`` and ``ACKFLOW_REDIS_URL`` are set.
"""

from __future__ import annotations

import subprocess
import sys

from runner import logs
from runner.client import Client, HistoryEntry
from runner.client.render import history_line, outcome_lines
from runner.examples.demo import checkout


def show(entry: HistoryEntry) -> None:
    print(logs.scrub(history_line(entry)))


def main() -> int:
    ackflow = [sys.executable, "-m", "runner.ops.cli", "--log-level", "warning"]
    procs = [
        subprocess.Popen([*ackflow, "engine"]),
        subprocess.Popen([*ackflow, "worker", "runner.examples.demo", "-c", "4"]),
    ]
    client = Client.from_env()
    try:
        run_id = client.submit(checkout, {"order_id": 42})
        print(f"submitted run {run_id}")
        info = client.wait(run_id, timeout_s=120, on_history=show)
        print(logs.scrub("\n".join(outcome_lines(info))))
        return 0 if info.status == "SUCCESS" else 1
    finally:
        client.close()
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait(timeout=30)


if __name__ == "__main__":
    sys.exit(main())
