/*
 * llama.c — the Llama family (Llama 2/3, SmolLM, Mistral, Qwen2, Qwen3):
 * the weight table, built from a weight source and checked against the
 * config, and the graph builder for a forward pass of T tokens.
 *
 * Per layer, with x [T, hidden] the residual stream:
 *   h = rms_norm(x) * attn_norm
 *   q [T,H,D], k, v [T,Hkv,D] = h Wq^T (+bq), h Wk^T (+bk), h Wv^T (+bv)
 *        (T = 1: one matmul [1, q|k|v] = h [Wq;Wk;Wv]^T when stacked)
 *   q, k = rms_norm per head * q_norm / k_norm          (qwen3)
 *   q, k = rope(q, pos), rope(k, pos)
 *   K[l][:, pos], V[l][:, pos] = k, v; a = attention(q, K[l], V[l], pos)
 *   x2 = x + a Wo^T;  h = rms_norm(x2) * ffn_norm        (add_rms_norm)
 *   x  = x2 + (silu(h Wg^T) * h Wu^T) Wd^T               (the next layer's
 *        add_rms_norm, or the final norm on the last row only)
 * logits [1, V] = rms_norm(x[T-1]) * out_norm * Whead^T; argmax on device.
 */
#include "model/model.h"
#include "graph/graph.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TRY(x)                          \
    do {                                \
        mlxn_status st_ = (x);          \
        if (st_ != MLXN_OK) return st_; \
    } while (0)

/* ---- tensor names ---- */

typedef enum role {
    R_EMBED, R_OUT_NORM, R_HEAD, R_ROPE_FREQS,
    R_ATTN_NORM, R_FFN_NORM, R_Q_NORM, R_K_NORM,
    R_Q, R_K, R_V, R_O, R_GATE, R_UP, R_DOWN,
    R_COUNT
} role;

/* Module names (no ".weight"); %d is the layer. */
static const char *const g_names[MLXN_NAMES_COUNT][R_COUNT] = {
    [MLXN_NAMES_HF] = {
        [R_EMBED] = "model.embed_tokens", [R_OUT_NORM] = "model.norm", [R_HEAD] = "lm_head",
        [R_ROPE_FREQS] = NULL,
        [R_ATTN_NORM] = "model.layers.%d.input_layernorm",
        [R_FFN_NORM] = "model.layers.%d.post_attention_layernorm",
        [R_Q_NORM] = "model.layers.%d.self_attn.q_norm", [R_K_NORM] = "model.layers.%d.self_attn.k_norm",
        [R_Q] = "model.layers.%d.self_attn.q_proj", [R_K] = "model.layers.%d.self_attn.k_proj",
        [R_V] = "model.layers.%d.self_attn.v_proj", [R_O] = "model.layers.%d.self_attn.o_proj",
        [R_GATE] = "model.layers.%d.mlp.gate_proj", [R_UP] = "model.layers.%d.mlp.up_proj",
        [R_DOWN] = "model.layers.%d.mlp.down_proj",
    },
    [MLXN_NAMES_GGUF] = {
        [R_EMBED] = "token_embd", [R_OUT_NORM] = "output_norm", [R_HEAD] = "output",
        [R_ROPE_FREQS] = "rope_freqs",
        [R_ATTN_NORM] = "blk.%d.attn_norm", [R_FFN_NORM] = "blk.%d.ffn_norm",
        [R_Q_NORM] = "blk.%d.attn_q_norm", [R_K_NORM] = "blk.%d.attn_k_norm",
        [R_Q] = "blk.%d.attn_q", [R_K] = "blk.%d.attn_k", [R_V] = "blk.%d.attn_v", [R_O] = "blk.%d.attn_output",
        [R_GATE] = "blk.%d.ffn_gate", [R_UP] = "blk.%d.ffn_up", [R_DOWN] = "blk.%d.ffn_down",
    },
};

typedef struct loader {
    mlxn_model *m;
    const mlxn_weight_source *src;
    const char *label;
    bool stack; /* stack q/k/v and gate/up (off: MLXN_NO_CONCAT=1) */
} loader;

static void module_name(const loader *ld, role r, int layer, char *buf, size_t cap) {
    snprintf(buf, cap, g_names[ld->src->names][r], layer);
}

static bool find(const loader *ld, const char *module, const char *suffix, mlxn_tensor_ref *t) {
    char name[256];
    snprintf(name, sizeof name, "%s%s", module, suffix);
    memset(t, 0, sizeof *t);
    return ld->src->find(ld->src->ctx, name, t);
}

/* Where a found tensor is, for messages: its file, else the source's label. */
static const char *where(const loader *ld, const mlxn_tensor_ref *t) { return t->file ? t->file : ld->label; }

static const char *shape_str(const mlxn_tensor_ref *t, char *buf, size_t cap) {
    size_t n = (size_t)snprintf(buf, cap, "[");
    for (int i = 0; i < t->ndim && n < cap; i++)
        n += (size_t)snprintf(buf + n, cap - n, "%s%lld", i ? ", " : "", (long long)t->shape[i]);
    if (n < cap) snprintf(buf + n, cap - n, "]");
    return buf;
}

/* Bytes of t were copied (stacked, or uploaded to a device): the source
 * may give their pages back, so resident memory stays near the weight
 * bytes instead of holding both copies (SmolLM2-135M on the CPU: 41.5 of
 * its 92 MiB are stacked). */
static void dropped(const loader *ld, const mlxn_tensor_ref *t) {
    if (ld->src->drop && t->data) ld->src->drop(ld->src->ctx, t->data, t->nbytes);
}

/* A tensor the source holds is adopted (zero-copy on the CPU, uploaded
 * once elsewhere); one it describes as a fill is made on the device. */
static mlxn_status adopt(const loader *ld, mlxn_buffer **out, const mlxn_tensor_ref *t, int ndim,
                         const int64_t *shape) {
    mlxn_status st = t->fill.kind ? mlxn_buffer_create_filled(out, ld->m->dev, t->dtype, ndim, shape, &t->fill)
                                  : mlxn_buffer_adopt(out, ld->m->dev, t->data, t->dtype, ndim, shape, NULL, NULL);
    if (st) return st;
    if (!t->fill.kind && !mlxn_device_host_memory(ld->m->dev)) dropped(ld, t);
    ld->m->weight_bytes += t->nbytes;
    if (t->fill.kind) ld->m->weight_fill_bytes += t->nbytes;
    return MLXN_OK;
}

/* A norm weight or bias vector of n elements ([n], or [1, n]), found and
 * checked. */
