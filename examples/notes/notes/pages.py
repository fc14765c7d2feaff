"""The HTML pages: the list of notes with a form to add one (post/redirect/get) and a delete
button per note."""
from flask import Blueprint, abort, redirect, render_template, request, url_for

from . import db

bp = Blueprint("pages", __name__)


@bp.get("/")
def index():
    return render_template("index.html", notes=db.all_notes().fetchall())


def attachment_text():
    """The uploaded text file's content, '' without one; None when it is not UTF-8 text."""
    upload = request.files.get("attachment")
    if upload is None or not upload.filename:
        return ""
    try:
        return upload.read().decode("utf-8").strip()
    except UnicodeDecodeError:
        return None


@bp.post("/notes")
def add():
    title = request.form.get("title", "").strip()
    body = request.form.get("body", "").strip()
    attached = attachment_text()
    note = None if attached is None else db.add_note(
        title, "\n\n".join(part for part in (body, attached) if part))
    if note is None:
        error = "A note needs a title (up to 200 characters); an attachment must be UTF-8 text."
        return render_template("index.html", notes=db.all_notes().fetchall(), error=error,
                               title=title, body=body), 422
    # 303: the browser follows with a GET, so reloading the page posts nothing twice
    return redirect(url_for(".index", _anchor=f"note-{note['id']}"), 303)


@bp.post("/notes/<int:note_id>/delete")
def delete(note_id):
    if not db.delete_note(note_id):
        abort(404)
    return redirect(url_for(".index"), 303)
