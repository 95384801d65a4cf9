/*
 * passes.c — the fuse and reorder passes over a node array.
 *
 * Fuse: a table of producer -> consumer patterns (rms_norm -> mul,
 * silu -> mul, rope -> kv_write, then add -> rms_norm). A pair fuses only when
 *  - the consumer is the first node after the producer to read the
 *    producer's output, and reads exactly that range;
 *  - the intermediate (when the fused node no longer writes it) is read by
 *    no other node before something overwrites it whole, and is not a marked
 *    output;
 *  - nothing between producer and consumer writes the producer's inputs or
 *    touches its output (the fused node runs at the consumer's place);
 *  - the fused node's writes overlap none of its kept inputs, except an
 *    identical in-place range.
 * Nodes in the exec do not own allocation references (the session's
 * recorded nodes do), so the passes move and merge nodes freely.
 *
 * Reorder: greedy look-ahead of 64 nodes. When the next node conflicts with
 * the current concurrent group, later reorderable nodes that conflict neither
 * with the group nor with the nodes skipped over are pulled into the group.
 * A non-reorderable node ends the look-ahead and is never looked past, so
 * no node crosses it in either direction.
 */
#include "graph/graph.h"

#include <stdio.h>
#include <string.h>

static bool tensor_eq(const mlxn_tensor *a, const mlxn_tensor *b) {
    return a->alloc && b->alloc && a->alloc->id == b->alloc->id && a->offset == b->offset &&
           a->nbytes == b->nbytes;
}

static bool node_reads(const mlxn_node *n, const mlxn_tensor *r) {
    for (int i = n->n_out; i < n->n_slots; i++)
        if (mlxn_ranges_overlap(&n->t[i], r)) return true;
    /* ops that read what they write (keep other rows) */
    if (n->op == MLXN_OP_KV_WRITE && mlxn_ranges_overlap(&n->t[0], r)) return true;
    return false;
}

static bool node_writes(const mlxn_node *n, const mlxn_tensor *r) {
    for (int i = 0; i < n->n_out; i++)
        if (mlxn_ranges_overlap(&n->t[i], r)) return true;
    return false;
}

/* True when `n` overwrites all of r without reading it. */
static bool node_overwrites(const mlxn_node *n, const mlxn_tensor *r) {
    if (n->op == MLXN_OP_KV_WRITE || node_reads(n, r)) return false;
    for (int i = 0; i < n->n_out; i++) {
        const mlxn_tensor *w = &n->t[i];
        if (w->alloc && w->alloc->id == r->alloc->id && w->offset <= r->offset &&
            w->offset + w->nbytes >= r->offset + r->nbytes)
            return true;
    }
    return false;
}

/* Is producer output `mid` dead after consumer j (no reader before a full
 * overwrite), and not a marked output? */
static bool intermediate_dead(const mlxn_node *nodes, uint32_t n, uint32_t j, const mlxn_tensor *mid,
                              const mlxn_outputs *outs) {
    for (size_t o = 0; o < outs->n; o++)
        if (mlxn_ranges_overlap(&outs->t[o], mid)) return false;
    for (uint32_t k = j + 1; k < n; k++) {
        if (node_overwrites(&nodes[k], mid)) return true;
        if (node_reads(&nodes[k], mid) || node_writes(&nodes[k], mid)) return false;
    }
    return true;
}

