/* Unit tests for shared/metrics: families and series in a region file, counting from forked
 * processes in their own shards, and the text the renderer makes of it (checked line by line,
 * and against malformed files). */
#include "shared/config.h"
#include "shared/metrics.h"
#include "tests/unit/check.h"

#include <fcntl.h>
#include <stdbool.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static char tmpdir[] = "/tmp/hearth-metrics-XXXXXX";

static char *render(const char *path)
{
    buf out;
    buf_init(&out, 0);
    int rc = metrics_render_file(path, &out);
    buf_append(&out, "", 1);
    char *text = strdup(rc == 0 ? buf_head(&out) : "(refused)");
    buf_free(&out);
    return text;
}

static bool has_line(const char *text, const char *line)
{
    size_t n = strlen(line);
    for (const char *p = text; (p = strstr(p, line)) != NULL; p++)
        if ((p == text || p[-1] == '\n') && p[n] == '\n')
            return true;
    return false;
}

#define CHECK_LINE(text, line) CHECK_MSG(has_line(text, line), "no line '%s' in:\n%s", line, text)

static void test_counters_and_gauges(const char *path)
{
    char err[256];
    metrics_region *r = metrics_create(path, 3, err, sizeof(err));
    CHECK_MSG(r != NULL, "%s", err);
    if (!r)
        return;
    int req = metrics_family(r, "hearth_test_requests_total", METRIC_COUNTER, "Requests served.",
                             "site,code", NULL, 0, 1);
    int open = metrics_family(r, "hearth_test_open_connections", METRIC_GAUGE, "Connections open.",
                              "", NULL, 0, 1);
    CHECK(req == 0 && open == 1);
    CHECK(metrics_family(r, "bad name", METRIC_COUNTER, "x", "", NULL, 0, 1) == -1);
    CHECK(metrics_family(r, "hearth_x", METRIC_COUNTER, "two\nlines", "", NULL, 0, 1) == -1);
    metric_ref a = metrics_series(r, req, (const char *[]){"a.example", "2xx"});
    metric_ref b = metrics_series(r, req, (const char *[]){"we\"ird\\\n", "4xx"});
    metric_ref again = metrics_series(r, req, (const char *[]){"a.example", "2xx"});
    metric_ref conns = metrics_series(r, open, (const char *[]){NULL});
    CHECK(a.cell >= 0 && b.cell >= 0 && a.cell != b.cell && again.cell == a.cell);
    metrics_add(r, a, 2);
    metrics_add(r, b, 1);
    metrics_add(r, conns, 5);
    /* Two live children count in shards of their own; the renderer adds the shards up. */
    int done[2], gate[2];
    if (pipe(done) < 0 || pipe(gate) < 0)
        return;
    pid_t kids[2];
    for (int k = 0; k < 2; k++) {
        kids[k] = fork();
        if (kids[k] == 0) {
            char c;
            close(gate[1]);
            metrics_claim_shard(r);
            metrics_add(r, a, 10);
            metrics_add(r, conns, 1);
            if (write(done[1], "x", 1) != 1 || read(gate[0], &c, 1) < 0)
                _exit(1);
            _exit(0);
        }
    }
    char c;
    for (int k = 0; k < 2; k++)
        CHECK(read(done[0], &c, 1) == 1);
    char *text = render(path);
    CHECK_LINE(text, "# HELP hearth_test_requests_total Requests served.");
    CHECK_LINE(text, "# TYPE hearth_test_requests_total counter");
    CHECK_LINE(text, "hearth_test_requests_total{site=\"a.example\",code=\"2xx\"} 22");
    CHECK_LINE(text, "hearth_test_requests_total{site=\"we\\\"ird\\\\\\n\",code=\"4xx\"} 1");
    CHECK_LINE(text, "# TYPE hearth_test_open_connections gauge");
    CHECK_LINE(text, "hearth_test_open_connections 7");
    free(text);
    close(gate[1]);
    for (int k = 0; k < 2; k++)
        waitpid(kids[k], NULL, 0);
    /* A process taking over a dead one's shard keeps its counts but zeroes its gauges. */
    pid_t pid = fork();
    if (pid == 0) {
        metrics_claim_shard(r);
        metrics_sub(r, conns, 5);
        _exit(0);
    }
    waitpid(pid, NULL, 0);
    text = render(path);
    CHECK_LINE(text, "hearth_test_requests_total{site=\"a.example\",code=\"2xx\"} 22");
    CHECK_LINE(text, "hearth_test_open_connections 1"); /* 5, 0 - 5 and 1 */
    free(text);
    metrics_close(r);
}

