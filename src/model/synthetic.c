/*
 * synthetic.c — models without files, for benchmarks: "synthetic:NAME" with
 * the shapes of a known model and random MLX-quantized weights (random codes,
 * scales ~1/sqrt(K) so activations keep their size through the layers;
 * never zeros). Optional suffixes ":q<bits>" and ":g<group>" (default q4,
 * g64), or ":<type>" for random GGML blocks (q4_0, q4_1, q8_0, q4_k, q5_k,
 * q6_k; every linear and the embedding in that type, each block's d drawn
 * so the weights span about ±1/sqrt(K) around zero). The source holds no bytes: each tensor it finds is a description
 * (mlxn_fill, core/fill.h: a pure function of a per-tensor seed and the
 * element index) that the device turns into the weights in its own memory
 * (a kernel on CUDA, the worker threads on the CPU), so nothing is built on
 * the host or uploaded.
 *
 *   llama3-1b         2048 hidden, 16 layers, 32/8 heads, ffn 8192, tied
 *   llama3-3b         3072 hidden, 28 layers, 24/8 heads, ffn 8192, tied
 *   llama3-8b         4096 hidden, 32 layers, 32/8 heads, ffn 14336
 *   llama3-70b-layer  one layer of Llama 3 70B (8192 hidden, 64/8 heads, ffn 28672)
 *   tiny              64 hidden, 2 layers (tests)
 *   llama-2k          2048 hidden, 2 layers, 16/4 heads, ffn 4096, vocab 2048
 *                     (tests: rows long enough for the CUDA decode kernels)
 *   smollm2-135m      576 hidden, 30 layers, 9/3 heads, ffn 1536, vocab 49152,
 *                     tied (the default model's shape; K-quants need 256 | 576: not)
 */
#include "model/model.h"
#include "ops/quant.h" /* mlxn_mlx_check */

#include <math.h>
#include <stdio.h>
#include <string.h>

typedef struct preset {
    const char *name;
    int hidden, layers, heads, kv_heads, head_dim, ffn, vocab;
    bool tied;
    float rope_factor; /* llama3 scaling factor; 0 = none */
} preset;

static const preset k_presets[] = {
    {"llama3-1b", 2048, 16, 32, 8, 64, 8192, 128256, true, 32},
    {"llama3-3b", 3072, 28, 24, 8, 128, 8192, 128256, true, 32},
    {"llama3-8b", 4096, 32, 32, 8, 128, 14336, 128256, false, 8},
    {"llama3-70b-layer", 8192, 1, 64, 8, 128, 28672, 128256, false, 8},
    {"tiny", 64, 2, 4, 2, 16, 128, 256, false, 0},
    {"llama-2k", 2048, 2, 16, 4, 128, 4096, 2048, false, 0},
    {"smollm2-135m", 576, 30, 9, 3, 64, 1536, 49152, true, 0},
};

typedef struct syn_src {
    mlxn_model_config cfg;
    int bits, group;
    int ggml; /* a GGML block type for the linears, or 0 (MLX affine) */
} syn_src;

