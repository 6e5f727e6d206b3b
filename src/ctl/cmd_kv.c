/* cmd_kv.c - get, set, del, cas and list. */
#include "ctl/ctl.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define LIST_PAGE 1000u

struct kv_opts {
    bool stale, absent;
    uint64_t limit;
    char **ops;          /* operands */
    int nops;
    struct client *c;
    char err[CLIENT_ERRLEN];
    char what[256];      /* "get KEY": names the request in an error line */
};

static const struct option kv_long[] = {
    {"stale", no_argument, 0, 'S'}, {"absent", no_argument, 0, 'A'},
    {"limit", required_argument, 0, 'l'}, {0, 0, 0, 0},
};

static int kv_opt(struct ctl *ctl, int c, const char *arg, void *ud)
{
    (void)ctl;
    struct kv_opts *o = ud;
    switch (c) {
    case 'S': o->stale = true; return 0;
    case 'A': o->absent = true; return 0;
    case 'l':
        if (ctl_parse_u64(arg, &o->limit) < 0)
            return ctl_usage_error("list", "--limit %s: expected a number", arg);
        return 0;
    }
    return ctl_usage_error(NULL, "unexpected option");
}

/* Common front of every kv command: options, between min and max
 * operands, the client.  Returns 0, -1 after --help, or an exit code. */
static int kv_args(struct ctl *ctl, int argc, char **argv, struct kv_opts *o, int min, int max)
{
    const struct ctl_command *cmd = ctl_find_command(argv[0]);
    memset(o, 0, sizeof(*o));
    int r = ctl_getopt(ctl, cmd, argc, argv, kv_long, "l:", kv_opt, o);
    if (r)
        return r;
    o->ops = argv + optind;
    o->nops = argc - optind;
    if (o->nops < min || o->nops > max)
        return ctl_usage_error(cmd->name, "expected %s", cmd->args);
    snprintf(o->what, sizeof(o->what), "%s %.200s", cmd->name, o->nops ? o->ops[0] : "");
    o->c = ctl_client(ctl);
    return o->c ? 0 : EXIT_USAGE;
}

/* A request that failed or was answered with anything but OK. */
static int kv_failed(struct ctl *ctl, const struct kv_opts *o, int r, Raftkv__Response *resp)
{
    int code = ctl_report(ctl, o->what, r, resp, o->err);
    client_response_free(resp);
    return code ? code : EXIT_ERROR;
}

/* A value operand; "-" reads all of stdin (binary-safe). */
static int value_arg(struct ctl *ctl, const char *cmd, const char *arg, char **buf, size_t *len)
{
    if (strcmp(arg, "-") != 0) {
        *buf = NULL;
        *len = strlen(arg);
        return 0;
    }
    if (ctl->in_shell)
        return ctl_usage_error(cmd, "'-' (value from stdin) is not available in the shell");
    size_t cap = 65536, n = 0;
    char *p = malloc(cap);
    for (;;) {
        if (!p)
            return ctl_fail(EXIT_ERROR, "%s: out of memory reading the value", cmd);
        ssize_t r = read(STDIN_FILENO, p + n, cap - n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            free(p);
            return ctl_fail(EXIT_ERROR, "%s: reading the value from stdin: %s", cmd, strerror(errno));
        }
        if (r == 0)
            break;
        n += (size_t)r;
        if (n == cap) {
            char *q = realloc(p, cap *= 2);
            if (!q)
                free(p);
            p = q;
        }
    }
    *buf = p;
    *len = n;
    return 0;
}

static void print_write_result(struct ctl *ctl, uint64_t index)
{
    switch (ctl_format(ctl, FMT_PLAIN)) {
    case FMT_JSON: printf("{\"ok\":true,\"index\":%llu}\n", (unsigned long long)index); break;
    case FMT_TABLE: printf("OK (index %llu)\n", (unsigned long long)index); break;
    default: puts("OK"); break;
    }
}

