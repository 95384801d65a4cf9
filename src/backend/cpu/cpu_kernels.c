/*
 * cpu_kernels.c — CPU kernels for the op table (elementwise, norms, softmax,
 * rope, gather, KV cache, attention, argmax, dense matmul). Quantized matmul
 * and gather kernels live in src/ops (quant formats) and are entered here.
 * Each kernel computes part ith of nth of its node: rows, columns or
 * (token, head) pairs split evenly.
 */
#include "backend/cpu/cpu.h"
#include "ops/quant.h"

#include <float.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <math.h>
#include <string.h>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#include "core/simd256.h"
#include "core/simd512.h"
#endif

#define T(i) (&n->t[i])
#define F32(i) ((float *)mlxn_tensor_data(T(i)))
#define I32(i) ((int32_t *)mlxn_tensor_data(T(i)))

/* ---- elementwise ---- */

static void k_binary(const mlxn_node *n, int ith, int nth, void *scratch) {
    (void)scratch;
    float *out = F32(0);
    const float *a = F32(1);
    const void *b = mlxn_tensor_data(T(2));
    mlxn_dtype bt = T(2)->dtype;
    int64_t total = mlxn_tensor_elems(T(1)), bn = mlxn_tensor_elems(T(2));
    int64_t lo, hi;
    mlxn_split(total, ith, nth, &lo, &hi);
    bool add = n->op == MLXN_OP_ADD;
    if (bt == MLXN_F32) {
        const float *bf = b;
        if (bn == total) {
            if (add) for (int64_t i = lo; i < hi; i++) out[i] = a[i] + bf[i];
            else for (int64_t i = lo; i < hi; i++) out[i] = a[i] * bf[i];
        } else {
            for (int64_t i = lo; i < hi; i++) {
                float v = bf[i % bn];
                out[i] = add ? a[i] + v : a[i] * v;
            }
        }
        return;
    }
    for (int64_t i = lo; i < hi; i++) {
        float v = mlxn_load_f(b, bt, (size_t)(i % bn));
        out[i] = add ? a[i] + v : a[i] * v;
    }
}

static inline float silu(float x) { return x / (1.0f + expf(-x)); }

#if defined(__x86_64__) || defined(__i386__)
/* e^x for 16 lanes: x = n·ln2 + r, |r| <= ln2/2, e^r by Cephes' expf
 * polynomial (relative error ~1e-7), times 2^n by scalef (overflow to inf,
 * underflow to 0). x is clamped first so huge inputs give inf/0, not NaN. */
__attribute__((target("avx512f"))) static inline __m512 exp_512(__m512 x) {
    x = _mm512_min_ps(_mm512_max_ps(x, _mm512_set1_ps(-104.0f)), _mm512_set1_ps(89.0f));
    __m512 k = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                    _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fnmadd_ps(k, _mm512_set1_ps(0.693359375f), x);
    r = _mm512_fnmadd_ps(k, _mm512_set1_ps(-2.12194440e-4f), r);
    __m512 p = _mm512_set1_ps(1.9875691500e-4f);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.3981999507e-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.3334519073e-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.1665795894e-2f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.6666665459e-1f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(5.0000001201e-1f));
    p = _mm512_fmadd_ps(_mm512_mul_ps(p, r), r, _mm512_add_ps(r, _mm512_set1_ps(1.0f)));
    return _mm512_scalef_ps(p, k);
}

/* out = silu(g) = g / (1 + e^-g), times u when u is not NULL, over
 * [lo, hi), 16 lanes at a time (a masked last step), so every element is
 * computed the same way wherever a thread's range starts: silu then mul
 * equals silu_mul exactly (the fusion tests). Within ~2e-7 relative of the
 * libm expression. */
__attribute__((target("avx512f"))) static void silu_512(float *out, const float *g, const float *u, int64_t lo,
                                                        int64_t hi) {
    for (int64_t i = lo; i < hi; i += 16) {
        __mmask16 m = hi - i >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (hi - i)) - 1);
        __m512 x = _mm512_maskz_loadu_ps(m, g + i);
        __m512 e = exp_512(_mm512_sub_ps(_mm512_setzero_ps(), x));
        __m512 y = _mm512_div_ps(x, _mm512_add_ps(e, _mm512_set1_ps(1.0f)));
        if (u) y = _mm512_mul_ps(y, _mm512_maskz_loadu_ps(m, u + i));
        _mm512_mask_storeu_ps(out + i, m, y);
    }
}

#define T_AVX2 __attribute__((target("avx2,fma,f16c")))
static bool cpu_avx2(void) {
    static int c = -1; /* relaxed both ways: every worker computes the same answer */
    int v = __atomic_load_n(&c, __ATOMIC_RELAXED);
    if (v < 0) {
        v = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"); /* and so F16C */
        __atomic_store_n(&c, v, __ATOMIC_RELAXED);
    }
    return v;
}
/* The widest vector form of the kernels that follow the tests' switch
 * (mlxn_mm_force_isa: 1 scalar, 2 at most AVX2): 512 (AVX-512F), 256
 * (AVX2 + FMA + F16C) or 0 (the scalar code). */
static int vec_width(void) {
    const int force = mlxn_mm_forced_isa();
    if (force == 1) return 0;
    if (force != 2 && __builtin_cpu_supports("avx512f")) return 512;
    return cpu_avx2() ? 256 : 0;
}
/* exp_512 for 8 lanes on AVX2 CPUs without AVX-512: the same reduction and
 * polynomial; 2^n is put into the exponent bits (no scalef), so x is
 * clamped to [-87, 88] where 2^n stays a normal float, and below -87 the
 * result is 0 (e^-87 = 1.6e-38: nothing a softmax sum could see). */
T_AVX2 static inline __m256 exp_256(__m256 x) {
    const __m256 lo = _mm256_set1_ps(-87.0f);
    const __m256 under = _mm256_cmp_ps(x, lo, _CMP_GE_OQ);
    x = _mm256_min_ps(_mm256_max_ps(x, lo), _mm256_set1_ps(88.0f));
    __m256 k = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                               _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(k, _mm256_set1_ps(0.693359375f), x);
    r = _mm256_fnmadd_ps(k, _mm256_set1_ps(-2.12194440e-4f), r);
    __m256 p = _mm256_set1_ps(1.9875691500e-4f);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.3981999507e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894e-2f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459e-1f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201e-1f));
    p = _mm256_fmadd_ps(_mm256_mul_ps(p, r), r, _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
    const __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(k), _mm256_set1_epi32(127)), 23);
    return _mm256_and_ps(_mm256_mul_ps(p, _mm256_castsi256_ps(e)), under);
}
/* silu_512 for AVX2: 8 lanes, the last step through a zero-padded copy. */
T_AVX2 static void silu_256(float *out, const float *g, const float *u, int64_t lo, int64_t hi) {
    int64_t i = lo;
    for (; i + 8 <= hi; i += 8) {
        __m256 x = _mm256_loadu_ps(g + i);
        __m256 y = _mm256_div_ps(x, _mm256_add_ps(exp_256(_mm256_sub_ps(_mm256_setzero_ps(), x)),
                                                  _mm256_set1_ps(1.0f)));
        if (u) y = _mm256_mul_ps(y, _mm256_loadu_ps(u + i));
        _mm256_storeu_ps(out + i, y);
    }
    if (i < hi) {
        float tg[8] = {0}, tu[8] = {0}, to[8];
        memcpy(tg, g + i, (size_t)(hi - i) * 4);
        if (u) memcpy(tu, u + i, (size_t)(hi - i) * 4);
        silu_256(to, tg, u ? tu : NULL, 0, 8);
        memcpy(out + i, to, (size_t)(hi - i) * 4);
    }
}
#endif

static void k_unary(const mlxn_node *n, int ith, int nth, void *scratch) {
    (void)scratch;
    float *out = F32(0);
    const float *a = F32(1);
    int64_t lo, hi;
    mlxn_split(mlxn_tensor_elems(T(1)), ith, nth, &lo, &hi);
    float f = n->p.u.f;
    switch (n->op) {
    case MLXN_OP_SCALE:
        for (int64_t i = lo; i < hi; i++) out[i] = a[i] * f;
        break;
    case MLXN_OP_SILU:
#if defined(__x86_64__) || defined(__i386__)
        if (__builtin_cpu_supports("avx512f")) { /* as silu_mul computes it */
            silu_512(out, a, NULL, lo, hi);
            break;
        }
        if (cpu_avx2()) {
            silu_256(out, a, NULL, lo, hi);
            break;
        }
#endif
        for (int64_t i = lo; i < hi; i++) out[i] = silu(a[i]);
        break;
    case MLXN_OP_SOFTCAP:
        for (int64_t i = lo; i < hi; i++) out[i] = tanhf(a[i] / f) * f;
        break;
    case MLXN_OP_GELU:
        if (n->p.u.mode) {
            const float c = 0.7978845608028654f; /* sqrt(2/pi) */
            for (int64_t i = lo; i < hi; i++) {
                float x = a[i];
                out[i] = 0.5f * x * (1.0f + tanhf(c * (x + 0.044715f * x * x * x)));
            }
        } else {
            for (int64_t i = lo; i < hi; i++) out[i] = 0.5f * a[i] * (1.0f + erff(a[i] * 0.70710678118654752f));
        }
        break;
    default:
        break;
    }
}


/* The decode step's silu_mul (ffn values per layer) spent ~4% of a SmolLM2
 * token in scalar expf; AVX-512 CPUs take silu_512. */
static void silu_mul_range(float *out, const float *g, const float *u, int64_t lo, int64_t hi) {
#if defined(__x86_64__) || defined(__i386__)
    if (__builtin_cpu_supports("avx512f")) {
        silu_512(out, g, u, lo, hi);
        return;
    }
    if (cpu_avx2()) {
        silu_256(out, g, u, lo, hi);
        return;
    }
#endif
    for (int64_t i = lo; i < hi; i++) out[i] = silu(g[i]) * u[i];
}

static void k_silu_mul(const mlxn_node *n, int ith, int nth, void *scratch) {
    (void)scratch;
    int64_t lo, hi;
    mlxn_split(mlxn_tensor_elems(T(0)), ith, nth, &lo, &hi);
    silu_mul_range(F32(0), F32(1), F32(2), lo, hi);
}

/* ---- norms ---- */

/* -DMLXN_CLONES= builds one copy: ThreadSanitizer's instrumentation of the
 * clones' resolver crashes before the sanitizer starts */
#ifndef MLXN_CLONES
#define MLXN_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#endif

/* Σ x² in double, as 8 interleaved partial sums (one double vector on
 * AVX-512) instead of one serial chain of D dependent adds. */
MLXN_CLONES static double sumsq_f64(const float *x, int64_t D) {
    double s[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    int64_t i = 0;
    for (; i + 8 <= D; i += 8)
        for (int j = 0; j < 8; j++) s[j] += (double)x[i + j] * (double)x[i + j];
    for (; i < D; i++) s[i & 7] += (double)x[i] * (double)x[i];
    return ((s[0] + s[1]) + (s[2] + s[3])) + ((s[4] + s[5]) + (s[6] + s[7]));
}

#if defined(__x86_64__) || defined(__i386__)
/* 16 elements of a row (f32, f16 or bf16) from element d, as f32: the
 * 16-bit ones converted in registers (exact). */
__attribute__((target("avx512f"), always_inline)) static inline __m512 ld16_512(const void *row, int dt, int64_t d) {
    if (dt == MLXN_F32) return _mm512_loadu_ps((const float *)row + d);
    const __m256i h = _mm256_loadu_si256((const __m256i *)((const uint16_t *)row + d));
    if (dt == MLXN_F16) return _mm512_cvtph_ps(h);
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}
/* The same, 8 elements (AVX2 + F16C). */
T_AVX2 __attribute__((always_inline)) static inline __m256 ld8_256(const void *row, int dt, int64_t d) {
    if (dt == MLXN_F32) return _mm256_loadu_ps((const float *)row + d);
    const __m128i h = _mm_loadu_si128((const __m128i *)((const uint16_t *)row + d));
    if (dt == MLXN_F16) return _mm256_cvtph_ps(h);
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
}
/* The norm rows' element loops, 16 or 8 at a time (the scalar loops, with
 * outputs that may be their inputs in place, were not vectorized: ~4 % of
 * SmolLM2's pp512 in perf): each element's products in the scalar order,
 * so the results are the same. */
__attribute__((target("avx512f"))) static void rms_scale_512(float *out, const float *x, float r, const void *w,
                                                             int wt, int64_t D) {
    const __m512 rv = _mm512_set1_ps(r);
    int64_t i = 0;
    for (; i + 16 <= D; i += 16) {
        __m512 v = _mm512_mul_ps(_mm512_loadu_ps(x + i), rv);
        if (w) v = _mm512_mul_ps(v, ld16_512(w, wt, i));
        _mm512_storeu_ps(out + i, v);
    }
    for (; i < D; i++) out[i] = w ? x[i] * r * mlxn_load_f(w, (mlxn_dtype)wt, (size_t)i) : x[i] * r;
}
T_AVX2 static void rms_scale_256(float *out, const float *x, float r, const void *w, int wt, int64_t D) {
    const __m256 rv = _mm256_set1_ps(r);
    int64_t i = 0;
    for (; i + 8 <= D; i += 8) {
        __m256 v = _mm256_mul_ps(_mm256_loadu_ps(x + i), rv);
        if (w) v = _mm256_mul_ps(v, ld8_256(w, wt, i));
        _mm256_storeu_ps(out + i, v);
    }
    for (; i < D; i++) out[i] = w ? x[i] * r * mlxn_load_f(w, (mlxn_dtype)wt, (size_t)i) : x[i] * r;
}
__attribute__((target("avx512f"))) static void add_row_512(float *sum, const float *a, const float *b, int64_t D) {
    int64_t i = 0;
    for (; i + 16 <= D; i += 16) _mm512_storeu_ps(sum + i, _mm512_add_ps(_mm512_loadu_ps(a + i), _mm512_loadu_ps(b + i)));
    for (; i < D; i++) sum[i] = a[i] + b[i];
}
T_AVX2 static void add_row_256(float *sum, const float *a, const float *b, int64_t D) {
    int64_t i = 0;
    for (; i + 8 <= D; i += 8) _mm256_storeu_ps(sum + i, _mm256_add_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i)));
    for (; i < D; i++) sum[i] = a[i] + b[i];
}
#endif

/* out = x·r (·w): out may be x itself */
static void rms_scale(float *out, const float *x, float r, const mlxn_tensor *w, int64_t D) {
    const void *wp = w->alloc ? mlxn_tensor_data(w) : NULL;
#if defined(__x86_64__) || defined(__i386__)
    const int vw = vec_width();
    if (vw == 512) {
        rms_scale_512(out, x, r, wp, w->dtype, D);
        return;
    }
    if (vw == 256) {
        rms_scale_256(out, x, r, wp, w->dtype, D);
        return;
    }
#endif
    if (!wp) {
        for (int64_t i = 0; i < D; i++) out[i] = x[i] * r;
    } else if (w->dtype == MLXN_F32) {
        const float *wf = wp;
        for (int64_t i = 0; i < D; i++) out[i] = x[i] * r * wf[i];
    } else {
        for (int64_t i = 0; i < D; i++) out[i] = x[i] * r * mlxn_load_f(wp, w->dtype, (size_t)i);
    }
}

static void rms_row(float *out, const float *x, const mlxn_tensor *w, int64_t D, float eps) {
    double ss = sumsq_f64(x, D);
    float r = (float)(1.0 / sqrt(ss / (double)D + (double)eps));
    rms_scale(out, x, r, w, D);
}

static void k_rms_norm(const mlxn_node *n, int ith, int nth, void *scratch) {
    (void)scratch;
    int64_t D = mlxn_tensor_cols(T(1)), lo, hi;
    mlxn_split(mlxn_tensor_rows(T(1)), ith, nth, &lo, &hi);
    for (int64_t r = lo; r < hi; r++) rms_row(F32(0) + r * D, F32(1) + r * D, T(2), D, n->p.norm.eps);
}

/* sum = a + b, out = rms_norm(sum) * w: one row of add_rms_norm */
static void add_rms_row(float *sum, float *out, const float *a, const float *b, const mlxn_tensor *w, int64_t D,
                        float eps) {
#if defined(__x86_64__) || defined(__i386__)
    const int vw = vec_width();
    if (vw == 512) add_row_512(sum, a, b, D);
    else if (vw == 256) add_row_256(sum, a, b, D);
    else
#endif
        for (int64_t i = 0; i < D; i++) sum[i] = a[i] + b[i];
    rms_row(out, sum, w, D, eps);
}

static void k_add_rms_norm(const mlxn_node *n, int ith, int nth, void *scratch) {
    (void)scratch;
    int64_t D = mlxn_tensor_cols(T(2)), lo, hi;
    mlxn_split(mlxn_tensor_rows(T(2)), ith, nth, &lo, &hi);
    for (int64_t r = lo; r < hi; r++)
        add_rms_row(F32(0) + r * D, F32(1) + r * D, F32(2) + r * D, F32(3) + r * D, T(4), D, n->p.norm.eps);
}

bool mlxn_cpu_pre_ok(const mlxn_node *n) {
    int first_in = n->op == MLXN_OP_ADD_RMS_NORM ? 2 : 1, last_in = n->op == MLXN_OP_ADD_RMS_NORM ? 3
                                                                  : n->op == MLXN_OP_SILU_MUL     ? 2
                                                                                                   : 1;
    if (n->op != MLXN_OP_RMS_NORM && n->op != MLXN_OP_ADD_RMS_NORM && n->op != MLXN_OP_SILU_MUL) return false;
    for (int i = 0; i <= last_in; i++)
        if (T(i)->dtype != MLXN_F32 || mlxn_tensor_rows(T(i)) != 1 ||
            mlxn_tensor_elems(T(i)) != mlxn_tensor_elems(T(0)))
            return false;
    /* outputs apart from inputs: one worker writes its part of an output
     * while another still reads the inputs */
    for (int o = 0; o < n->n_out; o++)
        for (int i = first_in; i <= last_in; i++)
            if (mlxn_ranges_overlap(T(o), T(i))) return false;
    return n->n_out < 2 || !mlxn_ranges_overlap(T(0), T(1));
}

