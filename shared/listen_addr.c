/* Listen addresses: parsed, resolved and bound in one place; see listen_addr.h for the syntax
 * and what each form means. */
#include "shared/listen_addr.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static int refuse(char *err, size_t errlen, const char *spec, const char *why)
{
    if (err && errlen)
        snprintf(err, errlen, "address '%s': %s", spec, why);
    return -1;
}

/* Digits only, 1-65535: no sign, no spaces, no "0x". */
static int parse_port(const char *text, uint16_t *port)
{
    unsigned long v = 0;
    if (!*text || strlen(text) > 5)
        return -1;
    for (const char *p = text; *p; p++) {
        if (*p < '0' || *p > '9')
            return -1;
        v = v * 10 + (unsigned long)(*p - '0');
    }
    if (v < 1 || v > 65535)
        return -1;
    *port = (uint16_t)v;
    return 0;
}

/* Letters, digits, '.', '-' and '_': an IPv4 address or a name for the resolver. Whether the
 * name exists is the resolver's answer, at start and in check. */
static bool host_chars_ok(const char *host)
{
    for (const char *p = host; *p; p++) {
        char c = *p;
        bool alnum = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
        if (!alnum && c != '.' && c != '-' && c != '_')
            return false;
    }
    return true;
}

static int parse_unix(const char *spec, listen_addr *a, char *err, size_t errlen)
{
    const char *path = spec + 5;
    size_t n = strlen(path);
    char why[128];
    a->kind = LISTEN_ADDR_UNIX;
    if (n == 0)
        return refuse(err, errlen, spec, "a unix socket needs a path after 'unix:'");
    if (n >= sizeof(a->path)) {
        snprintf(why, sizeof(why), "the socket path is %zu bytes, a unix socket holds at most %zu",
                 n, sizeof(a->path) - 1);
        return refuse(err, errlen, spec, why);
    }
    memcpy(a->path, path, n + 1);
    return 0;
}

/* "[V6]:PORT": the host part, which must be an IPv6 address. */
static int parse_bracketed(const char *spec, listen_addr *a, const char **port, char *err,
                           size_t errlen)
{
    const char *close = strchr(spec, ']');
    if (!close || close[1] != ':')
        return refuse(err, errlen, spec, "expected [IPV6]:PORT");
    size_t n = (size_t)(close - spec - 1);
    struct in6_addr a6;
    if (n == 0)
        return refuse(err, errlen, spec, "empty host between [ and ]");
    if (n >= sizeof(a->host))
        return refuse(err, errlen, spec, "not an IPv6 address between [ and ]");
    memcpy(a->host, spec + 1, n);
    a->host[n] = '\0';
    if (inet_pton(AF_INET6, a->host, &a6) != 1)
        return refuse(err, errlen, spec, "not an IPv6 address between [ and ]");
    a->kind = LISTEN_ADDR_HOST;
    *port = close + 2;
    return 0;
}

/* "HOST:PORT", ":PORT", "*:PORT" or "PORT": the host part, empty or "*" for every address. */
static int parse_host(const char *spec, listen_addr *a, const char **port, char *err, size_t errlen)
{
    const char *colon = strrchr(spec, ':');
    size_t n = colon ? (size_t)(colon - spec) : 0;
    *port = colon ? colon + 1 : spec;
    if (!colon && strspn(spec, "0123456789") != strlen(spec))
        return refuse(err, errlen, spec, "expected unix:PATH, HOST:PORT, [IPV6]:PORT or :PORT");
    if (n > 0 && memchr(spec, ':', n)) {
        char why[160];
        snprintf(why, sizeof(why), "an IPv6 address needs brackets, as in [%.*s]:%s", (int)n, spec,
                 *port);
        return refuse(err, errlen, spec, why);
    }
    if (n == 0 || (n == 1 && spec[0] == '*')) {
        a->kind = LISTEN_ADDR_ANY;
        return 0;
    }
    if (n >= sizeof(a->host))
        return refuse(err, errlen, spec, "host name longer than 253 bytes");
    memcpy(a->host, spec, n);
    a->host[n] = '\0';
    if (!host_chars_ok(a->host))
        return refuse(err, errlen, spec, "the host is neither an IP address nor a host name");
    a->kind = LISTEN_ADDR_HOST;
    return 0;
}

int listen_addr_parse(const char *spec, listen_addr *a, char *err, size_t errlen)
{
    memset(a, 0, sizeof(*a));
    if (!spec || !*spec)
        return refuse(err, errlen, "", "empty");
    if (strncmp(spec, "unix:", 5) == 0)
        return parse_unix(spec, a, err, errlen);
    const char *port;
    int rc = spec[0] == '[' ? parse_bracketed(spec, a, &port, err, errlen)
                            : parse_host(spec, a, &port, err, errlen);
    if (rc < 0)
        return -1;
    if (parse_port(port, &a->port) < 0)
        return refuse(err, errlen, spec, "the port must be a number from 1 to 65535");
    return 0;
}

