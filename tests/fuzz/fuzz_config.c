/* libFuzzer target for the config loader: any bytes must give 0 or -1 with one message, and
 * config_free must leave nothing behind (ASan's leak check runs at exit). Run it from a scratch
 * copy of the seeds, since libFuzzer adds what it finds to the first corpus directory:
 *   CC=clang meson setup build-fuzz -Dfuzz=true && ninja -C build-fuzz
 *   cp -r tests/fuzz/corpus_config /tmp/corpus && build-fuzz/tests/fuzz_config \
 *       -dict=tests/fuzz/config.dict -max_total_time=600 /tmp/corpus */
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
