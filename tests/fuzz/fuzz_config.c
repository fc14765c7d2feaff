/* libFuzzer target for the config loader: any bytes must give 0 or -1 with one message, and
 * config_free must leave nothing behind (ASan's leak check runs at exit). */
#include "shared/config.h"

#include <stdint.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    hearth_config cfg;
    char err[512];
    err[0] = '\0';
    if (config_load_string(&cfg, (const char *)data, size, "fuzz.yaml", err, sizeof(err)) == 0) {
        config_free(&cfg);
    } else if (err[0] == '\0' || strncmp(err, "fuzz.yaml:", 10) != 0) {
        __builtin_trap(); /* every failure must say why, and where */
    }
    return 0;
}
