/* certd: the ACME client and renewal daemon. Flags as certbot and lego users know them; with
 * -c the stack's YAML file supplies the defaults (flags still win). */
#include "certd/certd.h"

#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "shared/config.h"
#include "shared/log.h"

#define DEFAULT_STATE "/var/lib/hearth"

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
    const char *config_path;
    const char *log_level;
    bool staging;
    bool server_given;
    bool internal;
    char internal_ca_buf[4096];
    hearth_config cfg;
    bool cfg_loaded;
} cli;

enum {
    OPT_ISSUE = 256,
    OPT_SERVER,
    OPT_STAGING,
    OPT_CA_BUNDLE,
    OPT_EMAIL,
    OPT_AGREE_TOS,
    OPT_KEY_TYPE,
    OPT_EAB_KID,
    OPT_EAB_HMAC,
    OPT_WEBROOT,
    OPT_CERT_DIR,
    OPT_ACCOUNT_DIR,
    OPT_DRY_RUN,
    OPT_LIST,
    OPT_RENEW,
    OPT_FORCE,
    OPT_REVOKE,
    OPT_REASON,
    OPT_ROLLOVER,
    OPT_DAEMON,
    OPT_CHECK,
    OPT_CHECK_INTERVAL,
    OPT_RENEW_FRACTION,
    OPT_RETRY_MIN,
    OPT_RETRY_MAX,
    OPT_TIMEOUT,
    OPT_RELOAD_PIDFILE,
    OPT_DEPLOY_HOOK,
    OPT_LOG_LEVEL,
    OPT_VERSION,
    OPT_INTERNAL,
    OPT_INTERNAL_CA_DIR,
};

static const struct option long_opts[] = {
    {"issue", required_argument, NULL, OPT_ISSUE},
    {"domain", required_argument, NULL, 'd'},
    {"server", required_argument, NULL, OPT_SERVER},
    {"staging", no_argument, NULL, OPT_STAGING},
    {"ca-bundle", required_argument, NULL, OPT_CA_BUNDLE},
    {"email", required_argument, NULL, OPT_EMAIL},
    {"agree-tos", no_argument, NULL, OPT_AGREE_TOS},
    {"key-type", required_argument, NULL, OPT_KEY_TYPE},
    {"eab-kid", required_argument, NULL, OPT_EAB_KID},
    {"eab-hmac-key", required_argument, NULL, OPT_EAB_HMAC},
    {"webroot", required_argument, NULL, OPT_WEBROOT},
    {"cert-dir", required_argument, NULL, OPT_CERT_DIR},
    {"account-dir", required_argument, NULL, OPT_ACCOUNT_DIR},
    {"internal", no_argument, NULL, OPT_INTERNAL},
    {"internal-ca-dir", required_argument, NULL, OPT_INTERNAL_CA_DIR},
    {"dry-run", no_argument, NULL, OPT_DRY_RUN},
    {"list", no_argument, NULL, OPT_LIST},
    {"renew", no_argument, NULL, OPT_RENEW},
    {"force", no_argument, NULL, OPT_FORCE},
    {"revoke", required_argument, NULL, OPT_REVOKE},
    {"reason", required_argument, NULL, OPT_REASON},
    {"rollover-account-key", no_argument, NULL, OPT_ROLLOVER},
    {"daemon", no_argument, NULL, OPT_DAEMON},
    {"check", no_argument, NULL, OPT_CHECK},
    {"check-interval", required_argument, NULL, OPT_CHECK_INTERVAL},
    {"renew-fraction", required_argument, NULL, OPT_RENEW_FRACTION},
    {"retry-min", required_argument, NULL, OPT_RETRY_MIN},
    {"retry-max", required_argument, NULL, OPT_RETRY_MAX},
    {"timeout", required_argument, NULL, OPT_TIMEOUT},
    {"reload-pidfile", required_argument, NULL, OPT_RELOAD_PIDFILE},
    {"deploy-hook", required_argument, NULL, OPT_DEPLOY_HOOK},
    {"log-level", required_argument, NULL, OPT_LOG_LEVEL},
    {"config", required_argument, NULL, 'c'},
    {"help", no_argument, NULL, 'h'},
    {"version", no_argument, NULL, OPT_VERSION},
    {NULL, 0, NULL, 0},
};