int cmd_get(struct ctl *ctl, int argc, char **argv)
{
    struct kv_opts o;
    int r = kv_args(ctl, argc, argv, &o, 1, 1);
    if (r)
        return r < 0 ? 0 : r;
    char **ops = o.ops;
    Raftkv__Response *resp = NULL;
    r = client_get(o.c, ops[0], strlen(ops[0]), o.stale, &resp, o.err, sizeof(o.err));
    if (r < 0 || resp->status != RAFTKV__STATUS__OK || !resp->get)
        return kv_failed(ctl, &o, r, resp);
    const ProtobufCBinaryData *v = &resp->get->value;
    switch (ctl_format(ctl, FMT_PLAIN)) {
    case FMT_JSON:
        fputc('{', stdout);
        json_bytes_member(stdout, "key", ops[0], strlen(ops[0]), ctl->o.base64);
        fputc(',', stdout);
        json_bytes_member(stdout, "value", v->data, v->len, ctl->o.base64);
        printf(",\"applied_index\":%llu}\n", (unsigned long long)resp->get->applied_index);
        break;
    case FMT_TABLE: {
        char *val = out_escaped_dup(v->data, v->len);
        struct table *t = table_new(2, (const char *const[]){"KEY", "VALUE"});
        table_add(t, (const char *const[]){ops[0], val});
        table_print(t, stdout, true);
        table_free(t);
        free(val);
        break;
    }
    default:
        /* The bytes exactly as stored; a newline only for a person, or to
         * keep the shell's answers one per line. */
        fwrite(v->data, 1, v->len, stdout);
        if (ctl->in_shell || isatty(STDOUT_FILENO))
            fputc('\n', stdout);
        break;
    }
    client_response_free(resp);
    return EXIT_OK;
}

/* set, del and cas share everything after the request. */
static int finish_write(struct ctl *ctl, const struct kv_opts *o, int r, Raftkv__Response *resp)
{
    if (r < 0 || resp->status != RAFTKV__STATUS__OK)
        return kv_failed(ctl, o, r, resp);
    uint64_t index = 0;
    if (resp->result_case == RAFTKV__RESPONSE__RESULT_SET)
        index = resp->set->index;
    else if (resp->result_case == RAFTKV__RESPONSE__RESULT_DEL)
        index = resp->del->index;
    else if (resp->result_case == RAFTKV__RESPONSE__RESULT_CAS)
        index = resp->cas->index;
    print_write_result(ctl, index);
    client_response_free(resp);
    return EXIT_OK;
}

int cmd_set(struct ctl *ctl, int argc, char **argv)
{
    struct kv_opts o;
    char *buf;
    size_t len;
    int r = kv_args(ctl, argc, argv, &o, 2, 2);
    if (r)
        return r < 0 ? 0 : r;
    char **ops = o.ops;
    if ((r = value_arg(ctl, "set", ops[1], &buf, &len)))
        return r;
    Raftkv__Response *resp = NULL;
    r = client_set(o.c, ops[0], strlen(ops[0]), buf ? buf : ops[1], len, &resp, o.err, sizeof(o.err));
    free(buf);
    return finish_write(ctl, &o, r, resp);
}

int cmd_del(struct ctl *ctl, int argc, char **argv)
{
    struct kv_opts o;
    int r = kv_args(ctl, argc, argv, &o, 1, 1);
    if (r)
        return r < 0 ? 0 : r;
    Raftkv__Response *resp = NULL;
    r = client_del(o.c, o.ops[0], strlen(o.ops[0]), &resp, o.err, sizeof(o.err));
    return finish_write(ctl, &o, r, resp);
}

static void report_cas_failed(struct ctl *ctl, const char *key, const Raftkv__CasResponse *cr)
{
    bool absent = !cr || cr->current_absent;
    if (ctl_format(ctl, FMT_PLAIN) == FMT_JSON) {
        fputs("{\"ok\":false,", stdout);
        if (absent)
            fputs("\"current_absent\":true", stdout);
        else
            json_bytes_member(stdout, "current", cr->current.data, cr->current.len, ctl->o.base64);
        fputs("}\n", stdout);
    }
    fprintf(stderr, "raftkvctl: cas %.200s: ", key);
    if (absent) {
        fputs("failed: the key does not exist (use --absent to create it)\n", stderr);
    } else {
        fputs("failed: current value is \"", stderr);
        out_escaped(stderr, cr->current.data, cr->current.len > 200 ? 200 : cr->current.len);
        fputs(cr->current.len > 200 ? "...\"\n" : "\"\n", stderr);
    }
}

