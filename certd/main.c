/* certd: the ACME client and renewal daemon. Flags as certbot and lego users know them; with
 * -c the stack's YAML file supplies the defaults (flags still win). */
#include "certd/certd.h"

#include <ctype.h>
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "shared/cli.h"
#include "shared/config.h"
#include "shared/log.h"

typedef enum {
    CMD_NONE,
    CMD_ISSUE,
    CMD_LIST,
    CMD_RENEW,
    CMD_REVOKE,
    CMD_ROLLOVER,
    CMD_DAEMON,
    CMD_CHECK
} command;

typedef struct {
    certd_opts o;
    command cmd;
    char *target; /* --issue / --revoke DOMAIN */
    certd_names cli_names;
    const char *config_path; /* -c, or NULL */
    bool staging;
    bool server_given;
    bool internal;
    char internal_ca_buf[4096];
    hearth_config cfg; /* the file's, or the defaults: o's strings point into it */
} certd_cli;

static void defaults(certd_cli *c)
{
    certd_opts *o = &c->o;
    o->revoke_reason = 0;
    o->backoff_min_ms = 60 * 1000;
    o->backoff_max_ms = 12 * 3600 * 1000LL;
    o->timeout_ms = 5 * 60 * 1000;
}

static int add_name(certd_names *n, const char *name)
{
    if (n->count >= CERTD_MAX_NAMES) {
        fprintf(stderr, "certd: at most %d names per certificate\n", CERTD_MAX_NAMES);
        return -1;
    }
    for (size_t i = 0; i < n->count; i++)
        if (strcasecmp(n->names[i], name) == 0)
            return 0;
    if (!n->names && !(n->names = calloc(CERTD_MAX_NAMES, sizeof(char *))))
        return -1;
    /* DNS is case-insensitive; the directory name should not depend on how it was typed */
    for (char *p = (char *)name; *p; p++)
        *p = (char)tolower((unsigned char)*p);
    n->names[n->count++] = (char *)name;
    return 0;
}

/* --issue, --renew, ...: one command per run. */
static int command_flag(cli_call *call, const char *arg)
{
    static const struct {
        const char *flag;
        command cmd;
    } commands[] = {{"issue", CMD_ISSUE},   {"revoke", CMD_REVOKE},
                    {"list", CMD_LIST},     {"renew", CMD_RENEW},
                    {"daemon", CMD_DAEMON}, {"rollover-account-key", CMD_ROLLOVER},
                    {"check", CMD_CHECK}};
    certd_cli *c = call->ctx;
    command cmd = CMD_NONE;
    for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
        if (strcmp(commands[i].flag, call->flag->name) == 0)
            cmd = commands[i].cmd;
    if (c->cmd != CMD_NONE && c->cmd != cmd)
        return cli_fail(call, "choose one of --issue, --renew, --list, --revoke, "
                              "--rollover-account-key, --daemon, --check");
    if (arg)
        c->target = (char *)arg;
    c->cmd = cmd;
    return 0;
}

static int domain_flag(cli_call *call, const char *arg)
{
    return add_name(&((certd_cli *)call->ctx)->cli_names, arg);
}

static int server_flag(cli_call *call, const char *arg)
{
    ((certd_cli *)call->ctx)->server_given = true;
    return cli_set(call, arg);
}

static int reason_flag(cli_call *call, const char *arg)
{
    certd_opts *o = &((certd_cli *)call->ctx)->o;
    char *end;
    long reason = strtol(arg, &end, 10);
    if (*end || end == arg || reason < 0 || reason > 10 || reason == 7)
        return cli_fail(call, "a RFC 5280 reason code (0-10, not 7), got '%s'", arg);
    o->revoke_reason = (int)reason;
    return 0;
}

/* certd's own settings (not keys of the stack's file). */
static int own_duration(cli_call *call, const char *arg)
{
    static const struct {
        const char *flag;
        size_t offset;
    } durations[] = {
        {"retry-min", offsetof(certd_opts, backoff_min_ms)},
        {"retry-max", offsetof(certd_opts, backoff_max_ms)},
        {"timeout", offsetof(certd_opts, timeout_ms)},
    };
    int64_t ms;
    if (config_parse_duration(arg, &ms) < 0 || ms <= 0)
        return cli_fail(call, "bad duration '%s' (e.g. 500ms, 30s, 5m, 12h)", arg);
    for (size_t i = 0; i < sizeof(durations) / sizeof(durations[0]); i++)
        if (strcmp(durations[i].flag, call->flag->name) == 0)
            *(int64_t *)((char *)&((certd_cli *)call->ctx)->o + durations[i].offset) = ms;
    return 0;
}

