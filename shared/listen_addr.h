/* Listen addresses, one syntax and one meaning in every program: the supervisor, `supervisor
 * check`, a standalone edge and a standalone appserver parse, resolve and bind them here and
 * nowhere else, so what check accepts is what bind does (docs/config.md, "listen address").
 *
 *   unix:PATH     a unix stream socket
 *   :PORT         every address: one IPv6 socket with IPV6_V6ONLY off, taking IPv4 too (nginx's
 *                 `listen [::]:PORT ipv6only=off`); plain 0.0.0.0 on a machine without IPv6.
 *                 "*:PORT" and "PORT" mean the same.
 *   [IPV6]:PORT   that IPv6 address only ("[::]:443" is IPv6 only, as in nginx)
 *   HOST:PORT     an IPv4 address, or a name resolved when the program starts (and by check):
 *                 every address it resolves to is bound, as nginx does */
#ifndef HEARTH_LISTEN_ADDR_H
#define HEARTH_LISTEN_ADDR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/un.h>

typedef enum {
    LISTEN_ADDR_UNIX, /* unix:PATH */
    LISTEN_ADDR_ANY,  /* :PORT */
    LISTEN_ADDR_HOST, /* HOST:PORT or [IPV6]:PORT */
} listen_addr_kind;

/* The address as written, checked for syntax; nothing resolved yet. */
typedef struct {
    listen_addr_kind kind;
    uint16_t port;
    char host[254]; /* LISTEN_ADDR_HOST: an IP address or a name, without brackets */
    char path[sizeof(((struct sockaddr_un *)0)->sun_path)]; /* LISTEN_ADDR_UNIX */
} listen_addr;

/* One socket an address stands for (a name may stand for several). */
typedef struct {
    struct sockaddr_storage ss;
    socklen_t len;
    bool dual_stack; /* ":PORT": IPv6 taking IPv4 too, or 0.0.0.0 when the machine has no IPv6 */
} listen_sockaddr;

/* The most sockets one name is bound to. */
#define LISTEN_ADDR_MAX_SOCKETS 8

/* Check spec's syntax (port 1-65535, brackets around IPv6, a unix path that fits sun_path).
 * 0, or -1 with "address 'SPEC': why" in err. */
int listen_addr_parse(const char *spec, listen_addr *a, char *err, size_t errlen);

/* Parse spec and resolve it to the sockets to bind, at most max, duplicates dropped. The
 * count (at least 1), or -1 with "address 'SPEC': why" in err. */
int listen_addr_resolve(const char *spec, listen_sockaddr *out, size_t max, char *err,
                        size_t errlen);

/* Where a client reaches a server listening on spec (the edge's upstreams, which are usually
 * the appserver's bind addresses): ":PORT" is 127.0.0.1, a name its first address. 0, or -1
 * with "address 'SPEC': why" in err. */
int listen_addr_connect_target(const char *spec, listen_sockaddr *out, char *err, size_t errlen);

/* A listening socket on sa, one of spec's (close-on-exec, SO_REUSEADDR, IPV6_V6ONLY on unless
 * dual_stack). A unix socket file left by an earlier run is replaced; one that something is
 * accepting on is an error, as is a path that is not a socket. The fd, or -1 with "address
 * 'SPEC': why" in err. */
int listen_sockaddr_bind(const char *spec, const listen_sockaddr *sa, int backlog, char *err,
                         size_t errlen);

/* Resolve spec and bind every socket it stands for, into fds (LISTEN_ADDR_MAX_SOCKETS is
 * always room enough). The count, or -1 with the message in err and nothing left open. */
int listen_addr_bind_all(const char *spec, int backlog, int *fds, char *err, size_t errlen);

/* "127.0.0.1:80", "[::1]:80", ":80" (dual_stack) or "unix:PATH", for messages. */
void listen_sockaddr_format(const listen_sockaddr *sa, char *out, size_t len);

/* The port of sa, 0 for a unix socket. */
uint16_t listen_sockaddr_port(const listen_sockaddr *sa);

#endif