void mlxn_cpu_pre_row(const mlxn_node *n, float *x) {
    const int64_t D = mlxn_tensor_elems(T(0));
    if (n->op == MLXN_OP_SILU_MUL) silu_mul_range(x, F32(1), F32(2), 0, D);
    else if (n->op == MLXN_OP_RMS_NORM) rms_row(x, F32(1), T(2), D, n->p.norm.eps);
    else add_rms_row(x + D, x, F32(2), F32(3), T(4), D, n->p.norm.eps); /* the sum in x[D..2D) */
}

void mlxn_cpu_pre_out(const mlxn_node *n, int ith, int nth, const float *x) {
    int64_t D = mlxn_tensor_elems(T(0)), lo, hi;
    mlxn_split(D, ith, nth, &lo, &hi);
    if (n->op == MLXN_OP_ADD_RMS_NORM) { /* outputs: the sum, the normalized row */
        memcpy(F32(0) + lo, x + D + lo, (size_t)(hi - lo) * sizeof(float));
        memcpy(F32(1) + lo, x + lo, (size_t)(hi - lo) * sizeof(float));
    } else {
        memcpy(F32(0) + lo, x + lo, (size_t)(hi - lo) * sizeof(float));
    }
}

static void k_layer_norm(const mlxn_node *n, int ith, int nth, void *scratch) {
    (void)scratch;
    int64_t D = mlxn_tensor_cols(T(1)), lo, hi;
    mlxn_split(mlxn_tensor_rows(T(1)), ith, nth, &lo, &hi);
    for (int64_t r = lo; r < hi; r++) {
        const float *x = F32(1) + r * D;
        float *o = F32(0) + r * D;
        double mean = 0, var = 0;
        for (int64_t i = 0; i < D; i++) mean += (double)x[i];
        mean /= (double)D;
        for (int64_t i = 0; i < D; i++) var += ((double)x[i] - mean) * ((double)x[i] - mean);
        float inv = (float)(1.0 / sqrt(var / (double)D + (double)n->p.norm.eps));
        for (int64_t i = 0; i < D; i++) {
            float v = (float)((double)x[i] - mean) * inv;
            if (T(2)->alloc) v *= mlxn_load_f(mlxn_tensor_data(T(2)), T(2)->dtype, (size_t)i);
            if (T(3)->alloc) v += mlxn_load_f(mlxn_tensor_data(T(3)), T(3)->dtype, (size_t)i);
            o[i] = v;
        }
    }
}

#if defined(__x86_64__) || defined(__i386__)
/* One softmax row on AVX-512: the scaled, masked row and its max 16 lanes
 * at a time, then e^(v - max) by exp_512 (~1e-7 relative of expf's) summed
 * in double lanes, then the scaling. The scalar loop (expf an element) ran
 * [32, 4096] in 324.5 us on the dev EPYC (2 threads, bench ops). */
__attribute__((target("avx512f"))) static void softmax_row_512(float *o, const float *x, const float *m, int64_t C,
                                                               float scale) {
    __m512 mx = _mm512_set1_ps(-INFINITY);
    for (int64_t i = 0; i < C; i += 16) {
        __mmask16 k = C - i >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (C - i)) - 1);
        __m512 v = _mm512_mul_ps(_mm512_maskz_loadu_ps(k, x + i), _mm512_set1_ps(scale));
        if (m) v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(k, m + i));
        _mm512_mask_storeu_ps(o + i, k, v);
        mx = _mm512_mask_max_ps(mx, k, mx, v);
    }
    const float M = _mm512_reduce_max_ps(mx);
    if (M == -INFINITY) { /* every entry masked out: zeros, as the scalar loop */
        for (int64_t i = 0; i < C; i++) o[i] = 0.0f;
        return;
    }
    __m512d s0 = _mm512_setzero_pd(), s1 = _mm512_setzero_pd();
    for (int64_t i = 0; i < C; i += 16) {
        __mmask16 k = C - i >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (C - i)) - 1);
        __m512 e = _mm512_maskz_mov_ps(k, exp_512(_mm512_sub_ps(_mm512_maskz_loadu_ps(k, o + i), _mm512_set1_ps(M))));
        _mm512_mask_storeu_ps(o + i, k, e);
        s0 = _mm512_add_pd(s0, _mm512_cvtps_pd(_mm512_castps512_ps256(e)));
        s1 = _mm512_add_pd(s1, _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(e), 1))));
    }
    const double sum = _mm512_reduce_add_pd(_mm512_add_pd(s0, s1));
    const __m512 inv = _mm512_set1_ps(sum > 0 ? (float)(1.0 / sum) : 0.0f);
    for (int64_t i = 0; i < C; i += 16) {
        __mmask16 k = C - i >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (C - i)) - 1);
        _mm512_mask_storeu_ps(o + i, k, _mm512_mul_ps(_mm512_maskz_loadu_ps(k, o + i), inv));
    }
}
#endif

#if defined(__x86_64__) || defined(__i386__)
/* The scalar row below with its exponentials 8 at a time (exp_256), for
 * AVX2 CPUs; the sum stays in double. */
T_AVX2 static void softmax_row_256(float *o, const float *x, const float *m, int64_t C, float scale) {
    float mx = -INFINITY;
    for (int64_t i = 0; i < C; i++) {
        float v = x[i] * scale + (m ? m[i] : 0.0f);
        o[i] = v;
        if (v > mx) mx = v;
    }
    if (mx == -INFINITY) {
        for (int64_t i = 0; i < C; i++) o[i] = 0.0f;
        return;
    }
    __m256d s0 = _mm256_setzero_pd(), s1 = _mm256_setzero_pd();
    int64_t i = 0;
    for (; i + 8 <= C; i += 8) {
        __m256 e = exp_256(_mm256_sub_ps(_mm256_loadu_ps(o + i), _mm256_set1_ps(mx)));
        _mm256_storeu_ps(o + i, e);
        s0 = _mm256_add_pd(s0, _mm256_cvtps_pd(_mm256_castps256_ps128(e)));
        s1 = _mm256_add_pd(s1, _mm256_cvtps_pd(_mm256_extractf128_ps(e, 1)));
    }
    double t[4], sum = 0;
    _mm256_storeu_pd(t, _mm256_add_pd(s0, s1));
    sum = (t[0] + t[1]) + (t[2] + t[3]);
    for (; i < C; i++) {
        o[i] = _mm256_cvtss_f32(exp_256(_mm256_set1_ps(o[i] - mx)));
        sum += (double)o[i];
    }
    const float inv = sum > 0 ? (float)(1.0 / sum) : 0.0f;
    for (i = 0; i < C; i++) o[i] *= inv;
}
#endif

static void k_softmax(const mlxn_node *n, int ith, int nth, void *scratch) {
    (void)scratch;
    int64_t C = mlxn_tensor_cols(T(1)), lo, hi;
    mlxn_split(mlxn_tensor_rows(T(1)), ith, nth, &lo, &hi);
    const float *mask = T(2)->alloc ? F32(2) : NULL;
    int64_t mrows = mask ? mlxn_tensor_elems(T(2)) / C : 0;
    float scale = n->p.softmax.scale;
    for (int64_t r = lo; r < hi; r++) {
        const float *x = F32(1) + r * C;
        float *o = F32(0) + r * C;
        const float *m = mask ? mask + (mrows == 1 ? 0 : r) * C : NULL;
#if defined(__x86_64__) || defined(__i386__)
        if (__builtin_cpu_supports("avx512f")) {
            softmax_row_512(o, x, m, C, scale);
            continue;
        }
        if (cpu_avx2()) {
            softmax_row_256(o, x, m, C, scale);
            continue;
        }
#endif
        float mx = -INFINITY;
        for (int64_t i = 0; i < C; i++) {
            float v = x[i] * scale + (m ? m[i] : 0.0f);
            o[i] = v;
            if (v > mx) mx = v;
        }
        double sum = 0;
        for (int64_t i = 0; i < C; i++) {
            float e = mx == -INFINITY ? 0.0f : expf(o[i] - mx);
            o[i] = e;
            sum += (double)e;
        }
        float inv = sum > 0 ? (float)(1.0 / sum) : 0.0f;
        for (int64_t i = 0; i < C; i++) o[i] *= inv;
    }
}

/* ---- matmul: out[M,N] = x[M,K] * W[N,K]^T in any weight format, split
 * over N in multiples of 16 columns (the kernels' panel width) ---- */

static void node_qmat(const mlxn_node *n, mlxn_qmat *q) {
    memset(q, 0, sizeof *q);
    if (n->op == MLXN_OP_MATMUL || n->op == MLXN_OP_GET_ROWS) {
        const mlxn_tensor *w = T(n->op == MLXN_OP_MATMUL ? 2 : 1);
        q->kind = MLXN_QKIND_GGML;
        q->N = w->shape[0];
        q->K = w->shape[1];
        q->w = mlxn_tensor_data(w);
        q->row_bytes = w->nbytes / (size_t)w->shape[0];
        q->wtype = w->dtype;
    } else { /* MATMUL_MLX: out | x, wq, s, b;  GET_ROWS_MLX: out | wq, s, b, ids */
        int i = n->op == MLXN_OP_MATMUL_MLX ? 2 : 1;
        q->kind = MLXN_QKIND_MLX;
        q->N = T(i)->shape[0];
        q->K = T(i)->shape[1] * 32 / n->p.mlx.bits;
        q->w = mlxn_tensor_data(T(i));
        q->scales = mlxn_tensor_data(T(i + 1));
        q->biases = mlxn_tensor_data(T(i + 2));
        q->sb_type = T(i + 1)->dtype;
        q->bits = n->p.mlx.bits;
        q->group = n->p.mlx.group_size;
    }
    q->f32_act = n->flags & MLXN_NODE_F32_ACT;
    q->int8_act = n->flags & MLXN_NODE_INT8_ACT;
}

static size_t s_matmul(const mlxn_node *n, int nth) {
    (void)nth;
    mlxn_qmat q;
    node_qmat(n, &q);
    return mlxn_mm_scratch_bytes(&q, mlxn_tensor_rows(T(1)));
}

void mlxn_cpu_matmul_x(const mlxn_node *n, int ith, int nth, void *scratch, const float *x) {
    mlxn_qmat q;
    node_qmat(n, &q);
    int64_t panels = (q.N + 15) / 16, lo, hi;
    mlxn_split(panels, ith, nth, &lo, &hi);
    lo *= 16;
    hi = hi * 16 < q.N ? hi * 16 : q.N;
    if (lo >= hi) return;
    mlxn_mm(&q, x, F32(0), mlxn_tensor_rows(T(1)), lo, hi, scratch);
}

static void k_matmul(const mlxn_node *n, int ith, int nth, void *scratch) {
    mlxn_cpu_matmul_x(n, ith, nth, scratch, F32(1));
}

/* ---- rope ---- */

/* Inverse frequency of pair i with the op's scaling and freq factors. */
static double rope_inv_freq(const mlxn_rope_params *p, int i, const float *ff) {
    double inv = pow((double)p->base, -2.0 * i / p->n_dims);
    if (p->scaling == MLXN_ROPE_SCALE_LLAMA3) {
        double wavelen = 2.0 * M_PI / inv;
        double lo_wl = p->original_max_pos / (double)p->low_freq_factor;
        double hi_wl = p->original_max_pos / (double)p->high_freq_factor;
        if (wavelen > lo_wl) {
            inv /= (double)p->factor;
        } else if (wavelen >= hi_wl) {
            double smooth = (p->original_max_pos / wavelen - (double)p->low_freq_factor) /
                            (double)(p->high_freq_factor - p->low_freq_factor);
            inv = (1 - smooth) * inv / (double)p->factor + smooth * inv;
        }
    }
    if (ff) inv /= (double)ff[i];
    return inv;
}

static size_t s_rope(const mlxn_node *n, int nth) {
    (void)nth;
    int64_t D = T(1)->shape[2];
    return (size_t)(n->p.rope.n_dims + D) * sizeof(float);
}

/* The angles a thread computed, with what they were computed from. A
 * decode step ropes every layer's q and k at one position with the same
 * parameters (SmolLM2: 60 calls a step, each a pow and a sin / cos a pair;
 * 2.4 % of a step before), and a prefill ropes the same positions in every
 * layer, each thread the same positions each time (a sin and a cos a pair
 * each: 1.6 % of pp512 before). So the inverse frequencies are kept with
 * the parameters, and the angles of the last positions computed under them
 * in ROPE_SLOTS slots by position (direct-mapped: slot pos mod ROPE_SLOTS
 * holds tag[slot] = pos, its cos at row 2·half·slot of the rows after the
 * tags, its sin after them). Tags and rows are one malloc block, not
 * mlxn_malloc's (a cache: without it the angles are computed each call),
 * freed with the thread. Pairs past ROPE_MEMO are not kept. */
enum { ROPE_MEMO = 128, ROPE_SLOTS = 1024 };
typedef struct rope_memo {
    mlxn_rope_params p;
    bool valid, has_ff;
    float ff[ROPE_MEMO];
    double inv[ROPE_MEMO];
    int64_t *tag;  /* ROPE_SLOTS positions held (ROPE_NONE: none), then the rows; NULL until needed */
    int rows_half; /* the half the rows were laid out for */
} rope_memo;
#define ROPE_NONE INT64_MIN
static _Thread_local rope_memo g_rope_memo;
static pthread_key_t g_rope_key;
static pthread_once_t g_rope_once = PTHREAD_ONCE_INIT;
static bool g_rope_key_ok;
static void rope_rows_free(void *p) { free(p); }
static void rope_key_make(void) { g_rope_key_ok = !pthread_key_create(&g_rope_key, rope_rows_free); }
/* Forget every slot (new parameters); the block stays. */
static void rope_slots_clear(rope_memo *m) {
    if (m->tag)
        for (int i = 0; i < ROPE_SLOTS; i++) m->tag[i] = ROPE_NONE;
}
/* The slot of pos for half pairs (the block (re)made as needed, empty), or
 * -1 without one. */
static int rope_slot(rope_memo *m, int half, int32_t pos) {
    if (!m->tag || m->rows_half < half) {
        pthread_once(&g_rope_once, rope_key_make);
        if (!g_rope_key_ok) return -1;
        /* a new block (the old rows are laid out for another half), handed
         * to the key before the old one is freed: the key never holds a
         * freed block, whichever step fails */
        int64_t *b = malloc(ROPE_SLOTS * sizeof(int64_t) + (size_t)ROPE_SLOTS * 2 * (size_t)half * sizeof(float));
        if (!b) return -1;
        if (pthread_setspecific(g_rope_key, b)) { /* freed when the thread ends */
            free(b);
            return -1;
        }
        free(m->tag);
        m->tag = b, m->rows_half = half;
        rope_slots_clear(m);
    }
    return (int)((uint32_t)pos % ROPE_SLOTS);
}

static bool rope_memo_same(const rope_memo *m, const mlxn_rope_params *p, const float *ff) {
    const mlxn_rope_params *q = &m->p;
    return m->valid && q->n_dims == p->n_dims && q->base == p->base && q->mode == p->mode &&
           q->scaling == p->scaling && q->factor == p->factor && q->low_freq_factor == p->low_freq_factor &&
           q->high_freq_factor == p->high_freq_factor && q->original_max_pos == p->original_max_pos &&
           m->has_ff == (ff != NULL) && (!ff || !memcmp(m->ff, ff, (size_t)(p->n_dims / 2) * sizeof(float)));
}

/* cos/sin of every rotated pair for position pos into cs[half], sn[half]. */
static void rope_angles(const mlxn_rope_params *p, int32_t pos, const float *ff, float *cs, float *sn) {
    rope_memo *m = &g_rope_memo;
    const int half = p->n_dims / 2;
    const bool keep = half <= ROPE_MEMO;
    if (keep && !rope_memo_same(m, p, ff)) {
        m->p = *p, m->has_ff = ff != NULL, m->valid = true;
        if (ff) memcpy(m->ff, ff, (size_t)half * sizeof(float));
        for (int i = 0; i < half; i++) m->inv[i] = rope_inv_freq(p, i, ff);
        rope_slots_clear(m);
    }
    const int slot = keep ? rope_slot(m, half, pos) : -1;
    float *row = slot >= 0 ? (float *)(m->tag + ROPE_SLOTS) + (size_t)slot * 2 * (size_t)half : NULL;
    if (row && m->tag[slot] == pos) {
        memcpy(cs, row, (size_t)half * sizeof(float));
        memcpy(sn, row + half, (size_t)half * sizeof(float));
        return;
    }
    double ppos = pos;
    if (p->scaling == MLXN_ROPE_SCALE_LINEAR) ppos /= (double)p->factor;
    for (int i = 0; i < half; i++) {
        double a = ppos * (keep ? m->inv[i] : rope_inv_freq(p, i, ff));
        cs[i] = (float)cos(a);
        sn[i] = (float)sin(a);
    }
    if (row) {
        memcpy(row, cs, (size_t)half * sizeof(float));
        memcpy(row + half, sn, (size_t)half * sizeof(float));
        m->tag[slot] = pos;
    }
}

/* One head row: o = rotate(x) (o may be x). */
#if defined(__x86_64__) || defined(__i386__)
/* rope_row's rotated pairs [0, the returned count) 16 elements a step (o
 * may be x: each step loads before it stores, and steps touch disjoint
 * elements): NeoX pairs (i, i + half) as two vectors, interleaved ones
 * (2i, 2i + 1) as one, its partner through a lane swap. Each output is the
 * scalar form's two products and one add or subtract (a - b as a + (-b)
 * is exact, and adds commute), so the results are the same bits. */
