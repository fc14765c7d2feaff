/* Unit tests for listen addresses (shared/listen_addr.c): every form parsed, every refusal with
 * its exact message, names resolved, sockets bound (dual-stack, unix files stale or live), and
 * sockets taken in through LISTEN_FDS (shared/sdnotify.c). */
#include "shared/listen_addr.h"
#include "shared/sdnotify.h"
#include "tests/unit/check.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

static char tmpdir[] = "/tmp/hearth-addr-XXXXXX";

static void test_parse_valid(void)
{
    listen_addr a;
    CHECK(listen_addr_parse(":443", &a, NULL, 0) == 0 && a.kind == LISTEN_ADDR_ANY &&
          a.port == 443);
    CHECK(listen_addr_parse("*:80", &a, NULL, 0) == 0 && a.kind == LISTEN_ADDR_ANY && a.port == 80);
    CHECK(listen_addr_parse("8080", &a, NULL, 0) == 0 && a.kind == LISTEN_ADDR_ANY &&
          a.port == 8080);
    CHECK(listen_addr_parse("127.0.0.1:65535", &a, NULL, 0) == 0 && a.kind == LISTEN_ADDR_HOST &&
          a.port == 65535);
    CHECK_STR(a.host, "127.0.0.1");
    CHECK(listen_addr_parse("[::1]:1", &a, NULL, 0) == 0 && a.kind == LISTEN_ADDR_HOST &&
          a.port == 1);
    CHECK_STR(a.host, "::1");
    CHECK(listen_addr_parse("localhost:8080", &a, NULL, 0) == 0 && a.kind == LISTEN_ADDR_HOST);
    CHECK_STR(a.host, "localhost");
    CHECK(listen_addr_parse("unix:/run/hearth/app.sock", &a, NULL, 0) == 0 &&
          a.kind == LISTEN_ADDR_UNIX);
    CHECK_STR(a.path, "/run/hearth/app.sock");
}