static mlxn_status find_vec(const loader *ld, mlxn_tensor_ref *t, const char *module, const char *suffix,
                            int64_t n, bool required, bool *found) {
    *found = find(ld, module, suffix, t);
    if (!*found) {
        if (!required) return MLXN_OK;
        return mlxn_err(MLXN_ERR_NOT_FOUND, "%s: tensor '%s%s' is missing (expected [%lld])", ld->label, module,
                        suffix, (long long)n);
    }
    int64_t elems = 1;
    for (int i = 0; i < t->ndim; i++) elems *= t->shape[i];
    char sb[96];
    if (t->ndim < 1 || elems != n || t->shape[t->ndim - 1] != n)
        return mlxn_err(MLXN_ERR_SHAPE, "%s: tensor '%s%s' has shape %s, the config gives [%lld]", where(ld, t),
                        module, suffix, shape_str(t, sb, sizeof sb), (long long)n);
    if (!mlxn_dtype_is_float(t->dtype))
        return mlxn_err(MLXN_ERR_DTYPE, "%s: tensor '%s%s' is %s; a norm or bias must be f32, f16 or bf16",
                        where(ld, t), module, suffix, mlxn_dtype_name(t->dtype));
    return MLXN_OK;
}

static mlxn_status load_vec(const loader *ld, mlxn_buffer **out, const char *module, const char *suffix,
                            int64_t n, bool required) {
    mlxn_tensor_ref t;
    bool found;
    TRY(find_vec(ld, &t, module, suffix, n, required, &found));
    return found ? adopt(ld, out, &t, 1, &n) : MLXN_OK;
}

/* One linear layer's tensors as the file holds them, checked against the
 * config: w [N, K] (dense or GGML blocks) or MLX u32 w with scales and
 * biases [N, K/group]; optional bias [N]. */
typedef struct lin_src {
    mlxn_tensor_ref w, sc, bi, bias;
    bool has_bias;
    mlxn_mlx_quant q; /* bits 0: dense */
    int64_t n, k;
} lin_src;

/* MLX-quantized when '<module>.scales' exists, else dense (float or GGML
 * blocks). */
static mlxn_status find_linear(const loader *ld, lin_src *l, const char *module, int64_t N, int64_t K,
                               bool bias) {
    mlxn_tensor_ref w, sc, bi;
    char sb[96], sb2[96];
    memset(l, 0, sizeof *l);
    l->n = N;
    l->k = K;
    if (!find(ld, module, ".weight", &w))
        return mlxn_err(MLXN_ERR_NOT_FOUND, "%s: tensor '%s.weight' is missing (expected [%lld, %lld])", ld->label,
                        module, (long long)N, (long long)K);
    if (w.dtype == MLXN_DTYPE_COUNT)
        return mlxn_err(MLXN_ERR_UNSUPPORTED, "%s: tensor '%s.weight' has a file dtype mlxn has no kernels for",
                        where(ld, &w), module);
    if (find(ld, module, ".scales", &sc)) {
        if (!find(ld, module, ".biases", &bi))
            return mlxn_err(MLXN_ERR_NOT_FOUND, "%s: '%s.scales' exists but '%s.biases' is missing", ld->label,
                            module, module);
        if (sc.ndim != 2 || sc.shape[0] != N || sc.shape[1] <= 0 || K % sc.shape[1])
            return mlxn_err(MLXN_ERR_SHAPE, "%s: '%s.scales' has shape %s; expected [%lld, K/group] with K = %lld",
                            where(ld, &sc), module, shape_str(&sc, sb, sizeof sb), (long long)N, (long long)K);
        int64_t group = K / sc.shape[1];
        int64_t bits = w.ndim == 2 ? w.shape[1] * 32 / K : 0;
        if (w.dtype != MLXN_U32 || w.ndim != 2 || w.shape[0] != N || w.shape[1] * 32 != bits * K)
            return mlxn_err(MLXN_ERR_SHAPE,
                            "%s: '%s.weight' is %s %s; an MLX-quantized weight is u32 [%lld, %lld*bits/32]",
                            where(ld, &w), module, mlxn_dtype_name(w.dtype), shape_str(&w, sb, sizeof sb),
                            (long long)N, (long long)K);
        if (bi.ndim != 2 || bi.shape[0] != sc.shape[0] || bi.shape[1] != sc.shape[1] || bi.dtype != sc.dtype)
            return mlxn_err(MLXN_ERR_SHAPE, "%s: '%s.biases' %s %s does not match '%s.scales' %s %s", where(ld, &bi),
                            module, mlxn_dtype_name(bi.dtype), shape_str(&bi, sb, sizeof sb), module,
                            mlxn_dtype_name(sc.dtype), shape_str(&sc, sb2, sizeof sb2));
        if (!(bits == 2 || bits == 3 || bits == 4 || bits == 5 || bits == 6 || bits == 8) ||
            !(group == 32 || group == 64 || group == 128))
            return mlxn_err(MLXN_ERR_UNSUPPORTED,
                            "%s: '%s' is stored with %lld bits / group %lld; MLX affine needs 2-6 or 8 bits and "
                            "group 32, 64 or 128",
                            where(ld, &w), module, (long long)bits, (long long)group);
        int cb, cg;
        mlxn_model_config_quant(&ld->m->cfg, module, &cb, &cg);
        if (!cb && ld->m->cfg.q_bits) /* a quantization section that sets this module false */
            return mlxn_err(MLXN_ERR_FORMAT,
                            "%s: '%s' is stored quantized (%lld bits / group %lld) but the config's quantization "
                            "sets it false (unquantized)",
                            where(ld, &w), module, (long long)bits, (long long)group);
        if (cb && (cb != bits || cg != group))
            return mlxn_err(MLXN_ERR_FORMAT,
                            "%s: '%s' is stored with %lld bits / group %lld but the config's quantization says "
                            "%d bits / group %d",
                            where(ld, &w), module, (long long)bits, (long long)group, cb, cg);
        l->q.bits = (int)bits;
        l->q.group_size = (int)group;
        l->sc = sc;
        l->bi = bi;
    } else {
        if (w.dtype == MLXN_U32)
            return mlxn_err(MLXN_ERR_NOT_FOUND, "%s: '%s.weight' is u32 (MLX-quantized) but '%s.scales' is missing",
                            ld->label, module, module);
        if (!(mlxn_dtype_is_float(w.dtype) || mlxn_dtype_is_block(w.dtype)))
            return mlxn_err(MLXN_ERR_DTYPE, "%s: '%s.weight' has dtype %s, which no matmul takes", where(ld, &w),
                            module, mlxn_dtype_name(w.dtype));
        if (w.ndim != 2 || w.shape[0] != N || w.shape[1] != K)
            return mlxn_err(MLXN_ERR_SHAPE, "%s: tensor '%s.weight' has shape %s, the config gives [%lld, %lld]",
                            where(ld, &w), module, shape_str(&w, sb, sizeof sb), (long long)N, (long long)K);
    }
    l->w = w;
    if (bias) TRY(find_vec(ld, &l->bias, module, ".bias", N, true, &l->has_bias));
    return MLXN_OK;
}

