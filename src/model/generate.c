/*
 * generate.c — the generation loop: the prompt as one recorded graph
 * (prefill), then one-token graphs recorded once in optimized mode and
 * replayed for every further token with the token id and position written
 * into its i32 buffers. Greedy decoding without a penalty uses the device's
 * argmax, which the device feeds to the next step itself: on CUDA the host
 * queues each step before reading the token of the one before (pipelined).
 * Sampling reads back only the k largest logits that the device's
 * top_k found when the sampler can draw from them (mlxn_sampler_device_top_k:
 * top-k, top-k or greedy with a repetition penalty >= 1, top-p / min-p with
 * the row's normalizer from the device's logsumexp) and the whole row when
 * it cannot, for the step (the candidates did not decide the draw) or for
 * the run (other settings; MLXN_HOST_SAMPLING=1 forces the whole row). The
 * token is the same either way.
 */
#include "model/model.h"

#include <stdlib.h>
#include <string.h>

#define TRY(x)                          \
    do {                                \
        mlxn_status st_ = (x);          \
        if (st_ != MLXN_OK) return st_; \
    } while (0)

static bool is_eos(const mlxn_model_config *c, int32_t t) {
    for (int i = 0; i < c->n_eos; i++)
        if (c->eos_ids[i] == t) return true;
    return false;
}

typedef struct gen {
    const mlxn_model *m;
    mlxn_kvcache *kv;
    mlxn_sampler *smp;
    float *logits; /* [vocab] */
    mlxn_forward *pre, *dec;
    int top_k;     /* > 0: candidates from the device's top_k */
    double norm_scale; /* > 0: and the row's normalizer from its logsumexp */
    float *tv;     /* [top_k] */
    int32_t *ti;   /* [top_k] */
    int row_reads; /* sampled tokens that read the whole row */
} gen;

static mlxn_status fwd_create(gen *g, mlxn_forward **f, int T) {
    TRY(mlxn_forward_create(f, g->m, g->kv, T, MLXN_MODE_OPTIMIZED, 0));
    TRY(mlxn_forward_set_top_k(*f, g->top_k));
    return mlxn_forward_set_norm(*f, g->norm_scale);
}

/* Next token after a run of f. */
static mlxn_status pick(gen *g, mlxn_forward *f, int32_t *tok) {
    if (mlxn_sampler_is_greedy(g->smp)) return mlxn_forward_argmax(f, tok);
    if (g->top_k) {
        float norm[2];
        TRY(mlxn_forward_top_k(f, g->tv, g->ti, g->top_k));
        if (g->norm_scale > 0) TRY(mlxn_forward_norm(f, norm));
        TRY(mlxn_sampler_sample_top(g->smp, g->tv, g->ti, g->top_k, g->norm_scale > 0 ? norm : NULL, tok));
        if (*tok >= 0) return MLXN_OK;
    }
    g->row_reads++;
    TRY(mlxn_forward_logits(f, g->logits, (size_t)g->m->cfg.vocab));
    return mlxn_sampler_sample(g->smp, g->logits, tok);
}

/* Token tok generated: recorded, accepted by the sampler, handed to the
 * caller; true when generation stops after it. */
static bool emit(gen *g, const mlxn_generate_params *p, int32_t tok, int32_t *out_tokens, int *n, int n_predict) {
    if (out_tokens) out_tokens[*n] = tok;
    (*n)++;
    mlxn_sampler_accept(g->smp, tok);
    bool more = p->on_token ? p->on_token(p->ctx, tok) : true;
    return !more || *n >= n_predict || (!p->ignore_eos && is_eos(&g->m->cfg, tok));
}

