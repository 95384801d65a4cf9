/*
 * ops.c — the public op calls: validate arguments (dtype, shape, device,
 * aliasing), fill the node's typed params and slots, and record it. The
 * slots declare every byte range a node touches, which is what the conflict
 * tracking of the graph stands on.
 */
#include "backend/backend.h"
#include "graph/graph.h"
#include "ops/ops.h"

#include <math.h>
#include <string.h>

const mlxn_op_desc mlxn_op_table[MLXN_OP_COUNT] = {
    [MLXN_OP_ADD] = {"add", true},
    [MLXN_OP_MUL] = {"mul", true},
    [MLXN_OP_SCALE] = {"scale", true},
    [MLXN_OP_SILU] = {"silu", true},
    [MLXN_OP_SILU_MUL] = {"silu_mul", true},
    [MLXN_OP_GELU] = {"gelu", true},
    [MLXN_OP_SOFTCAP] = {"softcap", true},
    [MLXN_OP_RMS_NORM] = {"rms_norm", true},
    [MLXN_OP_ADD_RMS_NORM] = {"add_rms_norm", true},
    [MLXN_OP_LAYER_NORM] = {"layer_norm", true},
    [MLXN_OP_SOFTMAX] = {"softmax", false},
    [MLXN_OP_MATMUL] = {"matmul", true},
    [MLXN_OP_MATMUL_MLX] = {"matmul_mlx", true},
    [MLXN_OP_ROPE] = {"rope", true},
    [MLXN_OP_COPY] = {"copy", true},
    [MLXN_OP_GET_ROWS] = {"get_rows", true},
    [MLXN_OP_GET_ROWS_MLX] = {"get_rows_mlx", true},
    [MLXN_OP_KV_WRITE] = {"kv_write", true},
    [MLXN_OP_ATTENTION] = {"attention", false},
    [MLXN_OP_ARGMAX] = {"argmax", false},
    [MLXN_OP_TOP_K] = {"top_k", false},
    [MLXN_OP_MATMUL_ID] = {"matmul_id", true},
    [MLXN_OP_ROPE_KV_WRITE] = {"rope_kv_write", true},
    [MLXN_OP_ATTENTION_PARTIAL] = {"attention_partial", false},
    [MLXN_OP_ATTENTION_MERGE] = {"attention_merge", false},
    [MLXN_OP_LOGSUMEXP] = {"logsumexp", false},
};
_Static_assert(sizeof mlxn_op_table / sizeof mlxn_op_table[0] == MLXN_OP_COUNT,
               "op table out of date");

bool mlxn_nodes_conflict(const mlxn_node *a, const mlxn_node *b) {
    for (int i = 0; i < a->n_slots; i++) {
        for (int j = 0; j < b->n_slots; j++) {
            if ((i < a->n_out || j < b->n_out) && mlxn_ranges_overlap(&a->t[i], &b->t[j]))
                return true;
        }
    }
    return false;
}

/* Implemented in graph/session.c: append (and in direct mode run) a node. */
mlxn_status mlxn_session_record(mlxn_session *s, mlxn_node *n);
mlxn_device *mlxn_session_device(const mlxn_session *s);
void mlxn_session_drop_last(mlxn_session *s);

/* ---- validation helpers; each names the op and the argument ---- */

typedef struct opctx {
    mlxn_session *s;
    mlxn_node n;
    const char *op;
} opctx;

static mlxn_status begin(opctx *c, mlxn_session *s, mlxn_op op) {
    memset(c, 0, sizeof *c);
    c->s = s;
    c->n.op = op;
    c->op = mlxn_op_name(op);
    if (!s) return mlxn_err(MLXN_ERR_INVALID_ARG, "%s: session is NULL", c->op);
    return MLXN_OK;
}

/* Put a buffer into the next slot. `required` false lets NULL through as an
 * absent optional argument. */
static mlxn_status slot(opctx *c, const mlxn_buffer *b, const char *arg, bool required) {
    if (c->n.n_slots >= MLXN_MAX_SLOTS)
        return mlxn_err(MLXN_ERR_STATE, "%s: too many arguments", c->op);
    mlxn_tensor *t = &c->n.t[c->n.n_slots++];
    if (!b) {
        if (required) return mlxn_err(MLXN_ERR_INVALID_ARG, "%s: %s is NULL", c->op, arg);
        memset(t, 0, sizeof *t);
        return MLXN_OK;
    }
    if (b->t.alloc->dev != mlxn_session_device(c->s))
        return mlxn_err(MLXN_ERR_INVALID_ARG, "%s: %s lives on another device (%s)", c->op, arg,
                        b->t.alloc->dev->kind);
    *t = b->t;
    return MLXN_OK;
}

static mlxn_status out_slot(opctx *c, mlxn_buffer *b, const char *arg) {
    mlxn_status st = slot(c, b, arg, true);
    if (st) return st;
    if (b->t.alloc->flags & MLXN_ALLOC_READONLY)
        return mlxn_err(MLXN_ERR_INVALID_ARG, "%s: %s is read-only (adopted memory)", c->op, arg);
    c->n.n_out++;
    return MLXN_OK;
}

