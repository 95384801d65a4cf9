/*
 * test_graph.c — the recorded graph: conflict rules one by one, fusion
 * equivalence and safety per pattern, reorder invariants, schedule
 * exactness (groups and DAG edges against the pairwise conflicts), 1000
 * random op DAGs with aliasing views that must give identical results in
 * direct, batched, optimized and replay modes, and bad-input statuses.
 */
#include "graph/graph.h"
#include "mlxn.h"
#include "testutil.h"

static mlxn_device *dev;

static mlxn_buffer *buf1(int64_t n) {
    mlxn_buffer *b = NULL;
    int64_t sh[1] = {n};
    CHECK_OK(mlxn_buffer_create(&b, dev, MLXN_F32, 1, sh));
    return b;
}
static mlxn_buffer *view1(mlxn_buffer *base, int64_t n, size_t off_elems) {
    mlxn_buffer *b = NULL;
    int64_t sh[1] = {n};
    CHECK_OK(mlxn_buffer_view(&b, base, MLXN_F32, 1, sh, off_elems * 4));
    return b;
}
static void fill(mlxn_buffer *b, float lo, float hi) {
    size_t n = mlxn_buffer_nbytes(b) / 4;
    float *v = malloc(n * 4);
    rng_fill(v, n, lo, hi);
    CHECK_OK(mlxn_buffer_write(b, 0, v, n * 4));
    free(v);
}

/* A hand-made node: op with output slot(s) then inputs. */
static mlxn_node mk(mlxn_op op, int n_out, int n_in, mlxn_buffer **bufs) {
    mlxn_node n;
    memset(&n, 0, sizeof n);
    n.op = op;
    n.n_out = (uint8_t)n_out;
    n.n_slots = (uint8_t)(n_out + n_in);
    for (int i = 0; i < n_out + n_in; i++) n.t[i] = bufs[i]->t;
    return n;
}

static void test_conflicts(void) {
    mlxn_buffer *A = buf1(64), *B = buf1(64);
    mlxn_buffer *a0 = view1(A, 16, 0), *a1 = view1(A, 16, 16), *a8 = view1(A, 16, 8), *b0 = view1(B, 16, 0);
    /* node(write x | read y) */
    mlxn_node w_a0 = mk(MLXN_OP_SCALE, 1, 1, (mlxn_buffer *[]){a0, b0});
    mlxn_node r_a0 = mk(MLXN_OP_SCALE, 1, 1, (mlxn_buffer *[]){b0, a0});
    mlxn_node w_a1 = mk(MLXN_OP_SCALE, 1, 1, (mlxn_buffer *[]){a1, b0});
    mlxn_node w_a8 = mk(MLXN_OP_SCALE, 1, 1, (mlxn_buffer *[]){a8, b0});
    mlxn_node r_a1_w_b0 = mk(MLXN_OP_SCALE, 1, 1, (mlxn_buffer *[]){b0, a1});
    mlxn_buffer *c0 = view1(B, 16, 32);
    mlxn_node r_a0_w_c = mk(MLXN_OP_SCALE, 1, 1, (mlxn_buffer *[]){c0, a0});
    mlxn_node r_a8_w_c = mk(MLXN_OP_SCALE, 1, 1, (mlxn_buffer *[]){c0, a8});
    CHECK(!mlxn_nodes_conflict(&w_a0, &w_a1), "adjacent ranges [0,64) and [64,128) do not conflict");
    CHECK(mlxn_nodes_conflict(&w_a0, &w_a8), "overlapping writes conflict (WAW)");
    CHECK(mlxn_nodes_conflict(&w_a0, &r_a0_w_c), "read after write conflicts (RAW)");
    CHECK(mlxn_nodes_conflict(&r_a0_w_c, &w_a0), "write after read conflicts (WAR)");
    CHECK(mlxn_nodes_conflict(&r_a0_w_c, &r_a8_w_c), "two nodes writing the same output conflict");
    CHECK(mlxn_nodes_conflict(&r_a0, &w_a8), "a read of a0 and a write overlapping it conflict");
    /* read-read of overlapping views: both write c0 though, so use distinct outputs */
    mlxn_buffer *d0 = view1(B, 8, 48), *d1 = view1(B, 8, 56);
    mlxn_buffer *a0s = view1(A, 8, 0), *a4s = view1(A, 8, 4);
    mlxn_node rr1 = mk(MLXN_OP_SCALE, 1, 1, (mlxn_buffer *[]){d0, a0s});
    mlxn_node rr2 = mk(MLXN_OP_SCALE, 1, 1, (mlxn_buffer *[]){d1, a4s});
    CHECK(!mlxn_nodes_conflict(&rr1, &rr2), "read-read of overlapping views does not conflict");
    CHECK(mlxn_nodes_conflict(&w_a0, &r_a1_w_b0), "writing b0, which the other node reads, conflicts (WAR)");
    mlxn_node r_a1_w_d0 = mk(MLXN_OP_SCALE, 1, 1, (mlxn_buffer *[]){d0, a1});
    CHECK(!mlxn_nodes_conflict(&w_a0, &r_a1_w_d0), "a write of a0 and a read of the adjacent a1 do not conflict");
    /* same offsets in different allocations never conflict */
    mlxn_buffer *C = buf1(64);
    mlxn_buffer *cc0 = view1(C, 16, 0), *e0 = view1(C, 16, 48);
    mlxn_node w_c0 = mk(MLXN_OP_SCALE, 1, 1, (mlxn_buffer *[]){cc0, e0});
    mlxn_node w_a0b = mk(MLXN_OP_SCALE, 1, 1, (mlxn_buffer *[]){a0, a1});
    CHECK(!mlxn_nodes_conflict(&w_c0, &w_a0b), "same range in another allocation does not conflict");
    /* views: a view of a view shares the allocation */
    mlxn_buffer *vv = view1(a8, 4, 4); /* elements 12..15 of A */
    mlxn_node r_vv = mk(MLXN_OP_SCALE, 1, 1, (mlxn_buffer *[]){d0, vv});
    CHECK(mlxn_nodes_conflict(&w_a0, &r_vv), "a view of a view conflicts with a write to its bytes");
    CHECK(!mlxn_nodes_conflict(&w_a1, &r_vv), "and not with a write just past them");
    mlxn_buffer *all[] = {A, B, a0, a1, a8, b0, c0, d0, d1, a0s, a4s, C, cc0, e0, vv};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) mlxn_buffer_destroy(all[i]);
}

