/* Unit tests for the control protocol's framing (shared/control.c): one compact JSON object
 * per line, errors for anything else, and the blocking client over a socketpair. */
#include "shared/control.h"

#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "tests/unit/check.h"

static void test_encode_is_one_line(void)
{
    json_t *msg = json_pack("{s:s, s:s}", "cmd", "restart", "name", "line\nbreak");
    size_t len = 0;
    char *line = control_encode(msg, &len);
    CHECK(line != NULL);
    CHECK(len == strlen(line));
    CHECK(line[len - 1] == '\n');
    CHECK(memchr(line, '\n', len - 1) == NULL); /* the embedded newline is escaped */
    free(line);
    json_decref(msg);
}

static void test_decode(void)
{
    char err[128];
    json_t *ok = control_decode("{\"cmd\":\"status\"}", 16, err, sizeof(err));
    CHECK(ok != NULL && strcmp(json_string_value(json_object_get(ok, "cmd")), "status") == 0);
    json_decref(ok);
    CHECK(control_decode("not json", 8, err, sizeof(err)) == NULL);
    CHECK(strstr(err, "bad JSON") != NULL);
    CHECK(control_decode("[1,2]", 5, err, sizeof(err)) == NULL);
    CHECK_STR(err, "expected a JSON object");
    CHECK(control_decode("{\"a\":1,\"a\":2}", 13, err, sizeof(err)) == NULL);
}

static void test_socket_path(void)
{
    char out[64];
    CHECK(control_socket_path("/run/hearth", out, sizeof(out)) == 0);
    CHECK_STR(out, "/run/hearth/supervisor.sock");
    CHECK(control_socket_path("/a/very/long/run/dir/that/does/not/fit", out, 20) == -1);
}

static void test_call_over_socketpair(void)
{
    int sv[2];
    CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
    /* The reply is waiting before the call: control_call writes, then reads one line. */
    const char *reply = "{\"ok\":true,\"n\":3}\n";
    CHECK(write(sv[1], reply, strlen(reply)) == (ssize_t)strlen(reply));
    char err[128];
    json_t *req = json_pack("{s:s}", "cmd", "status");
    json_t *got = control_call(sv[0], req, 1000, err, sizeof(err));
    CHECK(got != NULL && json_is_true(json_object_get(got, "ok")));
    json_decref(got);
    char sent[64] = "";
    CHECK(read(sv[1], sent, sizeof(sent) - 1) > 0);
    CHECK_STR(sent, "{\"cmd\":\"status\"}\n");
    /* No reply within the timeout. */
    CHECK(control_call(sv[0], req, 50, err, sizeof(err)) == NULL);
    CHECK(strstr(err, "no reply") != NULL);
    close(sv[1]);
    CHECK(control_wait_closed(sv[0], 1000) == 0);
    json_decref(req);
    close(sv[0]);
}

int main(void)
{
    test_encode_is_one_line();
    test_decode();
    test_socket_path();
    test_call_over_socketpair();
    return check_summary("control");
}
