/* Unit tests for the small pieces of the shared core: buffers, logging, sd_notify, pidfiles,
 * privilege lookup, signals on a libuv loop and string lists. */
#include "shared/buf.h"
#include "shared/http_status.h"
#include "shared/log.h"
#include "shared/percent.h"
#include "shared/pidfile.h"
#include "shared/privs.h"
#include "shared/sdnotify.h"
#include "shared/signals.h"
#include "shared/strlist.h"
#include "tests/unit/check.h"

#include <fcntl.h>
#include <jansson.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

static char tmpdir[] = "/tmp/hearth-test-XXXXXX";

static void test_buf(void)
{
    buf b;
    buf_init(&b, 64);
    CHECK(buf_append_str(&b, "hello ") == 0);
    CHECK(buf_printf(&b, "%s %d", "world", 42) == 0);
    CHECK(buf_used(&b) == 14);
    CHECK(memcmp(buf_head(&b), "hello world 42", 14) == 0);
    buf_consume(&b, 6);
    CHECK(buf_used(&b) == 8 && memcmp(buf_head(&b), "world 42", 8) == 0);
    /* The cap holds: 8 used + 57 would pass 64. */
    char big[64] = {0};
    CHECK(buf_append(&b, big, 57) == -1);
    CHECK(buf_append(&b, big, 56) == 0);
    CHECK(buf_used(&b) == 64);
    buf_consume(&b, 1000);
    CHECK(buf_used(&b) == 0);
    buf_free(&b);

    buf u;
    buf_init(&u, 0);
    int appended = 0;
    for (int i = 0; i < 10000; i++)
        appended += buf_append(&u, "x", 1) == 0;
    CHECK(appended == 10000);
    CHECK(buf_used(&u) == 10000);
    buf_free(&u);
}

static char *read_file(const char *path)
{
    static char text[8192];
    int fd = open(path, O_RDONLY);
    ssize_t n = fd >= 0 ? read(fd, text, sizeof(text) - 1) : -1;
    if (fd >= 0)
        close(fd);
    text[n > 0 ? n : 0] = '\0';
    return text;
}

static void test_log(void)
{
    CHECK(log_level_parse("debug") == HLOG_DEBUG);
    CHECK(log_level_parse("WARNING") == HLOG_WARN);
    CHECK(log_level_parse("error") == HLOG_ERROR);
    CHECK(log_level_parse("loud") == -1);

    char path[256];
    snprintf(path, sizeof(path), "%s/log.txt", tmpdir);
    CHECK(log_set_file(path) == 0);
    log_init("unit", HLOG_INFO, false);
    log_debug("hidden %d", 1);
    log_info("shown %d", 2);
    const char *text = read_file(path);
    CHECK(strstr(text, "hidden") == NULL);
    CHECK(strstr(text, "unit[") != NULL && strstr(text, "info: shown 2\n") != NULL);

    /* logrotate: rename, USR1 -> reopen, new lines go to a new file at the old path. */
    char rotated[300];
    snprintf(rotated, sizeof(rotated), "%s.1", path);
    CHECK(rename(path, rotated) == 0);
    CHECK(log_reopen() == 0);
    log_init("unit", HLOG_INFO, true);
    log_error("quote \" and newline \n inside");
    text = read_file(path);
    json_error_t jerr;
    json_t *obj = json_loads(text, 0, &jerr);
    CHECK_MSG(obj != NULL, "not JSON: %s", text);
    if (obj) {
        CHECK_STR(json_string_value(json_object_get(obj, "level")), "error");
        CHECK_STR(json_string_value(json_object_get(obj, "component")), "unit");
        CHECK_STR(json_string_value(json_object_get(obj, "msg")), "quote \" and newline \n inside");
        json_decref(obj);
    }
    CHECK(log_set_file("/nonexistent-dir/x.log") == -1);
    log_set_file(NULL);
}