/* Adopt a found linear's tensors zero-copy (uploaded once off the CPU). */
static mlxn_status adopt_linear(const loader *ld, mlxn_linear *l, const lin_src *s) {
    l->n = s->n;
    l->k = s->k;
    l->q = s->q;
    TRY(adopt(ld, &l->w, &s->w, 2, s->w.shape));
    if (s->q.bits) {
        TRY(adopt(ld, &l->scales, &s->sc, 2, s->sc.shape));
        TRY(adopt(ld, &l->biases, &s->bi, 2, s->bi.shape));
    }
    if (s->has_bias) TRY(adopt(ld, &l->bias, &s->bias, 1, &s->n));
    return MLXN_OK;
}

static mlxn_status load_linear(const loader *ld, mlxn_linear *l, const char *module, int64_t N, int64_t K,
                               bool bias) {
    lin_src s;
    TRY(find_linear(ld, &s, module, N, K, bias));
    return adopt_linear(ld, l, &s);
}

/* Can these linears (same K) be stacked row-wise into one: same weight
 * dtype, same MLX bits / group and scale dtype, bias on all or none, in the
 * same dtype? Each part must also start 16-byte aligned in every stacked
 * tensor (the CUDA quantized matmuls want that of the views). */
static bool stackable(const lin_src *s, int n) {
    size_t ow = 0, os = 0, ob = 0;
    for (int i = 0; i < n; i++) {
        const lin_src *a = &s[0], *b = &s[i];
        if (a->k != b->k || a->w.dtype != b->w.dtype || a->q.bits != b->q.bits ||
            a->q.group_size != b->q.group_size || a->has_bias != b->has_bias)
            return false;
        if (a->q.bits && a->sc.dtype != b->sc.dtype) return false;
        if (a->has_bias && a->bias.dtype != b->bias.dtype) return false;
        if ((ow | os | ob) % 16) return false;
        ow += b->w.nbytes;
        os += b->q.bits ? b->sc.nbytes : 0;
        ob += b->has_bias ? b->bias.nbytes : 0;
    }
    return true;
}

/* One tensor of n linears (which: 0 w, 1 scales, 2 biases, 3 bias) stacked
 * row-wise into a new buffer *out ([ΣN, ...]); each part's buffer becomes a
 * view into it. The bytes are copied once (off the CPU: uploaded). */
static mlxn_status stack_part(const loader *ld, mlxn_buffer **out, const lin_src *s, mlxn_linear *parts, int n,
                              int which) {
    const mlxn_tensor_ref *r[4];
    mlxn_buffer **pv[4];
    int64_t rows = 0;
    for (int i = 0; i < n; i++) {
        r[i] = which == 0 ? &s[i].w : which == 1 ? &s[i].sc : which == 2 ? &s[i].bi : &s[i].bias;
        pv[i] = which == 0 ? &parts[i].w : which == 1 ? &parts[i].scales : which == 2 ? &parts[i].biases
                                                                                      : &parts[i].bias;
        rows += s[i].n;
    }
    int nd = which == 3 ? 1 : 2;
    int64_t shape[2] = {rows, which == 3 ? 0 : r[0]->shape[1]};
    TRY(mlxn_buffer_create(out, ld->m->dev, r[0]->dtype, nd, shape));
    size_t off = 0, filled = 0;
    for (int i = 0; i < n; i++) {
        int64_t sh[2] = {s[i].n, shape[1]};
        if (r[i]->fill.kind) {
            TRY(mlxn_buffer_fill(*out, off, &r[i]->fill, r[i]->nbytes));
            filled += r[i]->nbytes;
        } else {
            TRY(mlxn_buffer_write(*out, off, r[i]->data, r[i]->nbytes));
            dropped(ld, r[i]);
        }
        TRY(mlxn_buffer_view(pv[i], *out, r[i]->dtype, nd, sh, off));
        off += r[i]->nbytes;
    }
    ld->m->weight_bytes += off;
    ld->m->weight_copy_bytes += off - filled;
    ld->m->weight_fill_bytes += filled;
    return MLXN_OK;
}

/* Load n linears over the same input; when they share a format, also stack
 * them into *cat (N = ΣN_i), with parts[i] views into it, so one matmul
 * computes all of them. cat->w stays NULL when they cannot be stacked or
 * stacking is off. */
static mlxn_status load_stacked(const loader *ld, mlxn_linear *cat, mlxn_linear *parts, int n,
                                const char *const *modules, const int64_t *N, int64_t K, bool bias) {
    lin_src s[4];
    for (int i = 0; i < n; i++) TRY(find_linear(ld, &s[i], modules[i], N[i], K, bias));
    if (!ld->stack || !stackable(s, n)) {
        for (int i = 0; i < n; i++) TRY(adopt_linear(ld, &parts[i], &s[i]));
        return MLXN_OK;
    }
    cat->k = K;
    cat->q = s[0].q;
    for (int i = 0; i < n; i++) {
        cat->n += s[i].n;
        parts[i].n = s[i].n;
        parts[i].k = K;
        parts[i].q = s[i].q;
    }
    TRY(stack_part(ld, &cat->w, s, parts, n, 0));
    if (cat->q.bits) {
        TRY(stack_part(ld, &cat->scales, s, parts, n, 1));
        TRY(stack_part(ld, &cat->biases, s, parts, n, 2));
    }
    if (s[0].has_bias) TRY(stack_part(ld, &cat->bias, s, parts, n, 3));
    return MLXN_OK;
}

static void linear_free(mlxn_linear *l) {
    mlxn_buffer_destroy(l->w);
    mlxn_buffer_destroy(l->scales);
    mlxn_buffer_destroy(l->biases);
    mlxn_buffer_destroy(l->bias);
    memset(l, 0, sizeof *l);
}

