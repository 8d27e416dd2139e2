from apev_mcpsim.testing import mcp_sim  # noqa: F401  (the session fixture: a running simulator)
