/* Unit tests for certd's pure decisions: Retry-After (seconds and the three HTTP-date forms),
 * RFC 3339 timestamps, the one-third-of-lifetime rule, ARI window picks and jitter. */
#include "certd/certd.h"
#include "tests/unit/check.h"

static void test_retry_after(void)
{
    int64_t d = -1;
    CHECK(schedule_retry_after("120", 0, &d) == 0 && d == 120);
    CHECK(schedule_retry_after(" 0", 0, &d) == 0 && d == 0);
    CHECK(schedule_retry_after("99999999", 0, &d) == 0 && d == 7 * 86400); /* capped */
    CHECK(schedule_retry_after("999999999999999999999999", 0, &d) == 0 && d == 7 * 86400);
    CHECK(schedule_retry_after("-5", 0, &d) < 0);
    CHECK(schedule_retry_after("1.5", 0, &d) < 0);
    CHECK(schedule_retry_after("12abc", 0, &d) < 0);
    CHECK(schedule_retry_after("", 0, &d) < 0);
    CHECK(schedule_retry_after(NULL, 0, &d) < 0);
    time_t when = 784111777; /* Sun, 06 Nov 1994 08:49:37 GMT */
    CHECK(schedule_retry_after("Sun, 06 Nov 1994 08:49:37 GMT", when - 30, &d) == 0 && d == 30);
    CHECK(schedule_retry_after("Sunday, 06-Nov-94 08:49:37 GMT", when - 7, &d) == 0 && d == 7);
    CHECK(schedule_retry_after("Sun Nov  6 08:49:37 1994", when - 1, &d) == 0 && d == 1);
    CHECK(schedule_retry_after("Sun, 06 Nov 1994 08:49:37 GMT", when + 100, &d) == 0 && d == 0);
    CHECK(schedule_retry_after("Sun, 06 Nov 1994 08:49:37 PST", when, &d) < 0);
    CHECK(schedule_retry_after("Sun, 32 Nov 1994 08:49:37 GMT", when, &d) < 0);
}

static void test_rfc3339(void)
{
    time_t t = 0;
    CHECK(schedule_parse_rfc3339("1994-11-06T08:49:37Z", &t) == 0 && t == 784111777);
    CHECK(schedule_parse_rfc3339("1994-11-06t08:49:37.123456z", &t) == 0 && t == 784111777);
    CHECK(schedule_parse_rfc3339("1994-11-06T09:49:37+01:00", &t) == 0 && t == 784111777);
    CHECK(schedule_parse_rfc3339("1994-11-06T07:49:37-01:00", &t) == 0 && t == 784111777);
    CHECK(schedule_parse_rfc3339("1994-11-06T08:49:37", &t) < 0); /* no offset */
    CHECK(schedule_parse_rfc3339("1994-13-06T08:49:37Z", &t) < 0);
    CHECK(schedule_parse_rfc3339("1994-11-06T08:49:37Zjunk", &t) < 0);
    CHECK(schedule_parse_rfc3339("1994-11-06T08:49:37.Z", &t) < 0);
    CHECK(schedule_parse_rfc3339("", &t) < 0);
    CHECK(schedule_parse_rfc3339(NULL, &t) < 0);
}

static void test_renew_at(void)
{
    const time_t day = 86400, t0 = 1700000000;
    CHECK(schedule_renew_at(t0, t0 + 90 * day, 1.0 / 3) == t0 + 60 * day);
    CHECK(schedule_renew_at(t0, t0 + 6 * day, 1.0 / 3) == t0 + 4 * day);
    CHECK(schedule_renew_at(t0, t0 + 90 * day, 0.5) == t0 + 45 * day);
    CHECK(schedule_renew_at(t0, t0 + 9, 1.0 / 3) == t0 + 6);
    CHECK(schedule_renew_at(t0, t0 + 90 * day, 0) == t0 + 60 * day); /* nonsense: default */
    CHECK(schedule_renew_at(t0, t0 - 1, 1.0 / 3) == t0);             /* nonsense: now */
}

static void test_ari_pick(void)
{
    CHECK(schedule_ari_pick(1000, 2000, 0) == 1000);
    time_t last = schedule_ari_pick(1000, 2000, 0xffffffffu);
    CHECK(last >= 1999 && last <= 2000);
    CHECK(schedule_ari_pick(1000, 2000, 0x80000000u) == 1500);
    CHECK(schedule_ari_pick(2000, 1000, 12345) == 2000);
}

static void test_jitter(void)
{
    for (uint32_t rnd = 0; rnd < 100000; rnd += 7919) {
        int64_t j = schedule_jitter_ms(43200000, rnd);
        CHECK(j >= 38880000 && j <= 47520000);
    }
    CHECK(schedule_jitter_ms(0, 5) == 1);
    CHECK(schedule_jitter_ms(5, 123) == 5);
}

int main(void)
{
    test_retry_after();
    test_rfc3339();
    test_renew_at();
    test_ari_pick();
    test_jitter();
    return check_summary("certd_schedule");
}
