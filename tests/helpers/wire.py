"""Messages for the tests of the codec and of the consumers: arbitrary msgpack values (for
hypothesis), the protocol's top-level field names, and the bodies that once killed every
consumer they reached (`KILLERS`, each with the reason its dead letter must give)."""

from __future__ import annotations

import msgpack
from hypothesis import strategies as st

# --- arbitrary msgpack values --------------------------------------------------------------

ints = st.integers(min_value=-(2**63), max_value=2**64 - 1)  # all msgpack can carry, both ends
scalars = st.none() | st.booleans() | ints | st.floats() | st.text(max_size=20) | st.binary(max_size=20)
keys = (
    st.none()
    | st.booleans()
    | ints
    | st.floats(allow_nan=False)
    | st.text(max_size=10)
    | st.binary(max_size=10)
)
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(keys, inner, max_size=4),
    max_leaves=20,
)
FIELDS = ["v", "kind", "id", "run", "task", "fn", "attempt", "args", "provides", "unpack", "at", "mode"]
FIELDS += ["result", "created", "body"]

# --- bodies that killed consumers (H1) -------------------------------------------------------

REQUEST = {
    "v": 1,
    "kind": "task.request",
    "id": "i",
    "run": "r",
    "task": "t",
    "fn": "echo",
    "attempt": 1,
    "args": {},
    "provides": [],
    "at": 0,
}
# The bodies of the finding: each once killed every engine (and worker) that received it.
KILLERS = [
    (msgpack.packb({"v": 1, "kind": [1, 2]}), "field 'kind' has type list"),
    (msgpack.packb({"v": 1, "kind": {"a": 1}}), "field 'kind' has type dict"),
    (msgpack.packb({**REQUEST, "created": "abc"}), "field 'created' has type str"),
    (msgpack.packb({**REQUEST, "created": [1]}), "field 'created' has type list"),
]


def with_header_timestamp(seconds: int, props: bytes | None = None) -> bytes:
    """Serialized message properties (``props``, holding a header timestamp of 2000-01-01)
    with that timestamp ('T') set to ``seconds``: py-amqp only writes datetimes (years
    1-9999), other clients any 64-bit value, which RabbitMQ passes on."""
    import datetime
    import struct

    import amqp.basic_message

    if props is None:
        raw = amqp.basic_message.Message(b"", application_headers={"t": datetime.datetime(2000, 1, 1)})
        props = raw._serialize_properties()
    at = props.index(b"T" + struct.pack(">Q", 946_684_800)) + 1
    return props[:at] + struct.pack(">Q", seconds) + props[at + 8 :]
