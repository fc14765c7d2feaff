/* Renewal decisions and retry timing, as pure functions of their inputs (time and randomness
 * are parameters) so the unit tests can pin every case. */
#include "certd/certd.h"

#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define RETRY_AFTER_MAX_S (7 * 86400) /* a longer delay is not believable */

static int parse_seconds(const char *s, int64_t *out)
{
    if (!isdigit((unsigned char)*s))
        return -1;
    int64_t v = 0;
    for (; isdigit((unsigned char)*s); s++) {
        v = v * 10 + (*s - '0');
        if (v > RETRY_AFTER_MAX_S)
            v = RETRY_AFTER_MAX_S; /* saturate: no overflow, and capped below anyway */
    }
    while (*s == ' ' || *s == '\t')
        s++;
    if (*s)
        return -1;
    *out = v;
    return 0;
}

/* HTTP-date in any of the three forms RFC 9110 5.6.7 says recipients accept. */
static int parse_http_date(const char *s, time_t *out)
{
    static const char *const formats[] = {
        "%a, %d %b %Y %H:%M:%S GMT", /* IMF-fixdate */
        "%A, %d-%b-%y %H:%M:%S GMT", /* obsolete RFC 850 */
        "%a %b %e %H:%M:%S %Y",      /* asctime() */
    };
    for (size_t i = 0; i < sizeof(formats) / sizeof(formats[0]); i++) {
        struct tm tm;
        memset(&tm, 0, sizeof(tm));
        const char *end = strptime(s, formats[i], &tm);
        if (end && *end == '\0') {
            *out = timegm(&tm);
            return *out == (time_t)-1 ? -1 : 0;
        }
    }
    return -1;
}

int schedule_retry_after(const char *value, time_t now, int64_t *delay_s)
{
    if (!value)
        return -1;
    while (*value == ' ' || *value == '\t')
        value++;
    int64_t secs;
    if (parse_seconds(value, &secs) == 0) {
        *delay_s = secs > RETRY_AFTER_MAX_S ? RETRY_AFTER_MAX_S : secs;
        return 0;
    }
    time_t when;
    if (parse_http_date(value, &when) < 0)
        return -1;
    int64_t d = (int64_t)when - (int64_t)now;
    *delay_s = d < 0 ? 0 : d > RETRY_AFTER_MAX_S ? RETRY_AFTER_MAX_S : d;
    return 0;
}

static int digits(const char **p, int n, int *out)
{
    int v = 0;
    for (int i = 0; i < n; i++, (*p)++) {
        if (!isdigit((unsigned char)**p))
            return -1;
        v = v * 10 + (**p - '0');
    }
    *out = v;
    return 0;
}

static int expect(const char **p, char c)
{
    if (**p != c && !(c == 'T' && (**p == 't' || **p == ' ')))
        return -1;
    (*p)++;
    return 0;
}

/* "Z" or "+hh:mm"/"-hh:mm" -> seconds east of UTC. */
static int parse_offset(const char *p, int *offset)
{
    if ((*p == 'Z' || *p == 'z') && p[1] == '\0') {
        *offset = 0;
        return 0;
    }
    int sign = *p == '+' ? 1 : *p == '-' ? -1 : 0, hh, mm;
    if (!sign)
        return -1;
    p++;
    if (digits(&p, 2, &hh) < 0 || expect(&p, ':') < 0 || digits(&p, 2, &mm) < 0 || *p || hh > 23 ||
        mm > 59)
        return -1;
    *offset = sign * (hh * 3600 + mm * 60);
    return 0;
}

int schedule_parse_rfc3339(const char *text, time_t *out)
{
    if (!text)
        return -1;
    const char *p = text;
    struct tm tm;
    memset(&tm, 0, sizeof(tm));
    int y, mo, d, h, mi, s, offset;
    if (digits(&p, 4, &y) < 0 || expect(&p, '-') < 0 || digits(&p, 2, &mo) < 0 ||
        expect(&p, '-') < 0 || digits(&p, 2, &d) < 0 || expect(&p, 'T') < 0 ||
        digits(&p, 2, &h) < 0 || expect(&p, ':') < 0 || digits(&p, 2, &mi) < 0 ||
        expect(&p, ':') < 0 || digits(&p, 2, &s) < 0)
        return -1;
    if (*p == '.') {
        p++;
        if (!isdigit((unsigned char)*p))
            return -1;
        while (isdigit((unsigned char)*p))
            p++;
    }
    if (parse_offset(p, &offset) < 0 || mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 ||
        s > 60)
        return -1;
    tm.tm_year = y - 1900;
    tm.tm_mon = mo - 1;
    tm.tm_mday = d;
    tm.tm_hour = h;
    tm.tm_min = mi;
    tm.tm_sec = s;
    time_t t = timegm(&tm);
    if (t == (time_t)-1)
        return -1;
    *out = t - offset;
    return 0;
}

time_t schedule_renew_at(time_t not_before, time_t not_after, double fraction)
{
    if (fraction <= 0 || fraction >= 1)
        fraction = 1.0 / 3;
    double life = difftime(not_after, not_before);
    if (life <= 0)
        return not_before; /* nonsense dates: renew now */
    return not_after - (time_t)(life * fraction);
}

time_t schedule_ari_pick(time_t start, time_t end, uint32_t rnd)
{
    if (end <= start)
        return start;
    double span = difftime(end, start);
    return start + (time_t)(span * ((double)rnd / 4294967296.0));
}

int64_t schedule_jitter_ms(int64_t interval_ms, uint32_t rnd)
{
    if (interval_ms < 1)
        return 1;
    int64_t spread = interval_ms / 10;
    int64_t out = interval_ms - spread + (int64_t)(rnd % (uint64_t)(2 * spread + 1));
    return out < 1 ? 1 : out;
}
