/* start_response and write(): the status and fields the application gives are checked
 * (PEP 3333's types; no CR, LF or other control byte ever reaches the client), held until the
 * first body bytes, and sent through the hearth response. exc_info replaces a response whose
 * fields are not out yet, and re-raises once they are. */
#include "appserver/wsgi/wsgi.h"

#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <strings.h>

typedef struct {
    PyObject ob_base; /* PyObject_HEAD */
    wsgi_start *sr;
} wsgi_write;

static void start_dealloc(wsgi_start *sr)
{
    Py_TYPE(sr)->tp_free((PyObject *)sr);
}

PyObject *wsgi_start_new(hearth_res *res)
{
    wsgi_start *sr = PyObject_New(wsgi_start, &wsgi_start_type);
    if (!sr)
        return NULL;
    sr->res = res;
    sr->called = sr->sent = false;
    sr->length = -1;
    sr->client_gone = false;
    return (PyObject *)sr;
}

/* Fields about the connection belong to the server: dropped, as Gunicorn does. */
static bool hop_by_hop(const char *name)
{
    static const char *const names[] = {
        "connection", "keep-alive", "proxy-authenticate", "proxy-authorization",
        "te",         "trailer",    "trailers",           "transfer-encoding",
        "upgrade",    NULL};
    for (size_t i = 0; names[i]; i++)
        if (strcasecmp(name, names[i]) == 0)
            return true;
    return false;
}

/* A str of latin-1 characters (PEP 3333's native string) as new bytes; NULL with an error. */
static PyObject *native(PyObject *s, const char *what)
{
    if (!PyUnicode_Check(s)) {
        PyErr_Format(PyExc_TypeError, "%s must be a str, not %.80s", what, Py_TYPE(s)->tp_name);
        return NULL;
    }
    return PyUnicode_AsLatin1String(s);
}

static bool has_control(const char *s, Py_ssize_t n)
{
    for (Py_ssize_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if ((c < 0x20 && c != '\t') || c == 0x7f)
            return true;
    }
    return false;
}

/* "200 OK": three digits, a space, a reason without control bytes. */
static int apply_status(hearth_res *res, PyObject *status)
{
    PyObject *b = native(status, "the status");
    if (!b)
        return -1;
    const char *s = PyBytes_AS_STRING(b);
    Py_ssize_t n = PyBytes_GET_SIZE(b);
    int rc = -1;
    if (n < 4 || !isdigit((unsigned char)s[0]) || !isdigit((unsigned char)s[1]) ||
        !isdigit((unsigned char)s[2]) || s[3] != ' ' || s[0] == '0' || has_control(s, n))
        PyErr_Format(PyExc_ValueError, "invalid status %R: expected '200 OK'", status);
    else if (hearth_res_reason(res, s + 4) != 0)
        PyErr_Format(PyExc_ValueError, "status reason too long: %R", status);
    else {
        hearth_res_status(res, atoi(s));
        rc = 0;
    }
    Py_DECREF(b);
    return rc;
}

static int parse_length(const char *v, int64_t *out)
{
    char *end;
    errno = 0;
    long long n = strtoll(v, &end, 10);
    if (!isdigit((unsigned char)*v) || *end || errno || n < 0)
        return -1;
    *out = n;
    return 0;
}

/* One (name, value) pair into res, or Content-Length into sr->length. */
static int apply_field(wsgi_start *sr, PyObject *pair)
{
    if (!PyTuple_Check(pair) || PyTuple_GET_SIZE(pair) != 2) {
        PyErr_Format(PyExc_TypeError, "each header must be a (name, value) tuple, got %R", pair);
        return -1;
    }
    PyObject *nb = native(PyTuple_GET_ITEM(pair, 0), "a header name");
    PyObject *vb = nb ? native(PyTuple_GET_ITEM(pair, 1), "a header value") : NULL;
    int rc = -1;
    if (!vb)
        goto out;
    const char *name = PyBytes_AS_STRING(nb), *value = PyBytes_AS_STRING(vb);
    if (has_control(value, PyBytes_GET_SIZE(vb)) ||
        (Py_ssize_t)strlen(name) != PyBytes_GET_SIZE(nb)) {
        PyErr_Format(PyExc_ValueError, "header %R holds a control character", pair);
    } else if (strcasecmp(name, "Content-Length") == 0) {
        if (parse_length(value, &sr->length) != 0)
            PyErr_Format(PyExc_ValueError, "invalid Content-Length %R", PyTuple_GET_ITEM(pair, 1));
        else
            rc = 0;
    } else if (hop_by_hop(name)) {
        rc = 0;
    } else if (hearth_res_header(sr->res, name, value) != 0) {
        PyErr_Format(PyExc_ValueError, "invalid header %R", pair);
    } else {
        rc = 0;
    }
out:
    Py_XDECREF(nb);
    Py_XDECREF(vb);
    return rc;
}