static mlxn_status want_dtype(opctx *c, int slot_i, const char *arg, mlxn_dtype want) {
    const mlxn_tensor *t = &c->n.t[slot_i];
    if (t->alloc && t->dtype != want)
        return mlxn_err(MLXN_ERR_DTYPE, "%s: %s must be %s, got %s", c->op, arg,
                        mlxn_dtype_name(want), mlxn_dtype_name(t->dtype));
    return MLXN_OK;
}

static mlxn_status want_float(opctx *c, int slot_i, const char *arg) {
    const mlxn_tensor *t = &c->n.t[slot_i];
    if (t->alloc && !mlxn_dtype_is_float(t->dtype))
        return mlxn_err(MLXN_ERR_DTYPE, "%s: %s must be f32, f16 or bf16, got %s", c->op, arg,
                        mlxn_dtype_name(t->dtype));
    return MLXN_OK;
}

static mlxn_status want_elems(opctx *c, int i, int j, const char *ai, const char *aj) {
    const mlxn_tensor *a = &c->n.t[i], *b = &c->n.t[j];
    if (mlxn_tensor_elems(a) != mlxn_tensor_elems(b)) {
        char s1[64], s2[64];
        return mlxn_err(MLXN_ERR_SHAPE, "%s: %s %s and %s %s differ in size", c->op, ai,
                        mlxn_tensor_str(a, s1, sizeof s1), aj, mlxn_tensor_str(b, s2, sizeof s2));
    }
    return MLXN_OK;
}

/* A vector of the last dim of slot `of` (or, when `full_ok`, the same size). */
static mlxn_status want_vec(opctx *c, int i, int of, const char *arg, bool full_ok) {
    const mlxn_tensor *v = &c->n.t[i], *x = &c->n.t[of];
    if (!v->alloc) return MLXN_OK;
    int64_t ve = mlxn_tensor_elems(v);
    bool is_vec = ve == mlxn_tensor_cols(x) && mlxn_tensor_cols(v) == ve; /* [D] or [1, .., D] */
    bool same = full_ok && ve == mlxn_tensor_elems(x) && mlxn_tensor_cols(v) == mlxn_tensor_cols(x);
    if (is_vec || same) return MLXN_OK;
    char s1[64], s2[64];
    return mlxn_err(MLXN_ERR_SHAPE, "%s: %s %s must have %lld elements (the last dim of %s)%s",
                    c->op, arg, mlxn_tensor_str(v, s1, sizeof s1), (long long)mlxn_tensor_cols(x),
                    mlxn_tensor_str(x, s2, sizeof s2), full_ok ? " or match its shape" : "");
}

/* Outputs must not overlap inputs, except an identical range where the op
 * works in place. */
static mlxn_status check_alias(opctx *c, bool inplace_ok) {
    for (int o = 0; o < c->n.n_out; o++) {
        for (int i = 0; i < c->n.n_slots; i++) {
            if (i == o || !mlxn_ranges_overlap(&c->n.t[o], &c->n.t[i])) continue;
            bool same = c->n.t[o].offset == c->n.t[i].offset && c->n.t[o].nbytes == c->n.t[i].nbytes;
            if (i >= c->n.n_out && inplace_ok && same) continue;
            return mlxn_err(MLXN_ERR_INVALID_ARG,
                            "%s: output %d (bytes %zu..%zu) overlaps argument %d (bytes %zu..%zu)%s",
                            c->op, o, c->n.t[o].offset, c->n.t[o].offset + c->n.t[o].nbytes, i,
                            c->n.t[i].offset, c->n.t[i].offset + c->n.t[i].nbytes,
                            inplace_ok ? " and is not the same range" : "; this op cannot work in place");
        }
    }
    return MLXN_OK;
}

static mlxn_status finish(opctx *c, bool inplace_ok) {
    mlxn_status st = check_alias(c, inplace_ok);
    if (st) return st;
    return mlxn_session_record(c->s, &c->n);
}

#define TRY(x)                          \
    do {                                \
        mlxn_status st_ = (x);          \
        if (st_ != MLXN_OK) return st_; \
    } while (0)

/* ---- elementwise ---- */

static mlxn_status binary(mlxn_session *s, mlxn_op op, mlxn_buffer *out, const mlxn_buffer *a,
                          const mlxn_buffer *b) {
    opctx c;
    TRY(begin(&c, s, op));
    TRY(out_slot(&c, out, "out"));
    TRY(slot(&c, a, "a", true));
    TRY(slot(&c, b, "b", true));
    TRY(want_dtype(&c, 0, "out", MLXN_F32));
    TRY(want_dtype(&c, 1, "a", MLXN_F32));
    TRY(want_float(&c, 2, "b"));
    TRY(want_elems(&c, 0, 1, "out", "a"));
    TRY(want_vec(&c, 2, 1, "b", true));
    return finish(&c, true);
}

mlxn_status mlxn_op_add(mlxn_session *s, mlxn_buffer *out, const mlxn_buffer *a, const mlxn_buffer *b) {
    return binary(s, MLXN_OP_ADD, out, a, b);
}
mlxn_status mlxn_op_mul(mlxn_session *s, mlxn_buffer *out, const mlxn_buffer *a, const mlxn_buffer *b) {
    return binary(s, MLXN_OP_MUL, out, a, b);
}

