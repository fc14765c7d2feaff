/* wsgi.input: the request body as a file-like object that reads from the socket as the
 * application asks (read, readline, readlines, iteration), never past the body. The GIL is
 * released while it waits for the client. */
#include "appserver/wsgi/wsgi.h"

#define INPUT_BLOCK 65536
#define READ_GROWTH (1u << 20) /* read(n) allocates this much more at a time, at most */

typedef struct {
    PyObject ob_base; /* PyObject_HEAD */
    hearth_req *req;
    char *buf; /* read ahead of a readline, not yet handed out */
    size_t pos, len, cap;
    bool eof;
} wsgi_input;

static void input_dealloc(wsgi_input *in)
{
    PyMem_RawFree(in->buf);
    Py_TYPE(in)->tp_free((PyObject *)in);
}

PyObject *wsgi_input_new(hearth_req *req)
{
    wsgi_input *in = PyObject_New(wsgi_input, &wsgi_input_type);
    if (!in)
        return NULL;
    in->req = req;
    in->buf = NULL;
    in->pos = in->len = in->cap = 0;
    in->eof = false;
    return (PyObject *)in;
}

/* The bytes read ahead and not handed out yet ("" before the first read ahead). */
static const char *ahead(const wsgi_input *in)
{
    return in->buf ? in->buf + in->pos : "";
}

/* Up to n body bytes into dst: count, 0 at the end, -1 with OSError set. */
static Py_ssize_t read_socket(wsgi_input *in, char *dst, size_t n)
{
    if (in->eof || n == 0)
        return 0;
    long got;
    PyThreadState *ts = PyEval_SaveThread(); /* the app's threads run meanwhile */
    got = hearth_req_read(in->req, dst, n);
    PyEval_RestoreThread(ts);
    if (got < 0) {
        PyErr_SetString(PyExc_OSError,
                        "the request body could not be read (client gone, too slow, or the body "
                        "is malformed or over the size limit)");
        return -1;
    }
    if (got == 0)
        in->eof = true;
    return got;
}

/* Makes room for n more buffered bytes. */
static int reserve(wsgi_input *in, size_t n)
{
    if (in->pos > 0) {
        memmove(in->buf, in->buf + in->pos, in->len - in->pos);
        in->len -= in->pos;
        in->pos = 0;
    }
    if (in->len + n <= in->cap)
        return 0;
    size_t cap = in->cap ? in->cap : INPUT_BLOCK;
    while (cap < in->len + n)
        cap *= 2;
    char *b = PyMem_RawRealloc(in->buf, cap);
    if (!b) {
        PyErr_NoMemory();
        return -1;
    }
    in->buf = b;
    in->cap = cap;
    return 0;
}

/* One more block into the buffer: bytes added, 0 at the end, -1 on error. */
static Py_ssize_t fill(wsgi_input *in)
{
    if (reserve(in, INPUT_BLOCK) != 0)
        return -1;
    Py_ssize_t n = read_socket(in, in->buf + in->len, INPUT_BLOCK);
    if (n > 0)
        in->len += (size_t)n;
    return n;
}

static Py_ssize_t size_arg(PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs == 0 || args[0] == Py_None)
        return -1;
    return PyNumber_AsSsize_t(args[0], PyExc_OverflowError);
}

