/* The WSGI bridge: a hearth module (ABI 1.1) that serves one Python WSGI application. Each
 * worker starts CPython after fork, imports the application and releases the GIL; a request
 * takes the GIL, calls the application and streams what it returns. The appserver master
 * never loads this file. */
#include "appserver/wsgi/wsgi.h"

#include <dlfcn.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

wsgi_globals wsgi;

/* Extension modules (_sqlite3, markupsafe's speedups) expect libpython's symbols to be
 * global; the appserver loaded us RTLD_LOCAL, so promote the library we link. */
static void make_python_global(void)
{
    Dl_info info;
    if (dladdr((void *)Py_InitializeFromConfig, &info) && info.dli_fname &&
        !dlopen(info.dli_fname, RTLD_NOW | RTLD_NOLOAD | RTLD_GLOBAL))
        hearth_log(HEARTH_LOG_WARN, "wsgi: cannot make %s global: %s", info.dli_fname, dlerror());
}

static PyObject *import_attr(const char *module, const char *attr)
{
    PyObject *m = PyImport_ImportModule(module);
    PyObject *a = m ? PyObject_GetAttrString(m, attr) : NULL;
    Py_XDECREF(m);
    return a;
}

/* --virtualenv: Python finds a venv from the pyvenv.cfg next to its executable, as
 * `venv/bin/python3` would; --pythonpath and the working directory go first on sys.path. */
static int start_python(void)
{
    PyConfig config;
    PyConfig_InitPythonConfig(&config);
    config.install_signal_handlers = 0; /* the worker owns its signals */
    config.parse_argv = 0;
    config.user_site_directory = 0;
    /* No __pycache__ written next to the application: its folder is read-only under the unit,
     * and a cache written now could outlive a same-size rewrite of its source within the same
     * second (Python validates it by mtime and size), serving old code after a reload. */
    config.write_bytecode = 0;
    const char *venv = hearth_setting("virtualenv", 0);
    PyStatus st = PyConfig_SetBytesString(&config, &config.program_name, "python3");
    if (!PyStatus_Exception(st) && venv) {
        char exe[4096];
        snprintf(exe, sizeof exe, "%s/bin/python3", venv);
        st = PyConfig_SetBytesString(&config, &config.executable, exe);
    }
    if (!PyStatus_Exception(st))
        st = Py_InitializeFromConfig(&config);
    PyConfig_Clear(&config);
    if (PyStatus_Exception(st)) {
        hearth_log(HEARTH_LOG_ERROR, "wsgi: cannot start Python: %s",
                   st.err_msg ? st.err_msg : "unknown error");
        return -1;
    }
    return 0;
}

static int prepend_path(PyObject *sys_path, const char *dir)
{
    PyObject *d = PyUnicode_DecodeFSDefault(dir);
    int rc = d ? PyList_Insert(sys_path, 0, d) : -1;
    Py_XDECREF(d);
    return rc;
}

static int set_sys_path(void)
{
    PyObject *sys_path = PySys_GetObject("path"); /* borrowed */
    char cwd[4096];
    if (!sys_path || !getcwd(cwd, sizeof cwd) || prepend_path(sys_path, cwd) != 0)
        return -1;
    size_t n = 0;
    while (hearth_setting("pythonpath", n))
        n++;
    for (size_t i = n; i > 0; i--) /* the first named ends up first */
        if (prepend_path(sys_path, hearth_setting("pythonpath", i - 1)) != 0)
            return -1;
    return 0;
}

/* A timed-out worker is sent SIGABRT; faulthandler prints every thread's Python stack into
 * the error log first (and on SIGSEGV, SIGBUS, SIGFPE and SIGILL too). */
static int enable_faulthandler(void)
{
    PyObject *enable = import_attr("faulthandler", "enable");
    PyObject *r = enable ? PyObject_CallFunction(enable, "iO", hearth_log_fd(), Py_True) : NULL;
    Py_XDECREF(enable);
    Py_XDECREF(r);
    return r ? 0 : -1;
}