static mlxn_status unary(mlxn_session *s, mlxn_op op, mlxn_buffer *out, const mlxn_buffer *a,
                         float f, int mode) {
    opctx c;
    TRY(begin(&c, s, op));
    TRY(out_slot(&c, out, "out"));
    TRY(slot(&c, a, "a", true));
    TRY(want_dtype(&c, 0, "out", MLXN_F32));
    TRY(want_dtype(&c, 1, "a", MLXN_F32));
    TRY(want_elems(&c, 0, 1, "out", "a"));
    c.n.p.u.f = f;
    c.n.p.u.mode = mode;
    return finish(&c, true);
}

mlxn_status mlxn_op_scale(mlxn_session *s, mlxn_buffer *out, const mlxn_buffer *a, float scale) {
    return unary(s, MLXN_OP_SCALE, out, a, scale, 0);
}
mlxn_status mlxn_op_silu(mlxn_session *s, mlxn_buffer *out, const mlxn_buffer *a) {
    return unary(s, MLXN_OP_SILU, out, a, 0, 0);
}
mlxn_status mlxn_op_gelu(mlxn_session *s, mlxn_buffer *out, const mlxn_buffer *a, int approximate) {
    return unary(s, MLXN_OP_GELU, out, a, 0, approximate != 0);
}
mlxn_status mlxn_op_softcap(mlxn_session *s, mlxn_buffer *out, const mlxn_buffer *a, float cap) {
    if (!(cap > 0)) return mlxn_err(MLXN_ERR_INVALID_ARG, "softcap: cap %g must be > 0", (double)cap);
    return unary(s, MLXN_OP_SOFTCAP, out, a, cap, 0);
}

mlxn_status mlxn_op_silu_mul(mlxn_session *s, mlxn_buffer *out, const mlxn_buffer *gate,
                             const mlxn_buffer *up) {
    opctx c;
    TRY(begin(&c, s, MLXN_OP_SILU_MUL));
    TRY(out_slot(&c, out, "out"));
    TRY(slot(&c, gate, "gate", true));
    TRY(slot(&c, up, "up", true));
    for (int i = 0; i < 3; i++) TRY(want_dtype(&c, i, i == 0 ? "out" : i == 1 ? "gate" : "up", MLXN_F32));
    TRY(want_elems(&c, 0, 1, "out", "gate"));
    TRY(want_elems(&c, 0, 2, "out", "up"));
    return finish(&c, true);
}

/* ---- norms, softmax ---- */

static float eps_or_default(float eps) { return eps > 0 ? eps : 1e-5f; }

mlxn_status mlxn_op_rms_norm(mlxn_session *s, mlxn_buffer *out, const mlxn_buffer *x,
                             const mlxn_buffer *w, float eps) {
    opctx c;
    TRY(begin(&c, s, MLXN_OP_RMS_NORM));
    TRY(out_slot(&c, out, "out"));
    TRY(slot(&c, x, "x", true));
    TRY(slot(&c, w, "w", false));
    TRY(want_dtype(&c, 0, "out", MLXN_F32));
    TRY(want_dtype(&c, 1, "x", MLXN_F32));
    TRY(want_float(&c, 2, "w"));
    TRY(want_elems(&c, 0, 1, "out", "x"));
    TRY(want_vec(&c, 2, 1, "w", false));
    c.n.p.norm.eps = eps_or_default(eps);
    return finish(&c, true);
}

mlxn_status mlxn_op_add_rms_norm(mlxn_session *s, mlxn_buffer *sum, mlxn_buffer *out,
                                 const mlxn_buffer *a, const mlxn_buffer *b, const mlxn_buffer *w,
                                 float eps) {
    opctx c;
    TRY(begin(&c, s, MLXN_OP_ADD_RMS_NORM));
    TRY(out_slot(&c, sum, "sum"));
    TRY(out_slot(&c, out, "out"));
    TRY(slot(&c, a, "a", true));
    TRY(slot(&c, b, "b", true));
    TRY(slot(&c, w, "w", false));
    for (int i = 0; i < 4; i++) TRY(want_dtype(&c, i, "sum/out/a/b", MLXN_F32));
    TRY(want_float(&c, 4, "w"));
    TRY(want_elems(&c, 0, 2, "sum", "a"));
    TRY(want_elems(&c, 1, 2, "out", "a"));
    TRY(want_elems(&c, 3, 2, "b", "a"));
    TRY(want_vec(&c, 4, 2, "w", false));
    c.n.p.norm.eps = eps_or_default(eps);
    /* sum may be a (in place); out must be separate from sum. */
    if (mlxn_ranges_overlap(&c.n.t[0], &c.n.t[1]))
        return mlxn_err(MLXN_ERR_INVALID_ARG, "add_rms_norm: sum and out overlap");
    return finish(&c, true);
}

