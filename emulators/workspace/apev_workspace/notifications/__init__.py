"""Notification destinations and job webhook notifications (see README, "Notifications")."""
