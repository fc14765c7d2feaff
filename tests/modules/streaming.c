/* Test module for ABI 1.1: request bodies read as they arrive (HEARTH_MODULE_STREAMS_BODY),
 * responses sent while produced, sendfile, declared lengths, aborts and reason phrases. */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <hearth/app.h>

/* Reads the body in small pieces: its length and the sum of its bytes. */
static int upload(hearth_req *req, hearth_res *res)
{
    char piece[1000];
    long n;
    uint64_t total = 0, sum = 0;
    while ((n = hearth_req_read(req, piece, sizeof piece)) > 0) {
        total += (uint64_t)n;
        for (long i = 0; i < n; i++)
            sum += (unsigned char)piece[i];
    }
    if (n < 0)
        return HEARTH_OK; /* the server answers 400/408/413 itself */
    return hearth_res_printf(res, "n=%llu sum=%llu\n", (unsigned long long)total,
                             (unsigned long long)sum);
}

/* Reads ten bytes of the body and answers: the server drops the rest. */
static int partial(hearth_req *req, hearth_res *res)
{
    char piece[10];
    long n = hearth_req_read(req, piece, sizeof piece);
    return hearth_res_printf(res, "read %ld\n", n);
}

static int lines(hearth_req *req, hearth_res *res)
{
    const char *count = hearth_req_query(req, "n");
    int n = count ? atoi(count) : 3;
    if (hearth_res_start(res, -1) != 0)
        return HEARTH_OK;
    for (int i = 0; i < n; i++) {
        char line[32];
        int len = snprintf(line, sizeof line, "line %d\n", i);
        if (hearth_res_send(res, line, (size_t)len) != 0)
            return HEARTH_OK;
    }
    return HEARTH_OK;
}

/* Declares 10 bytes, offers 20: only 10 may go out. */
static int sized(hearth_req *req, hearth_res *res)
{
    (void)req;
    hearth_res_start(res, 10);
    hearth_res_send(res, "0123456789abcdefghij", 20);
    return HEARTH_OK;
}

/* Declares 100 bytes, sends 5: the connection must be aborted. */
static int short_body(hearth_req *req, hearth_res *res)
{
    (void)req;
    hearth_res_start(res, 100);
    hearth_res_send(res, "short", 5);
    return HEARTH_OK;
}

static int aborted(hearth_req *req, hearth_res *res)
{
    (void)req;
    hearth_res_start(res, -1);
    hearth_res_send(res, "partial", 7);
    hearth_res_abort(res, "the test module gives up");
    return HEARTH_OK;
}

static int file(hearth_req *req, hearth_res *res)
{
    const char *path = hearth_req_query(req, "path");
    int fd = path ? open(path, O_RDONLY) : -1;
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0) {
        hearth_res_status(res, 404);
        if (fd >= 0)
            close(fd);
        return HEARTH_OK;
    }
    hearth_res_header(res, "Content-Type", "application/octet-stream");
    if (hearth_res_start(res, st.st_size) == 0)
        hearth_res_sendfile(res, fd, 0, (size_t)st.st_size);
    close(fd);
    return HEARTH_OK;
}

static int reason(hearth_req *req, hearth_res *res)
{
    (void)req;
    hearth_res_status(res, 299);
    hearth_res_reason(res, "Fine Thanks");
    return hearth_res_puts(res, "ok\n");
}

static const hearth_route routes[] = {
    {"POST", "/upload", upload}, {"POST", "/partial", partial}, {"GET", "/lines", lines},
    {"GET", "/sized", sized},    {"GET", "/short", short_body}, {"GET", "/abort", aborted},
    {"GET", "/file", file},      {"GET", "/reason", reason},    {NULL, NULL, NULL},
};

HEARTH_MODULE = {
    HEARTH_MODULE_HEAD,
    .name = "streaming",
    .routes = routes,
    .flags = HEARTH_MODULE_STREAMS_BODY,
};
