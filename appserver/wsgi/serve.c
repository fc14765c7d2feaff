/* One request through the WSGI application: environ and start_response in, the returned
 * iterable out as it is produced (sendfile for a wsgi.file_wrapper with a descriptor), its
 * close() called on every path. An exception before the fields went out is a 500; after, the
 * connection is aborted so the client sees the response incomplete. */
#include "appserver/wsgi/wsgi.h"

#include <sys/stat.h>

/* 1: sent with sendfile; 0: the object has no usable descriptor; -1: error set. */
static int send_file(wsgi_start *sr, PyObject *wrapper)
{
    PyObject *filelike = PyObject_GetAttrString(wrapper, "filelike");
    PyObject *fileno = filelike ? PyObject_CallMethod(filelike, "fileno", NULL) : NULL;
    int fd = fileno ? PyObject_AsFileDescriptor(fileno) : -1;
    Py_XDECREF(fileno);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        Py_XDECREF(filelike);
        PyErr_Clear(); /* BytesIO and the like: read in blocks instead */
        return 0;
    }
    PyObject *pos = PyObject_CallMethod(filelike, "tell", NULL);
    long long offset = pos ? PyLong_AsLongLong(pos) : 0;
    Py_XDECREF(pos);
    Py_DECREF(filelike);
    if (offset < 0 || PyErr_Occurred()) {
        PyErr_Clear();
        offset = 0;
    }
    int64_t size = st.st_size > offset ? st.st_size - offset : 0;
    if (sr->length >= 0 && sr->length < size)
        size = sr->length;
    if (wsgi_send_headers(sr, size) != 0)
        return -1;
    int rc;
    PyThreadState *ts = PyEval_SaveThread(); /* the app's threads run meanwhile */
    rc = hearth_res_sendfile(sr->res, fd, offset, (size_t)size);
    PyEval_RestoreThread(ts);
    return wsgi_sent(sr, rc) == 0 ? 1 : -1;
}

/* 0 when the whole body went out; -1 with a Python exception set. */
static int send_result(wsgi_start *sr, PyObject *result)
{
    if (Py_TYPE(result) == &wsgi_file_wrapper_type) {
        int sent = send_file(sr, result);
        if (sent != 0)
            return sent > 0 ? 0 : -1;
    }
    PyObject *it = PyObject_GetIter(result), *item;
    if (!it)
        return -1;
    while ((item = PyIter_Next(it))) {
        int rc = -1;
        if (!PyBytes_Check(item))
            PyErr_Format(PyExc_TypeError, "the response body must be bytes, got %.80s",
                         Py_TYPE(item)->tp_name);
        else
            rc = wsgi_send_body(sr, PyBytes_AS_STRING(item), (size_t)PyBytes_GET_SIZE(item));
        Py_DECREF(item);
        if (rc != 0)
            break;
    }
    Py_DECREF(it);
    if (PyErr_Occurred())
        return -1;
    return wsgi_send_headers(sr, 0); /* nothing but empty bytes: an empty body */
}

/* The iterable's close(), whatever happened before (PEP 3333). */
static int close_result(PyObject *result, const hearth_req *req)
{
    if (!PyObject_HasAttrString(result, "close"))
        return 0;
    PyObject *r = PyObject_CallMethod(result, "close", NULL);
    if (r) {
        Py_DECREF(r);
        return 0;
    }
    wsgi_log_exception("exception in the response's close()", req);
    return -1;
}

static int fail(wsgi_start *sr, hearth_req *req, hearth_res *res)
{
    if (sr->client_gone) {
        PyErr_Clear();
        hearth_log(HEARTH_LOG_INFO, "wsgi: %s %s: the client left before the response ended",
                   hearth_req_method(req), hearth_req_target(req));
        return HEARTH_ERROR;
    }
    wsgi_log_exception("exception in the WSGI application", req);
    if (sr->sent) {
        hearth_res_abort(res, "the application raised after its response started");
        return HEARTH_ERROR;
    }
    return hearth_res_fail(res, "the application raised an exception (traceback above)");
}

static int call_app(hearth_req *req, hearth_res *res)
{
    bool not_found;
    PyObject *env = wsgi_environ(req, &not_found);
    if (not_found) {
        hearth_res_status(res, 404);
        return hearth_res_puts(res, "Not Found\n");
    }
    if (!env) {
        wsgi_log_exception("cannot build environ", req);
        return hearth_res_fail(res, "cannot build the WSGI environ");
    }
    wsgi_start *sr = (wsgi_start *)wsgi_start_new(res);
    PyObject *result = sr ? PyObject_CallFunctionObjArgs(wsgi.app, env, sr, NULL) : NULL;
    int rc = result && send_result(sr, result) == 0 ? HEARTH_OK : fail(sr, req, res);
    if (result && close_result(result, req) != 0 && rc == HEARTH_OK && hearth_res_started(res))
        rc = HEARTH_OK; /* the response went out whole; the log has close()'s exception */
    Py_XDECREF(result);
    Py_XDECREF((PyObject *)sr);
    Py_DECREF(env);
    return rc;
}

int wsgi_serve(hearth_req *req, hearth_res *res)
{
    PyEval_RestoreThread(wsgi.idle);
    int rc = call_app(req, res);
    wsgi.idle = PyEval_SaveThread(); /* the application's threads run while we wait */
    return rc;
}