__attribute__((target("avx512f"))) static int rope_pairs_512(bool neox, int half, const float *x, float *o,
                                                             const float *cs, const float *sn) {
    int i = 0;
    if (neox) {
        for (; i + 16 <= half; i += 16) {
            const __m512 x0 = _mm512_loadu_ps(x + i), x1 = _mm512_loadu_ps(x + i + half);
            const __m512 c = _mm512_loadu_ps(cs + i), s = _mm512_loadu_ps(sn + i);
            _mm512_storeu_ps(o + i, _mm512_sub_ps(_mm512_mul_ps(x0, c), _mm512_mul_ps(x1, s)));
            _mm512_storeu_ps(o + i + half, _mm512_add_ps(_mm512_mul_ps(x0, s), _mm512_mul_ps(x1, c)));
        }
        return i;
    }
    const __m512i dup = _mm512_setr_epi32(0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7);
    for (; i + 8 <= half; i += 8) {
        const __m512 v = _mm512_loadu_ps(x + 2 * i), w = _mm512_permute_ps(v, 0xB1); /* (x1, x0) a pair */
        const __m512 c = _mm512_permutexvar_ps(dup, _mm512_castps256_ps512(_mm256_loadu_ps(cs + i)));
        const __m512 s = _mm512_permutexvar_ps(dup, _mm512_castps256_ps512(_mm256_loadu_ps(sn + i)));
        const __m512 a = _mm512_mul_ps(v, c), b = _mm512_mul_ps(w, s); /* (x0 c, x1 c), (x1 s, x0 s) */
        _mm512_storeu_ps(o + 2 * i, _mm512_mask_sub_ps(_mm512_add_ps(a, b), 0x5555, a, b));
    }
    return i;
}
#endif

static void rope_row(const mlxn_rope_params *p, const float *x, float *o, int64_t D, const float *cs, const float *sn) {
    int half = p->n_dims / 2, i = 0;
#if defined(__x86_64__) || defined(__i386__)
    if (vec_width() == 512) /* no AVX2 form: the scalar loop */
        i = rope_pairs_512(p->mode == MLXN_ROPE_NEOX, half, x, o, cs, sn);
#endif
    for (; i < half; i++) {
        int64_t i0 = p->mode == MLXN_ROPE_NEOX ? i : 2 * i;
        int64_t i1 = p->mode == MLXN_ROPE_NEOX ? i + half : 2 * i + 1;
        float x0 = x[i0], x1 = x[i1];
        o[i0] = x0 * cs[i] - x1 * sn[i];
        o[i1] = x0 * sn[i] + x1 * cs[i];
    }
    if (o != x)
        for (int64_t d = p->n_dims; d < D; d++) o[d] = x[d];
}

static void k_rope(const mlxn_node *n, int ith, int nth, void *scratch) {
    const mlxn_rope_params *p = &n->p.rope;
    int64_t Tn = T(1)->shape[0], H = T(1)->shape[1], D = T(1)->shape[2], lo, hi;
    mlxn_split(Tn, ith, nth, &lo, &hi);
    const int32_t *pos = I32(2);
    const float *ff = T(3)->alloc ? F32(3) : NULL;
    float *cs = scratch, *sn = cs + p->n_dims / 2;
    for (int64_t t = lo; t < hi; t++) {
        rope_angles(p, pos[t], ff, cs, sn);
        for (int64_t h = 0; h < H; h++) rope_row(p, F32(1) + (t * H + h) * D, F32(0) + (t * H + h) * D, D, cs, sn);
    }
}

/* ---- copy / convert ---- */

static void store_f(void *p, mlxn_dtype t, size_t i, float v) {
    switch (t) {
    case MLXN_F32: ((float *)p)[i] = v; break;
    case MLXN_F16: ((uint16_t *)p)[i] = mlxn_f32_to_f16(v); break;
    case MLXN_BF16: ((uint16_t *)p)[i] = mlxn_f32_to_bf16(v); break;
    default: break;
    }
}

static void k_copy(const mlxn_node *n, int ith, int nth, void *scratch) {
    (void)scratch;
    const mlxn_tensor *o = T(0), *x = T(1);
    if (o->dtype == x->dtype) {
        int64_t lo, hi;
        mlxn_split((int64_t)o->nbytes, ith, nth, &lo, &hi);
        memcpy((char *)mlxn_tensor_data(o) + lo, (const char *)mlxn_tensor_data(x) + lo, (size_t)(hi - lo));
        return;
    }
    int64_t lo, hi;
    mlxn_split(mlxn_tensor_elems(o), ith, nth, &lo, &hi);
    for (int64_t i = lo; i < hi; i++)
        store_f(mlxn_tensor_data(o), o->dtype, (size_t)i, mlxn_load_f(mlxn_tensor_data(x), x->dtype, (size_t)i));
}

/* ---- gather ---- */

static void k_get_rows(const mlxn_node *n, int ith, int nth, void *scratch) {
    (void)scratch;
    mlxn_qmat q;
    node_qmat(n, &q);
    const mlxn_tensor *ids_t = T(n->op == MLXN_OP_GET_ROWS ? 2 : 4);
    int64_t D = mlxn_tensor_cols(T(0)), lo, hi;
    mlxn_split(mlxn_tensor_rows(T(0)), ith, nth, &lo, &hi);
    const int32_t *ids = mlxn_tensor_data(ids_t);
    for (int64_t r = lo; r < hi; r++) {
        float *o = F32(0) + r * D;
        int32_t id = ids[r];
        if (id < 0 || id >= q.N) {
            for (int64_t i = 0; i < D; i++) o[i] = NAN;
            continue;
        }
        mlxn_qmat_dequant_row(&q, id, 0, D, o);
    }
}

/* ---- KV cache ---- */

/* f32 -> f16, 16 at a time: VCVTPS2PH rounds to nearest even, subnormals
 * and NaNs (quieted, payload truncated) as mlxn_f32_to_f16 does. */
__attribute__((target("avx512f"))) static void f16_store_512(uint16_t *dst, const float *src, int64_t n) {
    int64_t i = 0;
    for (; i + 16 <= n; i += 16)
        _mm256_storeu_si256((__m256i *)(dst + i),
                            _mm512_cvtps_ph(_mm512_loadu_ps(src + i), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
    for (; i < n; i++) dst[i] = mlxn_f32_to_f16(src[i]);
}

/* The same 8 at a time with F16C (every AVX2 CPU has it). */
__attribute__((target("avx2,f16c"))) static void f16_store_256(uint16_t *dst, const float *src, int64_t n) {
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm_storeu_si128((__m128i *)(dst + i),
                         _mm256_cvtps_ph(_mm256_loadu_ps(src + i), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
    for (; i < n; i++) dst[i] = mlxn_f32_to_f16(src[i]);
}

/* Store a row of D floats at element `base` of a f32/f16/bf16 cache. */
static void cache_store(const mlxn_tensor *c, size_t base, const float *src, int64_t D) {
    if (c->dtype == MLXN_F32) memcpy((float *)mlxn_tensor_data(c) + base, src, (size_t)D * sizeof(float));
    else if (c->dtype == MLXN_F16 && __builtin_cpu_supports("avx512f"))
        f16_store_512((uint16_t *)mlxn_tensor_data(c) + base, src, D);
    else if (c->dtype == MLXN_F16 && cpu_avx2())
        f16_store_256((uint16_t *)mlxn_tensor_data(c) + base, src, D);
    else for (int64_t d = 0; d < D; d++) store_f(mlxn_tensor_data(c), c->dtype, base + (size_t)d, src[d]);
}

static void k_kv_write(const mlxn_node *n, int ith, int nth, void *scratch) {
    (void)scratch;
    const mlxn_tensor *c = T(0), *x = T(1);
    int64_t Tn = x->shape[0], Hkv = x->shape[1], D = x->shape[2], C = c->shape[1], lo, hi;
    mlxn_split(Tn * Hkv, ith, nth, &lo, &hi);
    const int32_t *pos = I32(2);
    for (int64_t i = lo; i < hi; i++) {
        int64_t t = i / Hkv, h = i % Hkv, p = pos[t];
        if (p < 0) continue; /* negative position: nothing to write */
        cache_store(c, (size_t)((h * C + p % C) * D), F32(1) + (t * Hkv + h) * D, D);
    }
}

/* Fused rope -> kv_write: rotate each key row on the way into the cache. */
static void k_rope_kv_write(const mlxn_node *n, int ith, int nth, void *scratch) {
    const mlxn_tensor *c = T(0), *x = T(1);
    const mlxn_rope_params *p = &n->p.rope;
    int64_t Tn = x->shape[0], Hkv = x->shape[1], D = x->shape[2], C = c->shape[1], lo, hi;
    mlxn_split(Tn * Hkv, ith, nth, &lo, &hi);
    const int32_t *pos = I32(2);
    const float *ff = T(3)->alloc ? F32(3) : NULL;
    float *cs = scratch, *sn = cs + p->n_dims / 2, *row = sn + p->n_dims / 2;
    int64_t last_t = -1;
    for (int64_t i = lo; i < hi; i++) {
        int64_t t = i / Hkv, h = i % Hkv, ps = pos[t];
        if (ps < 0) continue;
        if (t != last_t) rope_angles(p, pos[t], ff, cs, sn), last_t = t;
        rope_row(p, F32(1) + (t * Hkv + h) * D, row, D, cs, sn);
        cache_store(c, (size_t)((h * C + ps % C) * D), row, D);
    }
}

/* ---- attention: one (token, head) at a time with an online softmax ---- */

/* Row helpers, built for AVX-512 and AVX2 beside the portable version and
 * picked at load time (target_clones). */

MLXN_CLONES static float dot_f32(const float *a, const float *b, int64_t K) {
    float acc[16] = {0};
    int64_t k = 0;
    for (; k + 16 <= K; k += 16)
        for (int j = 0; j < 16; j++) acc[j] += a[k + j] * b[k + j];
    float s = 0;
    for (; k < K; k++) s += a[k] * b[k];
    for (int j = 0; j < 16; j++) s += acc[j];
    return s;
}

/* acc += e * v */
MLXN_CLONES static void axpy(float *acc, float e, const float *v, int64_t D) {
    for (int64_t d = 0; d < D; d++) acc[d] += e * v[d];
}

MLXN_CLONES static void scale_row(float *acc, float c, int64_t D) {
    for (int64_t d = 0; d < D; d++) acc[d] *= c;
}

__attribute__((target("avx512f"))) static void f16_row_512(const uint16_t *src, float *dst, int64_t n) {
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) _mm512_storeu_ps(dst + i, _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(src + i))));
    for (; i < n; i++) dst[i] = mlxn_f16_to_f32(src[i]);
}
__attribute__((target("avx,f16c"))) static void f16_row_f16c(const uint16_t *src, float *dst, int64_t n) {
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(src + i))));
    for (; i < n; i++) dst[i] = mlxn_f16_to_f32(src[i]);
}
MLXN_CLONES static void bf16_row(const uint16_t *src, float *dst, int64_t n) {
    uint32_t *d = (uint32_t *)dst;
    for (int64_t i = 0; i < n; i++) d[i] = (uint32_t)src[i] << 16;
}

/* A cache row (f32, f16 or bf16) as f32: a pointer into the cache for f32,
 * else converted into buf. */
static const float *cache_row(const mlxn_tensor *c, size_t base, int64_t D, float *buf) {
    if (c->dtype == MLXN_F32) return (const float *)mlxn_tensor_data(c) + base;
    const uint16_t *src = (const uint16_t *)mlxn_tensor_data(c) + base;
    if (c->dtype == MLXN_BF16) bf16_row(src, buf, D);
    else if (__builtin_cpu_supports("avx512f")) f16_row_512(src, buf, D);
    else if (__builtin_cpu_supports("avx2")) f16_row_f16c(src, buf, D); /* every AVX2 CPU has F16C */
    else for (int64_t d = 0; d < D; d++) buf[d] = mlxn_f16_to_f32(src[d]);
    return buf;
}

/* Keys are taken in blocks of ATT_BLOCK and queries in tiles of up to
 * ATT_QT (prefill: consecutive tokens of one head). Each key block is
 * converted to f32 once per tile; each query scores the block's keys it may
 * see, then rescales its running sum and accumulator once per block. */
/* ATT_QT 32 (was 8): a key block converted and read once for 4x the
 * queries (SmolLM2 pp512, dev EPYC: 8 -> 16 -> 32 -> 64 gave 2087-2109,
 * 2198-2221, 2249-2330, 2308-2334 tok/s; 64 would put D = 128 query state
 * and key/value tiles past L1). */
enum { ATT_BLOCK = 64, ATT_QT = 32 };
/* Prefill tiles of one token range for up to ATT_QT_G query heads of a kv
 * head go through the transposed form together (attend_tile_qt), each key
 * block converted to f32 once for all of them instead of once a head. */
enum { ATT_QT_G = 4 };
/* Most queries a key block's rows are read once for (attend_mq_256): the
 * heads that share a kv head in decode. */
enum { ATT_MQ_MAX = 8 };
/* attend_mq_256 prefetches key rows this many rows ahead (a block). */
enum { ATT_KPF = 64 };

static size_t s_attention(const mlxn_node *n, int nth) {
    (void)nth;
    size_t D = (size_t)T(1)->shape[2];
    /* query accumulators (ATT_QT_G tiles), key and value tiles, scores;
     * then the transposed prefill form's queries (ATT_QT_G tiles) and
     * scores (attend_tile_qt) */
    return ((size_t)ATT_QT_G * ATT_QT * D + 2 * (size_t)ATT_BLOCK * D + ATT_MQ_MAX * ATT_BLOCK +
            (size_t)ATT_QT_G * ATT_QT * D + (size_t)ATT_BLOCK * ATT_QT) *
           sizeof(float);
}

/* Per-query state of a tile: running max, sum and accumulator. */
typedef struct att_q {
    const float *q;
    int64_t first, last; /* visible cache positions */
    float mx, sum;
    float *acc;
} att_q;

#if defined(__x86_64__) || defined(__i386__)
/* The largest of m's lanes and b (none of them NaN: the block maxima
 * pass a NaN score over, as `s > bm ? s : bm` does). A scalar pass over
 * the block's scores after them was ~10 % of decode attention's time in
 * perf (SmolLM2 shape, dev Zen 3): a chain of dependent maxima. */
static inline float att_max4(__m128 m, float b) {
    m = _mm_max_ps(m, _mm_movehl_ps(m, m));
    m = _mm_max_ss(m, _mm_shuffle_ps(m, m, 1));
    const float r = _mm_cvtss_f32(m);
    return r > b ? r : b;
}
#endif

/* Keys [*j0, *j1) of the block of nb keys from b0 that query a sees. */
static inline void att_keys(const att_q *a, int64_t b0, int64_t nb, int64_t *j0, int64_t *j1) {
    *j0 = a->first > b0 ? a->first - b0 : 0;
    *j1 = a->last - b0 + 1 < nb ? a->last - b0 + 1 : nb;
}

/* A query's online softmax meets a block whose largest score is bm: a
 * larger maximum rescales its sum and accumulator. */
static void att_new_max(att_q *a, float bm, int64_t D) {
    if (!(bm > a->mx)) return;
    float corr = a->mx == -INFINITY ? 0.0f : expf(a->mx - bm);
    a->sum *= corr;
    if (a->mx != -INFINITY) scale_row(a->acc, corr, D);
    a->mx = bm;
}

/* A query's finished output row: its accumulator over its sum (zeros when
 * it saw no key). */
MLXN_CLONES static void att_out_row(float *restrict o, const float *restrict acc, float inv, int64_t D) {
    for (int64_t d = 0; d < D; d++) o[d] = acc[d] * inv;
}
static void att_out(const att_q *a, float *o, int64_t D) {
    att_out_row(o, a->acc, a->sum > 0 ? 1.0f / a->sum : 0.0f, D);
}

/* Partial softmax states (max, sum, acc[D]) of S slices of one query's
 * keys, `stride` floats apart from `part`, merged into its output row o
 * (a slice that saw no key has max -inf and is skipped). */
static void att_merge(const float *part, size_t stride, int64_t S, int64_t D, float *o) {
    float M = -INFINITY, l = 0;
    for (int64_t s = 0; s < S; s++)
        if (part[(size_t)s * stride] > M) M = part[(size_t)s * stride];
    for (int64_t d = 0; d < D; d++) o[d] = 0;
    for (int64_t s = 0; s < S; s++) {
        const float *r = part + (size_t)s * stride;
        if (r[0] == -INFINITY) continue;
        float w = expf(r[0] - M);
        l += w * r[1];
        axpy(o, w, r + 2, D);
    }
    scale_row(o, l > 0 ? 1.0f / l : 0.0f, D);
}

/* The k and v rows of cache positions b0 .. b0+nb-1 of kv head hk (ring
 * positions modulo C), as f32: in place, or converted into ktile / vtile. */
static void tile_rows(const mlxn_tensor *kc, const mlxn_tensor *vc, int64_t hk, int64_t b0, int64_t nb,
                      const float **kr, const float **vr, float *ktile, float *vtile) {
    int64_t C = kc->shape[1], D = kc->shape[2];
    for (int64_t j = 0, r = b0 % C; j < nb; j++, r = r + 1 == C ? 0 : r + 1) { /* r = (b0 + j) % C */
        size_t base = (size_t)((hk * C + r) * D);
        kr[j] = cache_row(kc, base, D, ktile + j * D);
        vr[j] = cache_row(vc, base, D, vtile + j * D);
    }
}

/* Attend queries qs[nq] (one kv head hk) over cache positions [from, to],
 * each limited to its own [first, last]. */
static void attend_tile(const mlxn_tensor *kc, const mlxn_tensor *vc, const mlxn_attention_params *p, int64_t hk,
                        int64_t from, int64_t to, att_q *qs, int nq, float *ktile, float *vtile, float *sc) {
    int64_t D = kc->shape[2];
    const float *kr[ATT_BLOCK], *vr[ATT_BLOCK];
    for (int64_t b0 = from; b0 <= to; b0 += ATT_BLOCK) {
        int64_t nb = to - b0 + 1 < ATT_BLOCK ? to - b0 + 1 : ATT_BLOCK;
        tile_rows(kc, vc, hk, b0, nb, kr, vr, ktile, vtile);
        for (int qi = 0; qi < nq; qi++) {
            att_q *a = &qs[qi];
            int64_t j0, j1;
            att_keys(a, b0, nb, &j0, &j1);
            if (j0 >= j1) continue;
            float bm = -INFINITY;
            for (int64_t j = j0; j < j1; j++) {
                float sv = dot_f32(a->q, kr[j], D) * p->scale;
                if (p->softcap > 0) sv = tanhf(sv / p->softcap) * p->softcap;
                sc[j] = sv;
                if (sv > bm) bm = sv;
            }
            att_new_max(a, bm, D);
            for (int64_t j = j0; j < j1; j++) {
                float e = expf(sc[j] - a->mx);
                a->sum += e;
                axpy(a->acc, e, vr[j], D);
            }
        }
    }
}