/* Build the fused node for producer p and consumer c, or return false. */
static bool make_fused(const mlxn_node *p, const mlxn_node *c, mlxn_node *f, bool *elides) {
    const mlxn_tensor *mid = &p->t[0];
    memset(f, 0, sizeof *f);
    f->id = c->id;
    switch (p->op) {
    case MLXN_OP_RMS_NORM: /* rms_norm(x) -> mul(., w vec) => rms_norm(x, w) */
        if (c->op != MLXN_OP_MUL || p->t[2].alloc || !tensor_eq(&c->t[1], mid)) return false;
        if (mlxn_tensor_elems(&c->t[2]) != mlxn_tensor_cols(&p->t[1])) return false;
        if (mlxn_tensor_elems(&c->t[2]) == mlxn_tensor_elems(&p->t[1]) && mlxn_tensor_rows(&p->t[1]) != 1)
            return false;
        *f = *p;
        f->id = c->id;
        f->t[0] = c->t[0];
        f->t[2] = c->t[2];
        *elides = true;
        return true;
    case MLXN_OP_ADD: /* add(a, b) -> rms_norm(sum, w) => add_rms_norm(sum, out, a, b, w) */
        if (c->op != MLXN_OP_RMS_NORM || !tensor_eq(&c->t[1], mid)) return false;
        if (mlxn_tensor_elems(&p->t[2]) != mlxn_tensor_elems(&p->t[1])) return false; /* no broadcast */
        if (mlxn_ranges_overlap(&c->t[0], mid)) return false; /* norm in place over the sum */
        f->op = MLXN_OP_ADD_RMS_NORM;
        f->n_slots = 5;
        f->n_out = 2;
        f->t[0] = p->t[0];
        f->t[1] = c->t[0];
        f->t[2] = p->t[1];
        f->t[3] = p->t[2];
        f->t[4] = c->t[2];
        f->p.norm = c->p.norm;
        *elides = false;
        return true;
    case MLXN_OP_ROPE: /* rope(x) -> kv_write(cache, ., pos) => rope_kv_write(cache, x, pos) */
        if (c->op != MLXN_OP_KV_WRITE || !tensor_eq(&c->t[1], mid) || !tensor_eq(&c->t[2], &p->t[2])) return false;
        f->op = MLXN_OP_ROPE_KV_WRITE;
        f->n_slots = 4;
        f->n_out = 1;
        f->t[0] = c->t[0];
        f->t[1] = p->t[1];
        f->t[2] = p->t[2];
        f->t[3] = p->t[3];
        f->p.rope = p->p.rope;
        *elides = true;
        return true;
    case MLXN_OP_SILU: /* silu(g) -> mul(., u) or mul(u, .) => silu_mul(g, u) */
        if (c->op != MLXN_OP_MUL) return false;
        {
            int other;
            if (tensor_eq(&c->t[1], mid)) other = 2;
            else if (tensor_eq(&c->t[2], mid)) other = 1;
            else return false;
            if (mlxn_tensor_elems(&c->t[other]) != mlxn_tensor_elems(mid) || c->t[other].dtype != MLXN_F32)
                return false;
            f->op = MLXN_OP_SILU_MUL;
            f->n_slots = 3;
            f->n_out = 1;
            f->t[0] = c->t[0];
            f->t[1] = p->t[1];
            f->t[2] = c->t[other];
        }
        *elides = true;
        return true;
    default:
        return false;
    }
}

/* The fused node may write in place only over an identical range. */
static bool fused_alias_ok(const mlxn_node *f) {
    for (int o = 0; o < f->n_out; o++)
        for (int i = f->n_out; i < f->n_slots; i++)
            if (mlxn_ranges_overlap(&f->t[o], &f->t[i]) && !tensor_eq(&f->t[o], &f->t[i])) return false;
    if (f->n_out == 2 && mlxn_ranges_overlap(&f->t[0], &f->t[1])) return false;
    return true;
}

/* One sweep over the nodes for the producers of one round. */
static uint32_t fuse_round(mlxn_node *nodes, uint32_t *np, const mlxn_outputs *outs, bool dump,
                           int round, mlxn_can_run_fn can_run, void *ctx) {
    uint32_t n = *np, fusions = 0;
    bool *dead = NULL;
    for (uint32_t i = 0; i < n; i++) {
        mlxn_node *p = &nodes[i];
        bool producer = round == 0 ? (p->op == MLXN_OP_RMS_NORM || p->op == MLXN_OP_SILU || p->op == MLXN_OP_ROPE)
                                   : p->op == MLXN_OP_ADD;
        if (!producer) continue;
        if (dead && dead[i]) continue;
        const mlxn_tensor *mid = &p->t[0];
        /* the first later reader of mid; bail if something touches p's
         * inputs or output on the way */
        uint32_t j = i + 1;
        bool ok = false;
        for (; j < n && j < i + 64; j++) {
            if (dead && dead[j]) continue;
            if (node_reads(&nodes[j], mid)) {
                ok = true;
                break;
            }
            if (node_writes(&nodes[j], mid)) break;
            bool clobbers = false;
            for (int s = p->n_out; s < p->n_slots; s++)
                if (p->t[s].alloc && node_writes(&nodes[j], &p->t[s])) clobbers = true;
            if (clobbers) break;
        }
        if (!ok || j >= n) continue;
        mlxn_node f;
        bool elides = false;
        if (!make_fused(p, &nodes[j], &f, &elides)) continue;
        if (elides && !intermediate_dead(nodes, n, j, mid, outs)) continue;
        if (!fused_alias_ok(&f)) continue;
        if (can_run && !can_run(ctx, &f)) continue;
        if (!dead) {
            dead = mlxn_calloc(n, sizeof *dead);
            if (!dead) break;
        }
        if (dump)
            fprintf(stderr, "[fuse] %s#%u + %s#%u -> %s\n", mlxn_op_name(p->op), p->id,
                    mlxn_op_name(nodes[j].op), nodes[j].id, mlxn_op_name(f.op));
        nodes[j] = f;
        dead[i] = true;
        fusions++;
    }
    if (dead) {
        uint32_t w = 0;
        for (uint32_t i = 0; i < n; i++)
            if (!dead[i]) nodes[w++] = nodes[i];
        *np = w;
        mlxn_free(dead);
    }
    return fusions;
}

