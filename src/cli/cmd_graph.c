/*
 * cmd_graph.c — `mlxn graph`: record one decode step of a Llama-shaped
 * network with random weights and run it in each graph mode (direct,
 * batched, optimized, replay), printing nodes, submissions, barriers,
 * fusions, reordered nodes, the median time per step and the largest
 * difference of the final logits against direct mode.
 *
 * Per layer (T = 1 token):
 *   h  = rms_norm(x) * attn_norm            (fused: rms_norm with weight)
 *   q, k, v = h Wq^T, h Wk^T, h Wv^T; rope(q), rope(k) at pos
 *   kv_write(K, k), kv_write(V, v); a = attention(q, K, V)
 *   x2 = x + a Wo^T;  h2 = rms_norm(x2) * ffn_norm   (fused: add_rms_norm)
 *   x  = x2 + (silu(h2 Wg^T) * h2 Wu^T) Wd^T          (fused: silu_mul)
 * then logits = rms_norm(x) * out_norm * E^T and argmax, with E the
 * embedding table (tied head). Token and position live in device buffers,
 * so replay feeds each step by writing them.
 */
#include "cli/cli.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct shape {
    long layers, hidden, heads, kv_heads, ffn, vocab, ctx, steps;
} shape;

typedef struct layer {
    mlxn_buffer *attn_norm, *ffn_norm, *wq, *wk, *wv, *wo, *wg, *wu, *wd, *kc, *vc;
} layer;

typedef struct net {
    shape s;
    mlxn_device *dev;
    layer *L;
    mlxn_buffer *emb, *out_norm;
    mlxn_buffer *tok, *pos; /* step parameters, i32[1] */
    /* activations */
    mlxn_buffer *x, *x2, *h, *hn, *q, *k, *v, *q3, *k3, *v3, *qr, *kr, *att, *att2, *o, *g, *u, *sg, *m, *d,
        *logits, *argmax;
} net;

static uint64_t g_seed = 0x2545F4914F6CDD1Dull;
static float frand(void) {
    g_seed ^= g_seed >> 12;
    g_seed ^= g_seed << 25;
    g_seed ^= g_seed >> 27;
    return (float)((g_seed * 2685821657736338717ull) >> 40) / (float)(1u << 24) - 0.5f;
}

/* A bf16 weight [n, k] with values ~ U(-0.5, 0.5) * scale. */
static mlxn_status rand_weight(mlxn_device *dev, mlxn_buffer **out, long n, long k, float scale) {
    int64_t sh[2] = {n, k};
    mlxn_status st = mlxn_buffer_create(out, dev, MLXN_BF16, 2, sh);
    if (st) return st;
    size_t cnt = (size_t)n * (size_t)k;
    uint16_t *tmp = malloc(cnt * 2);
    if (!tmp) return MLXN_ERR_OUT_OF_MEMORY;
    for (size_t i = 0; i < cnt; i++) tmp[i] = mlxn_f32_to_bf16(frand() * scale);
    st = mlxn_buffer_write(*out, 0, tmp, cnt * 2);
    free(tmp);
    return st;
}

static mlxn_status act(mlxn_device *dev, mlxn_buffer **out, mlxn_dtype t, int nd, int64_t a, int64_t b, int64_t c) {
    int64_t sh[3] = {a, b, c};
    return mlxn_buffer_create(out, dev, t, nd, sh);
}

#define TRY(x)                                \
    do {                                      \
        mlxn_status st_ = (x);                \
        if (st_) return st_;                  \
    } while (0)

