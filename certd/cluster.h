/* certd's cluster mode (docs/cluster.md): the state its three files share. cluster.c orders
 * under a lock and publishes; cluster_lease.c keeps this host's etcd lease alive;
 * cluster_sync.c mirrors what the other hosts write into the local files. */
#ifndef HEARTH_CERTD_CLUSTER_H
#define HEARTH_CERTD_CLUSTER_H

#include <pthread.h>

#include "certd/certd.h"
#include "shared/etcd.h"

struct cluster {
    const config_cluster *cfg;
    etcd_client *etcd; /* the main thread's; each thread has its own client */
    char host[256];
    unsigned char seal_key[SEAL_KEY_LEN];
    bool sealed;
    char *state_dir; /* STATE_DIR/cluster: the ticket keys file */
    /* store_save of one process is not safe against itself: the main thread and the sync
     * thread both store certificates */
    pthread_mutex_t store_mu;
    /* the lease, kept alive by the lease thread; mu and cv guard and wake it */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int64_t lease;
    bool registered; /* hosts/HOST is written with the lease (the daemon mirrors challenges) */
    bool stopping;
    bool keep_lease; /* handed over to the next self of a re-executing certd */
    bool lease_thread_started;
    pthread_t lease_thread;
    /* the sync thread */
    bool sync_started;
    volatile bool sync_stop;
    pthread_t sync_thread;
    const certd_opts *opts;
};

etcd_client *cluster_client(const cluster *c);
const unsigned char *cluster_seal_key(const cluster *c);

/* ---- cluster_lease.c ---- */
/* The lease (granted now through e, the caller's client, if there is none); 0 when etcd
 * cannot be reached. */
int64_t lease_current(cluster *c, etcd_client *e);
void lease_stop(cluster *c);
/* A certd re-executing itself (SIGHUP with -c) keeps its lease, and with it hosts/HOST, so
 * that the hosts ordering meanwhile still wait for this host's confirmations. */
#define LEASE_ENV "HEARTH_CERTD_CLUSTER_LEASE"
void lease_take_over(cluster *c);
/* From now on hosts/HOST lives with the lease: this host mirrors challenges (the daemon). */
void lease_register(cluster *c, etcd_client *e);

#endif
