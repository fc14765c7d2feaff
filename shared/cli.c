/* The command-line layer (cli.h): one getopt pass finds --help, --version and the config file,
 * the second applies the flags in order over the loaded config. */
#include "shared/cli.h"

#include <getopt.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "shared/log.h"

#ifndef HEARTH_VERSION
#error "the build defines HEARTH_VERSION (meson's project version)"
#endif

#define FIRST_LONG_ONLY 256 /* getopt's value for a flag without a letter: this + its index */
#define HELP_WIDTH 28       /* where --help's descriptions start */

/* Every program has these, after its own flags. */
static const cli_flag builtins[] = {
    {"help", 'h', .help = "print this help and exit"},
    {"version", 'V', .help = "print the version and exit"},
};
enum { BUILTIN_HELP, BUILTIN_VERSION, BUILTIN_COUNT };

typedef struct {
    const cli_spec *spec;
    size_t own; /* flags in spec->flags; the builtins follow */
    struct option *longopts;
    char shorts[2 * 52 + 2];
} table;

static const cli_flag *flag_at(const table *t, size_t i)
{
    return i < t->own ? &t->spec->flags[i] : &builtins[i - t->own];
}

/* The index of the flag getopt returned val for; -1 for none. */
static int flag_index(const table *t, int val)
{
    for (size_t i = 0; i < t->own + BUILTIN_COUNT; i++) {
        const cli_flag *f = flag_at(t, i);
        if (f->letter ? f->letter == val : val == FIRST_LONG_ONLY + (int)i)
            return (int)i;
    }
    return -1;
}

static int table_build(table *t, const cli_spec *spec)
{
    size_t used = 0;
    t->spec = spec;
    for (t->own = 0; spec->flags[t->own].name; t->own++)
        ;
    if (!(t->longopts = calloc(t->own + BUILTIN_COUNT + 1, sizeof(*t->longopts))))
        return -1;
    t->shorts[used++] = ':'; /* a missing value comes back as ':', not '?' */
    for (size_t i = 0; i < t->own + BUILTIN_COUNT; i++) {
        const cli_flag *f = flag_at(t, i);
        t->longopts[i] = (struct option){f->name, f->arg ? required_argument : no_argument, NULL,
                                         f->letter ? f->letter : FIRST_LONG_ONLY + (int)i};
        if (f->letter && used + 3 <= sizeof(t->shorts)) {
            t->shorts[used++] = f->letter;
            if (f->arg)
                t->shorts[used++] = ':';
        }
    }
    t->shorts[used] = '\0';
    return 0;
}

static int next_flag(const table *t, int argc, char **argv)
{
    return getopt_long(argc, argv, t->shorts, t->longopts, NULL);
}

static void print_flag(FILE *out, const cli_flag *f)
{
    char left[80];
    int n = snprintf(left, sizeof(left), "%c%c%c --%s%s%s", f->letter ? '-' : ' ',
                     f->letter ? f->letter : ' ', f->letter ? ',' : ' ', f->name, f->arg ? " " : "",
                     f->arg ? f->arg : "");
    if (n > HELP_WIDTH)
        fprintf(out, "  %s\n  %*s", left, HELP_WIDTH, "");
    else
        fprintf(out, "  %-*s", HELP_WIDTH, left);
    fprintf(out, " %s", f->help ? f->help : "");
    if (f->key)
        fprintf(out, " [%s]", f->key);
    fputc('\n', out);
}

static void print_help(const table *t)
{
    fputs(t->spec->usage, stdout);
    puts("flags (a [key] is the config file's setting the flag overrides):");
    for (size_t i = 0; i < t->own + BUILTIN_COUNT; i++)
        print_flag(stdout, flag_at(t, i));
    if (t->spec->notes)
        fputs(t->spec->notes, stdout);
}

static void print_version(const cli_spec *spec)
{
    /* "edge (hearth) 0.1.0"; the supervisor is hearth itself */
    if (strcmp(spec->prog, "hearth") == 0)
        printf("hearth %s\n", HEARTH_VERSION);
    else
        printf("%s (hearth) %s\n", spec->prog, HEARTH_VERSION);
    if (spec->version_extra)
        puts(spec->version_extra);
}

static cli_result bad_flag(const table *t, int val, char **argv, char *err, size_t errlen)
{
    int i = val == ':' ? flag_index(t, optopt) : -1;
    if (i >= 0)
        snprintf(err, errlen, "--%s needs a value (%s)", flag_at(t, (size_t)i)->name,
                 flag_at(t, (size_t)i)->arg);
    else if (optopt)
        snprintf(err, errlen, "unknown flag '-%c' (see --help)", optopt);
    else
        snprintf(err, errlen, "unknown flag '%s' (see --help)", argv[optind - 1]);
    return CLI_ERROR;
}

static bool is_config_flag(const table *t, const cli_flag *f)
{
    return t->spec->config_flag && strcmp(f->name, t->spec->config_flag) == 0;
}

