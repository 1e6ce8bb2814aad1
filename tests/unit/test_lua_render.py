"""Rendering keys.py's templates as Lua (runner/store/lua): literals escaped so Lua reads
them back byte for byte, and a template that drops an argument refused."""

from __future__ import annotations

import pytest

from runner.store import lua


def test_lua_strings_escape_quotes_backslashes_and_control_bytes() -> None:
    assert lua.lua_string("a'b\\c") == "'a\\039b\\092c'"
    # three digits always: "\31" followed by "1" would read as "\311"
    assert lua.lua_string("\x1f1") == "'\\0311'"


def test_a_template_becomes_a_concatenation_of_its_arguments_and_literals() -> None:
    fn = lua.lua_function("k", lambda p, r: f"{p}:{{{r}}}", ("p", "r"))
    assert fn == "local function k(p, r) return p .. ':{' .. r .. '}' end"


def test_a_template_dropping_an_argument_is_refused() -> None:
    with pytest.raises(ValueError, match="does not use"):
        lua.lua_function("k", lambda p, r: f"{p}:x", ("p", "r"))