/* Run `build` in batched and optimized mode; compare `out`; expect `fusions`. */
typedef void (*builder)(mlxn_session *s, mlxn_buffer **b);
static void fusion_case(const char *name, builder build, mlxn_buffer **b, int nb, int out_idx, uint32_t want,
                        const int *outputs, int n_outputs) {
    float *res[2];
    size_t n = mlxn_buffer_nbytes(b[out_idx]) / 4;
    uint64_t seed = rng_u64();
    for (int mode = 0; mode < 2; mode++) {
        g_rng = seed;
        for (int i = 0; i < nb; i++) fill(b[i], -2, 2);
        mlxn_session *s;
        CHECK_OK(mlxn_session_create(&s, dev, mode ? MLXN_MODE_OPTIMIZED : MLXN_MODE_BATCHED, 0));
        build(s, b);
        for (int i = 0; i < n_outputs; i++) CHECK_OK(mlxn_session_mark_output(s, b[outputs[i]]));
        CHECK_OK(mlxn_session_finish(s));
        mlxn_graph_stats st;
        mlxn_session_stats(s, &st);
        if (mode) CHECK(st.fusions == want, "%s: %u fusions, expected %u", name, st.fusions, want);
        res[mode] = malloc(n * 4);
        CHECK_OK(mlxn_buffer_read(b[out_idx], 0, res[mode], n * 4));
        mlxn_session_destroy(s);
    }
    double *ref = malloc(n * sizeof(double));
    for (size_t i = 0; i < n; i++) ref[i] = res[0][i];
    /* fused kernels evaluate the same expressions in the same order: exact */
    check_close(name, res[1], ref, n, 0, 0);
    free(ref);
    free(res[0]);
    free(res[1]);
}

/* b: 0 x, 1 h, 2 w, 3 out */
static void build_norm_mul(mlxn_session *s, mlxn_buffer **b) {
    CHECK_OK(mlxn_op_rms_norm(s, b[1], b[0], NULL, 1e-5f));
    CHECK_OK(mlxn_op_mul(s, b[3], b[1], b[2]));
}
/* b: 0 a, 1 c, 2 sum, 3 out, 4 w */
static void build_add_norm(mlxn_session *s, mlxn_buffer **b) {
    CHECK_OK(mlxn_op_add(s, b[2], b[0], b[1]));
    CHECK_OK(mlxn_op_rms_norm(s, b[3], b[2], b[4], 1e-5f));
}
/* b: 0 g, 1 u, 2 s, 3 out */
static void build_silu_mul(mlxn_session *s, mlxn_buffer **b) {
    CHECK_OK(mlxn_op_silu(s, b[2], b[0]));
    CHECK_OK(mlxn_op_mul(s, b[3], b[2], b[1]));
}
/* intermediate read again later: must not fuse */
static void build_silu_mul_reused(mlxn_session *s, mlxn_buffer **b) {
    CHECK_OK(mlxn_op_silu(s, b[2], b[0]));
    CHECK_OK(mlxn_op_mul(s, b[3], b[2], b[1]));
    CHECK_OK(mlxn_op_add(s, b[1], b[3], b[2]));
}

