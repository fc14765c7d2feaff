/* Hex digits and %XX escapes: one definition for everything that decodes them. */
#include "shared/percent.h"

int percent_hex_digit(unsigned char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

int percent_escape(const char *s, size_t n)
{
    if (n < 3 || s[0] != '%')
        return -1;
    int hi = percent_hex_digit((unsigned char)s[1]);
    int lo = percent_hex_digit((unsigned char)s[2]);
    return hi < 0 || lo < 0 ? -1 : hi * 16 + lo;
}
