/* fuzz_config.c - libFuzzer target: the config file parser
 * (config_parse_string, then config_validate when parsing succeeds). */
#include <stdint.h>

#include "common/config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct config cfg;
    char err[512];
    if (config_init(&cfg) < 0)
        return 0;
    if (config_parse_string(&cfg, "fuzz.conf", (const char *)data, size, err, sizeof(err)) == 0)
        (void)config_validate(&cfg, err, sizeof(err));
    config_free(&cfg);
    return 0;
}
