/*
 * test_ops.c — every float op of the CPU backend against a scalar reference
 * that accumulates in double, with random inputs and NaN-poisoned outputs.
 * Tolerances (atol + rtol*|ref|) are written beside each case with the
 * reason. Also the dtype, shape and aliasing errors of each op family.
 */
#include "mlxn.h"
#include "ops/quant.h"
#include "testutil.h"

#include <stdbool.h>

/* References widen f32 inputs to double on purpose. */
#pragma GCC diagnostic ignored "-Wdouble-promotion"

static mlxn_device *dev;
static mlxn_session *S;

static mlxn_buffer *mk(mlxn_dtype t, int nd, int64_t a, int64_t b, int64_t c) {
    int64_t sh[3] = {a, b, c};
    mlxn_buffer *x = NULL;
    CHECK_OK(mlxn_buffer_create(&x, dev, t, nd, sh));
    return x;
}
/* Random f32 contents, returned as a host copy (caller frees). */
static float *rnd(mlxn_buffer *b, float lo, float hi) {
    size_t n = (size_t)mlxn_buffer_elems(b);
    float *v = malloc(n * 4);
    rng_fill(v, n, lo, hi);
    CHECK_OK(mlxn_buffer_write(b, 0, v, n * 4));
    return v;
}
/* Random half/bf16 contents; returns the f32 values they hold. */
static float *rnd16(mlxn_buffer *b, float lo, float hi) {
    size_t n = (size_t)mlxn_buffer_elems(b);
    float *v = malloc(n * 4);
    uint16_t *h = malloc(n * 2);
    bool bf = mlxn_buffer_dtype(b) == MLXN_BF16;
    for (size_t i = 0; i < n; i++) {
        float f = rng_uniform(lo, hi);
        h[i] = bf ? mlxn_f32_to_bf16(f) : mlxn_f32_to_f16(f);
        v[i] = bf ? mlxn_bf16_to_f32(h[i]) : mlxn_f16_to_f32(h[i]);
    }
    CHECK_OK(mlxn_buffer_write(b, 0, h, n * 2));
    free(h);
    return v;
}
static void poison(mlxn_buffer *b) {
    size_t n = mlxn_buffer_nbytes(b);
    unsigned char *p = malloc(n);
    memset(p, 0xff, n); /* NaN in f32/f16/bf16 */
    CHECK_OK(mlxn_buffer_write(b, 0, p, n));
    free(p);
}
static float *get(mlxn_buffer *b) {
    size_t n = (size_t)mlxn_buffer_elems(b);
    float *v = malloc(n * 4);
    CHECK_OK(mlxn_buffer_read(b, 0, v, n * 4));
    return v;
}
static void run(void) { CHECK_OK(mlxn_session_finish(S)); mlxn_session_reset(S); }

static double silu_d(double x) { return x / (1 + exp(-x)); }

static void test_elementwise(void) {
    const int R = 5, C = 96;
    mlxn_buffer *a = mk(MLXN_F32, 2, R, C, 0), *b = mk(MLXN_F32, 2, R, C, 0), *o = mk(MLXN_F32, 2, R, C, 0);
    mlxn_buffer *vb = mk(MLXN_BF16, 1, C, 0, 0);
    float *av = rnd(a, -3, 3), *bv = rnd(b, -3, 3), *vv = rnd16(vb, -2, 2);
    size_t n = (size_t)(R * C);
    double *ref = malloc(n * sizeof(double));
    /* elementwise f32: one rounding of the exact result; 1 ulp-ish bounds */
    for (int op = 0; op < 9; op++) {
        poison(o);
        const char *name = "?";
        double rt = 1e-6, at = 1e-7;
        switch (op) {
        case 0: name = "add"; CHECK_OK(mlxn_op_add(S, o, a, b)); for (size_t i = 0; i < n; i++) ref[i] = (double)av[i] + bv[i]; break;
        case 1: name = "mul"; CHECK_OK(mlxn_op_mul(S, o, a, b)); for (size_t i = 0; i < n; i++) ref[i] = (double)av[i] * bv[i]; break;
        case 2: name = "add bf16 row broadcast"; CHECK_OK(mlxn_op_add(S, o, a, vb)); for (size_t i = 0; i < n; i++) ref[i] = (double)av[i] + vv[i % C]; break;
        case 3: name = "scale"; CHECK_OK(mlxn_op_scale(S, o, a, 0.37f)); for (size_t i = 0; i < n; i++) ref[i] = (double)av[i] * (double)0.37f; break;
        /* transcendental ops use expf/tanhf/erff: a few ulp */
        case 4: name = "silu"; rt = 1e-5; CHECK_OK(mlxn_op_silu(S, o, a)); for (size_t i = 0; i < n; i++) ref[i] = silu_d(av[i]); break;
        case 5: name = "silu_mul"; rt = 1e-5; CHECK_OK(mlxn_op_silu_mul(S, o, a, b)); for (size_t i = 0; i < n; i++) ref[i] = silu_d(av[i]) * bv[i]; break;
        case 6: name = "gelu erf"; rt = 1e-5; at = 1e-6; CHECK_OK(mlxn_op_gelu(S, o, a, 0)); for (size_t i = 0; i < n; i++) ref[i] = 0.5 * av[i] * (1 + erf(av[i] / sqrt(2.0))); break;
        case 7: name = "gelu tanh"; rt = 1e-5; at = 1e-6; CHECK_OK(mlxn_op_gelu(S, o, a, 1)); for (size_t i = 0; i < n; i++) { double x = av[i]; ref[i] = 0.5 * x * (1 + tanh(sqrt(2 / M_PI) * (x + 0.044715 * x * x * x))); } break;
        case 8: name = "softcap"; rt = 1e-5; CHECK_OK(mlxn_op_softcap(S, o, a, 2.5f)); for (size_t i = 0; i < n; i++) ref[i] = tanh(av[i] / 2.5) * 2.5; break;
        }
        run();
        float *ov = get(o);
        check_close(name, ov, ref, n, at, rt);
        free(ov);
    }
    /* in place */
    CHECK_OK(mlxn_op_scale(S, a, a, 2.0f));
    run();
    float *ov = get(a);
    for (size_t i = 0; i < n; i++) ref[i] = 2.0 * av[i];
    check_close("scale in place", ov, ref, n, 0, 0);
    free(ov);
    free(ref);
    free(av);
    free(bv);
    free(vv);
    mlxn_buffer_destroy(a);
    mlxn_buffer_destroy(b);
    mlxn_buffer_destroy(o);
    mlxn_buffer_destroy(vb);
}

/* rms_norm / add_rms_norm rows on the scalar, AVX2 and AVX-512 kernels
 * (mlxn_mm_force_isa 1, 2, 0): no weight and f32 / f16 / bf16 weights, a
 * width with tails for 16 and 8 lanes (203), in place (output = input,
 * sum = residual). The scalar form against the double reference; the
 * vector forms take each element's products in the scalar order, so they
 * must equal it exactly. */