#if defined(__x86_64__) || defined(__i386__)

/* acc[d0 .. d0 + 16 NC) += sum_j p[j] v_j[d0 ..] for j in [j0, j1): the NC
 * (<= 8) accumulators stay in registers and each p[j] is broadcast once (NC
 * a constant after inlining). */
__attribute__((target("avx512f"), always_inline)) static inline void pv_512(float *acc, const float *pr,
                                                                            const void *const *vr, int dt,
                                                                            int64_t j0, int64_t j1, const int NC,
                                                                            int64_t d0) {
    __m512 a[8];
    acc += d0;
#pragma GCC unroll 8
    for (int c = 0; c < NC; c++) a[c] = _mm512_loadu_ps(acc + 16 * c);
    for (int64_t j = j0; j < j1; j++) {
        __m512 pj = _mm512_set1_ps(pr[j]);
#pragma GCC unroll 8
        for (int c = 0; c < NC; c++) a[c] = _mm512_fmadd_ps(pj, ld16_512(vr[j], dt, d0 + 16 * c), a[c]);
    }
#pragma GCC unroll 8
    for (int c = 0; c < NC; c++) _mm512_storeu_ps(acc + 16 * c, a[c]);
}

/* A query's block scores sx[j0, j1) into their exponentials against its
 * running maximum, their sum added to its running sum. */
__attribute__((target("avx512f"), always_inline)) static inline void att_exp_512(att_q *x, float *sx, int64_t j0,
                                                                                 int64_t j1) {
    __m512 es = _mm512_setzero_ps();
    for (int64_t j = j0; j < j1; j += 16) {
        __mmask16 m = j1 - j >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (j1 - j)) - 1);
        __m512 e = exp_512(_mm512_sub_ps(_mm512_maskz_loadu_ps(m, sx + j), _mm512_set1_ps(x->mx)));
        e = _mm512_maskz_mov_ps(m, e);
        es = _mm512_add_ps(es, e);
        _mm512_mask_storeu_ps(sx + j, m, e);
    }
    x->sum += _mm512_reduce_add_ps(es);
}

/* MLXN_CPU_ATT_PAIR=0: prefill blocks one query at a time (measuring). */
static bool att_pair_on(void) {
    static int on = -1;
    return mlxn_env_switch(&on, "MLXN_CPU_ATT_PAIR");
}
/* Whether the query after a in a tile, b, sees the same keys [j0, j1) of
 * the block (attend_block_512 / _256 then take both at once). */
static inline bool att_pairs(const att_q *b, int64_t b0, int64_t nb, int64_t j0, int64_t j1) {
    int64_t k0, k1;
    att_keys(b, b0, nb, &k0, &k1);
    return k0 == j0 && k1 == j1 && att_pair_on();
}
/* Largest of each of the NQ (<= 4) queries' key lanes bq[q] (-inf for a
 * lane past NQ), as query lanes (att_put_scores' maxima). */
static inline __m128 att_qmax(const __m128 *bq, int NQ) {
    float t[4] = {-INFINITY, -INFINITY, -INFINITY, -INFINITY};
    for (int q = 0; q < NQ; q++) t[q] = att_max4(bq[q], -INFINITY);
    return _mm_loadu_ps(t);
}
/* Two queries a, b that see the same keys [j0, j1) of a block (prefill:
 * neighbours in a tile, away from the causal edge): each key and value
 * vector is loaded once for both, 4 keys a step into 8 sums. Scores into
 * sc (a) and sc + ATT_BLOCK (b), then each query's online softmax, then
 * P·V 64 columns (then 16) a step for both. */
__attribute__((target("avx512f"), always_inline)) static inline void attend_pair_512(
    const mlxn_attention_params *p, int64_t D, int64_t j0, int64_t j1, const void *const *kr,
    const void *const *vr, att_q *a, att_q *b, float *sc, const int dt) {
    float *sb = sc + ATT_BLOCK;
    __m128 ma = _mm_set1_ps(-INFINITY), mb = ma;
    float bma = -INFINITY, bmb = -INFINITY;
    int64_t j = j0;
    for (; j + 4 <= j1; j += 4) {
        __m512 sa[4], sv[4];
#pragma GCC unroll 4
        for (int k = 0; k < 4; k++) sa[k] = sv[k] = _mm512_setzero_ps();
        for (int64_t d = 0; d < D; d += 16) {
            const __m512 qa = _mm512_loadu_ps(a->q + d), qb = _mm512_loadu_ps(b->q + d);
#pragma GCC unroll 4
            for (int k = 0; k < 4; k++) {
                const __m512 kv = ld16_512(kr[j + k], dt, d);
                sa[k] = _mm512_fmadd_ps(qa, kv, sa[k]);
                sv[k] = _mm512_fmadd_ps(qb, kv, sv[k]);
            }
        }
        const __m128 va = _mm_mul_ps(mlxn_reduce4_512(sa[0], sa[1], sa[2], sa[3]), _mm_set1_ps(p->scale));
        const __m128 vb = _mm_mul_ps(mlxn_reduce4_512(sv[0], sv[1], sv[2], sv[3]), _mm_set1_ps(p->scale));
        ma = _mm_max_ps(va, ma);
        mb = _mm_max_ps(vb, mb);
        _mm_storeu_ps(sc + j, va);
        _mm_storeu_ps(sb + j, vb);
    }
    for (; j < j1; j++) {
        __m512 xa = _mm512_setzero_ps(), xb = xa;
        for (int64_t d = 0; d < D; d += 16) {
            const __m512 kv = ld16_512(kr[j], dt, d);
            xa = _mm512_fmadd_ps(_mm512_loadu_ps(a->q + d), kv, xa);
            xb = _mm512_fmadd_ps(_mm512_loadu_ps(b->q + d), kv, xb);
        }
        sc[j] = _mm512_reduce_add_ps(xa) * p->scale;
        sb[j] = _mm512_reduce_add_ps(xb) * p->scale;
        bma = sc[j] > bma ? sc[j] : bma;
        bmb = sb[j] > bmb ? sb[j] : bmb;
    }
    att_new_max(a, att_max4(ma, bma), D);
    att_new_max(b, att_max4(mb, bmb), D);
    att_exp_512(a, sc, j0, j1);
    att_exp_512(b, sb, j0, j1);
    int64_t d = 0;
    for (; d + 64 <= D; d += 64) {
        __m512 ca[4], cb[4];
#pragma GCC unroll 4
        for (int c = 0; c < 4; c++) {
            ca[c] = _mm512_loadu_ps(a->acc + d + 16 * c);
            cb[c] = _mm512_loadu_ps(b->acc + d + 16 * c);
        }
        for (j = j0; j < j1; j++) {
            const __m512 pa = _mm512_set1_ps(sc[j]), pb = _mm512_set1_ps(sb[j]);
#pragma GCC unroll 4
            for (int c = 0; c < 4; c++) {
                const __m512 v = ld16_512(vr[j], dt, d + 16 * c);
                ca[c] = _mm512_fmadd_ps(pa, v, ca[c]);
                cb[c] = _mm512_fmadd_ps(pb, v, cb[c]);
            }
        }
#pragma GCC unroll 4
        for (int c = 0; c < 4; c++) {
            _mm512_storeu_ps(a->acc + d + 16 * c, ca[c]);
            _mm512_storeu_ps(b->acc + d + 16 * c, cb[c]);
        }
    }
    for (; d < D; d += 16) {
        __m512 ca = _mm512_loadu_ps(a->acc + d), cb = _mm512_loadu_ps(b->acc + d);
        for (j = j0; j < j1; j++) {
            const __m512 v = ld16_512(vr[j], dt, d);
            ca = _mm512_fmadd_ps(_mm512_set1_ps(sc[j]), v, ca);
            cb = _mm512_fmadd_ps(_mm512_set1_ps(sb[j]), v, cb);
        }
        _mm512_storeu_ps(a->acc + d, ca);
        _mm512_storeu_ps(b->acc + d, cb);
    }
}

/* One key block of attend_tile_512: rows kr[j], vr[j] (j < nb) in dtype dt. */
__attribute__((target("avx512f"), always_inline)) static inline void attend_block_512(
    const mlxn_attention_params *p, int64_t D, int64_t b0, int64_t nb, const void *const *kr,
    const void *const *vr, att_q *qs, int nq, float *sc, const int dt) {
    for (int qi = 0; qi < nq; qi++) {
        att_q *a = &qs[qi];
        int64_t j0, j1;
        att_keys(a, b0, nb, &j0, &j1);
        if (j0 >= j1) continue;
        if (qi + 1 < nq && att_pairs(&qs[qi + 1], b0, nb, j0, j1)) { /* the next query sees the same keys */
            attend_pair_512(p, D, j0, j1, kr, vr, a, &qs[qi + 1], sc, dt);
            qi++;
            continue;
        }
        float bm = -INFINITY; /* the block's largest score: its last keys', and bm4's */
        __m128 bm4 = _mm_set1_ps(-INFINITY);
        int64_t j = j0;
        /* 4 keys at a time: independent FMA chains, one 4-way reduction */
        for (; j + 4 <= j1; j += 4) {
            __m512 s0 = _mm512_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
            for (int64_t d = 0; d < D; d += 16) {
                __m512 qv = _mm512_loadu_ps(a->q + d);
                s0 = _mm512_fmadd_ps(qv, ld16_512(kr[j], dt, d), s0);
                s1 = _mm512_fmadd_ps(qv, ld16_512(kr[j + 1], dt, d), s1);
                s2 = _mm512_fmadd_ps(qv, ld16_512(kr[j + 2], dt, d), s2);
                s3 = _mm512_fmadd_ps(qv, ld16_512(kr[j + 3], dt, d), s3);
            }
            const __m128 v = _mm_mul_ps(mlxn_reduce4_512(s0, s1, s2, s3), _mm_set1_ps(p->scale));
            bm4 = _mm_max_ps(v, bm4);
            _mm_storeu_ps(sc + j, v);
        }
        for (; j < j1; j++) {
            __m512 acc = _mm512_setzero_ps();
            for (int64_t d = 0; d < D; d += 16)
                acc = _mm512_fmadd_ps(_mm512_loadu_ps(a->q + d), ld16_512(kr[j], dt, d), acc);
            sc[j] = _mm512_reduce_add_ps(acc) * p->scale;
            bm = sc[j] > bm ? sc[j] : bm;
        }
        att_new_max(a, att_max4(bm4, bm), D);
        att_exp_512(a, sc, j0, j1);
        int64_t d = 0; /* 128 columns at a time, then 64, then 16 */
        for (; d + 128 <= D; d += 128) pv_512(a->acc, sc, vr, dt, j0, j1, 8, d);
        if (D - d >= 64) pv_512(a->acc, sc, vr, dt, j0, j1, 4, d), d += 64;
        for (; d < D; d += 16) pv_512(a->acc, sc, vr, dt, j0, j1, 1, d);
    }
}

/* MLXN_CPU_ATT_K4=0: attend_mq_512 / _256 take keys two at a time and 32 /
 * 16 value columns a step, as before their 4-key and wider value forms
 * (measuring). */
static bool att_k4_on(void) {
    static int on = -1;
    return mlxn_env_switch(&on, "MLXN_CPU_ATT_K4");
}
/* MLXN_CPU_ATT_MQ=0: the heads of a kv head through each key block one by
 * one, as before attend_mq_256 / _512 (measuring). */
static bool att_mq_on(void) {
    static int on = -1;
    return mlxn_env_switch(&on, "MLXN_CPU_ATT_MQ");
}

/* A 16-bit cache is read where it lies when a tile has at most this many
 * queries (decode: the heads of one kv head), else converted to f32 once a
 * key block for all of them (prefill tiles of 32 tokens: converting in
 * registers for every query measured 3-5 % slower at pp512). */
#define ATT_DIRECT_MAX 8

/* attend_tile for SIMD CPUs (NAME attend_tile_512 / _256 over BLOCK
 * attend_block_512 / _256), D a multiple of the vector width and no
 * soft-capping: the same blocks and online softmax, with the dots and
 * updates inline and the exponentials a vector at a time (exp_512 /
 * exp_256). A decode step of SmolLM2 spent ~8 % of its time in this loop's
 * calls and scalar expf, and ~7 % converting its f16 cache rows into f32
 * tiles before reading them directly (AVX-512 EPYC). */
#define ATTEND_TILE_SIMD(NAME, TARGET, BLOCK, MQ)                                                              \
    TARGET static void NAME(const mlxn_tensor *kc, const mlxn_tensor *vc, const mlxn_attention_params *p,    \
                            int64_t hk, int64_t from, int64_t to, att_q *qs, int nq, float *ktile,           \
                            float *vtile, float *sc) {                                                      \
    int64_t C = kc->shape[1], D = kc->shape[2];                                                               \
    const int dt = kc->dtype;                                                                                 \
    const bool direct = dt != MLXN_F32 && dt == (int)vc->dtype && nq <= ATT_DIRECT_MAX;                       \
    bool mq = nq >= 2 && nq <= ATT_MQ_MAX && (dt == MLXN_F32 || direct) && att_mq_on();                      \
    for (int qi = 1; qi < nq && mq; qi++) mq = qs[qi].first == qs[0].first && qs[qi].last == qs[0].last;      \
    const uint16_t *kb = mlxn_tensor_data(kc), *vb = mlxn_tensor_data(vc);                                    \
    const void *kr[ATT_BLOCK], *vr[ATT_BLOCK];                                                                \
    for (int64_t b0 = from; b0 <= to; b0 += ATT_BLOCK) {                                                      \
        int64_t nb = to - b0 + 1 < ATT_BLOCK ? to - b0 + 1 : ATT_BLOCK;                                       \
        if (direct) {                                                                                         \
            /* r = (b0 + j) % C, stepped: a division a position was ~5 % of                                   \
             * SmolLM2 decode after 4000 tokens (perf, dev Zen 4) */                                          \
            for (int64_t j = 0, r = b0 % C; j < nb; j++, r = r + 1 == C ? 0 : r + 1) {                        \
                size_t base = (size_t)((hk * C + r) * D);                                                     \
                kr[j] = kb + base;                                                                            \
                vr[j] = vb + base;                                                                            \
            }                                                                                                 \
            if (mq && MQ(p, D, b0, nb, kr, vr, qs, nq, sc, dt)) continue;                                    \
            if (dt == MLXN_F16) BLOCK(p, D, b0, nb, kr, vr, qs, nq, sc, MLXN_F16);                            \
            else BLOCK(p, D, b0, nb, kr, vr, qs, nq, sc, MLXN_BF16);                                          \
        } else {                                                                                              \
            tile_rows(kc, vc, hk, b0, nb, (const float **)kr, (const float **)vr, ktile, vtile);              \
            if (mq && MQ(p, D, b0, nb, kr, vr, qs, nq, sc, MLXN_F32)) continue;                              \
            BLOCK(p, D, b0, nb, kr, vr, qs, nq, sc, MLXN_F32);                                                \
        }                                                                                                     \
    }                                                                                                         \
    }
/* The multi-head block of ATTEND_TILE_SIMD (NAME): its keys [j0, j1), then
 * IMPL (attend_mq_256_t / _512_t) with the query count and row type as
 * constants; false for a count it has no form for (the per-query blocks
 * take it). */
#define ATTEND_MQ(NAME, TARGET, IMPL)                                                                          \
    TARGET static bool NAME(const mlxn_attention_params *p, int64_t D, int64_t b0, int64_t nb,                \
                            const void *const *kr, const void *const *vr, att_q *qs, int nq, float *sc,       \
                            int dt) {                                                                         \
        int64_t j0, j1;                                                                                       \
        att_keys(&qs[0], b0, nb, &j0, &j1);                                                                   \
        if (j0 >= j1) return true;                                                                            \
        if (nq < 2 || nq > ATT_MQ_MAX) return false;                                                          \
        switch (nq * 4 + (dt == MLXN_F16 ? 0 : dt == MLXN_BF16 ? 1 : 2)) {                                     \
            ATTEND_MQ_CASES(IMPL, 2) ATTEND_MQ_CASES(IMPL, 3) ATTEND_MQ_CASES(IMPL, 4)                         \
            ATTEND_MQ_CASES(IMPL, 5) ATTEND_MQ_CASES(IMPL, 6) ATTEND_MQ_CASES(IMPL, 7)                         \
            ATTEND_MQ_CASES(IMPL, 8)                                                                          \
        }                                                                                                     \
        return false;                                                                                         \
    }
#define ATTEND_MQ_CASES(IMPL, N)                                                                               \
    case N * 4: IMPL(p, D, j0, j1, kr, vr, qs, sc, MLXN_F16, N); return true;                                 \
    case N * 4 + 1: IMPL(p, D, j0, j1, kr, vr, qs, sc, MLXN_BF16, N); return true;                            \
    case N * 4 + 2: IMPL(p, D, j0, j1, kr, vr, qs, sc, MLXN_F32, N); return true;

#define T_512 __attribute__((target("avx512f")))
#define AINL __attribute__((always_inline)) static inline
/* The value rows of keys kr[0 .. ks) (read column by column after the
 * scores) and the key rows ATT_KPF on: rows of a head are contiguous but
 * at a ring's wrap, and a prefetch never faults. */