static mlxn_status run(gen *g, const int32_t *prompt, int n_prompt, const mlxn_generate_params *p,
                       int32_t *out_tokens, int *n_out, mlxn_generate_stats *st) {
    int n_predict = p->n_predict > 0 ? p->n_predict : 128;
    if (n_prompt <= 0) return mlxn_err(MLXN_ERR_INVALID_ARG, "generate: the prompt is empty");
    for (int i = 0; i < n_prompt; i++)
        if (prompt[i] < 0 || prompt[i] >= g->m->cfg.vocab)
            return mlxn_err(MLXN_ERR_RANGE, "generate: prompt token %d at %d is outside the vocab of %d", prompt[i],
                            i, g->m->cfg.vocab);
    /* the last generated token is never fed back, so n_prompt + n - 1 slots */
    if (g->kv->ring ? (int64_t)g->kv->n_past + n_prompt > g->kv->ctx
                    : (int64_t)g->kv->n_past + n_prompt + n_predict - 1 > g->kv->ctx)
        return mlxn_err(MLXN_ERR_RANGE, "generate: %d cached + prompt %d + n %d tokens exceed ctx %d (raise --ctx)",
                        g->kv->n_past, n_prompt, n_predict, g->kv->ctx);
    TRY(mlxn_sampler_create(&g->smp, &p->sampling, g->m->cfg.vocab));
    g->logits = mlxn_malloc((size_t)g->m->cfg.vocab * sizeof(float));
    if (!g->logits) return mlxn_err(MLXN_ERR_OUT_OF_MEMORY, "generate: out of memory");
    const char *hs = getenv("MLXN_HOST_SAMPLING");
    g->top_k = hs && *hs && *hs != '0' ? 0 : mlxn_sampler_device_top_k(g->smp);
    g->norm_scale = g->top_k ? mlxn_sampler_device_norm_scale(g->smp) : 0;
    if (g->top_k) {
        g->tv = mlxn_malloc((size_t)g->top_k * sizeof *g->tv);
        g->ti = mlxn_malloc((size_t)g->top_k * sizeof *g->ti);
        if (!g->tv || !g->ti) return mlxn_err(MLXN_ERR_OUT_OF_MEMORY, "generate: out of memory");
    }
    for (int i = 0; i < n_prompt; i++) mlxn_sampler_accept(g->smp, prompt[i]);

    uint64_t t0 = mlxn_now_ns();
    int batch = p->n_batch > 0 ? p->n_batch : 512;
    int full = n_prompt / batch, rem = n_prompt % batch, done = 0;
    /* full chunks share one graph (recorded once, replayed); the remainder
     * gets its own. Each chunk's attention reads the earlier chunks from the
     * cache at their positions. */
    if (full) TRY(fwd_create(g, &g->pre, batch));
    for (int c = 0; c < full; c++, done += batch) TRY(mlxn_forward_run(g->pre, prompt + done));
    if (rem) {
        mlxn_forward_destroy(g->pre);
        g->pre = NULL;
        TRY(fwd_create(g, &g->pre, rem));
        TRY(mlxn_forward_run(g->pre, prompt + done));
    }
    int32_t tok;
    TRY(pick(g, g->pre, &tok));
    uint64_t t1 = mlxn_now_ns();
    st->prompt_tokens = n_prompt;
    st->prompt_s = (double)(t1 - t0) * 1e-9;
    mlxn_forward_destroy(g->pre); /* its activations are not needed any more */
    g->pre = NULL;

    int n = 0;
    bool stop = emit(g, p, tok, out_tokens, &n, n_predict);
    if (!stop) TRY(fwd_create(g, &g->dec, 1));
    /* greedy decoding without a penalty runs one step ahead of the host
     * where the device overlaps the two (mlxn_forward_pipelines) */
    if (!stop && mlxn_sampler_is_greedy(g->smp) && mlxn_forward_pipelines(g->dec)) {
        /* one run ahead: the run for the token after next is queued before
         * the next one is read (the device takes each argmax as the next
         * input itself), so the device does not wait for the host between
         * steps; a run queued past an early stop is cancelled */
        TRY(mlxn_forward_queue(g->dec, &tok));
        for (;;) {
            bool ahead = n + 1 < n_predict;
            if (ahead) TRY(mlxn_forward_queue(g->dec, NULL));
            TRY(mlxn_forward_next_argmax(g->dec, &tok));
            stop = emit(g, p, tok, out_tokens, &n, n_predict);
            if (stop) {
                if (mlxn_forward_queued(g->dec)) TRY(mlxn_forward_cancel(g->dec));
                break;
            }
        }
    }
    while (!stop) {
        TRY(mlxn_forward_run(g->dec, &tok));
        TRY(pick(g, g->dec, &tok));
        stop = emit(g, p, tok, out_tokens, &n, n_predict);
    }
    st->gen_tokens = n;
    st->row_reads = g->row_reads;
    st->gen_s = (double)(mlxn_now_ns() - t1) * 1e-9;
    if (g->dec) {
        mlxn_graph_stats gs;
        if (!mlxn_session_stats(mlxn_forward_session(g->dec), &gs)) st->decode_nodes = gs.nodes;
    }
    *n_out = n;
    return MLXN_OK;
}

mlxn_status mlxn_generate(const mlxn_model *m, mlxn_kvcache *kv, const int32_t *prompt, int n_prompt,
                          const mlxn_generate_params *p, int32_t *out_tokens, int *n_out,
                          mlxn_generate_stats *stats) {
    if (!m || !kv || !prompt || !p) return mlxn_err(MLXN_ERR_INVALID_ARG, "generate: NULL argument");
    int n_dummy;
    if (!n_out) n_out = &n_dummy;
    *n_out = 0;
    mlxn_generate_stats st_local;
    mlxn_generate_stats *st = stats ? stats : &st_local;
    memset(st, 0, sizeof *st);
    gen g = {.m = m, .kv = kv};
    mlxn_status s = run(&g, prompt, n_prompt, p, out_tokens, n_out, st);
    mlxn_forward_destroy(g.pre);
    mlxn_forward_destroy(g.dec);
    mlxn_sampler_destroy(g.smp);
    mlxn_free(g.logits);
    mlxn_free(g.tv);
    mlxn_free(g.ti);
    return s;
}
