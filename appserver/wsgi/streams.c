/* wsgi.errors (a text stream into the appserver's error log) and wsgi.file_wrapper (a file
 * the bridge sends with sendfile when it has a descriptor, else reads in blocks). */
#include "appserver/wsgi/wsgi.h"

#include <structmember.h>

/* ---- wsgi.errors ---- */

typedef struct {
    PyObject ob_base; /* PyObject_HEAD */
} wsgi_errors;

static PyObject *errors_write(PyObject *self, PyObject *text)
{
    (void)self;
    Py_ssize_t len;
    const char *s = PyUnicode_Check(text) ? PyUnicode_AsUTF8AndSize(text, &len) : NULL;
    if (!s) {
        if (!PyErr_Occurred())
            PyErr_SetString(PyExc_TypeError, "wsgi.errors.write() takes a str");
        return NULL;
    }
    while (len > 0 && s[len - 1] == '\n')
        len--; /* the log adds its own line end */
    if (len > 0)
        hearth_log(HEARTH_LOG_ERROR, "%.*s", (int)len, s);
    return PyLong_FromSsize_t(len);
}

static PyObject *errors_writelines(PyObject *self, PyObject *lines)
{
    PyObject *it = PyObject_GetIter(lines), *line;
    if (!it)
        return NULL;
    while ((line = PyIter_Next(it))) {
        PyObject *r = errors_write(self, line);
        Py_DECREF(line);
        if (!r)
            break;
        Py_DECREF(r);
    }
    Py_DECREF(it);
    if (PyErr_Occurred())
        return NULL;
    Py_RETURN_NONE;
}

static PyObject *errors_flush(PyObject *self, PyObject *unused)
{
    (void)self;
    (void)unused;
    Py_RETURN_NONE; /* every write already went out whole */
}

static PyMethodDef errors_methods[] = {
    {"write", errors_write, METH_O, NULL},
    {"writelines", errors_writelines, METH_O, NULL},
    {"flush", errors_flush, METH_NOARGS, NULL},
    {NULL, NULL, 0, NULL},
};

PyTypeObject wsgi_errors_type = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "hearth.ErrorStream",
    .tp_basicsize = sizeof(wsgi_errors),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_new = PyType_GenericNew,
    .tp_methods = errors_methods,
};

/* ---- wsgi.file_wrapper ---- */

typedef struct {
    PyObject ob_base; /* PyObject_HEAD */
    PyObject *filelike;
    Py_ssize_t blksize;
} wsgi_file_wrapper;

static int wrapper_init(wsgi_file_wrapper *w, PyObject *args, PyObject *kwargs)
{
    static char *names[] = {"filelike", "blksize", NULL};
    PyObject *filelike;
    w->blksize = 8192;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "O|n", names, &filelike, &w->blksize))
        return -1;
    if (w->blksize <= 0)
        w->blksize = 8192;
    Py_INCREF(filelike);
    Py_XSETREF(w->filelike, filelike);
    return 0;
}

static void wrapper_dealloc(wsgi_file_wrapper *w)
{
    Py_XDECREF(w->filelike);
    Py_TYPE(w)->tp_free((PyObject *)w);
}

static PyObject *wrapper_iternext(wsgi_file_wrapper *w)
{
    PyObject *data = PyObject_CallMethod(w->filelike, "read", "n", w->blksize);
    if (data && PyBytes_Check(data) && PyBytes_GET_SIZE(data) == 0) {
        Py_DECREF(data);
        return NULL; /* StopIteration */
    }
    return data;
}

static PyObject *wrapper_close(wsgi_file_wrapper *w, PyObject *unused)
{
    (void)unused;
    if (w->filelike && PyObject_HasAttrString(w->filelike, "close"))
        return PyObject_CallMethod(w->filelike, "close", NULL);
    Py_RETURN_NONE;
}

static PyMethodDef wrapper_methods[] = {
    {"close", (PyCFunction)wrapper_close, METH_NOARGS, NULL},
    {NULL, NULL, 0, NULL},
};

static PyMemberDef wrapper_members[] = {
    {"filelike", T_OBJECT, offsetof(wsgi_file_wrapper, filelike), READONLY, NULL},
    {"blksize", T_PYSSIZET, offsetof(wsgi_file_wrapper, blksize), READONLY, NULL},
    {NULL, 0, 0, 0, NULL},
};

PyTypeObject wsgi_file_wrapper_type = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "hearth.FileWrapper",
    .tp_basicsize = sizeof(wsgi_file_wrapper),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)wrapper_init,
    .tp_dealloc = (destructor)wrapper_dealloc,
    .tp_iter = PyObject_SelfIter,
    .tp_iternext = (iternextfunc)wrapper_iternext,
    .tp_methods = wrapper_methods,
    .tp_members = wrapper_members,
};

int wsgi_types_ready(void)
{
    PyTypeObject *types[] = {&wsgi_input_type, &wsgi_errors_type, &wsgi_file_wrapper_type,
                             &wsgi_start_type, &wsgi_write_type};
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++)
        if (PyType_Ready(types[i]) != 0)
            return -1;
    return 0;
}