mlxn_status mlxn_op_layer_norm(mlxn_session *s, mlxn_buffer *out, const mlxn_buffer *x,
                               const mlxn_buffer *w, const mlxn_buffer *b, float eps) {
    opctx c;
    TRY(begin(&c, s, MLXN_OP_LAYER_NORM));
    TRY(out_slot(&c, out, "out"));
    TRY(slot(&c, x, "x", true));
    TRY(slot(&c, w, "w", false));
    TRY(slot(&c, b, "b", false));
    TRY(want_dtype(&c, 0, "out", MLXN_F32));
    TRY(want_dtype(&c, 1, "x", MLXN_F32));
    TRY(want_float(&c, 2, "w"));
    TRY(want_float(&c, 3, "b"));
    TRY(want_elems(&c, 0, 1, "out", "x"));
    TRY(want_vec(&c, 2, 1, "w", false));
    TRY(want_vec(&c, 3, 1, "b", false));
    c.n.p.norm.eps = eps_or_default(eps);
    return finish(&c, true);
}

mlxn_status mlxn_op_softmax(mlxn_session *s, mlxn_buffer *out, const mlxn_buffer *x,
                            const mlxn_buffer *mask, float scale) {
    opctx c;
    TRY(begin(&c, s, MLXN_OP_SOFTMAX));
    TRY(out_slot(&c, out, "out"));
    TRY(slot(&c, x, "x", true));
    TRY(slot(&c, mask, "mask", false));
    TRY(want_dtype(&c, 0, "out", MLXN_F32));
    TRY(want_dtype(&c, 1, "x", MLXN_F32));
    TRY(want_dtype(&c, 2, "mask", MLXN_F32));
    TRY(want_elems(&c, 0, 1, "out", "x"));
    TRY(want_vec(&c, 2, 1, "mask", true));
    c.n.p.softmax.scale = scale != 0 ? scale : 1.0f;
    return finish(&c, true);
}

/* ---- matmul ---- */

mlxn_status mlxn_op_matmul(mlxn_session *s, mlxn_buffer *out, const mlxn_buffer *x,
                           const mlxn_buffer *w) {
    opctx c;
    TRY(begin(&c, s, MLXN_OP_MATMUL));
    TRY(out_slot(&c, out, "out"));
    TRY(slot(&c, x, "x", true));
    TRY(slot(&c, w, "w", true));
    TRY(want_dtype(&c, 0, "out", MLXN_F32));
    TRY(want_dtype(&c, 1, "x", MLXN_F32));
    const mlxn_tensor *to = &c.n.t[0], *tx = &c.n.t[1], *tw = &c.n.t[2];
    mlxn_dtype wt = tw->dtype;
    if (!(mlxn_dtype_is_float(wt) || mlxn_dtype_is_block(wt)))
        return mlxn_err(MLXN_ERR_DTYPE, "matmul: w dtype %s is not a weight format", mlxn_dtype_name(wt));
    char s1[64], s2[64], s3[64];
    if (tw->ndim != 2 || tw->shape[1] != mlxn_tensor_cols(tx) ||
        mlxn_tensor_rows(to) != mlxn_tensor_rows(tx) || mlxn_tensor_cols(to) != tw->shape[0])
        return mlxn_err(MLXN_ERR_SHAPE, "matmul: out %s = x %s * w^T with w %s: shapes disagree",
                        mlxn_tensor_str(to, s1, 64), mlxn_tensor_str(tx, s2, 64),
                        mlxn_tensor_str(tw, s3, 64));
    return finish(&c, false);
}

static mlxn_status check_mlx_quant(opctx *c, int wq_slot, int64_t N, int64_t K, mlxn_mlx_quant *q) {
    int bits = q->bits ? q->bits : 4, gs = q->group_size ? q->group_size : 64;
    if (!(bits == 2 || bits == 3 || bits == 4 || bits == 5 || bits == 6 || bits == 8))
        return mlxn_err(MLXN_ERR_UNSUPPORTED, "%s: %d bits is not an MLX affine width (2,3,4,5,6,8)", c->op, bits);
    if (!(gs == 32 || gs == 64 || gs == 128))
        return mlxn_err(MLXN_ERR_UNSUPPORTED, "%s: group size %d is not 32, 64 or 128", c->op, gs);
    q->bits = bits;
    q->group_size = gs;
    const mlxn_tensor *wq = &c->n.t[wq_slot], *sc = &c->n.t[wq_slot + 1], *bi = &c->n.t[wq_slot + 2];
    TRY(want_dtype(c, wq_slot, "wq", MLXN_U32));
    TRY(want_float(c, wq_slot + 1, "scales"));
    if (sc->dtype != bi->dtype)
        return mlxn_err(MLXN_ERR_DTYPE, "%s: scales (%s) and biases (%s) differ in dtype", c->op,
                        mlxn_dtype_name(sc->dtype), mlxn_dtype_name(bi->dtype));
    if (K % gs)
        return mlxn_err(MLXN_ERR_SHAPE, "%s: K=%lld is not divisible by group size %d", c->op, (long long)K, gs);
    if ((K * bits) % 32)
        return mlxn_err(MLXN_ERR_SHAPE, "%s: K=%lld * %d bits is not a whole number of u32 words", c->op,
                        (long long)K, bits);
    char s1[64];
    if (wq->ndim != 2 || wq->shape[0] != N || wq->shape[1] != K * bits / 32)
        return mlxn_err(MLXN_ERR_SHAPE, "%s: wq %s should be u32[%lld, %lld] for N=%lld K=%lld at %d bits",
                        c->op, mlxn_tensor_str(wq, s1, 64), (long long)N, (long long)(K * bits / 32),
                        (long long)N, (long long)K, bits);
    for (int i = 1; i <= 2; i++) {
        const mlxn_tensor *t = &c->n.t[wq_slot + i];
        if (t->ndim != 2 || t->shape[0] != N || t->shape[1] != K / gs)
            return mlxn_err(MLXN_ERR_SHAPE, "%s: %s %s should be [%lld, %lld] (N, K/group_size)", c->op,
                            i == 1 ? "scales" : "biases", mlxn_tensor_str(t, s1, 64), (long long)N,
                            (long long)(K / gs));
    }
    return MLXN_OK;
}

