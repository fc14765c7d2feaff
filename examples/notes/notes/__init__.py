"""notes: the seed scenario's example application as a Flask site: an HTML page with forms,
a JSON API and a CSV export, notes kept in SQLite."""
import os

from flask import Flask

from . import api, db, pages, web


def create_app(config=None):
    app = Flask(__name__)
    app.config.from_mapping(
        DATABASE=os.environ.get("NOTES_DB", "notes.db"),
        # the largest form or upload taken; more is answered 413
        MAX_CONTENT_LENGTH=64 * 1024,
    )
    app.config.update(config or {})
    db.init_app(app)
    web.init_app(app)
    app.register_blueprint(pages.bp)
    app.register_blueprint(api.bp)
    return app
