"""Slack's incoming-webhook errors: a plain-text code as the body, with Slack's HTTP status."""

from __future__ import annotations


class SlackError(Exception):
    status = 400
    code = "invalid_payload"

    def __init__(self, detail: str = "") -> None:
        super().__init__(f"{self.code}: {detail}" if detail else self.code)
        self.detail = detail


class InvalidPayloadError(SlackError):
    status, code = 400, "invalid_payload"


class NoTextError(SlackError):
    status, code = 400, "no_text"


class InvalidBlocksError(SlackError):
    status, code = 400, "invalid_blocks"


class InvalidBlocksFormatError(SlackError):
    status, code = 400, "invalid_blocks_format"


class TooManyAttachmentsError(SlackError):
    status, code = 400, "too_many_attachments"


class ChannelNotFoundError(SlackError):
    status, code = 404, "channel_not_found"


class ChannelIsArchivedError(SlackError):
    status, code = 410, "channel_is_archived"


class RateLimitedError(SlackError):
    status, code = 429, "rate_limited"

    def __init__(self, retry_after: int) -> None:
        super().__init__(f"retry after {retry_after} s")
        self.retry_after = retry_after