static mlxn_status load_weights(loader *ld) {
    mlxn_model *m = ld->m;
    const mlxn_model_config *c = &m->cfg;
    char mod[160];
    int64_t hid = c->hidden, qd = (int64_t)c->heads * c->head_dim, kvd = (int64_t)c->kv_heads * c->head_dim;
    module_name(ld, R_EMBED, 0, mod, sizeof mod);
    TRY(load_linear(ld, &m->embed, mod, c->vocab, hid, false));
    module_name(ld, R_OUT_NORM, 0, mod, sizeof mod);
    TRY(load_vec(ld, &m->out_norm, mod, ".weight", hid, true));
    module_name(ld, R_HEAD, 0, mod, sizeof mod);
    mlxn_tensor_ref t;
    /* GGUF has no tie flag: a file without output.weight ties the head (and
     * the config says so, as `mlxn info` prints it). */
    bool tied = c->tie_embeddings || (ld->src->names == MLXN_NAMES_GGUF && !find(ld, mod, ".weight", &t));
    if (tied) m->head = m->embed, m->cfg.tie_embeddings = true;
    else TRY(load_linear(ld, &m->head, mod, c->vocab, hid, false));
    if (g_names[ld->src->names][R_ROPE_FREQS]) {
        module_name(ld, R_ROPE_FREQS, 0, mod, sizeof mod);
        TRY(load_vec(ld, &m->rope_freqs, mod, ".weight", c->head_dim / 2, false));
        if (m->rope_freqs && mlxn_buffer_dtype(m->rope_freqs) != MLXN_F32)
            return mlxn_err(MLXN_ERR_DTYPE, "%s: rope_freqs.weight must be f32", ld->label);
    }
    for (int i = 0; i < c->layers; i++) {
        if (i && ld->src->progress) ld->src->progress(ld->src->pctx, i, c->layers);
        mlxn_layer *L = &m->L[i];
        module_name(ld, R_ATTN_NORM, i, mod, sizeof mod);
        TRY(load_vec(ld, &L->attn_norm, mod, ".weight", hid, true));
        module_name(ld, R_FFN_NORM, i, mod, sizeof mod);
        TRY(load_vec(ld, &L->ffn_norm, mod, ".weight", hid, true));
        if (c->qk_norm) {
            module_name(ld, R_Q_NORM, i, mod, sizeof mod);
            TRY(load_vec(ld, &L->q_norm, mod, ".weight", c->head_dim, true));
            module_name(ld, R_K_NORM, i, mod, sizeof mod);
            TRY(load_vec(ld, &L->k_norm, mod, ".weight", c->head_dim, true));
        }
        char mq[160], mk[160], mv[160], mg[160], mu[160];
        module_name(ld, R_Q, i, mq, sizeof mq);
        module_name(ld, R_K, i, mk, sizeof mk);
        module_name(ld, R_V, i, mv, sizeof mv);
        mlxn_linear qkv[3];
        memset(qkv, 0, sizeof qkv);
        const char *qkv_mod[3] = {mq, mk, mv};
        const int64_t qkv_n[3] = {qd, kvd, kvd};
        mlxn_status st = load_stacked(ld, &L->qkv, qkv, 3, qkv_mod, qkv_n, hid, c->qkv_bias);
        L->wq = qkv[0], L->wk = qkv[1], L->wv = qkv[2]; /* also on failure: destroy frees them */
        TRY(st);
        module_name(ld, R_O, i, mod, sizeof mod);
        TRY(load_linear(ld, &L->wo, mod, hid, qd, false));
        module_name(ld, R_GATE, i, mg, sizeof mg);
        module_name(ld, R_UP, i, mu, sizeof mu);
        mlxn_linear gu[2];
        memset(gu, 0, sizeof gu);
        const char *gu_mod[2] = {mg, mu};
        const int64_t gu_n[2] = {c->ffn, c->ffn};
        st = load_stacked(ld, &L->gate_up, gu, 2, gu_mod, gu_n, hid, false);
        L->gate = gu[0], L->up = gu[1];
        TRY(st);
        module_name(ld, R_DOWN, i, mod, sizeof mod);
        TRY(load_linear(ld, &L->down, mod, hid, c->ffn, false));
    }
    return MLXN_OK;
}

void mlxn_model_destroy(mlxn_model *m) {
    if (!m) return;
    if (m->L)
        for (int i = 0; i < m->cfg.layers; i++) {
            mlxn_layer *L = &m->L[i];
            mlxn_buffer_destroy(L->attn_norm);
            mlxn_buffer_destroy(L->ffn_norm);
            mlxn_buffer_destroy(L->q_norm);
            mlxn_buffer_destroy(L->k_norm);
            mlxn_linear *ls[] = {&L->wq, &L->wk, &L->wv, &L->wo, &L->gate, &L->up, &L->down, &L->qkv, &L->gate_up};
            for (size_t j = 0; j < sizeof ls / sizeof ls[0]; j++) linear_free(ls[j]);
        }
    mlxn_free(m->L);
    if (m->head.w != m->embed.w) linear_free(&m->head);
    linear_free(&m->embed);
    mlxn_buffer_destroy(m->out_norm);
    mlxn_buffer_destroy(m->rope_freqs);
    if (m->src.close) m->src.close(m->src.ctx);
    mlxn_model_config_free(&m->cfg);
    mlxn_free(m);
}

const char *mlxn_linear_group_name(mlxn_linear_group g) {
    static const char *const k_names[MLXN_LIN_COUNT] = {"q", "k", "v", "o", "gate", "up", "down"};
    return (unsigned)g < MLXN_LIN_COUNT ? k_names[g] : "?";
}

const char *mlxn_linear_format(const mlxn_linear *l, char *buf, size_t cap) {
    if (!l->w) snprintf(buf, cap, "-");
    else if (l->q.bits) snprintf(buf, cap, "mlx %d-bit/g%d", l->q.bits, l->q.group_size);
    else snprintf(buf, cap, "%s", mlxn_dtype_name(mlxn_buffer_dtype(l->w)));
    return buf;
}

const mlxn_linear *mlxn_layer_linear(const mlxn_layer *L, mlxn_linear_group g) {
    switch (g) {
    case MLXN_LIN_Q: return &L->wq;
    case MLXN_LIN_K: return &L->wk;
    case MLXN_LIN_V: return &L->wv;
    case MLXN_LIN_O: return &L->wo;
    case MLXN_LIN_GATE: return &L->gate;
    case MLXN_LIN_UP: return &L->up;
    default: return &L->down;
    }
}

