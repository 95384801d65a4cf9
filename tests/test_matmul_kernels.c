/* test_matmul_kernels.c — every matmul path (AVX-512 VNNI, AVX2, scalar;
 * decode and packed-panel GEMM) for every weight format against the double
 * reference mlxn_mm_ref (bit-exact dequantization, double accumulation).
 * y is NaN-poisoned first and the columns outside [n0, n1) must stay NaN;
 * the scratch is filled with NaN bytes, so a kernel that multiplies stale
 * scratch (even by zero) fails. K = 512, 96, 160, 576, 1536 (whole 128
 * steps, 1-3 block tails, SmolLM2's 576 / 1536), N = 37.
 *
 * q4_0 / q4_1 / q8_0 and MLX 4-/8-bit with f16 or bf16 scales (g32; g64
 * and g128 where a row ends in a short span of blocks) at M = 1 and 96 <= K
 * <= 2048 take the block-stream kernel (steps across row ends): K = 96 /
 * 160 (period 4 rows), 576 (2), 512 / 1536 (1), with n0 = 5 off the period
 * so the row-at-a-time loop runs the rows before and after it; same
 * tolerance (the stream changes only the order of f32 sums).
 *
 * M = 1, 3, 13 take the decode kernels (batched over rows below
 * MLXN_MM_DECODE_ROWS on AVX-512 VNNI, below 4 elsewhere), 50 the GEMM.
 * Tolerance, per output (m, n), with w_k the exact dequantized weight:
 *   |y - ref| <= Σ_k (|w_k|·ex_k + rw·2·G_k·|x_k|) + 1e-5·Σ_k|x_k·w_k| + 1e-6
 *  - ex_k = amax(x block of k)/254 where mlxn_mm_x_parts is 1: x rounded
 *    to int8 per 32 moves each x_k by at most half a step d/2 = amax/254;
 *    amax/32512 where it is 2 (MLX weights: x in two int8 parts, codes and
 *    their residual at 1/128 of the step: at most d/256). A kernel that
 *    dropped the residual part fails this bound.
 *  - MLX AVX-512 decode and the AVX2 int8 decode (all bits) use s·q + b
 *    unrounded, where MLX rounds s·q and then
 *    s·q + b to the scale dtype: ≤ 2 half-ulps of values ≤ 2·G_k (G_k = max|w|
 *    of k's group, since |b| ≤ G_k and |s·q| ≤ |w| + |b|): rw = 2^-8 (bf16),
 *    2^-11 (f16), 2^-23 (f32), term rw·2·G_k·|x_k|.
 *  - bf16 GEMM (mlxn_mm_rounds_bf16: prefill of quantized W on AVX512-BF16
 *    unless f32_act):
 *    x_k and w_k each rounded to bf16 (8 significant bits, round to nearest:
 *    relative error ≤ 2^-8 each), their product exact in f32, so each
 *    term moves by ≤ (2^-7 + 2^-16)·|x_k·w_k|. M = 50 runs with f32_act off
 *    and on, so the f32 panel GEMM stays tested on such a CPU.
 *  - f32 accumulation in ≥ 8 partial sums: ≤ (K/8)·2^-24·Σ|x w| in the worst
 *    case (K ≤ 1536: 1.1e-5), 1e-5·Σ|x·w| here; random signs keep the
 *    actual error far below. */
#include "ops/quant.h"
#include "testutil.h"

static const char *k_formats[] = {
    "f32", "f16", "bf16", "q4_0", "q4_1", "q8_0", "q4_k", "q5_k", "q6_k",
    "mlx-q2-g32", "mlx-q2-g64", "mlx-q2-g128", "mlx-q3-g32", "mlx-q3-g64", "mlx-q3-g128",
    "mlx-q4-g32", "mlx-q4-g64", "mlx-q4-g128", "mlx-q5-g32", "mlx-q5-g64", "mlx-q5-g128",
    "mlx-q6-g32", "mlx-q6-g64", "mlx-q6-g128", "mlx-q8-g32", "mlx-q8-g64", "mlx-q8-g128",
    "mlx-q4-g64-f16", "mlx-q4-g32-f32", "mlx-q8-g64-f16", "mlx-q8-g128-f32", "mlx-q3-g64-f16",
    "mlx-q4-g32-f16", "mlx-q8-g32-f16",
    /* the other widths' unpacking (AVX2: 16 codes a step, the row's last
     * bytes copied) with f16 and f32 rounding too, not only bf16 */
    "mlx-q2-g32-f16", "mlx-q5-g64-f16", "mlx-q6-g128-f32",
};