/* b: 0 k [2,2,16], 1 cache [2,8,16] f32, 2 positions i32[2] (filled by the case) */
static void build_rope_kv(mlxn_session *s, mlxn_buffer **b) {
    int32_t pos[2] = {3, 6};
    CHECK_OK(mlxn_buffer_write(b[2], 0, pos, sizeof pos));
    mlxn_rope_params rp = {.mode = MLXN_ROPE_NEOX, .n_dims = 8};
    CHECK_OK(mlxn_op_rope(s, b[0], b[0], b[2], NULL, &rp));
    CHECK_OK(mlxn_op_kv_write(s, b[1], b[0], b[2]));
}

static mlxn_buffer *mat(int64_t r, int64_t c) {
    mlxn_buffer *b = NULL;
    int64_t sh[2] = {r, c};
    CHECK_OK(mlxn_buffer_create(&b, dev, MLXN_F32, 2, sh));
    return b;
}

static void test_fusion(void) {
    mlxn_buffer *b[5] = {mat(3, 32), mat(3, 32), mat(1, 32), mat(3, 32), NULL};
    fusion_case("rms_norm->mul", build_norm_mul, b, 4, 3, 1, NULL, 0);
    int keep_h[1] = {1};
    fusion_case("rms_norm->mul with h marked output", build_norm_mul, b, 4, 3, 0, keep_h, 1);
    for (int i = 0; i < 4; i++) mlxn_buffer_destroy(b[i]);
    mlxn_buffer *c[5] = {mat(3, 32), mat(3, 32), mat(3, 32), mat(3, 32), mat(1, 32)};
    fusion_case("add->rms_norm (out)", build_add_norm, c, 5, 3, 1, NULL, 0);
    fusion_case("add->rms_norm (sum kept)", build_add_norm, c, 5, 2, 1, NULL, 0);
    for (int i = 0; i < 5; i++) mlxn_buffer_destroy(c[i]);
    mlxn_buffer *d[4] = {mat(3, 64), mat(3, 64), mat(3, 64), mat(3, 64)};
    fusion_case("silu->mul", build_silu_mul, d, 4, 3, 1, NULL, 0);
    fusion_case("silu->mul with silu output reused", build_silu_mul_reused, d, 4, 1, 0, NULL, 0);
    for (int i = 0; i < 4; i++) mlxn_buffer_destroy(d[i]);
    int64_t ks[3] = {2, 2, 16}, cs[3] = {2, 8, 16}, ps[1] = {2};
    mlxn_buffer *r[3] = {NULL, NULL, NULL};
    CHECK_OK(mlxn_buffer_create(&r[0], dev, MLXN_F32, 3, ks));
    CHECK_OK(mlxn_buffer_create(&r[1], dev, MLXN_F32, 3, cs));
    CHECK_OK(mlxn_buffer_create(&r[2], dev, MLXN_I32, 1, ps)); /* positions: set by the builder */
    fusion_case("rope->kv_write (cache)", build_rope_kv, r, 2, 1, 1, NULL, 0);
    int keep_k[1] = {0};
    fusion_case("rope->kv_write with k marked output", build_rope_kv, r, 2, 1, 0, keep_k, 1);
    for (int i = 0; i < 3; i++) mlxn_buffer_destroy(r[i]);
}

/* ---- schedule / reorder properties on hand-made node lists ---- */

static bool reach(const mlxn_exec *ex, uint32_t from, uint32_t to, uint8_t *seen) {
    /* is `from` an ancestor of `to`? walk deps backwards from `to` */
    if (from == to) return true;
    if (seen[to]) return false;
    seen[to] = 1;
    for (uint32_t k = ex->dep_start[to]; k < ex->dep_start[to + 1]; k++)
        if (ex->deps[k] >= from && reach(ex, from, ex->deps[k], seen)) return true;
    return false;
}

