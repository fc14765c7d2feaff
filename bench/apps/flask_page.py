"""A realistic Flask page for rows 11b and 11d: the 50 latest notes read from SQLite and rendered
by a Jinja template, the way a small Flask site does it (one database connection per request,
closed when the request ends). The database is the file $BENCH_PAGE_DB, which the rows' setup
makes before any server starts (hearthbench.material.make_page_db)."""
import os
import sqlite3

from flask import Flask, g, render_template

app = Flask(__name__)
DATABASE = os.environ.get("BENCH_PAGE_DB", "page.sqlite3")


def db():
    if "db" not in g:
        g.db = sqlite3.connect(DATABASE)
        g.db.row_factory = sqlite3.Row
    return g.db


@app.teardown_appcontext
def close_db(_exc):
    conn = g.pop("db", None)
    if conn is not None:
        conn.close()


@app.route("/")
def notes():
    rows = db().execute("SELECT id, title, author, created, score FROM notes "
                        "ORDER BY created DESC LIMIT 50").fetchall()
    return render_template("notes.html", notes=rows)
