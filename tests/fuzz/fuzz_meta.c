/* fuzz_meta.c - libFuzzer target: the hard-state file.  The input is the
 * `meta` file of an otherwise empty data dir, opened with store_open(). */
#include "store_dir.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    store_dir_run(NULL, "meta", data, size);
    return 0;
}
