/*
 * test_synthetic.c — the counter-based random fills (core/fill.h) that make
 * synthetic models' weights, on the host and on the CPU device, and the
 * synthetic models built from them.
 *
 *  - mlxn_fill_hash is splitmix64 (the published outputs for seed 1234567);
 *    a fill is a pure function of (seed, index): any slice made alone equals
 *    the same slice of the whole, twice the same bytes.
 *  - the CPU backend's threaded fill equals mlxn_fill_host byte for byte.
 *  - dequantized synthetic linears at every bit width: codes uniform over
 *    [0, 2^bits) (chi-square), mean ~0 and variance within 3% of the value
 *    derived from the fill ranges; norms in [0.9, 1.1); nothing all zero.
 *  - synthetic:tiny loads with every byte made on the device (no copies),
 *    its tensors differ from each other, a forward pass gives finite logits
 *    of a sane size; bad specs and bad fills fail with a status and message.
 *  - scripts/gen_synth_gguf.py (the random-weight GGUF files for comparing
 *    against other tools): its tiny shape in every block type loads with
 *    the shape's hyper-parameters, tensors of that type and the vocabulary,
 *    and runs a forward pass to finite logits of a sane size.
 */
#include "core/object.h"
#include "model/model.h"
#include "model/tokenizer.h"
#include "ops/quant.h"
#include "testutil.h"

#include <unistd.h>

static const int k_bits[] = {2, 3, 4, 5, 6, 8};
#define N_BITS (int)(sizeof k_bits / sizeof k_bits[0])

/* Code j of a row of MLX-packed words (little-endian bit stream). */
static unsigned code_at(const uint32_t *row, int64_t j, int bits) {
    uint64_t bit = (uint64_t)j * (uint64_t)bits;
    uint64_t w = row[bit / 32];
    if (bit % 32 + (uint64_t)bits > 32) w |= (uint64_t)row[bit / 32 + 1] << 32;
    return (unsigned)(w >> (bit % 32)) & ((1u << bits) - 1);
}

static void test_hash(void) {
    /* splitmix64 from seed 1234567 (reference outputs of the generator) */
    static const uint64_t want[5] = {6457827717110365317ull, 3203168211198807973ull, 9817491932198370423ull,
                                     4593380528125082431ull, 16408922859458223821ull};
    int bad = 0;
    for (int i = 0; i < 5; i++) bad += mlxn_fill_hash(1234567, (uint64_t)i) != want[i];
    CHECK(!bad, "mlxn_fill_hash(1234567, 0..4) is splitmix64's sequence (%d differ)", bad);
}

/* Whole fill vs slices made alone, and a second run, for each kind. */
static void test_pure(void) {
    const size_t n = 10007;
    const mlxn_fill fills[3] = {{MLXN_FILL_BITS, 42, 0, 0, 0},
                                {MLXN_FILL_BF16, 43, 0.01f, 0.02f, 0},
                                {MLXN_FILL_F32, 44, -1.0f, 2.0f, 0}};
    for (int k = 0; k < 3; k++) {
        size_t eb = mlxn_fill_elem_bytes(fills[k].kind);
        uint8_t *a = malloc(n * eb), *b = malloc(n * eb), *c = malloc(n * eb);
        mlxn_fill_host(a, &fills[k], 0, n);
        mlxn_fill_host(b, &fills[k], 0, n);
        CHECK(!memcmp(a, b, n * eb), "fill kind %d: two runs give the same bytes", (int)fills[k].kind);
        /* slices of odd lengths at odd starts */
        for (size_t at = 0, len = 1; at < n; at += len, len = len * 3 + 1) {
            size_t m = at + len > n ? n - at : len;
            mlxn_fill_host(c + at * eb, &fills[k], at, m);
        }
        CHECK(!memcmp(a, c, n * eb), "fill kind %d: slices made alone equal the whole", (int)fills[k].kind);
        mlxn_fill other = fills[k];
        other.seed++;
        mlxn_fill_host(b, &other, 0, n);
        size_t same = 0;
        for (size_t i = 0; i < n; i++) same += !memcmp(a + i * eb, b + i * eb, eb);
        /* chance agreement: 2^-32 for words; bf16/f32 of a narrow range share more */
        CHECK(same < n / 20, "fill kind %d: seed+1 gives other values (%zu of %zu elements equal)",
              (int)fills[k].kind, same, n);
        free(a);
        free(b);
        free(c);
    }
    /* float fills stay in [lo, lo + span] (bf16 rounding may reach the end) */
    const mlxn_fill *f = &fills[2];
    float lo = 1e9f, hi = -1e9f;
    for (size_t i = 0; i < 100000; i++) {
        float v = mlxn_fill_f32(f, i);
        lo = v < lo ? v : lo;
        hi = v > hi ? v : hi;
    }
    CHECK(lo >= -1.0f && hi < 1.0f && lo < -0.999f && hi > 0.999f, "f32 fill in [-1, 1): min %g max %g",
          (double)lo, (double)hi);
}

