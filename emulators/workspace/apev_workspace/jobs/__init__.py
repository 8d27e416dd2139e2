"""Jobs API 2.2 (also served under 2.1): jobs, runs, and a real task executor.

Kept import-light on purpose: task processes run `python -m apev_workspace.jobs.task_entry`.
"""