static void set_port(listen_sockaddr *sa, uint16_t port)
{
    if (sa->ss.ss_family == AF_INET)
        ((struct sockaddr_in *)&sa->ss)->sin_port = htons(port);
    else if (sa->ss.ss_family == AF_INET6)
        ((struct sockaddr_in6 *)&sa->ss)->sin6_port = htons(port);
}

uint16_t listen_sockaddr_port(const listen_sockaddr *sa)
{
    if (sa->ss.ss_family == AF_INET)
        return ntohs(((const struct sockaddr_in *)&sa->ss)->sin_port);
    if (sa->ss.ss_family == AF_INET6)
        return ntohs(((const struct sockaddr_in6 *)&sa->ss)->sin6_port);
    return 0;
}

static void set_unix(listen_sockaddr *sa, const char *path)
{
    struct sockaddr_un *sun = (struct sockaddr_un *)&sa->ss;
    sun->sun_family = AF_UNIX;
    memcpy(sun->sun_path, path, strlen(path) + 1); /* fits: checked by the parser */
    sa->len = sizeof(*sun);
}

static void set_inet(listen_sockaddr *sa, int family, const void *addr, uint16_t port)
{
    memset(sa, 0, sizeof(*sa));
    sa->ss.ss_family = (sa_family_t)family;
    if (family == AF_INET) {
        memcpy(&((struct sockaddr_in *)&sa->ss)->sin_addr, addr, sizeof(struct in_addr));
        sa->len = sizeof(struct sockaddr_in);
    } else {
        memcpy(&((struct sockaddr_in6 *)&sa->ss)->sin6_addr, addr, sizeof(struct in6_addr));
        sa->len = sizeof(struct sockaddr_in6);
    }
    set_port(sa, port);
}

/* out[n] is one of out[0..n-1] (a resolver gives an address once per socket type and more). */
static bool already_in(const listen_sockaddr *out, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (out[i].len == out[n].len && memcmp(&out[i].ss, &out[n].ss, out[n].len) == 0)
            return true;
    return false;
}

/* Every distinct address of host, as nginx binds every address of a name in `listen`. */
static int resolve_host(const char *spec, const listen_addr *a, listen_sockaddr *out, size_t max,
                        char *err, size_t errlen)
{
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
    struct addrinfo *res = NULL;
    int rc = getaddrinfo(a->host, NULL, &hints, &res);
    if (rc != 0 || !res) {
        char why[320];
        snprintf(why, sizeof(why), "cannot resolve '%s': %s", a->host,
                 rc == EAI_SYSTEM ? strerror(errno) : gai_strerror(rc));
        return refuse(err, errlen, spec, why);
    }
    size_t n = 0;
    for (const struct addrinfo *ai = res; ai && n < max; ai = ai->ai_next) {
        bool inet = ai->ai_family == AF_INET || ai->ai_family == AF_INET6;
        if (!inet || ai->ai_addrlen > sizeof(out[n].ss))
            continue;
        memset(&out[n], 0, sizeof(out[n]));
        memcpy(&out[n].ss, ai->ai_addr, ai->ai_addrlen);
        out[n].len = ai->ai_addrlen;
        set_port(&out[n], a->port);
        if (!already_in(out, n))
            n++;
    }
    freeaddrinfo(res);
    if (n == 0)
        return refuse(err, errlen, spec, "the name has no IPv4 or IPv6 address");
    return (int)n;
}

int listen_addr_resolve(const char *spec, listen_sockaddr *out, size_t max, char *err,
                        size_t errlen)
{
    listen_addr a;
    if (max == 0 || listen_addr_parse(spec, &a, err, errlen) < 0)
        return -1;
    memset(out, 0, sizeof(*out));
    switch (a.kind) {
    case LISTEN_ADDR_UNIX:
        set_unix(out, a.path);
        return 1;
    case LISTEN_ADDR_ANY:
        set_inet(out, AF_INET6, &in6addr_any, a.port);
        out->dual_stack = true;
        return 1;
    case LISTEN_ADDR_HOST:
        break;
    }
    return resolve_host(spec, &a, out, max, err, errlen);
}

int listen_addr_connect_target(const char *spec, listen_sockaddr *out, char *err, size_t errlen)
{
    if (listen_addr_resolve(spec, out, 1, err, errlen) < 0)
        return -1;
    if (out->dual_stack) {
        struct in_addr loopback = {.s_addr = htonl(INADDR_LOOPBACK)};
        set_inet(out, AF_INET, &loopback, listen_sockaddr_port(out));
    }
    return 0;
}