static int run_case(const mlxn_qweights *q, int isa, int64_t M, const float *x) {
    const mlxn_qmat *w = &q->mat;
    const int64_t N = w->N, K = w->K;
    mlxn_mm_force_isa(isa);
    const char *isa_name = mlxn_mm_isa();
    size_t sbytes = mlxn_mm_scratch_bytes(w, M);
    void *scratch = malloc(sbytes + 1); /* +1: misaligned on purpose */
    memset(scratch, 0xFF, sbytes + 1);  /* NaN floats: a kernel reading stale scratch shows */
    float *y = malloc((size_t)(M * N) * 4);
    double *ref = malloc((size_t)(M * N) * 8), *bnd = malloc((size_t)(M * N) * 8);
    float *row = malloc((size_t)K * 4);
    double *exb = malloc((size_t)((M * K + 31) / 32) * 8), *gmax = malloc((size_t)K * 8);
    for (int64_t i = 0; i < M * N; i++) y[i] = NAN;
    /* a middle range first (a thread's share: neither first nor last row),
     * then the two sides */
    int64_t n0 = 5 < N ? 5 : N, n1 = 23 < N ? 23 : N;
    mlxn_mm(w, x, y, M, n0, n1, (char *)scratch + 1);
    int leaked = 0;
    for (int64_t m = 0; m < M; m++)
        for (int64_t n = 0; n < N; n++)
            if ((n < n0 || n >= n1) && !isnan(y[m * N + n])) leaked++;
    CHECK(leaked == 0, "%s %s M=%lld K=%lld: %d columns outside [%lld,%lld) written", q->format,
          isa_name, (long long)M, (long long)K, leaked, (long long)n0, (long long)n1);
    mlxn_mm(w, x, y, M, 0, n0, (char *)scratch + 1);
    mlxn_mm(w, x, y, M, n1, N, (char *)scratch + 1);
    mlxn_mm_ref(w, x, ref, M, 0, N);

    /* Which error terms apply: the kernel says whether it quantized x; MLX
     * weights on the AVX-512 decode path use unrounded s·q + b. */
    int parts = mlxn_mm_x_parts(w, M);
    CHECK(mlxn_mm_quantizes_x(w, M) == (parts > 0), "%s M=%lld: quantizes_x agrees with x_parts %d", q->format,
          (long long)M, parts);
    double rb = mlxn_mm_rounds_bf16(w, M) ? 0x1p-7 + 0x1p-16 : 0;
    double rw = 0;
    if (w->kind == MLXN_QKIND_MLX && ((strcmp(mlxn_mm_isa(), "avx512vnni") == 0 && M < MLXN_MM_DECODE_ROWS) ||
                                      (strcmp(mlxn_mm_isa(), "avx2") == 0 && parts > 0)))
        rw = w->sb_type == MLXN_BF16 ? 0x1p-8 : w->sb_type == MLXN_F16 ? 0x1p-11 : 0x1p-23;
    int64_t grp = w->kind == MLXN_QKIND_MLX ? w->group : K;
    for (int64_t i = 0; i < (M * K + 31) / 32; i++) { /* amax/254 per x block of 32 */
        double a = 0;
        for (int j = 0; j < 32 && 32 * i + j < M * K; j++) a = fmax(a, fabs((double)x[32 * i + j]));
        exb[i] = parts == 1 ? a / 254.0 : parts == 2 ? a / (254.0 * 128.0) : 0;
    }
    for (int64_t n = 0; n < N; n++) {
        mlxn_qmat_dequant_row(w, n, 0, K, row);
        for (int64_t g0 = 0; g0 < K; g0 += grp) { /* max|w| of each group, per k */
            double g = 0;
            for (int64_t j = 0; j < grp; j++) g = fmax(g, fabs((double)row[g0 + j]));
            for (int64_t j = 0; j < grp; j++) gmax[g0 + j] = g;
        }
        for (int64_t m = 0; m < M; m++) {
            const float *xm = x + m * K;
            double b = 0, sabs = 0;
            for (int64_t k = 0; k < K; k++) {
                double ex = exb[(m * K + k) / 32], g = rw > 0 ? gmax[k] : 0;
                b += fabs((double)row[k]) * ex + rw * 2 * g * fabs((double)xm[k]);
                sabs += fabs((double)row[k] * (double)xm[k]);
            }
            bnd[m * N + n] = b * 1.0001 + (1e-5 + rb) * sabs + 1e-6;
        }
    }
    int bad = 0;
    for (int64_t i = 0; i < M * N; i++) {
        double d = fabs((double)y[i] - ref[i]);
        if (!(d <= bnd[i])) {
            if (bad < 3)
                fprintf(stderr, "  %s %s M=%lld [%lld,%lld]: got %.9g want %.9g (diff %.3g > %.3g)\n",
                        q->format, isa_name, (long long)M, (long long)(i / N), (long long)(i % N),
                        (double)y[i], ref[i], d, bnd[i]);
            bad++;
        }
    }
    CHECK(bad == 0, "%s %s%s M=%lld N=%lld K=%lld: %d of %lld outside tolerance", q->format,
          isa_name, rb > 0 ? " bf16" : "", (long long)M, (long long)N, (long long)K, bad,
          (long long)(M * N));
    free(scratch);
    free(y);
    free(ref);
    free(bnd);
    free(row);
    free(exb);
    free(gmax);
    mlxn_mm_force_isa(0);
    return bad;
}

