"""SMTP stand-in: accepts mail on a local port and keeps it."""
