/*
 * schedule.c — concurrent groups and dependency edges for nodes in run
 * order.
 *
 * Groups: a node joins the current group unless it conflicts with a node
 * already in it; then a barrier starts a new group.
 *
 * Edges: per allocation, the live accesses (node, range, read/write). A new
 * read depends on overlapping live writes; a new write depends on every
 * overlapping live access, and retires the accesses it covers completely —
 * any later node that conflicts with them conflicts with the new write too,
 * and so is ordered after them through it. The DAG is exact (every conflict
 * is ordered) and stays small.
 */
#include "graph/graph.h"

#include <stdio.h>
#include <string.h>

typedef struct access {
    uint32_t node;
    size_t lo, hi;
    bool write;
} access;

typedef struct alloc_slot {
    uint64_t id; /* 0 = empty */
    access *v;
    uint32_t n, cap;
} alloc_slot;

typedef struct amap {
    alloc_slot *slots;
    uint32_t cap; /* power of two */
} amap;

static alloc_slot *amap_get(amap *m, uint64_t id) {
    uint32_t h = (uint32_t)(id * 0x9E3779B97F4A7C15ull >> 32) & (m->cap - 1);
    while (m->slots[h].id && m->slots[h].id != id) h = (h + 1) & (m->cap - 1);
    m->slots[h].id = id;
    return &m->slots[h];
}

void mlxn_exec_clear(mlxn_exec *ex) {
    mlxn_free(ex->nodes);
    mlxn_free(ex->group_start);
    mlxn_free(ex->dep_start);
    mlxn_free(ex->deps);
    void *keep = ex->backend_state;
    memset(ex, 0, sizeof *ex);
    ex->backend_state = keep;
}

static mlxn_status build_groups(mlxn_exec *ex) {
    uint32_t n = ex->n_nodes;
    ex->group_start = mlxn_malloc((size_t)(n + 1) * sizeof(uint32_t));
    if (!ex->group_start) return mlxn_err(MLXN_ERR_OUT_OF_MEMORY, "schedule: out of host memory");
    uint32_t g = 0, start = 0;
    if (n) ex->group_start[g++] = 0;
    for (uint32_t i = 1; i < n; i++) {
        for (uint32_t k = start; k < i; k++) {
            if (mlxn_nodes_conflict(&ex->nodes[k], &ex->nodes[i])) {
                ex->group_start[g++] = i;
                start = i;
                break;
            }
        }
    }
    ex->group_start[g] = n;
    ex->n_groups = n ? g : 0;
    return MLXN_OK;
}

static bool push_access(alloc_slot *s, access a) {
    if (s->n == s->cap) {
        uint32_t cap = s->cap ? s->cap * 2 : 8;
        access *v = mlxn_realloc(s->v, cap * sizeof *v);
        if (!v) return false;
        s->v = v;
        s->cap = cap;
    }
    s->v[s->n++] = a;
    return true;
}

static mlxn_status build_deps(mlxn_exec *ex) {
    uint32_t n = ex->n_nodes;
    mlxn_status st = MLXN_OK;
    uint32_t cap = 64;
    while (cap < 16u * n + 64) cap *= 2; /* load factor <= 1/2 */
    amap m = {mlxn_calloc(cap, sizeof(alloc_slot)), cap};
    uint32_t dcap = 4 * n + 16, nd = 0;
    uint32_t *deps = mlxn_malloc(dcap * sizeof *deps);
    ex->dep_start = mlxn_malloc((size_t)(n + 1) * sizeof(uint32_t));
    if (!m.slots || !deps || !ex->dep_start) {
        st = mlxn_err(MLXN_ERR_OUT_OF_MEMORY, "schedule: out of host memory");
        goto out;
    }
    for (uint32_t j = 0; j < n; j++) {
        const mlxn_node *nd_j = &ex->nodes[j];
        ex->dep_start[j] = nd;
        uint32_t first = nd;
        for (int pass = 0; pass < 2; pass++) { /* find deps, then record this node's accesses */
            for (int si = 0; si < nd_j->n_slots; si++) {
                const mlxn_tensor *t = &nd_j->t[si];
                if (!t->alloc) continue;
                bool w = si < nd_j->n_out;
                alloc_slot *s = amap_get(&m, t->alloc->id);
                size_t lo = t->offset, hi = t->offset + t->nbytes;
                if (pass == 0) {
                    for (uint32_t k = 0; k < s->n; k++) {
                        access *a = &s->v[k];
                        if (a->node == j || !(w || a->write) || a->hi <= lo || hi <= a->lo) continue;
                        bool seen = false;
                        for (uint32_t q = first; q < nd && !seen; q++) seen = deps[q] == a->node;
                        if (seen) continue;
                        if (nd == dcap) {
                            uint32_t *d2 = mlxn_realloc(deps, (dcap *= 2) * sizeof *deps);
                            if (!d2) {
                                st = mlxn_err(MLXN_ERR_OUT_OF_MEMORY, "schedule: out of host memory");
                                goto out;
                            }
                            deps = d2;
                        }
                        deps[nd++] = a->node;
                    }
                } else {
                    if (w) { /* retire accesses this write covers */
                        uint32_t keep = 0;
                        for (uint32_t k = 0; k < s->n; k++) {
                            access *a = &s->v[k];
                            if (a->node != j && a->lo >= lo && a->hi <= hi) continue;
                            s->v[keep++] = *a;
                        }
                        s->n = keep;
                    }
                    if (!push_access(s, (access){j, lo, hi, w})) {
                        st = mlxn_err(MLXN_ERR_OUT_OF_MEMORY, "schedule: out of host memory");
                        goto out;
                    }
                }
            }
        }
    }
    ex->dep_start[n] = nd;
    ex->deps = deps;
    ex->n_deps = nd;
    deps = NULL;
out:
    if (m.slots)
        for (uint32_t i = 0; i < m.cap; i++) mlxn_free(m.slots[i].v);
    mlxn_free(m.slots);
    mlxn_free(deps);
    return st;
}

mlxn_status mlxn_schedule_build(mlxn_exec *ex, bool dump) {
    mlxn_status st = build_groups(ex);
    if (!st) st = build_deps(ex);
    if (st || !dump) return st;
    for (uint32_t g = 0; g < ex->n_groups; g++) {
        fprintf(stderr, "[schedule] group %u:", g);
        for (uint32_t i = ex->group_start[g]; i < ex->group_start[g + 1]; i++)
            fprintf(stderr, " %s#%u", mlxn_op_name(ex->nodes[i].op), ex->nodes[i].id);
        fprintf(stderr, "\n");
    }
    fprintf(stderr, "[schedule] nodes=%u groups=%u barriers=%u edges=%u\n", ex->n_nodes, ex->n_groups,
            ex->n_groups ? ex->n_groups - 1 : 0, ex->n_deps);
    return MLXN_OK;
}