static inline void att_mq_prefetch(const void *const *kr, const void *const *vr, int ks, int64_t rowb) {
    for (int k = 0; k < ks; k++)
        for (int64_t o = 0; o < rowb; o += 64) {
            __builtin_prefetch((const char *)vr[k] + o, 0, 3);
            __builtin_prefetch((const char *)kr[k] + ATT_KPF * rowb + o, 0, 3);
        }
}

/* Key jk's scores for queries q0 .. q0 + 3 (lanes; those past NQ unused)
 * into their rows of sc, and into the block's largest scores so far bmx
 * (lanes as v; a NaN score is passed over, as a scalar max after the
 * scores did: a pass over the block per query, whose dependent maxima
 * were ~10 % of the SmolLM2 attention's time in perf, dev Zen 3). */
_Static_assert(ATT_MQ_MAX <= 8, "att_put_scores' maxima: two groups of 4 queries");
AINL void att_put_scores(float *sc, int64_t jk, __m128 v, int q0, int NQ, __m128 *bmx) {
    *bmx = _mm_max_ps(v, *bmx);
    float t[4];
    _mm_storeu_ps(t, v);
    for (int q = q0; q < q0 + 4 && q < NQ; q++) sc[q * ATT_BLOCK + jk] = t[q - q0];
}

/* pv_mq_256 at 16 lanes: columns [d0, d0 + 16 W), W <= 4. */
T_512 AINL void pv_mq_512(att_q *qs, const float *sc, const void *const *vr, int dt, int64_t j0, int64_t j1,
                          int64_t d0, const int NQ, const int W) {
    __m512 a[ATT_MQ_MAX][4];
#pragma GCC unroll 8
    for (int q = 0; q < NQ; q++)
#pragma GCC unroll 4
        for (int w = 0; w < W; w++) a[q][w] = _mm512_loadu_ps(qs[q].acc + d0 + 16 * w);
    for (int64_t j = j0; j < j1; j++) {
        __m512 v[4];
#pragma GCC unroll 4
        for (int w = 0; w < W; w++) v[w] = ld16_512(vr[j], dt, d0 + 16 * w);
#pragma GCC unroll 8
        for (int q = 0; q < NQ; q++) {
            const __m512 pj = _mm512_set1_ps(sc[q * ATT_BLOCK + j]);
#pragma GCC unroll 4
            for (int w = 0; w < W; w++) a[q][w] = _mm512_fmadd_ps(pj, v[w], a[q][w]);
        }
    }
#pragma GCC unroll 8
    for (int q = 0; q < NQ; q++)
#pragma GCC unroll 4
        for (int w = 0; w < W; w++) _mm512_storeu_ps(qs[q].acc + d0 + 16 * w, a[q][w]);
}

/* attend_mq_256_t at 16 lanes (see there). */
T_512 AINL void attend_mq_512_t(const mlxn_attention_params *p, int64_t D, int64_t j0, int64_t j1,
                                const void *const *kr, const void *const *vr, att_q *qs, float *sc, const int dt,
                                const int NQ) {
    const __m512 zero = _mm512_setzero_ps();
    const int64_t rowb = D * (dt == MLXN_F32 ? 4 : 2);
    const int KS = NQ <= 4 ? 2 : 1;
    __m128 bmx[2] = {_mm_set1_ps(-INFINITY), _mm_set1_ps(-INFINITY)}; /* att_put_scores */
    int64_t j = j0;
    if (NQ <= 4 && D <= 64 && att_k4_on()) {
        /* Short rows (D <= 64), few queries: four keys a step, each
         * query's four dots reduced in one reduce4 (lanes = keys) and
         * stored as one vector, instead of one reduce4 across the queries
         * a key with NQ of its lanes used; the value rows below then go 64
         * columns at once, so each weight is broadcast once a key. Dev Zen
         * 4, 2 threads, µs a call over 8-30 caches from DRAM: SmolLM2's 9 /
         * 3 heads, D = 64, position 2047: 67-70 -> 50-56; 16 / 8 heads:
         * 175-180 -> 135-140; 32 / 8: 192-196 -> 148-149. Either half
         * alone gained little there, and at D = 128 the 4-key form lost
         * (16 / 8 heads 355-362 -> 377-385, 32 / 8 418 -> 477), so D = 128
         * keeps the 2-key form (bench/RESULTS.md). */
        __m128 bq[4] = {_mm_set1_ps(-INFINITY), _mm_set1_ps(-INFINITY), _mm_set1_ps(-INFINITY),
                        _mm_set1_ps(-INFINITY)};
        for (; j + 4 <= j1; j += 4) {
            att_mq_prefetch(kr + j, vr + j, 4, rowb);
            __m512 s4[4][4];
#pragma GCC unroll 4
            for (int k = 0; k < 4; k++)
#pragma GCC unroll 4
                for (int q = 0; q < NQ; q++) s4[k][q] = zero;
            for (int64_t d = 0; d < D; d += 16) {
                __m512 kv[4];
#pragma GCC unroll 4
                for (int k = 0; k < 4; k++) kv[k] = ld16_512(kr[j + k], dt, d);
#pragma GCC unroll 4
                for (int q = 0; q < NQ; q++) {
                    const __m512 qv = _mm512_loadu_ps(qs[q].q + d);
#pragma GCC unroll 4
                    for (int k = 0; k < 4; k++) s4[k][q] = _mm512_fmadd_ps(qv, kv[k], s4[k][q]);
                }
            }
#pragma GCC unroll 4
            for (int q = 0; q < NQ; q++) {
                const __m128 v = _mm_mul_ps(mlxn_reduce4_512(s4[0][q], s4[1][q], s4[2][q], s4[3][q]),
                                            _mm_set1_ps(p->scale));
                bq[q] = _mm_max_ps(v, bq[q]);
                _mm_storeu_ps(sc + q * ATT_BLOCK + j, v);
            }
        }
        bmx[0] = att_qmax(bq, NQ); /* the maxima into bmx's query lanes */
    }
    for (; j < j1; j += KS) {
        const int ks = j + KS <= j1 ? KS : 1;
        att_mq_prefetch(kr + j, vr + j, ks, rowb);
        __m512 s[2][ATT_MQ_MAX];
#pragma GCC unroll 2
        for (int k = 0; k < KS; k++)
#pragma GCC unroll 8
            for (int q = 0; q < NQ; q++) s[k][q] = zero;
        if (ks == 2) {
            for (int64_t d = 0; d < D; d += 16) {
                const __m512 k0 = ld16_512(kr[j], dt, d), k1 = ld16_512(kr[j + 1], dt, d);
#pragma GCC unroll 8
                for (int q = 0; q < NQ; q++) {
                    const __m512 qv = _mm512_loadu_ps(qs[q].q + d);
                    s[0][q] = _mm512_fmadd_ps(qv, k0, s[0][q]);
                    s[1][q] = _mm512_fmadd_ps(qv, k1, s[1][q]);
                }
            }
        } else {
            for (int64_t d = 0; d < D; d += 16) {
                const __m512 k0 = ld16_512(kr[j], dt, d);
#pragma GCC unroll 8
                for (int q = 0; q < NQ; q++) s[0][q] = _mm512_fmadd_ps(_mm512_loadu_ps(qs[q].q + d), k0, s[0][q]);
            }
        }
        for (int k = 0; k < ks; k++)
#pragma GCC unroll 2
            for (int q0 = 0; q0 < NQ; q0 += 4)
                att_put_scores(sc, j + k,
                               _mm_mul_ps(mlxn_reduce4_512(s[k][q0], q0 + 1 < NQ ? s[k][q0 + 1] : zero,
                                                          q0 + 2 < NQ ? s[k][q0 + 2] : zero,
                                                          q0 + 3 < NQ ? s[k][q0 + 3] : zero),
                                          _mm_set1_ps(p->scale)),
                               q0, NQ, &bmx[q0 >> 2]);
    }
    float bmf[ATT_MQ_MAX];
    _mm_storeu_ps(bmf, bmx[0]);
    _mm_storeu_ps(bmf + 4, bmx[1]);
    for (int q = 0; q < NQ; q++) {
        att_q *a = &qs[q];
        float *sq = sc + q * ATT_BLOCK;
        att_new_max(a, bmf[q], D);
        att_exp_512(a, sq, j0, j1);
    }
    /* 64 columns a query in registers while NQ <= 4 (each weight broadcast
     * once for 4 value vectors; 32 columns before: dev Zen 4, 2 threads, µs
     * a call at position 2047, 16 / 8 heads D = 128 372-380 -> 345-350,
     * 24 / 8 375-385 -> 364-372, 32 / 8 398-416 -> 385-398, at D = 64 see
     * the 4-key form above), else 16 (32 columns for 5-8 queries lost:
     * 14 / 2 heads D = 64 57-63 -> 59-73, 32 / 4 125-128 -> 131-139) */
    int64_t d = 0;
    if (NQ <= 4 && att_k4_on())
        for (; d + 64 <= D; d += 64) pv_mq_512(qs, sc, vr, dt, j0, j1, d, NQ, 4);
    if (NQ <= 4)
        for (; d + 32 <= D; d += 32) pv_mq_512(qs, sc, vr, dt, j0, j1, d, NQ, 2);
    for (; d < D; d += 16) pv_mq_512(qs, sc, vr, dt, j0, j1, d, NQ, 1);
}

ATTEND_MQ(attend_mq_512, T_512, attend_mq_512_t)
#undef T_512
#undef AINL
ATTEND_TILE_SIMD(attend_tile_512, __attribute__((target("avx512f"))), attend_block_512, attend_mq_512)
#endif

#if defined(__x86_64__) || defined(__i386__)
/* attend_tile_512's blocks for AVX2 CPUs (D a multiple of 8): 8 lanes (rows
 * through ld8_256). */
T_AVX2 __attribute__((always_inline)) static inline void pv_256(float *acc, const float *pr, const void *const *vr,
                                                                 int dt, int64_t j0, int64_t j1, const int NC,
                                                                 int64_t d0) {
    __m256 a[8];
    acc += d0;
#pragma GCC unroll 8
    for (int c = 0; c < NC; c++) a[c] = _mm256_loadu_ps(acc + 8 * c);
    for (int64_t j = j0; j < j1; j++) {
        __m256 pj = _mm256_set1_ps(pr[j]);
#pragma GCC unroll 8
        for (int c = 0; c < NC; c++) a[c] = _mm256_fmadd_ps(pj, ld8_256(vr[j], dt, d0 + 8 * c), a[c]);
    }
#pragma GCC unroll 8
    for (int c = 0; c < NC; c++) _mm256_storeu_ps(acc + 8 * c, a[c]);
}
/* att_exp_512 at 8 lanes (the last 1-7 keys: the same exp, one lane used). */
T_AVX2 __attribute__((always_inline)) static inline void att_exp_256(att_q *x, float *sx, int64_t j0, int64_t j1) {
    __m256 es = _mm256_setzero_ps();
    int64_t j = j0;
    for (; j + 8 <= j1; j += 8) {
        __m256 e = exp_256(_mm256_sub_ps(_mm256_loadu_ps(sx + j), _mm256_set1_ps(x->mx)));
        es = _mm256_add_ps(es, e);
        _mm256_storeu_ps(sx + j, e);
    }
    float st = 0.0f;
    for (; j < j1; j++) {
        float e = _mm256_cvtss_f32(exp_256(_mm256_set1_ps(sx[j] - x->mx)));
        st += e;
        sx[j] = e;
    }
    x->sum += mlxn_hsum_256(es) + st;
}
/* attend_pair_512 at 8 lanes: 8 sums of 4 keys x 2 queries, P·V 32
 * columns (4 ymm a query) a step, then 8 (11 registers). */
T_AVX2 __attribute__((always_inline)) static inline void attend_pair_256(const mlxn_attention_params *p, int64_t D,
                                                                         int64_t j0, int64_t j1,
                                                                         const void *const *kr,
                                                                         const void *const *vr, att_q *a, att_q *b,
                                                                         float *sc, const int dt) {
    float *sb = sc + ATT_BLOCK;
    __m128 ma = _mm_set1_ps(-INFINITY), mb = ma;
    float bma = -INFINITY, bmb = -INFINITY;
    int64_t j = j0;
    for (; j + 4 <= j1; j += 4) {
        __m256 sa[4], sv[4];
#pragma GCC unroll 4
        for (int k = 0; k < 4; k++) sa[k] = sv[k] = _mm256_setzero_ps();
        for (int64_t d = 0; d < D; d += 8) {
            const __m256 qa = _mm256_loadu_ps(a->q + d), qb = _mm256_loadu_ps(b->q + d);
#pragma GCC unroll 4
            for (int k = 0; k < 4; k++) {
                const __m256 kv = ld8_256(kr[j + k], dt, d);
                sa[k] = _mm256_fmadd_ps(qa, kv, sa[k]);
                sv[k] = _mm256_fmadd_ps(qb, kv, sv[k]);
            }
        }
        const __m128 va = _mm_mul_ps(mlxn_reduce4_256(sa[0], sa[1], sa[2], sa[3]), _mm_set1_ps(p->scale));
        const __m128 vb = _mm_mul_ps(mlxn_reduce4_256(sv[0], sv[1], sv[2], sv[3]), _mm_set1_ps(p->scale));
        ma = _mm_max_ps(va, ma);
        mb = _mm_max_ps(vb, mb);
        _mm_storeu_ps(sc + j, va);
        _mm_storeu_ps(sb + j, vb);
    }
    for (; j < j1; j++) {
        __m256 xa = _mm256_setzero_ps(), xb = xa;
        for (int64_t d = 0; d < D; d += 8) {
            const __m256 kv = ld8_256(kr[j], dt, d);
            xa = _mm256_fmadd_ps(_mm256_loadu_ps(a->q + d), kv, xa);
            xb = _mm256_fmadd_ps(_mm256_loadu_ps(b->q + d), kv, xb);
        }
        sc[j] = mlxn_hsum_256(xa) * p->scale;
        sb[j] = mlxn_hsum_256(xb) * p->scale;
        bma = sc[j] > bma ? sc[j] : bma;
        bmb = sb[j] > bmb ? sb[j] : bmb;
    }
    att_new_max(a, att_max4(ma, bma), D);
    att_new_max(b, att_max4(mb, bmb), D);
    att_exp_256(a, sc, j0, j1);
    att_exp_256(b, sb, j0, j1);
    int64_t d = 0;
    for (; d + 32 <= D; d += 32) {
        __m256 ca[4], cb[4];
#pragma GCC unroll 4
        for (int c = 0; c < 4; c++) {
            ca[c] = _mm256_loadu_ps(a->acc + d + 8 * c);
            cb[c] = _mm256_loadu_ps(b->acc + d + 8 * c);
        }
        for (j = j0; j < j1; j++) {
            const __m256 pa = _mm256_broadcast_ss(sc + j), pb = _mm256_broadcast_ss(sb + j);
#pragma GCC unroll 4
            for (int c = 0; c < 4; c++) {
                const __m256 v = ld8_256(vr[j], dt, d + 8 * c);
                ca[c] = _mm256_fmadd_ps(pa, v, ca[c]);
                cb[c] = _mm256_fmadd_ps(pb, v, cb[c]);
            }
        }
#pragma GCC unroll 4
        for (int c = 0; c < 4; c++) {
            _mm256_storeu_ps(a->acc + d + 8 * c, ca[c]);
            _mm256_storeu_ps(b->acc + d + 8 * c, cb[c]);
        }
    }
    for (; d < D; d += 8) {
        __m256 ca = _mm256_loadu_ps(a->acc + d), cb = _mm256_loadu_ps(b->acc + d);
        for (j = j0; j < j1; j++) {
            const __m256 v = ld8_256(vr[j], dt, d);
            ca = _mm256_fmadd_ps(_mm256_broadcast_ss(sc + j), v, ca);
            cb = _mm256_fmadd_ps(_mm256_broadcast_ss(sb + j), v, cb);
        }
        _mm256_storeu_ps(a->acc + d, ca);
        _mm256_storeu_ps(b->acc + d, cb);
    }
}
/* attend_block_512 at 8 lanes. */
T_AVX2 __attribute__((always_inline)) static inline void attend_block_256(
    const mlxn_attention_params *p, int64_t D, int64_t b0, int64_t nb, const void *const *kr,
    const void *const *vr, att_q *qs, int nq, float *sc, const int dt) {
    for (int qi = 0; qi < nq; qi++) {
        att_q *a = &qs[qi];
        int64_t j0, j1;
        att_keys(a, b0, nb, &j0, &j1);
        if (j0 >= j1) continue;
        if (qi + 1 < nq && att_pairs(&qs[qi + 1], b0, nb, j0, j1)) { /* as attend_block_512 */
            attend_pair_256(p, D, j0, j1, kr, vr, a, &qs[qi + 1], sc, dt);
            qi++;
            continue;
        }
        float bm = -INFINITY; /* as attend_block_512 */
        __m128 bm4 = _mm_set1_ps(-INFINITY);
        int64_t j = j0;
        for (; j + 4 <= j1; j += 4) {
            __m256 s0 = _mm256_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
            for (int64_t d = 0; d < D; d += 8) {
                __m256 qv = _mm256_loadu_ps(a->q + d);
                s0 = _mm256_fmadd_ps(qv, ld8_256(kr[j], dt, d), s0);
                s1 = _mm256_fmadd_ps(qv, ld8_256(kr[j + 1], dt, d), s1);
                s2 = _mm256_fmadd_ps(qv, ld8_256(kr[j + 2], dt, d), s2);
                s3 = _mm256_fmadd_ps(qv, ld8_256(kr[j + 3], dt, d), s3);
            }
            const __m128 v = _mm_mul_ps(mlxn_reduce4_256(s0, s1, s2, s3), _mm_set1_ps(p->scale));
            bm4 = _mm_max_ps(v, bm4);
            _mm_storeu_ps(sc + j, v);
        }
        for (; j < j1; j++) {
            __m256 acc = _mm256_setzero_ps();
            for (int64_t d = 0; d < D; d += 8)
                acc = _mm256_fmadd_ps(_mm256_loadu_ps(a->q + d), ld8_256(kr[j], dt, d), acc);
            sc[j] = mlxn_hsum_256(acc) * p->scale;
            bm = sc[j] > bm ? sc[j] : bm;
        }
        att_new_max(a, att_max4(bm4, bm), D);
        att_exp_256(a, sc, j0, j1);
        int64_t d = 0; /* 64 columns at a time, then 32, then 8 */
        for (; d + 64 <= D; d += 64) pv_256(a->acc, sc, vr, dt, j0, j1, 8, d);
        if (D - d >= 32) pv_256(a->acc, sc, vr, dt, j0, j1, 4, d), d += 32;
        for (; d < D; d += 8) pv_256(a->acc, sc, vr, dt, j0, j1, 1, d);
    }
}
/* P·V for NQ queries over columns [d0, d0 + 8 W) (W ymm a query held in
 * registers): each value row loaded and converted once for all of them. */
