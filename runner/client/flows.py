"""The flow registry, client side: flows recorded in the store by name, each version (its
compiled spec) under its digest, so producers submit by name without importing the flow's
module. Workers register the flows of the modules they load; `ackflow flows register`
does the same from any process. A run keeps the spec it started with: registering a new
version never changes a run in flight.
"""

from __future__ import annotations

import hashlib
import socket
import time
from dataclasses import dataclass

from runner.define.spec import FlowSpec, input_names
from runner.errors import UnknownFlowError
from runner.protocol import pack, unpack
from runner.store import Store


@dataclass(frozen=True)
class FlowInfo:
    """A registered flow's latest version: its digest, when and by whom it was registered,
    its tasks, their queues, the run inputs it takes, and how many versions are kept."""

    name: str
    digest: str
    registered_ms: int
    by: str
    tasks: list[str]
    queues: list[str]
    inputs: list[str]
    versions: int = 1


def digest_of(spec: FlowSpec) -> str:
    """A version's digest: the same for the same compiled spec, wherever it is compiled (and
    the `spec_id` an engine gives a run of it)."""
    return hashlib.sha256(pack(spec.to_data())).hexdigest()[:32]


def register(store: Store, spec: FlowSpec, by: str = "") -> FlowInfo:
    """Record ``spec`` as the latest version of its flow (the same version again: a no-op
    beyond its registration time)."""
    digest = digest_of(spec)
    info = FlowInfo(
        spec.name,
        digest,
        int(time.time() * 1000),
        by or f"{socket.gethostname()}",
        list(spec.tasks),
        sorted({t.queue for t in spec.tasks.values()}),
        input_names(spec.tasks),
    )
    store.put_flow(spec.name, digest, pack(spec.to_data()), pack(_info_data(info)))
    return info


def _info_data(info: FlowInfo) -> dict[str, object]:
    return {
        "digest": info.digest,
        "at": info.registered_ms,
        "by": info.by,
        "tasks": info.tasks,
        "queues": info.queues,
        "inputs": info.inputs,
    }


def _info(name: str, raw: bytes, versions: int) -> FlowInfo:
    d = unpack(raw)
    return FlowInfo(
        name,
        str(d["digest"]),
        int(d["at"]),
        str(d["by"]),
        [str(t) for t in d["tasks"]],
        [str(q) for q in d["queues"]],
        [str(i) for i in d["inputs"]],
        versions,
    )


def list_flows(store: Store) -> list[FlowInfo]:
    return [_info(n, raw, len(store.flow_digests(n))) for n, raw in sorted(store.list_flows().items())]


def info(store: Store, name: str) -> FlowInfo:
    raw = store.list_flows().get(name)
    if raw is None:
        raise UnknownFlowError(name, list(store.list_flows()))
    return _info(name, raw, len(store.flow_digests(name)))


def get(store: Store, name: str, version: str | None = None) -> FlowSpec:
    """The spec of a registered flow: its latest version, or the version whose digest is (or
    starts with) ``version``."""
    digest = info(store, name).digest
    if version is not None:
        known = store.flow_digests(name)
        matches = [d for d in known if d.startswith(version)] if version else []
        if len(matches) != 1:
            raise UnknownFlowError(name, known, version)
        digest = matches[0]
    raw = store.get_flow(name, digest)
    if raw is None:  # the index names a version the versions hash lost: refuse, never guess
        raise UnknownFlowError(name, store.flow_digests(name), digest)
    return FlowSpec.from_data(unpack(raw))