/* An upstream that fails on every request: one line, then one line per interval with a count. */
static void test_log_repeated(void)
{
    char path[256];
    snprintf(path, sizeof(path), "%s/repeat.txt", tmpdir);
    CHECK(log_set_file(path) == 0);
    log_init("unit", HLOG_INFO, false);
    log_repeat r = {0};
    uint64_t t = 5000;
    for (int i = 0; i < 1000; i++, t += 5)
        log_repeated(&r, t, HLOG_WARN, "upstream %s failed", "u1");
    const char *text = read_file(path);
    CHECK(strstr(text, "warn: upstream u1 failed\n") != NULL);
    CHECK(strstr(strstr(text, "failed\n") + 1, "failed") == NULL); /* once so far */
    log_repeated(&r, 5000 + LOG_REPEAT_INTERVAL_MS, HLOG_WARN, "upstream %s failed", "u1");
    text = read_file(path);
    CHECK_MSG(strstr(text, "warn: upstream u1 failed (and 999 similar in the last 10 s)\n"), "%s",
              text);
    /* repeats held back are counted from the line just written */
    log_repeated(&r, 5001 + LOG_REPEAT_INTERVAL_MS, HLOG_WARN, "upstream %s failed", "u1");
    CHECK(r.held == 1);
    /* below the threshold nothing is written or counted */
    log_repeat quiet = {0};
    log_repeated(&quiet, t, HLOG_DEBUG, "hidden");
    CHECK(!quiet.logged && quiet.held == 0);
    log_set_file(NULL);
}

static void test_sdnotify(void)
{
    unsetenv("NOTIFY_SOCKET");
    CHECK(sd_notify_send("READY=1") == 1);

    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    char *path = addr.sun_path;
    snprintf(path, sizeof(addr.sun_path), "%s/notify.sock", tmpdir);
    int fd = socket(AF_UNIX, SOCK_DGRAM, 0);
    CHECK(bind(fd, (struct sockaddr *)&addr, sizeof(addr)) == 0);
    setenv("NOTIFY_SOCKET", path, 1);
    CHECK(sd_notify_send("READY=1") == 0);
    char msg[128] = {0};
    CHECK(recv(fd, msg, sizeof(msg) - 1, 0) == 7);
    CHECK_STR(msg, "READY=1");
    CHECK(sd_notify_reloading() == 0);
    memset(msg, 0, sizeof(msg));
    CHECK(recv(fd, msg, sizeof(msg) - 1, 0) > 0);
    CHECK(strncmp(msg, "RELOADING=1\nMONOTONIC_USEC=", 27) == 0);
    close(fd);

    setenv("NOTIFY_SOCKET", "relative/path", 1);
    CHECK(sd_notify_send("READY=1") == -1);
    unsetenv("NOTIFY_SOCKET");
}

static void test_pidfile(void)
{
    char path[256], err[256];
    snprintf(path, sizeof(path), "%s/x.pid", tmpdir);
    CHECK(pidfile_write(path, err, sizeof(err)) == 0);
    CHECK(pidfile_read(path) == getpid());

    /* A second process is refused and told who holds it. */
    pid_t child = fork();
    if (child == 0) {
        char cerr[256];
        int rc = pidfile_write(path, cerr, sizeof(cerr));
        _exit(rc == -1 && strstr(cerr, "already running") ? 0 : 1);
    }
    int status;
    waitpid(child, &status, 0);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);

    pidfile_remove(path);
    CHECK(pidfile_read(path) == -1);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    CHECK(write(fd, "12abc\n", 6) == 6);
    close(fd);
    CHECK(pidfile_read(path) == -1);
    unlink(path);
}