/* The row dequantizer the kernels use (vectorized per ISA) must equal the
 * golden-tested whole-matrix dequantizers bit for bit, also on sub-ranges. */
static void check_dequant_row(const mlxn_qweights *q) {
    const mlxn_qmat *w = &q->mat;
    float *full = malloc((size_t)(w->N * w->K) * 4), *row = malloc((size_t)w->K * 4);
    if (w->kind == MLXN_QKIND_MLX)
        CHECK_OK(mlxn_mlx_dequantize(w->w, w->scales, w->biases, w->sb_type, w->N, w->K, w->bits,
                                     w->group, full));
    else
        for (int64_t n = 0; n < w->N; n++)
            CHECK_OK(mlxn_ggml_dequantize(w->wtype, (const char *)w->w + n * w->row_bytes,
                                          full + n * w->K, w->K));
    int64_t step = w->kind == MLXN_QKIND_MLX ? w->group : (int64_t)mlxn_dtype_block_elems(w->wtype);
    for (int isa = 0; isa < 3; isa++) {
        mlxn_mm_force_isa(isa);
        int bad = 0;
        for (int64_t n = 0; n < w->N; n++) {
            int64_t k0 = (n % 2) ? step : 0, k1 = w->K - ((n % 3 == 1 && w->K > 2 * step) ? step : 0);
            for (int64_t k = 0; k < w->K; k++) row[k] = NAN;
            mlxn_qmat_dequant_row(w, n, k0, k1, row);
            if (memcmp(row, full + n * w->K + k0, (size_t)(k1 - k0) * 4)) bad++;
        }
        CHECK(bad == 0, "%s dequant_row (%s): %d rows differ from the reference dequantizer",
              q->format, mlxn_mm_isa(), bad);
    }
    mlxn_mm_force_isa(0);
    free(full);
    free(row);
}

/* MLX's own quantized_matmul (mlx 0.32.4 CPU, f32 x) as an outside oracle.
 * MLX computes with unrounded s·q + b, we use rounded weights (ref) or
 * unrounded + int8 x (VNNI): both sit within the rw / ex terms of the exact
 * reference, so they differ by at most the sum of those bounds. */
static void check_mlx_qmm(int bits, int group, const char *dtn, mlxn_dtype dt, int QM) {
    enum { QN = 8, QK = 256 };
    char path[128];
    snprintf(path, sizeof path, "tests/golden/quant/mlx_qmm_b%d_g%d_%s%s.bin", bits, group, dtn,
             QM == 3 ? "" : "_m40");
    FILE *f = fopen(path, "rb");
    size_t wb, sb;
    mlxn_mlx_sizes(QN, QK, bits, group, dt, &wb, &sb);
    size_t want = QM * QK * 4 + wb + 2 * sb + QM * QN * 4;
    unsigned char *buf = malloc(want + 1);
    size_t got = f ? fread(buf, 1, want + 1, f) : 0;
    if (f) fclose(f);
    CHECK(got == want, "%s: %zu bytes, want %zu", path, got, want);
    if (got != want) {
        free(buf);
        return;
    }
    const float *x = (const float *)buf, *ymlx = (const float *)(buf + want - QM * QN * 4);
    mlxn_qmat w = {.kind = MLXN_QKIND_MLX, .N = QN, .K = QK, .w = buf + QM * QK * 4,
                   .scales = buf + QM * QK * 4 + wb, .biases = buf + QM * QK * 4 + wb + sb,
                   .sb_type = dt, .bits = bits, .group = group};
    CHECK_OK(mlxn_qmat_check(&w));
    float deq[QN * QK], *y = malloc((size_t)(QM * QN) * sizeof(float));
    CHECK_OK(mlxn_mlx_dequantize(w.w, w.scales, w.biases, dt, QN, QK, bits, group, deq));
    double rw = dt == MLXN_BF16 ? 0x1p-8 : dt == MLXN_F16 ? 0x1p-11 : 0x1p-23;
    void *scr = malloc(mlxn_mm_scratch_bytes(&w, QM));
    for (int isa = 0; isa < 3; isa++) {
        mlxn_mm_force_isa(isa);
        for (int i = 0; i < QM * QN; i++) y[i] = NAN;
        mlxn_mm(&w, x, y, QM, 0, QN, scr);
        /* x's rounding: int8 (amax/254), two int8 parts (amax/32512) or
         * none; bf16 operands in the prefill GEMM where the CPU has it */
        const int parts = mlxn_mm_x_parts(&w, QM);
        const double xr = parts == 1 ? 254.0 : parts == 2 ? 254.0 * 128.0 : 0.0;
        const double rb = mlxn_mm_rounds_bf16(&w, QM) ? 0x1p-7 + 0x1p-16 : 0;
        int bad = 0;
        for (int m = 0; m < QM; m++)
            for (int n = 0; n < QN; n++) {
                double b = 0, sabs = 0;
                for (int k = 0; k < QK; k++) {
                    double ex = 0, g = 0;
                    for (int j = 0; j < 32; j++) ex = fmax(ex, fabs((double)x[m * QK + k / 32 * 32 + j]));
                    for (int j = 0; j < group; j++) g = fmax(g, fabs((double)deq[n * QK + k / group * group + j]));
                    double wk = fabs((double)deq[n * QK + k]), xk = fabs((double)x[m * QK + k]);
                    b += (xr > 0 ? wk * ex / xr : 0) + 2 * rw * 2 * g * xk;
                    sabs += wk * xk;
                }
                double d = fabs((double)y[m * QN + n] - (double)ymlx[m * QN + n]);
                if (!(d <= b + (2e-5 + rb) * sabs + 1e-5)) {
                    if (bad < 3)
                        fprintf(stderr, "  %s [%d,%d]: got %.7g mlx %.7g (bound %.3g)\n", path, m, n,
                                (double)y[m * QN + n], (double)ymlx[m * QN + n], b);
                    bad++;
                }
            }
        CHECK(bad == 0, "%s (%s): %d outputs off MLX's quantized_matmul", path, mlxn_mm_isa(), bad);
    }
    mlxn_mm_force_isa(0);
    free(scr);
    free(buf);
    free(y);
}