static void check_schedule(mlxn_node *nodes, uint32_t n, const char *what) {
    mlxn_exec ex = {0};
    ex.nodes = malloc(n * sizeof *nodes);
    memcpy(ex.nodes, nodes, n * sizeof *nodes);
    ex.n_nodes = n;
    CHECK_OK(mlxn_schedule_build(&ex, false));
    int bad_group = 0, bad_barrier = 0, bad_edge = 0, missing = 0;
    uint32_t conflicts = 0;
    for (uint32_t g = 0; g < ex.n_groups; g++) {
        uint32_t a = ex.group_start[g], b = ex.group_start[g + 1];
        for (uint32_t i = a; i < b; i++)
            for (uint32_t j = a; j < i; j++)
                if (mlxn_nodes_conflict(&ex.nodes[i], &ex.nodes[j])) bad_group++;
        if (g > 0) { /* a barrier exists only because the first node conflicts with the group before */
            bool c = false;
            for (uint32_t j = ex.group_start[g - 1]; j < a; j++) c |= mlxn_nodes_conflict(&ex.nodes[a], &ex.nodes[j]);
            if (!c) bad_barrier++;
        }
    }
    uint8_t *seen = malloc(n);
    for (uint32_t j = 0; j < n; j++) {
        for (uint32_t k = ex.dep_start[j]; k < ex.dep_start[j + 1]; k++)
            if (ex.deps[k] >= j || !mlxn_nodes_conflict(&ex.nodes[ex.deps[k]], &ex.nodes[j])) bad_edge++;
        for (uint32_t i = 0; i < j; i++) {
            if (!mlxn_nodes_conflict(&ex.nodes[i], &ex.nodes[j])) continue;
            conflicts++;
            memset(seen, 0, n);
            if (!reach(&ex, i, j, seen)) missing++;
        }
    }
    uint32_t barriers = ex.n_groups ? ex.n_groups - 1 : 0;
    CHECK(bad_group == 0, "%s: %d conflicting pairs inside a concurrent group", what, bad_group);
    CHECK(bad_barrier == 0, "%s: %d barriers between non-conflicting nodes", what, bad_barrier);
    CHECK(bad_edge == 0, "%s: %d DAG edges that are not conflicts", what, bad_edge);
    CHECK(missing == 0, "%s: %d conflicting pairs not ordered by the DAG", what, missing);
    CHECK(barriers <= conflicts, "%s: %u barriers > %u conflicts", what, barriers, conflicts);
    free(seen);
    mlxn_exec_clear(&ex);
}

static void test_reorder_and_schedule(void) {
    enum { NB = 24, ROUNDS = 200 };
    mlxn_buffer *A = buf1(256), *B = buf1(256);
    mlxn_buffer *v[NB];
    for (int i = 0; i < NB; i++) v[i] = view1(i % 2 ? A : B, 16, (size_t)rng_int(0, 15) * 16 / 2 * (i % 3 == 0 ? 1 : 2) % 240);
    int bad_conflict = 0, bad_nonreorder = 0, total_moved = 0;
    for (int r = 0; r < ROUNDS; r++) {
        uint32_t n = (uint32_t)rng_int(2, 80);
        mlxn_node *nodes = malloc(n * sizeof *nodes), *orig = malloc(n * sizeof *nodes);
        for (uint32_t i = 0; i < n; i++) {
            mlxn_op op = rng_int(0, 9) == 0 ? MLXN_OP_SOFTMAX : (rng_int(0, 1) ? MLXN_OP_SCALE : MLXN_OP_ADD);
            mlxn_buffer *bs[3] = {v[rng_int(0, NB - 1)], v[rng_int(0, NB - 1)], v[rng_int(0, NB - 1)]};
            nodes[i] = mk(op, 1, op == MLXN_OP_ADD ? 2 : 1, bs);
            nodes[i].id = i;
        }
        memcpy(orig, nodes, n * sizeof *nodes);
        check_schedule(nodes, n, "recorded order");
        total_moved += (int)mlxn_pass_reorder(nodes, n, false);
        uint32_t *where = malloc(n * sizeof *where);
        for (uint32_t i = 0; i < n; i++) where[nodes[i].id] = i;
        for (uint32_t i = 0; i < n; i++)
            for (uint32_t j = i + 1; j < n; j++) {
                if (mlxn_nodes_conflict(&orig[i], &orig[j]) && where[i] > where[j]) bad_conflict++;
                bool nr = !mlxn_op_table[orig[i].op].reorderable || !mlxn_op_table[orig[j].op].reorderable;
                if (nr && where[i] > where[j]) bad_nonreorder++;
            }
        check_schedule(nodes, n, "reordered");
        free(where);
        free(nodes);
        free(orig);
    }
    CHECK(bad_conflict == 0, "reorder moved %d nodes across a conflict", bad_conflict);
    CHECK(bad_nonreorder == 0, "reorder moved %d nodes across a non-reorderable node", bad_nonreorder);
    CHECK(total_moved > 0, "reorder moved nothing in %d random graphs", ROUNDS);
    for (int i = 0; i < NB; i++) mlxn_buffer_destroy(v[i]);
    mlxn_buffer_destroy(A);
    mlxn_buffer_destroy(B);
}

/* ---- random DAGs in all four modes ---- */

enum { POOL_ALLOCS = 3, POOL_ELEMS = 4096, MAXV = 12 };

typedef struct rnd_graph {
    mlxn_buffer *allocs[POOL_ALLOCS];
    mlxn_buffer *views[MAXV];
    int64_t rows[MAXV], cols[MAXV];
    mlxn_buffer *w, *wt, *pos;
    int n_views;
} rnd_graph;

/* Record random ops; the random choices come from `seed` so every mode
 * records the same sequence. Failed op calls (aliasing, shapes) are part of
 * the test: they must fail cleanly and leave the session usable. */
