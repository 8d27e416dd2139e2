"""`python -m apev_jobs`: run the jobs service until SIGTERM."""

from apev_jobs.app import create_app
from apev_jobs.settings import Settings
from apev_runtime.app import serve

settings = Settings()
serve(create_app(settings), settings)