/* Expert-routed form: 4 experts stacked in one allocation (the random
 * matrix is [4N, K], so expert e is rows e·N..), 3 tokens × top-2, both x
 * modes; each slot against mlxn_mm_ref on its expert view, bound as above
 * (ex term for int8 x plus rw for MLX rounding, 1e-5 relative). */
static void check_mm_id(const char *format) {
    enum { E = 4, T = 3, TOPK = 2, N = 40, K = 256 };
    mlxn_qweights q;
    CHECK_OK(mlxn_quant_make_random(format, (int64_t)E * N, K, 99, &q));
    if (!q.data) return;
    mlxn_qmat w0 = q.mat;
    w0.N = N;
    size_t wst = q.mat.kind == MLXN_QKIND_MLX ? q.data_bytes / E : (size_t)N * q.mat.row_bytes;
    size_t sst = q.sb_bytes / E;
    int32_t ids[T * TOPK] = {3, 0, 1, 3, 2, 7}; /* 7: out of range -> NaN row */
    float x[T * TOPK * K], y[T * TOPK * N];
    double ref[N];
    rng_fill(x, T * TOPK * K, -1, 1);
    void *scr = malloc(mlxn_mm_scratch_bytes(&w0, 1));
    for (int per = 0; per < 2; per++) {
        for (int i = 0; i < T * TOPK * N; i++) y[i] = NAN;
        mlxn_mm_id(&w0, wst, sst, E, ids, T, TOPK, per, x, y, 0, 17, scr);
        mlxn_mm_id(&w0, wst, sst, E, ids, T, TOPK, per, x, y, 17, N, scr);
        int bad = 0;
        for (int slot = 0; slot < T * TOPK; slot++) {
            const float *xr = x + (per ? slot : slot / TOPK) * K;
            if (ids[slot] >= E) {
                for (int n = 0; n < N; n++) bad += !isnan(y[slot * N + n]);
                continue;
            }
            mlxn_qmat we = w0;
            we.w = (const char *)w0.w + ids[slot] * wst;
            if (we.scales) we.scales = (const char *)w0.scales + ids[slot] * sst;
            if (we.biases) we.biases = (const char *)w0.biases + ids[slot] * sst;
            mlxn_mm_ref(&we, xr, ref, 1, 0, N);
            float row[K];
            for (int n = 0; n < N; n++) {
                mlxn_qmat_dequant_row(&we, n, 0, K, row);
                double b = 0;
                int grp = we.kind == MLXN_QKIND_MLX ? we.group : 32;
                double rw = we.kind == MLXN_QKIND_MLX ? 0x1p-8 : 0; /* bf16 scales */
                for (int k = 0; k < K; k++) {
                    double ex = 0, g = 0, wk = fabs((double)row[k]), xk = fabs((double)xr[k]);
                    for (int j = 0; j < 32; j++) ex = fmax(ex, fabs((double)xr[k / 32 * 32 + j]));
                    for (int j = 0; j < grp; j++) g = fmax(g, fabs((double)row[k / grp * grp + j]));
                    b += wk * ex / 254.0 + rw * 2 * g * xk + 1e-5 * wk * xk;
                }
                if (!(fabs((double)y[slot * N + n] - ref[n]) <= b + 1e-6)) bad++;
            }
        }
        CHECK(bad == 0, "mm_id %s x_per_slot=%d: %d outputs wrong", format, per, bad);
    }
    free(scr);
    mlxn_quant_free(&q);
}

