/* node.h - the raftkv-node daemon object: a replica plus its sockets.
 *
 * main.c parses the command line and the config, then node_new() opens the
 * data directory and binds (or inherits) the peer, client and admin sockets,
 * and node_run() serves until SIGTERM/SIGINT, handing leadership over first.
 */
#ifndef RAFTKV_NODE_NODE_H
#define RAFTKV_NODE_NODE_H

#include "common/config.h"

#include <stdbool.h>
#include <stdint.h>

struct node;

/* join: never bootstrap; an empty data directory waits to be added by the
 * leader (raftkvctl member add). */
int node_new(struct node **out, const struct config *cfg, uint32_t id, bool join, char *err,
             size_t errlen);
/* Serve until asked to stop; returns the process exit code. */
int node_run(struct node *n);
void node_free(struct node *n);

#endif
