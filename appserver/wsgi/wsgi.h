/* The WSGI bridge (PEP 3333): a hearth module that embeds CPython in each worker and serves
 * one Python WSGI application. Declarations shared by its files. */
#ifndef HEARTH_WSGI_H
#define HEARTH_WSGI_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdbool.h>

#include "hearth/app.h"

/* Objects made once per worker (bridge.c). */
typedef struct {
    PyObject *app;        /* the application callable */
    PyObject *version;    /* (1, 0) */
    PyObject *errors;     /* the wsgi.errors stream */
    PyObject *format_exc; /* traceback.format_exception */
    const char *mount;    /* SCRIPT_NAME, or "" */
    PyThreadState *idle;  /* the worker's thread, saved while the GIL is released */
} wsgi_globals;

extern wsgi_globals wsgi;

/* Types (objects.c). */
extern PyTypeObject wsgi_input_type;        /* wsgi.input */
extern PyTypeObject wsgi_errors_type;       /* wsgi.errors */
extern PyTypeObject wsgi_file_wrapper_type; /* wsgi.file_wrapper */
extern PyTypeObject wsgi_start_type;        /* start_response */
extern PyTypeObject wsgi_write_type;        /* the write() start_response returns */
int wsgi_types_ready(void);

/* One request's input stream. */
PyObject *wsgi_input_new(hearth_req *req);

/* start_response's state for one request (start_response.c). */
typedef struct {
    PyObject ob_base; /* PyObject_HEAD */
    hearth_res *res;
    bool called;      /* start_response was called (headers pending or sent) */
    bool sent;        /* the status line and fields went out */
    int64_t length;   /* the application's Content-Length, -1: none */
    bool client_gone; /* a send failed: the client left or stopped reading */
} wsgi_start;

PyObject *wsgi_start_new(hearth_res *res);
/* Sends the pending status and fields; -1 with a Python exception set. */
int wsgi_send_headers(wsgi_start *sr, int64_t length_if_none);
/* rc of a hearth_res_* send: -1 with OSError set (and client_gone) when it failed. */
int wsgi_sent(wsgi_start *sr, int rc);
/* Body bytes, the fields first if still pending; -1 with a Python exception set. */
int wsgi_send_body(wsgi_start *sr, const char *data, size_t len);

/* environ for req (environ.c); NULL with a Python exception, or *not_found when the path lies
 * outside the mount point. */
PyObject *wsgi_environ(hearth_req *req, bool *not_found);

/* The route's handler (serve.c). */
int wsgi_serve(hearth_req *req, hearth_res *res);

/* Logs the current Python exception with its traceback and clears it. */
void wsgi_log_exception(const char *what, const hearth_req *req);

#endif