const char *mlxn_model_group_formats(const mlxn_model *m, mlxn_linear_group g, char *buf, size_t cap) {
    enum { MAXF = 8 };
    char fmt[MAXF][32];
    int cnt[MAXF], nf = 0, other = 0;
    for (int i = 0; i < m->cfg.layers; i++) {
        char f[32];
        mlxn_linear_format(mlxn_layer_linear(&m->L[i], g), f, sizeof f);
        int k = 0;
        while (k < nf && strcmp(fmt[k], f)) k++;
        if (k == nf && nf == MAXF) {
            other++;
            continue;
        }
        if (k == nf) {
            memcpy(fmt[nf], f, sizeof f);
            cnt[nf++] = 0;
        }
        cnt[k]++;
    }
    size_t o = 0;
    buf[0] = 0;
    for (int k = 0; k < nf && o < cap; k++) {
        if (nf == 1) o += (size_t)snprintf(buf + o, cap - o, "%s", fmt[k]);
        else o += (size_t)snprintf(buf + o, cap - o, "%s%s x%d", k ? ", " : "", fmt[k], cnt[k]);
    }
    if (other && o < cap) snprintf(buf + o, cap - o, ", other formats x%d", other);
    return buf;
}

mlxn_status mlxn_model_create(mlxn_model **out, mlxn_device *dev, mlxn_model_config *cfg,
                              mlxn_weight_source *src) {
    if (!out || !dev || !cfg || !src || !src->find) {
        if (src && src->close) src->close(src->ctx);
        return mlxn_err(MLXN_ERR_INVALID_ARG, "model: NULL argument");
    }
    *out = NULL;
    mlxn_model *m = mlxn_calloc(1, sizeof *m);
    if (!m) {
        if (src->close) src->close(src->ctx);
        return mlxn_err(MLXN_ERR_OUT_OF_MEMORY, "model: out of memory");
    }
    m->src = *src;
    memset(src, 0, sizeof *src);
    m->dev = dev;
    snprintf(m->path, sizeof m->path, "%s", m->src.label ? m->src.label : "(memory)");
    mlxn_status st = mlxn_model_config_check(cfg);
    if (st) {
        mlxn_model_destroy(m);
        return st;
    }
    m->cfg = *cfg; /* taken over */
    memset(cfg, 0, sizeof *cfg);
    /* GGUF llama/mistral store Q and K permuted for the interleaved (NORMAL)
     * rotation; everything else uses the HF half-split (NEOX) layout. */
    m->rope_mode = m->src.names == MLXN_NAMES_GGUF &&
                           (m->cfg.arch == MLXN_ARCH_LLAMA || m->cfg.arch == MLXN_ARCH_MISTRAL)
                       ? MLXN_ROPE_NORMAL
                       : MLXN_ROPE_NEOX;
    m->L = mlxn_calloc((size_t)m->cfg.layers, sizeof *m->L);
    if (!m->L) st = mlxn_err(MLXN_ERR_OUT_OF_MEMORY, "model: out of memory");
    const char *nc = getenv("MLXN_NO_CONCAT");
    loader ld = {m, &m->src, m->path, !(nc && *nc && strcmp(nc, "0"))};
    if (!st) st = load_weights(&ld);
    if (st) {
        mlxn_model_destroy(m);
        return st;
    }
    *out = m;
    return MLXN_OK;
}

/* ------------------------------------------------------------------------ */
/* Forward graph                                                              */
/* ------------------------------------------------------------------------ */

struct mlxn_forward {
    const mlxn_model *m;
    mlxn_kvcache *kv;
    int T, rows;
    unsigned flags;
    mlxn_mode mode;
    mlxn_session *s;
    bool recorded;
    int32_t *pos_host;              /* [T] */
    mlxn_buffer *tok, *pos;         /* i32 [T] */
    mlxn_buffer *x, *x2, *h, *o, *d; /* [T, hidden] */
    mlxn_buffer *q, *k, *v, *att;   /* [T, H, D], [T, Hkv, D] */
    mlxn_buffer *q2, *k2, *v2, *att2; /* 2-D views [T, H*D] / [T, Hkv*D] */
    mlxn_buffer *g, *u;             /* [T, ffn] */
    mlxn_buffer *qkv, *gu;          /* T = 1: [1, q|k|v], [1, g|u]; q, k, v, g, u are views */
    mlxn_buffer *fs;                /* T = 1: silu_mul's output [1, ffn], apart from its inputs (T > 1:
                                     * in place over g), so the CPU runs it inside the down
                                     * matmul's group (cpu_backend.c, producer fusion) */
    mlxn_buffer *xl, *hl, *x2l, *dl; /* last-row views [1, hidden] */
    mlxn_buffer *logits;            /* [rows, vocab] */
    mlxn_buffer *amax;              /* i32 [rows] */
    int top_k;                      /* mlxn_forward_set_top_k; 0 = none */
    mlxn_buffer *topi, *topv;       /* i32 / f32 [rows, top_k] */
    double norm_scale;              /* mlxn_forward_set_norm; 0 = none */
    mlxn_buffer *norm;              /* f32 [rows, 2]: logsumexp (max, sum) */
    /* T = 1, one row: amax is a view of tok (the argmax is the next step's
     * input on the device); queued runs' argmax reads, oldest at q_head */
    mlxn_qread qr[MLXN_FORWARD_QUEUE];
    int q_head, q_n;
};

static mlxn_status linear(mlxn_session *s, mlxn_buffer *out, const mlxn_buffer *x, const mlxn_linear *l) {
    if (l->q.bits) TRY(mlxn_op_matmul_mlx(s, out, x, l->w, l->scales, l->biases, &l->q));
    else TRY(mlxn_op_matmul(s, out, x, l->w));
    if (l->bias) TRY(mlxn_op_add(s, out, out, l->bias));
    return MLXN_OK;
}

