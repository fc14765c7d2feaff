"""The notes table in SQLite: one connection per request, the table made on first use."""
import sqlite3

from flask import current_app, g

TITLE_MAX = 200
BODY_MAX = 10000
FIELDS = ("id", "title", "body", "created")

SCHEMA = """
CREATE TABLE IF NOT EXISTS notes (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    title TEXT NOT NULL, body TEXT NOT NULL,
    created TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%SZ', 'now')))
"""


def get_db():
    if "db" not in g:
        # several workers share the file: wait for a writer rather than fail at once
        g.db = sqlite3.connect(current_app.config["DATABASE"], timeout=5)
        g.db.row_factory = sqlite3.Row
        # a new or empty NOTES_DB needs no setup step; on an existing table this is a no-op
        g.db.execute(SCHEMA)
    return g.db


def close_db(exc=None):
    conn = g.pop("db", None)
    if conn is not None:
        conn.close()


def init_app(app):
    app.teardown_appcontext(close_db)


def as_dict(row):
    return {key: row[key] for key in FIELDS}


def all_notes():
    return get_db().execute("SELECT id, title, body, created FROM notes ORDER BY id")


def get_note(note_id):
    return get_db().execute(
        "SELECT id, title, body, created FROM notes WHERE id = ?", (note_id,)).fetchone()


def add_note(title, body):
    """The new note's row, or None when title or body are out of bounds."""
    if not title or len(title) > TITLE_MAX or len(body) > BODY_MAX:
        return None
    conn = get_db()
    with conn:
        cur = conn.execute("INSERT INTO notes (title, body) VALUES (?, ?)", (title, body))
    return get_note(cur.lastrowid)


def delete_note(note_id):
    """True when there was such a note."""
    conn = get_db()
    with conn:
        return conn.execute("DELETE FROM notes WHERE id = ?", (note_id,)).rowcount > 0
