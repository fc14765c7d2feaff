/* What each program of a cluster host (docs/cluster.md) reads from the cluster map besides
 * plain settings: the small files of secrets it names, and an etcd client made from it. */
#ifndef HEARTH_CLUSTER_H
#define HEARTH_CLUSTER_H

#include <stdbool.h>
#include <stddef.h>

#include "shared/config.h"
#include "shared/etcd.h"

#define CLUSTER_SECRET_MAX 4096 /* the password and the secret key files are no larger */
#define CLUSTER_SECRET_KEY_MIN 32

/* A small file read whole: a regular file of at most max bytes and, when owner_only, one that
 * neither group nor others may access (secrets). Malloc'ed, NUL-terminated, *len bytes; NULL
 * with the reason in why, and errno ENOENT when the file is not there. */
char *cluster_read_small(const char *path, size_t max, bool owner_only, size_t *len, char *why,
                         size_t whylen);

/* The etcd password from password_file: one trailing newline stripped. NULL with err. */
char *cluster_read_password(const char *path, char *err, size_t errlen);

/* secret_key_file's bytes: at least CLUSTER_SECRET_KEY_MIN, accessible by its owner only.
 * NULL with err. */
unsigned char *cluster_read_secret_key(const char *path, size_t *len, char *err, size_t errlen);

/* An etcd client for c (its password read from password_file). NULL with err; no connection
 * is made yet. */
etcd_client *cluster_etcd_open(const config_cluster *c, char *err, size_t errlen);

#endif