static mlxn_status record(mlxn_forward *f) {
    const mlxn_model *m = f->m;
    const mlxn_model_config *c = &m->cfg;
    mlxn_session *s = f->s;
    float eps = c->rms_eps;
    mlxn_rope_params rp = {
        .n_dims = c->head_dim, .base = c->rope_theta, .mode = m->rope_mode, .scaling = c->rope_scaling,
        .factor = c->rope_factor, .low_freq_factor = c->rope_low_freq, .high_freq_factor = c->rope_high_freq,
        .original_max_pos = c->rope_orig_max_pos,
    };
    mlxn_attention_params ap = {.window = c->sliding_window};
    if (m->embed.q.bits)
        TRY(mlxn_op_get_rows_mlx(s, f->x, m->embed.w, m->embed.scales, m->embed.biases, f->tok, &m->embed.q));
    else
        TRY(mlxn_op_get_rows(s, f->x, m->embed.w, f->tok));
    TRY(mlxn_op_rms_norm(s, f->h, f->x, m->L[0].attn_norm, eps));
    for (int l = 0; l < c->layers; l++) {
        const mlxn_layer *L = &m->L[l];
        if (f->qkv && L->qkv.w) {
            TRY(linear(s, f->qkv, f->h, &L->qkv));
        } else {
            TRY(linear(s, f->q2, f->h, &L->wq));
            TRY(linear(s, f->k2, f->h, &L->wk));
            TRY(linear(s, f->v2, f->h, &L->wv));
        }
        if (L->q_norm) {
            TRY(mlxn_op_rms_norm(s, f->q, f->q, L->q_norm, eps));
            TRY(mlxn_op_rms_norm(s, f->k, f->k, L->k_norm, eps));
        }
        TRY(mlxn_op_rope(s, f->q, f->q, f->pos, m->rope_freqs, &rp));
        TRY(mlxn_op_rope(s, f->k, f->k, f->pos, m->rope_freqs, &rp));
        TRY(mlxn_op_kv_write(s, f->kv->k[l], f->k, f->pos));
        TRY(mlxn_op_kv_write(s, f->kv->v[l], f->v, f->pos));
        TRY(mlxn_op_attention(s, f->att, f->q, f->kv->k[l], f->kv->v[l], f->pos, &ap));
        TRY(linear(s, f->o, f->att2, &L->wo));
        TRY(mlxn_op_add_rms_norm(s, f->x2, f->h, f->x, f->o, L->ffn_norm, eps));
        if (f->gu && L->gate_up.w) {
            TRY(linear(s, f->gu, f->h, &L->gate_up));
        } else {
            TRY(linear(s, f->g, f->h, &L->gate));
            TRY(linear(s, f->u, f->h, &L->up));
        }
        mlxn_buffer *fs = f->fs ? f->fs : f->g;
        TRY(mlxn_op_silu_mul(s, fs, f->g, f->u));
        TRY(linear(s, f->d, fs, &L->down));
        if (l + 1 < c->layers)
            TRY(mlxn_op_add_rms_norm(s, f->x, f->h, f->x2, f->d, m->L[l + 1].attn_norm, eps));
        else if (f->flags & MLXN_FWD_ALL_LOGITS)
            TRY(mlxn_op_add_rms_norm(s, f->x, f->h, f->x2, f->d, m->out_norm, eps));
        else /* only the last token's row goes on to the head */
            TRY(mlxn_op_add_rms_norm(s, f->xl, f->hl, f->x2l, f->dl, m->out_norm, eps));
    }
    TRY(linear(s, f->logits, (f->flags & MLXN_FWD_ALL_LOGITS) ? f->h : f->hl, &m->head));
    TRY(mlxn_op_argmax(s, f->amax, f->logits));
    if (f->top_k) TRY(mlxn_op_top_k(s, f->topi, f->topv, f->logits, f->top_k));
    if (f->norm) TRY(mlxn_op_logsumexp(s, f->norm, f->logits, f->norm_scale));
    TRY(mlxn_session_mark_output(s, f->logits));
    return MLXN_OK;
}

void mlxn_forward_destroy(mlxn_forward *f) {
    if (!f) return;
    for (; f->q_n; f->q_n--, f->q_head = (f->q_head + 1) % MLXN_FORWARD_QUEUE) { /* free the device's slots */
        int32_t dummy;
        mlxn_qread_wait(&f->qr[f->q_head], &dummy);
    }
    mlxn_session_destroy(f->s);
    mlxn_buffer *b[] = {f->tok, f->pos, f->x,  f->x2, f->h,  f->o,  f->d,  f->q,  f->k,      f->v,   f->att,
                        f->q2,  f->k2,  f->v2, f->att2, f->g, f->u, f->xl, f->hl, f->x2l, f->dl, f->logits, f->amax,
                        f->qkv, f->gu, f->fs, f->topi, f->topv, f->norm};
    for (size_t i = 0; i < sizeof b / sizeof b[0]; i++) mlxn_buffer_destroy(b[i]);
    mlxn_free(f->pos_host);
    mlxn_free(f);
}

static mlxn_status mk(mlxn_forward *f, mlxn_buffer **out, mlxn_dtype t, int nd, int64_t a, int64_t b, int64_t c) {
    int64_t sh[3] = {a, b, c};
    return mlxn_buffer_create(out, f->m->dev, t, nd, sh);
}

static mlxn_status view(mlxn_buffer **out, const mlxn_buffer *base, int64_t rows, int64_t cols, size_t off) {
    int64_t sh[2] = {rows, cols};
    return mlxn_buffer_view(out, base, MLXN_F32, 2, sh, off);
}