#define OWN_ARG(member) .opts = CLI_CTX_ARG, .field = offsetof(certd_cli, member)
#define OWN_BOOL(member) .opts = CLI_CTX_BOOL, .field = offsetof(certd_cli, member)

static const cli_flag certd_flags[] = {
    {"issue", 0, "DOMAIN", .fn = command_flag, .help = "obtain a certificate"},
    {"domain", 'd', "DOMAIN", .fn = domain_flag, .help = "a further name (repeatable)"},
    {"renew", 0, NULL, .fn = command_flag, .help = "renew what is due"},
    {"force", 0, NULL, OWN_BOOL(o.force), .help = "--issue/--renew even when not due"},
    {"list", 0, NULL, .fn = command_flag, .help = "show stored certificates"},
    {"revoke", 0, "DOMAIN", .fn = command_flag, .help = "revoke a stored certificate"},
    {"reason", 0, "N", .fn = reason_flag, .help = "--revoke: RFC 5280 reason code"},
    {"rollover-account-key", 0, NULL, .fn = command_flag, .help = "replace the account key"},
    {"daemon", 0, NULL, .fn = command_flag, .help = "keep certificates renewed"},
    {"check", 0, NULL, .fn = command_flag, .help = "validate the config (-c) and exit"},
    {"config", 'c', "FILE", .help = "the stack's YAML file (flags override it)"},
    {"server", 0, "URL", "certd.server", .fn = server_flag,
     .help = "ACME directory (default Let's Encrypt)"},
    {"staging", 0, NULL, OWN_BOOL(staging), .help = "Let's Encrypt's staging directory"},
    {"ca-bundle", 0, "FILE", "certd.ca_bundle", .help = "trust this CA bundle for the server"},
    {"email", 0, "ADDR", "certd.email", .help = "the account's contact"},
    {"agree-tos", 0, NULL, "certd.agree_tos", "true", .help = "agree to the CA's terms"},
    {"eab-kid", 0, "KID", "certd.eab_kid", .help = "external account binding: key id"},
    {"eab-hmac-key", 0, "KEY", "certd.eab_hmac_key", .help = "and its HMAC key"},
    {"key-type", 0, "T", "certd.key_type", .help = "ec256, ec384, rsa2048, rsa3072, rsa4096"},
    {"webroot", 0, "DIR", "certd.webroot",
     .help = "challenges go to DIR/.well-known/acme-challenge"},
    {"cert-dir", 0, "DIR", "certd.cert_dir",
     .help = "one directory per certificate (fullchain.pem, privkey.pem)"},
    {"account-dir", 0, "DIR", OWN_ARG(o.account_dir),
     .help = "account keys (CERT_DIR/../accounts)"},
    {"internal", 0, NULL, OWN_BOOL(internal),
     .help = "sign with the local CA instead of ACME (tls: internal)"},
    {"internal-ca-dir", 0, "DIR", OWN_ARG(o.internal_ca_dir),
     .help = "the local CA (CERT_DIR/../internal-ca)"},
    {"dry-run", 0, NULL, OWN_BOOL(o.dry_run),
     .help = "obtain but write nothing (staging unless --server)"},
    {"check-interval", 0, "D", "certd.check_interval", .help = "daemon: how often to check"},
    {"renew-fraction", 0, "F", "certd.renew_remaining_fraction",
     .help = "renew with less than F of the lifetime left"},
    {"retry-min", 0, "D", .fn = own_duration, .help = "daemon: failure backoff from (1m)"},
    {"retry-max", 0, "D", .fn = own_duration, .help = "daemon: failure backoff up to (12h)"},
    {"timeout", 0, "D", .fn = own_duration,
     .help = "limit for one issuance, polling included (5m)"},
    {"reload-pidfile", 0, "FILE", OWN_ARG(o.reload_pidfile),
     .help = "SIGHUP that process after a change"},
    {"deploy-hook", 0, "CMD", OWN_ARG(o.deploy_hook), .help = "run CMD (sh -c) after a change"},
    {"log-level", 0, "L", "log_level", .fn = cli_log_level, .help = "debug, info, warn, error"},
    {.name = NULL},
};

