/* Unit tests for the shared backoff: doubling to the cap, the first step and cap clamped, jitter
 * within half a step, and the crash window counting, sliding and refusing past its limit. */
#include "shared/backoff.h"

#include "tests/unit/check.h"

static void test_delay_doubles_to_cap(void)
{
    int64_t expect[] = {100, 200, 400, 800, 1000, 1000};
    for (unsigned i = 0; i < sizeof(expect) / sizeof(expect[0]); i++)
        CHECK_MSG(backoff_delay_ms(100, 1000, i) == expect[i], "attempt %u", i);
    /* a huge attempt count or cap neither overflows nor loops for long */
    CHECK(backoff_delay_ms(1000, 5000, 1000000) == 5000);
    CHECK(backoff_delay_ms(1, INT64_MAX, 200) > 0);
    CHECK(backoff_delay_ms(INT64_MAX / 2 + 1, INT64_MAX, 3) == INT64_MAX);
}

static void test_delay_clamps(void)
{
    CHECK(backoff_delay_ms(0, 0, 0) == 1);         /* never a tight loop */
    CHECK(backoff_delay_ms(-5, 100, 2) == 4);      /* first taken as 1 ms */
    CHECK(backoff_delay_ms(1000, 500, 3) == 1000); /* max below first: first wins */
}

static void test_jitter_within_half(void)
{
    for (uint32_t rnd = 0; rnd < 2000; rnd += 97) {
        for (unsigned a = 0; a < 40; a++) {
            int64_t cap = backoff_delay_ms(1000, 60000, a);
            int64_t d = backoff_jitter_ms(cap, rnd);
            CHECK_MSG(d >= cap / 2 && d <= cap, "attempt %u: %lld", a, (long long)d);
        }
    }
    CHECK(backoff_jitter_ms(1000, 0) == 1000);
    CHECK(backoff_jitter_ms(1000, 500) == 500);
    CHECK(backoff_jitter_ms(1, 12345) == 1);
    CHECK(backoff_jitter_ms(0, 7) == 1);
}

static void test_window_limit(void)
{
    crash_window w = {0};
    CHECK(crash_window_init(&w, 3) == 0);
    for (uint64_t i = 0; i < 3; i++)
        CHECK(!crash_window_add(&w, 1000 + i, 10000));
    CHECK(crash_window_add(&w, 1010, 10000));
    CHECK(crash_window_add(&w, 1020, 10000)); /* still a loop, and no overrun */
    /* starting over forgets the history */
    CHECK(crash_window_init(&w, 3) == 0);
    CHECK(!crash_window_add(&w, 2000, 10000));
    crash_window_free(&w);
}

static void test_window_slides(void)
{
    crash_window w = {0};
    CHECK(crash_window_init(&w, 2) == 0);
    CHECK(!crash_window_add(&w, 0, 1000));
    CHECK(!crash_window_add(&w, 500, 1000));
    /* the first has left the window: two inside it */
    CHECK(!crash_window_add(&w, 1200, 1000));
    CHECK(crash_window_add(&w, 1300, 1000));
    /* long after, all forgotten */
    CHECK(!crash_window_add(&w, 9000, 1000));
    crash_window_free(&w);
}

static void test_window_zero_limit(void)
{
    crash_window w = {0};
    CHECK(crash_window_init(&w, 0) == 0);
    CHECK(crash_window_add(&w, 5, 1000));
    crash_window_free(&w);
}

int main(void)
{
    test_delay_doubles_to_cap();
    test_delay_clamps();
    test_jitter_within_half();
    test_window_limit();
    test_window_slides();
    test_window_zero_limit();
    return check_summary("backoff");
}