static void test_rms_forms(void) {
    const int R = 3, C = 203;
    const mlxn_dtype wts[] = {MLXN_F32, MLXN_F16, MLXN_BF16, MLXN_F32};
    size_t n = (size_t)(R * C);
    for (int wi = 0; wi < 4; wi++) {
        const bool none = wi == 3; /* the last: no weight */
        mlxn_buffer *x = mk(MLXN_F32, 2, R, C, 0), *y = mk(MLXN_F32, 2, R, C, 0), *o = mk(MLXN_F32, 2, R, C, 0),
                    *sum = mk(MLXN_F32, 2, R, C, 0), *w = none ? NULL : mk(wts[wi], 1, C, 0, 0);
        float *xv = rnd(x, -2, 2), *yv = rnd(y, -2, 2);
        float *wv = none ? NULL : wts[wi] == MLXN_F32 ? rnd(w, 0.5f, 1.5f) : rnd16(w, 0.5f, 1.5f);
        float *got[3][3] = {{NULL}}; /* [form][rms_norm, add_rms_norm out, its sum] */
        const int forms[3] = {1, 2, 0};
        for (int f = 0; f < 3; f++) {
            mlxn_mm_force_isa(forms[f]);
            /* rms_norm in place on a copy of x; add_rms_norm with sum = y */
            CHECK_OK(mlxn_buffer_write(o, 0, xv, n * sizeof(float)));
            CHECK_OK(mlxn_op_rms_norm(S, o, o, w, 1e-6f));
            run();
            got[f][0] = get(o);
            CHECK_OK(mlxn_buffer_write(sum, 0, yv, n * sizeof(float)));
            poison(o);
            CHECK_OK(mlxn_op_add_rms_norm(S, sum, o, x, sum, w, 1e-6f));
            run();
            got[f][1] = get(o);
            got[f][2] = get(sum);
        }
        mlxn_mm_force_isa(0);
        double *ref = malloc(n * sizeof(double)), *aref = malloc(n * sizeof(double)), *sref = malloc(n * sizeof(double));
        for (int r = 0; r < R; r++) {
            double ss = 0, sa = 0;
            for (int i = 0; i < C; i++) {
                float sv = xv[r * C + i] + yv[r * C + i];
                sref[r * C + i] = sv;
                ss += (double)xv[r * C + i] * xv[r * C + i];
                sa += (double)sv * sv;
            }
            double inv = 1 / sqrt(ss / C + 1e-6), ia = 1 / sqrt(sa / C + 1e-6);
            for (int i = 0; i < C; i++) {
                ref[r * C + i] = xv[r * C + i] * inv * (none ? 1.0 : wv[i]);
                aref[r * C + i] = sref[r * C + i] * ia * (none ? 1.0 : wv[i]);
            }
        }
        char name[96];
        const char *wn = none ? "no weight" : mlxn_dtype_name(wts[wi]);
        snprintf(name, sizeof name, "rms_norm in place, %s, scalar", wn);
        check_close(name, got[0][0], ref, n, 1e-6, 1e-5);
        snprintf(name, sizeof name, "add_rms_norm (sum in place), %s, scalar", wn);
        check_close(name, got[0][1], aref, n, 1e-6, 1e-5);
        snprintf(name, sizeof name, "add_rms_norm sum, %s, scalar", wn);
        check_close(name, got[0][2], sref, n, 0, 0);
        for (int f = 1; f < 3; f++)
            for (int k = 0; k < 3; k++) {
                int diff = 0;
                for (size_t i = 0; i < n; i++) diff += memcmp(&got[f][k][i], &got[0][k][i], sizeof(float)) != 0;
                CHECK(diff == 0, "%s %s, %s: %d of %zu elements differ from the scalar kernel's",
                      k == 0 ? "rms_norm" : k == 1 ? "add_rms_norm out" : "add_rms_norm sum", wn,
                      forms[f] == 2 ? "AVX2" : "AVX-512 (or the best the CPU has)", diff, n);
            }
        for (int f = 0; f < 3; f++)
            for (int k = 0; k < 3; k++) free(got[f][k]);
        free(ref); free(aref); free(sref); free(xv); free(yv); free(wv);
        mlxn_buffer *all[] = {x, y, o, sum, w};
        for (int i = 0; i < 5; i++) mlxn_buffer_destroy(all[i]);
    }
}

static void test_norms_softmax(void) {
    const int R = 4, C = 200;
    mlxn_buffer *x = mk(MLXN_F32, 2, R, C, 0), *y = mk(MLXN_F32, 2, R, C, 0), *o = mk(MLXN_F32, 2, R, C, 0),
                *sum = mk(MLXN_F32, 2, R, C, 0), *w = mk(MLXN_BF16, 1, C, 0, 0), *bb = mk(MLXN_F32, 1, C, 0, 0),
                *mask = mk(MLXN_F32, 2, R, C, 0);
    float *xv = rnd(x, -2, 2), *yv = rnd(y, -2, 2), *wv = rnd16(w, 0.5f, 1.5f), *bv = rnd(bb, -1, 1), *mv = rnd(mask, -4, 0);
    size_t n = (size_t)(R * C);
    double *ref = malloc(n * sizeof(double)), *sref = malloc(n * sizeof(double));
    /* rms_norm: the sum of squares is taken in double; output rounding 1e-6 */
    poison(o);
    CHECK_OK(mlxn_op_rms_norm(S, o, x, w, 1e-6f));
    run();
    for (int r = 0; r < R; r++) {
        double ss = 0;
        for (int i = 0; i < C; i++) ss += (double)xv[r * C + i] * xv[r * C + i];
        double inv = 1 / sqrt(ss / C + 1e-6);
        for (int i = 0; i < C; i++) ref[r * C + i] = xv[r * C + i] * inv * wv[i];
    }
    float *ov = get(o);
    check_close("rms_norm bf16 weight", ov, ref, n, 1e-6, 1e-5);
    free(ov);
    poison(o);
    poison(sum);
    CHECK_OK(mlxn_op_add_rms_norm(S, sum, o, x, y, w, 1e-6f));
    run();
    for (int r = 0; r < R; r++) {
        double ss = 0;
        for (int i = 0; i < C; i++) {
            float sv = xv[r * C + i] + yv[r * C + i];
            sref[r * C + i] = sv;
            ss += (double)sv * sv;
        }
        double inv = 1 / sqrt(ss / C + 1e-6);
        for (int i = 0; i < C; i++) ref[r * C + i] = sref[r * C + i] * inv * wv[i];
    }
    ov = get(o);
    check_close("add_rms_norm out", ov, ref, n, 1e-6, 1e-5);
    free(ov);
    ov = get(sum);
    check_close("add_rms_norm sum", ov, sref, n, 0, 0);
    free(ov);
    poison(o);
    CHECK_OK(mlxn_op_layer_norm(S, o, x, w, bb, 1e-5f));
    run();
    for (int r = 0; r < R; r++) {
        double m = 0, v = 0;
        for (int i = 0; i < C; i++) m += xv[r * C + i];
        m /= C;
        for (int i = 0; i < C; i++) v += (xv[r * C + i] - m) * (xv[r * C + i] - m);
        double inv = 1 / sqrt(v / C + 1e-5);
        for (int i = 0; i < C; i++) ref[r * C + i] = (xv[r * C + i] - m) * inv * wv[i] + bv[i];
    }
    ov = get(o);
    check_close("layer_norm", ov, ref, n, 1e-6, 1e-5);
    free(ov);
    /* softmax: e^x per element (expf, or exp_512 within ~1e-7 of it) and a
     * double sum; probabilities to 1e-5 relative */
    poison(o);
    CHECK_OK(mlxn_op_softmax(S, o, x, mask, 0.7f));
    run();
    for (int r = 0; r < R; r++) {
        double mx = -1e300, s = 0;
        for (int i = 0; i < C; i++) mx = fmax(mx, xv[r * C + i] * (double)0.7f + mv[r * C + i]);
        for (int i = 0; i < C; i++) s += exp(xv[r * C + i] * (double)0.7f + mv[r * C + i] - mx);
        for (int i = 0; i < C; i++) ref[r * C + i] = exp(xv[r * C + i] * (double)0.7f + mv[r * C + i] - mx) / s;
    }
    ov = get(o);
    check_close("softmax with mask", ov, ref, n, 1e-8, 1e-5);
    free(ov);
    /* without a mask, and with row 0 masked out entirely (-inf: zeros out) */
    for (size_t i = 0; i < n; i++) mv[i] = i < (size_t)C ? -INFINITY : 0.0f;
    CHECK_OK(mlxn_buffer_write(mask, 0, mv, n * sizeof(float)));
    for (int pass = 0; pass < 2; pass++) {
        poison(o);
        CHECK_OK(mlxn_op_softmax(S, o, x, pass ? mask : NULL, 0.7f));
        run();
        for (int r = 0; r < R; r++) {
            double mx = -1e300, sm = 0;
            for (int i = 0; i < C; i++) mx = fmax(mx, xv[r * C + i] * (double)0.7f);
            for (int i = 0; i < C; i++) sm += exp(xv[r * C + i] * (double)0.7f - mx);
            for (int i = 0; i < C; i++)
                ref[r * C + i] = pass && r == 0 ? 0.0 : exp(xv[r * C + i] * (double)0.7f - mx) / sm;
        }
        ov = get(o);
        check_close(pass ? "softmax, a row masked out" : "softmax without mask", ov, ref, n, 1e-8, 1e-5);
        free(ov);
    }
    free(ref);
    free(sref);
    free(xv); free(yv); free(wv); free(bv); free(mv);
    mlxn_buffer *all[] = {x, y, o, sum, w, bb, mask};
    for (size_t i = 0; i < 7; i++) mlxn_buffer_destroy(all[i]);
}