/* The CPU device's fill (threaded above 64k elements) equals the host's. */
static void test_cpu_device(void) {
    mlxn_device *dev = NULL;
    mlxn_device_options o = {.n_threads = 3};
    CHECK_OK(mlxn_device_open(&dev, "cpu", &o));
    if (!dev) return;
    const int64_t sizes[] = {1, 3, 65535, 65536 * 4 + 7, 1000003};
    for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
        for (int k = MLXN_FILL_BITS; k <= MLXN_FILL_F32; k++) {
            mlxn_fill f = {(mlxn_fill_kind)k, 1000 + (uint64_t)s, 0.25f, 0.5f, 0};
            mlxn_dtype dt = k == MLXN_FILL_BF16 ? MLXN_BF16 : k == MLXN_FILL_F32 ? MLXN_F32 : MLXN_U32;
            mlxn_buffer *b = NULL;
            CHECK_OK(mlxn_buffer_create_filled(&b, dev, dt, 1, &sizes[s], &f));
            if (!b) continue;
            size_t nb = mlxn_buffer_nbytes(b);
            uint8_t *got = malloc(nb), *want = malloc(nb);
            CHECK_OK(mlxn_buffer_read(b, 0, got, nb));
            mlxn_fill_host(want, &f, 0, (size_t)sizes[s]);
            size_t i = 0;
            while (i < nb && got[i] == want[i]) i++;
            CHECK(i == nb, "cpu device fill kind %d, %lld elements: byte %zu differs", k, (long long)sizes[s], i);
            /* made read-only like adopted weights */
            CHECK_STATUS(mlxn_buffer_fill(b, 0, &f, 0), MLXN_ERR_STATE);
            free(got);
            free(want);
            mlxn_buffer_destroy(b);
        }
    }
    /* a fill at an offset inside a larger buffer writes only its range */
    int64_t n = 300000;
    mlxn_buffer *b = NULL;
    CHECK_OK(mlxn_buffer_create(&b, dev, MLXN_U32, 1, &n));
    if (b) {
        uint32_t *p = malloc((size_t)n * 4), *want = malloc(200000 * 4);
        memset(p, 0xab, (size_t)n * 4);
        CHECK_OK(mlxn_buffer_write(b, 0, p, (size_t)n * 4));
        mlxn_fill f = {MLXN_FILL_BITS, 7, 0, 0, 0};
        CHECK_OK(mlxn_buffer_fill(b, 4 * 50000, &f, 4 * 200000));
        CHECK_OK(mlxn_buffer_read(b, 0, p, (size_t)n * 4));
        mlxn_fill_host(want, &f, 0, 200000);
        int untouched = 1;
        for (int64_t i = 0; i < n; i++)
            if ((i < 50000 || i >= 250000) && p[i] != 0xababababu) untouched = 0;
        CHECK(untouched && !memcmp(p + 50000, want, 200000 * 4), "fill at offset 50000: range made, rest untouched");
        /* bad fills: status and message, nothing written */
        mlxn_fill bad = {(mlxn_fill_kind)9, 1, 0, 0, 0};
        CHECK_STATUS(mlxn_buffer_fill(b, 0, &bad, 4), MLXN_ERR_INVALID_ARG);
        mlxn_fill none = {MLXN_FILL_NONE, 1, 0, 0, 0};
        CHECK_STATUS(mlxn_buffer_fill(b, 0, &none, 4), MLXN_ERR_INVALID_ARG);
        mlxn_fill bf = {MLXN_FILL_BF16, 1, 0, 1, 0};
        CHECK_STATUS(mlxn_buffer_fill(b, 0, &bf, 4), MLXN_ERR_DTYPE);
        CHECK_STATUS(mlxn_buffer_fill(b, 2, &f, 4), MLXN_ERR_INVALID_ARG);
        CHECK_STATUS(mlxn_buffer_fill(b, 0, &f, 6), MLXN_ERR_INVALID_ARG);
        CHECK_STATUS(mlxn_buffer_fill(b, (size_t)n * 4 - 4, &f, 8), MLXN_ERR_RANGE);
        CHECK_STATUS(mlxn_buffer_fill(b, 0, NULL, 4), MLXN_ERR_INVALID_ARG);
        CHECK_STATUS(mlxn_buffer_fill(NULL, 0, &f, 4), MLXN_ERR_INVALID_ARG);
        mlxn_buffer *nb = NULL;
        CHECK_STATUS(mlxn_buffer_create_filled(&nb, dev, MLXN_F32, 1, &n, &bf), MLXN_ERR_DTYPE);
        CHECK(nb == NULL, "create_filled failure leaves *out NULL");
        free(p);
        free(want);
        mlxn_buffer_destroy(b);
    }
    mlxn_device_close(dev);
}

