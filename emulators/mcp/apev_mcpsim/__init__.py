"""apev_mcpsim: a local stand-in for the DentalERP MCP server (see README.md next to this package).

``python -m apev_mcpsim --port 8785`` serves it; `apev_mcpsim.testing.running_mcp` runs it for tests;
`create_simulator(SimConfig(...))` builds it in process.
"""

from apev_mcpsim.app import Simulator, create_simulator
from apev_mcpsim.models import SimConfig

__all__ = ["SimConfig", "Simulator", "create_simulator"]