int cmd_cas(struct ctl *ctl, int argc, char **argv)
{
    struct kv_opts o;
    char *ebuf = NULL, *nbuf = NULL;
    size_t elen = 0, nlen;
    int r = kv_args(ctl, argc, argv, &o, 2, 3);
    if (r)
        return r < 0 ? 0 : r;
    char **ops = o.ops;
    int nops = o.nops;
    if (o.absent != (nops == 2))
        return ctl_usage_error("cas", o.absent ? "with --absent give KEY NEW only"
                                               : "expected KEY EXPECTED NEW, or --absent KEY NEW");
    const char *exp = o.absent ? NULL : ops[1], *nv = ops[nops - 1];
    if (exp && strcmp(exp, "-") == 0 && strcmp(nv, "-") == 0)
        return ctl_usage_error("cas", "only one of EXPECTED and NEW can come from stdin");
    if (exp && (r = value_arg(ctl, "cas", exp, &ebuf, &elen)))
        return r;
    if ((r = value_arg(ctl, "cas", nv, &nbuf, &nlen))) {
        free(ebuf);
        return r;
    }
    Raftkv__Response *resp = NULL;
    r = client_cas(o.c, ops[0], strlen(ops[0]), exp ? (ebuf ? ebuf : exp) : NULL, elen,
                   nbuf ? nbuf : nv, nlen, &resp, o.err, sizeof(o.err));
    free(ebuf);
    free(nbuf);
    if (r == 0 && resp->status == RAFTKV__STATUS__CAS_FAILED) {
        report_cas_failed(ctl, ops[0], resp->cas);
        client_response_free(resp);
        return EXIT_CAS_FAILED;
    }
    return finish_write(ctl, &o, r, resp);
}

struct key_list {
    ProtobufCBinaryData *keys;
    size_t n, cap;
};

static int keys_add(struct key_list *l, const ProtobufCBinaryData *k)
{
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 256;
        ProtobufCBinaryData *p = realloc(l->keys, cap * sizeof(*p));
        if (!p)
            return -ENOMEM;
        l->keys = p;
        l->cap = cap;
    }
    uint8_t *d = malloc(k->len ? k->len : 1);
    if (!d)
        return -ENOMEM;
    memcpy(d, k->data, k->len);
    l->keys[l->n++] = (ProtobufCBinaryData){.len = k->len, .data = d};
    return 0;
}

static void keys_free(struct key_list *l)
{
    for (size_t i = 0; i < l->n; i++)
        free(l->keys[i].data);
    free(l->keys);
}

static void print_keys(struct ctl *ctl, const struct key_list *l, bool truncated)
{
    switch (ctl_format(ctl, FMT_PLAIN)) {
    case FMT_JSON:
        fputs("{\"keys\":[", stdout);
        for (size_t i = 0; i < l->n; i++) {
            fputs(i ? ",{" : "{", stdout);
            json_bytes_member(stdout, "key", l->keys[i].data, l->keys[i].len, ctl->o.base64);
            fputc('}', stdout);
        }
        printf("],\"count\":%zu,\"truncated\":%s}\n", l->n, truncated ? "true" : "false");
        break;
    case FMT_TABLE:
        puts("KEY");
        for (size_t i = 0; i < l->n; i++) {
            out_escaped(stdout, l->keys[i].data, l->keys[i].len);
            fputc('\n', stdout);
        }
        printf("(%zu key%s%s)\n", l->n, l->n == 1 ? "" : "s", truncated ? ", more match: raise --limit" : "");
        break;
    default:
        for (size_t i = 0; i < l->n; i++) {
            fwrite(l->keys[i].data, 1, l->keys[i].len, stdout);
            fputc('\n', stdout);
        }
        break;
    }
}

int cmd_list(struct ctl *ctl, int argc, char **argv)
{
    struct kv_opts o;
    int r = kv_args(ctl, argc, argv, &o, 0, 1);
    if (r)
        return r < 0 ? 0 : r;
    const char *prefix = o.nops ? o.ops[0] : "";
    struct key_list keys = {0};
    bool more = true;
    int code = EXIT_OK;
    /* Pages until the limit (0: no limit) or the end of the prefix. */
    while (more && (o.limit == 0 || keys.n < o.limit)) {
        uint64_t want = o.limit ? o.limit - keys.n : LIST_PAGE;
        const ProtobufCBinaryData *last = keys.n ? &keys.keys[keys.n - 1] : NULL;
        Raftkv__Response *resp = NULL;
        r = client_list(o.c, prefix, strlen(prefix), last ? last->data : NULL, last ? last->len : 0,
                        (uint32_t)(want < LIST_PAGE ? want : LIST_PAGE), o.stale, &resp, o.err, sizeof(o.err));
        if (r < 0 || resp->status != RAFTKV__STATUS__OK || !resp->list) {
            code = kv_failed(ctl, &o, r, resp);
            break;
        }
        for (size_t i = 0; i < resp->list->n_keys && (o.limit == 0 || keys.n < o.limit); i++)
            if (keys_add(&keys, &resp->list->keys[i]) < 0) {
                code = ctl_fail(EXIT_ERROR, "list: out of memory");
                break;
            }
        more = resp->list->truncated && resp->list->n_keys > 0;
        client_response_free(resp);
        if (code)
            break;
    }
    if (!code)
        print_keys(ctl, &keys, more);
    keys_free(&keys);
    return code;
}
