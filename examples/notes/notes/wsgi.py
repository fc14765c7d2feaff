"""The WSGI entry point: gunicorn notes.wsgi:app, appserver notes.wsgi:app."""
from . import create_app

app = create_app()
