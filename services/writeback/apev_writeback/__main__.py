"""`python -m apev_writeback`: run the writeback service until SIGTERM."""

from apev_runtime.app import serve
from apev_writeback.app import create_app
from apev_writeback.settings import Settings

settings = Settings()
serve(create_app(settings), settings)