static void usage(FILE *f)
{
    fputs("usage: certd --issue DOMAIN [-d DOMAIN ...] [options]   obtain a certificate\n"
          "       certd --renew [--force]                       renew what is due\n"
          "       certd --list                                  show stored certificates\n"
          "       certd --revoke DOMAIN [--reason N]            revoke a stored certificate\n"
          "       certd --rollover-account-key                  replace the account key\n"
          "       certd --daemon [-d DOMAIN ...]                keep certificates renewed\n"
          "       certd --check -c FILE                         validate the config and exit\n"
          "options:\n"
          "  -c, --config FILE       the stack's YAML file (flags override it)\n"
          "  --server URL            ACME directory (default Let's Encrypt); --staging\n"
          "  --ca-bundle FILE        trust this CA bundle for the ACME server\n"
          "  --email ADDR, --agree-tos, --eab-kid KID, --eab-hmac-key KEY\n"
          "  --key-type T            ec256 (default), ec384, rsa2048, rsa3072, rsa4096\n"
          "  --webroot DIR           challenges go to DIR/.well-known/acme-challenge\n"
          "  --cert-dir DIR          one directory per certificate (fullchain.pem, privkey.pem)\n"
          "  --account-dir DIR       account keys (default CERT_DIR/../accounts)\n"
          "  --internal              sign with the local CA instead of ACME (tls: internal)\n"
          "  --internal-ca-dir DIR   the local CA (default CERT_DIR/../internal-ca)\n"
          "  --dry-run               obtain but write nothing (staging unless --server)\n"
          "  --check-interval D      daemon: how often to check (default 12h)\n"
          "  --renew-fraction F      renew with less than F of the lifetime left (1/3)\n"
          "  --retry-min D, --retry-max D   daemon: failure backoff bounds (1m, 12h)\n"
          "  --timeout D             limit for one issuance, polling included (5m)\n"
          "  --reload-pidfile FILE   SIGHUP that process after a change\n"
          "  --deploy-hook CMD       run CMD (sh -c) after a change\n"
          "  --log-level L           debug, info, warn, error\n"
          "exit: 0 done, 1 failure, 2 usage, 3 nothing to do\n",
          f);
}