static uint64_t hash_str(const char *s) {
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

static const struct {
    const char *name;
    mlxn_dtype t;
    float dk; /* each block's d in [r / dk, 2 r / dk), r = 1/sqrt(K): about the codes' spread */
} k_ggml[] = {{"q4_0", MLXN_Q4_0, 16.0f},   {"q4_1", MLXN_Q4_1, 15.0f},   {"q8_0", MLXN_Q8_0, 256.0f},
              {"q4_k", MLXN_Q4_K, 472.5f}, {"q5_k", MLXN_Q5_K, 976.5f}, {"q6_k", MLXN_Q6_K, 4096.0f}};

/* The fill of a synthetic GGML linear [N, K] of type t. */
static mlxn_fill ggml_fill(const char *module, int64_t K, mlxn_dtype t) {
    float dk = 16.0f;
    for (size_t i = 0; i < sizeof k_ggml / sizeof k_ggml[0]; i++)
        if (k_ggml[i].t == t) dk = k_ggml[i].dk;
    float r = 1.0f / sqrtf((float)K);
    return (mlxn_fill){MLXN_FILL_GGML, mlxn_fill_hash(hash_str(module), 4), r / dk, r / dk, (int)t};
}


/* Output and input features of a linear module, or false. */
static bool linear_shape(const mlxn_model_config *c, const char *module, int64_t *N, int64_t *K) {
    int64_t q = (int64_t)c->heads * c->head_dim, kv = (int64_t)c->kv_heads * c->head_dim;
    const char *p = strrchr(module, '.');
    if (!strcmp(module, "model.embed_tokens") || !strcmp(module, "lm_head")) { *N = c->vocab; *K = c->hidden; return true; }
    if (!p) return false;
    p++;
    if (!strcmp(p, "q_proj")) { *N = q; *K = c->hidden; }
    else if (!strcmp(p, "k_proj") || !strcmp(p, "v_proj")) { *N = kv; *K = c->hidden; }
    else if (!strcmp(p, "o_proj")) { *N = c->hidden; *K = q; }
    else if (!strcmp(p, "gate_proj") || !strcmp(p, "up_proj")) { *N = c->ffn; *K = c->hidden; }
    else if (!strcmp(p, "down_proj")) { *N = c->hidden; *K = c->ffn; }
    else return false;
    return true;
}

mlxn_fill mlxn_synthetic_fill(const char *module, const char *what, int64_t K, int bits) {
    mlxn_fill f = {MLXN_FILL_NONE, 0, 0, 0, 0};
    if (!module || !what) return f;
    uint64_t h = hash_str(module); /* one seed per tensor: the module hashed, then the part */
    float r = K > 0 ? 1.0f / sqrtf((float)K) : 0.0f;
    if (bits < 0 || bits > 8) return f;
    if (!strcmp(what, "weight") && bits) {
        f = (mlxn_fill){MLXN_FILL_BITS, mlxn_fill_hash(h, 0), 0, 0, 0};
    } else if (!strcmp(what, "scales") && bits) { /* scale·q spans [0, 2u·r], u in [0.5, 1) */
        float sp = 2.0f / (float)((1 << bits) - 1) * r;
        f = (mlxn_fill){MLXN_FILL_BF16, mlxn_fill_hash(h, 1), 0.5f * sp, 0.5f * sp, 0};
    } else if (!strcmp(what, "biases") && bits) { /* in [-r, -r/2): centres the codes' span */
        f = (mlxn_fill){MLXN_FILL_BF16, mlxn_fill_hash(h, 2), -r, 0.5f * r, 0};
    } else if (!strcmp(what, "weight")) { /* norm: f32 in [0.9, 1.1) */
        f = (mlxn_fill){MLXN_FILL_F32, mlxn_fill_hash(h, 3), 0.9f, 0.2f, 0};
    }
    return f;
}

static bool syn_find(void *ctx, const char *name, mlxn_tensor_ref *out) {
    syn_src *s = ctx;
    char module[96];
    const char *dot = strrchr(name, '.');
    if (!dot || (size_t)(dot - name) >= sizeof module) return false;
    snprintf(module, sizeof module, "%.*s", (int)(dot - name), name);
    const char *what = dot + 1;
    int64_t N, K;
    bool lin = linear_shape(&s->cfg, module, &N, &K);
    bool norm = !lin && !strcmp(what, "weight") &&
                (strstr(module, "layernorm") || !strcmp(module, "model.norm"));
    if (!lin && !norm) return false;
    if (lin && !strcmp(module, "lm_head") && s->cfg.tie_embeddings) return false;
    if (lin && strcmp(what, "weight") && strcmp(what, "scales") && strcmp(what, "biases")) return false;
    if (lin && s->ggml && strcmp(what, "weight")) return false; /* no scales / biases: GGML blocks */
    memset(out, 0, sizeof *out);
    if (norm) {
        out->dtype = MLXN_F32;
        out->ndim = 1;
        out->shape[0] = s->cfg.hidden;
        out->nbytes = (size_t)s->cfg.hidden * sizeof(float);
        out->fill = mlxn_synthetic_fill(module, what, 0, 0);
        return true;
    }
    out->ndim = 2;
    out->shape[0] = N;
    if (s->ggml) {
        mlxn_dtype t = (mlxn_dtype)s->ggml;
        out->dtype = t;
        out->shape[1] = K;
        out->nbytes = (size_t)N * (size_t)(K / (int64_t)mlxn_dtype_block_elems(t)) * mlxn_dtype_block_bytes(t);
        out->fill = ggml_fill(module, K, t);
        return true;
    }
    if (!strcmp(what, "weight")) {
        out->dtype = MLXN_U32;
        out->shape[1] = K * s->bits / 32;
        out->nbytes = (size_t)N * (size_t)out->shape[1] * 4;
    } else {
        out->dtype = MLXN_BF16;
        out->shape[1] = K / s->group;
        out->nbytes = (size_t)N * (size_t)out->shape[1] * 2;
    }
    out->fill = mlxn_synthetic_fill(module, what, K, s->bits);
    return true;
}

static void syn_close(void *ctx) { mlxn_free(ctx); }

mlxn_status mlxn_model_load_synthetic(mlxn_model **out, mlxn_device *dev, const char *spec,
                                      void (*progress)(void *pctx, int layers_done, int layers), void *pctx) {
    const char *name = spec + strlen("synthetic:");
    char base[32];
    size_t blen = strcspn(name, ":");
    snprintf(base, sizeof base, "%.*s", (int)(blen < sizeof base ? blen : sizeof base - 1), name);
    const preset *p = NULL;
    for (size_t i = 0; i < sizeof k_presets / sizeof k_presets[0]; i++)
        if (!strcmp(k_presets[i].name, base)) p = &k_presets[i];
    if (!p)
        return mlxn_err(MLXN_ERR_NOT_FOUND,
                        "%s: unknown synthetic model '%s' (llama3-1b, llama3-3b, llama3-8b, llama3-70b-layer, tiny, llama-2k, smollm2-135m)",
                        spec, base);
    int bits = 4, group = 64, ggml = 0;
    bool mlx_opt = false; /* a :q or :g given */
    for (const char *o = name + blen; *o == ':'; o += 1 + strcspn(o + 1, ":")) {
        int v;
        size_t len = strcspn(o + 1, ":");
        int gi = -1;
        for (size_t i = 0; i < sizeof k_ggml / sizeof k_ggml[0]; i++)
            if (strlen(k_ggml[i].name) == len && !strncmp(o + 1, k_ggml[i].name, len)) gi = (int)i;
        if (gi >= 0) ggml = (int)k_ggml[gi].t;
        else if (sscanf(o + 1, "q%d", &v) == 1) bits = v, mlx_opt = true;
        else if (sscanf(o + 1, "g%d", &v) == 1) group = v, mlx_opt = true;
        else return mlxn_err(MLXN_ERR_INVALID_ARG, "%s: option '%.*s' is not q<bits> or g<group>", spec,
                             (int)strcspn(o + 1, ":"), o + 1);
    }
    if (ggml && mlx_opt)
        return mlxn_err(MLXN_ERR_INVALID_ARG, "%s: q<bits> and g<group> set MLX quantization; %s blocks have their own",
                        spec, mlxn_dtype_name((mlxn_dtype)ggml));
    mlxn_status st = ggml ? MLXN_OK : mlxn_mlx_check(spec, 1, group, bits, group, MLXN_BF16);
    if (st) return st;
    if (ggml) { /* every linear's K a whole number of blocks */
        int64_t qk = (int64_t)mlxn_dtype_block_elems((mlxn_dtype)ggml);
        int64_t ks[3] = {p->hidden, (int64_t)p->heads * p->head_dim, p->ffn};
        for (int i = 0; i < 3; i++)
            if (ks[i] % qk)
                return mlxn_err(MLXN_ERR_SHAPE, "%s: %s blocks take %lld elements; a linear of this model has K = %lld",
                                spec, mlxn_dtype_name((mlxn_dtype)ggml), (long long)qk, (long long)ks[i]);
    }
    syn_src *s = mlxn_calloc(1, sizeof *s);
    if (!s) return mlxn_err(MLXN_ERR_OUT_OF_MEMORY, "%s: out of memory", spec);
    mlxn_model_config *c = &s->cfg;
    c->arch = MLXN_ARCH_LLAMA;
    c->hidden = p->hidden;
    c->layers = p->layers;
    c->heads = p->heads;
    c->kv_heads = p->kv_heads;
    c->head_dim = p->head_dim;
    c->ffn = p->ffn;
    c->vocab = p->vocab;
    c->max_pos = 131072;
    c->rms_eps = 1e-5f;
    c->rope_theta = p->rope_factor ? 500000.0f : 10000.0f;
    if (p->rope_factor) {
        c->rope_scaling = MLXN_ROPE_SCALE_LLAMA3;
        c->rope_factor = p->rope_factor;
        c->rope_low_freq = 1;
        c->rope_high_freq = 4;
        c->rope_orig_max_pos = 8192;
    }
    c->tie_embeddings = p->tied;
    c->bos_id = -1;
    c->q_bits = ggml ? 0 : bits;
    c->q_group = ggml ? 0 : group;
    snprintf(c->source, sizeof c->source, "%s", spec);
    s->bits = bits;
    s->group = group;
    s->ggml = ggml;
    mlxn_model_config cfg = *c; /* the model takes this copy over */
    mlxn_weight_source src = {s, syn_find, syn_close, MLXN_NAMES_HF, spec, progress, pctx, NULL};
    st = mlxn_model_create(out, dev, &cfg, &src);
    mlxn_model_config_free(&cfg);
    return st;
}
