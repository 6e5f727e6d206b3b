/* fuzz_tlsname.c - libFuzzer target: the certificate-name rules.
 * net_tls_name_node_id decides which member a TLS peer speaks for: a name
 * is accepted only if it is exactly the one spelling net_tls_node_name()
 * gives its id, so no two names map to one id and no id is reached by a
 * name a CA might issue for something else.  rpc_role_from_cert_name
 * decides a client's rights: an accepted name starts "raftkv-", gives a
 * role of read, write or admin, and a client name spells that role right
 * after "raftkv-client-". */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "net/tls.h"
#include "rpc/rpc.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_role(const uint8_t *data, size_t size)
{
    static const char client[] = "raftkv-client-";
    enum rpc_role r;
    if (rpc_role_from_cert_name((const char *)data, size, &r) != 0)
        return;
    if (r < RPC_ROLE_READ || r > RPC_ROLE_ADMIN || size < 7 || memcmp(data, "raftkv-", 7) != 0)
        abort();
    size_t n = sizeof(client) - 1, rl = strlen(rpc_role_name(r));
    if (size >= n && memcmp(data, client, n) == 0 &&
        (size < n + rl || memcmp(data + n, rpc_role_name(r), rl) != 0 ||
         (size > n + rl && (data[n + rl] != '-' || size == n + rl + 1))))
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint32_t id = 0;
    check_role(data, size);
    char back[NET_TLS_NAME_MAX];
    if (net_tls_name_node_id((const char *)data, size, &id) != 0)
        return 0;
    net_tls_node_name(id, back, sizeof(back));
    if (id == 0 || strlen(back) != size || memcmp(back, data, size) != 0)
        abort();
    return 0;
}