/* The flags that decide what happens before any is applied: --help, --version, the file. */
static cli_result first_pass(const table *t, int argc, char **argv, cli_parsed *out, char *err,
                             size_t errlen)
{
    int val;
    optind = 0; /* glibc: start over, as for a new argv */
    opterr = 0; /* our messages name the flag and say where help is */
    while ((val = next_flag(t, argc, argv)) != -1) {
        int i = flag_index(t, val);
        if (i < 0)
            return bad_flag(t, val, argv, err, errlen);
        if ((size_t)i == t->own + BUILTIN_HELP) {
            print_help(t);
            return CLI_DONE;
        }
        if ((size_t)i == t->own + BUILTIN_VERSION) {
            print_version(t->spec);
            return CLI_DONE;
        }
        if (is_config_flag(t, flag_at(t, (size_t)i)))
            out->config_path = optarg;
    }
    out->first_arg = optind;
    if (optind < argc && !t->spec->args_key && !t->spec->keep_args) {
        snprintf(err, errlen, "unexpected argument '%s' (see --help)", argv[optind]);
        return CLI_ERROR;
    }
    return CLI_RUN;
}

static int apply_flag(const table *t, int i, bool *used, cli_call *call)
{
    const cli_flag *f = flag_at(t, (size_t)i);
    if ((size_t)i >= t->own || is_config_flag(t, f))
        return 0;
    call->flag = f;
    if ((f->opts & CLI_REPLACE) && !used[i] && call->cfg)
        config_clear(call->cfg, f->key);
    used[i] = true;
    if (f->opts & CLI_CTX_BOOL)
        *(bool *)((char *)call->ctx + f->field) = true;
    else if (f->opts & CLI_CTX_ARG)
        *(char **)((char *)call->ctx + f->field) = optarg;
    else
        return f->fn ? f->fn(call, optarg) : cli_set(call, optarg ? optarg : f->value);
    return 0;
}

/* Flags in the order given, so a later one wins and site flags follow their --server-name. */
static int second_pass(const table *t, int argc, char **argv, cli_call *call)
{
    bool *used = calloc(t->own + 1, sizeof(bool));
    int val, rc = used ? 0 : -1;
    optind = 0;
    while (rc == 0 && (val = next_flag(t, argc, argv)) != -1)
        rc = apply_flag(t, flag_index(t, val), used, call);
    free(used);
    if (rc < 0 || !t->spec->args_key || optind >= argc)
        return rc;
    config_clear(call->cfg, t->spec->args_key); /* arguments replace the file's list */
    for (int i = optind; i < argc; i++)
        if (config_set(call->cfg, t->spec->args_key, argv[i], "argument", call->err, call->errlen) <
            0)
            return -1;
    return 0;
}

static cli_result load(const cli_spec *spec, hearth_config *cfg, const char *path, char *err,
                       size_t errlen)
{
    if (path)
        return config_load(cfg, path, err, errlen) < 0 ? CLI_ERROR : CLI_RUN;
    config_defaults(cfg);
    if (spec->standalone)
        spec->standalone(cfg);
    return CLI_RUN;
}

cli_result cli_parse(const cli_spec *spec, int argc, char **argv, hearth_config *cfg, void *ctx,
                     cli_parsed *out, char *err, size_t errlen)
{
    table t;
    memset(out, 0, sizeof(*out));
    if (cfg)
        memset(cfg, 0, sizeof(*cfg));
    if (table_build(&t, spec) < 0) {
        snprintf(err, errlen, "out of memory");
        return CLI_ERROR;
    }
    cli_result r = first_pass(&t, argc, argv, out, err, errlen);
    if (r == CLI_RUN && cfg)
        r = load(spec, cfg, out->config_path, err, errlen);
    cli_call call = {.cfg = cfg, .ctx = ctx, .err = err, .errlen = errlen};
    if (r == CLI_RUN && second_pass(&t, argc, argv, &call) < 0) {
        r = CLI_ERROR;
        config_free(cfg);
    }
    free(t.longopts);
    return r;
}

int cli_fail(cli_call *call, const char *fmt, ...)
{
    int n = snprintf(call->err, call->errlen, "--%s: ", call->flag->name);
    if (n >= 0 && (size_t)n < call->errlen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(call->err + n, call->errlen - (size_t)n, fmt, ap);
        va_end(ap);
    }
    return -1;
}

int cli_set_key(cli_call *call, const char *key, const char *text)
{
    char who[64];
    snprintf(who, sizeof(who), "--%s", call->flag->name);
    if (!call->cfg || !key)
        return cli_fail(call, "sets no config key"); /* a table without key or handler */
    return config_set(call->cfg, key, text, who, call->err, call->errlen);
}

int cli_set(cli_call *call, const char *text)
{
    return cli_set_key(call, call->flag->key, text);
}

int cli_log_level(cli_call *call, const char *arg)
{
    int level = log_level_parse(arg);
    if (level < 0)
        return cli_fail(call, "expected one of debug, info, warn, error, got '%s'", arg);
    return cli_set(call, log_level_name((log_level)level));
}