static int record_random(mlxn_session *s, rnd_graph *g, uint64_t seed, int n_ops) {
    uint64_t save = g_rng;
    g_rng = seed;
    int recorded = 0;
    for (int k = 0; k < n_ops; k++) {
        int a = rng_int(0, g->n_views - 1), b = rng_int(0, g->n_views - 1), o = rng_int(0, g->n_views - 1);
        mlxn_buffer *A = g->views[a], *B = g->views[b], *O = g->views[o];
        mlxn_status st;
        switch (rng_int(0, 9)) {
        case 0: st = mlxn_op_add(s, O, A, B); break;
        case 1: st = mlxn_op_mul(s, O, A, B); break;
        case 2: st = mlxn_op_scale(s, O, A, 0.5f); break;
        case 3: st = mlxn_op_silu(s, O, A); break;
        case 4: st = mlxn_op_rms_norm(s, O, A, rng_int(0, 1) ? g->w : NULL, 1e-5f); break;
        case 5: st = mlxn_op_softmax(s, O, A, NULL, 0.3f); break;
        case 6: st = mlxn_op_silu_mul(s, O, A, B); break;
        case 7: st = mlxn_op_copy(s, O, A); break;
        case 8: st = mlxn_op_matmul(s, O, A, g->wt); break;
        default: st = mlxn_op_add_rms_norm(s, O, B, A, A, g->w, 1e-5f); break;
        }
        if (st == MLXN_OK) recorded++;
        else if (!(st == MLXN_ERR_SHAPE || st == MLXN_ERR_INVALID_ARG)) {
            CHECK(0, "random op failed with %s: %s", mlxn_status_name(st), mlxn_last_error());
        }
    }
    g_rng = save;
    return recorded;
}

static void snapshot(rnd_graph *g, float *out) {
    for (int i = 0; i < POOL_ALLOCS; i++) CHECK_OK(mlxn_buffer_read(g->allocs[i], 0, out + i * POOL_ELEMS, POOL_ELEMS * 4));
}
static void restore(rnd_graph *g, const float *in) {
    for (int i = 0; i < POOL_ALLOCS; i++) CHECK_OK(mlxn_buffer_write(g->allocs[i], 0, in + i * POOL_ELEMS, POOL_ELEMS * 4));
}

static void test_random_dags(int n_graphs) {
    int mismatched = 0, total_nodes = 0, total_fusions = 0, barriers_vs_nodes_bad = 0;
    float *init = malloc(POOL_ALLOCS * POOL_ELEMS * 4), *ref = malloc(POOL_ALLOCS * POOL_ELEMS * 4),
          *got = malloc(POOL_ALLOCS * POOL_ELEMS * 4);
    for (int gi = 0; gi < n_graphs; gi++) {
        rnd_graph g = {0};
        for (int i = 0; i < POOL_ALLOCS; i++) g.allocs[i] = buf1(POOL_ELEMS);
        int64_t cols = 8 << rng_int(0, 2); /* 8, 16, 32 */
        g.n_views = rng_int(4, MAXV);
        for (int i = 0; i < g.n_views; i++) {
            int64_t rows = rng_int(1, 4);
            int64_t sh[2] = {rows, cols};
            int al = rng_int(0, POOL_ALLOCS - 1);
            size_t max_off = POOL_ELEMS - (size_t)(rows * cols);
            size_t off = (size_t)rng_int(0, (int)(max_off / cols)) * (size_t)cols; /* row-aligned: overlaps happen */
            CHECK_OK(mlxn_buffer_view(&g.views[i], g.allocs[al], MLXN_F32, 2, sh, off * 4));
        }
        int64_t wsh[1] = {cols}, wtsh[2] = {cols, cols};
        CHECK_OK(mlxn_buffer_create(&g.w, dev, MLXN_F32, 1, wsh));
        CHECK_OK(mlxn_buffer_create(&g.wt, dev, MLXN_BF16, 2, wtsh));
        fill(g.w, 0.5f, 1.5f);
        uint16_t wt[32 * 32];
        for (int i = 0; i < cols * cols; i++) wt[i] = mlxn_f32_to_bf16(rng_uniform(-0.3f, 0.3f));
        CHECK_OK(mlxn_buffer_write(g.wt, 0, wt, (size_t)(cols * cols) * 2));
        for (int i = 0; i < POOL_ALLOCS; i++) fill(g.allocs[i], -1, 1);
        snapshot(&g, init);
        uint64_t seed = rng_u64();
        int n_ops = rng_int(1, 30);
        /* mark outputs: all views (so fusion may not drop any write we compare) */
        bool first = true;
        for (int mode = 0; mode < 4; mode++) {
            restore(&g, init);
            mlxn_session *s;
            mlxn_mode m = mode == 0 ? MLXN_MODE_DIRECT : mode == 1 ? MLXN_MODE_BATCHED : MLXN_MODE_OPTIMIZED;
            CHECK_OK(mlxn_session_create(&s, dev, m, 0));
            for (int i = 0; i < g.n_views; i++) CHECK_OK(mlxn_session_mark_output(s, g.views[i]));
            int rec = record_random(s, &g, seed, n_ops);
            CHECK_OK(mlxn_session_finish(s));
            if (mode == 3) { /* replay: run again from the initial state */
                restore(&g, init);
                CHECK_OK(mlxn_session_replay(s));
            }
            mlxn_graph_stats st;
            mlxn_session_stats(s, &st);
            if (mode == 2) {
                total_nodes += rec;
                total_fusions += (int)st.fusions;
            }
            if (mode > 0 && st.nodes && st.barriers >= st.nodes) barriers_vs_nodes_bad++;
            snapshot(&g, first ? ref : got);
            if (!first && memcmp(ref, got, POOL_ALLOCS * POOL_ELEMS * 4) != 0) {
                /* NaN-safe compare: identical bit patterns expected */
                if (mismatched < 3) fprintf(stderr, "  graph %d mode %d differs from direct\n", gi, mode);
                mismatched++;
            }
            first = false;
            mlxn_session_destroy(s);
        }
        for (int i = 0; i < g.n_views; i++) mlxn_buffer_destroy(g.views[i]);
        for (int i = 0; i < POOL_ALLOCS; i++) mlxn_buffer_destroy(g.allocs[i]);
        mlxn_buffer_destroy(g.w);
        mlxn_buffer_destroy(g.wt);
    }
    CHECK(mismatched == 0, "%d of %d random graphs differ between modes", mismatched, n_graphs);
    CHECK(barriers_vs_nodes_bad == 0, "%d runs with barriers >= nodes", barriers_vs_nodes_bad);
    printf("random DAGs: %d graphs, %d nodes recorded (optimized), %d fusions, identical in 4 modes\n", n_graphs,
           total_nodes, total_fusions);
    free(init);
    free(ref);
    free(got);
}

