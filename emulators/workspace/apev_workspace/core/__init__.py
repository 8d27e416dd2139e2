"""Shared plumbing of the local workspace: errors, durable state, the HTTP endpoint adapter."""
