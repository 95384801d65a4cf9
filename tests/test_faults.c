/*
 * test_faults.c — allocation failure and concurrency.
 *  - The n-th allocation fails, for n = 1, 2, 3, ... until a whole run
 *    (device, buffers, pool, session, record, optimize, run, replay)
 *    succeeds: every failure must come back as MLXN_ERR_OUT_OF_MEMORY with a
 *    message, leak nothing (the ASan run checks) and leave the library
 *    usable (the next run proceeds).
 *  - Two sessions on one device from two threads give the results each
 *    would give alone.
 */
#include "core/core.h"
#include "mlxn.h"
#include "model/model.h"
#include "testutil.h"

#include <pthread.h>

#define TRY(x)                         \
    do {                               \
        st = (x);                      \
        if (st) goto out;              \
    } while (0)

/* One small decode-like graph; returns the status of the first failure. */
static mlxn_status one_run(float *result) {
    mlxn_status st = MLXN_OK;
    mlxn_device *dev = NULL;
    mlxn_pool *pool = NULL;
    mlxn_session *s = NULL;
    mlxn_buffer *x = NULL, *w = NULL, *h = NULL, *o = NULL, *g = NULL, *v = NULL;
    int64_t xs[2] = {2, 64}, ws[2] = {64, 64}, vs[1] = {64};
    mlxn_device_options opt = {.n_threads = 2};
    TRY(mlxn_device_open(&dev, "cpu", &opt));
    TRY(mlxn_pool_create(&pool, dev));
    TRY(mlxn_pool_take(pool, &x, MLXN_F32, 2, xs));
    TRY(mlxn_pool_take(pool, &h, MLXN_F32, 2, xs));
    TRY(mlxn_pool_take(pool, &o, MLXN_F32, 2, xs));
    TRY(mlxn_pool_take(pool, &g, MLXN_F32, 2, xs));
    TRY(mlxn_buffer_create(&w, dev, MLXN_F32, 2, ws));
    TRY(mlxn_buffer_view(&v, w, MLXN_F32, 1, vs, 0));
    float xv[128], wv[4096];
    for (int i = 0; i < 128; i++) xv[i] = (float)((i * 37) % 19) / 19.0f - 0.5f;
    for (int i = 0; i < 4096; i++) wv[i] = (float)((i * 13) % 23) / 23.0f - 0.5f;
    TRY(mlxn_buffer_write(x, 0, xv, sizeof xv));
    TRY(mlxn_buffer_write(w, 0, wv, sizeof wv));
    TRY(mlxn_session_create(&s, dev, MLXN_MODE_OPTIMIZED, 0));
    for (int l = 0; l < 3; l++) {
        TRY(mlxn_op_rms_norm(s, h, x, NULL, 1e-5f));
        TRY(mlxn_op_mul(s, h, h, v));
        TRY(mlxn_op_matmul(s, g, h, w));
        TRY(mlxn_op_silu(s, o, g));
        TRY(mlxn_op_mul(s, o, o, x));
        TRY(mlxn_op_add(s, x, x, o));
    }
    TRY(mlxn_session_mark_output(s, x));
    TRY(mlxn_session_finish(s));
    TRY(mlxn_session_replay(s));
    TRY(mlxn_buffer_read(x, 0, result, 128 * sizeof(float)));
out:
    mlxn_session_destroy(s);
    mlxn_buffer_destroy(x);
    mlxn_buffer_destroy(h);
    mlxn_buffer_destroy(o);
    mlxn_buffer_destroy(g);
    mlxn_buffer_destroy(v);
    mlxn_buffer_destroy(w);
    mlxn_pool_destroy(pool);
    mlxn_device_close(dev);
    return st;
}

static void test_alloc_failures(void) {
    float want[128], got[128];
    mlxn_test_fail_alloc_after(0);
    CHECK_OK(one_run(want));
    int failures = 0, wrong_status = 0, no_message = 0;
    long n;
    for (n = 1; n < 100000; n++) {
        mlxn_err_clear();
        mlxn_test_fail_alloc_after(n);
        mlxn_status st = one_run(got);
        mlxn_test_fail_alloc_after(0);
        if (st == MLXN_OK) break;
        failures++;
        if (st != MLXN_ERR_OUT_OF_MEMORY) {
            if (wrong_status < 3) fprintf(stderr, "  n=%ld: %s: %s\n", n, mlxn_status_name(st), mlxn_last_error());
            wrong_status++;
        }
        if (!mlxn_last_error()[0]) no_message++;
    }
    CHECK(failures > 10, "the run makes more than 10 allocations (%d failed runs)", failures);
    CHECK(wrong_status == 0, "%d injected failures came back as another status", wrong_status);
    CHECK(no_message == 0, "%d injected failures had no message", no_message);
    CHECK(memcmp(want, got, sizeof want) == 0, "after %ld injected failures a full run gives the same result", n - 1);
    printf("alloc failures: %d injection points, each returned MLXN_ERR_OUT_OF_MEMORY\n", failures);
}

/* Load a tiny model, build a 3-token forward graph, run it, then a decode
 * step by replay. */
