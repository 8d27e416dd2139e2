"""Slack, PagerDuty and SMTP stand-ins that accept, record and can reject what the monitor sends.

Public surface: `Sinks` and `SinksConfig` (the backends, no HTTP), `SinksServer` (HTTP + SMTP on one loop),
`apev_sinks.testing.running_sinks` (everything on free ports for a test), `ManualClock` (drive rate limits).
"""

from apev_sinks.backend import Sinks, SinksConfig
from apev_sinks.clock import Clock, ManualClock, SystemClock
from apev_sinks.server import SinksServer, SinkURLs

__all__ = ["Clock", "ManualClock", "SinkURLs", "Sinks", "SinksConfig", "SinksServer", "SystemClock"]
