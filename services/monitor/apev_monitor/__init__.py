"""The monitor service: owns system tables and alerting."""
