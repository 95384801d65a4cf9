/*
 * kvcache.c — the KV cache: per layer one K and one V buffer [Hkv, ctx, D]
 * (f16 by default), written by kv_write at each token's position and read by
 * attention. Positions stay below ctx (a linear cache; the generation loop
 * checks that prompt + new tokens fit before it runs anything), or, in a
 * ring cache, keep growing while rows are reused modulo ctx: each query then
 * attends to the last ctx tokens (a sliding window), in constant memory.
 */
#include "model/model.h"

#include <string.h>

mlxn_status mlxn_kvcache_create(mlxn_kvcache **out, const mlxn_model *m, int ctx, mlxn_dtype dtype) {
    if (!out || !m) return mlxn_err(MLXN_ERR_INVALID_ARG, "kvcache: NULL argument");
    *out = NULL;
    if (ctx <= 0) return mlxn_err(MLXN_ERR_INVALID_ARG, "kvcache: ctx %d must be positive", ctx);
    if (!(dtype == MLXN_F32 || dtype == MLXN_F16 || dtype == MLXN_BF16))
        return mlxn_err(MLXN_ERR_DTYPE, "kvcache: dtype %s is not f32, f16 or bf16", mlxn_dtype_name(dtype));
    mlxn_kvcache *kv = mlxn_calloc(1, sizeof *kv);
    if (!kv) return mlxn_err(MLXN_ERR_OUT_OF_MEMORY, "kvcache: out of memory");
    kv->layers = m->cfg.layers;
    kv->kv_heads = m->cfg.kv_heads;
    kv->head_dim = m->cfg.head_dim;
    kv->ctx = ctx;
    kv->dtype = dtype;
    kv->k = mlxn_calloc((size_t)kv->layers, sizeof *kv->k);
    kv->v = mlxn_calloc((size_t)kv->layers, sizeof *kv->v);
    mlxn_status st = kv->k && kv->v ? MLXN_OK : mlxn_err(MLXN_ERR_OUT_OF_MEMORY, "kvcache: out of memory");
    int64_t sh[3] = {kv->kv_heads, ctx, kv->head_dim};
    for (int l = 0; l < kv->layers && !st; l++) {
        st = mlxn_buffer_create(&kv->k[l], m->dev, dtype, 3, sh);
        if (!st) st = mlxn_buffer_create(&kv->v[l], m->dev, dtype, 3, sh);
    }
    if (st) {
        mlxn_err_prefix("kvcache of %d tokens x %d layers", ctx, kv->layers);
        mlxn_kvcache_destroy(kv);
        return st;
    }
    *out = kv;
    return MLXN_OK;
}

void mlxn_kvcache_destroy(mlxn_kvcache *kv) {
    if (!kv) return;
    for (int l = 0; l < kv->layers; l++) {
        if (kv->k) mlxn_buffer_destroy(kv->k[l]);
        if (kv->v) mlxn_buffer_destroy(kv->v[l]);
    }
    mlxn_free(kv->k);
    mlxn_free(kv->v);
    mlxn_free(kv);
}

size_t mlxn_kvcache_bytes(const mlxn_kvcache *kv) {
    size_t n = 0;
    for (int l = 0; kv && l < kv->layers; l++) n += mlxn_buffer_nbytes(kv->k[l]) + mlxn_buffer_nbytes(kv->v[l]);
    return n;
}

/* Stale rows need no zeroing: attention reads only positions <= the query's,
 * and those were written by this sequence. */
void mlxn_kvcache_clear(mlxn_kvcache *kv) {
    if (kv) kv->n_past = 0;
}

mlxn_status mlxn_kvcache_reserve(const mlxn_kvcache *kv, int n, const char *what) {
    if (kv->ring && (int64_t)kv->n_past + n > kv->ctx && n > 1)
        return mlxn_err(MLXN_ERR_RANGE,
                        "%s: a ring cache of %d that holds %d tokens takes new tokens one at a time, not %d",
                        what, kv->ctx, kv->n_past, n);
    if (!kv->ring && (int64_t)kv->n_past + n > kv->ctx)
        return mlxn_err(MLXN_ERR_RANGE, "%s: %d tokens in the cache + %d new = %lld exceed ctx %d (raise --ctx)",
                        what, kv->n_past, n, (long long)kv->n_past + n, kv->ctx);
    return MLXN_OK;
}
