/* environ for one request (PEP 3333): CGI keys from the parsed request, HTTP_* keys from its
 * fields, and the wsgi.* keys. Strings are "native": bytes decoded as latin-1. */
#include "appserver/wsgi/wsgi.h"

#include <ctype.h>
#include <string.h>
#include <strings.h>

static int set_str(PyObject *env, const char *key, const char *value, Py_ssize_t len)
{
    PyObject *v = PyUnicode_DecodeLatin1(value, len < 0 ? (Py_ssize_t)strlen(value) : len, NULL);
    int rc = v ? PyDict_SetItemString(env, key, v) : -1;
    Py_XDECREF(v);
    return rc;
}

static int set_obj(PyObject *env, const char *key, PyObject *value)
{
    int rc = value ? PyDict_SetItemString(env, key, value) : -1;
    Py_XDECREF(value);
    return rc;
}

/* "HTTP_" + the name upper-cased with '-' as '_'; 0 when the field has no HTTP_ key. */
static int cgi_name(const char *name, char *out, size_t len)
{
    if (strchr(name, '_'))
        return 0; /* "X_Forwarded_For" would pose as "X-Forwarded-For": dropped */
    if (strcasecmp(name, "Content-Type") == 0 || strcasecmp(name, "Content-Length") == 0)
        return 0; /* CONTENT_TYPE and CONTENT_LENGTH */
    size_t n = strlen(name);
    if (n + 6 > len)
        return 0;
    memcpy(out, "HTTP_", 5);
    for (size_t i = 0; i < n; i++)
        out[5 + i] = name[i] == '-' ? '_' : (char)toupper((unsigned char)name[i]);
    out[5 + n] = '\0';
    return 1;
}

/* Repeated fields are joined with ", " (cookies with "; "), in the order they came. */
static int add_field(PyObject *env, const char *key, const char *value)
{
    PyObject *old = PyDict_GetItemString(env, key); /* borrowed */
    PyObject *v = PyUnicode_DecodeLatin1(value, (Py_ssize_t)strlen(value), NULL);
    if (v && old)
        Py_SETREF(v, PyUnicode_FromFormat("%U%s%U", old,
                                          strcmp(key, "HTTP_COOKIE") == 0 ? "; " : ", ", v));
    return set_obj(env, key, v);
}

static int add_fields(PyObject *env, hearth_req *req)
{
    const char *name, *value;
    char key[300];
    for (size_t i = 0; hearth_req_header_at(req, i, &name, &value) == 0; i++)
        if (cgi_name(name, key, sizeof key) && add_field(env, key, value) != 0)
            return -1;
    const char *type = hearth_req_header(req, "Content-Type");
    const char *length = hearth_req_header(req, "Content-Length");
    if (type && set_str(env, "CONTENT_TYPE", type, -1) != 0)
        return -1;
    if (length && set_str(env, "CONTENT_LENGTH", length, -1) != 0)
        return -1;
    return 0;
}

/* SERVER_NAME from Host (RFC 9110: uri-host [":" port]); SERVER_PORT the port the request
 * came in on (CGI's meaning) or, on the edge's unix socket, the one the client used as far
 * as Host and the scheme tell. */
static int add_server(PyObject *env, hearth_req *req, bool https)
{
    const char *host = hearth_req_header(req, "Host");
    const char *port = https ? "443" : "80";
    if (!host || !*host)
        host = "localhost";
    const char *end = host[0] == '[' ? strchr(host, ']') : NULL;
    const char *colon = strrchr(end ? end : host, ':');
    Py_ssize_t name_len = colon ? colon - host : (Py_ssize_t)strlen(host);
    if (colon && colon[1])
        port = colon + 1;
    char local[16];
    if (hearth_req_local_port(req) > 0) {
        snprintf(local, sizeof local, "%d", hearth_req_local_port(req));
        port = local;
    }
    if (set_str(env, "SERVER_NAME", host, name_len) != 0 ||
        set_str(env, "SERVER_PORT", port, -1) != 0)
        return -1;
    return 0;
}

/* SCRIPT_NAME is the mount point; PATH_INFO the rest of the decoded path. */
static int add_path(PyObject *env, hearth_req *req, bool *not_found)
{
    const char *path = hearth_req_path(req);
    size_t m = strlen(wsgi.mount);
    if (m > 0) {
        if (strncmp(path, wsgi.mount, m) != 0 || (path[m] != '/' && path[m] != '\0')) {
            *not_found = true;
            return 0;
        }
        path += m;
    }
    if (set_str(env, "SCRIPT_NAME", wsgi.mount, -1) != 0 ||
        set_str(env, "PATH_INFO", path, -1) != 0)
        return -1;
    return 0;
}

static int add_request_line(PyObject *env, hearth_req *req)
{
    const char *addr = hearth_req_client_addr(req);
    if (strcmp(addr, "unix") == 0)
        addr = ""; /* a unix socket peer with no edge in front has no address */
    PyObject *proto = PyUnicode_FromFormat("HTTP/1.%d", hearth_req_http_minor(req));
    if (set_str(env, "REQUEST_METHOD", hearth_req_method(req), -1) != 0 ||
        set_str(env, "QUERY_STRING", hearth_req_query_string(req), -1) != 0 ||
        set_str(env, "RAW_URI", hearth_req_target(req), -1) != 0 ||
        set_str(env, "REMOTE_ADDR", addr, -1) != 0 || set_obj(env, "SERVER_PROTOCOL", proto) != 0)
        return -1;
    return 0;
}

static int add_wsgi(PyObject *env, hearth_req *req, const char *scheme)
{
    if (PyDict_SetItemString(env, "wsgi.version", wsgi.version) != 0 ||
        set_str(env, "wsgi.url_scheme", scheme, -1) != 0 ||
        set_obj(env, "wsgi.input", wsgi_input_new(req)) != 0 ||
        PyDict_SetItemString(env, "wsgi.errors", wsgi.errors) != 0 ||
        PyDict_SetItemString(env, "wsgi.multithread", Py_False) != 0 ||
        PyDict_SetItemString(env, "wsgi.multiprocess", Py_True) != 0 ||
        PyDict_SetItemString(env, "wsgi.run_once", Py_False) != 0 ||
        /* the input never reads past the body, chunked or not: reading to b"" is safe */
        PyDict_SetItemString(env, "wsgi.input_terminated", Py_True) != 0 ||
        PyDict_SetItemString(env, "wsgi.file_wrapper", (PyObject *)&wsgi_file_wrapper_type) != 0)
        return -1;
    return 0;
}

PyObject *wsgi_environ(hearth_req *req, bool *not_found)
{
    *not_found = false;
    PyObject *env = PyDict_New();
    if (!env)
        return NULL;
    const char *scheme = hearth_req_scheme(req);
    if (add_path(env, req, not_found) != 0 || *not_found || add_request_line(env, req) != 0 ||
        add_server(env, req, strcmp(scheme, "https") == 0) != 0 || add_fields(env, req) != 0 ||
        add_wsgi(env, req, scheme) != 0)
        Py_CLEAR(env);
    return env;
}