void listen_sockaddr_format(const listen_sockaddr *sa, char *out, size_t len)
{
    char ip[INET6_ADDRSTRLEN] = "?";
    uint16_t port = listen_sockaddr_port(sa);
    if (sa->ss.ss_family == AF_UNIX) {
        snprintf(out, len, "unix:%s", ((const struct sockaddr_un *)&sa->ss)->sun_path);
    } else if (sa->dual_stack) {
        snprintf(out, len, ":%u", port);
    } else if (sa->ss.ss_family == AF_INET) {
        inet_ntop(AF_INET, &((const struct sockaddr_in *)&sa->ss)->sin_addr, ip, sizeof(ip));
        snprintf(out, len, "%s:%u", ip, port);
    } else {
        inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)&sa->ss)->sin6_addr, ip, sizeof(ip));
        snprintf(out, len, "[%s]:%u", ip, port);
    }
}

/* socket, bind, listen; -1 with errno kept for the caller's message and fallback. */
static int open_listening(const listen_sockaddr *sa, int backlog)
{
    int fd = socket(sa->ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    int one = 1, v6only = !sa->dual_stack;
    if (sa->ss.ss_family != AF_UNIX)
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (sa->ss.ss_family == AF_INET6)
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &v6only, sizeof(v6only));
    /* a unix socket is 0660 from the start: the edge reaches it through the group */
    mode_t old = sa->ss.ss_family == AF_UNIX ? umask(0117) : 0;
    int rc = bind(fd, (const struct sockaddr *)&sa->ss, sa->len);
    if (sa->ss.ss_family == AF_UNIX)
        umask(old);
    if (rc < 0 || listen(fd, backlog) < 0) {
        int saved = errno;
        close(fd);
        errno = saved;
        return -1;
    }
    return fd;
}

/* A socket file nobody accepts on is left over from an earlier run: removed. A live one, or a
 * file that is no socket, is not ours to remove. */
static int clear_unix_path(const listen_sockaddr *sa, char *err, size_t errlen)
{
    const char *path = ((const struct sockaddr_un *)&sa->ss)->sun_path;
    struct stat st;
    if (lstat(path, &st) < 0)
        return 0;
    if (!S_ISSOCK(st.st_mode)) {
        snprintf(err, errlen, "the file exists and is not a socket");
        return -1;
    }
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    bool live = fd >= 0 && connect(fd, (const struct sockaddr *)&sa->ss, sa->len) == 0;
    if (fd >= 0)
        close(fd);
    if (live) {
        snprintf(err, errlen, "another server is accepting on this socket");
        return -1;
    }
    unlink(path);
    return 0;
}

int listen_sockaddr_bind(const char *spec, const listen_sockaddr *sa, int backlog, char *err,
                         size_t errlen)
{
    char why[sizeof(struct sockaddr_un) + 96], where[sizeof(struct sockaddr_un) + 8];
    listen_sockaddr_format(sa, where, sizeof(where));
    if (sa->ss.ss_family == AF_UNIX && clear_unix_path(sa, why, sizeof(why)) < 0)
        return refuse(err, errlen, spec, why);
    int fd = open_listening(sa, backlog);
    if (fd < 0 && sa->dual_stack && (errno == EAFNOSUPPORT || errno == EADDRNOTAVAIL)) {
        /* no IPv6 on this machine: ":PORT" is every IPv4 address */
        listen_sockaddr v4;
        struct in_addr any = {.s_addr = htonl(INADDR_ANY)};
        set_inet(&v4, AF_INET, &any, listen_sockaddr_port(sa));
        fd = open_listening(&v4, backlog);
    }
    if (fd < 0) {
        /* the socket is named when spec is a name, or "PORT" for ":PORT" */
        bool same = strcmp(where, spec) == 0;
        snprintf(why, sizeof(why), "cannot listen%s%s: %s", same ? "" : " on ", same ? "" : where,
                 strerror(errno));
        return refuse(err, errlen, spec, why);
    }
    return fd;
}

int listen_addr_bind_all(const char *spec, int backlog, int *fds, char *err, size_t errlen)
{
    listen_sockaddr addrs[LISTEN_ADDR_MAX_SOCKETS];
    int n = listen_addr_resolve(spec, addrs, LISTEN_ADDR_MAX_SOCKETS, err, errlen);
    for (int i = 0; i < n; i++) {
        fds[i] = listen_sockaddr_bind(spec, &addrs[i], backlog, err, errlen);
        if (fds[i] < 0) {
            while (i-- > 0)
                close(fds[i]);
            return -1;
        }
    }
    return n;
}