mlxn_status mlxn_op_matmul_mlx(mlxn_session *s, mlxn_buffer *out, const mlxn_buffer *x,
                               const mlxn_buffer *wq, const mlxn_buffer *scales,
                               const mlxn_buffer *biases, const mlxn_mlx_quant *q) {
    opctx c;
    TRY(begin(&c, s, MLXN_OP_MATMUL_MLX));
    TRY(out_slot(&c, out, "out"));
    TRY(slot(&c, x, "x", true));
    TRY(slot(&c, wq, "wq", true));
    TRY(slot(&c, scales, "scales", true));
    TRY(slot(&c, biases, "biases", true));
    TRY(want_dtype(&c, 0, "out", MLXN_F32));
    TRY(want_dtype(&c, 1, "x", MLXN_F32));
    mlxn_mlx_quant qq = q ? *q : (mlxn_mlx_quant){0};
    int64_t N = mlxn_tensor_cols(&c.n.t[0]), K = mlxn_tensor_cols(&c.n.t[1]);
    if (mlxn_tensor_rows(&c.n.t[0]) != mlxn_tensor_rows(&c.n.t[1]))
        return mlxn_err(MLXN_ERR_SHAPE, "matmul_mlx: out has %lld rows, x has %lld",
                        (long long)mlxn_tensor_rows(&c.n.t[0]), (long long)mlxn_tensor_rows(&c.n.t[1]));
    TRY(check_mlx_quant(&c, 2, N, K, &qq));
    c.n.p.mlx = qq;
    return finish(&c, false);
}

/* ---- rope, copy, gather, cache, attention, argmax ---- */

static mlxn_status want_positions(opctx *c, int i, int64_t T) {
    TRY(want_dtype(c, i, "positions", MLXN_I32));
    if (mlxn_tensor_elems(&c->n.t[i]) != T)
        return mlxn_err(MLXN_ERR_SHAPE, "%s: positions has %lld entries, expected %lld (one per token)",
                        c->op, (long long)mlxn_tensor_elems(&c->n.t[i]), (long long)T);
    return MLXN_OK;
}

mlxn_status mlxn_op_rope(mlxn_session *s, mlxn_buffer *out, const mlxn_buffer *x,
                         const mlxn_buffer *positions, const mlxn_buffer *freq_factors,
                         const mlxn_rope_params *p) {
    opctx c;
    TRY(begin(&c, s, MLXN_OP_ROPE));
    TRY(out_slot(&c, out, "out"));
    TRY(slot(&c, x, "x", true));
    TRY(slot(&c, positions, "positions", true));
    TRY(slot(&c, freq_factors, "freq_factors", false));
    TRY(want_dtype(&c, 0, "out", MLXN_F32));
    TRY(want_dtype(&c, 1, "x", MLXN_F32));
    TRY(want_dtype(&c, 3, "freq_factors", MLXN_F32));
    TRY(want_elems(&c, 0, 1, "out", "x"));
    const mlxn_tensor *tx = &c.n.t[1];
    if (tx->ndim != 3)
        return mlxn_err(MLXN_ERR_SHAPE, "rope: x must be [T, H, D], got %d dims", tx->ndim);
    TRY(want_positions(&c, 2, tx->shape[0]));
    mlxn_rope_params rp = p ? *p : (mlxn_rope_params){0};
    int64_t D = tx->shape[2];
    if (rp.n_dims == 0) rp.n_dims = (int)D;
    if (rp.n_dims < 2 || rp.n_dims > D || rp.n_dims % 2)
        return mlxn_err(MLXN_ERR_SHAPE, "rope: n_dims %d must be even and in 2..%lld", rp.n_dims, (long long)D);
    if ((unsigned)rp.mode > MLXN_ROPE_NEOX || (unsigned)rp.scaling > MLXN_ROPE_SCALE_LLAMA3)
        return mlxn_err(MLXN_ERR_INVALID_ARG, "rope: unknown mode %d or scaling %d", rp.mode, rp.scaling);
    if (rp.base == 0) rp.base = 10000.0f;
    if (rp.factor == 0) rp.factor = 1.0f;
    if (rp.low_freq_factor == 0) rp.low_freq_factor = 1.0f;
    if (rp.high_freq_factor == 0) rp.high_freq_factor = 4.0f;
    if (rp.original_max_pos == 0) rp.original_max_pos = 8192;
    if (c.n.t[3].alloc && mlxn_tensor_elems(&c.n.t[3]) != rp.n_dims / 2)
        return mlxn_err(MLXN_ERR_SHAPE, "rope: freq_factors has %lld entries, expected n_dims/2 = %d",
                        (long long)mlxn_tensor_elems(&c.n.t[3]), rp.n_dims / 2);
    c.n.p.rope = rp;
    return finish(&c, true);
}