/* Replay with new step parameters equals recording anew with them. */
static void test_replay_params(void) {
    int64_t xs[3] = {1, 2, 8}, ps[1] = {1};
    mlxn_buffer *x, *y, *pos;
    CHECK_OK(mlxn_buffer_create(&x, dev, MLXN_F32, 3, xs));
    CHECK_OK(mlxn_buffer_create(&y, dev, MLXN_F32, 3, xs));
    CHECK_OK(mlxn_buffer_create(&pos, dev, MLXN_I32, 1, ps));
    fill(x, -1, 1);
    mlxn_session *s;
    CHECK_OK(mlxn_session_create(&s, dev, MLXN_MODE_OPTIMIZED, 0));
    int32_t p = 3;
    CHECK_OK(mlxn_buffer_write(pos, 0, &p, 4));
    CHECK_OK(mlxn_op_rope(s, y, x, pos, NULL, NULL));
    CHECK_OK(mlxn_session_finish(s));
    float r1[16], r2[16];
    p = 11;
    CHECK_OK(mlxn_buffer_write(pos, 0, &p, 4));
    CHECK_OK(mlxn_session_replay(s));
    CHECK_OK(mlxn_buffer_read(y, 0, r1, sizeof r1));
    mlxn_session *s2;
    CHECK_OK(mlxn_session_create(&s2, dev, MLXN_MODE_DIRECT, 0));
    CHECK_OK(mlxn_op_rope(s2, y, x, pos, NULL, NULL));
    CHECK_OK(mlxn_session_finish(s2));
    CHECK_OK(mlxn_buffer_read(y, 0, r2, sizeof r2));
    CHECK(memcmp(r1, r2, sizeof r1) == 0, "replay with position 11 equals a fresh run at 11");
    mlxn_graph_stats st;
    mlxn_session_stats(s, &st);
    CHECK(st.replays == 1 && st.submissions == 1, "replay stats: %u replays, %u submissions", st.replays,
          st.submissions);
    mlxn_session_destroy(s);
    mlxn_session_destroy(s2);
    mlxn_buffer_destroy(x);
    mlxn_buffer_destroy(y);
    mlxn_buffer_destroy(pos);
}

