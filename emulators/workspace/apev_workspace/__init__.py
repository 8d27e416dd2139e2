"""apev_workspace: the local Databricks workspace (see README.md).

Kept empty of imports on purpose: every task process imports this package (`apev_workspace.jobs.task_entry`).
Start it with `python -m apev_workspace`; in tests use `apev_workspace.testing.running_workspace`.
"""