T_AVX2 __attribute__((always_inline)) static inline void pv_mq_256(att_q *qs, const float *sc, const void *const *vr,
                                                                    int dt, int64_t j0, int64_t j1, int64_t d0,
                                                                    const int NQ, const int W) {
    __m256 a[ATT_MQ_MAX][4];
#pragma GCC unroll 8
    for (int q = 0; q < NQ; q++)
#pragma GCC unroll 4
        for (int w = 0; w < W; w++) a[q][w] = _mm256_loadu_ps(qs[q].acc + d0 + 8 * w);
    for (int64_t j = j0; j < j1; j++) {
        if (W <= 2) {
            __m256 v[2];
#pragma GCC unroll 2
            for (int w = 0; w < W; w++) v[w] = ld8_256(vr[j], dt, d0 + 8 * w);
#pragma GCC unroll 8
            for (int q = 0; q < NQ; q++) {
                const __m256 pj = _mm256_broadcast_ss(sc + q * ATT_BLOCK + j);
#pragma GCC unroll 2
                for (int w = 0; w < W; w++) a[q][w] = _mm256_fmadd_ps(pj, v[w], a[q][w]);
            }
        } else { /* the weights first, then one value vector at a time: 16 registers at NQ = 3 */
            __m256 pj[ATT_MQ_MAX];
#pragma GCC unroll 8
            for (int q = 0; q < NQ; q++) pj[q] = _mm256_broadcast_ss(sc + q * ATT_BLOCK + j);
#pragma GCC unroll 4
            for (int w = 0; w < W; w++) {
                const __m256 v = ld8_256(vr[j], dt, d0 + 8 * w);
#pragma GCC unroll 8
                for (int q = 0; q < NQ; q++) a[q][w] = _mm256_fmadd_ps(pj[q], v, a[q][w]);
            }
        }
    }
#pragma GCC unroll 8
    for (int q = 0; q < NQ; q++)
#pragma GCC unroll 4
        for (int w = 0; w < W; w++) _mm256_storeu_ps(qs[q].acc + d0 + 8 * w, a[q][w]);
}

/* One key block for NQ queries that all see its keys [j0, j1) (decode: the
 * heads of one kv head at one position): each key and value row is loaded
 * and converted once for all NQ instead of once a query (attend_block_256
 * read an f16 row and converted it NQ times). sc: NQ rows of ATT_BLOCK. */
T_AVX2 __attribute__((always_inline)) static inline void attend_mq_256_t(const mlxn_attention_params *p, int64_t D,
                                                                          int64_t j0, int64_t j1,
                                                                          const void *const *kr,
                                                                          const void *const *vr, att_q *qs,
                                                                          float *sc, const int dt, const int NQ) {
    const __m256 zero = _mm256_setzero_ps();
    const int64_t rowb = D * (dt == MLXN_F32 ? 4 : 2);
    /* keys two at a time while NQ <= 4: 2 NQ FMA chains in flight (one key
     * gave NQ, latency-bound at 3 or 4) */
    const int KS = NQ <= 4 ? 2 : 1;
    __m128 bmx[2] = {_mm_set1_ps(-INFINITY), _mm_set1_ps(-INFINITY)}; /* att_put_scores */
    int64_t j = j0;
    if (NQ <= 3 && D <= 64 && att_k4_on()) {
        /* four keys a step, as attend_mq_512_t's (one reduce4 a query,
         * lanes = keys); q's vectors loaded first and the key rows one at a
         * time: 12 sums + 3 + 1 = 16 registers at NQ = 3. With the
         * 32-column value rows below; the AVX2 path forced on the dev Zen
         * 4 (mlxn_mm_force_isa), µs a call at position 2047, caches in L3,
         * 2 threads: 9 / 3 heads D = 64 52.5 -> 43, 16 / 8 114 -> 89; from
         * DRAM level there (~24 GB/s either way). At D = 128 both forms
         * lost from DRAM (24 / 8 heads 371-386 -> 452-471; the value form
         * alone 336-369 -> 350-384), so D = 128 keeps the forms below; no
         * AVX2-only CPU measured (bench/RESULTS.md). */
        __m128 bq[3] = {_mm_set1_ps(-INFINITY), _mm_set1_ps(-INFINITY), _mm_set1_ps(-INFINITY)};
        for (; j + 4 <= j1; j += 4) {
            att_mq_prefetch(kr + j, vr + j, 4, rowb);
            __m256 s4[4][3];
#pragma GCC unroll 4
            for (int k = 0; k < 4; k++)
#pragma GCC unroll 3
                for (int q = 0; q < NQ; q++) s4[k][q] = zero;
            for (int64_t d = 0; d < D; d += 8) {
                __m256 qv[3];
#pragma GCC unroll 3
                for (int q = 0; q < NQ; q++) qv[q] = _mm256_loadu_ps(qs[q].q + d);
#pragma GCC unroll 4
                for (int k = 0; k < 4; k++) {
                    const __m256 kv = ld8_256(kr[j + k], dt, d);
#pragma GCC unroll 3
                    for (int q = 0; q < NQ; q++) s4[k][q] = _mm256_fmadd_ps(qv[q], kv, s4[k][q]);
                }
            }
#pragma GCC unroll 3
            for (int q = 0; q < NQ; q++) {
                const __m128 v = _mm_mul_ps(mlxn_reduce4_256(s4[0][q], s4[1][q], s4[2][q], s4[3][q]),
                                            _mm_set1_ps(p->scale));
                bq[q] = _mm_max_ps(v, bq[q]);
                _mm_storeu_ps(sc + q * ATT_BLOCK + j, v);
            }
        }
        bmx[0] = att_qmax(bq, NQ);
    }
    for (; j < j1; j += KS) {
        const int ks = j + KS <= j1 ? KS : 1;
        att_mq_prefetch(kr + j, vr + j, ks, rowb);
        __m256 s[2][ATT_MQ_MAX];
#pragma GCC unroll 2
        for (int k = 0; k < KS; k++)
#pragma GCC unroll 8
            for (int q = 0; q < NQ; q++) s[k][q] = zero;
        if (ks == 2) {
            for (int64_t d = 0; d < D; d += 8) {
                const __m256 k0 = ld8_256(kr[j], dt, d), k1 = ld8_256(kr[j + 1], dt, d);
#pragma GCC unroll 8
                for (int q = 0; q < NQ; q++) {
                    const __m256 qv = _mm256_loadu_ps(qs[q].q + d);
                    s[0][q] = _mm256_fmadd_ps(qv, k0, s[0][q]);
                    s[1][q] = _mm256_fmadd_ps(qv, k1, s[1][q]);
                }
            }
        } else {
            for (int64_t d = 0; d < D; d += 8) {
                const __m256 k0 = ld8_256(kr[j], dt, d);
#pragma GCC unroll 8
                for (int q = 0; q < NQ; q++) s[0][q] = _mm256_fmadd_ps(_mm256_loadu_ps(qs[q].q + d), k0, s[0][q]);
            }
        }
        for (int k = 0; k < ks; k++)
#pragma GCC unroll 2
            for (int q0 = 0; q0 < NQ; q0 += 4)
                att_put_scores(sc, j + k,
                               _mm_mul_ps(mlxn_reduce4_256(s[k][q0], q0 + 1 < NQ ? s[k][q0 + 1] : zero,
                                                          q0 + 2 < NQ ? s[k][q0 + 2] : zero,
                                                          q0 + 3 < NQ ? s[k][q0 + 3] : zero),
                                          _mm_set1_ps(p->scale)),
                               q0, NQ, &bmx[q0 >> 2]);
    }
    float bmf[ATT_MQ_MAX];
    _mm_storeu_ps(bmf, bmx[0]);
    _mm_storeu_ps(bmf + 4, bmx[1]);
    for (int q = 0; q < NQ; q++) { /* each query's online softmax over the block, as attend_block_256 */
        att_q *a = &qs[q];
        float *sq = sc + q * ATT_BLOCK;
        att_new_max(a, bmf[q], D);
        att_exp_256(a, sq, j0, j1);
    }
    int64_t d = 0; /* 16 columns a query in registers while NQ <= 4, else 8 */
    if (NQ <= 3 && D <= 64 && att_k4_on()) /* 32 columns: see the 4-key form above */
        for (; d + 32 <= D; d += 32) pv_mq_256(qs, sc, vr, dt, j0, j1, d, NQ, 4);
    if (NQ <= 4)
        for (; d + 16 <= D; d += 16) pv_mq_256(qs, sc, vr, dt, j0, j1, d, NQ, 2);
    for (; d < D; d += 8) pv_mq_256(qs, sc, vr, dt, j0, j1, d, NQ, 1);
}

ATTEND_MQ(attend_mq_256, T_AVX2, attend_mq_256_t)
ATTEND_TILE_SIMD(attend_tile_256, T_AVX2, attend_block_256, attend_mq_256)
#endif

#if defined(__x86_64__) || defined(__i386__)
#define QT_T __attribute__((target("avx512f")))
#define QT_INL __attribute__((always_inline)) static inline
/* MLXN_CPU_ATT_QT=0: prefill tiles one query (or pair) at a time, as before
 * the transposed form (measuring). */
static bool att_qt_on(void) {
    static int on = -1;
    return mlxn_env_switch(&on, "MLXN_CPU_ATT_QT");
}
/* Prefill tiles (more than ATT_DIRECT_MAX queries, f32 key and value rows)
 * with the tile's queries as lanes: q is transposed once a tile into
 * qt[d][ATT_QT] (times the scale; lanes past nq zero), so one key's scores
 * for every query are D FMAs on its broadcast elements, with no horizontal
 * sums (the per-query form's 4-way reductions were a third of its time in
 * perf, SmolLM2 pp2048 on the dev Zen 4); the online softmax runs across
 * the lanes; P·V takes 4 queries a step, each value vector loaded once for
 * the 4. st: ATT_BLOCK rows of ATT_QT scores, then weights. */
static void att_qt_fill(const att_q *qs, int nq, int64_t D, float scale, float *qt) {
    for (int64_t d = 0; d < D; d++)
        for (int q = 0; q < ATT_QT; q++) qt[d * ATT_QT + q] = q < nq ? qs[q].q[d] * scale : 0.0f;
}
/* A block's bounds for the tile: query q sees its keys jf[q] <= j < jl[q]
 * (none: 1, 0; lanes past nq none), its maximum and sum so far in mo, so;
 * [*J0, *J1) the keys any query sees. False: none does. */
static bool att_qt_bounds(const att_q *qs, int nq, int64_t b0, int64_t nb, int32_t *jf, int32_t *jl, float *mo,
                          float *so, int64_t *J0, int64_t *J1) {
    *J0 = nb, *J1 = 0;
    for (int q = 0; q < ATT_QT; q++) {
        int64_t j0 = 1, j1 = 0;
        if (q < nq) att_keys(&qs[q], b0, nb, &j0, &j1);
        if (j0 < j1) {
            *J0 = j0 < *J0 ? j0 : *J0;
            *J1 = j1 > *J1 ? j1 : *J1;
        } else {
            j0 = 1, j1 = 0;
        }
        jf[q] = (int32_t)j0;
        jl[q] = (int32_t)j1;
        mo[q] = q < nq ? qs[q].mx : -INFINITY;
        so[q] = q < nq ? qs[q].sum : 0.0f;
    }
    return *J0 < *J1;
}
/* The block's new maxima nm and sums sm into the queries that saw a key of
 * it, their accumulators scaled by the old sums' factors cf. */
static void att_qt_state(att_q *qs, int nq, const int32_t *jf, const int32_t *jl, const float *cf, const float *nm,
                         const float *sm, int64_t D) {
    for (int q = 0; q < nq; q++) {
        if (jf[q] >= jl[q]) continue; /* no key of the block: unchanged */
        if (cf[q] != 1.0f && qs[q].mx != -INFINITY) scale_row(qs[q].acc, cf[q], D);
        qs[q].mx = nm[q];
        qs[q].sum = sm[q];
    }
}
/* P·V for the tile's queries through FN (att_qt_pv_all or _256), 4 a step
 * and then the 1-3 left (in a block function: qs, nq, st, vr, J0, J1, D) */
#define QT_PV_QUERIES(FN)                                                                                      \
    do {                                                                                                        \
        int q = 0;                                                                                              \
        for (; q + 4 <= nq; q += 4) FN(qs, q, st, vr, J0, J1, D, 4);                                            \
        if (nq - q == 3) FN(qs, q, st, vr, J0, J1, D, 3);                                                       \
        if (nq - q == 2) FN(qs, q, st, vr, J0, J1, D, 2);                                                       \
        if (nq - q == 1) FN(qs, q, st, vr, J0, J1, D, 1);                                                       \
    } while (0)
/* acc rows of queries qs[0 .. QN) += Σ_j w_j[q] v_j over columns [d0, d0 +
 * 16 NC), keys [j0, j1); weights w_j at st + j ATT_QT + q0. */
QT_T QT_INL void att_qt_pv(att_q *qs, int q0, const float *st, const float *const *vr, int64_t j0, int64_t j1,
                          int64_t d0, const int QN, const int NC) {
    __m512 a[4][4];
#pragma GCC unroll 4
    for (int i = 0; i < QN; i++)
#pragma GCC unroll 4
        for (int c = 0; c < NC; c++) a[i][c] = _mm512_loadu_ps(qs[q0 + i].acc + d0 + 16 * c);
    for (int64_t j = j0; j < j1; j++) {
        const float *w = st + j * ATT_QT + q0;
        __m512 v[4];
#pragma GCC unroll 4
        for (int c = 0; c < NC; c++) v[c] = _mm512_loadu_ps(vr[j] + d0 + 16 * c);
#pragma GCC unroll 4
        for (int i = 0; i < QN; i++) {
            const __m512 wi = _mm512_set1_ps(w[i]);
#pragma GCC unroll 4
            for (int c = 0; c < NC; c++) a[i][c] = _mm512_fmadd_ps(wi, v[c], a[i][c]);
        }
    }
#pragma GCC unroll 4
    for (int i = 0; i < QN; i++)
#pragma GCC unroll 4
        for (int c = 0; c < NC; c++) _mm512_storeu_ps(qs[q0 + i].acc + d0 + 16 * c, a[i][c]);
}
/* att_qt_pv over all D columns (64 a step, then 16) for QN queries */
QT_T QT_INL void att_qt_pv_all(att_q *qs, int q0, const float *st, const float *const *vr, int64_t j0, int64_t j1,
                              int64_t D, const int QN) {
    int64_t d = 0;
    for (; d + 64 <= D; d += 64) att_qt_pv(qs, q0, st, vr, j0, j1, d, QN, 4);
    for (; d < D; d += 16) att_qt_pv(qs, q0, st, vr, j0, j1, d, QN, 1);
}
/* One key block (rows kr[j], vr[j], j < nb, from cache position b0) for the
 * tile's nq queries, qt from att_qt_fill. */
