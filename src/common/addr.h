/* addr.h - socket addresses as written in the config and on command lines:
 * "host:port", "[v6]:port", "unix:/path" and plain "/path", parsed into a
 * sockaddr and formatted back for logs.  Parsing is numeric-only and never
 * blocks; addr_resolve() adds name lookup for use at start-up only. */
#ifndef RAFTKV_COMMON_ADDR_H
#define RAFTKV_COMMON_ADDR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

/* Enough for "unix:" + the longest sun_path, or "[v6%scope]:65535". */
#define ADDR_STRLEN 128

struct addr {
    socklen_t len;                /* bytes of ss in use; 0 = empty */
    struct sockaddr_storage ss;   /* ss.ss_family: AF_INET, AF_INET6, AF_UNIX */
};

/* Split "host:port" / "[v6]:port" without interpreting host.  host gets the
 * bare host ("::1" for "[::1]:5"); "*" and an empty host mean "any".
 * -EINVAL on bad syntax or a port outside 0..65535, -ENAMETOOLONG when host
 * does not fit in hostcap.  Unix forms are not accepted here. */
int addr_split(const char *s, char *host, size_t hostcap, uint16_t *port);

/* Whether s is written as a unix socket ("unix:/path" or "/path"). */
bool addr_is_unix_str(const char *s);

/* Numeric parse of any accepted form into out.  Errors: -EINVAL (syntax),
 * -ENAMETOOLONG (unix path longer than sun_path), -EADDRNOTAVAIL (host is a
 * name, not an address: use addr_resolve).  Port 0 is accepted (ephemeral). */
int addr_parse(const char *s, struct addr *out);

/* addr_parse, falling back to getaddrinfo for host names.  May block on DNS:
 * call at start-up, never from the event loop.  -ENOENT when the name does
 * not resolve, -EAGAIN on a temporary resolver failure. */
int addr_resolve(const char *s, struct addr *out);

/* Copy a kernel-provided sockaddr (accept, getsockname).  -EINVAL if len is
 * too large or the family is not one of ours. */
int addr_from_sockaddr(struct addr *out, const struct sockaddr *sa, socklen_t len);

/* "1.2.3.4:5", "[::1]:5", "unix:/path"; "?" for an empty or unknown address.
 * Returns buf, always NUL-terminated (truncated if buflen is short). */
const char *addr_format(const struct addr *a, char *buf, size_t buflen);

int addr_family(const struct addr *a);
/* Port of an inet address, 0 for unix. */
uint16_t addr_port(const struct addr *a);
/* Path of a unix address, NULL otherwise. */
const char *addr_unix_path(const struct addr *a);

/* 127.0.0.0/8, ::1 or ::ffff:127.x.y.z: reachable from this host only.
 * False for unix addresses and wildcards. */
bool addr_is_loopback(const struct addr *a);

/* Same family, address and port (or same path for unix). */
bool addr_equal(const struct addr *a, const struct addr *b);

#endif