static mlxn_status model_run(float *logit0) {
    mlxn_status st = MLXN_OK;
    mlxn_device *dev = NULL;
    mlxn_model *m = NULL;
    mlxn_kvcache *kv = NULL;
    mlxn_forward *f = NULL, *d = NULL;
    mlxn_device_options opt = {.n_threads = 2};
    int32_t toks[3] = {5, 17, 42}, one = 7;
    TRY(mlxn_device_open(&dev, "cpu", &opt));
    TRY(mlxn_model_load(&m, dev, "tests/data/models/llama"));
    TRY(mlxn_kvcache_create(&kv, m, 8, MLXN_F16));
    TRY(mlxn_forward_create(&f, m, kv, 3, MLXN_MODE_OPTIMIZED, 0));
    TRY(mlxn_forward_create(&d, m, kv, 1, MLXN_MODE_OPTIMIZED, 0));
    TRY(mlxn_forward_run(f, toks));
    TRY(mlxn_forward_run(d, &one));
    TRY(mlxn_forward_run(d, &one));
    int V = m->cfg.vocab;
    float *lg = mlxn_malloc((size_t)V * sizeof(float));
    if (!lg) {
        st = mlxn_err(MLXN_ERR_OUT_OF_MEMORY, "test: logits");
        goto out;
    }
    st = mlxn_forward_logits(d, lg, (size_t)V);
    *logit0 = lg[0];
    mlxn_free(lg);
out:
    mlxn_forward_destroy(f);
    mlxn_forward_destroy(d);
    mlxn_kvcache_destroy(kv);
    mlxn_model_destroy(m);
    mlxn_device_close(dev);
    return st;
}

static void test_model_alloc_failures(void) {
    float want = 0, got = 0;
    mlxn_test_fail_alloc_after(0);
    CHECK_OK(model_run(&want));
    int failures = 0, wrong = 0;
    long n;
    for (n = 1; n < 5000; n++) {
        mlxn_err_clear();
        mlxn_test_fail_alloc_after(n);
        mlxn_status st = model_run(&got);
        mlxn_test_fail_alloc_after(0);
        if (st == MLXN_OK) break;
        failures++;
        if (st != MLXN_ERR_OUT_OF_MEMORY || !mlxn_last_error()[0]) {
            if (wrong < 3) fprintf(stderr, "  n=%ld: %s: %s\n", n, mlxn_status_name(st), mlxn_last_error());
            wrong++;
        }
    }
    CHECK(failures > 50, "model load + graphs make more than 50 allocations (%d)", failures);
    CHECK(wrong == 0, "%d injected failures in model load/graph came back otherwise", wrong);
    CHECK(got == want, "after %d injected failures the model gives the same logit (%g vs %g)", failures,
          (double)got, (double)want);
    printf("model alloc failures: %d injection points (load, cache, record, run, replay)\n", failures);
}

typedef struct thread_arg {
    mlxn_device *dev;
    int seed;
    int bad;
} thread_arg;

static void *session_thread(void *p) {
    thread_arg *a = p;
    int64_t sh[2] = {4, 256};
    mlxn_buffer *x = NULL, *y = NULL;
    if (mlxn_buffer_create(&x, a->dev, MLXN_F32, 2, sh) || mlxn_buffer_create(&y, a->dev, MLXN_F32, 2, sh)) {
        a->bad++;
        return NULL;
    }
    float in[1024], out[1024];
    for (int it = 0; it < 300; it++) {
        for (int i = 0; i < 1024; i++) in[i] = (float)((i + it * 7 + a->seed * 131) % 29) * 0.1f - 1.4f;
        mlxn_session *s = NULL;
        mlxn_status st = mlxn_session_create(&s, a->dev, it % 2 ? MLXN_MODE_OPTIMIZED : MLXN_MODE_BATCHED, 0);
        if (!st) st = mlxn_buffer_write(x, 0, in, sizeof in);
        if (!st) st = mlxn_op_scale(s, y, x, 3.0f);
        if (!st) st = mlxn_op_add(s, y, y, x);
        if (!st) st = mlxn_session_finish(s);
        if (!st) st = mlxn_buffer_read(y, 0, out, sizeof out);
        mlxn_session_destroy(s);
        if (st) { a->bad++; continue; }
        for (int i = 0; i < 1024; i++)
            if (out[i] != in[i] * 3.0f + in[i]) { a->bad++; break; }
    }
    mlxn_buffer_destroy(x);
    mlxn_buffer_destroy(y);
    return NULL;
}

static void test_two_threads(void) {
    mlxn_device *dev;
    mlxn_device_options opt = {.n_threads = 2};
    CHECK_OK(mlxn_device_open(&dev, "cpu", &opt));
    thread_arg a[2] = {{dev, 1, 0}, {dev, 2, 0}};
    pthread_t t[2];
    for (int i = 0; i < 2; i++) pthread_create(&t[i], NULL, session_thread, &a[i]);
    for (int i = 0; i < 2; i++) pthread_join(t[i], NULL);
    CHECK(a[0].bad == 0 && a[1].bad == 0, "two sessions on two threads: %d and %d wrong runs of 300", a[0].bad, a[1].bad);
    mlxn_device_close(dev);
}

int main(void) {
    test_alloc_failures();
    test_model_alloc_failures();
    test_two_threads();
    return test_summary("test_faults");
}