static void test_bad_input(void) {
    mlxn_session *s;
    CHECK_OK(mlxn_session_create(&s, dev, MLXN_MODE_BATCHED, 0));
    mlxn_buffer *a = mat(2, 16), *b = mat(2, 8), *base = buf1(32), *v = NULL;
    int64_t sh[1] = {16};
    CHECK_STATUS(mlxn_op_add(s, a, a, b), MLXN_ERR_SHAPE);
    CHECK(strstr(mlxn_last_error(), "add") != NULL, "message names the op: %s", mlxn_last_error());
    CHECK_STATUS(mlxn_buffer_view(&v, base, MLXN_F32, 1, sh, 20 * 4), MLXN_ERR_RANGE);
    CHECK(v == NULL, "failed view leaves out NULL");
    mlxn_buffer *v0 = view1(base, 16, 0), *v4 = view1(base, 16, 4);
    CHECK_STATUS(mlxn_op_silu(s, v4, v0), MLXN_ERR_INVALID_ARG); /* partial overlap */
    CHECK_STATUS(mlxn_op_matmul(s, a, a, a), MLXN_ERR_SHAPE);
    mlxn_buffer *i32 = NULL;
    int64_t is[2] = {2, 16};
    CHECK_OK(mlxn_buffer_create(&i32, dev, MLXN_I32, 2, is));
    CHECK_STATUS(mlxn_op_silu(s, a, i32), MLXN_ERR_DTYPE);
    CHECK_OK(mlxn_op_silu(s, v0, v0)); /* in place over the same range is fine */
    CHECK_OK(mlxn_session_finish(s)); /* the session stays usable after failures */
    mlxn_graph_stats st;
    mlxn_session_stats(s, &st);
    CHECK(st.nodes == 1, "only the valid op was recorded (%u)", st.nodes);
    CHECK_STATUS(mlxn_session_submit(s), MLXN_ERR_STATE);
    mlxn_session_reset(s);
    CHECK_STATUS(mlxn_session_replay(s), MLXN_ERR_STATE);
    int64_t bad[2] = {2, -1};
    mlxn_buffer *x = NULL;
    CHECK_STATUS(mlxn_buffer_create(&x, dev, MLXN_F32, 2, bad), MLXN_ERR_SHAPE);
    int64_t q[1] = {33};
    CHECK_STATUS(mlxn_buffer_create(&x, dev, MLXN_Q4_0, 1, q), MLXN_ERR_SHAPE);
    mlxn_device *d2 = NULL;
    CHECK_STATUS(mlxn_device_open(&d2, "tpu", NULL), MLXN_ERR_NOT_FOUND);
    mlxn_session_destroy(s);
    mlxn_buffer *all[] = {a, b, base, v0, v4, i32};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) mlxn_buffer_destroy(all[i]);
    mlxn_buffer_destroy(NULL);
    mlxn_session_destroy(NULL);
    mlxn_device_close(NULL);
}

/* CPU producer fusion (cpu_backend.c): a one-row add_rms_norm / silu_mul /
 * rms_norm whose group is followed by a group of one-row matmuls of its
 * output runs inside that group. On 2 and 3 worker threads, replayed with
 * new inputs: every output equal to direct mode on one thread (the same
 * kernels on the same rows: exact), and the run's phases 3 instead of 6;
 * silu_mul in place over its input, which another worker may still read,
 * stays a phase of its own; MLXN_CPU_PREFUSE=0 runs all 6. */
