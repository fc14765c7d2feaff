"""The JSON API, with the shapes of examples/site/site.c, and a streamed CSV export."""
import csv
import io
import os

from flask import Blueprint, Response, abort, jsonify, request, stream_with_context, url_for

from . import db

bp = Blueprint("api", __name__, url_prefix="/api")


@bp.get("/notes")
def list_notes():
    return {"notes": [db.as_dict(row) for row in db.all_notes()]}


@bp.post("/notes")
def create_note():
    # JSON or a form, as site.c takes
    data = request.get_json(silent=True) if request.is_json else request.form
    if not isinstance(data, dict):
        data = {}
    title, body = data.get("title"), data.get("body", "")
    note = db.add_note(title, body) if isinstance(title, str) and isinstance(body, str) else None
    if note is None:
        return {"error": "want a title (1-200 chars) and an optional body"}, 422
    location = url_for(".get_note", note_id=note["id"])
    return db.as_dict(note), 201, {"Location": location}


@bp.get("/notes/<int:note_id>")
def get_note(note_id):
    note = db.get_note(note_id)
    if note is None:
        abort(404, "no such note")
    return db.as_dict(note)


@bp.delete("/notes/<int:note_id>")
def delete_note(note_id):
    if not db.delete_note(note_id):
        abort(404, "no such note")
    return "", 204


@bp.get("/health")
def health():
    return jsonify(ok=True, worker=os.getpid())


def csv_line(values):
    out = io.StringIO()
    csv.writer(out).writerow(values)
    return out.getvalue()


@bp.get("/notes.csv")
def export_csv():
    """Every note as CSV, streamed a row at a time: the rows are never all in memory."""

    def rows():
        yield csv_line(db.FIELDS)
        for row in db.all_notes():
            yield csv_line([row[key] for key in db.FIELDS])

    return Response(stream_with_context(rows()), mimetype="text/csv",
                    headers={"Content-Disposition": "attachment; filename=notes.csv"})