static mlxn_status net_init(net *nt) {
    shape *s = &nt->s;
    mlxn_device *dev = nt->dev;
    long hd = s->hidden / s->heads;
    float ws = 2.0f / sqrtf((float)s->hidden);
    nt->L = calloc((size_t)s->layers, sizeof(layer));
    if (!nt->L) return MLXN_ERR_OUT_OF_MEMORY;
    for (long l = 0; l < s->layers; l++) {
        layer *L = &nt->L[l];
        TRY(rand_weight(dev, &L->attn_norm, 1, s->hidden, 0.2f));
        TRY(rand_weight(dev, &L->ffn_norm, 1, s->hidden, 0.2f));
        TRY(rand_weight(dev, &L->wq, s->heads * hd, s->hidden, ws));
        TRY(rand_weight(dev, &L->wk, s->kv_heads * hd, s->hidden, ws));
        TRY(rand_weight(dev, &L->wv, s->kv_heads * hd, s->hidden, ws));
        TRY(rand_weight(dev, &L->wo, s->hidden, s->heads * hd, ws));
        TRY(rand_weight(dev, &L->wg, s->ffn, s->hidden, ws));
        TRY(rand_weight(dev, &L->wu, s->ffn, s->hidden, ws));
        TRY(rand_weight(dev, &L->wd, s->hidden, s->ffn, 2.0f / sqrtf((float)s->ffn)));
        TRY(act(dev, &L->kc, MLXN_F16, 3, s->kv_heads, s->ctx, hd));
        TRY(act(dev, &L->vc, MLXN_F16, 3, s->kv_heads, s->ctx, hd));
    }
    TRY(rand_weight(dev, &nt->emb, s->vocab, s->hidden, 1.0f));
    TRY(rand_weight(dev, &nt->out_norm, 1, s->hidden, 0.2f));
    /* norm weights around 1 */
    int64_t one = 1;
    TRY(act(dev, &nt->tok, MLXN_I32, 1, one, 1, 1));
    TRY(act(dev, &nt->pos, MLXN_I32, 1, one, 1, 1));
    TRY(act(dev, &nt->x, MLXN_F32, 2, 1, s->hidden, 1));
    TRY(act(dev, &nt->x2, MLXN_F32, 2, 1, s->hidden, 1));
    TRY(act(dev, &nt->h, MLXN_F32, 2, 1, s->hidden, 1));
    TRY(act(dev, &nt->hn, MLXN_F32, 2, 1, s->hidden, 1));
    TRY(act(dev, &nt->q, MLXN_F32, 3, 1, s->heads, hd));
    TRY(act(dev, &nt->k, MLXN_F32, 3, 1, s->kv_heads, hd));
    TRY(act(dev, &nt->v, MLXN_F32, 3, 1, s->kv_heads, hd));
    TRY(act(dev, &nt->att, MLXN_F32, 3, 1, s->heads, hd));
    TRY(act(dev, &nt->o, MLXN_F32, 2, 1, s->hidden, 1));
    TRY(act(dev, &nt->g, MLXN_F32, 2, 1, s->ffn, 1));
    TRY(act(dev, &nt->u, MLXN_F32, 2, 1, s->ffn, 1));
    TRY(act(dev, &nt->sg, MLXN_F32, 2, 1, s->ffn, 1));
    TRY(act(dev, &nt->m, MLXN_F32, 2, 1, s->ffn, 1));
    TRY(act(dev, &nt->d, MLXN_F32, 2, 1, s->hidden, 1));
    TRY(act(dev, &nt->logits, MLXN_F32, 2, 1, s->vocab, 1));
    TRY(act(dev, &nt->argmax, MLXN_I32, 1, 1, 1, 1));
    /* 2-D views of q/k/v/att for the matmuls */
    int64_t qs[2] = {1, s->heads * hd}, ks[2] = {1, s->kv_heads * hd};
    TRY(mlxn_buffer_view(&nt->q3, nt->q, MLXN_F32, 2, qs, 0));
    TRY(mlxn_buffer_view(&nt->k3, nt->k, MLXN_F32, 2, ks, 0));
    TRY(mlxn_buffer_view(&nt->v3, nt->v, MLXN_F32, 2, ks, 0));
    TRY(mlxn_buffer_view(&nt->att2, nt->att, MLXN_F32, 2, qs, 0));
    return MLXN_OK;
}

