"""`python -m apev_serving`: run the serving service until SIGTERM."""

from apev_runtime.app import serve
from apev_serving.app import create_app
from apev_serving.settings import Settings

settings = Settings()
serve(create_app(settings), settings)