mlxn_status mlxn_op_copy(mlxn_session *s, mlxn_buffer *out, const mlxn_buffer *x) {
    opctx c;
    TRY(begin(&c, s, MLXN_OP_COPY));
    TRY(out_slot(&c, out, "out"));
    TRY(slot(&c, x, "x", true));
    bool same = c.n.t[0].dtype == c.n.t[1].dtype && !mlxn_dtype_is_block(c.n.t[0].dtype);
    if (!same) {
        TRY(want_float(&c, 0, "out"));
        TRY(want_float(&c, 1, "x"));
    }
    TRY(want_elems(&c, 0, 1, "out", "x"));
    return finish(&c, false);
}

static mlxn_status want_ids(opctx *c, int ids_slot, int64_t T) {
    TRY(want_dtype(c, ids_slot, "ids", MLXN_I32));
    if (mlxn_tensor_elems(&c->n.t[ids_slot]) != T)
        return mlxn_err(MLXN_ERR_SHAPE, "%s: ids has %lld entries but out has %lld rows", c->op,
                        (long long)mlxn_tensor_elems(&c->n.t[ids_slot]), (long long)T);
    return MLXN_OK;
}

mlxn_status mlxn_op_get_rows(mlxn_session *s, mlxn_buffer *out, const mlxn_buffer *table,
                             const mlxn_buffer *ids) {
    opctx c;
    TRY(begin(&c, s, MLXN_OP_GET_ROWS));
    TRY(out_slot(&c, out, "out"));
    TRY(slot(&c, table, "table", true));
    TRY(slot(&c, ids, "ids", true));
    TRY(want_dtype(&c, 0, "out", MLXN_F32));
    const mlxn_tensor *tt = &c.n.t[1];
    if (!(mlxn_dtype_is_float(tt->dtype) || mlxn_dtype_is_block(tt->dtype)))
        return mlxn_err(MLXN_ERR_DTYPE, "get_rows: table dtype %s not supported", mlxn_dtype_name(tt->dtype));
    if (tt->ndim != 2 || mlxn_tensor_cols(&c.n.t[0]) != tt->shape[1])
        return mlxn_err(MLXN_ERR_SHAPE, "get_rows: table must be [V, D] with D = out's last dim %lld",
                        (long long)mlxn_tensor_cols(&c.n.t[0]));
    TRY(want_ids(&c, 2, mlxn_tensor_rows(&c.n.t[0])));
    return finish(&c, false);
}

mlxn_status mlxn_op_get_rows_mlx(mlxn_session *s, mlxn_buffer *out, const mlxn_buffer *wq,
                                 const mlxn_buffer *scales, const mlxn_buffer *biases,
                                 const mlxn_buffer *ids, const mlxn_mlx_quant *q) {
    opctx c;
    TRY(begin(&c, s, MLXN_OP_GET_ROWS_MLX));
    TRY(out_slot(&c, out, "out"));
    TRY(slot(&c, wq, "wq", true));
    TRY(slot(&c, scales, "scales", true));
    TRY(slot(&c, biases, "biases", true));
    TRY(slot(&c, ids, "ids", true));
    TRY(want_dtype(&c, 0, "out", MLXN_F32));
    mlxn_mlx_quant qq = q ? *q : (mlxn_mlx_quant){0};
    int64_t K = mlxn_tensor_cols(&c.n.t[0]);
    int64_t V = c.n.t[1].ndim == 2 ? c.n.t[1].shape[0] : 0;
    TRY(check_mlx_quant(&c, 1, V, K, &qq));
    TRY(want_ids(&c, 4, mlxn_tensor_rows(&c.n.t[0])));
    c.n.p.mlx = qq;
    return finish(&c, false);
}

mlxn_status mlxn_op_kv_write(mlxn_session *s, mlxn_buffer *cache, const mlxn_buffer *x,
                             const mlxn_buffer *positions) {
    opctx c;
    TRY(begin(&c, s, MLXN_OP_KV_WRITE));
    TRY(out_slot(&c, cache, "cache"));
    TRY(slot(&c, x, "x", true));
    TRY(slot(&c, positions, "positions", true));
    TRY(want_float(&c, 0, "cache"));
    TRY(want_dtype(&c, 1, "x", MLXN_F32));
    const mlxn_tensor *tc = &c.n.t[0], *tx = &c.n.t[1];
    char s1[64], s2[64];
    if (tc->ndim != 3 || tx->ndim != 3 || tx->shape[1] != tc->shape[0] || tx->shape[2] != tc->shape[2])
        return mlxn_err(MLXN_ERR_SHAPE, "kv_write: x %s must be [T, Hkv, D] for cache %s = [Hkv, C, D]",
                        mlxn_tensor_str(tx, s1, 64), mlxn_tensor_str(tc, s2, 64));
    if (tx->shape[0] > tc->shape[1])
        return mlxn_err(MLXN_ERR_SHAPE, "kv_write: %lld tokens do not fit a cache of %lld rows",
                        (long long)tx->shape[0], (long long)tc->shape[1]);
    TRY(want_positions(&c, 2, tx->shape[0]));
    return finish(&c, false);
}