static void test_parse_refused(void)
{
    static const struct {
        const char *spec, *message;
    } cases[] = {
        {"", "address '': empty"},
        {":0", "address ':0': the port must be a number from 1 to 65535"},
        {":65536", "address ':65536': the port must be a number from 1 to 65535"},
        {":443x", "address ':443x': the port must be a number from 1 to 65535"},
        {":+80", "address ':+80': the port must be a number from 1 to 65535"},
        {":", "address ':': the port must be a number from 1 to 65535"},
        {"1.2.3.4:", "address '1.2.3.4:': the port must be a number from 1 to 65535"},
        {"localhost", "address 'localhost': expected unix:PATH, HOST:PORT, [IPV6]:PORT or :PORT"},
        {"::1:443", "address '::1:443': an IPv6 address needs brackets, as in [::1]:443"},
        {"[]:443", "address '[]:443': empty host between [ and ]"},
        {"[::1]443", "address '[::1]443': expected [IPV6]:PORT"},
        {"[::1", "address '[::1': expected [IPV6]:PORT"},
        {"[1.2.3.4]:80", "address '[1.2.3.4]:80': not an IPv6 address between [ and ]"},
        {"exa mple:80", "address 'exa mple:80': the host is neither an IP address nor a host name"},
        {"a/b:80", "address 'a/b:80': the host is neither an IP address nor a host name"},
        {"unix:", "address 'unix:': a unix socket needs a path after 'unix:'"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        listen_addr a;
        char err[256] = "";
        CHECK_MSG(listen_addr_parse(cases[i].spec, &a, err, sizeof(err)) == -1, "%s",
                  cases[i].spec);
        CHECK_STR(err, cases[i].message);
    }
    char spec[200] = "unix:/";
    memset(spec + 6, 'x', 150);
    listen_addr a;
    char err[400];
    CHECK(listen_addr_parse(spec, &a, err, sizeof(err)) == -1);
    CHECK_MSG(strstr(err, "the socket path is 151 bytes, a unix socket holds at most 107") != NULL,
              "%s", err);
    char host[300] = "";
    memset(host, 'a', 260);
    strcat(host, ":80");
    CHECK(listen_addr_parse(host, &a, err, sizeof(err)) == -1);
    CHECK_MSG(strstr(err, "host name longer than 253 bytes") != NULL, "%s", err);
}

static void test_resolve(void)
{
    listen_sockaddr out[LISTEN_ADDR_MAX_SOCKETS];
    char err[512], text[128];
    CHECK(listen_addr_resolve(":8080", out, LISTEN_ADDR_MAX_SOCKETS, err, sizeof(err)) == 1);
    CHECK(out[0].dual_stack && out[0].ss.ss_family == AF_INET6);
    listen_sockaddr_format(&out[0], text, sizeof(text));
    CHECK_STR(text, ":8080");
    CHECK(listen_addr_resolve("127.0.0.1:80", out, LISTEN_ADDR_MAX_SOCKETS, err, sizeof(err)) == 1);
    CHECK(!out[0].dual_stack && out[0].ss.ss_family == AF_INET);
    listen_sockaddr_format(&out[0], text, sizeof(text));
    CHECK_STR(text, "127.0.0.1:80");
    CHECK(listen_addr_resolve("[::1]:81", out, LISTEN_ADDR_MAX_SOCKETS, err, sizeof(err)) == 1);
    listen_sockaddr_format(&out[0], text, sizeof(text));
    CHECK_STR(text, "[::1]:81");
    CHECK(listen_sockaddr_port(&out[0]) == 81);
    CHECK(listen_addr_resolve("unix:/tmp/x.sock", out, LISTEN_ADDR_MAX_SOCKETS, err, sizeof(err)) ==
          1);
    listen_sockaddr_format(&out[0], text, sizeof(text));
    CHECK_STR(text, "unix:/tmp/x.sock");

    /* a name: every address, each once, all of them loopback */
    int n = listen_addr_resolve("localhost:8080", out, LISTEN_ADDR_MAX_SOCKETS, err, sizeof(err));
    CHECK_MSG(n >= 1, "%s", err);
    for (int i = 0; i < n; i++) {
        listen_sockaddr_format(&out[i], text, sizeof(text));
        CHECK_MSG(strcmp(text, "127.0.0.1:8080") == 0 || strcmp(text, "[::1]:8080") == 0, "%s",
                  text);
        for (int j = 0; j < i; j++)
            CHECK(memcmp(&out[i].ss, &out[j].ss, out[i].len) != 0);
    }
    CHECK(listen_addr_resolve("no-such-host.invalid:80", out, LISTEN_ADDR_MAX_SOCKETS, err,
                              sizeof(err)) == -1);
    const char *unresolved = "address 'no-such-host.invalid:80': cannot resolve "
                             "'no-such-host.invalid': ";
    CHECK_MSG(strncmp(err, unresolved, strlen(unresolved)) == 0, "%s", err);

    /* where a client goes: ":PORT" is the loopback */
    CHECK(listen_addr_connect_target(":8000", out, err, sizeof(err)) == 0);
    listen_sockaddr_format(&out[0], text, sizeof(text));
    CHECK_STR(text, "127.0.0.1:8000");
    CHECK(listen_addr_connect_target("[::1]:8000", out, err, sizeof(err)) == 0);
    listen_sockaddr_format(&out[0], text, sizeof(text));
    CHECK_STR(text, "[::1]:8000");
    CHECK(listen_addr_connect_target(":0", out, err, sizeof(err)) == -1);
}

static bool connects(int family, const char *ip, uint16_t port)
{
    struct sockaddr_storage ss = {.ss_family = (sa_family_t)family};
    socklen_t len;
    if (family == AF_INET) {
        struct sockaddr_in *sin = (struct sockaddr_in *)&ss;
        inet_pton(AF_INET, ip, &sin->sin_addr);
        sin->sin_port = htons(port);
        len = sizeof(*sin);
    } else {
        struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&ss;
        inet_pton(AF_INET6, ip, &sin6->sin6_addr);
        sin6->sin6_port = htons(port);
        len = sizeof(*sin6);
    }
    int fd = socket(family, SOCK_STREAM, 0);
    bool ok = fd >= 0 && connect(fd, (struct sockaddr *)&ss, len) == 0;
    if (fd >= 0)
        close(fd);
    return ok;
}

/* ":PORT" takes IPv4 and IPv6 on one socket (or IPv4 alone on a machine without IPv6). */
static void test_bind_dual_stack(void)
{
    listen_sockaddr sa;
    char err[512], spec[32];
    int fd = -1;
    for (uint16_t port = 20000 + (uint16_t)(getpid() % 20000); fd < 0 && port < 65000; port += 97) {
        snprintf(spec, sizeof(spec), ":%u", port);
        CHECK(listen_addr_resolve(spec, &sa, 1, err, sizeof(err)) == 1);
        fd = listen_sockaddr_bind(spec, &sa, 16, err, sizeof(err));
    }
    CHECK_MSG(fd >= 0, "%s", err);
    if (fd < 0)
        return;
    uint16_t port = listen_sockaddr_port(&sa);
    CHECK(fcntl(fd, F_GETFD) & FD_CLOEXEC);
    CHECK(connects(AF_INET, "127.0.0.1", port));
    int probe = socket(AF_INET6, SOCK_STREAM, 0);
    if (probe >= 0) {
        close(probe);
        CHECK(connects(AF_INET6, "::1", port));
    }
    /* the port is taken now: the same message whichever program binds it */
    int again = listen_sockaddr_bind(spec, &sa, 16, err, sizeof(err));
    CHECK(again == -1);
    char want[128];
    snprintf(want, sizeof(want), "address '%s': cannot listen: Address already in use", spec);
    CHECK_STR(err, want);
    close(fd);
}

static void test_bind_unix(void)
{
    char spec[160], path[128], err[512];
    snprintf(path, sizeof(path), "%s/app.sock", tmpdir);
    snprintf(spec, sizeof(spec), "unix:%s", path);
    listen_sockaddr sa;
    CHECK(listen_addr_resolve(spec, &sa, 1, err, sizeof(err)) == 1);
    int fd = listen_sockaddr_bind(spec, &sa, 16, err, sizeof(err));
    CHECK_MSG(fd >= 0, "%s", err);
    struct stat st;
    CHECK(stat(path, &st) == 0 && S_ISSOCK(st.st_mode) && (st.st_mode & 0777) == 0660);
    /* live: refused, so two servers never fight over one path */
    CHECK(listen_sockaddr_bind(spec, &sa, 16, err, sizeof(err)) == -1);
    char want[320];
    snprintf(want, sizeof(want), "address '%s': another server is accepting on this socket", spec);
    CHECK_STR(err, want);
    /* stale (nobody accepting): replaced */
    close(fd);
    fd = listen_sockaddr_bind(spec, &sa, 16, err, sizeof(err));
    CHECK_MSG(fd >= 0, "%s", err);
    close(fd);
    /* not a socket: not ours to remove */
    unlink(path);
    close(open(path, O_CREAT | O_WRONLY, 0600));
    CHECK(listen_sockaddr_bind(spec, &sa, 16, err, sizeof(err)) == -1);
    snprintf(want, sizeof(want), "address '%s': the file exists and is not a socket", spec);
    CHECK_STR(err, want);
    CHECK(access(path, F_OK) == 0);
    unlink(path);
}

static int listening_unix_socket(const char *name)
{
    char spec[128], err[512];
    snprintf(spec, sizeof(spec), "unix:%s/%s", tmpdir, name);
    listen_sockaddr sa;
    listen_addr_resolve(spec, &sa, 1, err, sizeof(err));
    int fd = listen_sockaddr_bind(spec, &sa, 4, err, sizeof(err));
    int high = fcntl(fd, F_DUPFD_CLOEXEC, 10); /* clear of 3 and 4, where LISTEN_FDS go */
    close(fd);
    return high;
}

static void set_listen_env(const char *fds, long pid, const char *names)
{
    char text[32];
    snprintf(text, sizeof(text), "%ld", pid);
    setenv("LISTEN_FDS", fds, 1);
    setenv("LISTEN_PID", text, 1);
    if (names)
        setenv("LISTEN_FDNAMES", names, 1);
    else
        unsetenv("LISTEN_FDNAMES");
}

static void test_listen_fds_take(void)
{
    sd_listen_fd fds[SD_LISTEN_FDS_MAX];
    char err[256] = "";
    unsetenv("LISTEN_FDS");
    CHECK(sd_listen_fds_take(fds, SD_LISTEN_FDS_MAX, err, sizeof(err)) == 0);

    int a = listening_unix_socket("a.sock"), b = listening_unix_socket("b.sock");
    CHECK(a >= 0 && b >= 0);
    dup2(a, 3);
    dup2(b, 4);
    fcntl(3, F_SETFD, 0);
    set_listen_env("2", (long)getpid() + 1, "http:https");
    CHECK(sd_listen_fds_take(fds, SD_LISTEN_FDS_MAX, err, sizeof(err)) == 0); /* not ours */
    set_listen_env("2", (long)getpid(), "http:https");
    CHECK(sd_listen_fds_take(fds, SD_LISTEN_FDS_MAX, err, sizeof(err)) == 2);
    CHECK(fds[0].fd == 3 && fds[1].fd == 4);
    CHECK_STR(fds[0].name, "http");
    CHECK_STR(fds[1].name, "https");
    CHECK(fcntl(3, F_GETFD) & FD_CLOEXEC);
    CHECK(!getenv("LISTEN_FDS") && !getenv("LISTEN_PID") && !getenv("LISTEN_FDNAMES"));

    set_listen_env("1", (long)getpid(), NULL);
    CHECK(sd_listen_fds_take(fds, SD_LISTEN_FDS_MAX, err, sizeof(err)) == 1);
    CHECK_STR(fds[0].name, "");
    set_listen_env("lots", (long)getpid(), NULL);
    CHECK(sd_listen_fds_take(fds, SD_LISTEN_FDS_MAX, err, sizeof(err)) == -1);
    CHECK_STR(err, "LISTEN_FDS=lots: expected a count from 0 to 64");

    int file = open("/dev/null", O_RDONLY);
    dup2(file, 4);
    set_listen_env("2", (long)getpid(), NULL);
    CHECK(sd_listen_fds_take(fds, SD_LISTEN_FDS_MAX, err, sizeof(err)) == -1);
    CHECK_STR(err, "LISTEN_FDS: fd 4 is not a listening socket");
    close(file);
    close(3);
    close(4);
    close(a);
    close(b);
    unsetenv("LISTEN_FDS");
    unsetenv("LISTEN_PID");
    char path[128];
    snprintf(path, sizeof(path), "%s/a.sock", tmpdir);
    unlink(path);
    snprintf(path, sizeof(path), "%s/b.sock", tmpdir);
    unlink(path);
}

int main(void)
{
    if (!mkdtemp(tmpdir)) {
        perror("mkdtemp");
        return 1;
    }
    test_parse_valid();
    test_parse_refused();
    test_resolve();
    test_bind_dual_stack();
    test_bind_unix();
    test_listen_fds_take();
    rmdir(tmpdir);
    return check_summary("listen_addr");
}
