"""Logs: secrets never printed, run/task/attempt on every line about one, JSON when asked."""

from __future__ import annotations

import io
import json
import logging

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