static mlxn_status forward_init(mlxn_forward *f) {
    const mlxn_model_config *c = &f->m->cfg;
    int64_t T = f->T, hid = c->hidden, H = c->heads, Hkv = c->kv_heads, D = c->head_dim, V = c->vocab;
    f->pos_host = mlxn_calloc((size_t)T, sizeof(int32_t));
    if (!f->pos_host) return mlxn_err(MLXN_ERR_OUT_OF_MEMORY, "forward: out of memory");
    TRY(mk(f, &f->tok, MLXN_I32, 1, T, 1, 1));
    TRY(mk(f, &f->pos, MLXN_I32, 1, T, 1, 1));
    TRY(mk(f, &f->x, MLXN_F32, 2, T, hid, 1));
    TRY(mk(f, &f->x2, MLXN_F32, 2, T, hid, 1));
    TRY(mk(f, &f->h, MLXN_F32, 2, T, hid, 1));
    TRY(mk(f, &f->o, MLXN_F32, 2, T, hid, 1));
    TRY(mk(f, &f->d, MLXN_F32, 2, T, hid, 1));
    if (T == 1) { /* one row: q|k|v and g|u side by side, for stacked linears */
        int64_t sh3[3] = {1, H, D}, sk3[3] = {1, Hkv, D}, sf[2] = {1, c->ffn};
        TRY(mk(f, &f->qkv, MLXN_F32, 2, 1, (H + 2 * Hkv) * D, 1));
        TRY(mk(f, &f->gu, MLXN_F32, 2, 1, 2 * (int64_t)c->ffn, 1));
        TRY(mk(f, &f->fs, MLXN_F32, 2, 1, c->ffn, 1));
        TRY(mlxn_buffer_view(&f->q, f->qkv, MLXN_F32, 3, sh3, 0));
        TRY(mlxn_buffer_view(&f->k, f->qkv, MLXN_F32, 3, sk3, (size_t)(H * D) * sizeof(float)));
        TRY(mlxn_buffer_view(&f->v, f->qkv, MLXN_F32, 3, sk3, (size_t)((H + Hkv) * D) * sizeof(float)));
        TRY(mlxn_buffer_view(&f->g, f->gu, MLXN_F32, 2, sf, 0));
        TRY(mlxn_buffer_view(&f->u, f->gu, MLXN_F32, 2, sf, (size_t)c->ffn * sizeof(float)));
    } else {
        TRY(mk(f, &f->q, MLXN_F32, 3, T, H, D));
        TRY(mk(f, &f->k, MLXN_F32, 3, T, Hkv, D));
        TRY(mk(f, &f->v, MLXN_F32, 3, T, Hkv, D));
        TRY(mk(f, &f->g, MLXN_F32, 2, T, c->ffn, 1));
        TRY(mk(f, &f->u, MLXN_F32, 2, T, c->ffn, 1));
    }
    TRY(mk(f, &f->att, MLXN_F32, 3, T, H, D));
    TRY(view(&f->q2, f->q, T, H * D, 0));
    TRY(view(&f->k2, f->k, T, Hkv * D, 0));
    TRY(view(&f->v2, f->v, T, Hkv * D, 0));
    TRY(view(&f->att2, f->att, T, H * D, 0));
    size_t last = (size_t)(T - 1) * (size_t)hid * sizeof(float);
    TRY(view(&f->xl, f->x, 1, hid, last));
    TRY(view(&f->hl, f->h, 1, hid, last));
    TRY(view(&f->x2l, f->x2, 1, hid, last));
    TRY(view(&f->dl, f->d, 1, hid, last));
    TRY(mk(f, &f->logits, MLXN_F32, 2, f->rows, V, 1));
    if (T == 1 && f->rows == 1) { /* argmax -> the token buffer (mlxn_forward_queue) */
        int64_t one[1] = {1};
        TRY(mlxn_buffer_view(&f->amax, f->tok, MLXN_I32, 1, one, 0));
    } else {
        TRY(mk(f, &f->amax, MLXN_I32, 1, f->rows, 1, 1));
    }
    return mlxn_session_create(&f->s, f->m->dev, f->mode, 0);
}

mlxn_status mlxn_forward_create(mlxn_forward **out, const mlxn_model *m, mlxn_kvcache *kv, int T,
                                mlxn_mode mode, unsigned flags) {
    if (!out || !m || !kv) return mlxn_err(MLXN_ERR_INVALID_ARG, "forward: NULL argument");
    *out = NULL;
    if (T <= 0 || T > kv->ctx)
        return mlxn_err(MLXN_ERR_RANGE, "forward: %d tokens in one pass do not fit a cache of %d", T, kv->ctx);
    if (kv->layers != m->cfg.layers || kv->kv_heads != m->cfg.kv_heads || kv->head_dim != m->cfg.head_dim)
        return mlxn_err(MLXN_ERR_SHAPE, "forward: cache [%d layers, %d kv heads, dim %d] is not this model's",
                        kv->layers, kv->kv_heads, kv->head_dim);
    mlxn_forward *f = mlxn_calloc(1, sizeof *f);
    if (!f) return mlxn_err(MLXN_ERR_OUT_OF_MEMORY, "forward: out of memory");
    f->m = m;
    f->kv = kv;
    f->T = T;
    f->flags = flags;
    f->mode = mode;
    f->rows = (flags & MLXN_FWD_ALL_LOGITS) ? T : 1;
    mlxn_status st = forward_init(f);
    if (st) {
        mlxn_forward_destroy(f);
        return st;
    }
    *out = f;
    return MLXN_OK;
}

/* Runs queued and not yet read: the plain calls refuse to run beside them. */
static mlxn_status not_queued(const mlxn_forward *f, const char *what) {
    if (!f) return mlxn_err(MLXN_ERR_INVALID_ARG, "forward: NULL argument");
    if (f->q_n)
        return mlxn_err(MLXN_ERR_STATE, "forward: %s with %d queued runs not read (mlxn_forward_next_argmax)", what,
                        f->q_n);
    return MLXN_OK;
}

/* One run at n_past on tokens (NULL: the token buffer as it is: the argmax
 * of the run before), queued behind the runs before without waiting where
 * the graph is recorded and replayed, else run and waited for. */
static mlxn_status run_step(mlxn_forward *f, const int32_t *tokens, bool queued) {
    for (int t = 0; tokens && t < f->T; t++) /* the gather would give NaN rows for them */
        if (tokens[t] < 0 || tokens[t] >= f->m->cfg.vocab)
            return mlxn_err(MLXN_ERR_RANGE, "forward: token %d at %d is outside the vocab of %d", tokens[t], t,
                            f->m->cfg.vocab);
    TRY(mlxn_kvcache_reserve(f->kv, f->T, "forward"));
    for (int t = 0; t < f->T; t++) f->pos_host[t] = f->kv->n_past + t;
    size_t nb = (size_t)f->T * sizeof(int32_t);
    bool replay = f->recorded && f->mode != MLXN_MODE_DIRECT;
    if (queued && replay) {
        TRY(mlxn_buffer_write_queued(f->pos, 0, f->pos_host, nb));
        if (tokens) TRY(mlxn_buffer_write_queued(f->tok, 0, tokens, nb));
        TRY(mlxn_session_replay_queue(f->s));
        f->kv->n_past += f->T;
        return MLXN_OK;
    }
    if (tokens) TRY(mlxn_buffer_write(f->tok, 0, tokens, nb));
    TRY(mlxn_buffer_write(f->pos, 0, f->pos_host, nb));
    if (replay) {
        TRY(mlxn_session_replay(f->s));
    } else {
        mlxn_session_reset(f->s);
        mlxn_status st = record(f);
        if (!st) st = mlxn_session_finish(f->s);
        if (st) {
            mlxn_session_reset(f->s);
            return st;
        }
        f->recorded = true;
    }
    f->kv->n_past += f->T;
    return MLXN_OK;
}

mlxn_status mlxn_forward_run(mlxn_forward *f, const int32_t *tokens) {
    if (!f || !tokens) return mlxn_err(MLXN_ERR_INVALID_ARG, "forward: NULL argument");
    TRY(not_queued(f, "run"));
    return run_step(f, tokens, false);
}

