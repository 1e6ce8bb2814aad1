"""Logs: secrets never printed, run/task/attempt on every line about one, JSON when asked."""

from __future__ import annotations

import io
import json
import logging

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from runner import logs


def test_scrub_hides_url_passwords_and_tokens() -> None:
    text = "x_af1.YQ.Yg.c2ln redis://:hunter2@h amqp://u:p@h:5672// af1.cnVu.dGFzaw.AAAA."
    out = logs.scrub(text)
    assert "hunter2" not in out and "u:p@" not in out and "c2ln" not in out and "AAAA" not in out
    assert "redis://:***@h" in out and "amqp://u:***@h" in out


def capture(fmt: str) -> tuple[logging.Logger, io.StringIO]:
    logs.setup("debug", fmt)
    stream = io.StringIO()
    handler = logging.getLogger().handlers[0]
    assert isinstance(handler, logging.StreamHandler)
    handler.setStream(stream)
    return logging.getLogger("ackflow.test"), stream


def test_text_and_json_lines_carry_the_run_and_hide_secrets_in_tracebacks() -> None:
    for fmt in ("text", "json"):
        log, stream = capture(fmt)
        with logs.about("run-1", "charge", 2):
            try:
                raise RuntimeError("cannot reach amqp://guest:s3cret@broker//")
            except RuntimeError:
                log.exception("failed with token af1.cnVu.dGFzaw.c2lnbmF0dXJl")
        log.info("outside %s", "any run")
        log.info("bad format %d", "not a number")  # must not raise into the caller
        out = stream.getvalue()
        assert "s3cret" not in out and "c2lnbmF0dXJl" not in out, out
        first = out.splitlines()[0]
        if fmt == "json":
            rec = json.loads(first)
            assert (rec["run_id"], rec["task"], rec["attempt"]) == ("run-1", "charge", 2)
        else:
            assert "[run=run-1 task=charge attempt=2]" in first
    logging.getLogger().handlers.clear()


# --- I3: a password holding '@' (or ':', '/') is hidden whole, as redact_url does -------------


def test_scrub_hides_the_whole_password_when_it_holds_an_at_sign() -> None:
    assert logs.scrub("amqp://guest:Wr0ng@MqPw@host//") == "amqp://guest:***@host//"
    assert (
        logs.scrub("cannot reach redis://:p@ss:w/rd@db:6379/0 now")
        == "cannot reach redis://:***@db:6379/0 now"
    )
    # what follows the URL after a space is left alone, '@' or not
    assert logs.scrub("amqp://u:p@h// mail ops@example.com") == "amqp://u:***@h// mail ops@example.com"
    assert (
        logs.scrub("see http://host:8080/path and redis://u:@h")
        == "see http://host:8080/path and redis://u:@h"
    )


def test_scrub_takes_time_linear_in_the_text() -> None:
    # many URL starts and no '@': a backtracking pattern would take minutes here
    for text in ("a://:" * 20_000, "a://x" * 20_000, ("w" * 40 + " ") * 5_000 + "://"):
        assert logs.scrub(text) == text


_URL_TEXT = st.characters(codec="ascii", categories=["L", "N", "P", "S"])  # no whitespace


@pytest.mark.fuzz
@given(
    scheme=st.sampled_from(["amqp", "amqps", "redis", "rediss", "http", "git+ssh"]),
    user=st.text(_URL_TEXT, max_size=12),
    password=st.text(_URL_TEXT, min_size=4, max_size=24),
    host=st.from_regex(r"[a-z0-9][a-z0-9.-]{0,20}(:[0-9]{1,5})?", fullmatch=True),
    path=st.sampled_from(["", "/", "//", "/0", "/vhost", "/a/b?x=1"]),
    before=st.sampled_from(["", "error: cannot reach ", "('", '{"url": "']),
    after=st.sampled_from(["", " after 3 attempts", "')", '"}', " mail ops@example.com"]),
)
def test_scrub_never_shows_a_url_password(
    scheme: str, user: str, password: str, host: str, path: str, before: str, after: str
) -> None:
    url = f"{scheme}://{user}:{password}@{host}{path}"
    # what redact_url gives: the user up to its first ':' (the password starts there), then ***
    expected = f"{before}{scheme}://{user.split(':')[0]}:***@{host}{path}{after}"
    assume(password not in expected)  # e.g. a password "host" that is also the host name
    assume("af1." not in url)  # a token-like part is scrubbed as a token, checked elsewhere
    out = logs.scrub(f"{before}{url}{after}")
    assert password not in out
    assert out == expected
