/* Content codings as a client asks for them and a response allows them: Accept-Encoding with
 * its q-values (RFC 9110 12.5.3), the media types worth compressing, and the comma-separated
 * lists of Vary and Cache-Control. Pure functions: static.c picks precompressed siblings with
 * them, compress.c decides what to compress on the fly. */
#ifndef HEARTH_EDGE_CODING_H
#define HEARTH_EDGE_CODING_H

#include <stdbool.h>
#include <stddef.h>

#include "shared/strlist.h"

/* The codings the edge compresses with; a larger value is preferred on equal q (docs/edge.md). */
typedef enum {
    EDGE_CODING_NONE,
    EDGE_CODING_GZIP,
    EDGE_CODING_BR,
    EDGE_CODING_ZSTD,
} edge_coding;

/* "gzip", "br", "zstd" ("" for NONE): the token of Content-Encoding. */
const char *edge_coding_name(edge_coding c);

/* The q-value, in thousandths, that an Accept-Encoding value gives coding ("gzip", "br",
 * "identity"): its own entry's (x-gzip counts as gzip), else that of "*"; -1 when neither is
 * listed. An entry with a malformed q-value counts as absent. */
int edge_accept_q(const char *ae, size_t len, const char *coding);

/* The coding to compress a response with for this Accept-Encoding: the highest q above 0, ties
 * broken zstd > br > gzip; NONE when no coding is acceptable or identity is listed with a higher
 * q than the best of them. */
edge_coding edge_coding_choose(const char *ae, size_t len);

/* Whether a Content-Type value's media type is one of types: "type/subtype" exactly, "type/" and a
 * star for any subtype, "+suffix" for any type ending so. Case-insensitive; parameters ignored. */
bool edge_media_listed(const char *ctype, size_t len, const strlist *types);

/* Whether a comma-separated field value (Vary, Cache-Control) has token as an element, compared
 * case-insensitively and up to an element's '=' (a directive's argument). */
bool edge_list_has(const char *v, size_t len, const char *token);

#endif