static void pf_build(mlxn_session *s, mlxn_buffer **b, bool in_place) {
    /* b: 0 x, 1 r, 2 nw, 3 sum, 4 h, 5 Wg, 6 Wu, 7 g, 8 u, 9 f, 10 Wd, 11 y, 12 h2, 13 Wh, 14 z */
    CHECK_OK(mlxn_op_add_rms_norm(s, b[3], b[4], b[0], b[1], b[2], 1e-5f));
    CHECK_OK(mlxn_op_matmul(s, b[7], b[4], b[5]));
    CHECK_OK(mlxn_op_matmul(s, b[8], b[4], b[6]));
    mlxn_buffer *f = in_place ? b[7] : b[9];
    CHECK_OK(mlxn_op_silu_mul(s, f, b[7], b[8]));
    CHECK_OK(mlxn_op_matmul(s, b[11], f, b[10]));
    CHECK_OK(mlxn_op_rms_norm(s, b[12], b[11], b[2], 1e-5f));
    CHECK_OK(mlxn_op_matmul(s, b[14], b[12], b[13]));
}
static void test_cpu_producer_fusion(void) {
    const int64_t K = 256, F = 160, V = 96;
    int64_t shapes[15][2] = {{1, K}, {1, K}, {1, K}, {1, K}, {1, K}, {F, K}, {F, K}, {1, F},
                             {1, F}, {1, F}, {K, F}, {1, K}, {1, K}, {V, K}, {1, V}};
    int outs[] = {3, 4, 7, 8, 9, 11, 12, 14};
    for (int c = 0; c < 4; c++) { /* threads 2, 3; in place; MLXN_CPU_PREFUSE=0 */
        int nth = c == 1 ? 3 : 2;
        bool in_place = c == 2, off = c == 3;
        mlxn_device *d[2] = {NULL, NULL};
        mlxn_device_options o1 = {.n_threads = 1}, on = {.n_threads = nth};
        CHECK_OK(mlxn_device_open(&d[0], "cpu", &o1));
        CHECK_OK(mlxn_device_open(&d[1], "cpu", &on));
        mlxn_buffer *b[2][15];
        for (int k = 0; k < 2; k++)
            for (int i = 0; i < 15; i++) {
                b[k][i] = NULL;
                CHECK_OK(mlxn_buffer_create(&b[k][i], d[k], MLXN_F32, 2, shapes[i]));
            }
        uint64_t seed = rng_u64();
        if (off) setenv("MLXN_CPU_PREFUSE", "0", 1);
        mlxn_session *s1 = NULL;
        CHECK_OK(mlxn_session_create(&s1, d[1], MLXN_MODE_OPTIMIZED, 0));
        for (int step = 0; step < 2; step++) {
            int ins[] = {0, 1, 2, 5, 6, 10, 13};
            for (int k = 0; k < 2; k++) { /* the same inputs on both devices (nw in [0.5, 1.5)) */
                g_rng = seed + (uint64_t)step;
                for (size_t i = 0; i < sizeof ins / sizeof ins[0]; i++)
                    fill(b[k][ins[i]], ins[i] == 2 ? 0.5f : -1.0f, ins[i] == 2 ? 1.5f : 1.0f);
            }
            mlxn_session *s0 = NULL;
            CHECK_OK(mlxn_session_create(&s0, d[0], MLXN_MODE_DIRECT, 0));
            pf_build(s0, b[0], in_place);
            CHECK_OK(mlxn_session_finish(s0));
            CHECK_OK(mlxn_session_wait(s0));
            mlxn_session_destroy(s0);
            if (step == 0) {
                pf_build(s1, b[1], in_place);
                for (size_t i = 0; i < sizeof outs / sizeof outs[0]; i++)
                    CHECK_OK(mlxn_session_mark_output(s1, b[1][outs[i]]));
                CHECK_OK(mlxn_session_finish(s1));
            } else {
                CHECK_OK(mlxn_session_replay(s1));
            }
            CHECK_OK(mlxn_session_wait(s1));
            mlxn_graph_stats st;
            mlxn_session_stats(s1, &st);
            uint32_t want = off ? 6 : in_place ? 4 : 3;
            CHECK(st.groups == 6 && st.phases == want,
                  "cpu producer fusion case %d step %d: %u groups, %u phases; expected 6, %u", c, step, st.groups,
                  st.phases, want);
            for (size_t i = 0; i < sizeof outs / sizeof outs[0]; i++) {
                if (in_place && outs[i] == 9) continue;
                size_t n = mlxn_buffer_nbytes(b[0][outs[i]]) / 4;
                float *r0 = malloc(n * 4), *r1 = malloc(n * 4);
                double *ref = malloc(n * sizeof(double));
                CHECK_OK(mlxn_buffer_read(b[0][outs[i]], 0, r0, n * 4));
                CHECK_OK(mlxn_buffer_read(b[1][outs[i]], 0, r1, n * 4));
                for (size_t j = 0; j < n; j++) ref[j] = r0[j];
                char what[96];
                snprintf(what, sizeof what, "cpu producer fusion case %d step %d output %d", c, step, outs[i]);
                check_close(what, r1, ref, n, 0, 0);
                free(r0);
                free(r1);
                free(ref);
            }
        }
        if (off) unsetenv("MLXN_CPU_PREFUSE");
        mlxn_session_destroy(s1);
        for (int k = 0; k < 2; k++)
            for (int i = 0; i < 15; i++) mlxn_buffer_destroy(b[k][i]);
        mlxn_device_close(d[0]);
        mlxn_device_close(d[1]);
    }
}

static void test_pool(void) {
    mlxn_pool *p;
    CHECK_OK(mlxn_pool_create(&p, dev));
    int64_t sh[2] = {4, 100};
    mlxn_buffer *a, *b;
    CHECK_OK(mlxn_pool_take(p, &a, MLXN_F32, 2, sh));
    void *pa = mlxn_buffer_host_ptr(a);
    mlxn_buffer_destroy(a);
    CHECK_OK(mlxn_pool_take(p, &b, MLXN_F32, 2, sh));
    CHECK(mlxn_buffer_host_ptr(b) == pa, "pool reuses a returned allocation");
    size_t held = mlxn_pool_bytes(p);
    CHECK(held == 2048, "pool holds one 2 KiB bucket (%zu)", held);
    mlxn_pool_destroy(p); /* b still out: freed when destroyed */
    mlxn_buffer_destroy(b);
}

int main(void) {
    mlxn_device_options o = {.n_threads = 2};
    CHECK_OK(mlxn_device_open(&dev, "cpu", &o));
    test_conflicts();
    test_fusion();
    test_reorder_and_schedule();
    test_random_dags(1000);
    test_replay_params();
    test_bad_input();
    test_pool();
    test_cpu_producer_fusion();
    mlxn_device_close(dev);
    return test_summary("test_graph");
}
