"""The RabbitMQ cluster of our own that the short cluster tests share: 3 nodes (needs root
here: tests/chaos/services.py), a Redis of our own, one prefix declared and settled before any
node is killed (tests/cluster/rig.py). Started once per session, only by the tests that ask."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.chaos.services import OwnRabbitCluster
from tests.cluster.rig import Rig
from tests.helpers.ci import require


@pytest.fixture(scope="session")
def rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    why = OwnRabbitCluster.unavailable()
    require(why is None, f"cannot start a RabbitMQ cluster of our own: {why}")
    r = Rig(Path(tmp_path_factory.mktemp("cluster")), redis="single")
    try:
        r.start()
        yield r
    finally:
        r.stop()