/* A synthetic linear [N, K] at `bits` / `group`, dequantized from its fills. */
static void test_distribution(void) {
    const int64_t N = 64, K = 4096, group = 64, G = K / group;
    printf("  dequantized synthetic [%lld, %lld] g%lld: mean·sqrt(K), var·K (derived), codes chi-square\n",
           (long long)N, (long long)K, (long long)group);
    for (int bi = 0; bi < N_BITS; bi++) {
        int bits = k_bits[bi];
        int64_t wpr = K * bits / 32; /* words per row */
        mlxn_fill fw = mlxn_synthetic_fill("model.layers.3.mlp.down_proj", "weight", K, bits);
        mlxn_fill fs = mlxn_synthetic_fill("model.layers.3.mlp.down_proj", "scales", K, bits);
        mlxn_fill fb = mlxn_synthetic_fill("model.layers.3.mlp.down_proj", "biases", K, bits);
        CHECK(fw.kind == MLXN_FILL_BITS && fs.kind == MLXN_FILL_BF16 && fb.kind == MLXN_FILL_BF16,
              "q%d: weight/scales/biases fills are bits/bf16/bf16", bits);
        uint32_t *w = malloc((size_t)(N * wpr) * 4);
        uint16_t *sc = malloc((size_t)(N * G) * 2), *bs = malloc((size_t)(N * G) * 2);
        mlxn_fill_host(w, &fw, 0, (size_t)(N * wpr));
        mlxn_fill_host(sc, &fs, 0, (size_t)(N * G));
        mlxn_fill_host(bs, &fb, 0, (size_t)(N * G));
        int L = 1 << bits;
        int64_t *hist = calloc((size_t)L, sizeof *hist);
        double sum = 0, sum2 = 0, smin = 1e9, smax = -1e9, bmin = 1e9, bmax = -1e9;
        for (int64_t n = 0; n < N; n++)
            for (int64_t k = 0; k < K; k++) {
                unsigned q = code_at(w + n * wpr, k, bits);
                hist[q]++;
                double s = (double)mlxn_bf16_to_f32(sc[n * G + k / group]);
                double b = (double)mlxn_bf16_to_f32(bs[n * G + k / group]);
                double v = s * q + b;
                sum += v;
                sum2 += v * v;
                smin = s < smin ? s : smin, smax = s > smax ? s : smax;
                bmin = b < bmin ? b : bmin, bmax = b > bmax ? b : bmax;
            }
        double cnt = (double)(N * K), mean = sum / cnt, var = sum2 / cnt - mean * mean;
        /* w/r = a·sq·q - c, a, c ~ U[0.5, 1), q ~ U{0..L-1}, sq = 2/(L-1), r = 1/sqrt(K):
         * E[(w/r)^2] = E[a²]·sq²·E[q²] - 2·E[a]·E[c]·sq·E[q] + E[c²], mean 0 */
        double sq = 2.0 / (L - 1), Eq = (L - 1) / 2.0, Eq2 = (L - 1) * (2.0 * L - 1) / 6.0;
        double Ea = 0.75, Ea2 = 7.0 / 12.0;
        double want = Ea2 * sq * sq * Eq2 - 2 * Ea * Ea * sq * Eq + Ea2;
        double r = 1.0 / sqrt((double)K);
        double chi = 0, e = cnt / L;
        int64_t hmin = INT64_MAX;
        for (int q = 0; q < L; q++) {
            chi += (hist[q] - e) * (hist[q] - e) / e;
            hmin = hist[q] < hmin ? hist[q] : hmin;
        }
        /* chi-square with L-1 degrees of freedom: mean L-1, sd sqrt(2(L-1)) */
        double chi_bound = (L - 1) + 6 * sqrt(2.0 * (L - 1));
        printf("    q%d: mean %+.4f, var %.4f (want %.4f), chi2 %.1f (bound %.1f), scale [%.3g, %.3g], bias [%.3g, %.3g]·r\n",
               bits, mean / r, var / (r * r), want, chi, chi_bound, smin / (sq * r), smax / (sq * r), bmin / r, bmax / r);
        CHECK(fabs(mean / r) < 0.02, "q%d: mean of dequantized weights %.4g/sqrt(K), want ~0", bits, mean / r);
        CHECK(fabs(var / (r * r) / want - 1) < 0.03, "q%d: variance %.4f/K, derived %.4f/K", bits, var / (r * r), want);
        CHECK(hmin > 0 && chi < chi_bound, "q%d: codes uniform over [0, %d): chi2 %.1f, rarest code %lld times", bits,
              L, chi, (long long)hmin);
        /* scales in sq·r·[0.5, 1], biases in r·[-1, -0.5], each end widened by
         * bf16's rounding (relative 2^-9, and the f32 range ends' own) */
        const double lo = 1 - 1.0 / 256, hi = 1 + 1.0 / 256;
        CHECK(smin >= 0.5 * lo * sq * r && smax <= hi * sq * r && smin < 0.51 * sq * r && smax > 0.99 * sq * r,
              "q%d: scales span sq·r·[%.4f, %.4f]", bits, smin / (sq * r), smax / (sq * r));
        CHECK(bmin >= -hi * r && bmax <= -0.5 * lo * r && bmin < -0.99 * r && bmax > -0.51 * r,
              "q%d: biases span r·[%.4f, %.4f]", bits, bmin / r, bmax / r);
        free(hist);
        free(w);
        free(sc);
        free(bs);
    }
    mlxn_fill fn = mlxn_synthetic_fill("model.norm", "weight", 0, 0);
    CHECK(fn.kind == MLXN_FILL_F32, "norm weight: an f32 fill");
    float v[4096];
    mlxn_fill_host(v, &fn, 0, 4096);
    double mn = 9, mx = -9, s = 0;
    for (int i = 0; i < 4096; i++) {
        double x = (double)v[i];
        mn = x < mn ? x : mn;
        mx = x > mx ? x : mx;
        s += x;
    }
    CHECK(mn >= 0.9 && mx < 1.1 && fabs(s / 4096 - 1.0) < 0.01, "norm weights in [0.9, 1.1): [%g, %g], mean %g", mn,
          mx, s / 4096);
    CHECK(mlxn_synthetic_fill("model.norm", "bias", 0, 0).kind == MLXN_FILL_NONE &&
              mlxn_synthetic_fill(NULL, "weight", 0, 0).kind == MLXN_FILL_NONE &&
              mlxn_synthetic_fill("x.q_proj", "scales", 64, 9).kind == MLXN_FILL_NONE,
          "no fill for an unknown part, NULL module or bits > 8");
}

