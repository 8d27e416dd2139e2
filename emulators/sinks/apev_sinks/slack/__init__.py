"""Slack incoming webhooks stand-in."""
