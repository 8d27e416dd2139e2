"""Job schedules: Quartz cron expressions evaluated on an injectable clock (see README, "Schedules")."""
