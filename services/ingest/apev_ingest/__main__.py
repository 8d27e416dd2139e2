"""`python -m apev_ingest`: run the ingest service until SIGTERM."""

from apev_ingest.app import create_app
from apev_ingest.settings import Settings
from apev_runtime.app import serve

settings = Settings()
serve(create_app(settings), settings)
