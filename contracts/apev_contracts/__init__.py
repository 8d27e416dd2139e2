"""AgentProvision event contracts."""