static void test_matmul_dense(void) {
    const int M = 3, K = 160, N = 37;
    mlxn_dtype types[3] = {MLXN_F32, MLXN_F16, MLXN_BF16};
    mlxn_buffer *x = mk(MLXN_F32, 2, M, K, 0), *o = mk(MLXN_F32, 2, M, N, 0);
    float *xv = rnd(x, -1, 1);
    for (int ti = 0; ti < 3; ti++) {
        mlxn_buffer *w = mk(types[ti], 2, N, K, 0);
        float *wv = types[ti] == MLXN_F32 ? rnd(w, -1, 1) : rnd16(w, -1, 1);
        poison(o);
        CHECK_OK(mlxn_op_matmul(S, o, x, w));
        run();
        double *ref = malloc((size_t)(M * N) * sizeof(double));
        for (int m = 0; m < M; m++)
            for (int c = 0; c < N; c++) {
                double s = 0;
                for (int k = 0; k < K; k++) s += (double)xv[m * K + k] * wv[c * K + k];
                ref[m * N + c] = s;
            }
        float *ov = get(o);
        /* f32 accumulation of K=160 products of magnitude <= 1: error ~ K * 2^-24 * typical |term| */
        char name[64];
        snprintf(name, sizeof name, "matmul w=%s", mlxn_dtype_name(types[ti]));
        check_close(name, ov, ref, (size_t)(M * N), 2e-5, 1e-5);
        free(ov);
        free(ref);
        free(wv);
        mlxn_buffer_destroy(w);
    }
    free(xv);
    mlxn_buffer *wbad = mk(MLXN_F32, 2, N, K + 1, 0);
    CHECK_STATUS(mlxn_op_matmul(S, o, x, wbad), MLXN_ERR_SHAPE);
    CHECK_STATUS(mlxn_op_matmul(S, x, x, wbad), MLXN_ERR_SHAPE);
    mlxn_buffer_destroy(wbad);
    mlxn_buffer_destroy(x);
    mlxn_buffer_destroy(o);
}

/* Reference rope in double (same conventions as the header). */
static double inv_freq_ref(const mlxn_rope_params *p, int i, const float *ff) {
    double base = p->base ? p->base : 10000.0, inv = pow(base, -2.0 * i / p->n_dims);
    if (p->scaling == MLXN_ROPE_SCALE_LLAMA3) {
        double wl = 2 * M_PI / inv, lo = p->original_max_pos / (double)p->low_freq_factor,
               hi = p->original_max_pos / (double)p->high_freq_factor;
        if (wl > lo) inv /= p->factor;
        else if (wl >= hi) {
            double sm = (p->original_max_pos / wl - p->low_freq_factor) / (double)(p->high_freq_factor - p->low_freq_factor);
            inv = (1 - sm) * inv / p->factor + sm * inv;
        }
    }
    if (ff) inv /= ff[i];
    return inv;
}

/* rope of x [Tn, H, D] at positions pv in double (params as the op takes
 * them: n_dims 0 = D, factor 0 = 1; ff: frequency factors or NULL). */
static void rope_ref(mlxn_rope_params p, const float *xv, const int32_t *pv, int Tn, int H, int D, const float *ff,
                     double *ref) {
    if (!p.n_dims) p.n_dims = D;
    if (!p.factor) p.factor = 1;
    const int half = p.n_dims / 2;
    for (int t = 0; t < Tn; t++)
        for (int h = 0; h < H; h++) {
            const float *xr = xv + (t * H + h) * D;
            double *r = ref + (t * H + h) * D;
            for (int d = 0; d < D; d++) r[d] = xr[d];
            for (int i = 0; i < half; i++) {
                double pp = p.scaling == MLXN_ROPE_SCALE_LINEAR ? pv[t] / (double)p.factor : pv[t];
                double a = pp * inv_freq_ref(&p, i, ff);
                int i0 = p.mode == MLXN_ROPE_NEOX ? i : 2 * i, i1 = p.mode == MLXN_ROPE_NEOX ? i + half : 2 * i + 1;
                r[i0] = xr[i0] * cos(a) - xr[i1] * sin(a);
                r[i1] = xr[i0] * sin(a) + xr[i1] * cos(a);
            }
        }
}

/* rope of x at positions pv into o (poisoned first; ffb: the frequency
 * factors' buffer, ffv its values, or NULL) against rope_ref. */
static void rope_check(const char *name, mlxn_buffer *o, mlxn_buffer *x, mlxn_buffer *pos, mlxn_buffer *ffb,
                       const float *ffv, mlxn_rope_params p, const float *xv, const int32_t *pv, int Tn, int H, int D) {
    poison(o);
    CHECK_OK(mlxn_op_rope(S, o, x, pos, ffb, &p));
    run();
    const size_t n = (size_t)(Tn * H * D);
    double *ref = malloc(n * sizeof(double));
    rope_ref(p, xv, pv, Tn, H, D, ffb ? ffv : NULL, ref);
    float *ov = get(o);
    /* angles in double, cos/sin rounded to f32, one f32 multiply-add */
    check_close(name, ov, ref, n, 1e-6, 1e-5);
    free(ov);
    free(ref);
}

static void test_rope(void) {
    const int Tn = 3, H = 2, D = 16;
    mlxn_buffer *x = mk(MLXN_F32, 3, Tn, H, D), *o = mk(MLXN_F32, 3, Tn, H, D), *pos = mk(MLXN_I32, 1, Tn, 0, 0),
                *ffb = mk(MLXN_F32, 1, 4, 0, 0);
    float *xv = rnd(x, -1, 1), *ffv = rnd(ffb, 1, 4);
    int32_t pv[3] = {0, 7, 1000};
    CHECK_OK(mlxn_buffer_write(pos, 0, pv, sizeof pv));
    mlxn_rope_params cases[5] = {
        {.mode = MLXN_ROPE_NORMAL},
        {.mode = MLXN_ROPE_NEOX, .base = 500000},
        {.mode = MLXN_ROPE_NEOX, .n_dims = 8},
        {.mode = MLXN_ROPE_NEOX, .base = 500000, .scaling = MLXN_ROPE_SCALE_LLAMA3, .factor = 8, .low_freq_factor = 1, .high_freq_factor = 4, .original_max_pos = 64},
        {.mode = MLXN_ROPE_NORMAL, .scaling = MLXN_ROPE_SCALE_LINEAR, .factor = 4, .n_dims = 8},
    };
    for (int ci = 0; ci < 6; ci++) {
        char name[64];
        snprintf(name, sizeof name, "rope case %d", ci);
        rope_check(name, o, x, pos, ci == 5 ? ffb : NULL, ffv, cases[ci < 5 ? ci : 2], xv, pv, Tn, H, D);
    }
    mlxn_rope_params odd = {.n_dims = 7};
    CHECK_STATUS(mlxn_op_rope(S, o, x, pos, NULL, &odd), MLXN_ERR_SHAPE);
    free(xv);
    free(ffv);
    mlxn_buffer *all[] = {x, o, pos, ffb};
    for (int i = 0; i < 4; i++) mlxn_buffer_destroy(all[i]);
}

/* rope's angle cache (cpu_kernels.c, rope_angles: a thread keeps the
 * angles of the positions it computed, by position mod 1024): positions
 * that share a slot within one call, the same call run again (served from
 * the cache), the frequency factors changed in place (same buffer, new
 * values) and the base changed: each against the double reference. */
static void test_rope_cache(void) {
    const int Tn = 6, H = 2, D = 32;
    mlxn_buffer *x = mk(MLXN_F32, 3, Tn, H, D), *o = mk(MLXN_F32, 3, Tn, H, D), *pos = mk(MLXN_I32, 1, Tn, 0, 0),
                *ffb = mk(MLXN_F32, 1, D / 2, 0, 0);
    float *xv = rnd(x, -1, 1), *ffv = rnd(ffb, 1, 4);
    int32_t pv[6] = {5, 1029, 5, 2053, 1029, 6}; /* 5, 1029 and 2053 share slot 5 */
    CHECK_OK(mlxn_buffer_write(pos, 0, pv, sizeof pv));
    mlxn_rope_params p = {.mode = MLXN_ROPE_NEOX, .base = 10000};
    for (int step = 0; step < 5; step++) {
        if (step == 2) { /* new factor values in the same buffer */
            free(ffv);
            ffv = rnd(ffb, 1, 4);
        }
        if (step == 4) p.base = 500000;
        char name[64];
        snprintf(name, sizeof name, "rope cache step %d", step);
        rope_check(name, o, x, pos, step >= 1 && step <= 3 ? ffb : NULL, ffv, p, xv, pv, Tn, H, D);
    }
    free(xv);
    free(ffv);
    mlxn_buffer *all[] = {x, o, pos, ffb};
    for (int i = 0; i < 4; i++) mlxn_buffer_destroy(all[i]);
}

/* rope at head dims the vector form takes (AVX-512: 16 elements a step,
 * then the scalar tail): NeoX and interleaved pairs, all dims or 96 of
 * 128 rotated (a tail of 8 pairs for NeoX, 48 = 6 x 8 interleaved), in
 * place and not. The scalar kernel (mlxn_mm_force_isa 1) against the
 * double reference; the default kernel bit for bit against it. */
