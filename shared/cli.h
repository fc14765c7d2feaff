/* The command line of every hearth program: a table of flags, most of them naming the config
 * key they set. The YAML file (where the program takes one) is loaded first, then each flag is
 * applied in order through the schema's own parsing and bounds (config_set), so a flag and the
 * file accept exactly the same values. --help is printed from the table, --version is the
 * build's in all four programs. */
#ifndef HEARTH_CLI_H
#define HEARTH_CLI_H

#include <stdbool.h>
#include <stddef.h>

#include "shared/config.h"

enum {
    CLI_REPLACE = 1 << 0,  /* repeatable; its first use empties the file's list at key */
    CLI_CTX_BOOL = 1 << 1, /* no argument: sets the bool at ctx + field */
    CLI_CTX_ARG = 1 << 2,  /* points the char * at ctx + field to the argument (in argv) */
};

typedef struct cli_flag cli_flag;

/* What a program's own flag handler gets. */
typedef struct {
    hearth_config *cfg; /* NULL for a program that loads no config here (the supervisor) */
    void *ctx;          /* the program's own options */
    const cli_flag *flag;
    char *err;
    size_t errlen;
} cli_call;

/* 0, or -1 with a message in call->err (cli_fail, or the schema's through cli_set). */
typedef int (*cli_fn)(cli_call *call, const char *arg);

struct cli_flag {
    const char *name;  /* "max-header-size" is --max-header-size */
    char letter;       /* 'w': -w as well; 0: none */
    const char *arg;   /* the argument's name in --help ("SIZE"); NULL: the flag takes none */
    const char *key;   /* the config key it sets ("edge.max_header_size"); NULL: fn only */
    const char *value; /* for a flag without argument: what it sets key to ("true") */
    cli_fn fn;         /* the program's own handling; it may call cli_set for key */
    unsigned opts;     /* CLI_* */
    size_t field;      /* CLI_CTX_*: offsetof the program's own setting in ctx */
    const char *help;  /* one line for --help */
};

typedef struct {
    const char *prog;          /* "edge": the name in messages and --version */
    const char *usage;         /* the lines --help starts with */
    const char *notes;         /* the lines --help ends with; NULL: none */
    const char *version_extra; /* a second line for --version; NULL: none */
    const cli_flag *flags;     /* ends with an entry whose name is NULL */
    const char *config_flag;   /* the flag naming the YAML file, a flag of the table */
    const char *args_key;      /* the list key positional arguments replace; NULL: see below */
    bool keep_args;            /* positional arguments are the caller's (not an error) */
    /* Defaults of the program run without a file, over the schema's (e.g. no :80). */
    void (*standalone)(hearth_config *cfg);
} cli_spec;

typedef enum {
    CLI_RUN,   /* parsed: go on */
    CLI_DONE,  /* --help or --version printed: exit EXIT_OK */
    CLI_ERROR, /* a usage or config error, in err: exit EXIT_USAGE */
} cli_result;

typedef struct {
    const char *config_path; /* the file given (points into argv), or NULL */
    int first_arg;           /* argv index of the first positional argument */
} cli_parsed;

/* Parses argv (which getopt permutes: positional arguments end up last). With cfg, the file
 * named by spec->config_flag is loaded into it (else the defaults and spec->standalone), then
 * the flags are applied; without cfg the flags only run their handlers. On CLI_ERROR cfg holds
 * nothing to free; otherwise the caller frees it with config_free. */
cli_result cli_parse(const cli_spec *spec, int argc, char **argv, hearth_config *cfg, void *ctx,
                     cli_parsed *out, char *err, size_t errlen);

/* For handlers: sets call->flag->key (or key) from text through the schema. */
int cli_set(cli_call *call, const char *text);
int cli_set_key(cli_call *call, const char *key, const char *text);
/* For handlers: a message "--flag: ..." in call->err; returns -1. */
int cli_fail(cli_call *call, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* A handler for --log-level: the names log_level_parse knows ("warning" too), stored in key. */
int cli_log_level(cli_call *call, const char *arg);

#endif
