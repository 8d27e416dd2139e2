"""Fault injection and request counters, switchable at run time through `/__admin/...` (outside `/api/`)."""