static void test_rope_forms(void) {
    const int Tn = 5, H = 3, D = 128;
    const size_t n = (size_t)(Tn * H * D);
    mlxn_buffer *x = mk(MLXN_F32, 3, Tn, H, D), *o = mk(MLXN_F32, 3, Tn, H, D), *pos = mk(MLXN_I32, 1, Tn, 0, 0);
    float *xv = rnd(x, -1, 1);
    int32_t pv[5] = {0, 3, 77, 1000, 4095};
    CHECK_OK(mlxn_buffer_write(pos, 0, pv, sizeof pv));
    for (int ci = 0; ci < 8; ci++) {
        mlxn_rope_params p = {.mode = ci & 1 ? MLXN_ROPE_NEOX : MLXN_ROPE_NORMAL, .base = 10000,
                              .n_dims = ci & 2 ? 96 : 128};
        const bool in_place = ci & 4;
        float *got[2];
        for (int f = 0; f < 2; f++) {
            mlxn_mm_force_isa(f ? 0 : 1);
            if (in_place) CHECK_OK(mlxn_buffer_write(o, 0, xv, n * sizeof(float)));
            else poison(o);
            CHECK_OK(mlxn_op_rope(S, o, in_place ? o : x, pos, NULL, &p));
            run();
            got[f] = get(o);
        }
        mlxn_mm_force_isa(0);
        double *ref = malloc(n * sizeof(double));
        rope_ref(p, xv, pv, Tn, H, D, NULL, ref);
        char name[96];
        snprintf(name, sizeof name, "rope %s, %d of %d dims%s, scalar", p.mode == MLXN_ROPE_NEOX ? "neox" : "interleaved",
                 p.n_dims, D, in_place ? ", in place" : "");
        check_close(name, got[0], ref, n, 1e-6, 1e-5);
        int diff = 0;
        for (size_t i = 0; i < n; i++) diff += memcmp(&got[1][i], &got[0][i], sizeof(float)) != 0;
        CHECK(diff == 0, "%s: the default kernel differs from the scalar one in %d of %zu elements", name, diff, n);
        free(ref);
        free(got[0]);
        free(got[1]);
    }
    free(xv);
    mlxn_buffer *all[] = {x, o, pos};
    for (int i = 0; i < 3; i++) mlxn_buffer_destroy(all[i]);
}

static void test_copy_gather_argmax(void) {
    const int V = 50, D = 24, Tn = 4;
    mlxn_buffer *tab = mk(MLXN_F16, 2, V, D, 0), *ids = mk(MLXN_I32, 1, Tn, 0, 0), *o = mk(MLXN_F32, 2, Tn, D, 0);
    float *tv = rnd16(tab, -1, 1);
    int32_t iv[4] = {3, 0, 49, 3};
    CHECK_OK(mlxn_buffer_write(ids, 0, iv, sizeof iv));
    poison(o);
    CHECK_OK(mlxn_op_get_rows(S, o, tab, ids));
    run();
    double ref[4 * 24];
    for (int t = 0; t < Tn; t++)
        for (int d = 0; d < D; d++) ref[t * D + d] = tv[iv[t] * D + d];
    float *ov = get(o);
    check_close("get_rows f16", ov, ref, Tn * D, 0, 0); /* exact: f16 -> f32 is exact */
    free(ov);
    iv[1] = 50;
    CHECK_OK(mlxn_buffer_write(ids, 0, iv, sizeof iv));
    CHECK_OK(mlxn_op_get_rows(S, o, tab, ids));
    run();
    ov = get(o);
    CHECK(isnan(ov[D]) && !isnan(ov[0]), "an out-of-range id gives a NaN row, others intact");
    free(ov);
    /* copy f32 -> bf16 -> f32 rounds to nearest even */
    mlxn_buffer *a = mk(MLXN_F32, 1, 300, 0, 0), *h = mk(MLXN_BF16, 1, 300, 0, 0), *back = mk(MLXN_F32, 1, 300, 0, 0);
    float *av = rnd(a, -100, 100);
    CHECK_OK(mlxn_op_copy(S, h, a));
    CHECK_OK(mlxn_op_copy(S, back, h));
    run();
    double cref[300];
    for (int i = 0; i < 300; i++) cref[i] = mlxn_bf16_to_f32(mlxn_f32_to_bf16(av[i]));
    ov = get(back);
    check_close("copy f32->bf16->f32", ov, cref, 300, 0, 0);
    free(ov);
    /* argmax */
    mlxn_buffer *am = mk(MLXN_I32, 1, 3, 0, 0), *lg = mk(MLXN_F32, 2, 3, 100, 0);
    float *lv = rnd(lg, -5, 5);
    CHECK_OK(mlxn_op_argmax(S, am, lg));
    run();
    int32_t got[3];
    CHECK_OK(mlxn_buffer_read(am, 0, got, sizeof got));
    for (int r = 0; r < 3; r++) {
        int best = 0;
        for (int i = 1; i < 100; i++) if (lv[r * 100 + i] > lv[r * 100 + best]) best = i;
        CHECK(got[r] == best, "argmax row %d: %d vs %d", r, got[r], best);
    }
    free(tv); free(av); free(lv);
    mlxn_buffer *all[] = {tab, ids, o, a, h, back, am, lg};
    for (int i = 0; i < 8; i++) mlxn_buffer_destroy(all[i]);
}

/* Attention against a direct softmax(QK^T)V over the cache in double. */
static void attention_case(const char *name, int Tn, int H, int Hkv, int D, int C, int start, int window,
                           float softcap, mlxn_dtype cdt) {
    mlxn_buffer *q = mk(MLXN_F32, 3, Tn, H, D), *k = mk(MLXN_F32, 3, Tn, Hkv, D), *v = mk(MLXN_F32, 3, Tn, Hkv, D),
                *kc = mk(cdt, 3, Hkv, C, D), *vc = mk(cdt, 3, Hkv, C, D), *pos = mk(MLXN_I32, 1, Tn, 0, 0),
                *o = mk(MLXN_F32, 3, Tn, H, D);
    /* history: fill caches with random values representing positions < start */
    float *kh = cdt == MLXN_F32 ? rnd(kc, -1, 1) : rnd16(kc, -1, 1);
    float *vh = cdt == MLXN_F32 ? rnd(vc, -1, 1) : rnd16(vc, -1, 1);
    float *qv = rnd(q, -1, 1), *kv = rnd(k, -1, 1), *vv = rnd(v, -1, 1);
    int32_t *pv = malloc((size_t)Tn * 4);
    for (int t = 0; t < Tn; t++) pv[t] = start + t;
    CHECK_OK(mlxn_buffer_write(pos, 0, pv, (size_t)Tn * 4));
    poison(o);
    CHECK_OK(mlxn_op_kv_write(S, kc, k, pos));
    CHECK_OK(mlxn_op_kv_write(S, vc, v, pos));
    mlxn_attention_params ap = {.window = window, .softcap = softcap};
    CHECK_OK(mlxn_op_attention(S, o, q, kc, vc, pos, &ap));
    run();
    /* the cache after the write, as the reference sees it */
    for (int t = 0; t < Tn; t++)
        for (int h = 0; h < Hkv; h++)
            for (int d = 0; d < D; d++) {
                size_t at = (size_t)((h * C + pv[t] % C) * D + d);
                float kk = kv[(t * Hkv + h) * D + d], vvv = vv[(t * Hkv + h) * D + d];
                if (cdt == MLXN_F16) { kk = mlxn_f16_to_f32(mlxn_f32_to_f16(kk)); vvv = mlxn_f16_to_f32(mlxn_f32_to_f16(vvv)); }
                if (cdt == MLXN_BF16) { kk = mlxn_bf16_to_f32(mlxn_f32_to_bf16(kk)); vvv = mlxn_bf16_to_f32(mlxn_f32_to_bf16(vvv)); }
                kh[at] = kk;
                vh[at] = vvv;
            }
    size_t n = (size_t)(Tn * H * D);
    double *ref = malloc(n * sizeof(double));
    double scale = 1 / sqrt((double)D);
    for (int t = 0; t < Tn; t++)
        for (int h = 0; h < H; h++) {
            int hk = h / (H / Hkv);
            int first = pv[t] - C + 1;
            if (window > 0 && pv[t] - window + 1 > first) first = pv[t] - window + 1;
            if (first < 0) first = 0;
            double mx = -1e300, s = 0, *acc = calloc((size_t)D, sizeof(double));
            int L = pv[t] - first + 1;
            double *sc = malloc((size_t)L * sizeof(double));
            for (int p = first; p <= pv[t]; p++) {
                double d = 0;
                for (int i = 0; i < D; i++) d += (double)qv[(t * H + h) * D + i] * kh[(hk * C + p % C) * D + i];
                d *= scale;
                if (softcap > 0) d = tanh(d / softcap) * softcap;
                sc[p - first] = d;
                mx = fmax(mx, d);
            }
            for (int p = 0; p < L; p++) s += exp(sc[p] - mx);
            for (int p = first; p <= pv[t]; p++) {
                double w = exp(sc[p - first] - mx) / s;
                for (int i = 0; i < D; i++) acc[i] += w * vh[(hk * C + p % C) * D + i];
            }
            for (int i = 0; i < D; i++) ref[(t * H + h) * D + i] = acc[i];
            free(acc);
            free(sc);
        }
    float *ov = get(o);
    /* online softmax in f32 over <= C positions: errors ~1e-6 of values <= 1 */
    check_close(name, ov, ref, n, 2e-6, 1e-5);
    free(ov);
    free(ref);
    free(pv);
    free(kh); free(vh); free(qv); free(kv); free(vv);
    mlxn_buffer *all[] = {q, k, v, kc, vc, pos, o};
    for (int i = 0; i < 7; i++) mlxn_buffer_destroy(all[i]);
}