static void net_free(net *nt) {
    if (nt->L)
        for (long l = 0; l < nt->s.layers; l++) {
            layer *L = &nt->L[l];
            mlxn_buffer *b[] = {L->attn_norm, L->ffn_norm, L->wq, L->wk, L->wv, L->wo, L->wg, L->wu, L->wd, L->kc, L->vc};
            for (size_t i = 0; i < sizeof b / sizeof b[0]; i++) mlxn_buffer_destroy(b[i]);
        }
    free(nt->L);
    mlxn_buffer *b[] = {nt->emb, nt->out_norm, nt->tok, nt->pos, nt->x, nt->x2, nt->h, nt->hn, nt->q, nt->k,
                        nt->v, nt->q3, nt->k3, nt->v3, nt->att, nt->att2, nt->o, nt->g, nt->u, nt->sg, nt->m,
                        nt->d, nt->logits, nt->argmax};
    for (size_t i = 0; i < sizeof b / sizeof b[0]; i++) mlxn_buffer_destroy(b[i]);
}

/* Record one decode step. */
static mlxn_status record_step(net *nt, mlxn_session *s) {
    mlxn_rope_params rp = {.base = 500000.0f, .mode = MLXN_ROPE_NEOX};
    TRY(mlxn_op_get_rows(s, nt->x, nt->emb, nt->tok));
    for (long l = 0; l < nt->s.layers; l++) {
        layer *L = &nt->L[l];
        TRY(mlxn_op_rms_norm(s, nt->h, nt->x, NULL, 1e-5f));
        TRY(mlxn_op_mul(s, nt->hn, nt->h, L->attn_norm));
        TRY(mlxn_op_matmul(s, nt->q3, nt->hn, L->wq));
        TRY(mlxn_op_matmul(s, nt->k3, nt->hn, L->wk));
        TRY(mlxn_op_matmul(s, nt->v3, nt->hn, L->wv));
        TRY(mlxn_op_rope(s, nt->q, nt->q, nt->pos, NULL, &rp));
        TRY(mlxn_op_rope(s, nt->k, nt->k, nt->pos, NULL, &rp));
        TRY(mlxn_op_kv_write(s, L->kc, nt->k, nt->pos));
        TRY(mlxn_op_kv_write(s, L->vc, nt->v, nt->pos));
        TRY(mlxn_op_attention(s, nt->att, nt->q, L->kc, L->vc, nt->pos, NULL));
        TRY(mlxn_op_matmul(s, nt->o, nt->att2, L->wo));
        TRY(mlxn_op_add(s, nt->x2, nt->x, nt->o));
        TRY(mlxn_op_rms_norm(s, nt->h, nt->x2, NULL, 1e-5f));
        TRY(mlxn_op_mul(s, nt->hn, nt->h, L->ffn_norm));
        TRY(mlxn_op_matmul(s, nt->g, nt->hn, L->wg));
        TRY(mlxn_op_matmul(s, nt->u, nt->hn, L->wu));
        TRY(mlxn_op_silu(s, nt->sg, nt->g));
        TRY(mlxn_op_mul(s, nt->m, nt->sg, nt->u));
        TRY(mlxn_op_matmul(s, nt->d, nt->m, L->wd));
        TRY(mlxn_op_add(s, nt->x, nt->x2, nt->d));
    }
    TRY(mlxn_op_rms_norm(s, nt->h, nt->x, NULL, 1e-5f));
    TRY(mlxn_op_mul(s, nt->hn, nt->h, nt->out_norm));
    TRY(mlxn_op_matmul(s, nt->logits, nt->hn, nt->emb));
    TRY(mlxn_op_argmax(s, nt->argmax, nt->logits));
    return MLXN_OK;
}

typedef struct mode_result {
    const char *name;
    mlxn_graph_stats st;
    double ms_per_step;
    double max_diff;
    float *logits;
} mode_result;