/* The int8-x decode's error is that of x's rounding times the true weights:
 * Σ_k w_k·e_k with e_k = dx·c_k - x_k, |e_k| <= dx/2, so over many outputs
 * E[err²] = Σ_k w_k²·dx_k²/12 for x not aligned with the code grid (with x
 * in two parts, mlxn_mm_x_parts 2, the rounding step is dx/128: E[err²] =
 * Σ_k w_k²·(dx_k/128)²/12). The
 * offset / bias term must use the sum of the rounded x for that: with the
 * exact Σx the error is Σ_k s·q_k·e_k, ~4x the energy for weights around
 * zero (measured 3.6-4.2x, 2048 x 4096). Checked for MLX 3-, 4-, 6- and 8-bit
 * weights quantized from Gaussian ones (f32 scales: with bf16 ones the
 * reference's rounding of s·q + b, which the kernel skips, adds about as
 * much again) and uniform x, 256 outputs: the error energy within 1.5x of
 * the expectation. */
static void check_int8_error_energy(int bits, bool int8_act) {
    const int64_t N = 256, K = 4096, G = 64;
    float *w = malloc((size_t)(N * K) * 4), *x = malloc((size_t)K * 4), *y = malloc((size_t)N * 4);
    float *row = malloc((size_t)K * 4);
    double *ref = malloc((size_t)N * 8), *dx = malloc((size_t)(K / 32) * 8);
    for (int64_t i = 0; i < N * K; i++) { /* ~N(0, 1): sum of 4 uniforms */
        double t = 0;
        for (int j = 0; j < 4; j++) t += (double)rng_uniform(-1, 1);
        w[i] = (float)(t * 0.866);
    }
    rng_fill(x, (size_t)K, -1, 1);
    uint32_t *wq = malloc((size_t)(N * K * bits / 8));
    float *sc = malloc((size_t)(N * K / G) * 4), *bi = malloc((size_t)(N * K / G) * 4);
    CHECK_OK(mlxn_mlx_quantize(w, N, K, bits, (int)G, MLXN_F32, wq, sc, bi));
    mlxn_qmat m = {0};
    m.kind = MLXN_QKIND_MLX;
    m.w = wq, m.scales = sc, m.biases = bi, m.sb_type = MLXN_F32;
    m.bits = bits, m.group = (int)G, m.N = N, m.K = K, m.int8_act = int8_act;
    void *scr = malloc(mlxn_mm_scratch_bytes(&m, 1));
    mlxn_mm(&m, x, y, 1, 0, N, scr);
    mlxn_mm_ref(&m, x, ref, 1, 0, N);
    for (int64_t b = 0; b < K / 32; b++) {
        double a = 0;
        for (int j = 0; j < 32; j++) a = fmax(a, fabs((double)x[32 * b + j]));
        dx[b] = a / 127 / (mlxn_mm_x_parts(&m, 1) == 2 ? 128 : 1);
    }
    double got = 0, want = 0;
    for (int64_t n = 0; n < N; n++) {
        got += ((double)y[n] - ref[n]) * ((double)y[n] - ref[n]);
        mlxn_qmat_dequant_row(&m, n, 0, K, row);
        for (int64_t k = 0; k < K; k++) want += (double)row[k] * (double)row[k] * dx[k / 32] * dx[k / 32] / 12;
    }
    if (mlxn_mm_quantizes_x(&m, 1))
        CHECK(got <= 1.5 * want && got >= want / 1.5,
              "mlx-q%d-g64-f32 int8-x (%d parts) decode error energy %.4g against %.4g expected from x's rounding (%s)",
              bits, mlxn_mm_x_parts(&m, 1), got, want, mlxn_mm_isa());
    printf("int8-x decode error energy, mlx-q%d-g64-f32, x in %d int8 parts: %.4g, expected %.4g (%s)\n", bits,
           mlxn_mm_x_parts(&m, 1), got, want, mlxn_mm_isa());
    free(w), free(x), free(y), free(row), free(ref), free(dx), free(wq), free(sc), free(bi), free(scr);
}

