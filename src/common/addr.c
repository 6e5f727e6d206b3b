/* addr.c - parsing and formatting of "host:port", "[v6]:port", "unix:/path"
 * and "/path".  Everything but addr_resolve() is pure and non-blocking, so
 * it is safe on the event loop and on untrusted strings. */
#include "common/addr.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/un.h>

#define UNIX_PREFIX "unix:"

bool addr_is_unix_str(const char *s)
{
    return s[0] == '/' || strncmp(s, UNIX_PREFIX, strlen(UNIX_PREFIX)) == 0;
}

static int parse_port(const char *s, uint16_t *port)
{
    unsigned v = 0;

    if (*s == '\0')
        return -EINVAL;
    for (; *s; s++) {
        if (*s < '0' || *s > '9')
            return -EINVAL;
        v = v * 10 + (unsigned)(*s - '0');
        if (v > 65535)
            return -EINVAL;
    }
    *port = (uint16_t)v;
    return 0;
}

int addr_split(const char *s, char *host, size_t hostcap, uint16_t *port)
{
    const char *h, *colon;
    size_t hlen;

    if (addr_is_unix_str(s))
        return -EINVAL;
    if (s[0] == '[') {
        const char *close = strchr(s, ']');
        if (!close || close[1] != ':')
            return -EINVAL;
        h = s + 1;
        hlen = (size_t)(close - h);
        colon = close + 1;
        if (hlen == 0)
            return -EINVAL;
    } else {
        colon = strrchr(s, ':');
        if (!colon)
            return -EINVAL;
        h = s;
        hlen = (size_t)(colon - s);
        /* An unbracketed v6 address is ambiguous about where the port is. */
        if (memchr(h, ':', hlen))
            return -EINVAL;
    }
    if (memchr(h, ' ', hlen) || memchr(h, '/', hlen))
        return -EINVAL;
    if (hlen >= hostcap)
        return -ENAMETOOLONG;
    if (parse_port(colon + 1, port) < 0)
        return -EINVAL;
    memcpy(host, h, hlen);
    host[hlen] = '\0';
    return 0;
}

static int parse_unix(const char *s, struct addr *out)
{
    struct sockaddr_un *sun = (struct sockaddr_un *)&out->ss;
    const char *path = s[0] == '/' ? s : s + strlen(UNIX_PREFIX);
    size_t n = strlen(path);

    /* Relative and abstract sockets are not supported: the path has to mean
     * the same thing to the daemon, systemd and raftkvctl. */
    if (path[0] != '/')
        return -EINVAL;
    if (n >= sizeof(sun->sun_path))
        return -ENAMETOOLONG;
    memset(out, 0, sizeof(*out));
    sun->sun_family = AF_UNIX;
    memcpy(sun->sun_path, path, n + 1);
    out->len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n + 1);
    return 0;
}

int addr_parse(const char *s, struct addr *out)
{
    char host[INET6_ADDRSTRLEN + 16];
    uint16_t port;
    int r;

    if (addr_is_unix_str(s))
        return parse_unix(s, out);
    r = addr_split(s, host, sizeof(host), &port);
    if (r == -ENAMETOOLONG)
        return -EADDRNOTAVAIL; /* too long for a numeric address: a name */
    if (r < 0)
        return r;

    memset(out, 0, sizeof(*out));
    struct sockaddr_in *sin = (struct sockaddr_in *)&out->ss;
    struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&out->ss;
    if (host[0] == '\0' || strcmp(host, "*") == 0) {
        sin->sin_family = AF_INET;
        sin->sin_addr.s_addr = htonl(INADDR_ANY);
        sin->sin_port = htons(port);
        out->len = sizeof(*sin);
    } else if (inet_pton(AF_INET, host, &sin->sin_addr) == 1) {
        sin->sin_family = AF_INET;
        sin->sin_port = htons(port);
        out->len = sizeof(*sin);
    } else if (inet_pton(AF_INET6, host, &sin6->sin6_addr) == 1) {
        sin6->sin6_family = AF_INET6;
        sin6->sin6_port = htons(port);
        out->len = sizeof(*sin6);
    } else {
        return strchr(s, '[') ? -EINVAL : -EADDRNOTAVAIL;
    }
    return 0;
}