static void test_attention(void) {
    attention_case("attention decode f32 GQA 4:2", 1, 4, 2, 32, 64, 20, 0, 0, MLXN_F32);
    attention_case("attention prefill causal f16 cache", 6, 4, 1, 64, 32, 0, 0, 0, MLXN_F16);
    attention_case("attention sliding window 5 + softcap", 3, 2, 2, 64, 40, 10, 5, 20.0f, MLXN_BF16);
    attention_case("attention ring cache past C", 2, 2, 1, 128, 16, 37, 0, 0, MLXN_F32);
    attention_case("attention head dim 256", 1, 2, 1, 256, 8, 3, 0, 0, MLXN_F16);
    /* decode on a 16-bit cache read in place (attend_tile_512's direct
     * path) with 4 / 3 / 2 query heads a kv head, D a multiple of 64 or
     * not, several key blocks and a tail of keys; and two tokens */
    attention_case("attention decode f16 4 heads a kv head, D=128, 251 keys", 1, 8, 2, 128, 300, 250, 0, 0, MLXN_F16);
    attention_case("attention decode bf16 3 heads a kv head, D=96, 131 keys", 1, 6, 2, 96, 200, 130, 0, 0, MLXN_BF16);
    attention_case("attention decode f16 2 heads a kv head, D=64, 70 keys", 1, 4, 2, 64, 100, 69, 0, 0, MLXN_F16);
    attention_case("attention 2 tokens f16 4 heads a kv head, D=64", 2, 4, 1, 64, 100, 40, 0, 0, MLXN_F16);
    /* the heads of a kv head read each key / value row once (attend_mq_256):
     * 7 and 8 of them (8 columns a step), 2 with D % 16 = 8 (16 and then
     * 8), a ring read past its end, a window, f32 rows */
    attention_case("attention decode f16 7 heads a kv head, D=40, ring past C", 1, 14, 2, 40, 64, 150, 0, 0, MLXN_F16);
    attention_case("attention decode bf16 8 heads a kv head, D=72", 1, 16, 2, 72, 200, 180, 0, 0, MLXN_BF16);
    attention_case("attention decode f16 3 heads one kv head, D=72", 1, 3, 1, 72, 200, 97, 0, 0, MLXN_F16);
    attention_case("attention decode f16 4 heads a kv head, window 50", 1, 8, 1, 64, 400, 300, 50, 0, MLXN_F16);
    attention_case("attention decode f32 5 heads a kv head, D=32", 1, 10, 1, 32, 300, 211, 0, 0, MLXN_F32);
    /* kv heads that do not split evenly over the 2 workers: runs of (kv
     * head, position) pairs, a kv head cut between them merged by the last
     * (SmolLM2's 9 / 3 heads; one key; a window with soft-capping; a ring) */
    attention_case("attention decode f16 9 heads on 3 kv heads, D=64", 1, 9, 3, 64, 300, 250, 0, 0, MLXN_F16);
    attention_case("attention decode 3 kv heads at position 0", 1, 6, 3, 64, 32, 0, 0, 0, MLXN_F16);
    attention_case("attention decode 3 kv heads, window 40 + softcap", 1, 6, 3, 32, 200, 150, 40, 25.0f, MLXN_F32);
    attention_case("attention decode bf16 5 kv heads, ring past C", 1, 10, 5, 64, 64, 200, 0, 0, MLXN_BF16);
    attention_case("attention prefill 20 tokens in query tiles, window 7", 20, 4, 2, 64, 64, 10, 7, 0, MLXN_F16);
    attention_case("attention prefill 100 tokens, 2 key blocks", 100, 2, 1, 32, 128, 0, 0, 0, MLXN_F32);
    /* whole key blocks that two neighbouring queries of a tile both see
     * (attend_pair_512 / _256: the last tiles here, of at most 8 queries;
     * the full tiles of 32 take the queries-as-lanes form below), at head
     * dims 64, 128 (64-column value steps) and 80 (64 then 16), an odd
     * query count a tile, 1-3 trailing keys */
    attention_case("attention prefill 131 tokens f16, D=64, query pairs", 131, 4, 2, 64, 160, 0, 0, 0, MLXN_F16);
    attention_case("attention prefill 99 tokens bf16, D=128, query pairs", 99, 2, 1, 128, 128, 0, 0, 0, MLXN_BF16);
    attention_case("attention prefill 70 tokens f32, D=80, after 3", 70, 3, 1, 80, 96, 3, 0, 0, MLXN_F32);
    /* prefill tiles of more than 8 queries take the queries as lanes
     * (attend_tile_qt): last tiles of 9, 26 (two heads of 13), 30 and 15
     * (three heads of 5) queries, so P·V's 4 queries a step leaves 1, 2
     * or 3; a ring past C; a window that leaves queries of a tile without
     * keys in a block; D = 80 (64 value columns, then 16) */
    attention_case("attention prefill 41 tokens f16, one head, tiles of 32 + 9", 41, 1, 1, 64, 64, 0, 0, 0, MLXN_F16);
    attention_case("attention prefill 45 tokens f16, tiles of 32 + 13", 45, 4, 2, 64, 96, 0, 0, 0, MLXN_F16);
    attention_case("attention prefill 30 tokens bf16 after 40, ring past C", 30, 2, 1, 64, 48, 40, 0, 0, MLXN_BF16);
    attention_case("attention prefill 101 tokens f32, D=80, window 25", 101, 3, 1, 80, 128, 5, 25, 0, MLXN_F32);
    /* the tiles of up to ATT_QT_G (4) heads of a kv head go through
     * attend_tile_qt together: 6 heads a kv head take 4 + 2 a full tile
     * (the last, 6 tokens: 5 heads of 6, then one of 6 alone in the
     * form); 40 heads of one kv head in decode take 32 + 8 */
    attention_case("attention prefill 70 tokens f16, 6 heads a kv head", 70, 12, 2, 64, 96, 0, 0, 0, MLXN_F16);
    attention_case("attention decode f16 40 heads on one kv head", 1, 40, 1, 64, 160, 130, 0, 0, MLXN_F16);
    /* caches of >= 512 rows with at most 2 (token, head) pairs per worker
     * (2 workers here) take the split-KV path */
    attention_case("attention split-KV decode, C=1024", 1, 4, 2, 64, 1024, 900, 0, 0, MLXN_F16);
    attention_case("attention split-KV ring past C=512", 1, 2, 1, 64, 512, 1500, 0, 0, MLXN_F32);
    attention_case("attention split-KV window 100 + softcap", 1, 4, 1, 64, 768, 700, 100, 30.0f, MLXN_BF16);
    attention_case("attention split-KV, 3 queries from position 0", 3, 1, 1, 32, 600, 0, 0, 0, MLXN_F32);
    {
        mlxn_buffer *q = mk(MLXN_F32, 3, 1, 2, 64), *kc = mk(MLXN_F16, 3, 1, 1024, 64), *pos = mk(MLXN_I32, 1, 1, 0, 0),
                    *o = mk(MLXN_F32, 3, 1, 2, 64);
        int32_t p0 = 5;
        CHECK_OK(mlxn_buffer_write(pos, 0, &p0, 4));
        mlxn_session *s2 = NULL;
        CHECK_OK(mlxn_session_create(&s2, dev, MLXN_MODE_BATCHED, 0));
        CHECK_OK(mlxn_op_attention(s2, o, q, kc, kc, pos, NULL));
        CHECK_OK(mlxn_session_finish(s2));
        mlxn_graph_stats st;
        mlxn_session_stats(s2, &st);
        CHECK(st.nodes == 2 && st.barriers == 1, "long-cache decode attention records a split and a merge (%u nodes)",
              st.nodes);
        mlxn_session_destroy(s2);
        mlxn_buffer *all[] = {q, kc, pos, o};
        for (int i = 0; i < 4; i++) mlxn_buffer_destroy(all[i]);
    }
    mlxn_buffer *q = mk(MLXN_F32, 3, 1, 3, 8), *kc = mk(MLXN_F32, 3, 2, 4, 8), *pos = mk(MLXN_I32, 1, 1, 0, 0), *o = mk(MLXN_F32, 3, 1, 3, 8);
    CHECK_STATUS(mlxn_op_attention(S, o, q, kc, kc, pos, NULL), MLXN_ERR_SHAPE); /* 3 heads over 2 kv heads */
    mlxn_buffer *all[] = {q, kc, pos, o};
    for (int i = 0; i < 4; i++) mlxn_buffer_destroy(all[i]);
}

