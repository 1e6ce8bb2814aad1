"""An access request that waits for a human approval: the lazy execution model.

``ask_for_approval`` hands its completion token to the approver (here it is only logged; a
real flow would open a ticket or send a chat message carrying it) and defers: the task goes
WAITING, holding no worker and no delivery, until someone completes it — with the token,
from Python, the CLI or HTTP — or the approval times out (a day).

Local mode, two terminals::

    ackflow run runner.examples.approval:access -i user=ann -i resource=prod-db
    # prints: ackflow complete <token> --url http://127.0.0.1:<port> --result JSON
    ackflow complete <token> --url http://127.0.0.1:<port> --result '{"approved": true, "approver": "bob"}'

In one process, the approver a callback (``python -m runner.examples.approval``).
Distributed: ``ackflow worker runner.examples.approval`` and ``ackflow serve`` (or
``ackflow complete <token> --result ...`` against RabbitMQ + Redis).
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from runner import current_task, flow, task
from runner.lazy import Deferred, defer

log = logging.getLogger("ackflow.examples.approval")


@task(provides="request")
def file_request(user: str, resource: str) -> dict[str, str]:
    return {"user": user, "resource": resource}


@task(provides=("approved", "approver"))
def ask_for_approval(request: dict[str, str]) -> Deferred:
    token = current_task().completion_token
    log.info("approval needed for %s on %s (token %s...)", request["user"], request["resource"], token[:12])
    return defer(timeout_s=24 * 3600, note=f"{request['user']} asks for {request['resource']}")


@task(provides="grant")
def grant_access(request: dict[str, str], approved: bool, approver: str) -> str:
    if not approved:
        raise PermissionError(f"{approver} refused {request['user']} access to {request['resource']}")
    return f"{request['user']} may use {request['resource']} (approved by {approver})"


access = flow.linear("access", file_request, ask_for_approval, grant_access)


def main() -> None:
    """The whole story in one process: the approver is a callback that completes the task."""
    from runner.client import HistoryEntry
    from runner.local import LocalRuntime

    with LocalRuntime() as rt:
        rid = rt.client.submit(access, {"user": "ann", "resource": "prod-db"})

        def approver(token: str) -> None:
            print("approver: approving with the token")
            rt.client.complete(token, {"approved": True, "approver": "bob"})

        def show(e: HistoryEntry) -> None:
            print(e.describe())
            if e.new == "WAITING" and e.old != e.new:
                token = rt.client.token_for(rid, e.scope)
                threading.Thread(target=approver, args=(token,)).start()

        info: Any = rt.client.wait(rid, 30, show)
        print(info.status, info.result)


if __name__ == "__main__":
    main()
