/* fuzz_tlsname.c - libFuzzer target: the certificate-name-to-node-id rule
 * (net_tls_name_node_id), which decides which member a TLS peer speaks
 * for.  Property: a name is accepted only if it is exactly the one
 * spelling net_tls_node_name() gives its id, so no two names map to one
 * id and no id is reached by a name a CA might issue for something else. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "net/tls.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint32_t id = 0;
    char back[NET_TLS_NAME_MAX];
    if (net_tls_name_node_id((const char *)data, size, &id) != 0)
        return 0;
    net_tls_node_name(id, back, sizeof(back));
    if (id == 0 || strlen(back) != size || memcmp(back, data, size) != 0)
        abort();
    return 0;
}
