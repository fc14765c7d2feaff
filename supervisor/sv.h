/* The supervisor's private declarations: the child table with its states and events, and the
 * pieces (listeners, notify socket, control socket, output relay) that stack.c wires together. */
#ifndef HEARTH_SUPERVISOR_SV_H
#define HEARTH_SUPERVISOR_SV_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>
#include <uv.h>

#include "shared/buf.h"
#include "shared/config.h"
#include "shared/exit_codes.h"
#include "shared/listen_addr.h"
#include "supervisor/policy.h"

/* What a child is doing. Every transition happens in child.c's table. */
typedef enum {
    CHILD_STOPPED,  /* not running, and not meant to be until told */
    CHILD_STARTING, /* spawned, READY=1 not yet received */
    CHILD_RUNNING,  /* READY=1 received */
    CHILD_BACKOFF,  /* exited unexpectedly; the timer restarts it */
    CHILD_STOPPING, /* stop signal sent; the timer escalates to SIGKILL */
    CHILD_FATAL,    /* crash loop past the limit: left down until an explicit restart */
} child_state;

typedef enum {
    EV_START,    /* bring it up */
    EV_READY,    /* READY=1 from its main pid */
    EV_EXIT,     /* reaped */
    EV_TIMER,    /* backoff over, or stop timeout reached */
    EV_STOP,     /* graceful stop (SIGTERM) */
    EV_FASTSTOP, /* fast stop (SIGINT) */
    EV_RESTART,  /* stop if running, then start at once; clears FATAL */
} child_event;

enum { CHILD_APPSERVER, CHILD_EDGE, CHILD_CERTD, CHILD_COUNT };

typedef struct supervisor supervisor;

/* One component's answer to a config (verify.c): its own --check, run in a throwaway process. */
typedef struct {
    bool checked;     /* the config enables it, so its check ran */
    bool ok;          /* the check passed */
    char detail[512]; /* why not: the last line the check printed */
} sv_verdict;

/* What a reload did to each component, by child id, for the reply and the log. */
typedef struct {
    char outcome[CHILD_COUNT][600]; /* "" when the reload did not concern it */
} sv_reload_report;

typedef struct {
    const char *name; /* "edge", "appserver", "certd" */
    char *path;       /* the binary */
    bool enabled;     /* false: the config gives it nothing to do */
    int id;           /* index in the child table: CHILD_EDGE, ... */
    child_state state;
    pid_t pid;
    uint64_t started_ms; /* uv_now() at spawn */
    int restarts;        /* unexpected exits followed by a restart */
    int last_status;     /* waitpid status of the last exit; valid when has_exited */
    bool has_exited;
    bool restart_after_stop;
    bool reload_pending; /* reload asked for before READY=1: SIGHUP once ready */
    int stop_signal;
    restart_policy policy;
    uv_timer_t timer;          /* backoff, or stop timeout */
    pid_t leftover_pgid;       /* a dead main process's group, still draining; 0: none */
    uv_timer_t leftover_timer; /* then SIGKILL */
    supervisor *sv;
} sv_child;

typedef struct {
    const char *key;      /* "edge.http" */
    const char *name;     /* LISTEN_FDNAMES entry: "http", "https" or "app" */
    int owner;            /* the child it is handed to */
    size_t index;         /* position in that list, for messages */
    char *spec;           /* as written in the config */
    listen_sockaddr addr; /* the one socket of spec's this is (a name can have several) */
    int fd;               /* -1 while shut (edge FATAL) */
} sv_listener;

typedef enum { STACK_RUNNING, STACK_STOPPING, STACK_DONE } stack_state;

struct supervisor {
    uv_loop_t *loop;
    hearth_config cfg;
    char *config_path; /* the file as given, absolute: what a reload reads */
    char *copy_path;   /* RUN_DIR/validated.yaml: the last validated config, what children run */
    bool drop_privs;
    uid_t uid;
    gid_t gid;
    sv_child children[CHILD_COUNT];
    sv_listener *listeners;
    size_t listener_count;
    /* notify socket the children report READY=1 on */
    int notify_fd;
    char *notify_path;
    uv_poll_t notify_poll;
    bool notify_polling; /* notify_poll initialised */
    /* control socket */
    char *control_path;
    uv_pipe_t control;
    bool control_open;
    int devnull_fd;
    stack_state state;
    bool fast_stop;
    int stop_index;  /* position in the stop order during a graceful stop */
    bool told_ready; /* READY=1 sent to systemd */
    bool advancing;  /* advance_stop() is on the stack */
    uv_timer_t done_timer;
    void *signals;      /* signals_set */
    char *pidfile_path; /* set once the pidfile is ours */
    /* the metrics endpoint (metrics.c); metrics_dir is NULL while metrics are off */
    char *metrics_dir;
    int metrics_fd;
    uv_tcp_t metrics_tcp;
    bool metrics_listening;
    bool cfg_loaded;
};