QT_T static void attend_qt_block_512(int64_t D, int64_t b0, int64_t nb, const float *const *kr,
                                      const float *const *vr, att_q *qs, int nq, const float *qt, float *st) {
    int32_t jf[ATT_QT], jl[ATT_QT]; /* query q sees the block's keys jf[q] <= j < jl[q] */
    float mo[ATT_QT], so[ATT_QT];
    int64_t J0, J1; /* the keys any query sees */
    if (!att_qt_bounds(qs, nq, b0, nb, jf, jl, mo, so, &J0, &J1)) return;
    const __m512i f0 = _mm512_loadu_si512(jf), f1 = _mm512_loadu_si512(jf + 16);
    const __m512i l0 = _mm512_loadu_si512(jl), l1 = _mm512_loadu_si512(jl + 16);
    const __m512 ninf = _mm512_set1_ps(-INFINITY);
    /* which lanes see key j */
#define QT_SEES(j, f, l)                                                                                       \
    (_mm512_cmple_epi32_mask(f, _mm512_set1_epi32((int)(j))) & _mm512_cmpgt_epi32_mask(l, _mm512_set1_epi32((int)(j))))
    __m512 bm0 = ninf, bm1 = ninf; /* the block's largest score a lane */
    int64_t j = J0;
    for (; j + 4 <= J1; j += 4) { /* 4 keys: 8 sums, 2 query vectors a d */
        __m512 s0[4], s1[4];
#pragma GCC unroll 4
        for (int k = 0; k < 4; k++) s0[k] = s1[k] = _mm512_setzero_ps();
        for (int64_t d = 0; d < D; d++) {
            const __m512 qa = _mm512_loadu_ps(qt + d * ATT_QT), qb = _mm512_loadu_ps(qt + d * ATT_QT + 16);
#pragma GCC unroll 4
            for (int k = 0; k < 4; k++) {
                const __m512 kv = _mm512_set1_ps(kr[j + k][d]);
                s0[k] = _mm512_fmadd_ps(qa, kv, s0[k]);
                s1[k] = _mm512_fmadd_ps(qb, kv, s1[k]);
            }
        }
#pragma GCC unroll 4
        for (int k = 0; k < 4; k++) {
            const __m512 x0 = _mm512_mask_blend_ps(QT_SEES(j + k, f0, l0), ninf, s0[k]);
            const __m512 x1 = _mm512_mask_blend_ps(QT_SEES(j + k, f1, l1), ninf, s1[k]);
            bm0 = _mm512_max_ps(bm0, x0);
            bm1 = _mm512_max_ps(bm1, x1);
            _mm512_storeu_ps(st + (j + k) * ATT_QT, x0);
            _mm512_storeu_ps(st + (j + k) * ATT_QT + 16, x1);
        }
    }
    for (; j < J1; j++) {
        __m512 s0 = _mm512_setzero_ps(), s1 = s0;
        for (int64_t d = 0; d < D; d++) {
            const __m512 kv = _mm512_set1_ps(kr[j][d]);
            s0 = _mm512_fmadd_ps(_mm512_loadu_ps(qt + d * ATT_QT), kv, s0);
            s1 = _mm512_fmadd_ps(_mm512_loadu_ps(qt + d * ATT_QT + 16), kv, s1);
        }
        const __m512 x0 = _mm512_mask_blend_ps(QT_SEES(j, f0, l0), ninf, s0);
        const __m512 x1 = _mm512_mask_blend_ps(QT_SEES(j, f1, l1), ninf, s1);
        bm0 = _mm512_max_ps(bm0, x0);
        bm1 = _mm512_max_ps(bm1, x1);
        _mm512_storeu_ps(st + j * ATT_QT, x0);
        _mm512_storeu_ps(st + j * ATT_QT + 16, x1);
    }
    /* new maxima, the old sums and accumulators' factors (0 where a lane
     * had no key yet: its sum and accumulator are 0) */
    const __m512 m0 = _mm512_loadu_ps(mo), m1 = _mm512_loadu_ps(mo + 16);
    const __m512 n0 = _mm512_max_ps(m0, bm0), n1 = _mm512_max_ps(m1, bm1);
    const __mmask16 h0 = _mm512_cmp_ps_mask(m0, ninf, _CMP_NEQ_OQ), h1 = _mm512_cmp_ps_mask(m1, ninf, _CMP_NEQ_OQ);
    const __m512 c0 = _mm512_maskz_mov_ps(h0, exp_512(_mm512_sub_ps(m0, n0)));
    const __m512 c1 = _mm512_maskz_mov_ps(h1, exp_512(_mm512_sub_ps(m1, n1)));
    __m512 e0s = _mm512_setzero_ps(), e1s = e0s;
    for (j = J0; j < J1; j++) {
        const __m512 e0 = _mm512_maskz_mov_ps(QT_SEES(j, f0, l0), exp_512(_mm512_sub_ps(_mm512_loadu_ps(st + j * ATT_QT), n0)));
        const __m512 e1 =
            _mm512_maskz_mov_ps(QT_SEES(j, f1, l1), exp_512(_mm512_sub_ps(_mm512_loadu_ps(st + j * ATT_QT + 16), n1)));
        e0s = _mm512_add_ps(e0s, e0);
        e1s = _mm512_add_ps(e1s, e1);
        _mm512_storeu_ps(st + j * ATT_QT, e0);
        _mm512_storeu_ps(st + j * ATT_QT + 16, e1);
    }
#undef QT_SEES
    float cf[ATT_QT], nm[ATT_QT], sm[ATT_QT];
    _mm512_storeu_ps(cf, c0);
    _mm512_storeu_ps(cf + 16, c1);
    _mm512_storeu_ps(nm, n0);
    _mm512_storeu_ps(nm + 16, n1);
    _mm512_storeu_ps(sm, _mm512_fmadd_ps(_mm512_loadu_ps(so), c0, e0s));
    _mm512_storeu_ps(sm + 16, _mm512_fmadd_ps(_mm512_loadu_ps(so + 16), c1, e1s));
    att_qt_state(qs, nq, jf, jl, cf, nm, sm, D);
    QT_PV_QUERIES(att_qt_pv_all);
}
/* The transposed form at 8 lanes for AVX2 CPUs (16 registers): scores 2
 * keys x 4 query vectors a step, P·V 4 queries x 16 columns a step. */
T_AVX2 QT_INL void att_qt_pv_256(att_q *qs, int q0, const float *st, const float *const *vr, int64_t j0,
                                 int64_t j1, int64_t d0, const int QN) {
    __m256 a[4][2];
#pragma GCC unroll 4
    for (int i = 0; i < QN; i++)
#pragma GCC unroll 2
        for (int c = 0; c < 2; c++) a[i][c] = _mm256_loadu_ps(qs[q0 + i].acc + d0 + 8 * c);
    for (int64_t j = j0; j < j1; j++) {
        const float *w = st + j * ATT_QT + q0;
        const __m256 v0 = _mm256_loadu_ps(vr[j] + d0), v1 = _mm256_loadu_ps(vr[j] + d0 + 8);
#pragma GCC unroll 4
        for (int i = 0; i < QN; i++) {
            const __m256 wi = _mm256_set1_ps(w[i]);
            a[i][0] = _mm256_fmadd_ps(wi, v0, a[i][0]);
            a[i][1] = _mm256_fmadd_ps(wi, v1, a[i][1]);
        }
    }
#pragma GCC unroll 4
    for (int i = 0; i < QN; i++)
#pragma GCC unroll 2
        for (int c = 0; c < 2; c++) _mm256_storeu_ps(qs[q0 + i].acc + d0 + 8 * c, a[i][c]);
}
/* att_qt_pv_256 over all D columns (D a multiple of 16) for QN queries */
T_AVX2 QT_INL void att_qt_pv_all_256(att_q *qs, int q0, const float *st, const float *const *vr, int64_t j0,
                                     int64_t j1, int64_t D, const int QN) {
    for (int64_t d = 0; d < D; d += 16) att_qt_pv_256(qs, q0, st, vr, j0, j1, d, QN);
}
/* which of 8 query lanes see key j: jf <= j < jl, as an all-ones lane mask */
T_AVX2 QT_INL __m256 att_qt_sees_256(__m256i jf, __m256i jl, int64_t j) {
    const __m256i jv = _mm256_set1_epi32((int)j);
    return _mm256_castsi256_ps(_mm256_andnot_si256(_mm256_cmpgt_epi32(jf, jv), _mm256_cmpgt_epi32(jl, jv)));
}
/* attend_qt_block_512 at 8 lanes (D a multiple of 16) */
T_AVX2 static void attend_qt_block_256(int64_t D, int64_t b0, int64_t nb, const float *const *kr,
                                       const float *const *vr, att_q *qs, int nq, const float *qt, float *st) {
    int32_t jf[ATT_QT], jl[ATT_QT]; /* query q sees the block's keys jf[q] <= j < jl[q] */
    float mo[ATT_QT], so[ATT_QT];
    int64_t J0, J1; /* the keys any query sees */
    if (!att_qt_bounds(qs, nq, b0, nb, jf, jl, mo, so, &J0, &J1)) return;
    __m256i f[4], l[4];
#pragma GCC unroll 4
    for (int v = 0; v < 4; v++) {
        f[v] = _mm256_loadu_si256((const __m256i *)(jf + 8 * v));
        l[v] = _mm256_loadu_si256((const __m256i *)(jl + 8 * v));
    }
    const __m256 ninf = _mm256_set1_ps(-INFINITY);
    __m256 bm[4] = {ninf, ninf, ninf, ninf};
    int64_t j = J0;
    for (; j + 2 <= J1; j += 2) { /* 2 keys: 8 sums */
        __m256 s0[4], s1[4];
#pragma GCC unroll 4
        for (int v = 0; v < 4; v++) s0[v] = s1[v] = _mm256_setzero_ps();
        for (int64_t d = 0; d < D; d++) {
            const __m256 k0 = _mm256_set1_ps(kr[j][d]), k1 = _mm256_set1_ps(kr[j + 1][d]);
#pragma GCC unroll 4
            for (int v = 0; v < 4; v++) {
                const __m256 qv = _mm256_loadu_ps(qt + d * ATT_QT + 8 * v);
                s0[v] = _mm256_fmadd_ps(qv, k0, s0[v]);
                s1[v] = _mm256_fmadd_ps(qv, k1, s1[v]);
            }
        }
#pragma GCC unroll 4
        for (int v = 0; v < 4; v++) {
            const __m256 x0 = _mm256_blendv_ps(ninf, s0[v], att_qt_sees_256(f[v], l[v], j));
            const __m256 x1 = _mm256_blendv_ps(ninf, s1[v], att_qt_sees_256(f[v], l[v], j + 1));
            bm[v] = _mm256_max_ps(bm[v], _mm256_max_ps(x0, x1));
            _mm256_storeu_ps(st + j * ATT_QT + 8 * v, x0);
            _mm256_storeu_ps(st + (j + 1) * ATT_QT + 8 * v, x1);
        }
    }
    for (; j < J1; j++) {
        __m256 s0[4];
#pragma GCC unroll 4
        for (int v = 0; v < 4; v++) s0[v] = _mm256_setzero_ps();
        for (int64_t d = 0; d < D; d++) {
            const __m256 k0 = _mm256_set1_ps(kr[j][d]);
#pragma GCC unroll 4
            for (int v = 0; v < 4; v++) s0[v] = _mm256_fmadd_ps(_mm256_loadu_ps(qt + d * ATT_QT + 8 * v), k0, s0[v]);
        }
#pragma GCC unroll 4
        for (int v = 0; v < 4; v++) {
            const __m256 x0 = _mm256_blendv_ps(ninf, s0[v], att_qt_sees_256(f[v], l[v], j));
            bm[v] = _mm256_max_ps(bm[v], x0);
            _mm256_storeu_ps(st + j * ATT_QT + 8 * v, x0);
        }
    }
    /* new maxima, the old sums' factors (0 where a lane had no key yet) */
    __m256 n[4], c[4], es[4];
#pragma GCC unroll 4
    for (int v = 0; v < 4; v++) {
        const __m256 m = _mm256_loadu_ps(mo + 8 * v);
        n[v] = _mm256_max_ps(m, bm[v]);
        c[v] = _mm256_and_ps(_mm256_cmp_ps(m, ninf, _CMP_NEQ_OQ), exp_256(_mm256_sub_ps(m, n[v])));
        es[v] = _mm256_setzero_ps();
    }
    for (j = J0; j < J1; j++)
#pragma GCC unroll 4
        for (int v = 0; v < 4; v++) {
            const __m256 e = _mm256_and_ps(att_qt_sees_256(f[v], l[v], j),
                                           exp_256(_mm256_sub_ps(_mm256_loadu_ps(st + j * ATT_QT + 8 * v), n[v])));
            es[v] = _mm256_add_ps(es[v], e);
            _mm256_storeu_ps(st + j * ATT_QT + 8 * v, e);
        }
    float cf[ATT_QT], nm[ATT_QT], sm[ATT_QT];
#pragma GCC unroll 4
    for (int v = 0; v < 4; v++) {
        _mm256_storeu_ps(cf + 8 * v, c[v]);
        _mm256_storeu_ps(nm + 8 * v, n[v]);
        _mm256_storeu_ps(sm + 8 * v, _mm256_fmadd_ps(_mm256_loadu_ps(so + 8 * v), c[v], es[v]));
    }
    att_qt_state(qs, nq, jf, jl, cf, nm, sm, D);
    QT_PV_QUERIES(att_qt_pv_all_256);
}
/* ng prefill tiles of kv head hk over [from, to] in the transposed form:
 * tile g is nqs[g] (<= ATT_QT) queries at qs + g ATT_QT (the same tokens,
 * another query head of hk), its transposed queries at qt + g ATT_QT D.
 * Each key block is converted once (tile_rows) for all of them and goes
 * through block (the AVX-512 or AVX2 one) tile by tile; st: ATT_BLOCK
 * ATT_QT floats of scratch. */
typedef void (*att_qt_block_fn)(int64_t D, int64_t b0, int64_t nb, const float *const *kr, const float *const *vr,
                                att_q *qs, int nq, const float *qt, float *st);
static void attend_tile_qt(const mlxn_tensor *kc, const mlxn_tensor *vc, const mlxn_attention_params *p, int64_t hk,
                           int64_t from, int64_t to, att_q *qs, const int *nqs, int ng, float *ktile, float *vtile,
                           float *qt, float *st, att_qt_block_fn block) {
    const int64_t D = kc->shape[2];
    const float *kr[ATT_BLOCK], *vr[ATT_BLOCK];
    for (int g = 0; g < ng; g++) att_qt_fill(qs + g * ATT_QT, nqs[g], D, p->scale, qt + (size_t)g * ATT_QT * D);
    for (int64_t b0 = from; b0 <= to; b0 += ATT_BLOCK) {
        const int64_t nb = to - b0 + 1 < ATT_BLOCK ? to - b0 + 1 : ATT_BLOCK;
        tile_rows(kc, vc, hk, b0, nb, kr, vr, ktile, vtile);
        for (int g = 0; g < ng; g++) block(D, b0, nb, kr, vr, qs + g * ATT_QT, nqs[g], qt + (size_t)g * ATT_QT * D, st);
    }
}
/* MLXN_CPU_ATT_QTG=0: one head's tile a call, each converting the key
 * blocks itself, as before ATT_QT_G (measuring). */
static bool att_qtg_on(void) {
    static int on = -1;
    return mlxn_env_switch(&on, "MLXN_CPU_ATT_QTG");
}
/* The transposed form's block function for head dim D on this CPU (NULL:
 * not taken: soft-capping, D not a multiple of 16, no AVX2, the scalar
 * kernels forced, or MLXN_CPU_ATT_QT=0). */
static att_qt_block_fn att_qt_form(int64_t D, const mlxn_attention_params *p) {
    if (p->softcap > 0 || D % 16 || !att_qt_on()) return NULL;
    const int vw = vec_width();
    return vw == 512 ? attend_qt_block_512 : vw == 256 ? attend_qt_block_256 : NULL;
}
#undef QT_PV_QUERIES
#undef QT_T
#undef QT_INL
#endif

/* One kv head's tile of queries over [from, to]: the fastest form the CPU
 * and the shapes allow (soft-capping and odd head dims take attend_tile). */
static void attend_any(const mlxn_tensor *kc, const mlxn_tensor *vc, const mlxn_attention_params *p, int64_t hk,
                       int64_t from, int64_t to, att_q *qs, int nq, float *ktile, float *vtile, float *sc) {
    const int64_t D = kc->shape[2];
#if defined(__x86_64__) || defined(__i386__)
    att_qt_block_fn qf = nq > ATT_DIRECT_MAX ? att_qt_form(D, p) : NULL;
    if (qf) { /* scratch after sc: s_attention */
        float *qt = sc + ATT_MQ_MAX * ATT_BLOCK;
        attend_tile_qt(kc, vc, p, hk, from, to, qs, &nq, 1, ktile, vtile, qt, qt + ATT_QT_G * ATT_QT * D, qf);
        return;
    }
    const int vw = vec_width();
    if (!(p->softcap > 0)) {
        if (D % 16 == 0 && vw == 512) {
            attend_tile_512(kc, vc, p, hk, from, to, qs, nq, ktile, vtile, sc);
            return;
        }
        if (D % 8 == 0 && vw >= 256) { /* AVX-512 CPUs have AVX2 */
            attend_tile_256(kc, vc, p, hk, from, to, qs, nq, ktile, vtile, sc);
            return;
        }
    }
#endif
    (void)D;
    attend_tile(kc, vc, p, hk, from, to, qs, nq, ktile, vtile, sc);
}

/* Positions query t sees: [first, pt] (ring and window limits). */
static int64_t attn_first(int64_t pt, int64_t C, int window) {
    int64_t first = pt - C + 1; /* older rows were overwritten in a ring */
    if (window > 0 && pt - window + 1 > first) first = pt - window + 1;
    return first < 0 ? 0 : first;
}

/* Items [lo, hi) of k_attention: item i = (query tile i / H, head i % H). */
static void attn_items(const mlxn_node *n, int64_t lo, int64_t hi, void *scratch) {
    const mlxn_tensor *q = T(1), *kc = T(2), *vc = T(3);
    int64_t Tn = q->shape[0], H = q->shape[1], D = q->shape[2], C = kc->shape[1];
    int64_t rep = H / kc->shape[0];
    const int32_t *pos = I32(4);
    float *accs = scratch, *ktile = accs + ATT_QT_G * ATT_QT * D, *vtile = ktile + ATT_BLOCK * D,
          *sc = vtile + ATT_BLOCK * D;
    att_q qs[ATT_QT_G * ATT_QT];
    float *outs[ATT_QT_G * ATT_QT];
#if defined(__x86_64__) || defined(__i386__)
    const att_qt_block_fn qf = att_qt_form(D, &n->p.attn);
#endif
    for (int64_t i = lo; i < hi;) {
        /* This item's tile, and the next items' of the same tile and kv head
         * while the queries fit one tile (decode: the heads sharing a kv
         * head), so each key and value row is converted once for them;
         * prefill tiles in the transposed form: up to ATT_QT_G such tiles,
         * one a head, side by side (group g's queries from g ATT_QT). */
        const int64_t tile = i / H, hk = (i % H) / rep, t0 = tile * ATT_QT;
        const int64_t t1 = t0 + ATT_QT < Tn ? t0 + ATT_QT : Tn;
        int64_t from = INT64_MAX, to = -1;
        int nqs[ATT_QT_G] = {0}, ng = 0;
        bool more = true;
        while (more && ng < ATT_QT_G) {
            int nq = 0;
            for (; i < hi && i / H == tile && (i % H) / rep == hk && nq + (t1 - t0) <= ATT_QT; i++) {
                const int64_t h = i % H;
                for (int64_t t = t0; t < t1; t++, nq++) {
                    const int k = ng * ATT_QT + nq;
                    att_q *a = &qs[k];
                    a->q = F32(1) + (t * H + h) * D;
                    a->last = pos[t];
                    a->first = attn_first(a->last, C, n->p.attn.window);
                    a->mx = -INFINITY;
                    a->sum = 0;
                    a->acc = accs + (size_t)k * D;
                    memset(a->acc, 0, (size_t)D * sizeof(float));
                    if (a->first < from) from = a->first;
                    if (a->last > to) to = a->last;
                    outs[k] = F32(0) + (t * H + h) * D;
                }
            }
            nqs[ng++] = nq;
#if defined(__x86_64__) || defined(__i386__)
            more = qf && nq > ATT_DIRECT_MAX && i < hi && i / H == tile && (i % H) / rep == hk && att_qtg_on();
#else
            more = false;
#endif
        }
#if defined(__x86_64__) || defined(__i386__)
        if (ng > 1) {
            float *qt = sc + ATT_MQ_MAX * ATT_BLOCK;
            attend_tile_qt(kc, vc, &n->p.attn, hk, from, to, qs, nqs, ng, ktile, vtile, qt,
                           qt + ATT_QT_G * ATT_QT * D, qf);
        } else
#endif
            attend_any(kc, vc, &n->p.attn, hk, from, to, qs, nqs[0], ktile, vtile, sc);
        for (int g = 0; g < ng; g++)
            for (int qi = 0; qi < nqs[g]; qi++) att_out(&qs[g * ATT_QT + qi], outs[g * ATT_QT + qi], D);
    }
}