/* Bytes of a (possibly view) buffer. */
static uint8_t *read_all(const mlxn_buffer *b, size_t *n) {
    *n = mlxn_buffer_nbytes(b);
    uint8_t *p = malloc(*n);
    CHECK_OK(mlxn_buffer_read(b, 0, p, *n));
    return p;
}

static double frac_equal_words(const mlxn_buffer *a, const mlxn_buffer *b) {
    size_t na, nb;
    uint8_t *pa = read_all(a, &na), *pb = read_all(b, &nb);
    size_t n = (na < nb ? na : nb) / 4, same = 0;
    for (size_t i = 0; i < n; i++) same += !memcmp(pa + 4 * i, pb + 4 * i, 4);
    free(pa);
    free(pb);
    return n ? (double)same / (double)n : 1.0;
}

/* A forward pass of m over a 4-token prompt: finite logits whose size
 * neither vanishes nor explodes. */
static void check_forward(mlxn_model *m, const char *spec) {
    mlxn_kvcache *kv = NULL;
    mlxn_forward *f = NULL;
    CHECK_OK(mlxn_kvcache_create(&kv, m, 8, MLXN_F32));
    CHECK_OK(mlxn_forward_create(&f, m, kv, 4, MLXN_MODE_OPTIMIZED, 0));
    int32_t prompt[4] = {1, 50, 100, 200};
    float *lg = malloc((size_t)m->cfg.vocab * sizeof *lg);
    if (f) {
        CHECK_OK(mlxn_forward_run(f, prompt));
        CHECK_OK(mlxn_forward_logits(f, lg, (size_t)m->cfg.vocab));
        double s2 = 0;
        int finite = 1;
        for (int i = 0; i < m->cfg.vocab; i++) {
            finite &= isfinite(lg[i]) != 0;
            s2 += (double)lg[i] * (double)lg[i];
        }
        double rms = sqrt(s2 / m->cfg.vocab);
        printf("  %s: logits rms %.3f\n", spec, rms);
        CHECK(finite && rms > 0.05 && rms < 20, "%s: logits finite, rms %.3g in (0.05, 20)", spec, rms);
    }
    free(lg);
    mlxn_forward_destroy(f);
    mlxn_kvcache_destroy(kv);
}

