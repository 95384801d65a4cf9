/*
 * test_long_run.c — decoding far past the context with a ring KV cache.
 *
 * A tiny Llama (tests/data/models/llama) decodes 400 tokens one at a time
 * through a ring cache of 16 rows. Reference: the same model on a linear
 * cache of 400 rows with a 16-token sliding window — the same keys in the
 * same order, so the logits must be equal bit for bit at every step. Also:
 * device memory stays flat after the first steps, every logit is finite,
 * and a multi-token chunk into a full ring is refused with a message.
 */
#include "model/model.h"
#include "testutil.h"

#define MODEL "tests/data/models/llama"
enum { RING = 16, STEPS = 400 };

int main(void) {
    mlxn_device *dev = NULL;
    mlxn_device_options o = {.n_threads = 2};
    CHECK_OK(mlxn_device_open(&dev, "cpu", &o));
    mlxn_model *ring_m = NULL, *win_m = NULL;
    CHECK_OK(mlxn_model_load(&ring_m, dev, MODEL));
    CHECK_OK(mlxn_model_load(&win_m, dev, MODEL));
    if (!ring_m || !win_m) return test_summary("test_long_run");
    win_m->cfg.sliding_window = RING;
    mlxn_kvcache *kr = NULL, *kl = NULL;
    CHECK_OK(mlxn_kvcache_create(&kr, ring_m, RING, MLXN_F32));
    CHECK_OK(mlxn_kvcache_create(&kl, win_m, STEPS, MLXN_F32));
    kr->ring = true;
    mlxn_forward *fr = NULL, *fl = NULL;
    CHECK_OK(mlxn_forward_create(&fr, ring_m, kr, 1, MLXN_MODE_OPTIMIZED, 0));
    CHECK_OK(mlxn_forward_create(&fl, win_m, kl, 1, MLXN_MODE_OPTIMIZED, 0));
    int V = ring_m->cfg.vocab;
    float *a = malloc((size_t)V * 4), *b = malloc((size_t)V * 4);
    int differ = 0, nonfinite = 0;
    size_t mem_early = 0;
    for (int step = 0; step < STEPS; step++) {
        int32_t tok = (int32_t)(rng_u64() % (uint64_t)V);
        CHECK_OK(mlxn_forward_run(fr, &tok));
        CHECK_OK(mlxn_forward_run(fl, &tok));
        CHECK_OK(mlxn_forward_logits(fr, a, (size_t)V));
        CHECK_OK(mlxn_forward_logits(fl, b, (size_t)V));
        for (int i = 0; i < V; i++) nonfinite += !isfinite(a[i]);
        if (memcmp(a, b, (size_t)V * 4)) {
            if (differ < 3) fprintf(stderr, "  step %d: ring logits differ from the windowed reference\n", step);
            differ++;
        }
        if (step == 20) mem_early = mlxn_device_memory_in_use(dev);
    }
    CHECK(differ == 0, "ring cache of %d equals a %d-token sliding window: %d of %d steps differ", RING, RING,
          differ, STEPS);
    CHECK(nonfinite == 0, "%d non-finite logits over %d steps", nonfinite, STEPS);
    CHECK(mlxn_device_memory_in_use(dev) == mem_early, "device memory flat: %zu bytes at step 20, %zu at %d",
          mem_early, mlxn_device_memory_in_use(dev), STEPS);
    CHECK(kr->n_past == STEPS, "positions kept growing past the ring (%d)", kr->n_past);
    CHECK_STATUS(mlxn_kvcache_reserve(kr, 4, "test"), MLXN_ERR_RANGE);
    kl->n_past = STEPS;
    CHECK_STATUS(mlxn_kvcache_reserve(kl, 1, "test"), MLXN_ERR_RANGE); /* a full linear cache refuses */
    free(a);
    free(b);
    mlxn_forward_destroy(fr);
    mlxn_forward_destroy(fl);
    mlxn_kvcache_destroy(kr);
    mlxn_kvcache_destroy(kl);
    mlxn_model_destroy(ring_m);
    mlxn_model_destroy(win_m);
    mlxn_device_close(dev);
    return test_summary("test_long_run");
}