static void test_histogram(const char *path)
{
    char err[256];
    metrics_region *r = metrics_create(path, 1, err, sizeof(err));
    CHECK_MSG(r != NULL, "%s", err);
    if (!r)
        return;
    static const uint64_t ms[] = {5, 100, 2500};
    int fam = metrics_family(r, "hearth_test_duration_seconds", METRIC_HISTOGRAM, "Time taken.",
                             "site", ms, 3, 1000);
    metric_ref h = metrics_series(r, fam, (const char *[]){"x"});
    metrics_observe(r, h, 0);
    metrics_observe(r, h, 5);
    metrics_observe(r, h, 6);
    metrics_observe(r, h, 99999);
    char *text = render(path);
    CHECK_LINE(text, "# TYPE hearth_test_duration_seconds histogram");
    CHECK_LINE(text, "hearth_test_duration_seconds_bucket{site=\"x\",le=\"0.005\"} 2");
    CHECK_LINE(text, "hearth_test_duration_seconds_bucket{site=\"x\",le=\"0.1\"} 3");
    CHECK_LINE(text, "hearth_test_duration_seconds_bucket{site=\"x\",le=\"2.5\"} 3");
    CHECK_LINE(text, "hearth_test_duration_seconds_bucket{site=\"x\",le=\"+Inf\"} 4");
    CHECK_LINE(text, "hearth_test_duration_seconds_sum{site=\"x\"} 100.01");
    CHECK_LINE(text, "hearth_test_duration_seconds_count{site=\"x\"} 4");
    free(text);
    metrics_close(r);
}

/* The series table is bounded: past it, METRIC_NONE, and counting on that is a no-op. */
static void test_bounded(const char *path)
{
    char err[256];
    metrics_region *r = metrics_create(path, 1, err, sizeof(err));
    if (!r)
        return;
    int fam = metrics_family(r, "hearth_test_total", METRIC_COUNTER, "n", "k", NULL, 0, 1);
    metric_ref last = METRIC_NONE;
    int made = 0;
    for (int i = 0; i < METRICS_MAX_SERIES + 10; i++) {
        char v[16];
        snprintf(v, sizeof(v), "%d", i);
        last = metrics_series(r, fam, (const char *[]){v});
        made += last.cell >= 0;
    }
    CHECK(made == METRICS_MAX_SERIES && last.cell < 0);
    metrics_add(r, last, 1);
    metrics_add(NULL, last, 1);
    metrics_close(r);
}

/* Whatever a file holds, the renderer neither crashes nor reads past it. */
static void test_malformed(const char *path)
{
    char *text = render("/nonexistent/x.shm");
    CHECK_STR(text, "(refused)");
    free(text);
    int fd = open(path, O_RDONLY);
    struct stat st;
    fstat(fd, &st);
    char *data = malloc((size_t)st.st_size);
    CHECK(read(fd, data, (size_t)st.st_size) == st.st_size);
    close(fd);
    buf out;
    buf_init(&out, 0);
    CHECK(metrics_render(data, 100, &out) == -1);
    srand(7);
    for (int round = 0; round < 200; round++) {
        char *copy = malloc((size_t)st.st_size);
        memcpy(copy, data, (size_t)st.st_size);
        for (int k = 0; k < 64; k++)
            copy[16 + rand() % (st.st_size - 16)] = (char)rand();
        buf_reset(&out);
        metrics_render(copy, (size_t)st.st_size, &out);
        free(copy);
    }
    free(data);
    buf_free(&out);
    CHECK(1);
}

/* The `metrics` key: off by default, an address with its host, never every interface. */
static void test_config_key(void)
{
    hearth_config cfg;
    char err[512];
    config_defaults(&cfg);
    CHECK(cfg.metrics == NULL);
    config_free(&cfg);
    static const char *const good[] = {"127.0.0.1:9145", "[::1]:9145", "localhost:9145",
                                       "10.0.0.5:9145"};
    static const char *const bad[] = {":9145", "9145", "*:9145", "127.0.0.1", "127.0.0.1:0"};
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        char yaml[128];
        int n = snprintf(yaml, sizeof(yaml), "metrics: \"%s\"\n", good[i]);
        int rc = config_load_string(&cfg, yaml, (size_t)n, "t.yaml", err, sizeof(err));
        CHECK_MSG(rc == 0 && strcmp(cfg.metrics, good[i]) == 0, "%s: %s", good[i], err);
        if (rc == 0)
            config_free(&cfg);
    }
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char yaml[128];
        int n = snprintf(yaml, sizeof(yaml), "metrics: \"%s\"\n", bad[i]);
        int rc = config_load_string(&cfg, yaml, (size_t)n, "t.yaml", err, sizeof(err));
        CHECK_MSG(rc == -1 && strstr(err, "'metrics'"), "%s was taken", bad[i]);
        if (rc == 0)
            config_free(&cfg);
    }
    CHECK(config_load_string(&cfg, "metrics: \":9145\"\n", 17, "t.yaml", err, sizeof(err)) == -1);
    CHECK_MSG(strstr(err, "every interface") != NULL, "%s", err);
}

int main(void)
{
    test_config_key();
    if (mkdtemp(tmpdir) == NULL)
        return 2;
    char path[300];
    snprintf(path, sizeof(path), "%s/a.shm", tmpdir);
    test_counters_and_gauges(path);
    snprintf(path, sizeof(path), "%s/b.shm", tmpdir);
    test_histogram(path);
    snprintf(path, sizeof(path), "%s/c.shm", tmpdir);
    test_bounded(path);
    snprintf(path, sizeof(path), "%s/b.shm", tmpdir);
    test_malformed(path);
    char cmd[300];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", tmpdir);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", tmpdir);
    return check_summary("metrics");
}
