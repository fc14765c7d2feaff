/* Content codings: what Accept-Encoding takes, which media types are worth compressing, and the
 * comma-separated lists of Vary and Cache-Control (coding.h). */
#include <string.h>
#include <strings.h>

#include "edge/coding.h"

typedef struct {
    const char *p;
    size_t n;
} span;

static bool is_ows(char c)
{
    return c == ' ' || c == '\t';
}

static span trim(const char *p, size_t n)
{
    while (n > 0 && is_ows(p[0])) {
        p++;
        n--;
    }
    while (n > 0 && is_ows(p[n - 1]))
        n--;
    return (span){p, n};
}

static bool span_is(span s, const char *word)
{
    size_t n = strlen(word);
    return s.n == n && strncasecmp(s.p, word, n) == 0;
}

/* The next comma-separated element of v from *pos, trimmed; false after the last. */
static bool next_element(const char *v, size_t len, size_t *pos, span *el)
{
    while (*pos < len && (v[*pos] == ',' || is_ows(v[*pos])))
        (*pos)++;
    if (*pos >= len)
        return false;
    size_t start = *pos;
    while (*pos < len && v[*pos] != ',')
        (*pos)++;
    *el = trim(v + start, *pos - start);
    return true;
}

/* A qvalue ("1", "1.000", "0.5", "0"): thousandths, or -1 when malformed. */
static int parse_q(span s)
{
    if (s.n == 0 || s.n > 5 || (s.p[0] != '0' && s.p[0] != '1'))
        return -1;
    int q = (s.p[0] - '0') * 1000;
    if (s.n == 1)
        return q;
    if (s.p[1] != '.')
        return -1;
    int scale = 100;
    for (size_t i = 2; i < s.n; i++, scale /= 10) {
        if (s.p[i] < '0' || s.p[i] > '9')
            return -1;
        q += (s.p[i] - '0') * scale;
    }
    return q > 1000 ? -1 : q;
}

/* An Accept-Encoding element, "gzip" or "br;q=0.8": its coding and q; false when malformed. */
static bool parse_entry(span el, span *coding, int *q)
{
    const char *end = el.p + el.n, *semi = memchr(el.p, ';', el.n);
    *coding = trim(el.p, semi ? (size_t)(semi - el.p) : el.n);
    *q = 1000;
    while (semi) {
        const char *p = semi + 1;
        semi = memchr(p, ';', (size_t)(end - p));
        span param = trim(p, semi ? (size_t)(semi - p) : (size_t)(end - p));
        if (param.n >= 2 && (param.p[0] | 32) == 'q' && param.p[1] == '=') {
            *q = parse_q((span){param.p + 2, param.n - 2});
            if (*q < 0)
                return false;
        }
    }
    return coding->n > 0;
}

static bool names_coding(span s, const char *coding)
{
    return span_is(s, coding) || (strcmp(coding, "gzip") == 0 && span_is(s, "x-gzip"));
}

/* The q of coding's own entry; with_star: else that of "*". -1: not listed. */
static int q_of(const char *ae, size_t len, const char *coding, bool with_star)
{
    int own = -1, star = -1, q;
    size_t pos = 0;
    span el, name;
    while (next_element(ae, len, &pos, &el)) {
        if (!parse_entry(el, &name, &q))
            continue;
        if (own < 0 && names_coding(name, coding))
            own = q;
        else if (star < 0 && span_is(name, "*"))
            star = q;
    }
    return own >= 0 ? own : with_star ? star : -1;
}

const char *edge_coding_name(edge_coding c)
{
    static const char *const names[] = {"", "gzip", "br", "zstd"};
    return names[c];
}

int edge_accept_q(const char *ae, size_t len, const char *coding)
{
    return q_of(ae, len, coding, true);
}

edge_coding edge_coding_choose(const char *ae, size_t len)
{
    edge_coding best = EDGE_CODING_NONE;
    int best_q = 0;
    for (edge_coding c = EDGE_CODING_ZSTD; c > EDGE_CODING_NONE; c--) {
        int q = q_of(ae, len, edge_coding_name(c), true);
        if (q > best_q) {
            best = c;
            best_q = q;
        }
    }
    /* identity is acceptable unless excluded, but only an explicit q says it is preferred */
    if (best != EDGE_CODING_NONE && q_of(ae, len, "identity", false) > best_q)
        return EDGE_CODING_NONE;
    return best;
}

bool edge_media_listed(const char *ctype, size_t len, const strlist *types)
{
    const char *semi = memchr(ctype, ';', len);
    span mt = trim(ctype, semi ? (size_t)(semi - ctype) : len);
    for (size_t i = 0; i < types->count; i++) {
        const char *t = types->items[i];
        size_t tl = strlen(t);
        bool any_subtype = tl >= 2 && t[tl - 2] == '/' && t[tl - 1] == '*';
        if (t[0] == '+') {
            if (mt.n > tl && strncasecmp(mt.p + mt.n - tl, t, tl) == 0)
                return true;
        } else if (any_subtype) {
            if (mt.n > tl - 1 && strncasecmp(mt.p, t, tl - 1) == 0)
                return true;
        } else if (span_is(mt, t)) {
            return true;
        }
    }
    return false;
}

bool edge_list_has(const char *v, size_t len, const char *token)
{
    size_t pos = 0;
    span el;
    while (next_element(v, len, &pos, &el)) {
        const char *eq = memchr(el.p, '=', el.n);
        if (span_is(trim(el.p, eq ? (size_t)(eq - el.p) : el.n), token))
            return true;
    }
    return false;
}
