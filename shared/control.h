/* The supervisor's control protocol: JSON lines over a Unix stream socket
 * (RUN_DIR/supervisor.sock). A request is one object per line, {"cmd": "status" | "reload" |
 * "restart" | "stop", "name": COMPONENT (optional)}; each gets one reply line, {"ok": true, ...}
 * or {"ok": false, "error": "..."}. Any program may be a client through control_call(). */
#ifndef HEARTH_CONTROL_H
#define HEARTH_CONTROL_H

#include <jansson.h>
#include <stddef.h>

#define CONTROL_SOCKET_NAME "supervisor.sock"
#define CONTROL_LINE_MAX 65536

/* "RUN_DIR/supervisor.sock" into out; -1 when it does not fit. */
int control_socket_path(const char *run_dir, char *out, size_t outlen);

/* One compact JSON line with its '\n' (malloc'd; NULL on failure). */
char *control_encode(const json_t *msg, size_t *len);
/* Parse one line (without its '\n') into an object; NULL with a message in err otherwise. */
json_t *control_decode(const char *line, size_t len, char *err, size_t errlen);
/* Build {"ok": false, "error": message}. */
json_t *control_error(const char *message);

/* Client side, blocking: connect to path; -1 with a message in err. */
int control_connect(const char *path, char *err, size_t errlen);
/* Send request on fd and wait up to timeout_ms for the reply line. */
json_t *control_call(int fd, const json_t *request, int timeout_ms, char *err, size_t errlen);
/* Wait up to timeout_ms for the peer to close fd (e.g. the supervisor exiting after "stop").
 * 0 when it closed, -1 on timeout or error. */
int control_wait_closed(int fd, int timeout_ms);

#endif