static void test_model(void) {
    mlxn_device *dev = NULL;
    CHECK_OK(mlxn_device_open(&dev, "cpu", NULL));
    if (!dev) return;
    for (int bi = 0; bi < N_BITS; bi++) {
        char spec[64];
        snprintf(spec, sizeof spec, "synthetic:tiny:q%d:g32", k_bits[bi]);
        mlxn_model *m = NULL;
        CHECK_OK(mlxn_model_load(&m, dev, spec));
        if (!m) continue;
        CHECK(m->weight_bytes > 0 && m->weight_fill_bytes == m->weight_bytes && m->weight_copy_bytes == 0,
              "%s: all %zu weight bytes made on the device (filled %zu, copied %zu)", spec, m->weight_bytes,
              m->weight_fill_bytes, m->weight_copy_bytes);
        /* every weight tensor nonzero; distinct tensors distinct */
        const mlxn_buffer *ts[] = {m->embed.w, m->embed.scales, m->out_norm,   m->L[0].wq.w,   m->L[0].wk.w,
                                   m->L[0].wv.w, m->L[0].wo.w, m->L[0].gate.w, m->L[0].up.w,   m->L[0].down.w,
                                   m->L[1].down.w, m->L[0].attn_norm, m->L[1].attn_norm, m->L[0].down.biases};
        int zero = 0;
        for (size_t i = 0; i < sizeof ts / sizeof ts[0]; i++) {
            size_t n;
            uint8_t *p = read_all(ts[i], &n);
            size_t nz = 0;
            for (size_t j = 0; j < n; j++) nz += p[j] != 0;
            zero += nz < n / 2; /* random bytes: ~255/256 nonzero */
            free(p);
        }
        CHECK(!zero, "%s: every weight tensor mostly nonzero bytes (%d are not)", spec, zero);
        double f1 = frac_equal_words(m->L[0].wq.w, m->L[0].wk.w), f2 = frac_equal_words(m->L[0].down.w, m->L[1].down.w),
               f3 = frac_equal_words(m->L[0].attn_norm, m->L[1].attn_norm),
               f4 = frac_equal_words(m->L[0].wo.scales, m->L[1].wo.scales);
        CHECK(f1 < 0.01 && f2 < 0.01 && f3 < 0.01 && f4 < 0.05,
              "%s: tensors differ per seed (equal words: q/k %.3f, down 0/1 %.3f, norm 0/1 %.3f, o scales 0/1 %.3f)",
              spec, f1, f2, f3, f4);
        check_forward(m, spec);
        mlxn_model_destroy(m);
    }
    /* the same spec twice: the same bytes */
    mlxn_model *a = NULL, *b = NULL;
    CHECK_OK(mlxn_model_load(&a, dev, "synthetic:tiny"));
    CHECK_OK(mlxn_model_load(&b, dev, "synthetic:tiny"));
    if (a && b) {
        CHECK(frac_equal_words(a->L[1].gate_up.w, b->L[1].gate_up.w) == 1.0 &&
                  frac_equal_words(a->embed.biases, b->embed.biases) == 1.0,
              "synthetic:tiny loaded twice: equal weights");
    }
    mlxn_model_destroy(a);
    mlxn_model_destroy(b);
    /* bad specs */
    mlxn_model *m = NULL;
    CHECK_STATUS(mlxn_model_load(&m, dev, "synthetic:nope"), MLXN_ERR_NOT_FOUND);
    CHECK_STATUS(mlxn_model_load(&m, dev, "synthetic:tiny:q7"), MLXN_ERR_UNSUPPORTED);
    CHECK_STATUS(mlxn_model_load(&m, dev, "synthetic:tiny:g48"), MLXN_ERR_UNSUPPORTED);
    CHECK_STATUS(mlxn_model_load(&m, dev, "synthetic:tiny:x1"), MLXN_ERR_INVALID_ARG);
    CHECK(m == NULL, "failed loads leave the model NULL");
    mlxn_device_close(dev);
}

