"""ACKFLOW_BROKER_URL as a ';'-separated list of a cluster's nodes: validated in Config, every
password hidden wherever a URL or a list of them is shown (redact_url, logs.scrub, the CLI)."""

from __future__ import annotations

import pytest
from click.testing import CliRunner
from hypothesis import assume, given
from hypothesis import strategies as st

from runner import logs
from runner.config import Config, redact_url
from runner.errors import ConfigError
from runner.ops import cli

LIST = "amqp://guest:pw-one@10.0.0.1:5672//;amqp://guest:pw-two@10.0.0.2:5672//;amqp://ops:pw-three@n3//"
SHOWN = "amqp://guest:***@10.0.0.1:5672//;amqp://guest:***@10.0.0.2:5672//;amqp://ops:***@n3//"


def test_a_list_is_split_into_its_urls() -> None:
    cfg = Config(broker_url=" amqp://a:1@h1//; amqp://b@h2:5673/%2F ;amqps://h3:5671")
    assert cfg.broker_urls == ("amqp://a:1@h1//", "amqp://b@h2:5673/%2F", "amqps://h3:5671")
    assert Config().broker_urls == (Config().broker_url,)


@pytest.mark.parametrize(
    "url,says",
    [
        ("amqp://guest:pw-one@h1//;redis://u:pw-two@h2/0", "broker URL 2 of 2"),
        ("amqp://guest:pw-one@h1//;", "broker URL 2 of 2"),
        ("amqp://guest:pw-one@h1/a;amqp://u:pw-two@h2/b", "different virtual hosts"),
        ("amqp://guest:pw-one@h1//;amqp://u:pw-two@h2/x", "different virtual hosts"),
        ("amqp://guest:pw-one@h1:port//", "not a valid URL"),
        ("amqp://guest:pw-one@/vhost", "not an AMQP URL"),
        ("http://guest:pw-one@h1/", "not an AMQP URL"),
    ],
)
def test_an_invalid_list_is_refused_clearly_without_its_passwords(url: str, says: str) -> None:
    with pytest.raises(ConfigError, match=says) as caught:
        Config.from_env({"ACKFLOW_BROKER_URL": url})
    assert "pw-one" not in str(caught.value) and "pw-two" not in str(caught.value)


def test_the_same_vhost_may_be_written_in_any_of_its_forms() -> None:
    assert len(Config(broker_url="amqp://h1;amqp://h2/;amqp://h3//;amqp://h4/%2F").broker_urls) == 4


def test_the_host_order_is_random_or_listed() -> None:
    assert Config().broker_host_order == "random"
    assert Config.from_env({"ACKFLOW_BROKER_HOST_ORDER": "listed"}).broker_host_order == "listed"
    with pytest.raises(ConfigError, match="broker_host_order"):
        Config(broker_host_order="nearest")


def test_the_cli_refuses_an_invalid_list_with_exit_2_and_no_password() -> None:
    env = {"ACKFLOW_BROKER_URL": "amqp://guest:pw-one@h1/a;amqp://u:pw-two@h2/b"}
    result = CliRunner().invoke(cli.main, ["status", "run-1"], env=env)
    assert result.exit_code == 2, result.output
    assert "different virtual hosts" in result.output
    assert "pw-one" not in result.output and "pw-two" not in result.output


def test_every_password_of_a_list_is_redacted() -> None:
    assert redact_url(LIST) == SHOWN
    assert "pw-two" not in repr(Config(broker_url=LIST)) and SHOWN in repr(Config(broker_url=LIST))


def test_scrub_hides_each_password_of_a_list_and_keeps_its_hosts() -> None:
    assert logs.scrub(f"cannot reach {LIST}: refused") == f"cannot reach {SHOWN}: refused"
    assert logs.scrub(SHOWN) == SHOWN
    # a URL of the list without a password is kept as it is
    assert logs.scrub("amqp://h1:5672//;amqp://u:p@h2//") == "amqp://h1:5672//;amqp://u:***@h2//"
    # a ';' in a password that no new URL follows stays in the password
    assert logs.scrub("amqp://u:a;b@h//;amqp://v:c@h2//") == "amqp://u:***@h//;amqp://v:***@h2//"


_PASSWORD = st.text(
    st.characters(codec="ascii", categories=["L", "N", "P", "S"], exclude_characters=";"),
    min_size=4,
    max_size=24,
)
_HOST = st.from_regex(r"[a-z0-9][a-z0-9.-]{0,20}(:[0-9]{1,5})?", fullmatch=True)


@pytest.mark.fuzz
@given(
    urls=st.lists(
        st.tuples(
            st.sampled_from(["amqp", "amqps"]),
            st.from_regex(r"[a-z0-9_.-]{0,10}", fullmatch=True),
            _PASSWORD,
            _HOST,
            st.sampled_from(["", "/", "//", "/%2F"]),
        ),
        min_size=2,
        max_size=4,
    ),
    before=st.sampled_from(["", "error: cannot reach ", "('"]),
    after=st.sampled_from(["", ": refused", "')"]),
)
def test_no_password_of_a_list_is_ever_shown(
    urls: list[tuple[str, str, str, str, str]], before: str, after: str
) -> None:
    """Passwords of a broker list (a ';' in one is written %3B, as for kombu) never appear in
    redact_url's or scrub's output, whatever they hold; each URL keeps its host."""
    text = ";".join(f"{s}://{u}:{p}@{h}{path}" for s, u, p, h, path in urls)
    expected = ";".join(f"{s}://{u}:***@{h}{path}" for s, u, _, h, path in urls)
    assume(all(p not in expected for _, _, p, _, _ in urls))  # a password that is also a host name
    for shown in (redact_url(text), logs.scrub(f"{before}{text}{after}")):
        for _, _, password, _, _ in urls:
            assert password not in shown
    assert logs.scrub(f"{before}{text}{after}") == f"{before}{expected}{after}"