/* read(size=-1) */
static PyObject *input_read(wsgi_input *in, PyObject *const *args, Py_ssize_t nargs)
{
    Py_ssize_t want = size_arg(args, nargs);
    if (want == -1 && PyErr_Occurred())
        return NULL;
    if (want < 0) { /* all of it */
        while (true) {
            Py_ssize_t n = fill(in);
            if (n < 0)
                return NULL;
            if (n == 0)
                break;
        }
        PyObject *all = PyBytes_FromStringAndSize(ahead(in), (Py_ssize_t)(in->len - in->pos));
        in->pos = in->len;
        return all;
    }
    /* The result grows with what arrives, not with what was asked: read(10**12) on a small body
     * costs that body, not a terabyte. */
    size_t have = in->len - in->pos < (size_t)want ? in->len - in->pos : (size_t)want;
    size_t cap = (size_t)want - have > READ_GROWTH ? have + READ_GROWTH : (size_t)want;
    PyObject *out = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)cap);
    if (!out)
        return NULL;
    memcpy(PyBytes_AS_STRING(out), ahead(in), have);
    in->pos += have;
    while (have < (size_t)want) {
        if (have == cap) {
            cap = (size_t)want - cap > cap ? 2 * cap : (size_t)want;
            if (_PyBytes_Resize(&out, (Py_ssize_t)cap) != 0)
                return NULL;
        }
        Py_ssize_t n = read_socket(in, PyBytes_AS_STRING(out) + have, cap - have);
        if (n < 0) {
            Py_DECREF(out);
            return NULL;
        }
        if (n == 0)
            break;
        have += (size_t)n;
    }
    if (have < cap && _PyBytes_Resize(&out, (Py_ssize_t)have) != 0)
        return NULL;
    return out;
}

/* A line ending with b"\n" (or the end of the body, or limit bytes); b"" at the end. */
static PyObject *read_line(wsgi_input *in, Py_ssize_t limit)
{
    size_t scanned = 0;
    if (limit == 0)
        return PyBytes_FromStringAndSize("", 0);
    while (true) {
        size_t avail = in->len - in->pos;
        size_t span = limit >= 0 && (size_t)limit < avail ? (size_t)limit : avail;
        const char *nl = memchr(ahead(in) + scanned, '\n', span - scanned);
        size_t take = nl ? (size_t)(nl - ahead(in)) + 1 : 0;
        if (!take && limit >= 0 && avail >= (size_t)limit)
            take = (size_t)limit;
        if (!take && in->eof)
            take = avail;
        if (take || in->eof) {
            PyObject *line = PyBytes_FromStringAndSize(ahead(in), (Py_ssize_t)take);
            in->pos += take;
            return line;
        }
        scanned = span;
        if (fill(in) < 0)
            return NULL;
    }
}

static PyObject *input_readline(wsgi_input *in, PyObject *const *args, Py_ssize_t nargs)
{
    Py_ssize_t limit = size_arg(args, nargs);
    if (limit == -1 && PyErr_Occurred())
        return NULL;
    return read_line(in, limit);
}

/* readlines(hint=-1): lines until the end, or until hint bytes were read. */
static PyObject *input_readlines(wsgi_input *in, PyObject *const *args, Py_ssize_t nargs)
{
    Py_ssize_t hint = size_arg(args, nargs);
    if (hint == -1 && PyErr_Occurred())
        return NULL;
    PyObject *lines = PyList_New(0);
    Py_ssize_t total = 0;
    while (lines) {
        PyObject *line = read_line(in, -1);
        if (!line || PyBytes_GET_SIZE(line) == 0 || PyList_Append(lines, line) != 0) {
            if (!line || PyErr_Occurred())
                Py_CLEAR(lines);
            Py_XDECREF(line);
            break;
        }
        total += PyBytes_GET_SIZE(line);
        Py_DECREF(line);
        if (hint > 0 && total >= hint)
            break;
    }
    return lines;
}

static PyObject *input_iternext(wsgi_input *in)
{
    PyObject *line = read_line(in, -1);
    if (line && PyBytes_GET_SIZE(line) == 0) {
        Py_DECREF(line);
        return NULL; /* StopIteration */
    }
    return line;
}

static PyMethodDef input_methods[] = {
    {"read", (PyCFunction)(void (*)(void))input_read, METH_FASTCALL, NULL},
    {"readline", (PyCFunction)(void (*)(void))input_readline, METH_FASTCALL, NULL},
    {"readlines", (PyCFunction)(void (*)(void))input_readlines, METH_FASTCALL, NULL},
    {NULL, NULL, 0, NULL},
};

PyTypeObject wsgi_input_type = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "hearth.InputStream",
    .tp_basicsize = sizeof(wsgi_input),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_dealloc = (destructor)input_dealloc,
    .tp_iter = PyObject_SelfIter,
    .tp_iternext = (iternextfunc)input_iternext,
    .tp_methods = input_methods,
};