/* GGML block fills: the f16 scale conversion against the library's; the
 * bytes pure in (seed, index); the CPU device's equal to the host's; and
 * synthetic:llama-2k:<type> for every type the fill makes: all weight bytes
 * made on the device, the linears of that type with weights around zero
 * (|mean| < 0.15 sd, sd within 0.3x..3x of 1/sqrt(K)), finite logits of a
 * sane size; a model whose K is no whole number of blocks fails. */
static void test_ggml(void) {
    int bad = 0;
    for (int i = -400; i <= 400; i++) {
        float v = (float)i * 0.37f * ldexpf(1.0f, i / 20 - 6);
        if (mlxn_fill_f2h(v) != mlxn_f32_to_f16(v)) bad++;
    }
    for (uint32_t k = 0; k < 100000; k++) { /* f16 subnormals and the normal range's start */
        float v = ldexpf((float)(k + 1), -34) * 1.37f;
        if (mlxn_fill_f2h(v) != mlxn_f32_to_f16(v)) bad++;
    }
    CHECK(!bad, "mlxn_fill_f2h equals mlxn_f32_to_f16 (%d values differ)", bad);
    const mlxn_dtype ts[6] = {MLXN_Q4_0, MLXN_Q4_1, MLXN_Q8_0, MLXN_Q4_K, MLXN_Q5_K, MLXN_Q6_K};
    const char *names[6] = {"q4_0", "q4_1", "q8_0", "q4_k", "q5_k", "q6_k"};
    mlxn_device *dev = NULL;
    mlxn_device_options o = {.n_threads = 3};
    CHECK_OK(mlxn_device_open(&dev, "cpu", &o));
    if (!dev) return;
    for (int k = 0; k < 6; k++) {
        mlxn_fill f = {MLXN_FILL_GGML, 77 + (uint64_t)k, 0.001f, 0.001f, (int)ts[k]};
        const size_t n = 100 * mlxn_dtype_block_bytes(ts[k]) + 0;
        uint8_t *a = malloc(n), *b = malloc(n);
        mlxn_fill_host(a, &f, 0, n);
        for (size_t at = 0, len = 1; at < n; at += len, len = len * 3 + 1)
            mlxn_fill_host(b + at, &f, at, at + len > n ? n - at : len);
        CHECK(!memcmp(a, b, n), "%s fill: slices made alone equal the whole", names[k]);
        int64_t elems = 1000 * (int64_t)mlxn_dtype_block_elems(ts[k]);
        mlxn_buffer *buf = NULL;
        CHECK_OK(mlxn_buffer_create_filled(&buf, dev, ts[k], 1, &elems, &f));
        if (buf) {
            size_t nb = mlxn_buffer_nbytes(buf);
            uint8_t *got = malloc(nb), *want = malloc(nb);
            CHECK_OK(mlxn_buffer_read(buf, 0, got, nb));
            mlxn_fill_host(want, &f, 0, nb);
            CHECK(!memcmp(got, want, nb), "%s: the cpu device's fill equals the host's", names[k]);
            free(got);
            free(want);
            mlxn_buffer_destroy(buf);
        }
        free(a);
        free(b);
        char spec[64];
        snprintf(spec, sizeof spec, "synthetic:llama-2k:%s", names[k]);
        mlxn_model *m = NULL;
        CHECK_OK(mlxn_model_load(&m, dev, spec));
        if (!m) continue;
        CHECK(m->weight_fill_bytes == m->weight_bytes && m->weight_copy_bytes == 0,
              "%s: all weight bytes made on the device", spec);
        const mlxn_buffer *lw[3] = {m->L[0].wq.w, m->L[1].down.w, m->embed.w};
        for (int i = 0; i < 3; i++) {
            if (!lw[i]) {
                CHECK(0, "%s: linear %d missing", spec, i);
                continue;
            }
            const mlxn_tensor *t = &lw[i]->t;
            CHECK(t->dtype == ts[k], "%s: linear %d is %s", spec, i, mlxn_dtype_name(t->dtype));
            mlxn_qmat q = {0};
            q.kind = MLXN_QKIND_GGML;
            q.N = t->shape[0];
            q.K = t->shape[1];
            size_t nb;
            uint8_t *wb = read_all(lw[i], &nb);
            q.w = wb;
            q.row_bytes = nb / (size_t)q.N;
            q.wtype = t->dtype;
            float *row = malloc((size_t)q.K * sizeof *row);
            double s1 = 0, s2 = 0;
            int64_t rows = q.N < 64 ? q.N : 64, cnt = 0;
            for (int64_t r = 0; r < rows; r++) {
                mlxn_qmat_dequant_row(&q, r, 0, q.K, row);
                for (int64_t j = 0; j < q.K; j++) s1 += (double)row[j], s2 += (double)row[j] * (double)row[j], cnt++;
            }
            double mean = s1 / (double)cnt, sd = sqrt(s2 / (double)cnt - mean * mean), rr = 1.0 / sqrt((double)q.K);
            /* |mean| < 0.15 sd: q4_0's codes q - 8 span [-8, 7], so its
             * weights lean -0.5 d = ~0.11 sd; the others centre on 0 */
            CHECK(fabs(mean) < 0.15 * sd && sd > 0.3 * rr && sd < 3 * rr,
                  "%s: linear %d weights mean %.3g sd %.3g (1/sqrt(K) %.3g)", spec, i, mean, sd, rr);
            free(row);
            free(wb);
        }
        check_forward(m, spec);
        mlxn_model_destroy(m);
    }
    mlxn_model *m = NULL;
    CHECK_STATUS(mlxn_model_load(&m, dev, "synthetic:tiny:q4_k"), MLXN_ERR_SHAPE);
    CHECK(m == NULL, "a failed load leaves the model NULL");
    mlxn_device_close(dev);
}