static mlxn_status clear_caches(net *nt) {
    shape *s = &nt->s;
    size_t n = mlxn_buffer_nbytes(nt->L[0].kc);
    void *z = calloc(1, n);
    if (!z) return MLXN_ERR_OUT_OF_MEMORY;
    mlxn_status st = MLXN_OK;
    for (long l = 0; l < s->layers && !st; l++) {
        st = mlxn_buffer_write(nt->L[l].kc, 0, z, n);
        if (!st) st = mlxn_buffer_write(nt->L[l].vc, 0, z, n);
    }
    free(z);
    return st;
}

/* Run `steps` decode steps in one mode; mode index 3 = replay. */
static mlxn_status run_mode(net *nt, int mode, mode_result *r) {
    TRY(clear_caches(nt));
    mlxn_session *s = NULL;
    mlxn_mode m = mode == 0 ? MLXN_MODE_DIRECT : mode == 1 ? MLXN_MODE_BATCHED : MLXN_MODE_OPTIMIZED;
    TRY(mlxn_session_create(&s, nt->dev, m, 0));
    mlxn_status st = MLXN_OK;
    long steps = nt->s.steps;
    double *ms = calloc((size_t)steps, sizeof(double));
    int32_t tok = 1;
    for (long step = 0; step < steps && !st; step++) {
        int32_t pos = (int32_t)step;
        if ((st = mlxn_buffer_write(nt->tok, 0, &tok, 4)) || (st = mlxn_buffer_write(nt->pos, 0, &pos, 4))) break;
        struct timespec t0, t1;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        if (mode == 3 && step > 0) {
            st = mlxn_session_replay(s);
        } else {
            mlxn_session_reset(s);
            st = record_step(nt, s);
            if (!st) st = mlxn_session_mark_output(s, nt->logits);
            if (!st) st = mlxn_session_finish(s);
        }
        clock_gettime(CLOCK_MONOTONIC, &t1);
        ms[step] = (double)(t1.tv_sec - t0.tv_sec) * 1e3 + (double)(t1.tv_nsec - t0.tv_nsec) / 1e6;
        if (!st) st = mlxn_buffer_read(nt->argmax, 0, &tok, 4);
    }
    if (!st) {
        mlxn_session_stats(s, &r->st);
        /* median of the steps after the first (which records, in replay) */
        long from = steps > 2 ? 1 : 0;
        qsort(ms + from, (size_t)(steps - from), sizeof(double), cli_cmp_double);
        r->ms_per_step = ms[from + (steps - from) / 2];
        r->logits = malloc((size_t)nt->s.vocab * sizeof(float));
        if (!r->logits) st = MLXN_ERR_OUT_OF_MEMORY;
        else st = mlxn_buffer_read(nt->logits, 0, r->logits, (size_t)nt->s.vocab * sizeof(float));
    }
    free(ms);
    mlxn_session_destroy(s);
    return st;
}

static void usage(void) {
    printf("usage: mlxn graph [--layers N] [--hidden N] [--heads N] [--kv-heads N] [--ffn N]\n"
           "                  [--vocab N] [--ctx N] [--steps N] [--threads N] [--backend cpu|cuda] [--json]\n"
           "Records one decode step of a Llama-shaped network (random bf16 weights) and runs it\n"
           "in direct, batched, optimized and replay mode.\n"
           "Defaults: 4 layers, hidden 2048, 16 heads, 4 KV heads, ffn 5632, vocab 32000, ctx 256, 8 steps.\n");
}

