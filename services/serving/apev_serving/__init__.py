"""The serving service: owns Model Serving and SQL warehouse answers."""
