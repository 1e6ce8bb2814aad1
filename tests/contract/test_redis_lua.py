"""The Lua scripts' key helpers, run in Redis, build exactly the names runner/store/keys.py
builds: a template changed in keys.py changes the scripts with it (runner/store/lua)."""

from __future__ import annotations

import pytest

from runner.config import Config
from runner.store import keys, lua
from runner.store.redis import RedisStore


@pytest.mark.parametrize(
    ("run", "flow", "status", "timer"),
    [("r-1", "orders", "RUNNING", "t1"), ("a.b:c_d", "x'y\\z", "FAILED", "retry:task[3]:2")],
)
def test_the_prelude_builds_the_key_names_keys_py_builds(
    config: Config, run: str, flow: str, status: str, timer: str
) -> None:
    store = RedisStore(config)
    try:
        script = (
            lua.PRELUDE
            + "\nreturn {run_key(ARGV[1], ARGV[2], TIMERS), flow_status_index(ARGV[1], ARGV[3], ARGV[4]),"
            + " timer_member(ARGV[2], ARGV[5]), JOIN_SEP}"
        )
        got = store.client.eval(script, 0, config.prefix, run, flow, status, timer)
    finally:
        store.close()
    assert [g.decode() for g in got] == [
        keys.run_key(config.prefix, run, keys.TIMERS),
        keys.flow_status_index(config.prefix, flow, status),
        keys.timer_member(run, timer),
        keys.JOIN_SEP,
    ]


def test_every_script_file_is_loaded_with_the_prelude() -> None:
    for script in (lua.COMMIT, lua.CLAIM, lua.BEAT):
        first, _, body = script.partition("\n")
        assert first == lua.PRELUDE
        assert body.startswith("-- ")  # the file's KEYS/ARGV header
        assert "KEYS" in body.split("\nlocal ", 1)[0]
