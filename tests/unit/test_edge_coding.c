/* Unit tests of the edge's content codings (edge/coding.c): Accept-Encoding with q-values, the
 * server's order on ties, media types and the comma lists of Vary and Cache-Control. */
#include "edge/coding.h"
#include "tests/unit/check.h"

static edge_coding choose(const char *ae)
{
    return edge_coding_choose(ae, strlen(ae));
}

static int q(const char *ae, const char *coding)
{
    return edge_accept_q(ae, strlen(ae), coding);
}

static void test_q_values(void)
{
    CHECK(q("gzip", "gzip") == 1000);
    CHECK(q("gzip;q=0.5", "gzip") == 500);
    CHECK(q("gzip ; q=0.125 , br", "gzip") == 125);
    CHECK(q("GZIP;Q=1.0", "gzip") == 1000);
    CHECK(q("x-gzip", "gzip") == 1000);
    CHECK(q("br", "gzip") == -1);
    CHECK(q("*;q=0.3", "gzip") == 300);
    CHECK(q("*;q=0.3, gzip;q=0.1", "gzip") == 100); /* the coding's own entry wins over "*" */
    CHECK(q("gzip;q=0", "gzip") == 0);
    CHECK(q("gzip;q=0.000", "gzip") == 0);
    /* malformed q-values make the entry absent rather than guessed */
    CHECK(q("gzip;q=2", "gzip") == -1);
    CHECK(q("gzip;q=0.5x", "gzip") == -1);
    CHECK(q("gzip;q=0.1234", "gzip") == -1);
    CHECK(q("gzip;q=", "gzip") == -1);
    CHECK(q("", "gzip") == -1);
    CHECK(q(" , ,", "gzip") == -1);
}

static void test_choose(void)
{
    /* equal q: the server's order, zstd > br > gzip */
    CHECK(choose("gzip, deflate, br, zstd") == EDGE_CODING_ZSTD);
    CHECK(choose("gzip, deflate, br") == EDGE_CODING_BR);
    CHECK(choose("gzip") == EDGE_CODING_GZIP);
    CHECK(choose("*") == EDGE_CODING_ZSTD);
    /* a higher q wins over the server's order */
    CHECK(choose("zstd;q=0.5, gzip") == EDGE_CODING_GZIP);
    CHECK(choose("gzip;q=0.5, br;q=0.9") == EDGE_CODING_BR);
    CHECK(choose("*;q=0.1, gzip;q=0.2") == EDGE_CODING_GZIP);
    /* q=0 excludes */
    CHECK(choose("br;q=0, gzip") == EDGE_CODING_GZIP);
    CHECK(choose("gzip;q=0, br;q=0, zstd;q=0") == EDGE_CODING_NONE);
    CHECK(choose("*;q=0") == EDGE_CODING_NONE);
    CHECK(choose("*;q=0, gzip") == EDGE_CODING_GZIP);
    /* identity: preferred only when it says so with a higher q */
    CHECK(choose("identity;q=0") == EDGE_CODING_NONE);
    CHECK(choose("identity;q=0, gzip") == EDGE_CODING_GZIP);
    CHECK(choose("identity, gzip;q=0.5") == EDGE_CODING_NONE);
    CHECK(choose("identity;q=0.5, gzip;q=0.5") == EDGE_CODING_GZIP);
    CHECK(choose("gzip;q=0.8") == EDGE_CODING_GZIP);
    CHECK(choose("deflate, compress") == EDGE_CODING_NONE);
    CHECK(choose("") == EDGE_CODING_NONE);
    CHECK_STR(edge_coding_name(EDGE_CODING_BR), "br");
}

static void test_media_types(void)
{
    strlist types = {0};
    strlist_add(&types, "text/*");
    strlist_add(&types, "application/json");
    strlist_add(&types, "+xml");
    const char *yes[] = {
        "text/html; charset=utf-8",         "TEXT/PLAIN",    "application/json",
        " application/json ;charset=utf-8", "image/svg+xml", "application/atom+xml"};
    const char *no[] = {
        "image/png", "application/jsonp", "textual/plain", "application/xml-dtd", "+xml", "text/",
        ""};
    for (size_t i = 0; i < sizeof(yes) / sizeof(yes[0]); i++)
        CHECK_MSG(edge_media_listed(yes[i], strlen(yes[i]), &types), "%s", yes[i]);
    for (size_t i = 0; i < sizeof(no) / sizeof(no[0]); i++)
        CHECK_MSG(!edge_media_listed(no[i], strlen(no[i]), &types), "%s", no[i]);
    strlist_clear(&types);
}

static void test_lists(void)
{
    const char *cc = "public, max-age=60,No-Transform";
    CHECK(edge_list_has(cc, strlen(cc), "no-transform"));
    CHECK(edge_list_has(cc, strlen(cc), "max-age"));
    CHECK(!edge_list_has(cc, strlen(cc), "no-cache"));
    const char *vary = "Cookie,  accept-encoding";
    CHECK(edge_list_has(vary, strlen(vary), "Accept-Encoding"));
    CHECK(!edge_list_has("Accept", 6, "Accept-Encoding"));
    CHECK(!edge_list_has("", 0, "x"));
}

int main(void)
{
    test_q_values();
    test_choose();
    test_media_types();
    test_lists();
    return check_summary("edge_coding");
}
