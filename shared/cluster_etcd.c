/* An etcd client from the cluster map (cluster.h), in the etcd library: only the programs that
 * talk to etcd link libcurl. */
#include <stdlib.h>
#include <string.h>

#include "shared/cluster.h"

etcd_client *cluster_etcd_open(const config_cluster *c, char *err, size_t errlen)
{
    char *password = NULL;
    if (c->password_file && !(password = cluster_read_password(c->password_file, err, errlen)))
        return NULL;
    etcd_options o = {
        .endpoints = c->etcd,
        .ca = c->ca,
        .cert = c->cert,
        .key = c->key,
        .username = c->username,
        .password = password,
        .timeout_ms = c->timeout_ms,
    };
    etcd_client *client = etcd_open(&o, err, errlen);
    if (password) {
        explicit_bzero(password, strlen(password));
        free(password);
    }
    return client;
}
