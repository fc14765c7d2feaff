/* TLS contexts: TLS 1.2/1.3 with Mozilla's "intermediate" ciphers, ECDSA and RSA certificates
 * side by side, SNI among sites, ALPN h2 and http/1.1, and session tickets (their keys: tickets.c).
 */
#include <stdio.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/x509.h>

#include "edge/edge.h"

/* Mozilla intermediate, without the DHE suites (they need parameters and cost more than the
 * clients that still need them are worth). */
static const char *const ciphers12 = "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
                                     "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
                                     "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305";
static const char *const ciphers13 =
    "TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256";

static edge_gen *current_gen;

void edge_tls_set_gen(edge_gen *g)
{
    current_gen = g;
}

static void tls_errors(char *err, size_t errlen, const char *what, const char *file)
{
    unsigned long e = ERR_get_error();
    char reason[200] = "";
    if (e)
        ERR_error_string_n(e, reason, sizeof(reason));
    ERR_clear_error();
    snprintf(err, errlen, "%s '%s': %s", what, file, reason[0] ? reason : "failed");
}

/* A certificate that is not valid right now would break every handshake: refuse it. */
static int check_validity(SSL_CTX *ctx, const char *file, char *err, size_t errlen)
{
    X509 *x = SSL_CTX_get0_certificate(ctx);
    if (!x) {
        snprintf(err, errlen, "certificate '%s': none loaded", file);
        return -1;
    }
    if (X509_cmp_current_time(X509_get0_notBefore(x)) >= 0) {
        snprintf(err, errlen, "certificate '%s': not valid yet", file);
        return -1;
    }
    if (X509_cmp_current_time(X509_get0_notAfter(x)) <= 0) {
        snprintf(err, errlen, "certificate '%s': expired", file);
        return -1;
    }
    return 0;
}

static int load_pair(SSL_CTX *ctx, const config_cert_pair *p, char *err, size_t errlen)
{
    if (SSL_CTX_use_certificate_chain_file(ctx, p->cert) != 1) {
        tls_errors(err, errlen, "certificate", p->cert);
        return -1;
    }
    if (SSL_CTX_use_PrivateKey_file(ctx, p->key, SSL_FILETYPE_PEM) != 1) {
        /* OpenSSL checks the pair while loading the key: the usual failure is a mismatch. */
        tls_errors(err, errlen, "private key unreadable or does not match the certificate", p->key);
        return -1;
    }
    if (SSL_CTX_check_private_key(ctx) != 1) {
        tls_errors(err, errlen, "private key does not match certificate", p->cert);
        return -1;
    }
    return check_validity(ctx, p->cert, err, errlen);
}

static int alpn_select(SSL *ssl, const unsigned char **out, unsigned char *outlen,
                       const unsigned char *in, unsigned int inlen, void *arg)
{
    (void)ssl;
    (void)arg;
    /* h2 first (RFC 9113 3.2), for every TLS site; plain HTTP stays HTTP/1.1 (no h2c). */
    static const unsigned char ours[] = "\x02h2\x08http/1.1";
    unsigned char *sel = NULL;
    if (SSL_select_next_proto(&sel, outlen, ours, sizeof(ours) - 1, in, inlen) !=
        OPENSSL_NPN_NEGOTIATED)
        return SSL_TLSEXT_ERR_NOACK; /* no h2-only client is refused for it: it may try 1.1 */
    *out = sel;
    return SSL_TLSEXT_ERR_OK;
}

static int sni_select(SSL *ssl, int *alert, void *arg)
{
    (void)arg;
    const char *name = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
    if (!name || !current_gen)
        return SSL_TLSEXT_ERR_OK;
    edge_site *s = edge_gen_find_site(current_gen, name, strlen(name));
    if (s && edge_site_tls_pending(s)) {
        /* Another site's certificate would only fail the client's name check, later. */
        *alert = SSL_AD_UNRECOGNIZED_NAME;
        return SSL_TLSEXT_ERR_ALERT_FATAL;
    }
    if (s && s->ctx && s->ctx != SSL_get_SSL_CTX(ssl))
        SSL_set_SSL_CTX(ssl, s->ctx);
    return SSL_TLSEXT_ERR_OK;
}

static SSL_CTX *ctx_base(void)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    if (!ctx)
        return NULL;
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_max_proto_version(ctx, TLS1_3_VERSION);
    SSL_CTX_set_cipher_list(ctx, ciphers12);
    SSL_CTX_set_ciphersuites(ctx, ciphers13);
    SSL_CTX_set1_groups_list(ctx, "X25519:P-256:P-384");
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION |
                                 SSL_OP_CIPHER_SERVER_PREFERENCE);
    SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
                              SSL_MODE_RELEASE_BUFFERS);
    /* One read(2) per burst of records instead of two per record (header, then body). */
    SSL_CTX_set_read_ahead(ctx, 1);
    SSL_CTX_set_alpn_select_cb(ctx, alpn_select, NULL);
    SSL_CTX_set_tlsext_servername_callback(ctx, sni_select);
    SSL_CTX_set_tlsext_ticket_key_evp_cb(ctx, edge_tickets_cb);
    SSL_CTX_set_info_callback(ctx, edge_metrics_tls_info);
    /* Resumption is by tickets, which every worker can decrypt; a per-process session cache
     * would only cost memory per connection and help no other worker. */
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
    /* One TLS 1.3 ticket per handshake is enough for a client to resume once, and each one
     * costs an encryption. */
    SSL_CTX_set_num_tickets(ctx, 1);
    static const unsigned char sid_ctx[] = "hearth-edge";
    SSL_CTX_set_session_id_context(ctx, sid_ctx, sizeof(sid_ctx) - 1);
    return ctx;
}

SSL_CTX *edge_tls_ctx_new(const config_site *site, char *err, size_t errlen)
{
    SSL_CTX *ctx = ctx_base();
    if (!ctx) {
        snprintf(err, errlen, "site '%s': cannot create a TLS context", site->name);
        return NULL;
    }
    for (size_t i = 0; i < site->cert_count; i++) {
        if (load_pair(ctx, &site->certs[i], err, errlen) < 0) {
            SSL_CTX_free(ctx);
            return NULL;
        }
    }
    return ctx;
}

SSL_CTX *edge_tls_ctx_bare(void)
{
    return ctx_base();
}
