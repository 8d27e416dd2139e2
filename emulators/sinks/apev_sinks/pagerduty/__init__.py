"""PagerDuty Events API v2 stand-in."""
