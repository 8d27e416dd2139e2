"""Billing system tables (`system.billing.usage`, `system.billing.list_prices`) written from what really ran."""
