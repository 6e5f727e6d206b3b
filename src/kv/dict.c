/* dict.c - the ordered dictionary: a B+tree whose leaves hold pointers to
 * (key, value) entries.  O(log n) get, set and delete with a fan-out of 64,
 * so a million keys sit four levels deep.  A frozen version (a view) can be
 * read by another thread while the tree goes on changing: see "Versions".
 *
 * Separators in inner nodes are references to entries, not copies: an entry
 * is reference counted (its leaf slot plus every separator naming it), so
 * splitting never allocates a key and a deleted key whose separator is still
 * in use lingers, value and all, until that separator goes.  Every allocation
 * a set needs is made before the tree is touched, so KV_ENOMEM always leaves
 * the dictionary as it was. */
#include "kv/kv_int.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define LEAF_MAX 64  /* entries per leaf */
#define INNER_MAX 64 /* children per inner node */
#define MIN_FILL 32  /* below this a non-root node borrows or merges */

struct entry {
    uint32_t refs;
    uint32_t klen;
    uint32_t vlen;
    uint8_t data[]; /* key, then value */
};

struct node {
    uint16_t n; /* leaf: entries; inner: children */
    bool leaf;
    uint32_t epoch; /* the dictionary's epoch when this node was made */
};

/* One slot more than the maximum so an insert can overflow before it splits.
 * Leaves are not chained: a copied leaf would need its neighbour copied too,
 * so scans walk down from the root (struct kv_iter keeps the path). */
struct leaf {
    struct node h;
    struct entry *e[LEAF_MAX + 1];
};

struct inner {
    struct node h;
    struct entry *sep[INNER_MAX];       /* sep[i]: smallest key of child[i+1]'s range */
    struct node *child[INNER_MAX + 1];
};

/* Versions.  kv_dict_freeze() hands out a view: the root as it is now.
 * From then on a node made before the freeze (epoch below the current one)
 * belongs to the view and is never written: a change copies it and the
 * path above it (writable()), and the old node goes on the garbage list.
 * An entry the tree lets go of while frozen goes there too, since the view
 * may still read it, and entries are never changed in place.  Reference
 * counts count the live tree only.  kv_dict_thaw() hands the garbage to
 * whoever frees it, on any thread.  Copying costs one node per level for a
 * write's path, the first time it is written after the freeze; nothing is
 * done per key at freeze or thaw. */
struct kv_dict {
    struct node *root;
    unsigned height; /* levels including the leaves */
    size_t count;
    uint64_t data_bytes;
    uint64_t mem_bytes;
    uint64_t gen;
    uint32_t epoch;      /* stamped on every node made now */
    bool frozen;         /* a view reads the nodes of earlier epochs */
    bool is_view;        /* this is such a view: read only, owns nothing */
    void **garbage;      /* nodes and entries the view may still read */
    size_t n_garbage, cap_garbage;
    uint64_t garbage_bytes;
    struct leaf *spare_leaf;   /* list through e[0] */
    unsigned n_spare_leaf;
    struct inner *spare_inner; /* list through child[0] */
    unsigned n_spare_inner;
};

struct kv_garbage {
    void **p;
    size_t n;
};

static inline size_t entry_size(size_t klen, size_t vlen)
{
    return sizeof(struct entry) + klen + vlen;
}

static int cmp_key(const void *key, size_t klen, const struct entry *e)
{
    size_t m = klen < e->klen ? klen : e->klen;
    int c = m ? memcmp(key, e->data, m) : 0;
    if (c)
        return c;
    return (klen > e->klen) - (klen < e->klen);
}

