/* examples/site: the application half of a small real site. The edge serves static/ and
 * forwards /api/ here: a JSON notes API (create, list, get, delete) backed by SQLite, with
 * one database connection per worker opened in init(), after fork, as SQLite requires.
 * Database file: $HEARTH_SITE_DB, default ./site.db. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <hearth/app.h>
#include <sqlite3.h>

#define TITLE_MAX 200
#define BODY_MAX 10000

static const char schema[] =
    "PRAGMA journal_mode=WAL;"
    "CREATE TABLE IF NOT EXISTS notes ("
    " id INTEGER PRIMARY KEY AUTOINCREMENT,"
    " title TEXT NOT NULL, body TEXT NOT NULL,"
    " created TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%SZ','now')))";

/* Workers start together and all run this: switching to WAL can answer SQLITE_BUSY at once,
 * without waiting in the busy handler, so retry for a while. */
static int create_schema(sqlite3 *db)
{
    int rc = SQLITE_BUSY;
    for (int tries = 0; tries < 250 && (rc == SQLITE_BUSY || rc == SQLITE_LOCKED); tries++) {
        rc = sqlite3_exec(db, schema, NULL, NULL, NULL);
        if (rc == SQLITE_BUSY || rc == SQLITE_LOCKED)
            usleep(20 * 1000);
    }
    return rc;
}

static int site_init(void **data)
{
    const char *path = getenv("HEARTH_SITE_DB");
    sqlite3 *db;
    if (sqlite3_open_v2(path ? path : "site.db", &db,
                        SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX,
                        NULL) != SQLITE_OK) {
        hearth_log(HEARTH_LOG_ERROR, "site: cannot open %s: %s", path ? path : "site.db",
                   sqlite3_errmsg(db));
        sqlite3_close(db);
        return 1;
    }
    /* several workers share the file: wait for a writer instead of failing at once */
    sqlite3_busy_timeout(db, 5000);
    if (create_schema(db) != SQLITE_OK) {
        hearth_log(HEARTH_LOG_ERROR, "site: schema: %s", sqlite3_errmsg(db));
        sqlite3_close(db);
        return 1;
    }
    *data = db;
    return 0;
}

static void site_fini(void *data)
{
    sqlite3_close(data);
}

static json_t *note_from_row(sqlite3_stmt *st)
{
    return json_pack("{s:I, s:s, s:s, s:s}", "id", (json_int_t)sqlite3_column_int64(st, 0), "title",
                     (const char *)sqlite3_column_text(st, 1), "body",
                     (const char *)sqlite3_column_text(st, 2), "created",
                     (const char *)sqlite3_column_text(st, 3));
}

static int db_fail(hearth_res *res, sqlite3 *db, const char *what)
{
    return hearth_res_fail(res, "site: %s: %s", what, sqlite3_errmsg(db));
}

static int list_notes(hearth_req *req, hearth_res *res)
{
    sqlite3 *db = hearth_req_module_data(req);
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(db, "SELECT id, title, body, created FROM notes ORDER BY id", -1, &st,
                           NULL) != SQLITE_OK)
        return db_fail(res, db, "list");
    json_t *list = json_array();
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW)
        json_array_append_new(list, note_from_row(st));
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE) {
        json_decref(list);
        return db_fail(res, db, "list");
    }
    return hearth_res_json_new(res, 200, json_pack("{s:o}", "notes", list));
}

/* The note to create: a JSON object or a form, both with title and body. */
static int read_note(hearth_req *req, const char **title, const char **body)
{
    json_t *j = hearth_req_json(req);
    if (j) {
        *title = json_string_value(json_object_get(j, "title"));
        *body = json_string_value(json_object_get(j, "body"));
    } else {
        *title = hearth_req_form(req, "title");
        *body = hearth_req_form(req, "body");
    }
    if (!*body)
        *body = "";
    return *title && **title && strlen(*title) <= TITLE_MAX && strlen(*body) <= BODY_MAX ? 0 : -1;
}

static int get_by_id(sqlite3 *db, sqlite3_int64 id, json_t **out)
{
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(db, "SELECT id, title, body, created FROM notes WHERE id = ?", -1, &st,
                           NULL) != SQLITE_OK)
        return -1;
    sqlite3_bind_int64(st, 1, id);
    int rc = sqlite3_step(st);
    *out = rc == SQLITE_ROW ? note_from_row(st) : NULL;
    sqlite3_finalize(st);
    return rc == SQLITE_ROW || rc == SQLITE_DONE ? 0 : -1;
}

static int create_note(hearth_req *req, hearth_res *res)
{
    sqlite3 *db = hearth_req_module_data(req);
    const char *title, *body;
    if (read_note(req, &title, &body) != 0)
        return hearth_res_error(res, 422, "want a title (1-%d chars) and an optional body",
                                TITLE_MAX);
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(db, "INSERT INTO notes (title, body) VALUES (?, ?)", -1, &st, NULL) !=
        SQLITE_OK)
        return db_fail(res, db, "insert");
    sqlite3_bind_text(st, 1, title, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 2, body, -1, SQLITE_TRANSIENT);
    int rc = sqlite3_step(st);
    sqlite3_finalize(st);
    json_t *note;
    if (rc != SQLITE_DONE || get_by_id(db, sqlite3_last_insert_rowid(db), &note) != 0 || !note)
        return db_fail(res, db, "insert");
    char location[64];
    snprintf(location, sizeof location, "/api/notes/%lld",
             (long long)sqlite3_last_insert_rowid(db));
    hearth_res_header(res, "Location", location);
    return hearth_res_json_new(res, 201, note);
}

/* :id as a positive integer; 0 when it is not one. */
static sqlite3_int64 note_id(hearth_req *req)
{
    int64_t id;
    return hearth_req_param_int(req, "id", &id) == 0 && id > 0 ? id : 0;
}

static int get_note(hearth_req *req, hearth_res *res)
{
    sqlite3 *db = hearth_req_module_data(req);
    json_t *note = NULL;
    sqlite3_int64 id = note_id(req);
    if (id && get_by_id(db, id, &note) != 0)
        return db_fail(res, db, "get");
    if (!note)
        return hearth_res_error(res, 404, "no note %lld", (long long)id);
    return hearth_res_json_new(res, 200, note);
}

static int delete_note(hearth_req *req, hearth_res *res)
{
    sqlite3 *db = hearth_req_module_data(req);
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(db, "DELETE FROM notes WHERE id = ?", -1, &st, NULL) != SQLITE_OK)
        return db_fail(res, db, "delete");
    sqlite3_bind_int64(st, 1, note_id(req));
    int rc = sqlite3_step(st);
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE)
        return db_fail(res, db, "delete");
    if (sqlite3_changes(db) == 0)
        return hearth_res_error(res, 404, "no note %lld", (long long)note_id(req));
    hearth_res_status(res, 204);
    return HEARTH_OK;
}

static int health(hearth_req *req, hearth_res *res)
{
    (void)req;
    return hearth_res_json_new(res, 200, json_pack("{s:b, s:i}", "ok", 1, "worker", (int)getpid()));
}

HEARTH_APP("site", site_init, site_fini, {"GET", "/api/notes", list_notes},
           {"POST", "/api/notes", create_note}, {"GET", "/api/notes/:id", get_note},
           {"DELETE", "/api/notes/:id", delete_note}, {"GET", "/api/health", health});