int cmd_graph(int argc, char **argv) {
    net nt = {.s = {4, 2048, 16, 4, 5632, 32000, 256, 8}};
    bool json = false;
    long threads = 0;
    const char *backend = "auto";
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        long *dst = NULL;
        long lo = 1, hi = 1 << 20;
        if (!strcmp(a, "--json")) { json = true; continue; }
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) { usage(); return 0; }
        if (!strcmp(a, "--backend")) { if (!v) { usage(); return 2; } backend = v; i++; continue; }
        if (!strcmp(a, "--layers")) dst = &nt.s.layers;
        else if (!strcmp(a, "--hidden")) dst = &nt.s.hidden;
        else if (!strcmp(a, "--heads")) dst = &nt.s.heads;
        else if (!strcmp(a, "--kv-heads")) dst = &nt.s.kv_heads;
        else if (!strcmp(a, "--ffn")) dst = &nt.s.ffn;
        else if (!strcmp(a, "--vocab")) dst = &nt.s.vocab;
        else if (!strcmp(a, "--ctx")) dst = &nt.s.ctx;
        else if (!strcmp(a, "--steps")) { dst = &nt.s.steps; lo = 1; hi = 100000; }
        else if (!strcmp(a, "--threads")) { dst = &threads; hi = 1024; }
        else { fprintf(stderr, "mlxn graph: unknown option '%s'\n", a); usage(); return 2; }
        if (!cli_int(a, v, lo, hi, dst)) return 2;
        i++;
    }
    shape *s = &nt.s;
    if (s->hidden % s->heads || s->heads % s->kv_heads || (s->hidden / s->heads) % 2) {
        fprintf(stderr, "mlxn graph: hidden must split into heads of even size, heads into kv-heads\n");
        return 2;
    }
    if (s->steps > s->ctx) s->steps = s->ctx;
    mlxn_status st = cli_open_device(&nt.dev, backend, (int)threads);
    if (st) return cli_fail("opening the device", st);
    if (!json)
        printf("graph: %ld layers, hidden %ld, %ld heads / %ld kv heads, ffn %ld, vocab %ld on %s\n", s->layers,
               s->hidden, s->heads, s->kv_heads, s->ffn, s->vocab, mlxn_device_description(nt.dev));
    st = net_init(&nt);
    mode_result r[4] = {{.name = "direct"}, {.name = "batched"}, {.name = "optimized"}, {.name = "replay"}};
    for (int m = 0; m < 4 && !st; m++) st = run_mode(&nt, m, &r[m]);
    int rc = 0;
    if (st) {
        rc = cli_fail("graph", st);
    } else {
        for (int m = 0; m < 4; m++) {
            double md = 0;
            for (long i = 0; i < s->vocab; i++) {
                double d = fabs((double)r[m].logits[i] - (double)r[0].logits[i]);
                if (!(d <= md)) md = d; /* NaN propagates */
            }
            r[m].max_diff = md;
        }
        if (json) {
            printf("{\"device\": \"%s\", \"layers\": %ld, \"hidden\": %ld, \"modes\": {", mlxn_device_description(nt.dev),
                   s->layers, s->hidden);
            for (int m = 0; m < 4; m++)
                printf("%s\"%s\": {\"nodes\": %u, \"submissions\": %u, \"barriers\": %u, \"fusions\": %u, "
                       "\"reordered\": %u, \"ms_per_step\": %.3f, \"max_abs_diff_vs_direct\": %.3g}",
                       m ? ", " : "", r[m].name, r[m].st.nodes, r[m].st.submissions, r[m].st.barriers,
                       r[m].st.fusions, r[m].st.reordered, r[m].ms_per_step, r[m].max_diff);
            printf("}}\n");
        } else {
            printf("%-10s %7s %12s %9s %8s %10s %12s %14s\n", "mode", "nodes", "submissions", "barriers", "fusions",
                   "reordered", "ms/step", "max|diff|");
            for (int m = 0; m < 4; m++)
                printf("%-10s %7u %12u %9u %8u %10u %12.3f %14.3g\n", r[m].name, r[m].st.nodes, r[m].st.submissions,
                       r[m].st.barriers, r[m].st.fusions, r[m].st.reordered, r[m].ms_per_step, r[m].max_diff);
        }
    }
    for (int m = 0; m < 4; m++) free(r[m].logits);
    net_free(&nt);
    mlxn_device_close(nt.dev);
    return rc;
}