int main(void) {
    check_int8_error_energy(4, false);
    check_int8_error_energy(8, false);
    check_int8_error_energy(4, true);
    check_int8_error_energy(8, true);
    check_int8_error_energy(3, false); /* the int16 unpacking of 2/3/5/6 bits */
    check_int8_error_energy(6, true);
    check_mm_id("q4_k");
    check_mm_id("mlx-q4-g64");
    check_mm_id("q8_0");
    /* M = 3: the decode kernels; M = 40: the packed-panel GEMM (prefill) */
    static const struct { int bits, group; const char *dtn; mlxn_dtype dt; int m; } qmm[] = {
        {4, 64, "bf16", MLXN_BF16, 3}, {8, 32, "f32", MLXN_F32, 3},    {4, 128, "f16", MLXN_F16, 3},
        {3, 64, "bf16", MLXN_BF16, 3}, {2, 32, "f16", MLXN_F16, 3},    {5, 128, "bf16", MLXN_BF16, 3},
        {6, 32, "f32", MLXN_F32, 3},   {6, 64, "f16", MLXN_F16, 3},    {2, 128, "bf16", MLXN_BF16, 40},
        {3, 32, "f16", MLXN_F16, 40},  {4, 64, "bf16", MLXN_BF16, 40}, {5, 64, "f32", MLXN_F32, 40},
        {6, 128, "bf16", MLXN_BF16, 40}, {8, 64, "f16", MLXN_F16, 40},
    };
    for (size_t i = 0; i < sizeof qmm / sizeof qmm[0]; i++)
        check_mlx_qmm(qmm[i].bits, qmm[i].group, qmm[i].dtn, qmm[i].dt, qmm[i].m);
    printf("mlx quantized_matmul oracle: %zu cases (every width; M = 3 and 40) x 3 isa\n", sizeof qmm / sizeof qmm[0]);
    const int64_t Ms[] = {1, 3, 13, 50};
    const int64_t N = 37;
    int cases = 0, fails = 0;
    for (size_t f = 0; f < sizeof k_formats / sizeof k_formats[0]; f++) {
        /* 512: whole 128-element steps; 96, 160, 576 (SmolLM2's hidden):
         * a last step of 3, 1 and 2 blocks of 32; 1536 (its FFN): 3 spans
         * of 16 blocks; 100 (dense formats only): k chunks that end
         * inside an 8-wide transpose block (the AVX2 GEMM's packing). */
        const int64_t Ks[] = {512, 96, 160, 576, 1536, 100};
        for (size_t ki = 0; ki < sizeof Ks / sizeof Ks[0]; ki++) {
            int64_t K = Ks[ki];
            mlxn_qweights q;
            mlxn_status st = mlxn_quant_make_random(k_formats[f], N, K, 1234 + f, &q);
            if (K != 512 && st != MLXN_OK) continue; /* block/group does not divide K */
            CHECK_OK(st);
            if (st) continue;
            check_dequant_row(&q);
            float *x = malloc((size_t)(50 * K) * 4);
            rng_fill(x, (size_t)(50 * K), -1, 1);
            for (int64_t k = 0; k < 32 && k < K; k++) x[k] *= 100; /* one loud block */
            for (int isa = 0; isa < 3; isa++)
                for (int mi = 0; mi < 4; mi++, cases++) fails += run_case(&q, isa, Ms[mi], x) != 0;
            q.mat.f32_act = true; /* the f32 GEMM where the bf16 one would run */
            for (int isa = 0; isa < 3; isa++, cases++) fails += run_case(&q, isa, 50, x) != 0;
            q.mat.f32_act = false;
            if (q.mat.kind == MLXN_QKIND_MLX) { /* MLX decode with x in int8 alone (int8_act) */
                q.mat.int8_act = true;
                for (int mi = 0; mi < 3; mi++, cases++) fails += run_case(&q, 0, Ms[mi], x) != 0;
                q.mat.int8_act = false;
            }
            free(x);
            mlxn_quant_free(&q);
        }
    }
    printf("matmul kernels: %d cases (format x K x isa x M), %d failing; native isa %s\n", cases,
           fails, mlxn_mm_isa());

    /* The block stream's row ends: with x nonzero in one block only, the
     * tolerance shrinks to that block's terms, so a block (or a 4-code
     * lane) credited to the wrong row by the step split shows, which the
     * whole-row x above can hide under its ex_k terms. Blocks 0-2 and the
     * last 3 of a row are those a split step can hold; M = 1, native ISA. */
    /* MLX groups of 64 / 128: a step's 4 blocks share 2 / 1 scale and
     * bias; K = 192 / 320 / 576 (g64: 6, 10, 18 blocks, periods of 2 rows)
     * and 384 / 640 (g128: 12, 20 blocks, rows ending in a short span) */
    const char *sf[] = {"q4_0",           "q4_1",           "q8_0",           "mlx-q4-g32",
                        "mlx-q8-g32",     "mlx-q4-g32-f16", "mlx-q8-g32-f16", "mlx-q4-g64",
                        "mlx-q8-g64-f16", "mlx-q4-g128-f16", "mlx-q8-g128"};
    int scases = 0, sfails = 0;
    for (size_t f = 0; f < sizeof sf / sizeof sf[0]; f++) {
        const int64_t Ks[] = {96, 160, 576, 192, 320, 384, 640};
        for (size_t ki = 0; ki < sizeof Ks / sizeof Ks[0]; ki++) {
            const int64_t K = Ks[ki], nb = K / 32;
            mlxn_qweights q;
            mlxn_status st = mlxn_quant_make_random(sf[f], N, K, 4321 + f, &q);
            if (st != MLXN_OK && K % 128 && (K % 64 || strstr(sf[f], "-g128")))
                continue; /* the group does not divide K */
            CHECK_OK(st);
            if (st) continue;
            float *x = malloc((size_t)K * 4);
            const int64_t js[] = {0, 1, 2, nb - 3, nb - 2, nb - 1};
            for (int i = 0; i < 6; i++, scases++) {
                memset(x, 0, (size_t)K * 4);
                rng_fill(x + 32 * js[i], 32, -1, 1);
                sfails += run_case(&q, 0, 1, x) != 0;
                if (q.mat.kind == MLXN_QKIND_MLX) { /* and with x in int8 alone */
                    q.mat.int8_act = true;
                    sfails += run_case(&q, 0, 1, x) != 0;
                    q.mat.int8_act = false;
                    scases++;
                }
            }
            free(x);
            mlxn_quant_free(&q);
        }
    }
    printf("stream row ends: %d cases (format x K x block), %d failing\n", scases, sfails);

    /* Long rows (over PF_LONG_ROW = 2 KB of weight bytes: the decode kernels
     * prefetch in their inner loop instead of whole rows ahead; q8_0 rows
     * over 8 KB and dense f16 / bf16 rows take their own prefetch): K = 8448
     * (whole steps) and 8224 (a tail of 1 block, an odd q8_0 block count),
     * decode rows on every ISA. Same tolerance as above: its f32
     * accumulation term 1e-5·Σ|x·w| is not a worst case at this K
     * ((K/8)·2^-24 = 6.3e-5), but the accumulators' random-sign rounding
     * errors grow like √K, far below it. */
    const char *lf[] = {"q4_0", "q4_1", "q8_0", "q4_k", "q5_k", "q6_k",
                        "mlx-q4-g64", "mlx-q4-g32", "mlx-q8-g64", "mlx-q8-g32", "mlx-q3-g64",
                        "f16", "bf16"};
    int lcases = 0, lfails = 0;
    for (size_t f = 0; f < sizeof lf / sizeof lf[0]; f++) {
        const int64_t Ks[] = {8448, 8224};
        for (size_t ki = 0; ki < 2; ki++) {
            mlxn_qweights q;
            mlxn_status st = mlxn_quant_make_random(lf[f], N, Ks[ki], 777 + f, &q);
            if (ki > 0 && st != MLXN_OK) continue; /* block/group does not divide K */
            CHECK_OK(st);
            if (st) continue;
            float *x = malloc((size_t)(3 * Ks[ki]) * 4);
            rng_fill(x, (size_t)(3 * Ks[ki]), -1, 1);
            for (int isa = 0; isa < 3; isa++)
                for (int mi = 0; mi < 2; mi++, lcases++) lfails += run_case(&q, isa, Ms[mi], x) != 0;
            if (q.mat.kind == MLXN_QKIND_MLX) { /* x in int8 alone */
                q.mat.int8_act = true;
                for (int mi = 0; mi < 2; mi++, lcases++) lfails += run_case(&q, 0, Ms[mi], x) != 0;
                q.mat.int8_act = false;
            }
            free(x);
            mlxn_quant_free(&q);
        }
    }
    printf("long rows: %d cases (format x K x isa x M), %d failing\n", lcases, lfails);

    /* MLX 4/8-bit rows past K = 8192 with x in two parts take four rows at
     * a time (acc_mlx48_x4): K = 16384 (whole spans), N = 37 (nine groups
     * of four and one row alone; the first range [5, 23) starts mid-group),
     * M = 1 and 3, native ISA; same tolerance. */
    const char *xf[] = {"mlx-q4-g64", "mlx-q4-g32-f16", "mlx-q8-g64", "mlx-q8-g128-f32"};
    int xcases = 0, xfails = 0;
    for (size_t f = 0; f < sizeof xf / sizeof xf[0]; f++) {
        const int64_t K = 16384;
        mlxn_qweights q;
        CHECK_OK(mlxn_quant_make_random(xf[f], N, K, 999 + f, &q));
        float *x = malloc((size_t)(3 * K) * 4);
        rng_fill(x, (size_t)(3 * K), -1, 1);
        for (int64_t k = 0; k < 32; k++) x[K + 4096 + k] *= 100; /* one loud block in row 1 */
        for (int mi = 0; mi < 2; mi++, xcases++) xfails += run_case(&q, 0, Ms[mi], x) != 0;
        free(x);
        mlxn_quant_free(&q);
    }
    printf("four-row MLX dots (K = 16384): %d cases, %d failing\n", xcases, xfails);

    /* The blocked GEMM's outer loops: M = 520 is one full block of 512 x
     * rows and a short one, N = 1060 one full block of 1024 columns and a
     * short one ending in a partial panel, K = 768 a whole bf16 k chunk
     * (512) and a short one; native ISA, bf16 and f32 variants (f16 W: f32
     * either way). */
    const char *big[] = {"q4_0", "mlx-q4-g32", "q6_k", "f16"};
    for (size_t f = 0; f < sizeof big / sizeof big[0]; f++) {
        const int64_t BM = 520, BN = 1060, BK = 768;
        mlxn_qweights q;
        CHECK_OK(mlxn_quant_make_random(big[f], BN, BK, 99 + f, &q));
        float *x = malloc((size_t)(BM * BK) * 4);
        rng_fill(x, (size_t)(BM * BK), -1, 1);
        for (int act = 0; act < (strcmp(big[f], "f16") ? 2 : 1); act++) {
            q.mat.f32_act = act;
            run_case(&q, 0, BM, x);
        }
        free(x);
        mlxn_quant_free(&q);
    }
    printf("blocked GEMM: %d formats at M=520 N=1060 K=768, f32_act off and on\n",
           (int)(sizeof big / sizeof big[0]));

    /* make_random: deterministic, never all zero; bad formats. */
    mlxn_qweights a, b;
    CHECK_OK(mlxn_quant_make_random("mlx-q4-g64", 8, 128, 7, &a));
    CHECK_OK(mlxn_quant_make_random("mlx-q4-g64", 8, 128, 7, &b));
    CHECK(a.total_bytes == 8 * 64 + 2 * 8 * 2 * 2 && memcmp(a.data, b.data, a.data_bytes) == 0 &&
              memcmp(a.scales, b.scales, a.sb_bytes) == 0,
          "make_random not deterministic or wrong size %zu", a.total_bytes);
    float deq[128];
    mlxn_qmat_dequant_row(&a.mat, 3, 0, 128, deq);
    int nz = 0;
    for (int i = 0; i < 128; i++) nz += deq[i] != 0;
    CHECK(nz > 100, "random row mostly zero (%d nonzero)", nz);
    mlxn_quant_free(&a);
    mlxn_quant_free(&b);
    mlxn_quant_free(NULL);
    CHECK_STATUS(mlxn_quant_make_random("q3_z", 8, 256, 1, &a), MLXN_ERR_INVALID_ARG);
    CHECK(a.data == NULL, "out not zeroed on failure");
    CHECK_STATUS(mlxn_quant_make_random("mlx-q7-g64", 8, 256, 1, &a), MLXN_ERR_UNSUPPORTED);
    CHECK_STATUS(mlxn_quant_make_random("mlx-q4-g64", 8, 96, 1, &a), MLXN_ERR_SHAPE);
    CHECK_STATUS(mlxn_quant_make_random("mlx-q4-g64-i8", 8, 128, 1, &a), MLXN_ERR_DTYPE);
    CHECK_STATUS(mlxn_quant_make_random("q4_k", 8, 128, 1, &a), MLXN_ERR_SHAPE);

    mlxn_qmat bad = {.kind = MLXN_QKIND_GGML, .N = 4, .K = 64, .w = deq, .row_bytes = 10,
                     .wtype = MLXN_Q4_0};
    CHECK_STATUS(mlxn_qmat_check(&bad), MLXN_ERR_SHAPE);
    bad.row_bytes = 36;
    CHECK_OK(mlxn_qmat_check(&bad));
    bad.wtype = MLXN_I32;
    CHECK_STATUS(mlxn_qmat_check(&bad), MLXN_ERR_DTYPE);
    bad = (mlxn_qmat){.kind = MLXN_QKIND_MLX, .N = 4, .K = 64, .w = deq, .bits = 4, .group = 64,
                      .sb_type = MLXN_BF16};
    CHECK_STATUS(mlxn_qmat_check(&bad), MLXN_ERR_INVALID_ARG);
    return test_summary("test_matmul_kernels");
}