/* Every allocation of a synthetic load failed in turn: out-of-memory with a
 * message each time, nothing leaked (ASan build), then the same weights. */
static void test_load_failures(void) {
    mlxn_device *dev = NULL;
    mlxn_device_options o = {.n_threads = 2};
    CHECK_OK(mlxn_device_open(&dev, "cpu", &o));
    if (!dev) return;
    mlxn_model *ref = NULL, *m = NULL;
    CHECK_OK(mlxn_model_load(&ref, dev, "synthetic:tiny:q3:g32"));
    int failures = 0, wrong = 0;
    for (long n = 1; n < 2000; n++) {
        mlxn_err_clear();
        mlxn_test_fail_alloc_after(n);
        mlxn_status st = mlxn_model_load(&m, dev, "synthetic:tiny:q3:g32");
        mlxn_test_fail_alloc_after(0);
        if (st == MLXN_OK) break;
        failures++;
        if (st != MLXN_ERR_OUT_OF_MEMORY || !mlxn_last_error()[0] || m) {
            if (wrong < 3) fprintf(stderr, "  n=%ld: %s: %s\n", n, mlxn_status_name(st), mlxn_last_error());
            wrong++;
        }
    }
    CHECK(failures > 20 && !wrong, "synthetic load: %d injected allocation failures, %d not out-of-memory", failures,
          wrong);
    if (ref && m)
        CHECK(frac_equal_words(ref->L[1].down.w, m->L[1].down.w) == 1.0 &&
                  frac_equal_words(ref->L[0].qkv.scales, m->L[0].qkv.scales) == 1.0,
              "after the injected failures the load gives the same weights");
    mlxn_model_destroy(m);
    mlxn_model_destroy(ref);
    mlxn_device_close(dev);
}

/* synthetic:smollm2-135m has the default model's shape: its config against
 * the GGUF's (models/, from scripts/get-model.sh; that part skipped, saying
 * so, where the file is absent), both in q4_1 and MLX 4-bit; q4_k cannot
 * tile K = 576 and says so. */