/* Decode of one token when its kv heads do not split evenly across the
 * workers (SmolLM2: 3 on 2, so one kv head was read by both, each for its
 * own query heads: a third more bytes, and a worker with two kv heads'
 * worth): the (kv head, visible position) pairs are cut into nth equal
 * runs, and each worker attends all the query heads of each kv head in its
 * run over the positions it holds. A kv head cut between workers leaves a
 * partial (max, sum, acc) per query head and part in the node's shared
 * area; the part that finishes last merges them into out.
 * Shared area: per kv head a counter (its own cache line), then nth slots
 * of rep rows of D + 2 floats. */
typedef struct att_shared_hdr {
    _Atomic int done;
    char pad[60];
} att_shared_hdr;

static size_t sh_attention(const mlxn_node *n, int nth) {
    const int64_t Tn = T(1)->shape[0], H = T(1)->shape[1], D = T(1)->shape[2], Hkv = T(2)->shape[0];
    static int on = -1; /* MLXN_CPU_ATT_SPLIT=0: the heads split as before (measuring) */
    if (!mlxn_env_switch(&on, "MLXN_CPU_ATT_SPLIT") || nth < 2 || Tn != 1 || Hkv % nth == 0 || H / Hkv > ATT_QT) return 0;
    return (size_t)Hkv * (sizeof(att_shared_hdr) + (size_t)nth * (size_t)(H / Hkv) * (size_t)(D + 2) * sizeof(float));
}

static void attn_decode_split(const mlxn_node *n, int ith, int nth, void *scratch, char *sh) {
    const mlxn_tensor *q = T(1), *kc = T(2), *vc = T(3);
    const int64_t H = q->shape[1], D = q->shape[2], C = kc->shape[1], Hkv = kc->shape[0], rep = H / Hkv;
    const int64_t last = I32(4)[0], first = attn_first(last, C, n->p.attn.window);
    const int64_t L = last - first + 1, W = Hkv * L;
    const int64_t lo = W * ith / nth, hi = W * (ith + 1) / nth;
    const size_t slot = (size_t)rep * (size_t)(D + 2), per_head = sizeof(att_shared_hdr) + (size_t)nth * slot * sizeof(float);
    float *accs = scratch, *ktile = accs + ATT_QT * D, *vtile = ktile + ATT_BLOCK * D, *sc = vtile + ATT_BLOCK * D;
    att_q qs[ATT_QT];
    for (int64_t hk = lo / L; hk < Hkv && hk * L < hi; hk++) {
        const int64_t a = hk * L > lo ? hk * L : lo, b = (hk + 1) * L < hi ? (hk + 1) * L : hi;
        if (a >= b) continue;
        /* the parts of kv head hk: the workers whose runs meet it (runs are
         * consecutive; empty ones meet nothing), and which of them this is */
        int parts = 0, me = 0;
        for (int w = 0; w < nth; w++) {
            const int64_t wl = W * w / nth, wh = W * (w + 1) / nth;
            if ((wl > hk * L ? wl : hk * L) < (wh < (hk + 1) * L ? wh : (hk + 1) * L)) {
                if (w < ith) me++;
                parts++;
            }
        }
        for (int64_t r = 0; r < rep; r++) {
            att_q *s = &qs[r];
            s->q = F32(1) + (hk * rep + r) * D;
            s->first = first + (a - hk * L);
            s->last = first + (b - hk * L) - 1;
            s->mx = -INFINITY;
            s->sum = 0;
            s->acc = accs + r * D;
            for (int64_t d = 0; d < D; d++) s->acc[d] = 0;
        }
        attend_any(kc, vc, &n->p.attn, hk, qs[0].first, qs[0].last, qs, (int)rep, ktile, vtile, sc);
        if (parts == 1) {
            for (int64_t r = 0; r < rep; r++) att_out(&qs[r], F32(0) + (hk * rep + r) * D, D);
            continue;
        }
        att_shared_hdr *hd = (att_shared_hdr *)(void *)(sh + (size_t)hk * per_head);
        float *slots = (float *)(void *)(hd + 1);
        for (int64_t r = 0; r < rep; r++) {
            float *row = slots + (size_t)me * slot + (size_t)r * (size_t)(D + 2);
            row[0] = qs[r].mx;
            row[1] = qs[r].sum;
            memcpy(row + 2, qs[r].acc, (size_t)D * sizeof(float));
        }
        /* the last part to finish merges; it resets the count for the next
         * run (which starts after every task of this one has ended) */
        if (atomic_fetch_add_explicit(&hd->done, 1, memory_order_acq_rel) != parts - 1) continue;
        for (int64_t r = 0; r < rep; r++)
            att_merge(slots + (size_t)r * (size_t)(D + 2), slot, parts, D, F32(0) + (hk * rep + r) * D);
        atomic_store_explicit(&hd->done, 0, memory_order_relaxed);
    }
}

/* Causal prefill: a later query tile sees more keys, so equal runs of
 * items left the thread with the last tiles ~3x the work of the one with
 * the first (2 threads). With at least two tiles a thread, whole tiles go
 * out in snake order (0 1 .. n-1 n-1 .. 1 0 0 1 ..), which evens out the
 * growing cost; otherwise (decode) equal runs of the tile's heads. */
static void k_attention(const mlxn_node *n, int ith, int nth, void *scratch) {
    int64_t Tn = T(1)->shape[0], H = T(1)->shape[1], tiles = (Tn + ATT_QT - 1) / ATT_QT, lo, hi;
    if (mlxn_cpu_shared_area && sh_attention(n, nth) && I32(4)[0] >= 0) {
        attn_decode_split(n, ith, nth, scratch, mlxn_cpu_shared_area);
        return;
    }
    if (tiles >= 2 * (int64_t)nth) {
        for (int64_t tile = 0; tile < tiles; tile++) {
            int64_t r = tile % (2 * nth), owner = r < nth ? r : 2 * nth - 1 - r;
            if (owner == ith) attn_items(n, tile * H, (tile + 1) * H, scratch);
        }
        return;
    }
    mlxn_split(tiles * H, ith, nth, &lo, &hi);
    attn_items(n, lo, hi, scratch);
}

/* Flash-decoding, part 1: (token, head, split) items; split s of S takes
 * the s-th slice of the token's visible keys and writes [m, l, acc[D]]. */
static void k_attention_partial(const mlxn_node *n, int ith, int nth, void *scratch) {
    const mlxn_tensor *q = T(1), *kc = T(2), *vc = T(3);
    const mlxn_attn_split_params *sp = &n->p.split;
    int64_t Tn = q->shape[0], H = q->shape[1], D = q->shape[2], S = sp->splits;
    int64_t rep = H / kc->shape[0], lo, hi;
    mlxn_split(Tn * H * S, ith, nth, &lo, &hi);
    const int32_t *pos = I32(4);
    float *ktile = (float *)scratch + ATT_QT * D, *vtile = ktile + ATT_BLOCK * D, *sc = vtile + ATT_BLOCK * D;
    for (int64_t i = lo; i < hi; i++) {
        int64_t s = i % S, th = i / S, t = th / H, h = th % H, pt = pos[t];
        int64_t first = attn_first(pt, kc->shape[1], sp->a.window), L = pt - first + 1;
        int64_t chunk = (L + S - 1) / S, from = first + s * chunk, to = from + chunk - 1 < pt ? from + chunk - 1 : pt;
        float *row = F32(0) + i * (D + 2);
        att_q a = {F32(1) + (t * H + h) * D, from, to, -INFINITY, 0, row + 2};
        for (int64_t d = 0; d < D; d++) row[2 + d] = 0;
        if (from > to) {
        } else if (__builtin_cpu_supports("avx512f")) { /* as before the AVX2 form */
            attend_tile(kc, vc, &sp->a, h / rep, from, to, &a, 1, ktile, vtile, sc);
        } else {
            attend_any(kc, vc, &sp->a, h / rep, from, to, &a, 1, ktile, vtile, sc);
        }
        row[0] = a.mx;
        row[1] = a.sum;
    }
}

/* Part 2: out = sum_s e^(m_s - M) acc_s / sum_s e^(m_s - M) l_s. */
static void k_attention_merge(const mlxn_node *n, int ith, int nth, void *scratch) {
    (void)scratch;
    int64_t D = T(0)->shape[2], S = n->p.split.splits, lo, hi;
    mlxn_split(mlxn_tensor_elems(T(0)) / D, ith, nth, &lo, &hi);
    for (int64_t i = lo; i < hi; i++) att_merge(F32(1) + i * S * (D + 2), (size_t)(D + 2), S, D, F32(0) + i * D);
}

/* ---- argmax ---- */

static void k_argmax(const mlxn_node *n, int ith, int nth, void *scratch) {
    (void)scratch;
    int64_t C = mlxn_tensor_cols(T(1)), lo, hi;
    mlxn_split(mlxn_tensor_rows(T(1)), ith, nth, &lo, &hi);
    for (int64_t r = lo; r < hi; r++) {
        const float *x = F32(1) + r * C;
        int64_t best = 0;
        for (int64_t i = 1; i < C; i++)
            if (x[i] > x[best]) best = i;
        I32(0)[r] = (int32_t)best;
    }
}

/* ---- top-k: a min-heap of the k best per row, then sorted ---- */

static bool topk_better(float a, int32_t ia, float b, int32_t ib) { return a > b || (a == b && ia < ib); }

static size_t s_top_k(const mlxn_node *n, int nth) {
    (void)nth;
    return (size_t)n->p.topk.k * (sizeof(float) + sizeof(int32_t));
}

static void k_top_k(const mlxn_node *n, int ith, int nth, void *scratch) {
    int k = n->p.topk.k;
    int64_t C = mlxn_tensor_cols(T(2)), lo, hi;
    mlxn_split(mlxn_tensor_rows(T(2)), ith, nth, &lo, &hi);
    float *hv = scratch;
    int32_t *hi_ = (int32_t *)(hv + k);
    for (int64_t r = lo; r < hi; r++) {
        const float *x = F32(2) + r * C;
        int m = 0; /* heap size; hv[0] is the worst kept */
        for (int64_t i = 0; i < C; i++) {
            float v = x[i];
            if (v != v) v = -INFINITY; /* NaN ranks last */
            if (m < k) {
                int j = m++;
                while (j > 0 && topk_better(hv[(j - 1) / 2], hi_[(j - 1) / 2], v, (int32_t)i)) {
                    hv[j] = hv[(j - 1) / 2];
                    hi_[j] = hi_[(j - 1) / 2];
                    j = (j - 1) / 2;
                }
                hv[j] = v;
                hi_[j] = (int32_t)i;
            } else if (topk_better(v, (int32_t)i, hv[0], hi_[0])) {
                int j = 0;
                for (;;) { /* sift the new value down from the root */
                    int l = 2 * j + 1, rr = l + 1, w = j;
                    float wv = v;
                    int32_t wi = (int32_t)i;
                    if (l < k && topk_better(wv, wi, hv[l], hi_[l])) { w = l; wv = hv[l]; wi = hi_[l]; }
                    if (rr < k && topk_better(wv, wi, hv[rr], hi_[rr])) w = rr;
                    if (w == j) break;
                    hv[j] = hv[w];
                    hi_[j] = hi_[w];
                    j = w;
                }
                hv[j] = v;
                hi_[j] = (int32_t)i;
            }
        }
        /* pop the worst to the back: descending order */
        int32_t *oi = I32(0) + r * k;
        float *ov = F32(1) + r * k;
        for (int e = m - 1; e >= 0; e--) {
            oi[e] = hi_[0];
            ov[e] = x[hi_[0]];
            hv[0] = hv[e];
            hi_[0] = hi_[e];
            int j = 0, sz = e;
            for (;;) {
                int l = 2 * j + 1, rr = l + 1, w = j;
                if (l < sz && topk_better(hv[w], hi_[w], hv[l], hi_[l])) w = l;
                if (rr < sz && topk_better(hv[w], hi_[w], hv[rr], hi_[rr])) w = rr;
                if (w == j) break;
                float tv = hv[j];
                int32_t ti = hi_[j];
                hv[j] = hv[w]; hi_[j] = hi_[w];
                hv[w] = tv; hi_[w] = ti;
                j = w;
            }
        }
    }
}

/* ---- logsumexp: (max, sum of exp(scale * (x - max))) per row ----
 * One row per worker, summed in index order in double: the sampler's
 * whole-row softmax sums the same terms in the same order, so on this
 * backend s is that sum rounded to f32. */

static void k_logsumexp(const mlxn_node *n, int ith, int nth, void *scratch) {
    (void)scratch;
    int64_t C = mlxn_tensor_cols(T(1)), lo, hi;
    double scale = n->p.lse.scale;
    mlxn_split(mlxn_tensor_rows(T(1)), ith, nth, &lo, &hi);
    for (int64_t r = lo; r < hi; r++) {
        const float *x = F32(1) + r * C;
        float m = -INFINITY;
        for (int64_t i = 0; i < C; i++)
            if (x[i] > m) m = x[i];
        double sum = 0;
        if (m != -INFINITY)
            for (int64_t i = 0; i < C; i++) sum += exp(((double)x[i] - (double)m) * scale);
        F32(0)[2 * r] = m;
        F32(0)[2 * r + 1] = (float)sum;
    }
}

/* ---- expert-routed matmul ---- */

static void node_qmat_expert0(const mlxn_node *n, mlxn_qmat *q, size_t *stride) {
    const mlxn_tensor *w = T(2);
    memset(q, 0, sizeof *q);
    q->kind = MLXN_QKIND_GGML;
    q->N = w->shape[1];
    q->K = w->shape[2];
    q->w = mlxn_tensor_data(w);
    *stride = w->nbytes / (size_t)w->shape[0];
    q->row_bytes = *stride / (size_t)w->shape[1];
    q->wtype = w->dtype;
    q->f32_act = n->flags & MLXN_NODE_F32_ACT;
    q->int8_act = n->flags & MLXN_NODE_INT8_ACT;
}

static size_t s_matmul_id(const mlxn_node *n, int nth) {
    (void)nth;
    mlxn_qmat q;
    size_t st;
    node_qmat_expert0(n, &q, &st);
    return mlxn_mm_scratch_bytes(&q, 1);
}

static void k_matmul_id(const mlxn_node *n, int ith, int nth, void *scratch) {
    mlxn_qmat q;
    size_t stride;
    node_qmat_expert0(n, &q, &stride);
    int64_t panels = (q.N + 15) / 16, lo, hi;
    mlxn_split(panels, ith, nth, &lo, &hi);
    lo *= 16;
    hi = hi * 16 < q.N ? hi * 16 : q.N;
    if (lo >= hi) return;
    const mlxn_tensor *ids = T(3);
    mlxn_mm_id(&q, stride, 0, (int)T(2)->shape[0], mlxn_tensor_data(ids), ids->shape[0], n->p.mid.top_k,
               n->p.mid.x_per_slot, F32(1), F32(0), lo, hi, scratch);
}

const mlxn_cpu_op mlxn_cpu_ops[MLXN_OP_COUNT] = {
    [MLXN_OP_ADD] = {k_binary, NULL},
    [MLXN_OP_MUL] = {k_binary, NULL},
    [MLXN_OP_SCALE] = {k_unary, NULL},
    [MLXN_OP_SILU] = {k_unary, NULL},
    [MLXN_OP_SILU_MUL] = {k_silu_mul, NULL},
    [MLXN_OP_GELU] = {k_unary, NULL},
    [MLXN_OP_SOFTCAP] = {k_unary, NULL},
    [MLXN_OP_RMS_NORM] = {k_rms_norm, NULL},
    [MLXN_OP_ADD_RMS_NORM] = {k_add_rms_norm, NULL},
    [MLXN_OP_LAYER_NORM] = {k_layer_norm, NULL},
    [MLXN_OP_SOFTMAX] = {k_softmax, NULL},
    [MLXN_OP_MATMUL] = {k_matmul, s_matmul},
    [MLXN_OP_MATMUL_MLX] = {k_matmul, s_matmul},
    [MLXN_OP_ROPE] = {k_rope, s_rope},
    [MLXN_OP_COPY] = {k_copy, NULL},
    [MLXN_OP_GET_ROWS] = {k_get_rows, NULL},
    [MLXN_OP_GET_ROWS_MLX] = {k_get_rows, NULL},
    [MLXN_OP_KV_WRITE] = {k_kv_write, NULL},
    [MLXN_OP_ATTENTION] = {k_attention, s_attention, sh_attention},
    [MLXN_OP_ARGMAX] = {k_argmax, NULL},
    [MLXN_OP_TOP_K] = {k_top_k, s_top_k},
    [MLXN_OP_MATMUL_ID] = {k_matmul_id, s_matmul_id},
    [MLXN_OP_ROPE_KV_WRITE] = {k_rope_kv_write, s_rope},
    [MLXN_OP_ATTENTION_PARTIAL] = {k_attention_partial, s_attention},
    [MLXN_OP_ATTENTION_MERGE] = {k_attention_merge, NULL},
    [MLXN_OP_LOGSUMEXP] = {k_logsumexp, NULL},
};
_Static_assert(sizeof mlxn_cpu_ops / sizeof mlxn_cpu_ops[0] == MLXN_OP_COUNT, "cpu kernel table out of date");
