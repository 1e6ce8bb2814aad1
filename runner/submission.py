"""A run's submit message, as the client and the engines' schedules send it: the run.submit
event carrying the flow's compiled spec and the inputs, and the digest the store reserves the
run id with (so the same id submitted again with another flow or other inputs is a conflict).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

from runner import protocol
from runner.define.spec import FlowSpec
from runner.errors import EncodeError, PayloadTooLargeError
from runner.protocol import Event


def build(
    spec: FlowSpec, inputs: Mapping[str, Any], run_id: str, timeout_s: float | None, max_bytes: int
) -> tuple[Event, bytes, bytes]:
    """(the run.submit event, its encoded payload, the digest to reserve the run id with);
    `EncodeError` or `PayloadTooLargeError` if it cannot be sent."""
    spec_data = spec.to_data()
    try:
        body: dict[str, Any] = {"flow": spec.name, "spec": spec_data, "inputs": dict(inputs)}
        if timeout_s:
            body["timeout_s"] = float(timeout_s)
        event = Event(
            protocol.RUN_SUBMIT, protocol.submit_id(run_id), run_id, body=body, at_ms=protocol.now_ms()
        )
        payload = protocol.encode(event)
    except EncodeError as e:
        raise EncodeError(f"the run's inputs cannot be sent: {e}") from None
    if len(payload) > max_bytes:
        raise PayloadTooLargeError("the run's submit message (flow spec and inputs)", len(payload), max_bytes)
    digest = hashlib.sha256(protocol.pack([spec_data, dict(inputs), timeout_s or 0])).hexdigest().encode()
    return event, payload, digest
