/* Hex digits and %XX escapes (RFC 3986 percent-encoding), for the HTTP parser's chunk sizes and
 * for the path and query decoding of the edge and the appserver. */
#ifndef HEARTH_PERCENT_H
#define HEARTH_PERCENT_H

#include <stddef.h>

/* 0..15 for a hex digit of either case, else -1. */
int percent_hex_digit(unsigned char c);
/* The byte that the escape at s stands for ("%2F" -> '/'), given n bytes from s on; -1 when s
 * does not start with '%' and two hex digits. */
int percent_escape(const char *s, size_t n);

#endif