static void test_top_k(void) {
    const int R = 3, C = 300, K = 17;
    mlxn_buffer *x = mk(MLXN_F32, 2, R, C, 0), *idx = mk(MLXN_I32, 2, R, K, 0), *val = mk(MLXN_F32, 2, R, K, 0);
    float *xv = malloc((size_t)(R * C) * 4);
    for (int i = 0; i < R * C; i++) xv[i] = (float)rng_int(-40, 40) * 0.25f; /* many ties */
    CHECK_OK(mlxn_buffer_write(x, 0, xv, (size_t)(R * C) * 4));
    poison(idx);
    poison(val);
    CHECK_OK(mlxn_op_top_k(S, idx, val, x, K));
    run();
    int32_t *gi = malloc((size_t)(R * K) * 4);
    CHECK_OK(mlxn_buffer_read(idx, 0, gi, (size_t)(R * K) * 4));
    float *gv = get(val);
    int bad = 0;
    for (int r = 0; r < R; r++) {
        /* reference: selection by (value desc, index asc), k times */
        char *used = calloc((size_t)C, 1);
        for (int j = 0; j < K; j++) {
            int best = -1;
            for (int i = 0; i < C; i++)
                if (!used[i] && (best < 0 || xv[r * C + i] > xv[r * C + best])) best = i;
            used[best] = 1;
            if (gi[r * K + j] != best || gv[r * K + j] != xv[r * C + best]) bad++;
        }
        free(used);
    }
    CHECK(bad == 0, "top_k: %d of %d entries differ from the sorted reference", bad, R * K);
    CHECK_STATUS(mlxn_op_top_k(S, idx, val, x, C + 1), MLXN_ERR_INVALID_ARG);
    free(xv); free(gi); free(gv);
    mlxn_buffer_destroy(x); mlxn_buffer_destroy(idx); mlxn_buffer_destroy(val);
}

/* logsumexp: (m, s) per row against a long double reference. m is a max,
 * so exact. s is accumulated in double and rounded once to f32: within
 * 2^-24 relative from the rounding plus C * 2^-53 from the sum, so rtol
 * 2^-23 (1.2e-7) with no atol (s >= 1). */
static void test_logsumexp(void) {
    const int C[2] = {1000, 40000};
    const double scales[3] = {1.0 / 0.7, 1.0, 3.0};
    for (int ci = 0; ci < 2; ci++) {
        const int R = 5, n = R * C[ci];
        mlxn_buffer *x = mk(MLXN_F32, 2, R, C[ci], 0), *o = mk(MLXN_F32, 2, R, 2, 0);
        float *xv = malloc((size_t)n * 4);
        rng_fill(xv, (size_t)n, -20, 20);
        for (int i = 0; i < C[ci]; i += 7) xv[C[ci] + i] = -INFINITY; /* row 1: masked entries */
        for (int i = 0; i < C[ci]; i++) xv[2 * C[ci] + i] = (float)rng_int(-8, 8) * 0.5f; /* row 2: ties */
        for (int i = 0; i < C[ci]; i++) xv[4 * C[ci] + i] = -INFINITY; /* row 4: nothing */
        CHECK_OK(mlxn_buffer_write(x, 0, xv, (size_t)n * 4));
        for (int si = 0; si < 3; si++) {
            poison(o);
            CHECK_OK(mlxn_op_logsumexp(S, o, x, scales[si]));
            run();
            float *g = get(o);
            double ref[2 * 5];
            for (int r = 0; r < R; r++) {
                const float *row = xv + (size_t)r * C[ci];
                float m = -INFINITY;
                for (int i = 0; i < C[ci]; i++) m = row[i] > m ? row[i] : m;
                long double sum = 0;
                for (int i = 0; m != -INFINITY && i < C[ci]; i++)
                    sum += expl(((long double)row[i] - m) * (long double)scales[si]);
                ref[2 * r] = m;
                ref[2 * r + 1] = (double)sum;
            }
            char what[80];
            snprintf(what, sizeof what, "logsumexp %d x %d, scale %.4g", R, C[ci], scales[si]);
            int bad = 0;
            for (int r = 0; r < R; r++) {
                bad += !(g[2 * r] == (float)ref[2 * r]);
                bad += check_close(what, g + 2 * r + 1, ref + 2 * r + 1, 1, 0.0, 0x1p-23);
            }
            CHECK(bad == 0, "%s: %d of %d values off (max exact, sum rtol 2^-23)", what, bad, 2 * R);
            CHECK(g[8] == -INFINITY && g[9] == 0.0f, "%s: an all -inf row gives (%g, %g), want (-inf, 0)", what,
                  (double)g[8], (double)g[9]);
            if (!bad) printf("  ok %s (max exact, sum rtol 2^-23)\n", what);
            free(g);
        }
        free(xv);
        mlxn_buffer_destroy(x);
        mlxn_buffer_destroy(o);
    }
    /* NaN: not a max, but the sum is NaN */
    mlxn_buffer *x = mk(MLXN_F32, 2, 1, 4, 0), *o = mk(MLXN_F32, 2, 1, 2, 0);
    float nv[4] = {1.0f, NAN, 3.0f, -2.0f}, g[2];
    CHECK_OK(mlxn_buffer_write(x, 0, nv, sizeof nv));
    CHECK_OK(mlxn_op_logsumexp(S, o, x, 1.0));
    run();
    CHECK_OK(mlxn_buffer_read(o, 0, g, sizeof g));
    CHECK(g[0] == 3.0f && isnan(g[1]), "logsumexp with a NaN: (%g, %g), want (3, nan)", (double)g[0], (double)g[1]);
    /* bad input */
    CHECK_STATUS(mlxn_op_logsumexp(S, o, x, 0.0), MLXN_ERR_INVALID_ARG);
    CHECK_STATUS(mlxn_op_logsumexp(S, o, x, -1.0), MLXN_ERR_INVALID_ARG);
    CHECK_STATUS(mlxn_op_logsumexp(S, o, x, NAN), MLXN_ERR_INVALID_ARG);
    CHECK_STATUS(mlxn_op_logsumexp(S, o, x, INFINITY), MLXN_ERR_INVALID_ARG);
    CHECK_STATUS(mlxn_op_logsumexp(S, x, x, 1.0), MLXN_ERR_SHAPE);
    CHECK_STATUS(mlxn_op_logsumexp(NULL, o, x, 1.0), MLXN_ERR_INVALID_ARG);
    CHECK_STATUS(mlxn_op_logsumexp(S, o, NULL, 1.0), MLXN_ERR_INVALID_ARG);
    mlxn_buffer *oi = mk(MLXN_I32, 2, 1, 2, 0), *x2 = mk(MLXN_F32, 2, 2, 2, 0), *ov = NULL;
    CHECK_STATUS(mlxn_op_logsumexp(S, oi, x, 1.0), MLXN_ERR_DTYPE);
    int64_t vs[2] = {1, 2};
    CHECK_OK(mlxn_buffer_view(&ov, x2, MLXN_F32, 2, vs, 0)); /* out = row 0 of x2 [1, 2]: overlaps */
    mlxn_buffer *x1 = NULL;
    CHECK_OK(mlxn_buffer_view(&x1, x2, MLXN_F32, 2, vs, 0));
    CHECK_STATUS(mlxn_op_logsumexp(S, ov, x1, 1.0), MLXN_ERR_INVALID_ARG);
    mlxn_buffer_destroy(ov); mlxn_buffer_destroy(x1); mlxn_buffer_destroy(x2); mlxn_buffer_destroy(oi);
    mlxn_buffer_destroy(x); mlxn_buffer_destroy(o);
}

/* Quantized weights through the ops: matmul (ggml blocks), matmul_mlx,
 * get_rows / get_rows_mlx and the expert-routed matmul_id, against the
 * double reference of the quant library. Decode paths quantize x to int8 per
 * 32 values (as llama.cpp): the bound is 4e-3 of sum |x_k w_nk| per output. */
/* qw's tensors on the device: w (MLX: the u32 codes) and, for MLX, its
 * scales and biases (else *sc, *bi stay NULL). */