/* Round 0 folds norm weights and SiLU gates; round 1 then merges residual
 * adds into the (now weighted) norms that follow them. */
uint32_t mlxn_pass_fuse(mlxn_node *nodes, uint32_t *np, const mlxn_outputs *outs, bool dump,
                        mlxn_can_run_fn can_run, void *ctx) {
    uint32_t f = fuse_round(nodes, np, outs, dump, 0, can_run, ctx);
    return f + fuse_round(nodes, np, outs, dump, 1, can_run, ctx);
}

/* A small set of nodes' ranges, for the reorder pass. */
typedef struct rangeset {
    const mlxn_node **v;
    uint32_t n;
} rangeset;

static bool set_conflicts(const rangeset *s, const mlxn_node *x) {
    for (uint32_t i = 0; i < s->n; i++)
        if (mlxn_nodes_conflict(s->v[i], x)) return true;
    return false;
}

uint32_t mlxn_pass_reorder(mlxn_node *nodes, uint32_t n, bool dump) {
    enum { LOOKAHEAD = 64 };
    if (n < 3) return 0;
    uint32_t *order = mlxn_malloc(n * sizeof *order);
    bool *used = mlxn_calloc(n, sizeof *used);
    const mlxn_node **g = mlxn_malloc(n * sizeof *g);
    const mlxn_node **sk = mlxn_malloc(n * sizeof *sk);
    mlxn_node *copy = mlxn_malloc((size_t)n * sizeof *copy);
    uint32_t moved = 0;
    if (!order || !used || !g || !sk || !copy) goto out; /* no memory: leave the order alone */
    rangeset group = {g, 0}, skipped = {sk, 0};
    uint32_t k = 0;
    for (uint32_t i0 = 0; i0 < n; i0++) {
        if (used[i0]) continue;
        /* A non-reorderable node is a fence: nothing is pulled across it. */
        if (set_conflicts(&group, &nodes[i0]) && mlxn_op_table[nodes[i0].op].reorderable) {
            skipped.n = 0;
            skipped.v[skipped.n++] = &nodes[i0];
            uint32_t end = i0 + LOOKAHEAD < n ? i0 + LOOKAHEAD : n;
            for (uint32_t i1 = i0 + 1; i1 < end; i1++) {
                if (used[i1]) continue;
                if (!mlxn_op_table[nodes[i1].op].reorderable) break;
                if (!set_conflicts(&group, &nodes[i1]) && !set_conflicts(&skipped, &nodes[i1])) {
                    group.v[group.n++] = &nodes[i1];
                    order[k++] = i1;
                    used[i1] = true;
                } else {
                    skipped.v[skipped.n++] = &nodes[i1];
                }
            }
            group.n = 0;
        } else if (group.n && set_conflicts(&group, &nodes[i0])) {
            group.n = 0;
        }
        group.v[group.n++] = &nodes[i0];
        order[k++] = i0;
        used[i0] = true;
    }
    for (uint32_t i = 0; i < n; i++) {
        copy[i] = nodes[order[i]];
        if (order[i] != i) moved++;
    }
    memcpy(nodes, copy, (size_t)n * sizeof *copy);
    if (dump) fprintf(stderr, "[reorder] nodes=%u moved=%u\n", n, moved);
out:
    mlxn_free(order);
    mlxn_free(used);
    mlxn_free(g);
    mlxn_free(sk);
    mlxn_free(copy);
    return moved;
}