mlxn_status mlxn_op_attention(mlxn_session *s, mlxn_buffer *out, const mlxn_buffer *q,
                              const mlxn_buffer *k_cache, const mlxn_buffer *v_cache,
                              const mlxn_buffer *positions, const mlxn_attention_params *p) {
    opctx c;
    TRY(begin(&c, s, MLXN_OP_ATTENTION));
    TRY(out_slot(&c, out, "out"));
    TRY(slot(&c, q, "q", true));
    TRY(slot(&c, k_cache, "k_cache", true));
    TRY(slot(&c, v_cache, "v_cache", true));
    TRY(slot(&c, positions, "positions", true));
    TRY(want_dtype(&c, 0, "out", MLXN_F32));
    TRY(want_dtype(&c, 1, "q", MLXN_F32));
    TRY(want_float(&c, 2, "k_cache"));
    TRY(want_float(&c, 3, "v_cache"));
    const mlxn_tensor *tq = &c.n.t[1], *tk = &c.n.t[2], *tv = &c.n.t[3];
    char s1[64], s2[64], s3[64];
    if (tq->ndim != 3 || tk->ndim != 3 || tv->ndim != 3 || tk->shape[2] != tq->shape[2] ||
        tv->shape[0] != tk->shape[0] || tv->shape[1] != tk->shape[1] || tv->shape[2] != tk->shape[2] ||
        tq->shape[1] % tk->shape[0])
        return mlxn_err(MLXN_ERR_SHAPE,
                        "attention: q %s must be [T, H, D] and caches k %s, v %s [Hkv, C, D] with H a "
                        "multiple of Hkv",
                        mlxn_tensor_str(tq, s1, 64), mlxn_tensor_str(tk, s2, 64), mlxn_tensor_str(tv, s3, 64));
    if (tk->dtype != tv->dtype)
        return mlxn_err(MLXN_ERR_DTYPE, "attention: k_cache %s and v_cache %s differ in dtype",
                        mlxn_dtype_name(tk->dtype), mlxn_dtype_name(tv->dtype));
    TRY(want_elems(&c, 0, 1, "out", "q"));
    TRY(want_positions(&c, 4, tq->shape[0]));
    mlxn_attention_params ap = p ? *p : (mlxn_attention_params){0};
    if (ap.scale == 0) ap.scale = 1.0f / sqrtf((float)tq->shape[2]);
    if (ap.window < 0 || ap.softcap < 0)
        return mlxn_err(MLXN_ERR_INVALID_ARG, "attention: window %d and softcap %g must be >= 0", ap.window,
                        (double)ap.softcap);
    c.n.p.attn = ap;
    TRY(check_alias(&c, false));
    /* Decode over a long cache with too few (token, head) pairs to keep the
     * workers busy: split each pair's keys across them and merge
     * (flash-decoding), where the backend has the two kernels; else one node. */
    mlxn_device *dev = mlxn_session_device(s);
    int64_t T = tq->shape[0], H = tq->shape[1], C = tk->shape[1], D = tq->shape[2];
    bool few = T * H <= 2 * (int64_t)mlxn_device_threads(dev);
    int splits = few && C >= 512 ? (int)(C / 256 < 16 ? C / 256 : 16) : 1;
    if (splits > 1) {
        mlxn_node part = c.n, merge;
        memset(&merge, 0, sizeof merge);
        mlxn_alloc *a = NULL;
        int64_t rows = T * H * splits, sh[2] = {rows, D + 2};
        TRY(mlxn_alloc_new(dev, (size_t)(rows * (D + 2)) * sizeof(float), &a));
        mlxn_tensor pt = {0};
        mlxn_status st = mlxn_tensor_init_shape(&pt, MLXN_F32, 2, sh, "attention");
        pt.alloc = a;
        part.op = MLXN_OP_ATTENTION_PARTIAL;
        part.t[0] = pt;
        part.p.split = (mlxn_attn_split_params){ap, splits};
        merge.op = MLXN_OP_ATTENTION_MERGE;
        merge.n_slots = 2;
        merge.n_out = 1;
        merge.t[0] = c.n.t[0];
        merge.t[1] = pt;
        merge.p.split = part.p.split;
        bool can = !dev->be->supports || (dev->be->supports(dev, &part) && dev->be->supports(dev, &merge));
        if (!st && can) {
            st = mlxn_session_record(s, &part);
            if (!st && (st = mlxn_session_record(s, &merge))) mlxn_session_drop_last(s);
        }
        mlxn_alloc_release(a); /* the recorded nodes hold their own references */
        if (st || can) return st;
    }
    return mlxn_session_record(c.s, &c.n);
}

mlxn_status mlxn_op_argmax(mlxn_session *s, mlxn_buffer *out, const mlxn_buffer *x) {
    opctx c;
    TRY(begin(&c, s, MLXN_OP_ARGMAX));
    TRY(out_slot(&c, out, "out"));
    TRY(slot(&c, x, "x", true));
    TRY(want_dtype(&c, 0, "out", MLXN_I32));
    TRY(want_dtype(&c, 1, "x", MLXN_F32));
    if (mlxn_tensor_elems(&c.n.t[0]) != mlxn_tensor_rows(&c.n.t[1]))
        return mlxn_err(MLXN_ERR_SHAPE, "argmax: out has %lld entries, x has %lld rows",
                        (long long)mlxn_tensor_elems(&c.n.t[0]), (long long)mlxn_tensor_rows(&c.n.t[1]));
    return finish(&c, false);
}