/* child.c: the state x event table */
void child_init(sv_child *c, supervisor *sv, int id, const char *name);
void child_free(sv_child *c);
void child_event_post(sv_child *c, child_event ev);
void child_exited(sv_child *c, int status);
void child_signal(sv_child *c, int signum);
const char *child_state_name(child_state s);
bool child_is_down(const sv_child *c);
/* "exit 1", "signal 9 (SIGKILL)" */
void child_describe_status(int status, char *out, size_t len);

/* leftovers.c: the workers a dead main process left in its process group */
void leftovers_init(sv_child *c);
/* SIGTERM the group now, SIGKILL it after the stop timeout (one group per child at a time) */
void leftovers_drain(sv_child *c, pid_t pgid);
/* SIGKILL whatever is left and close the timer: the stack is done */
void leftovers_close(sv_child *c);

/* spawn.c: fork + exec with the fds, environment and privileges a component expects */
pid_t spawn_child(supervisor *sv, sv_child *c);
/* `NAME --check` on config (a copy of origin, or the original when origin is NULL), as the
 * components' user; its stdout and stderr come out of the pipe end left in *out_fd. */
pid_t spawn_check(supervisor *sv, sv_child *c, const char *config, const char *origin, int *out_fd);

/* verify.c: a config is validated by the components too before they may run it */
/* Each component cfg enables checks path; -1 when any refuses (v says who and why). */
int verify_components(supervisor *sv, const hearth_config *cfg, const char *path,
                      const char *origin, sv_verdict v[CHILD_COUNT]);
/* Read the config file once, load and validate it, have the components check those bytes,
 * and make them the copy the components run: 0 with *cfg loaded, or -1 with the reason in err
 * (and the components' verdicts in v), the copy untouched. */
int verify_adopt_file(supervisor *sv, hearth_config *cfg, sv_verdict v[CHILD_COUNT], char *err,
                      size_t errlen);

/* output.c: relay a child's stdout/stderr lines to ours, prefixed with its name */
int output_attach(uv_loop_t *loop, int fd, const char *name);
void output_close_all(void);
void output_set_json(bool json);

/* listeners.c */
int listeners_open(supervisor *sv, char *err, size_t errlen);
int listeners_check(const hearth_config *cfg, char *err, size_t errlen);
void listeners_close(supervisor *sv);
void listeners_shut(supervisor *sv, int owner);
int listeners_reopen(supervisor *sv, int owner, char *err, size_t errlen);
/* A listening TCP socket on spec ("127.0.0.1:9145"), or -1 with the reason in why. */
int listeners_bind_tcp(const char *spec, char *why, size_t whylen);

/* metrics.c: the Prometheus endpoint (config `metrics`), gathering from the components' files */
/* Bind the `metrics` address (nothing when it is off) and start answering on it. */
int metrics_server_open(supervisor *sv, char *err, size_t errlen);
void metrics_server_close(supervisor *sv);
/* The whole stack's metrics in the text format: ours, then each running component's. */
void metrics_gather(supervisor *sv, buf *out);

/* notify.c: the NOTIFY_SOCKET the children speak sd_notify to */
int notify_open(supervisor *sv, char *err, size_t errlen);
void notify_close(supervisor *sv);

/* control_server.c: JSON lines over run_dir/supervisor.sock */
int control_server_open(supervisor *sv, char *err, size_t errlen);
void control_server_close(supervisor *sv);

/* stack.c: the whole stack */
sv_child *stack_child_by_name(supervisor *sv, const char *name);
/* The enabled component a control request names, or NULL with the reason (naming it) in err. */
sv_child *stack_child_requested(supervisor *sv, const char *name, char *err, size_t errlen);
sv_child *stack_child_by_pid(supervisor *sv, pid_t pid);
void stack_child_changed(supervisor *sv, sv_child *c);
void stack_wanted(const hearth_config *cfg, bool wanted[CHILD_COUNT]);
void stack_enable(supervisor *sv);
void stack_start_all(supervisor *sv);
int stack_watch_signals(supervisor *sv);
int stack_reload(supervisor *sv, const char *name, sv_reload_report *report, char *err,
                 size_t errlen);
/* SIGHUP to one component with the config it has (certd's "certificate changed"). */
void stack_signal_reload(supervisor *sv, sv_child *c, char *outcome, size_t len);
void stack_stop(supervisor *sv, bool fast);
void stack_reopen_logs(supervisor *sv);

/* start.c / checks.c */
int sv_validate(const hearth_config *cfg, char *err, size_t errlen);
int sv_locate(const char *name, char **path, char *err, size_t errlen);
int sv_start(const char *config_path);
int sv_check(const char *config_path, bool online);
/* online.c: `check --online`, on a config that passed the offline checks; the exit code. */
int sv_check_online(const hearth_config *cfg);
int sv_client(int argc, char **argv, const char *config_path, const char *socket_path);

#endif
