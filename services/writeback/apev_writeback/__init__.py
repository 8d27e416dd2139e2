"""The writeback service: owns MCP write-back."""