/* "pkg.mod:app" or "pkg.mod:factory()" (Gunicorn's forms). */
static PyObject *load_app(const char *spec)
{
    const char *colon = strchr(spec, ':');
    char *module = strndup(spec, (size_t)(colon - spec));
    char *attr = strdup(colon + 1);
    PyObject *app = NULL;
    size_t n = attr ? strlen(attr) : 0;
    bool factory = n > 2 && strcmp(attr + n - 2, "()") == 0;
    if (module && attr) {
        if (factory)
            attr[n - 2] = '\0';
        app = import_attr(module, attr);
    }
    if (app && factory)
        Py_SETREF(app, PyObject_CallNoArgs(app));
    if (app && !PyCallable_Check(app)) {
        PyErr_Format(PyExc_TypeError, "%s is %.80s, not a WSGI application (a callable)", spec,
                     Py_TYPE(app)->tp_name);
        Py_CLEAR(app);
    }
    free(module);
    free(attr);
    return app;
}

static int make_globals(void)
{
    const char *mount = hearth_setting("mount", 0);
    wsgi.mount = mount ? mount : "";
    wsgi.version = Py_BuildValue("(ii)", 1, 0);
    wsgi.errors = PyObject_CallNoArgs((PyObject *)&wsgi_errors_type);
    wsgi.format_exc = import_attr("traceback", "format_exception");
    return wsgi.version && wsgi.errors && wsgi.format_exc ? 0 : -1;
}

static int wsgi_init(void **data)
{
    (void)data;
    const char *spec = hearth_setting("wsgi.app", 0);
    if (!spec) {
        hearth_log(HEARTH_LOG_ERROR, "wsgi: no application named (module:callable)");
        return -1;
    }
    make_python_global();
    if (start_python() != 0)
        return -1;
    if (wsgi_types_ready() != 0 || set_sys_path() != 0 || enable_faulthandler() != 0 ||
        make_globals() != 0 || !(wsgi.app = load_app(spec))) {
        wsgi_log_exception("cannot load the WSGI application", NULL);
        hearth_log(HEARTH_LOG_ERROR, "wsgi: %s: the application did not load (see above)", spec);
        return -1;
    }
    hearth_log(HEARTH_LOG_INFO, "wsgi: worker %d serving %s (Python %s)", (int)getpid(), spec,
               Py_GetVersion());
    wsgi.idle = PyEval_SaveThread(); /* threads the application started run while we wait */
    return 0;
}

/* Runs atexit handlers and waits for the application's non-daemon threads, as Python would at
 * exit; the master's graceful timeout bounds it. */
static void wsgi_fini(void *data)
{
    (void)data;
    if (!wsgi.idle)
        return;
    PyEval_RestoreThread(wsgi.idle);
    wsgi.idle = NULL;
    Py_FinalizeEx();
}

void wsgi_log_exception(const char *what, const hearth_req *req)
{
    PyObject *type, *value, *tb;
    PyErr_Fetch(&type, &value, &tb);
    if (!type)
        return;
    PyErr_NormalizeException(&type, &value, &tb);
    PyObject *lines = wsgi.format_exc ? PyObject_CallFunctionObjArgs(wsgi.format_exc, type,
                                                                     value ? value : Py_None,
                                                                     tb ? tb : Py_None, NULL)
                                      : NULL;
    PyObject *empty = PyUnicode_FromString("");
    PyObject *text = lines && empty ? PyUnicode_Join(empty, lines) : PyObject_Str(value);
    const char *s = text ? PyUnicode_AsUTF8(text) : NULL;
    if (req)
        hearth_log(HEARTH_LOG_ERROR, "wsgi: %s (%s %s, worker %d):\n%s", what,
                   hearth_req_method(req), hearth_req_target(req), (int)getpid(),
                   s ? s : "(no traceback)");
    else
        hearth_log(HEARTH_LOG_ERROR, "wsgi: %s:\n%s", what, s ? s : "(no traceback)");
    PyErr_Clear();
    Py_XDECREF(lines);
    Py_XDECREF(empty);
    Py_XDECREF(text);
    Py_XDECREF(type);
    Py_XDECREF(value);
    Py_XDECREF(tb);
}

static const hearth_route routes[] = {
    {"*", "/*path", wsgi_serve}, /* everything the C modules beside it do not take */
    {NULL, NULL, NULL},
};

HEARTH_MODULE = {
    HEARTH_MODULE_HEAD,
    .name = "wsgi",
    .version = PY_VERSION,
    .init = wsgi_init,
    .fini = wsgi_fini,
    .routes = routes,
    .flags = HEARTH_MODULE_STREAMS_BODY,
};