static void defaults(cli *c)
{
    certd_opts *o = &c->o;
    o->server = CERTD_LE_PRODUCTION;
    o->key_type = KEY_EC256;
    o->cert_dir = DEFAULT_STATE "/certs";
    o->webroot = DEFAULT_STATE "/acme";
    o->revoke_reason = 0;
    o->check_interval_ms = 12 * 3600 * 1000LL;
    o->renew_fraction = 1.0 / 3;
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

static int set_cmd(cli *c, command cmd)
{
    if (c->cmd != CMD_NONE && c->cmd != cmd) {
        fprintf(stderr, "certd: choose one of --issue, --renew, --list, --revoke, "
                        "--rollover-account-key, --daemon, --check\n");
        return -1;
    }
    c->cmd = cmd;
    return 0;
}

static int duration(const char *flag, const char *text, int64_t *ms)
{
    if (config_parse_duration(text, ms) < 0 || *ms <= 0) {
        fprintf(stderr, "certd: %s: bad duration '%s' (e.g. 500ms, 30s, 5m, 12h)\n", flag, text);
        return -1;
    }
    return 0;
}

static int number_arg(cli *c, int opt, const char *arg)
{
    certd_opts *o = &c->o;
    char *end;
    switch (opt) {
    case OPT_REASON:
        o->revoke_reason = (int)strtol(arg, &end, 10);
        if (*end || end == arg || o->revoke_reason < 0 || o->revoke_reason > 10 ||
            o->revoke_reason == 7) {
            fprintf(stderr, "certd: --reason: a RFC 5280 reason code (0-10, not 7)\n");
            return -1;
        }
        return 0;
    case OPT_RENEW_FRACTION:
        o->renew_fraction = strtod(arg, &end);
        if (*end || end == arg || !(o->renew_fraction > 0 && o->renew_fraction < 1)) {
            fprintf(stderr, "certd: --renew-fraction: a number between 0 and 1\n");
            return -1;
        }
        return 0;
    case OPT_CHECK_INTERVAL:
        return duration("--check-interval", arg, &o->check_interval_ms);
    case OPT_RETRY_MIN:
        return duration("--retry-min", arg, &o->backoff_min_ms);
    case OPT_RETRY_MAX:
        return duration("--retry-max", arg, &o->backoff_max_ms);
    case OPT_TIMEOUT:
        return duration("--timeout", arg, &o->timeout_ms);
    }
    return -1;
}

/* Flags that only store their argument (or true) in a field of the options. */
static const struct {
    int opt;
    size_t offset;
} string_flags[] =
    {
        {OPT_SERVER, offsetof(certd_opts, server)},
        {OPT_CA_BUNDLE, offsetof(certd_opts, ca_bundle)},
        {OPT_EMAIL, offsetof(certd_opts, email)},
        {OPT_EAB_KID, offsetof(certd_opts, eab_kid)},
        {OPT_EAB_HMAC, offsetof(certd_opts, eab_hmac_key)},
        {OPT_WEBROOT, offsetof(certd_opts, webroot)},
        {OPT_CERT_DIR, offsetof(certd_opts, cert_dir)},
        {OPT_ACCOUNT_DIR, offsetof(certd_opts, account_dir)},
        {OPT_INTERNAL_CA_DIR, offsetof(certd_opts, internal_ca_dir)},
        {OPT_RELOAD_PIDFILE, offsetof(certd_opts, reload_pidfile)},
        {OPT_DEPLOY_HOOK, offsetof(certd_opts, deploy_hook)},
},
  bool_flags[] = {
      {OPT_AGREE_TOS, offsetof(certd_opts, agree_tos)},
      {OPT_DRY_RUN, offsetof(certd_opts, dry_run)},
      {OPT_FORCE, offsetof(certd_opts, force)},
};

/* 1 when opt was one of the plain field flags. */
static int apply_field(cli *c, int opt, char *arg)
{
    char *base = (char *)&c->o;
    for (size_t i = 0; i < sizeof(string_flags) / sizeof(string_flags[0]); i++) {
        if (string_flags[i].opt == opt) {
            *(char **)(base + string_flags[i].offset) = arg;
            return 1;
        }
    }
    for (size_t i = 0; i < sizeof(bool_flags) / sizeof(bool_flags[0]); i++) {
        if (bool_flags[i].opt == opt) {
            *(bool *)(base + bool_flags[i].offset) = true;
            return 1;
        }
    }
    return 0;
}

static int apply_command(cli *c, int opt, char *arg)
{
    switch (opt) {
    case OPT_ISSUE:
        c->target = arg;
        return set_cmd(c, CMD_ISSUE);
    case OPT_REVOKE:
        c->target = arg;
        return set_cmd(c, CMD_REVOKE);
    case OPT_LIST:
        return set_cmd(c, CMD_LIST);
    case OPT_RENEW:
        return set_cmd(c, CMD_RENEW);
    case OPT_ROLLOVER:
        return set_cmd(c, CMD_ROLLOVER);
    case OPT_CHECK:
        return set_cmd(c, CMD_CHECK);
    default:
        return set_cmd(c, CMD_DAEMON);
    }
}

static int apply_opt(cli *c, int opt, char *arg)
{
    c->server_given |= opt == OPT_SERVER;
    if (apply_field(c, opt, arg))
        return 0;
    switch (opt) {
    case OPT_ISSUE:
    case OPT_REVOKE:
    case OPT_LIST:
    case OPT_RENEW:
    case OPT_ROLLOVER:
    case OPT_DAEMON:
    case OPT_CHECK:
        return apply_command(c, opt, arg);
    case 'd':
        return add_name(&c->cli_names, arg);
    case OPT_KEY_TYPE:
        if (key_type_parse(arg, &c->o.key_type) == 0)
            return 0;
        fprintf(stderr, "certd: --key-type: ec256, ec384, rsa2048, rsa3072 or rsa4096\n");
        return -1;
    case OPT_STAGING:
        c->staging = true;
        return 0;
    case OPT_INTERNAL:
        c->internal = true;
        return 0;
    case OPT_LOG_LEVEL:
        c->log_level = arg;
        return 0;
    case 'c':
        return 0; /* read in the first pass */
    default:
        return number_arg(c, opt, arg);
    }
}

/* The config file's certd section and its ACME sites become the defaults. */
static int apply_config(cli *c)
{
    char err[512];
    if (config_load(&c->cfg, c->config_path, err, sizeof(err)) < 0) {
        fprintf(stderr, "certd: %s\n", err);
        return -1;
    }
    c->cfg_loaded = true;
    c->o.reexec_on_hup = true;
    const config_certd *k = &c->cfg.certd;
    certd_opts *o = &c->o;
    o->server = k->server ? k->server : o->server;
    o->email = k->email, o->agree_tos = k->agree_tos, o->ca_bundle = k->ca_bundle;
    o->eab_kid = k->eab_kid, o->eab_hmac_key = k->eab_hmac_key, o->key_type = k->key_type;
    o->cert_dir = k->cert_dir ? k->cert_dir : o->cert_dir;
    o->webroot = k->webroot ? k->webroot : o->webroot;
    if (k->check_interval_ms > 0)
        o->check_interval_ms = k->check_interval_ms;
    if (k->renew_remaining_fraction > 0 && k->renew_remaining_fraction < 1)
        o->renew_fraction = k->renew_remaining_fraction;
    if (c->cfg.log_level)
        c->log_level = c->cfg.log_level;
    o->wanted = calloc(c->cfg.site_count + 1, sizeof(certd_names));
    for (size_t i = 0; o->wanted && i < c->cfg.site_count; i++) {
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

static int parse(cli *c, int argc, char **argv)
{
    int opt;
    const char *shorts = "d:c:h";
    while ((opt = getopt_long(argc, argv, shorts, long_opts, NULL)) != -1) {
        if (opt == 'c')
            c->config_path = optarg;
        else if (opt == 'h') {
            usage(stdout);
            exit(EXIT_OK);
        } else if (opt == OPT_VERSION) {
            puts("certd (hearth) 0.1.0");
            exit(EXIT_OK);
        } else if (opt == '?')
            return -1;
    }
    if (optind < argc) {
        fprintf(stderr, "certd: unexpected argument '%s'\n", argv[optind]);
        return -1;
    }
    if (c->config_path && apply_config(c) < 0)
        return -1;
    optind = 0; /* second pass: flags over the file */
    while ((opt = getopt_long(argc, argv, shorts, long_opts, NULL)) != -1)
        if (apply_opt(c, opt, optarg) < 0)
            return -1;
    return 0;
}

/* Cross-flag rules, once everything is known. */
static int finish(cli *c)
{
    certd_opts *o = &c->o;
    if (c->staging || (o->dry_run && !c->server_given && !c->cfg_loaded))
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
    if (c->log_level && log_level_parse(c->log_level) < 0) {
        fprintf(stderr, "certd: unknown log level '%s'\n", c->log_level);
        return -1;
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

static int run(cli *c)
{
    certd_opts *o = &c->o;
    bool changed = false;
    int rc;
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
    return rc;
}

static void cleanup(cli *c)
{
    for (size_t i = 0; i < c->o.wanted_count; i++)
        free(c->o.wanted[i].names);
    free(c->o.wanted);
    if (c->cfg_loaded)
        config_free(&c->cfg);
}

int main(int argc, char **argv)
{
    static cli c;
    defaults(&c);
    log_init("certd", LOG_INFO, false);
    if (parse(&c, argc, argv) < 0 || finish(&c) < 0) {
        cleanup(&c);
        return EXIT_USAGE;
    }
    if (c.log_level)
        log_set_level((log_level)log_level_parse(c.log_level));
    if (c.cfg_loaded && c.cfg.log_format == LOG_FORMAT_JSON)
        log_init("certd", log_get_level(), true);
    wait_setup();
    curl_global_init(CURL_GLOBAL_DEFAULT);
    int rc = run(&c);
    curl_global_cleanup();
    cleanup(&c);
    if (rc == CERTD_EXIT_REEXEC) {
        /* A fresh start is the simplest complete reload: same pid, every setting re-read. */
        execv("/proc/self/exe", argv);
        log_error("cannot re-execute certd: %s", strerror(errno));
        return EXIT_FAIL;
    }
    return rc;
}