static void upload_q(const mlxn_qweights *qw, mlxn_buffer **w, mlxn_buffer **sc, mlxn_buffer **bi) {
    const int64_t N = qw->mat.N, K = qw->mat.K;
    bool mlx = qw->mat.kind == MLXN_QKIND_MLX;
    int64_t sh[2] = {N, mlx ? K * qw->mat.bits / 32 : K}, ssh[2] = {N, mlx ? K / qw->mat.group : 1};
    CHECK_OK(mlxn_buffer_create(w, dev, mlx ? MLXN_U32 : qw->mat.wtype, 2, sh));
    CHECK_OK(mlxn_buffer_write(*w, 0, qw->data, qw->data_bytes));
    if (mlx) {
        CHECK_OK(mlxn_buffer_create(sc, dev, qw->mat.sb_type, 2, ssh));
        CHECK_OK(mlxn_buffer_create(bi, dev, qw->mat.sb_type, 2, ssh));
        CHECK_OK(mlxn_buffer_write(*sc, 0, qw->scales, qw->sb_bytes));
        CHECK_OK(mlxn_buffer_write(*bi, 0, qw->biases, qw->sb_bytes));
    }
}
/* absdot[m N + n] = sum_k |x[m][k] w[n][k]| over w's dequantized rows (the
 * scale of a matmul output's error bound); the nid rows named in ids are
 * also copied into rows (K doubles each). */
static void abs_dots(const mlxn_qmat *w, const float *x, int64_t M, double *absdot, const int32_t *ids, int nid,
                     double *rows) {
    const int64_t N = w->N, K = w->K;
    float *wrow = malloc((size_t)K * 4);
    for (int64_t nn = 0; nn < N; nn++) {
        mlxn_qmat_dequant_row(w, nn, 0, K, wrow);
        for (int64_t m = 0; m < M; m++) {
            double a = 0;
            for (int64_t k = 0; k < K; k++) a += fabs((double)x[m * K + k] * wrow[k]);
            absdot[m * N + nn] = a;
        }
        for (int r = 0; r < nid; r++)
            if (ids[r] == nn)
                for (int64_t k = 0; k < K; k++) rows[r * K + k] = wrow[k];
    }
    free(wrow);
}
static void check_q(const char *name, const float *got, const double *ref, const double *absdot, size_t n) {
    int bad = 0;
    for (size_t i = 0; i < n; i++)
        if (!(fabs(got[i] - ref[i]) <= 4e-3 * absdot[i] + 1e-6)) {
            if (bad < 3) fprintf(stderr, "  %s[%zu]: ref %.7g got %.7g\n", name, i, ref[i], (double)got[i]);
            bad++;
        }
    CHECK(bad == 0, "%s: %d of %zu outputs outside 4e-3 * sum|x w|", name, bad, n);
}

static void test_quantized_ops(void) {
    const char *fmts[] = {"q4_0", "q4_1", "q8_0", "q4_k", "q5_k", "q6_k", "mlx-q4-g64", "mlx-q8-g32", "mlx-q3-g64",
                          "mlx-q6-g128-f16"};
    const int64_t N = 40, K = 256, M = 2;
    for (size_t fi = 0; fi < sizeof fmts / sizeof fmts[0]; fi++) {
        mlxn_qweights qw;
        CHECK_OK(mlxn_quant_make_random(fmts[fi], N, K, 77 + fi, &qw));
        bool mlx = qw.mat.kind == MLXN_QKIND_MLX;
        mlxn_buffer *w = NULL, *sc = NULL, *bi = NULL;
        upload_q(&qw, &w, &sc, &bi);
        mlxn_buffer *x = mk(MLXN_F32, 2, M, K, 0), *o = mk(MLXN_F32, 2, M, N, 0), *ids = mk(MLXN_I32, 1, 3, 0, 0),
                    *rows = mk(MLXN_F32, 2, 3, K, 0);
        float *xv = rnd(x, -1, 1);
        int32_t iv[3] = {5, 0, 39};
        CHECK_OK(mlxn_buffer_write(ids, 0, iv, sizeof iv));
        poison(o);
        poison(rows);
        mlxn_mlx_quant q = {qw.mat.bits, qw.mat.group};
        if (mlx) {
            CHECK_OK(mlxn_op_matmul_mlx(S, o, x, w, sc, bi, &q));
            CHECK_OK(mlxn_op_get_rows_mlx(S, rows, w, sc, bi, ids, &q));
            /* bad input: scales / biases of the wrong shape (one group too
             * many, or the transpose), a group size the scales do not fit:
             * SHAPE with the tensor and the expected numbers; nothing recorded */
            int64_t bsh[2] = {N, K / qw.mat.group + 1}, tsh[2] = {K / qw.mat.group, N};
            mlxn_buffer *bad = NULL, *badt = NULL;
            CHECK_OK(mlxn_buffer_create(&bad, dev, qw.mat.sb_type, 2, bsh));
            CHECK_OK(mlxn_buffer_create(&badt, dev, qw.mat.sb_type, 2, tsh));
            char want[64];
            snprintf(want, sizeof want, "should be [%lld, %lld]", (long long)N, (long long)(K / qw.mat.group));
            CHECK_STATUS(mlxn_op_matmul_mlx(S, o, x, w, bad, bi, &q), MLXN_ERR_SHAPE);
            CHECK(strstr(mlxn_last_error(), "scales") && strstr(mlxn_last_error(), want),
                  "%s: wrong-shape scales: '%s' names scales and '%s'", fmts[fi], mlxn_last_error(), want);
            CHECK_STATUS(mlxn_op_matmul_mlx(S, o, x, w, sc, badt, &q), MLXN_ERR_SHAPE);
            CHECK(strstr(mlxn_last_error(), "biases") && strstr(mlxn_last_error(), want),
                  "%s: transposed biases: '%s' names biases and '%s'", fmts[fi], mlxn_last_error(), want);
            CHECK_STATUS(mlxn_op_get_rows_mlx(S, rows, w, bad, bi, ids, &q), MLXN_ERR_SHAPE);
            mlxn_mlx_quant q2 = {qw.mat.bits, qw.mat.group == 32 ? 64 : 32};
            CHECK_STATUS(mlxn_op_matmul_mlx(S, o, x, w, sc, bi, &q2), MLXN_ERR_SHAPE);
            mlxn_buffer_destroy(bad);
            mlxn_buffer_destroy(badt);
        } else {
            CHECK_OK(mlxn_op_matmul(S, o, x, w));
            CHECK_OK(mlxn_op_get_rows(S, rows, w, ids));
        }
        run();
        double ref[2 * 40], absdot[2 * 40];
        mlxn_mm_ref(&qw.mat, xv, ref, M, 0, N);
        double rrows[3 * 256];
        abs_dots(&qw.mat, xv, M, absdot, iv, 3, rrows);
        float *ov = get(o);
        char name[64];
        snprintf(name, sizeof name, "matmul %s", fmts[fi]);
        check_q(name, ov, ref, absdot, (size_t)(M * N));
        free(ov);
        ov = get(rows);
        snprintf(name, sizeof name, "get_rows %s", fmts[fi]);
        check_close(name, ov, rrows, (size_t)(3 * K), 0, 0); /* the same dequantizer: exact */
        free(ov);
        free(xv);
        mlxn_buffer *all[] = {w, sc, bi, x, o, ids, rows};
        for (int i = 0; i < 7; i++) mlxn_buffer_destroy(all[i]);
        mlxn_quant_free(&qw);
    }
    /* expert-routed: 4 experts of q4_k [N, K], 3 tokens x top-2 */
    const int E = 4, T2 = 3, TK = 2;
    mlxn_qweights qe;
    CHECK_OK(mlxn_quant_make_random("q4_k", E * N, K, 9, &qe));
    int64_t wsh[3] = {E, N, K};
    mlxn_buffer *w = NULL;
    CHECK_OK(mlxn_buffer_create(&w, dev, MLXN_Q4_K, 3, wsh));
    CHECK_OK(mlxn_buffer_write(w, 0, qe.data, qe.data_bytes));
    mlxn_buffer *x = mk(MLXN_F32, 2, T2, K, 0), *o = mk(MLXN_F32, 2, T2 * TK, N, 0), *ids = mk(MLXN_I32, 2, T2, TK, 0);
    float *xv = rnd(x, -1, 1);
    int32_t iv[6] = {3, 1, 0, 0, 2, 3};
    CHECK_OK(mlxn_buffer_write(ids, 0, iv, sizeof iv));
    poison(o);
    CHECK_OK(mlxn_op_matmul_id(S, o, x, w, ids, 0));
    run();
    double ref[6 * 40], absdot[6 * 40];
    float *wrow = malloc((size_t)K * 4);
    for (int t = 0; t < T2; t++)
        for (int j = 0; j < TK; j++)
            for (int64_t nn = 0; nn < N; nn++) {
                mlxn_qmat_dequant_row(&qe.mat, iv[t * TK + j] * N + nn, 0, K, wrow);
                double a = 0, d = 0;
                for (int64_t k = 0; k < K; k++) {
                    d += (double)xv[t * K + k] * wrow[k];
                    a += fabs((double)xv[t * K + k] * wrow[k]);
                }
                ref[(t * TK + j) * N + nn] = d;
                absdot[(t * TK + j) * N + nn] = a;
            }
    float *ov = get(o);
    check_q("matmul_id q4_k top-2", ov, ref, absdot, (size_t)(T2 * TK * N));
    free(ov); free(wrow); free(xv);
    CHECK_STATUS(mlxn_op_matmul_id(S, o, x, w, ids, 1), MLXN_ERR_SHAPE); /* x_per_slot needs 6 rows */
    mlxn_buffer_destroy(w); mlxn_buffer_destroy(x); mlxn_buffer_destroy(o); mlxn_buffer_destroy(ids);
    mlxn_quant_free(&qe);
}

