"""Root conftest: every test in the repository can ask for the real broker and database, and for the
local stand-ins (`mcp_sim`, `alert_sinks`, `alert_sinks_server`), each started lazily, once per session."""

pytest_plugins = ["apev_stack.testing", "apev_mcpsim.testing", "apev_sinks.testing"]