/* First slot whose key is >= key (or > key with after). */
static unsigned leaf_bound(const struct leaf *l, const void *key, size_t klen,
                           bool after)
{
    unsigned lo = 0, hi = l->h.n;
    while (lo < hi) {
        unsigned mid = (lo + hi) / 2;
        int c = cmp_key(key, klen, l->e[mid]);
        if (c > 0 || (after && c == 0))
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

/* The child whose range holds key: the first separator greater than key. */
static unsigned child_index(const struct inner *in, const void *key, size_t klen)
{
    unsigned lo = 0, hi = in->h.n - 1u;
    while (lo < hi) {
        unsigned mid = (lo + hi) / 2;
        if (cmp_key(key, klen, in->sep[mid]) >= 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

static struct leaf *find_leaf(const struct kv_dict *d, const void *key, size_t klen)
{
    const struct node *n = d->root;
    while (!n->leaf) {
        const struct inner *in = (const struct inner *)n;
        n = in->child[child_index(in, key, klen)];
    }
    return (struct leaf *)n;
}

static void *node_alloc(struct kv_dict *d, size_t size)
{
    void *p = calloc(1, size);
    if (p)
        d->mem_bytes += size;
    return p;
}

static size_t node_size(const struct node *n)
{
    return n->leaf ? sizeof(struct leaf) : sizeof(struct inner);
}

/* Does the view (if any) read n?  Then it must not be written or freed. */
static bool shared(const struct kv_dict *d, const struct node *n)
{
    return d->frozen && n->epoch != d->epoch;
}

/* Capacity was reserved (reserve_nodes) before the tree was touched. */
static void to_garbage(struct kv_dict *d, void *p, size_t size)
{
    d->garbage[d->n_garbage++] = p;
    d->mem_bytes -= size;
    d->garbage_bytes += size;
}

/* n left the live tree; its children and entries did not go with it. */
static void node_free(struct kv_dict *d, struct node *n)
{
    if (shared(d, n)) {
        to_garbage(d, n, node_size(n));
        return;
    }
    d->mem_bytes -= node_size(n);
    free(n);
}

static void unref(struct kv_dict *d, struct entry *e)
{
    if (--e->refs == 0) {
        if (d->frozen) {
            to_garbage(d, e, entry_size(e->klen, e->vlen));
            return;
        }
        d->mem_bytes -= entry_size(e->klen, e->vlen);
        free(e);
    }
}

struct kv_dict *kv_dict_new(void)
{
    struct kv_dict *d = calloc(1, sizeof(*d));
    if (!d)
        return NULL;
    struct leaf *root = node_alloc(d, sizeof(*root));
    if (!root) {
        free(d);
        return NULL;
    }
    root->h.leaf = true;
    d->root = &root->h;
    d->height = 1;
    d->epoch = 1;
    d->mem_bytes += sizeof(*d);
    return d;
}

static void free_subtree(struct kv_dict *d, struct node *n)
{
    if (n->leaf) {
        struct leaf *l = (struct leaf *)n;
        for (unsigned i = 0; i < l->h.n; i++)
            unref(d, l->e[i]);
    } else {
        struct inner *in = (struct inner *)n;
        for (unsigned i = 0; i < in->h.n; i++)
            free_subtree(d, in->child[i]);
        for (unsigned i = 0; i + 1u < in->h.n; i++)
            unref(d, in->sep[i]);
    }
    node_free(d, n);
}

void kv_dict_free(struct kv_dict *d)
{
    if (!d)
        return;
    if (d->is_view) {
        free(d);
        return;
    }
    /* A view still out would read freed memory: its owner thaws first
     * (kv_thaw); what was kept for it goes now. */
    kv_garbage_free(kv_dict_thaw(d, NULL));
    free_subtree(d, d->root);
    while (d->spare_leaf) {
        struct leaf *l = d->spare_leaf;
        d->spare_leaf = (struct leaf *)l->e[0];
        free(l);
    }
    free(d->garbage);
    while (d->spare_inner) {
        struct inner *in = d->spare_inner;
        d->spare_inner = (struct inner *)in->child[0];
        free(in);
    }
    free(d);
}

int kv_dict_get(const struct kv_dict *d, const void *key, size_t klen,
                const void **val, size_t *vlen)
{
    const struct leaf *l = find_leaf(d, key, klen);
    unsigned i = leaf_bound(l, key, klen, false);
    if (i == l->h.n || cmp_key(key, klen, l->e[i]) != 0)
        return KV_ENOTFOUND;
    const struct entry *e = l->e[i];
    *val = e->data + e->klen;
    *vlen = e->vlen;
    return KV_OK;
}

/* Worst case of one change: a leaf split, every inner level split, a new
 * root; while frozen, also a copy of every node on the path and of one
 * sibling per level (a delete's rebalancing), each of which, and at most two
 * entries per level, may go to the garbage. */
static int reserve_nodes(struct kv_dict *d)
{
    unsigned leaves = d->frozen ? 3 : 1, inners = d->frozen ? 3 * d->height : d->height;
    if (d->frozen) {
        size_t need = d->n_garbage + 4 * (size_t)d->height + 8;
        if (need > d->cap_garbage) {
            size_t cap = d->cap_garbage ? d->cap_garbage : 1024;
            while (cap < need)
                cap *= 2;
            void **g = realloc(d->garbage, cap * sizeof(*g));
            if (!g)
                return KV_ENOMEM;
            d->garbage = g;
            d->cap_garbage = cap;
        }
    }
    while (d->n_spare_leaf < leaves) {
        struct leaf *l = node_alloc(d, sizeof(*l));
        if (!l)
            return KV_ENOMEM;
        l->e[0] = (struct entry *)d->spare_leaf;
        d->spare_leaf = l;
        d->n_spare_leaf++;
    }
    while (d->n_spare_inner < inners) {
        struct inner *in = node_alloc(d, sizeof(*in));
        if (!in)
            return KV_ENOMEM;
        in->child[0] = (struct node *)d->spare_inner;
        d->spare_inner = in;
        d->n_spare_inner++;
    }
    return KV_OK;
}

static struct inner *take_inner(struct kv_dict *d)
{
    struct inner *in = d->spare_inner;
    d->spare_inner = (struct inner *)in->child[0];
    d->n_spare_inner--;
    memset(in, 0, sizeof(*in));
    in->h.epoch = d->epoch;
    return in;
}

static struct leaf *take_leaf(struct kv_dict *d)
{
    struct leaf *l = d->spare_leaf;
    d->spare_leaf = (struct leaf *)l->e[0];
    d->n_spare_leaf--;
    memset(l, 0, sizeof(*l));
    l->h.leaf = true;
    l->h.epoch = d->epoch;
    return l;
}

/* The node in *slot, made safe to change: while the view reads it, a copy
 * takes its place in the tree (*slot's owner is writable already, so
 * callers go top-down).  The live tree's references move to the copy, so
 * no count changes. */
static struct node *writable(struct kv_dict *d, struct node **slot)
{
    struct node *n = *slot;
    if (!shared(d, n))
        return n;
    struct node *c = n->leaf ? &take_leaf(d)->h : &take_inner(d)->h;
    memcpy(c, n, node_size(n));
    c->epoch = d->epoch;
    to_garbage(d, n, node_size(n));
    *slot = c;
    return c;
}

/* The leaf that holds (or would hold) key, with its path made writable. */
static struct leaf *writable_leaf(struct kv_dict *d, const void *key, size_t klen)
{
    struct node **slot = &d->root;
    for (;;) {
        struct node *n = writable(d, slot);
        if (n->leaf)
            return (struct leaf *)n;
        struct inner *in = (struct inner *)n;
        slot = &in->child[child_index(in, key, klen)];
    }
}

/* Inserts e (absent from the tree) below n.  If n split, returns the new
 * right sibling and its separator in *sep. */
static struct node *insert_rec(struct kv_dict *d, struct node **slot,
                               struct entry *e, struct entry **sep)
{
    const void *key = e->data;
    struct node *n = writable(d, slot);
    if (n->leaf) {
        struct leaf *l = (struct leaf *)n;
        unsigned i = leaf_bound(l, key, e->klen, false);
        memmove(&l->e[i + 1], &l->e[i], (l->h.n - i) * sizeof(l->e[0]));
        l->e[i] = e;
        if (++l->h.n <= LEAF_MAX)
            return NULL;
        struct leaf *r = take_leaf(d);
        unsigned keep = l->h.n / 2;
        r->h.n = (uint16_t)(l->h.n - keep);
        memcpy(r->e, &l->e[keep], r->h.n * sizeof(l->e[0]));
        l->h.n = (uint16_t)keep;
        *sep = r->e[0];
        r->e[0]->refs++;
        return &r->h;
    }

    struct inner *in = (struct inner *)n;
    unsigned i = child_index(in, key, e->klen);
    struct entry *csep;
    struct node *cr = insert_rec(d, &in->child[i], e, &csep);
    if (!cr)
        return NULL;
    unsigned nsep = in->h.n - 1u;
    memmove(&in->sep[i + 1], &in->sep[i], (nsep - i) * sizeof(in->sep[0]));
    memmove(&in->child[i + 2], &in->child[i + 1],
            (in->h.n - i - 1) * sizeof(in->child[0]));
    in->sep[i] = csep;
    in->child[i + 1] = cr;
    if (++in->h.n <= INNER_MAX)
        return NULL;
    /* The middle separator moves up rather than being copied. */
    struct inner *r = take_inner(d);
    unsigned keep = in->h.n / 2;
    r->h.n = (uint16_t)(in->h.n - keep);
    memcpy(r->child, &in->child[keep], r->h.n * sizeof(in->child[0]));
    memcpy(r->sep, &in->sep[keep], (r->h.n - 1u) * sizeof(in->sep[0]));
    *sep = in->sep[keep - 1];
    in->h.n = (uint16_t)keep;
    return &r->h;
}

static int replace_value(struct kv_dict *d, struct leaf *l, unsigned i,
                         const void *val, size_t vlen)
{
    struct entry *e = l->e[i];
    size_t old = entry_size(e->klen, e->vlen), now = entry_size(e->klen, vlen);
    struct entry *ne;
    if (e->refs == 1 && !d->frozen) {
        ne = old == now ? e : realloc(e, now);
        if (!ne)
            return KV_ENOMEM;
        d->mem_bytes += now - old;
    } else {
        /* Separators point at e, or the view may read it: leave it to them
         * and give the leaf a copy. */
        ne = malloc(now);
        if (!ne)
            return KV_ENOMEM;
        d->mem_bytes += now;
        memcpy(ne, e, entry_size(e->klen, 0));
        ne->refs = 1;
        unref(d, e);
    }
    d->data_bytes += vlen;
    d->data_bytes -= ne->vlen;
    ne->vlen = (uint32_t)vlen;
    if (vlen)
        memcpy(ne->data + ne->klen, val, vlen);
    l->e[i] = ne;
    return KV_OK;
}

int kv_dict_set(struct kv_dict *d, const void *key, size_t klen,
                const void *val, size_t vlen)
{
    if (klen > UINT32_MAX || vlen > UINT32_MAX)
        return KV_EINVAL;
    struct leaf *l = find_leaf(d, key, klen);
    unsigned i = leaf_bound(l, key, klen, false);
    int rc;
    if (i < l->h.n && cmp_key(key, klen, l->e[i]) == 0) {
        if (d->frozen) {
            if ((rc = reserve_nodes(d)) != KV_OK)
                return rc;
            l = writable_leaf(d, key, klen);
        }
        rc = replace_value(d, l, i, val, vlen);
        if (rc == KV_OK)
            d->gen++;
        return rc;
    }
    rc = reserve_nodes(d);
    if (rc != KV_OK)
        return rc;
    struct entry *e = malloc(entry_size(klen, vlen));
    if (!e)
        return KV_ENOMEM;
    e->refs = 1;
    e->klen = (uint32_t)klen;
    e->vlen = (uint32_t)vlen;
    if (klen)
        memcpy(e->data, key, klen);
    if (vlen)
        memcpy(e->data + klen, val, vlen);
    d->mem_bytes += entry_size(klen, vlen);
    d->data_bytes += klen + vlen;

    struct entry *sep;
    struct node *r = insert_rec(d, &d->root, e, &sep);
    if (r) {
        struct inner *root = take_inner(d);
        root->h.n = 2;
        root->child[0] = d->root;
        root->child[1] = r;
        root->sep[0] = sep;
        d->root = &root->h;
        d->height++;
    }
    d->count++;
    d->gen++;
    return KV_OK;
}

static void set_sep(struct kv_dict *d, struct inner *p, unsigned k, struct entry *e)
{
    e->refs++;
    unref(d, p->sep[k]);
    p->sep[k] = e;
}

/* In rebalancing, p and p->child[i] are writable already; a sibling that
 * changes is made so here. */
static void borrow_left(struct kv_dict *d, struct inner *p, unsigned i)
{
    struct node *c = p->child[i], *ln = writable(d, &p->child[i - 1]);
    if (c->leaf) {
        struct leaf *cl = (struct leaf *)c, *l = (struct leaf *)ln;
        memmove(&cl->e[1], &cl->e[0], cl->h.n * sizeof(cl->e[0]));
        cl->e[0] = l->e[--l->h.n];
        cl->h.n++;
        set_sep(d, p, i - 1, cl->e[0]);
        return;
    }
    struct inner *ci = (struct inner *)c, *l = (struct inner *)ln;
    memmove(&ci->sep[1], &ci->sep[0], (ci->h.n - 1u) * sizeof(ci->sep[0]));
    memmove(&ci->child[1], &ci->child[0], ci->h.n * sizeof(ci->child[0]));
    ci->child[0] = l->child[l->h.n - 1u];
    ci->sep[0] = p->sep[i - 1];
    p->sep[i - 1] = l->sep[l->h.n - 2u];
    l->h.n--;
    ci->h.n++;
}

static void borrow_right(struct kv_dict *d, struct inner *p, unsigned i)
{
    struct node *c = p->child[i], *rn = writable(d, &p->child[i + 1]);
    if (c->leaf) {
        struct leaf *cl = (struct leaf *)c, *r = (struct leaf *)rn;
        cl->e[cl->h.n++] = r->e[0];
        memmove(&r->e[0], &r->e[1], --r->h.n * sizeof(r->e[0]));
        set_sep(d, p, i, r->e[0]);
        return;
    }
    struct inner *ci = (struct inner *)c, *r = (struct inner *)rn;
    ci->sep[ci->h.n - 1u] = p->sep[i];
    ci->child[ci->h.n] = r->child[0];
    ci->h.n++;
    p->sep[i] = r->sep[0];
    memmove(&r->sep[0], &r->sep[1], (r->h.n - 2u) * sizeof(r->sep[0]));
    memmove(&r->child[0], &r->child[1], (r->h.n - 1u) * sizeof(r->child[0]));
    r->h.n--;
}

/* Folds child k+1 of p into child k.  The right one is only read, then
 * leaves the tree (node_free keeps it for the view if the view reads it). */
static void merge(struct kv_dict *d, struct inner *p, unsigned k)
{
    struct node *ln = writable(d, &p->child[k]), *rn = p->child[k + 1];
    if (ln->leaf) {
        struct leaf *l = (struct leaf *)ln, *r = (struct leaf *)rn;
        memcpy(&l->e[l->h.n], r->e, r->h.n * sizeof(r->e[0]));
        l->h.n = (uint16_t)(l->h.n + r->h.n);
        unref(d, p->sep[k]);
    } else {
        struct inner *l = (struct inner *)ln, *r = (struct inner *)rn;
        l->sep[l->h.n - 1u] = p->sep[k];
        memcpy(&l->sep[l->h.n], r->sep, (r->h.n - 1u) * sizeof(r->sep[0]));
        memcpy(&l->child[l->h.n], r->child, r->h.n * sizeof(r->child[0]));
        l->h.n = (uint16_t)(l->h.n + r->h.n);
    }
    node_free(d, rn);
    unsigned tail = p->h.n - 2u - k;
    memmove(&p->sep[k], &p->sep[k + 1], tail * sizeof(p->sep[0]));
    memmove(&p->child[k + 1], &p->child[k + 2], tail * sizeof(p->child[0]));
    p->h.n--;
}

static void rebalance(struct kv_dict *d, struct inner *p, unsigned i)
{
    if (i > 0 && p->child[i - 1]->n > MIN_FILL)
        borrow_left(d, p, i);
    else if (i + 1u < p->h.n && p->child[i + 1]->n > MIN_FILL)
        borrow_right(d, p, i);
    else if (i > 0)
        merge(d, p, i - 1);
    else
        merge(d, p, i);
}

static bool delete_rec(struct kv_dict *d, struct node **slot, const void *key,
                       size_t klen)
{
    struct node *n = writable(d, slot);
    if (n->leaf) {
        struct leaf *l = (struct leaf *)n;
        unsigned i = leaf_bound(l, key, klen, false);
        if (i == l->h.n || cmp_key(key, klen, l->e[i]) != 0)
            return false;
        struct entry *e = l->e[i];
        memmove(&l->e[i], &l->e[i + 1], (l->h.n - i - 1) * sizeof(l->e[0]));
        l->h.n--;
        d->data_bytes -= (uint64_t)e->klen + e->vlen;
        unref(d, e);
        return true;
    }
    struct inner *in = (struct inner *)n;
    unsigned i = child_index(in, key, klen);
    if (!delete_rec(d, &in->child[i], key, klen))
        return false;
    if (in->child[i]->n < MIN_FILL)
        rebalance(d, in, i);
    return true;
}

int kv_dict_del(struct kv_dict *d, const void *key, size_t klen)
{
    const void *v;
    size_t vl;
    /* Known present before anything is copied or reserved. */
    if (kv_dict_get(d, key, klen, &v, &vl) != KV_OK)
        return KV_ENOTFOUND;
    if (d->frozen && reserve_nodes(d) != KV_OK)
        return KV_ENOMEM;
    delete_rec(d, &d->root, key, klen);
    if (!d->root->leaf && d->root->n == 1) {
        struct node *old = d->root;
        d->root = ((struct inner *)old)->child[0];
        node_free(d, old);
        d->height--;
    }
    d->count--;
    d->gen++;
    return KV_OK;
}

size_t kv_dict_count(const struct kv_dict *d)
{
    return d->count;
}

uint64_t kv_dict_data_bytes(const struct kv_dict *d)
{
    return d->data_bytes;
}

uint64_t kv_dict_mem_bytes(const struct kv_dict *d)
{
    return d->mem_bytes + d->garbage_bytes;
}

uint64_t kv_dict_frozen_bytes(const struct kv_dict *d)
{
    return d->garbage_bytes;
}

uint64_t kv_dict_gen(const struct kv_dict *d)
{
    return d->gen;
}

void kv_dict_seek(const struct kv_dict *d, struct kv_iter *it, const void *key,
                  size_t klen, bool after)
{
    const struct node *n = d->root;
    it->d = d;
    it->depth = 0;
    while (!n->leaf) {
        const struct inner *in = (const struct inner *)n;
        unsigned i = child_index(in, key, klen);
        if (it->depth == KV_ITER_MAX_DEPTH)
            abort(); /* a tree this tall would hold more than 2^64 keys */
        it->path[it->depth] = in;
        it->pos[it->depth++] = (uint8_t)i;
        n = in->child[i];
    }
    it->leaf = n;
    it->idx = leaf_bound((const struct leaf *)n, key, klen, after);
}

/* Moves to the first slot of the next leaf in key order; false at the end. */
static bool next_leaf(struct kv_iter *it)
{
    unsigned k = it->depth;
    /* Said once more for the compiler, which cannot see kv_dict_seek's bound. */
    if (k > KV_ITER_MAX_DEPTH)
        abort();
    while (k > 0 && it->pos[k - 1] + 1u >= ((const struct inner *)it->path[k - 1])->h.n)
        k--;
    if (k == 0) {
        it->leaf = NULL;
        return false;
    }
    it->pos[k - 1]++;
    const struct node *n = ((const struct inner *)it->path[k - 1])->child[it->pos[k - 1]];
    for (; k < it->depth; k++) {
        it->path[k] = n;
        it->pos[k] = 0;
        n = ((const struct inner *)n)->child[0];
    }
    it->leaf = n;
    it->idx = 0;
    return true;
}

bool kv_iter_next(struct kv_iter *it, const void **key, size_t *klen,
                  const void **val, size_t *vlen)
{
    while (it->leaf && it->idx >= ((const struct leaf *)it->leaf)->h.n)
        if (!next_leaf(it))
            return false;
    if (!it->leaf)
        return false;
    const struct entry *e = ((const struct leaf *)it->leaf)->e[it->idx++];
    *key = e->data;
    *klen = e->klen;
    *val = e->data + e->klen;
    *vlen = e->vlen;
    return true;
}

static bool has_prefix(const void *key, size_t klen, const void *prefix, size_t plen)
{
    return klen >= plen && (plen == 0 || memcmp(key, prefix, plen) == 0);
}

int kv_dict_list(const struct kv_dict *d, const void *prefix, size_t plen,
                 const void *start_after, size_t salen, size_t limit,
                 kv_list_fn fn, void *ctx, bool *more)
{
    struct kv_iter it;
    /* Start at whichever bound is later: the prefix or just past start_after. */
    size_t m = plen < salen ? plen : salen;
    int c = start_after && m ? memcmp(start_after, prefix, m) : 0;
    if (start_after && (c > 0 || (c == 0 && salen >= plen)))
        kv_dict_seek(d, &it, start_after, salen, true);
    else
        kv_dict_seek(d, &it, prefix, plen, false);

    const void *k, *v;
    size_t kl, vl, n = 0;
    if (more)
        *more = false;
    while (kv_iter_next(&it, &k, &kl, &v, &vl) && has_prefix(k, kl, prefix, plen)) {
        if (limit && n == limit) {
            if (more)
                *more = true;
            break;
        }
        int rc = fn(ctx, k, kl, v, vl);
        if (rc)
            return rc;
        n++;
    }
    return KV_OK;
}

/* Checks the B+tree invariants below n within (lo, hi]; returns its height or
 * -1.  Test support: a failing check names nothing, the caller asserts. */
static int check_rec(const struct kv_dict *d, const struct node *n, bool is_root,
                     const struct entry *lo, const struct entry *hi, size_t *count)
{
    if (!is_root && n->n < MIN_FILL)
        return -1;
    if (n->leaf) {
        const struct leaf *l = (const struct leaf *)n;
        if (l->h.n > LEAF_MAX)
            return -1;
        for (unsigned i = 0; i < l->h.n; i++) {
            const struct entry *e = l->e[i];
            if (lo && cmp_key(e->data, e->klen, lo) < 0)
                return -1;
            if (hi && cmp_key(e->data, e->klen, hi) >= 0)
                return -1;
            if (i && cmp_key(e->data, e->klen, l->e[i - 1]) <= 0)
                return -1;
        }
        *count += l->h.n;
        return 1;
    }
    const struct inner *in = (const struct inner *)n;
    if (in->h.n < 2 || in->h.n > INNER_MAX)
        return -1;
    int h = -1;
    for (unsigned i = 0; i < in->h.n; i++) {
        const struct entry *clo = i ? in->sep[i - 1] : lo;
        const struct entry *chi = i + 1u < in->h.n ? in->sep[i] : hi;
        int ch = check_rec(d, in->child[i], false, clo, chi, count);
        if (ch < 0 || (h >= 0 && ch != h))
            return -1;
        h = ch;
    }
    return h + 1;
}

struct kv_dict *kv_dict_freeze(struct kv_dict *d)
{
    if (d->frozen || d->is_view)
        return NULL; /* one view at a time */
    struct kv_dict *v = malloc(sizeof(*v));
    if (!v)
        return NULL;
    *v = (struct kv_dict){.root = d->root, .height = d->height, .count = d->count,
                          .data_bytes = d->data_bytes, .gen = d->gen, .epoch = d->epoch,
                          .is_view = true};
    d->frozen = true;
    d->epoch++;
    return v;
}

struct kv_garbage *kv_dict_thaw(struct kv_dict *d, struct kv_dict *view)
{
    free(view);
    if (!d->frozen)
        return NULL;
    d->frozen = false;
    struct kv_garbage *g = malloc(sizeof(*g));
    if (!g) {
        /* Nowhere to put the list: free it here, slower but correct. */
        for (size_t i = 0; i < d->n_garbage; i++)
            free(d->garbage[i]);
    } else {
        *g = (struct kv_garbage){.p = d->garbage, .n = d->n_garbage};
        d->garbage = NULL;
        d->cap_garbage = 0;
    }
    d->n_garbage = 0;
    d->garbage_bytes = 0;
    return g;
}

bool kv_garbage_free_some(struct kv_garbage *g, size_t max)
{
    while (g->n && max--)
        free(g->p[--g->n]);
    if (g->n)
        return false;
    free(g->p);
    free(g);
    return true;
}

void kv_garbage_free(struct kv_garbage *g)
{
    if (g)
        kv_garbage_free_some(g, SIZE_MAX);
}

int kv_garbage_merge(struct kv_garbage *dst, struct kv_garbage *src)
{
    void **p = realloc(dst->p, (dst->n + src->n) * sizeof(*p));
    if (!p)
        return -ENOMEM;
    memcpy(p + dst->n, src->p, src->n * sizeof(*p));
    dst->p = p;
    dst->n += src->n;
    free(src->p);
    free(src);
    return 0;
}

bool kv_dict_check(const struct kv_dict *d)
{
    size_t count = 0;
    int h = check_rec(d, d->root, true, NULL, NULL, &count);
    return h == (int)d->height && count == d->count;
}