/* Checks status and headers and applies them to the response (clearing what was there). */
static int check_response(wsgi_start *sr, PyObject *status, PyObject *headers)
{
    if (!PyList_Check(headers)) {
        PyErr_Format(PyExc_TypeError, "headers must be a list, not %.80s",
                     Py_TYPE(headers)->tp_name);
        return -1;
    }
    hearth_res_clear(sr->res);
    sr->length = -1;
    if (apply_status(sr->res, status) != 0)
        return -1;
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(headers); i++)
        if (apply_field(sr, PyList_GET_ITEM(headers, i)) != 0)
            return -1;
    return 0;
}

/* start_response(status, response_headers, exc_info=None) */
static PyObject *start_call(wsgi_start *sr, PyObject *args, PyObject *kwargs)
{
    static char *names[] = {"status", "headers", "exc_info", NULL};
    PyObject *status, *headers, *exc_info = Py_None;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "OO|O:start_response", names, &status, &headers,
                                     &exc_info))
        return NULL;
    if (exc_info != Py_None && sr->sent) {
        /* too late to change the response: re-raise what the application is handling */
        if (!PyTuple_Check(exc_info) || PyTuple_GET_SIZE(exc_info) != 3) {
            PyErr_SetString(PyExc_TypeError, "exc_info must be a (type, value, traceback) tuple");
            return NULL;
        }
        PyObject *type = PyTuple_GET_ITEM(exc_info, 0), *value = PyTuple_GET_ITEM(exc_info, 1),
                 *tb = PyTuple_GET_ITEM(exc_info, 2);
        Py_INCREF(type);
        Py_INCREF(value);
        Py_INCREF(tb);
        PyErr_Restore(type, value, tb == Py_None ? NULL : tb);
        if (tb == Py_None)
            Py_DECREF(tb);
        return NULL;
    }
    if (exc_info == Py_None && sr->called) {
        PyErr_SetString(PyExc_AssertionError,
                        "start_response called a second time without exc_info");
        return NULL;
    }
    /* applied now, as Gunicorn does, so the application's frame is in a refusal's traceback;
     * a refused replacement leaves no response to send */
    sr->called = check_response(sr, status, headers) == 0;
    if (!sr->called)
        return NULL;
    PyObject *write = PyObject_New(PyObject, &wsgi_write_type);
    if (write) {
        /* write() keeps start_response alive: it sends through it */
        ((wsgi_write *)write)->sr = sr;
        Py_INCREF(sr);
    }
    return write;
}

int wsgi_send_headers(wsgi_start *sr, int64_t length_if_none)
{
    if (sr->sent)
        return 0;
    if (!sr->called) {
        PyErr_SetString(PyExc_AssertionError,
                        "the application returned a body before calling start_response");
        return -1;
    }
    sr->sent = true;
    /* no I/O here: the head waits for the first body bytes, so the GIL stays */
    return wsgi_sent(sr, hearth_res_start(sr->res, sr->length >= 0 ? sr->length : length_if_none));
}

int wsgi_sent(wsgi_start *sr, int rc)
{
    if (rc == 0)
        return 0;
    sr->client_gone = true;
    PyErr_SetString(PyExc_OSError, "the client is gone or stopped reading");
    return -1;
}

int wsgi_send_body(wsgi_start *sr, const char *data, size_t len)
{
    if (len == 0)
        return 0; /* no fields go out before the first non-empty bytes (PEP 3333) */
    if (wsgi_send_headers(sr, -1) != 0)
        return -1;
    int rc;
    PyThreadState *ts = PyEval_SaveThread(); /* the app's threads run meanwhile */
    rc = hearth_res_send(sr->res, data, len);
    PyEval_RestoreThread(ts);
    return wsgi_sent(sr, rc);
}

PyTypeObject wsgi_start_type = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "hearth.StartResponse",
    .tp_basicsize = sizeof(wsgi_start),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_dealloc = (destructor)start_dealloc,
    .tp_call = (ternaryfunc)start_call,
};

/* ---- write(data): the imperative body API, for old frameworks ---- */

static void write_dealloc(wsgi_write *w)
{
    Py_XDECREF(w->sr);
    Py_TYPE(w)->tp_free((PyObject *)w);
}

static PyObject *write_call(wsgi_write *w, PyObject *args, PyObject *kwargs)
{
    Py_buffer data;
    if (kwargs && PyDict_GET_SIZE(kwargs) > 0) {
        PyErr_SetString(PyExc_TypeError, "write() takes no keyword arguments");
        return NULL;
    }
    if (!PyArg_ParseTuple(args, "y*:write", &data))
        return NULL;
    int rc = wsgi_send_body(w->sr, data.buf, (size_t)data.len);
    PyBuffer_Release(&data);
    if (rc != 0)
        return NULL;
    Py_RETURN_NONE;
}

PyTypeObject wsgi_write_type = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "hearth.Write",
    .tp_basicsize = sizeof(wsgi_write),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_dealloc = (destructor)write_dealloc,
    .tp_call = (ternaryfunc)write_call,
};
