"""`python -m apev_monitor`: run the monitor service until SIGTERM."""

from apev_monitor.app import create_app
from apev_monitor.settings import Settings
from apev_runtime.app import serve

settings = Settings()
serve(create_app(settings), settings)