static void test_privs(void)
{
    uid_t uid;
    gid_t gid;
    char err[256];
    CHECK(privs_lookup("root", NULL, &uid, &gid, err, sizeof(err)) == 0);
    CHECK(uid == 0 && gid == 0);
    CHECK(privs_lookup("65534", "65534", &uid, &gid, err, sizeof(err)) == 0);
    CHECK(uid == 65534 && gid == 65534);
    CHECK(privs_lookup("no-such-user-hearth", NULL, &uid, &gid, err, sizeof(err)) == -1);
    CHECK_STR(err, "unknown user 'no-such-user-hearth'");
    CHECK(privs_lookup("root", "no-such-group-hearth", &uid, &gid, err, sizeof(err)) == -1);
    CHECK_STR(err, "unknown group 'no-such-group-hearth'");

    if (geteuid() == 0) {
        /* Drop in a child and check root cannot be regained. */
        pid_t child = fork();
        if (child == 0) {
            char cerr[256];
            if (privs_drop(65534, 65534, cerr, sizeof(cerr)) < 0)
                _exit(2);
            _exit(getuid() == 65534 && geteuid() == 65534 && getgid() == 65534 && setuid(0) < 0
                      ? 0
                      : 1);
        }
        int status;
        waitpid(child, &status, 0);
        CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    }
}

static int signals_seen;

static void on_test_signal(int signum, void *data)
{
    signals_seen |= signum == SIGUSR1 ? 1 : signum == SIGHUP ? 2 : 4;
    if (signals_seen == 3)
        signals_close(data);
}

static void test_signals(void)
{
    uv_loop_t loop;
    uv_loop_init(&loop);
    signals_set set;
    const int watched[] = {SIGUSR1, SIGHUP, 0};
    CHECK(signals_watch(&set, &loop, watched, on_test_signal, &set) == 0);
    raise(SIGUSR1);
    raise(SIGHUP);
    uv_run(&loop, UV_RUN_DEFAULT);
    CHECK(signals_seen == 3);
    CHECK(uv_loop_close(&loop) == 0);
    CHECK_STR(signals_name(SIGTERM), "SIGTERM");
}

static void test_percent(void)
{
    CHECK(percent_hex_digit('0') == 0 && percent_hex_digit('f') == 15);
    CHECK(percent_hex_digit('F') == 15 && percent_hex_digit('g') == -1);
    CHECK(percent_escape("%2F", 3) == '/' && percent_escape("%2fx", 4) == '/');
    CHECK(percent_escape("%00", 3) == 0 && percent_escape("%ff", 3) == 255);
    CHECK(percent_escape("%2", 2) == -1 && percent_escape("%2F", 2) == -1);
    CHECK(percent_escape("%G0", 3) == -1 && percent_escape("x2F", 3) == -1);
}

static void test_http_status(void)
{
    CHECK_STR(http_status_reason(404), "Not Found");
    CHECK_STR(http_status_reason(502), "Bad Gateway");
    CHECK_STR(http_status_reason(599), "Unknown");
    const char *date = http_date_now();
    /* IMF-fixdate: "Sun, 06 Nov 1994 08:49:37 GMT" */
    CHECK(strlen(date) == 29 && date[3] == ',' && strcmp(date + 25, " GMT") == 0);
}

static void test_strlist(void)
{
    strlist a = {0}, b = {0};
    char word[] = "one";
    CHECK(strlist_add(&a, word) == 0 && strlist_add(&a, "two") == 0 && a.count == 2);
    word[0] = 'x'; /* the list holds copies */
    CHECK_STR(a.items[0], "one");
    CHECK(strlist_copy(&b, &a) == 0 && strlist_equal(&a, &b) && b.items[1] != a.items[1]);
    CHECK(strlist_add(&b, "three") == 0 && !strlist_equal(&a, &b));
    strlist_clear(&a);
    strlist_clear(&a);
    CHECK(a.count == 0 && a.items == NULL);
    strlist_clear(&b);
}

int main(void)
{
    if (mkdtemp(tmpdir) == NULL)
        return 2;
    test_buf();
    test_percent();
    test_log();
    test_log_repeated();
    test_sdnotify();
    test_pidfile();
    test_privs();
    test_signals();
    test_http_status();
    test_strlist();
    char cmd[300];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", tmpdir);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", tmpdir);
    return check_summary("shared");
}