static const cli_spec certd_cli_spec = {
    .prog = "certd",
    .usage = "usage: certd --issue DOMAIN [-d DOMAIN ...] [flags]   obtain a certificate\n"
             "       certd --renew [--force]                     renew what is due\n"
             "       certd --list                                show stored certificates\n"
             "       certd --revoke DOMAIN [--reason N]          revoke a stored certificate\n"
             "       certd --rollover-account-key                replace the account key\n"
             "       certd --daemon [-d DOMAIN ...]              keep certificates renewed\n"
             "       certd --check -c FILE                       validate the config and exit\n",
    .notes = "exit: 0 done, 1 failure, 2 usage, 3 nothing to do\n",
    .flags = certd_flags,
    .config_flag = "config",
};

/* The file's certd section (or the defaults) and its ACME sites, as the commands take them. */
static int from_config(certd_cli *c)
{
    const config_certd *k = &c->cfg.certd;
    certd_opts *o = &c->o;
    o->reexec_on_hup = c->config_path != NULL;
    o->server = k->server, o->email = k->email, o->agree_tos = k->agree_tos;
    o->ca_bundle = k->ca_bundle, o->eab_kid = k->eab_kid, o->eab_hmac_key = k->eab_hmac_key;
    o->key_type = k->key_type, o->cert_dir = k->cert_dir, o->webroot = k->webroot;
    o->check_interval_ms = k->check_interval_ms;
    o->renew_fraction = k->renew_remaining_fraction;
    if (!(o->wanted = calloc(c->cfg.site_count + 1, sizeof(certd_names))))
        return -1;
    for (size_t i = 0; i < c->cfg.site_count; i++) {
        const config_site *s = &c->cfg.sites[i];
        if (s->tls != SITE_TLS_ACME && s->tls != SITE_TLS_INTERNAL)
            continue;
        certd_names *n = &o->wanted[o->wanted_count++];
        n->internal = s->tls == SITE_TLS_INTERNAL;
        add_name(n, s->name);
        for (size_t j = 0; j < s->aliases.count; j++)
            add_name(n, s->aliases.items[j]);
    }
    return 0;
}

/* 0: go on; 1: --help or --version printed; -1: a usage or config error, printed. */
static int parse(certd_cli *c, int argc, char **argv)
{
    cli_parsed parsed;
    char err[CONFIG_ERR_MAX];
    cli_result r = cli_parse(&certd_cli_spec, argc, argv, &c->cfg, c, &parsed, err, sizeof(err));
    if (r == CLI_ERROR)
        fprintf(stderr, "certd: %s\n", err);
    if (r != CLI_RUN)
        return r == CLI_DONE ? 1 : -1;
    c->config_path = parsed.config_path;
    return from_config(c);
}

/* Cross-flag rules, once everything is known. */
static int finish(certd_cli *c)
{
    certd_opts *o = &c->o;
    if (c->staging || (o->dry_run && !c->server_given && !c->config_path))
        o->server = CERTD_LE_STAGING;
    if (c->cmd == CMD_NONE && c->cli_names.count)
        c->cmd = CMD_ISSUE;
    if (c->cmd == CMD_NONE) {
        fprintf(stderr, "certd: nothing to do; see certd --help\n");
        return -1;
    }
    if (!o->eab_kid != !o->eab_hmac_key) {
        fprintf(stderr, "certd: --eab-kid and --eab-hmac-key go together\n");
        return -1;
    }
    if (c->cmd == CMD_ISSUE || c->cmd == CMD_DAEMON) {
        certd_names all = {0};
        if ((c->target && add_name(&all, c->target) < 0))
            return -1;
        for (size_t i = 0; i < c->cli_names.count; i++)
            if (add_name(&all, c->cli_names.names[i]) < 0)
                return -1;
        free(c->cli_names.names);
        all.internal = c->internal;
        c->cli_names = all;
        if (c->cmd == CMD_ISSUE && all.count == 0) {
            fprintf(stderr, "certd: --issue needs a domain\n");
            return -1;
        }
        if (all.count) {
            certd_names *w = realloc(o->wanted, (o->wanted_count + 1) * sizeof(*w));
            if (!w)
                return -1;
            o->wanted = w;
            o->wanted[o->wanted_count++] = all;
        }
    }
    if (!o->internal_ca_dir) {
        snprintf(c->internal_ca_buf, sizeof(c->internal_ca_buf), "%s/../internal-ca", o->cert_dir);
        o->internal_ca_dir = c->internal_ca_buf;
    }
    return 0;
}

