/* Unit tests for the supervisor's restart policy: backoff doubling to the cap, reset after a
 * long uptime, FATAL past max_restarts inside the window, and the window sliding. */
#include "supervisor/policy.h"

#include "tests/unit/check.h"

static config_supervisor settings(void)
{
    config_supervisor s = {
        .stop_timeout_ms = 1000,
        .restart_delay_ms = 100,
        .restart_delay_max_ms = 1000,
        .restart_reset_ms = 10000,
        .max_restarts = 5,
        .restart_window_ms = 60000,
    };
    return s;
}

static void test_backoff_doubles_to_cap(void)
{
    config_supervisor s = settings();
    s.max_restarts = 100;
    restart_policy p;
    CHECK(policy_init(&p, &s, false) == 0);
    int64_t expect[] = {100, 200, 400, 800, 1000, 1000};
    for (size_t i = 0; i < sizeof(expect) / sizeof(expect[0]); i++)
        CHECK_MSG(policy_on_crash(&p, &s, 1000 + i * 10, 5) == expect[i], "crash %zu", i);
    policy_free(&p);
}

static void test_long_uptime_resets_delay(void)
{
    config_supervisor s = settings();
    restart_policy p;
    policy_init(&p, &s, false);
    CHECK(policy_on_crash(&p, &s, 1000, 5) == 100);
    CHECK(policy_on_crash(&p, &s, 2000, 5) == 200);
    CHECK(policy_on_crash(&p, &s, 30000, 20000) == 100);
    policy_free(&p);
}

static void test_fatal_after_max_restarts(void)
{
    config_supervisor s = settings();
    s.max_restarts = 3;
    restart_policy p;
    policy_init(&p, &s, false);
    for (int i = 0; i < 3; i++)
        CHECK(policy_on_crash(&p, &s, 1000 + (uint64_t)i, 1) >= 0);
    CHECK(policy_on_crash(&p, &s, 1010, 1) == POLICY_FATAL);
    /* An explicit restart forgets the history. */
    policy_reset(&p, &s);
    CHECK(policy_on_crash(&p, &s, 2000, 1) == 100);
    policy_free(&p);
}

static void test_window_slides(void)
{
    config_supervisor s = settings();
    s.max_restarts = 2;
    s.restart_window_ms = 1000;
    restart_policy p;
    policy_init(&p, &s, false);
    CHECK(policy_on_crash(&p, &s, 0, 1) >= 0);
    CHECK(policy_on_crash(&p, &s, 500, 1) >= 0);
    /* The first crash has left the window: still two inside it. */
    CHECK(policy_on_crash(&p, &s, 1200, 1) >= 0);
    CHECK(policy_on_crash(&p, &s, 1300, 1) == POLICY_FATAL);
    policy_free(&p);
}

/* The edge is the site: it is restarted however often it crashes, never waiting long. */
static void test_persistent_never_fatal_short_delay(void)
{
    config_supervisor s = settings();
    s.max_restarts = 2;
    s.restart_delay_max_ms = 30000;
    restart_policy p;
    policy_init(&p, &s, true);
    int64_t last = 0;
    for (int i = 0; i < 20; i++) {
        last = policy_on_crash(&p, &s, 1000 + (uint64_t)i, 1);
        CHECK_MSG(last >= 0 && last <= POLICY_PERSISTENT_DELAY_MAX_MS, "crash %d: %lld", i,
                  (long long)last);
    }
    CHECK(last == POLICY_PERSISTENT_DELAY_MAX_MS);
    policy_reset(&p, &s);
    CHECK(policy_on_crash(&p, &s, 5000, 1) == 100);
    policy_free(&p);
}

static void test_zero_restarts(void)
{
    config_supervisor s = settings();
    s.max_restarts = 0;
    restart_policy p;
    policy_init(&p, &s, false);
    CHECK(policy_on_crash(&p, &s, 0, 1) == POLICY_FATAL);
    policy_free(&p);
}

int main(void)
{
    test_backoff_doubles_to_cap();
    test_long_uptime_resets_delay();
    test_fatal_after_max_restarts();
    test_window_slides();
    test_zero_restarts();
    test_persistent_never_fatal_short_delay();
    return check_summary("supervisor_policy");
}