mlxn_status mlxn_forward_queue(mlxn_forward *f, const int32_t *token) {
    if (!f) return mlxn_err(MLXN_ERR_INVALID_ARG, "forward_queue: NULL argument");
    if (f->T != 1 || f->rows != 1)
        return mlxn_err(MLXN_ERR_INVALID_ARG, "forward_queue: a one-token forward only (T = %d, %d rows)", f->T,
                        f->rows);
    if (f->q_n >= MLXN_FORWARD_QUEUE)
        return mlxn_err(MLXN_ERR_STATE, "forward_queue: %d runs queued and not read; read an argmax first", f->q_n);
    if (!token && !f->recorded)
        return mlxn_err(MLXN_ERR_STATE, "forward_queue: no token given and no run before to take it from");
    TRY(run_step(f, token, true));
    int i = (f->q_head + f->q_n) % MLXN_FORWARD_QUEUE;
    mlxn_status st = mlxn_buffer_read_queued(f->amax, 0, sizeof(int32_t), &f->qr[i]);
    if (st) { /* the run went out: let it finish, keep the queue as it was */
        mlxn_session_wait(f->s);
        return st;
    }
    f->q_n++;
    return MLXN_OK;
}

mlxn_status mlxn_forward_next_argmax(mlxn_forward *f, int32_t *out) {
    if (!f || !out) return mlxn_err(MLXN_ERR_INVALID_ARG, "forward_next_argmax: NULL argument");
    if (!f->q_n) return mlxn_err(MLXN_ERR_STATE, "forward_next_argmax: no queued run");
    mlxn_status st = mlxn_qread_wait(&f->qr[f->q_head], out);
    f->q_head = (f->q_head + 1) % MLXN_FORWARD_QUEUE;
    f->q_n--;
    /* the last one read: every queued run is done, the session idle again */
    mlxn_status sw = f->q_n ? MLXN_OK : mlxn_session_wait(f->s);
    return st ? st : sw;
}

mlxn_status mlxn_forward_cancel(mlxn_forward *f) {
    if (!f) return mlxn_err(MLXN_ERR_INVALID_ARG, "forward_cancel: NULL argument");
    mlxn_status st = MLXN_OK;
    int n = f->q_n;
    while (f->q_n) {
        int32_t dummy;
        mlxn_status s1 = mlxn_forward_next_argmax(f, &dummy);
        if (!st) st = s1;
    }
    f->kv->n_past -= n * f->T;
    return st;
}

int mlxn_forward_queued(const mlxn_forward *f) { return f ? f->q_n : 0; }
bool mlxn_forward_pipelines(const mlxn_forward *f) {
    const char *e = getenv("MLXN_PIPELINE");
    if (e && *e) return *e != '0';
    return f && mlxn_device_queues_copies(f->m->dev);
}

mlxn_status mlxn_forward_logits(const mlxn_forward *f, float *out, size_t n_floats) {
    TRY(not_queued(f, "logits"));
    size_t n = (size_t)f->rows * (size_t)f->m->cfg.vocab;
    if (n_floats < n)
        return mlxn_err(MLXN_ERR_RANGE, "forward: logits need %zu floats, got room for %zu", n, n_floats);
    return mlxn_buffer_read(f->logits, 0, out, n * sizeof(float));
}

mlxn_status mlxn_forward_argmax(const mlxn_forward *f, int32_t *out) {
    TRY(not_queued(f, "argmax"));
    return mlxn_buffer_read(f->amax, (size_t)(f->rows - 1) * sizeof(int32_t), out, sizeof(int32_t));
}

mlxn_status mlxn_forward_set_top_k(mlxn_forward *f, int k) {
    if (f->recorded) return mlxn_err(MLXN_ERR_INVALID_ARG, "forward: top_k must be set before the first run");
    if (k < 0 || k > f->m->cfg.vocab)
        return mlxn_err(MLXN_ERR_INVALID_ARG, "forward: top_k %d outside 0..%d", k, f->m->cfg.vocab);
    mlxn_buffer_destroy(f->topi);
    mlxn_buffer_destroy(f->topv);
    f->topi = f->topv = NULL;
    f->top_k = 0;
    if (!k) return MLXN_OK;
    int64_t sh[2] = {f->rows, k};
    TRY(mlxn_buffer_create(&f->topi, f->m->dev, MLXN_I32, 2, sh));
    TRY(mlxn_buffer_create(&f->topv, f->m->dev, MLXN_F32, 2, sh));
    f->top_k = k;
    return MLXN_OK;
}

mlxn_status mlxn_forward_top_k(const mlxn_forward *f, float *vals, int32_t *ids, int k) {
    TRY(not_queued(f, "top_k"));
    if (k != f->top_k || !k) return mlxn_err(MLXN_ERR_INVALID_ARG, "forward: top_k %d asked, %d recorded", k, f->top_k);
    size_t off = (size_t)(f->rows - 1) * (size_t)k;
    TRY(mlxn_buffer_read(f->topv, off * sizeof(float), vals, (size_t)k * sizeof(float)));
    return mlxn_buffer_read(f->topi, off * sizeof(int32_t), ids, (size_t)k * sizeof(int32_t));
}

mlxn_status mlxn_forward_set_norm(mlxn_forward *f, double scale) {
    if (f->recorded) return mlxn_err(MLXN_ERR_INVALID_ARG, "forward: the normalizer must be set before the first run");
    if (!(scale >= 0) || !isfinite(scale))
        return mlxn_err(MLXN_ERR_INVALID_ARG, "forward: normalizer scale %g must be finite and >= 0", scale);
    mlxn_buffer_destroy(f->norm);
    f->norm = NULL;
    f->norm_scale = 0;
    if (scale == 0) return MLXN_OK;
    int64_t sh[2] = {f->rows, 2};
    TRY(mlxn_buffer_create(&f->norm, f->m->dev, MLXN_F32, 2, sh));
    f->norm_scale = scale;
    return MLXN_OK;
}

mlxn_status mlxn_forward_norm(const mlxn_forward *f, float out[2]) {
    TRY(not_queued(f, "norm"));
    if (!f->norm) return mlxn_err(MLXN_ERR_INVALID_ARG, "forward: no normalizer recorded (mlxn_forward_set_norm)");
    return mlxn_buffer_read(f->norm, (size_t)(f->rows - 1) * 2 * sizeof(float), out, 2 * sizeof(float));
}

int mlxn_forward_rows(const mlxn_forward *f) { return f->rows; }
mlxn_session *mlxn_forward_session(mlxn_forward *f) { return f->s; }