/* --check (like nginx -t; the supervisor runs it before it starts or reloads certd): what the
 * daemon would only find out at its first order. Every public CA has terms of service. */
static int check_config(const certd_opts *o)
{
    for (size_t i = 0; i < o->wanted_count; i++) {
        if (!o->wanted[i].internal && !o->agree_tos) {
            log_error("site '%s' has tls: acme, but certd.agree_tos is not true: the CA issues "
                      "nothing before its terms of service are agreed to",
                      o->wanted[i].names[0]);
            return EXIT_USAGE;
        }
    }
    log_info("configuration ok");
    return EXIT_OK;
}

/* With a cluster map, certd shares through etcd (docs/cluster.md); its secrets are read now,
 * so a missing or short secret_key_file is a configuration error, not a failed renewal. */
static int open_cluster(certd_cli *c)
{
    if (c->cfg.cluster.etcd.count == 0)
        return 0;
    if (c->cmd == CMD_ROLLOVER) {
        log_error("--rollover-account-key is not supported in a cluster yet: every host shares "
                  "one account key through etcd");
        return -1;
    }
    c->o.cluster = cluster_open(&c->cfg.cluster, c->cfg.state_dir);
    return c->o.cluster ? 0 : -1;
}

static int run(certd_cli *c)
{
    certd_opts *o = &c->o;
    bool changed = false;
    int rc;
    if (open_cluster(c) < 0)
        return EXIT_USAGE;
    switch (c->cmd) {
    case CMD_ISSUE:
        rc = ops_issue(o, &c->cli_names, o->force, &changed);
        break;
    case CMD_RENEW:
        rc = ops_renew_all(o, o->force, &changed);
        break;
    case CMD_LIST:
        return ops_list(o);
    case CMD_REVOKE:
        return ops_revoke(o, c->target);
    case CMD_ROLLOVER:
        return ops_rollover(o);
    case CMD_DAEMON:
        return daemon_run(o);
    case CMD_CHECK:
        return check_config(o);
    default:
        return EXIT_USAGE;
    }
    if (changed && !o->dry_run && reload_after_change(o) < 0)
        rc = EXIT_FAIL;
    if (rc == CLUSTER_BUSY) {
        log_error("not issued now: another host holds the lock, or etcd is out of reach");
        rc = EXIT_FAIL;
    }
    return rc;
}

/* reexec: certd is about to start over as its next self, which takes the cluster lease over. */
static void cleanup(certd_cli *c, bool reexec)
{
    for (size_t i = 0; i < c->o.wanted_count; i++)
        free(c->o.wanted[i].names);
    free(c->o.wanted);
    if (reexec && c->o.cluster)
        cluster_hand_over(c->o.cluster);
    else
        cluster_close(c->o.cluster);
    config_free(&c->cfg);
}

int main(int argc, char **argv)
{
    static certd_cli c;
    defaults(&c);
    log_init("certd", HLOG_INFO, false);
    int parsed = parse(&c, argc, argv);
    if (parsed != 0 || finish(&c) < 0) {
        cleanup(&c, false);
        return parsed > 0 ? EXIT_OK : EXIT_USAGE;
    }
    log_init("certd", (log_level)log_level_parse(c.cfg.log_level),
             c.cfg.log_format == LOG_FORMAT_JSON);
    wait_setup();
    curl_global_init(CURL_GLOBAL_DEFAULT);
    int rc = run(&c);
    cleanup(&c, rc == CERTD_EXIT_REEXEC); /* the etcd clients before curl's global state */
    curl_global_cleanup();
    if (rc == CERTD_EXIT_REEXEC) {
        /* A fresh start is the simplest complete reload: same pid, every setting re-read. */
        execv("/proc/self/exe", argv);
        log_error("cannot re-execute certd: %s", strerror(errno));
        return EXIT_FAIL;
    }
    return rc;
}
