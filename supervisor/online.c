/* `hearth check --online`: after the offline checks, what only the network and the cluster's
 * files can tell: the secret key file is fit to seal secrets, etcd answers at the configured
 * endpoints, and accepts the credentials. Plain `hearth check` never gets here, so it never
 * touches the network. */
#include "supervisor/sv.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "shared/cluster.h"
#include "shared/etcd.h"
#include "shared/privs.h"

/* A problem, on stderr after what stdout said before it (each goes its own way in a pipe). */
__attribute__((format(printf, 1, 2))) static void problem(const char *fmt, ...)
{
    fflush(stdout);
    va_list ap;
    va_start(ap, fmt);
    fputs("cluster: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

/* The components read the key as cfg->user: a file of another owner, that only its owner may
 * read, would be unreadable to them even though root (running this check) reads it. */
static bool owner_fits(const hearth_config *cfg, const char *path)
{
    uid_t uid;
    gid_t gid;
    char why[256];
    struct stat st;
    if (!cfg->user || privs_lookup(cfg->user, cfg->group, &uid, &gid, why, sizeof(why)) < 0 ||
        stat(path, &st) < 0 || st.st_uid == uid)
        return true;
    problem("cluster.secret_key_file %s: owned by uid %u, not by '%s' (the user the components "
            "run as), so certd could not read it: chown %s it",
            path, (unsigned)st.st_uid, cfg->user, cfg->user);
    return false;
}

static bool secret_key_ok(const hearth_config *cfg)
{
    const char *path = cfg->cluster.secret_key_file;
    if (!path) {
        printf("cluster: plaintext_secrets: private keys are stored in etcd unencrypted\n");
        return true;
    }
    char err[512];
    size_t len;
    unsigned char *key = cluster_read_secret_key(path, &len, err, sizeof(err));
    if (!key) {
        problem("%s", err);
        return false;
    }
    explicit_bzero(key, len);
    free(key);
    if (!owner_fits(cfg, path))
        return false;
    printf("cluster: secret key %s: ok (%zu bytes)\n", path, len);
    return true;
}

/* etcd_status's lines, one per endpoint; whether etcd answered (and took the credentials). */
static bool etcd_ok(const config_cluster *c)
{
    char err[512];
    etcd_client *client = cluster_etcd_open(c, err, sizeof(err));
    if (!client) {
        problem("%s", err);
        return false;
    }
    strlist lines = {0};
    bool ok = etcd_status(client, &lines) == 0;
    for (size_t i = 0; i < lines.count; i++)
        printf("cluster: %s\n", lines.items[i]);
    if (!ok && c->username)
        problem("etcd cannot be reached at any endpoint, or refused the credentials of user %s "
                "(above)",
                c->username);
    else if (!ok)
        problem("etcd cannot be reached at any endpoint (above)");
    strlist_clear(&lines);
    etcd_close(client);
    return ok;
}

int sv_check_online(const hearth_config *cfg)
{
    const config_cluster *c = &cfg->cluster;
    if (c->etcd.count == 0) {
        printf("supervisor: no cluster configured: nothing online to check\n");
        return EXIT_OK;
    }
    char host[256] = "";
    if (!c->host && gethostname(host, sizeof(host) - 1) < 0)
        snprintf(host, sizeof(host), "?");
    printf("cluster: host %s, prefix %s, %zu etcd endpoint(s)\n", c->host ? c->host : host,
           c->prefix, c->etcd.count);
    bool ok = secret_key_ok(cfg);
    ok &= etcd_ok(c);
    if (ok)
        printf("supervisor: etcd answers: the cluster is reachable\n");
    else
        fprintf(stderr, "supervisor: online check failed\n");
    return ok ? EXIT_OK : EXIT_FAIL;
}
