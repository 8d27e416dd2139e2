"""Slack webhook behaviour, without HTTP."""

from __future__ import annotations

import json

import pytest

from apev_sinks.clock import ManualClock
from apev_sinks.slack.exceptions import (
    ChannelIsArchivedError,
    ChannelNotFoundError,
    InvalidBlocksError,
    InvalidBlocksFormatError,
    InvalidPayloadError,
    NoTextError,
    RateLimitedError,
)
from apev_sinks.slack.models import SlackBackend

HOOK = "T1/B1/secret"


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def slack(clock: ManualClock) -> SlackBackend:
    return SlackBackend(clock, webhooks={HOOK: "#ops"})


def post(slack: SlackBackend, payload: object, path: str = HOOK) -> None:
    slack.post(path, json.dumps(payload).encode())


def test_a_message_is_kept_with_its_channel(slack: SlackBackend) -> None:
    post(slack, {"text": "disk full", "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": "*x*"}}]})
    [message] = slack.messages()
    assert (message.channel, message.text, message.blocks[0]["type"]) == ("#ops", "disk full", "section")  # type: ignore[index]


def test_second_message_within_the_interval_is_rate_limited_until_it_passes(
    slack: SlackBackend, clock: ManualClock
) -> None:
    post(slack, {"text": "one"})
    clock.advance(0.4)
    with pytest.raises(RateLimitedError) as exc:
        post(slack, {"text": "two"})
    assert (exc.value.status, exc.value.code, exc.value.retry_after) == (429, "rate_limited", 1)
    clock.advance(0.6)
    post(slack, {"text": "three"})
    assert [m.text for m in slack.messages()] == ["one", "three"]
    assert [r.error for r in slack.rejections()] == ["rate_limited"]


def test_retry_after_rounds_up_to_whole_seconds(clock: ManualClock) -> None:
    slack = SlackBackend(clock, min_interval=2.5, webhooks={HOOK: "#ops"})
    post(slack, {"text": "one"})
    clock.advance(0.2)
    with pytest.raises(RateLimitedError) as exc:
        post(slack, {"text": "two"})
    assert exc.value.retry_after == 3


def test_the_limit_is_per_webhook(clock: ManualClock) -> None:
    slack = SlackBackend(clock, webhooks={"T/B/a": "#a", "T/B/b": "#b"})
    post(slack, {"text": "a"}, "T/B/a")
    post(slack, {"text": "b"}, "T/B/b")
    assert len(slack.messages()) == 2


@pytest.mark.parametrize("payload", [{}, {"text": ""}, {"text": "   "}, {"blocks": []}])
def test_a_message_without_content_is_no_text(slack: SlackBackend, payload: dict[str, object]) -> None:
    with pytest.raises(NoTextError) as exc:
        post(slack, payload)
    assert (exc.value.status, exc.value.code) == (400, "no_text")


def test_an_empty_body_is_no_text(slack: SlackBackend) -> None:
    with pytest.raises(NoTextError):
        slack.post(HOOK, b"")


@pytest.mark.parametrize("body", [b"{not json", b"[1, 2]", b'"text"', b'{"text": 5}', b"\xff\xfe"])
def test_malformed_bodies_are_invalid_payload(slack: SlackBackend, body: bytes) -> None:
    with pytest.raises(InvalidPayloadError) as exc:
        slack.post(HOOK, body)
    assert (exc.value.status, exc.value.code) == (400, "invalid_payload")


def test_blocks_must_be_an_array_of_typed_objects(slack: SlackBackend) -> None:
    with pytest.raises(InvalidBlocksFormatError):
        post(slack, {"blocks": {"type": "section"}})
    with pytest.raises(InvalidBlocksError):
        post(slack, {"blocks": [{"text": "no type"}]})
    with pytest.raises(InvalidBlocksError):
        post(slack, {"blocks": [{"type": "divider"}] * 51})
    assert slack.messages() == []


def test_form_encoded_payload_field_is_read(slack: SlackBackend) -> None:
    slack.post(HOOK, b"payload=%7B%22text%22%3A%22from+a+form%22%7D", "application/x-www-form-urlencoded")
    assert slack.messages()[0].text == "from a form"


def test_unknown_path_is_channel_not_found_and_archived_is_410(slack: SlackBackend) -> None:
    with pytest.raises(ChannelNotFoundError) as missing:
        post(slack, {"text": "x"}, "T1/B1/other")
    assert missing.value.status == 404
    slack.register("/services/T9/B9/old", "#old", archived=True)
    with pytest.raises(ChannelIsArchivedError) as archived:
        post(slack, {"text": "x"}, "T9/B9/old")
    assert (archived.value.status, archived.value.code) == (410, "channel_is_archived")


def test_reset_forgets_messages_and_rate_state_but_keeps_webhooks(slack: SlackBackend) -> None:
    post(slack, {"text": "one"})
    slack.reset()
    post(slack, {"text": "again"})  # no 429: the window was forgotten
    assert [m.text for m in slack.messages()] == ["again"]
    assert [h.path for h in slack.webhooks()] == [HOOK]


def test_a_raw_json_body_is_read_whatever_the_content_type(slack: SlackBackend) -> None:
    # `curl -d '{"text": ...}' URL` sends a form content type; Slack still reads the JSON.
    slack.post(HOOK, b'{"text": "curl style"}', "application/x-www-form-urlencoded")
    assert slack.messages()[0].text == "curl style"