/* kv_write into an f16 cache stores exactly mlxn_f32_to_f16's bits (the
 * vector paths round to nearest even as it does), rows of 19 so that a
 * vector part and a scalar tail both run; the other rows stay untouched. */
static void test_kv_write_f16(void) {
    enum { HKV = 2, C = 4, D = 19, P = 2 };
    mlxn_buffer *x = mk(MLXN_F32, 3, 1, HKV, D), *c = mk(MLXN_F16, 3, HKV, C, D), *pos = mk(MLXN_I32, 1, 1, 0, 0);
    const float special[] = {0.0f, -0.0f, 65504.0f, 65520.0f, -65520.0f, 1e-8f, 3e-5f, -6.1e-5f,
                             1.0f + 0x1p-11f, 1.0f + 0x3p-11f, 2.9802322e-8f, 5.9604645e-8f, INFINITY, -INFINITY, NAN,
                             0.1f, 1e5f};
    float *xv = rnd(x, -4, 4);
    for (size_t i = 0; i < sizeof special / sizeof special[0]; i++) xv[i * 2] = special[i];
    CHECK_OK(mlxn_buffer_write(x, 0, xv, HKV * D * sizeof(float)));
    int32_t p = P;
    CHECK_OK(mlxn_buffer_write(pos, 0, &p, sizeof p));
    poison(c);
    CHECK_OK(mlxn_op_kv_write(S, c, x, pos));
    run();
    uint16_t got[HKV * C * D];
    CHECK_OK(mlxn_buffer_read(c, 0, got, sizeof got));
    int bad = 0;
    for (int h = 0; h < HKV; h++)
        for (int r = 0; r < C; r++)
            for (int d = 0; d < D; d++) {
                uint16_t want = r == P ? mlxn_f32_to_f16(xv[h * D + d]) : 0xffff;
                if (got[(h * C + r) * D + d] != want && bad++ < 4)
                    CHECK(false, "kv_write f16 head %d row %d [%d]: %04x, want %04x (from %g)", h, r, d,
                          got[(h * C + r) * D + d], want, (double)xv[h * D + d]);
            }
    CHECK(bad == 0, "kv_write f16: %d elements differ from mlxn_f32_to_f16", bad);
    free(xv);
    mlxn_buffer_destroy(x);
    mlxn_buffer_destroy(c);
    mlxn_buffer_destroy(pos);
}

/* Prefill-sized matmuls through the op on the 2 workers: 1000 rows are two
 * of the GEMM's packed row blocks on AVX-512 (512 + 488) and four on AVX2
 * (256 each), the columns split between the workers; checked against the
 * double reference within the path's bound (mlxn_mm_rounds_bf16: 2^-7 +
 * 2^-16 of sum |x w|; f32 paths 1e-5). Outputs poisoned first. */
static void test_matmul_prefill_rows(void) {
    const char *fmts[] = {"q4_1", "mlx-q4-g64"};
    const int64_t N = 72, K = 256, M = 1000;
    for (int f = 0; f >= 0; f = f == 0 ? 2 : -1) { /* as the CPU is, then AVX2 forced */
        mlxn_mm_force_isa(f);
        for (size_t fi = 0; fi < sizeof fmts / sizeof fmts[0]; fi++) {
            mlxn_qweights qw;
            CHECK_OK(mlxn_quant_make_random(fmts[fi], N, K, 300 + fi, &qw));
            bool mlx = qw.mat.kind == MLXN_QKIND_MLX;
            mlxn_buffer *w = NULL, *sc = NULL, *bi = NULL;
            upload_q(&qw, &w, &sc, &bi);
            mlxn_buffer *x = mk(MLXN_F32, 2, M, K, 0), *o = mk(MLXN_F32, 2, M, N, 0);
            float *xv = rnd(x, -1, 1);
            poison(o);
            mlxn_mlx_quant q = {qw.mat.bits, qw.mat.group};
            if (mlx) CHECK_OK(mlxn_op_matmul_mlx(S, o, x, w, sc, bi, &q));
            else CHECK_OK(mlxn_op_matmul(S, o, x, w));
            run();
            double *ref = malloc((size_t)(M * N) * sizeof(double)), *absdot = malloc((size_t)(M * N) * sizeof(double));
            mlxn_mm_ref(&qw.mat, xv, ref, M, 0, N);
            abs_dots(&qw.mat, xv, M, absdot, NULL, 0, NULL);
            const double rel = mlxn_mm_rounds_bf16(&qw.mat, M) ? 1.0 / 128 + 1.0 / 65536 : 1e-5;
            float *ov = get(o);
            int bad = 0;
            for (int64_t i = 0; i < M * N; i++)
                if (!(fabs(ov[i] - ref[i]) <= rel * absdot[i] + 1e-6)) {
                    if (bad < 3)
                        fprintf(stderr, "  %s [%lld]: ref %.7g got %.7g\n", fmts[fi], (long long)i, ref[i], (double)ov[i]);
                    bad++;
                }
            CHECK(bad == 0, "matmul %s, %lld rows (isa %d): %d of %lld outside %g of sum|x w|", fmts[fi], (long long)M, f,
                  bad, (long long)(M * N), rel);
            free(ov);
            free(ref);
            free(absdot);
            free(xv);
            mlxn_buffer *all[] = {w, sc, bi, x, o};
            for (int i = 0; i < 5; i++) mlxn_buffer_destroy(all[i]);
            mlxn_quant_free(&qw);
        }
    }
    mlxn_mm_force_isa(0);
}

/* Decode attention on 5 workers: a kv head's positions cut into up to 5
 * parts, merged by the last (the cases above run on 2). */
static void test_attention_5_workers(void) {
    mlxn_session *s2 = S;
    mlxn_device *d2 = dev;
    mlxn_device_options o = {.n_threads = 5};
    CHECK_OK(mlxn_device_open(&dev, "cpu", &o));
    CHECK_OK(mlxn_session_create(&S, dev, MLXN_MODE_DIRECT, 0));
    attention_case("5 workers: decode f16 9 heads on 3 kv heads", 1, 9, 3, 64, 300, 250, 0, 0, MLXN_F16);
    attention_case("5 workers: decode f16 8 heads on one kv head", 1, 8, 1, 128, 600, 555, 0, 0, MLXN_F16);
    attention_case("5 workers: decode 3 kv heads at position 2", 1, 6, 3, 64, 32, 2, 0, 0, MLXN_BF16);
    attention_case("5 workers: decode f32 2 kv heads, window 40 + softcap", 1, 4, 2, 32, 200, 150, 40, 25.0f, MLXN_F32);
    mlxn_session_destroy(S);
    mlxn_device_close(dev);
    S = s2;
    dev = d2;
}

int main(void) {
    mlxn_device_options o = {.n_threads = 2};
    CHECK_OK(mlxn_device_open(&dev, "cpu", &o));
    CHECK_OK(mlxn_session_create(&S, dev, MLXN_MODE_DIRECT, 0));
    test_elementwise();
    test_norms_softmax();
    test_rms_forms();
    test_matmul_dense();
    test_rope();
    test_rope_forms();
    test_rope_cache();
    test_copy_gather_argmax();
    /* the attention cases again on the AVX2 and scalar kernels (a switch
     * for tests; on a CPU without AVX-512 the first run was AVX2 already) */
    for (int f = 2; f >= 1; f--) {
        mlxn_mm_force_isa(f);
        test_attention();
    }
    mlxn_mm_force_isa(0);
    test_attention();
    test_attention_5_workers();
    test_kv_write_f16();
    test_top_k();
    test_logsumexp();
    test_quantized_ops();
    test_matmul_prefill_rows();
    mlxn_session_destroy(S);
    mlxn_device_close(dev);
    return test_summary("test_ops");
}