int addr_resolve(const char *s, struct addr *out)
{
    char host[256], portstr[8];
    uint16_t port;
    struct addrinfo hints, *res = NULL;
    int r = addr_parse(s, out);

    if (r != -EADDRNOTAVAIL)
        return r;
    r = addr_split(s, host, sizeof(host), &port);
    if (r < 0)
        return r == -ENAMETOOLONG ? -EINVAL : r;
    snprintf(portstr, sizeof(portstr), "%u", port);
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    r = getaddrinfo(host, portstr, &hints, &res);
    if (r != 0) {
        if (r == EAI_AGAIN)
            return -EAGAIN;
        if (r == EAI_SYSTEM)
            return errno ? -errno : -EIO;
        return -ENOENT;
    }
    /* getaddrinfo orders by RFC 6724 preference; take the first. */
    r = addr_from_sockaddr(out, res->ai_addr, res->ai_addrlen);
    freeaddrinfo(res);
    return r;
}

int addr_from_sockaddr(struct addr *out, const struct sockaddr *sa, socklen_t len)
{
    if (len > sizeof(out->ss) || len < sizeof(sa_family_t))
        return -EINVAL;
    if (sa->sa_family != AF_INET && sa->sa_family != AF_INET6 && sa->sa_family != AF_UNIX)
        return -EINVAL;
    memset(out, 0, sizeof(*out));
    memcpy(&out->ss, sa, len);
    out->len = len;
    return 0;
}

int addr_family(const struct addr *a)
{
    return a->len ? a->ss.ss_family : AF_UNSPEC;
}

uint16_t addr_port(const struct addr *a)
{
    switch (addr_family(a)) {
    case AF_INET: return ntohs(((const struct sockaddr_in *)&a->ss)->sin_port);
    case AF_INET6: return ntohs(((const struct sockaddr_in6 *)&a->ss)->sin6_port);
    default: return 0;
    }
}

const char *addr_unix_path(const struct addr *a)
{
    if (addr_family(a) != AF_UNIX)
        return NULL;
    return ((const struct sockaddr_un *)&a->ss)->sun_path;
}

const char *addr_format(const struct addr *a, char *buf, size_t buflen)
{
    char host[INET6_ADDRSTRLEN];

    if (buflen == 0)
        return buf;
    switch (addr_family(a)) {
    case AF_INET:
        inet_ntop(AF_INET, &((const struct sockaddr_in *)&a->ss)->sin_addr, host, sizeof(host));
        snprintf(buf, buflen, "%s:%u", host, addr_port(a));
        break;
    case AF_INET6:
        inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)&a->ss)->sin6_addr, host, sizeof(host));
        snprintf(buf, buflen, "[%s]:%u", host, addr_port(a));
        break;
    case AF_UNIX: {
        /* An unnamed peer (accept on a unix socket) has an empty path. */
        const char *p = addr_unix_path(a);
        size_t max = a->len > offsetof(struct sockaddr_un, sun_path)
                         ? a->len - offsetof(struct sockaddr_un, sun_path) : 0;
        snprintf(buf, buflen, UNIX_PREFIX "%.*s", (int)strnlen(p, max), p);
        break;
    }
    default:
        snprintf(buf, buflen, "?");
    }
    return buf;
}

bool addr_equal(const struct addr *a, const struct addr *b)
{
    int fam = addr_family(a);

    if (fam != addr_family(b))
        return false;
    switch (fam) {
    case AF_INET:
        return addr_port(a) == addr_port(b) &&
               ((const struct sockaddr_in *)&a->ss)->sin_addr.s_addr ==
                   ((const struct sockaddr_in *)&b->ss)->sin_addr.s_addr;
    case AF_INET6:
        return addr_port(a) == addr_port(b) &&
               memcmp(&((const struct sockaddr_in6 *)&a->ss)->sin6_addr,
                      &((const struct sockaddr_in6 *)&b->ss)->sin6_addr,
                      sizeof(struct in6_addr)) == 0;
    case AF_UNIX:
        return strcmp(addr_unix_path(a), addr_unix_path(b)) == 0;
    default:
        return fam == AF_UNSPEC;
    }
}

bool addr_is_loopback(const struct addr *a)
{
    if (a->ss.ss_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)&a->ss;
        return (ntohl(in->sin_addr.s_addr) >> 24) == 127;
    }
    if (a->ss.ss_family == AF_INET6) {
        const struct in6_addr *in6 = &((const struct sockaddr_in6 *)&a->ss)->sin6_addr;
        return IN6_IS_ADDR_LOOPBACK(in6) || (IN6_IS_ADDR_V4MAPPED(in6) && in6->s6_addr[12] == 127);
    }
    return false;
}