static void test_smollm2_shape(void) {
    const char *gguf = "models/SmolLM2-135M-Instruct.Q4_1.gguf";
    mlxn_device *dev = NULL;
    CHECK_OK(mlxn_device_open(&dev, "cpu", NULL));
    if (!dev) return;
    mlxn_model *ref = NULL;
    FILE *f = fopen(gguf, "rb");
    if (f) {
        fclose(f);
        CHECK_OK(mlxn_model_load(&ref, dev, gguf));
    } else {
        printf("  %s absent (scripts/get-model.sh): the shape check against it skipped\n", gguf);
    }
    const char *specs[2] = {"synthetic:smollm2-135m:q4_1", "synthetic:smollm2-135m"};
    for (int k = 0; k < 2 && ref; k++) {
        mlxn_model *m = NULL;
        CHECK_OK(mlxn_model_load(&m, dev, specs[k]));
        if (!m) continue;
        const mlxn_model_config *a = &m->cfg, *b = &ref->cfg;
        CHECK(a->hidden == b->hidden && a->layers == b->layers && a->heads == b->heads &&
                  a->kv_heads == b->kv_heads && a->head_dim == b->head_dim && a->ffn == b->ffn &&
                  a->vocab == b->vocab && a->tie_embeddings == b->tie_embeddings,
              "%s: the shape of %s (hidden %d/%d, layers %d/%d, heads %d/%d, kv %d/%d, head_dim %d/%d, ffn %d/%d, "
              "vocab %d/%d, tied %d/%d)",
              specs[k], gguf, a->hidden, b->hidden, a->layers, b->layers, a->heads, b->heads, a->kv_heads,
              b->kv_heads, a->head_dim, b->head_dim, a->ffn, b->ffn, a->vocab, b->vocab, a->tie_embeddings,
              b->tie_embeddings);
        mlxn_model_destroy(m);
    }
    mlxn_model_destroy(ref);
    mlxn_model *m = NULL;
    CHECK_STATUS(mlxn_model_load(&m, dev, "synthetic:smollm2-135m:q4_k"), MLXN_ERR_SHAPE);
    CHECK(m == NULL, "synthetic:smollm2-135m:q4_k: no model");
    mlxn_device_close(dev);
}

/* scripts/gen_synth_gguf.py --shape tiny in each type (skipped where
 * python3 cannot run it). */
static void test_gen_synth_gguf(void) {
    static const struct {
        const char *name;
        mlxn_dtype t;
    } types[] = {{"q4_0", MLXN_Q4_0}, {"q4_1", MLXN_Q4_1}, {"q8_0", MLXN_Q8_0}, {"q4_k", MLXN_Q4_K}};
    if (system("python3 -c 'import random; random.Random(1).randbytes(1)' >/dev/null 2>&1") != 0) {
        printf("  gen_synth_gguf: no python3 >= 3.9 here: skipped\n");
        return;
    }
    mlxn_device *dev = NULL;
    CHECK_OK(mlxn_device_open(&dev, "cpu", NULL));
    if (!dev) return;
    char path[64];
    snprintf(path, sizeof path, "/tmp/mlxn_synth_%d.gguf", (int)getpid());
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++) {
        char cmd[256];
        snprintf(cmd, sizeof cmd, "python3 scripts/gen_synth_gguf.py %s --shape tiny --type %s >/dev/null", path,
                 types[i].name);
        int rc = system(cmd);
        CHECK(rc == 0, "%s: exit status %d", cmd, rc);
        if (rc) continue;
        mlxn_model *m = NULL;
        CHECK_OK(mlxn_model_load(&m, dev, path));
        if (m) {
            const mlxn_model_config *c = &m->cfg;
            CHECK(c->hidden == 256 && c->layers == 2 && c->ffn == 768 && c->heads == 4 && c->kv_heads == 2 &&
                      c->head_dim == 64 && c->vocab == 512,
                  "gen_synth_gguf %s: the tiny shape (hidden %d, layers %d, ffn %d, heads %d/%d, head dim %d, "
                  "vocab %d)", types[i].name, c->hidden, c->layers, c->ffn, c->heads, c->kv_heads, c->head_dim,
                  c->vocab);
            CHECK(mlxn_buffer_dtype(m->L[1].down.w) == types[i].t,
                  "gen_synth_gguf %s: ffn_down holds %s", types[i].name,
                  mlxn_dtype_name(mlxn_buffer_dtype(m->L[1].down.w)));
            mlxn_tokenizer *tok = NULL;
            CHECK_OK(mlxn_model_load_tokenizer(m, &tok, NULL));
            CHECK(tok && mlxn_tokenizer_n_vocab(tok) == 512, "gen_synth_gguf %s: a 512-token vocabulary (%zu)",
                  types[i].name, tok ? mlxn_tokenizer_n_vocab(tok) : 0);
            mlxn_tokenizer_destroy(tok);
            char spec[64];
            snprintf(spec, sizeof spec, "gen_synth_gguf %s", types[i].name);
            check_forward(m, spec);
        }
        mlxn_model_destroy(m);
    }
    remove(path);
    mlxn_device_close(dev);
}

int main(void) {
    test_hash();
    test_pure();
    test_cpu_device();
    test_distribution();
    test_model();
    test_ggml();
    test_load_failures();
    test_smollm2_shape();
    test_gen_synth_gguf();
    return test_summary("test_synthetic");
}