mlxn_status mlxn_op_top_k(mlxn_session *s, mlxn_buffer *idx, mlxn_buffer *val, const mlxn_buffer *x, int k) {
    opctx c;
    TRY(begin(&c, s, MLXN_OP_TOP_K));
    TRY(out_slot(&c, idx, "idx"));
    TRY(out_slot(&c, val, "val"));
    TRY(slot(&c, x, "x", true));
    TRY(want_dtype(&c, 0, "idx", MLXN_I32));
    TRY(want_dtype(&c, 1, "val", MLXN_F32));
    TRY(want_dtype(&c, 2, "x", MLXN_F32));
    int64_t C = mlxn_tensor_cols(&c.n.t[2]), R = mlxn_tensor_rows(&c.n.t[2]);
    if (k < 1 || k > C)
        return mlxn_err(MLXN_ERR_INVALID_ARG, "top_k: k=%d outside 1..%lld (the row length)", k, (long long)C);
    for (int i = 0; i < 2; i++)
        if (mlxn_tensor_elems(&c.n.t[i]) != R * k || mlxn_tensor_cols(&c.n.t[i]) != k)
            return mlxn_err(MLXN_ERR_SHAPE, "top_k: %s must be [%lld, %d]", i ? "val" : "idx", (long long)R, k);
    if (mlxn_ranges_overlap(&c.n.t[0], &c.n.t[1]))
        return mlxn_err(MLXN_ERR_INVALID_ARG, "top_k: idx and val overlap");
    c.n.p.topk.k = k;
    return finish(&c, false);
}

mlxn_status mlxn_op_logsumexp(mlxn_session *s, mlxn_buffer *out, const mlxn_buffer *x, double scale) {
    opctx c;
    TRY(begin(&c, s, MLXN_OP_LOGSUMEXP));
    TRY(out_slot(&c, out, "out"));
    TRY(slot(&c, x, "x", true));
    TRY(want_dtype(&c, 0, "out", MLXN_F32));
    TRY(want_dtype(&c, 1, "x", MLXN_F32));
    if (!(scale > 0) || !isfinite(scale))
        return mlxn_err(MLXN_ERR_INVALID_ARG, "logsumexp: scale %g must be finite and > 0", scale);
    int64_t R = mlxn_tensor_rows(&c.n.t[1]);
    if (mlxn_tensor_elems(&c.n.t[0]) != 2 * R || mlxn_tensor_cols(&c.n.t[0]) != 2)
        return mlxn_err(MLXN_ERR_SHAPE, "logsumexp: out must be [%lld, 2] (x has %lld rows)", (long long)R,
                        (long long)R);
    c.n.p.lse.scale = scale;
    return finish(&c, false);
}

mlxn_status mlxn_op_matmul_id(mlxn_session *s, mlxn_buffer *out, const mlxn_buffer *x, const mlxn_buffer *w,
                              const mlxn_buffer *ids, int x_per_slot) {
    opctx c;
    TRY(begin(&c, s, MLXN_OP_MATMUL_ID));
    TRY(out_slot(&c, out, "out"));
    TRY(slot(&c, x, "x", true));
    TRY(slot(&c, w, "w", true));
    TRY(slot(&c, ids, "ids", true));
    TRY(want_dtype(&c, 0, "out", MLXN_F32));
    TRY(want_dtype(&c, 1, "x", MLXN_F32));
    TRY(want_dtype(&c, 3, "ids", MLXN_I32));
    const mlxn_tensor *to = &c.n.t[0], *tx = &c.n.t[1], *tw = &c.n.t[2], *ti = &c.n.t[3];
    if (!(mlxn_dtype_is_float(tw->dtype) || mlxn_dtype_is_block(tw->dtype)))
        return mlxn_err(MLXN_ERR_DTYPE, "matmul_id: w dtype %s is not a weight format", mlxn_dtype_name(tw->dtype));
    char s1[64], s2[64], s3[64], s4[64];
    int64_t T = ti->ndim == 2 ? ti->shape[0] : 0, top_k = ti->ndim == 2 ? ti->shape[1] : 0;
    int64_t xrows = x_per_slot ? T * top_k : T;
    if (tw->ndim != 3 || ti->ndim != 2 || mlxn_tensor_cols(tx) != tw->shape[2] || mlxn_tensor_rows(tx) != xrows ||
        mlxn_tensor_rows(to) != T * top_k || mlxn_tensor_cols(to) != tw->shape[1])
        return mlxn_err(MLXN_ERR_SHAPE,
                        "matmul_id: out %s, x %s, w %s [E, N, K], ids %s [T, top_k] disagree (x needs %lld rows)",
                        mlxn_tensor_str(to, s1, 64), mlxn_tensor_str(tx, s2, 64), mlxn_tensor_str(tw, s3, 64),
                        mlxn_tensor_str(ti, s4, 64), (long long)xrows);
    c.n.p.mid.top_k = (int)top_k;
    c.n.p.mid.x_per_slot = x_per_slot != 0;
    return finish(&c, false);
}
