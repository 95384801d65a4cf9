/*
 * forward_queue.h — one check shared by test_model_llama (CPU) and
 * test_cuda_model (CUDA): pipelined greedy decode (mlxn_forward_queue, the
 * device feeding each argmax to the next step) against one step at a time,
 * a run cancelled past an early stop, and the calls it refuses. Include
 * after testutil.h and model/model.h.
 */
#ifndef MLXN_TEST_FORWARD_QUEUE_H
#define MLXN_TEST_FORWARD_QUEUE_H

#include <string.h>

/* The fixed prompt of np tokens both checks start from. */
static void fq_prompt(const mlxn_model *m, int32_t *prompt, int np) {
    for (int i = 0; i < np; i++) prompt[i] = (int32_t)((5 + 37 * i) % m->cfg.vocab);
}

/* The model's greedy tokens after a fixed prompt: one run and one argmax
 * read at a time (pipe false) or one run queued ahead (pipe true). *n_past:
 * the cache's after the last run. */
static void fq_decode(mlxn_model *m, mlxn_kvcache *kv, bool pipe, int np, int ns, int32_t *out, int *n_past) {
    int32_t prompt[16];
    fq_prompt(m, prompt, np);
    mlxn_kvcache_clear(kv);
    mlxn_forward *pf = NULL, *f = NULL;
    int32_t t = -1;
    CHECK_OK(mlxn_forward_create(&pf, m, kv, np, MLXN_MODE_OPTIMIZED, 0));
    if (pf) CHECK_OK(mlxn_forward_run(pf, prompt));
    if (pf) CHECK_OK(mlxn_forward_argmax(pf, &t));
    mlxn_forward_destroy(pf);
    CHECK_OK(mlxn_forward_create(&f, m, kv, 1, MLXN_MODE_OPTIMIZED, 0));
    for (int i = 0; i < ns; i++) out[i] = -1;
    if (f && pipe) {
        CHECK_OK(mlxn_forward_queue(f, &t));
        for (int i = 0; i < ns; i++) {
            if (i + 1 < ns) CHECK_OK(mlxn_forward_queue(f, NULL));
            CHECK_OK(mlxn_forward_next_argmax(f, &out[i]));
        }
        CHECK(mlxn_forward_queued(f) == 0, "forward queue: %d runs left queued", mlxn_forward_queued(f));
    } else {
        for (int i = 0; i < ns && f; i++) {
            CHECK_OK(mlxn_forward_run(f, &t));
            CHECK_OK(mlxn_forward_argmax(f, &t));
            out[i] = t;
        }
    }
    *n_past = kv->n_past;
    mlxn_forward_destroy(f);
}

static void check_forward_queue(mlxn_model *m, const char *name) {
    enum { NP = 6, NS = 12 };
    mlxn_kvcache *kv = NULL;
    CHECK_OK(mlxn_kvcache_create(&kv, m, 64, MLXN_F16));
    if (!kv) return;
    int32_t want[NS], got[NS];
    int np_want = 0, np_got = 0;
    fq_decode(m, kv, false, NP, NS, want, &np_want);
    fq_decode(m, kv, true, NP, NS, got, &np_got);
    int same = 0;
    while (same < NS && want[same] == got[same]) same++;
    CHECK(same == NS && np_got == np_want && np_want == NP + NS,
          "%s: pipelined greedy decode: %d of %d tokens as one step at a time, n_past %d vs %d", name, same, NS,
          np_got, np_want);

    /* three runs queued, the first read, the other two cancelled: the cache
     * is back at NP + 1 and decoding goes on from there as if they had never
     * run (their rows lie past n_past and are written over) */
    int32_t prompt[NP], t0 = -1, t = -1;
    fq_prompt(m, prompt, NP);
    mlxn_kvcache_clear(kv);
    mlxn_forward *pf = NULL, *f = NULL;
    CHECK_OK(mlxn_forward_create(&pf, m, kv, NP, MLXN_MODE_OPTIMIZED, 0));
    CHECK(pf && mlxn_forward_queue(pf, prompt) == MLXN_ERR_INVALID_ARG, "%s: queue on a %d-token forward", name, NP);
    if (pf) CHECK_OK(mlxn_forward_run(pf, prompt));
    if (pf) CHECK_OK(mlxn_forward_argmax(pf, &t0));
    mlxn_forward_destroy(pf);
    CHECK_OK(mlxn_forward_create(&f, m, kv, 1, MLXN_MODE_OPTIMIZED, 0));
    if (!f) {
        mlxn_kvcache_destroy(kv);
        return;
    }
    CHECK(mlxn_forward_queue(f, NULL) == MLXN_ERR_STATE, "%s: queue without a token before any run", name);
    CHECK(mlxn_forward_next_argmax(f, &t) == MLXN_ERR_STATE, "%s: next_argmax with nothing queued", name);
    CHECK_OK(mlxn_forward_queue(f, &t0));
    CHECK_OK(mlxn_forward_queue(f, NULL));
    CHECK_OK(mlxn_forward_queue(f, NULL));
    CHECK(mlxn_forward_run(f, &t0) == MLXN_ERR_STATE && mlxn_forward_argmax(f, &t) == MLXN_ERR_STATE,
          "%s: run / argmax beside queued runs", name);
    CHECK_OK(mlxn_forward_next_argmax(f, &t));
    CHECK(t == want[0], "%s: first queued token %d, want %d", name, t, want[0]);
    CHECK_OK(mlxn_forward_cancel(f));
    CHECK(kv->n_past == NP + 1 && mlxn_forward_queued(f) == 0, "%s: after cancel n_past %d (want %d), %d queued",
          name, kv->n_past, NP + 1, mlxn_forward_queued(f));
    CHECK_OK(mlxn_forward_queue(f, &t));
    CHECK_OK(mlxn_forward_next_argmax(f, &t));
    CHECK(t == want[1], "%s: after cancel, token %d, want %d", name, t, want[1]);
    /* a plain run goes on from the queued ones */
    CHECK_OK(mlxn_forward_run(f, &t));
    CHECK_OK(mlxn_forward_argmax(f, &t));
    CHECK(t == want[2] && kv->n_past == NP + 3, "%s: run after the queue: token %d (want %d), n_past %d", name, t,
          want[2], kv->n_past);
    /* at most MLXN_FORWARD_QUEUE runs wait to be read */
    for (int i = 0; i < MLXN_FORWARD_QUEUE; i++) CHECK_OK(mlxn_forward_queue(f, NULL));
    CHECK(mlxn_forward_queue(f, NULL) == MLXN_ERR_STATE, "%s: a queue past %d runs", name, MLXN_FORWARD_QUEUE);
    CHECK_OK(mlxn_forward_next_argmax(f, &t));
    CHECK(t == want[3], "%s: queue after a run: token %d, want %d", name, t, want[3]);
    mlxn_forward_destroy(f); /* with runs still queued */
    mlxn_kvcache_destroy(kv);
    printf("  %-24s pipelined greedy decode: %d of %d tokens as one step at a time; cancel, refusals checked\n", name,
           same, NS);
}

#endif
