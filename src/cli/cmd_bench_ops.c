/*
 * cmd_bench_ops.c — `mlxn bench ops`: µs per matmul call and effective GB/s
 * of weight bytes for each weight format and shape, for one activation row
 * (decode) and for 512 rows (prefill, then GFLOP/s), next to the machine's
 * read bandwidth measured in the same run with the same thread count.
 *
 * Each case records R matmul nodes over R copies of the weights (together
 * more bytes than the last-level cache, so every call reads memory, not
 * cache) into one graph, runs it once to warm up, then replays it and takes
 * the median time per call. The same code measures the CUDA backend.
 * After the matmuls: the sampling ops over one logits row, and the other
 * ops of a decode step at the 8B shape (run_op_case).
 */
#include "cli/cli.h"
#include "ops/quant.h"

#include <immintrin.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

/* ---- host read bandwidth: every thread sums its slice ---- */

typedef struct rd_arg {
    const uint64_t *p;
    size_t n;
    uint64_t sum;
} rd_arg;

__attribute__((target("avx2"))) static void *rd_avx2(void *v) {
    rd_arg *a = v;
    typedef long long v4 __attribute__((vector_size(32)));
    v4 acc0 = {0}, acc1 = {0}, acc2 = {0}, acc3 = {0};
    const v4 *q = (const v4 *)a->p;
    size_t n4 = a->n / 4;
    for (size_t i = 0; i + 4 <= n4; i += 4) {
        acc0 ^= q[i];
        acc1 ^= q[i + 1];
        acc2 ^= q[i + 2];
        acc3 ^= q[i + 3];
    }
    v4 acc = acc0 ^ acc1 ^ acc2 ^ acc3;
    a->sum = (uint64_t)(acc[0] ^ acc[1] ^ acc[2] ^ acc[3]);
    return NULL;
}

static void *rd_plain(void *v) {
    rd_arg *a = v;
    uint64_t s0 = 0, s1 = 0;
    for (size_t i = 0; i + 2 <= a->n; i += 2) {
        s0 ^= a->p[i];
        s1 ^= a->p[i + 1];
    }
    a->sum = s0 ^ s1;
    return NULL;
}

/* GB/s reading `bytes` with `nth` threads, best of 5. */
static double read_bandwidth(int nth, size_t bytes) {
    uint64_t *buf = aligned_alloc(64, bytes);
    if (!buf) return 0;
    for (size_t i = 0; i < bytes / 8; i++) buf[i] = i * 0x9E3779B97F4A7C15ull;
    void *(*fn)(void *) = __builtin_cpu_supports("avx2") ? rd_avx2 : rd_plain;
    double best = 0;
    rd_arg args[256];
    pthread_t th[256];
    if (nth > 256) nth = 256;
    for (int rep = 0; rep < 5; rep++) {
        size_t per = bytes / 8 / (size_t)nth & ~(size_t)15;
        double t0 = now_s();
        for (int t = 0; t < nth; t++) {
            args[t] = (rd_arg){buf + (size_t)t * per, per, 0};
            if (t) pthread_create(&th[t], NULL, fn, &args[t]);
        }
        fn(&args[0]);
        for (int t = 1; t < nth; t++) pthread_join(th[t], NULL);
        double dt = now_s() - t0;
        double gbs = (double)(per * 8 * (size_t)nth) / dt / 1e9;
        if (gbs > best) best = gbs;
    }
    free(buf);
    return best;
}

/* ---- peak f32 FMA rate: 12 independent accumulator chains per thread ---- */

typedef struct fma_arg {
    long iters;
    float out;
} fma_arg;

/* Twelve named accumulators (an array would be kept in memory at -O2), each
 * starting from a different value: chains that start equal compute equal
 * values, and the compiler merges them into one latency-bound chain (it did:
 * one vfmadd per iteration, which reported ~1.5x the real rate). */
__attribute__((target("avx512f"))) static void *fma_512(void *v) {
    fma_arg *a = v;
    __m512 m = _mm512_set1_ps(0.999999f), c = _mm512_set1_ps(1e-7f), d = _mm512_set1_ps(1e-3f);
    __m512 a0 = m, a1 = _mm512_add_ps(a0, d), a2 = _mm512_add_ps(a1, d), a3 = _mm512_add_ps(a2, d);
    __m512 a4 = _mm512_add_ps(a3, d), a5 = _mm512_add_ps(a4, d), a6 = _mm512_add_ps(a5, d);
    __m512 a7 = _mm512_add_ps(a6, d), a8 = _mm512_add_ps(a7, d), a9 = _mm512_add_ps(a8, d);
    __m512 a10 = _mm512_add_ps(a9, d), a11 = _mm512_add_ps(a10, d);
    for (long it = 0; it < a->iters; it++) {
        a0 = _mm512_fmadd_ps(a0, m, c), a1 = _mm512_fmadd_ps(a1, m, c), a2 = _mm512_fmadd_ps(a2, m, c);
        a3 = _mm512_fmadd_ps(a3, m, c), a4 = _mm512_fmadd_ps(a4, m, c), a5 = _mm512_fmadd_ps(a5, m, c);
        a6 = _mm512_fmadd_ps(a6, m, c), a7 = _mm512_fmadd_ps(a7, m, c), a8 = _mm512_fmadd_ps(a8, m, c);
        a9 = _mm512_fmadd_ps(a9, m, c), a10 = _mm512_fmadd_ps(a10, m, c), a11 = _mm512_fmadd_ps(a11, m, c);
    }
    __m512 s = _mm512_add_ps(_mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3)),
                             _mm512_add_ps(_mm512_add_ps(a4, a5), _mm512_add_ps(a6, a7)));
    s = _mm512_add_ps(s, _mm512_add_ps(_mm512_add_ps(a8, a9), _mm512_add_ps(a10, a11)));
    a->out = _mm512_reduce_add_ps(s);
    return NULL;
}

/* fma_512 at 8 lanes, for AVX2 CPUs without AVX-512. */
__attribute__((target("avx2,fma"))) static void *fma_256(void *v) {
    fma_arg *a = v;
    __m256 m = _mm256_set1_ps(0.999999f), c = _mm256_set1_ps(1e-7f), d = _mm256_set1_ps(1e-3f);
    __m256 a0 = m, a1 = _mm256_add_ps(a0, d), a2 = _mm256_add_ps(a1, d), a3 = _mm256_add_ps(a2, d);
    __m256 a4 = _mm256_add_ps(a3, d), a5 = _mm256_add_ps(a4, d), a6 = _mm256_add_ps(a5, d);
    __m256 a7 = _mm256_add_ps(a6, d), a8 = _mm256_add_ps(a7, d), a9 = _mm256_add_ps(a8, d);
    __m256 a10 = _mm256_add_ps(a9, d), a11 = _mm256_add_ps(a10, d);
    for (long it = 0; it < a->iters; it++) {
        a0 = _mm256_fmadd_ps(a0, m, c), a1 = _mm256_fmadd_ps(a1, m, c), a2 = _mm256_fmadd_ps(a2, m, c);
        a3 = _mm256_fmadd_ps(a3, m, c), a4 = _mm256_fmadd_ps(a4, m, c), a5 = _mm256_fmadd_ps(a5, m, c);
        a6 = _mm256_fmadd_ps(a6, m, c), a7 = _mm256_fmadd_ps(a7, m, c), a8 = _mm256_fmadd_ps(a8, m, c);
        a9 = _mm256_fmadd_ps(a9, m, c), a10 = _mm256_fmadd_ps(a10, m, c), a11 = _mm256_fmadd_ps(a11, m, c);
    }
    __m256 s = _mm256_add_ps(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)),
                             _mm256_add_ps(_mm256_add_ps(a4, a5), _mm256_add_ps(a6, a7)));
    s = _mm256_add_ps(s, _mm256_add_ps(_mm256_add_ps(a8, a9), _mm256_add_ps(a10, a11)));
    float t[8];
    _mm256_storeu_ps(t, s);
    a->out = t[0] + t[1] + t[2] + t[3] + t[4] + t[5] + t[6] + t[7];
    return NULL;
}

/* GFLOP/s of `nth` threads doing FMAs at the widest vectors the CPU has
 * (AVX-512, else AVX2 + FMA; 0 without either), best of 3. */
static double fma_peak(int nth) {
    const bool w16 = __builtin_cpu_supports("avx512f");
    if (!w16 && !(__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))) return 0;
    void *(*fn)(void *) = w16 ? fma_512 : fma_256;
    const int lanes = w16 ? 16 : 8;
    if (nth > 256) nth = 256;
    fma_arg args[256];
    pthread_t th[256];
    const long iters = 20000000;
    double best = 0;
    for (int rep = 0; rep < 3; rep++) {
        double t0 = now_s();
        for (int t = 0; t < nth; t++) {
            args[t] = (fma_arg){iters, 0};
            if (t) pthread_create(&th[t], NULL, fn, &args[t]);
        }
        fn(&args[0]);
        for (int t = 1; t < nth; t++) pthread_join(th[t], NULL);
        double g = (double)nth * (double)iters * 12 * lanes * 2 / (now_s() - t0) / 1e9;
        if (g > best) best = g;
    }
    return best;
}

/* ---- matmul cases ---- */

typedef struct bcase {
    const char *format;
    int64_t m, n, k;
    double us, gbps, gflops;
    size_t wbytes;
} bcase;

typedef struct wcopy {
    mlxn_buffer *w, *s, *b;
} wcopy;

static mlxn_status upload(mlxn_device *dev, mlxn_buffer **out, mlxn_dtype t, int64_t r, int64_t c, const void *src) {
    int64_t sh[2] = {r, c};
    mlxn_status st = mlxn_buffer_create(out, dev, t, 2, sh);
    if (!st) st = mlxn_buffer_write(*out, 0, src, mlxn_buffer_nbytes(*out));
    return st;
}

static unsigned g_session_flags;

/* The median seconds of fn(ctx) over at least 3 calls and min_seconds (at
 * most 64 calls) into *sec; the first error stops it. */
static mlxn_status median_time(mlxn_status (*fn)(void *), void *ctx, double min_seconds, double *sec) {
    double times[64];
    int reps = 0;
    mlxn_status st = MLXN_OK;
    double t_start = now_s();
    while (!st && (reps < 3 || (now_s() - t_start < min_seconds && reps < 64))) {
        double t0 = now_s();
        st = fn(ctx);
        times[reps++] = now_s() - t0;
    }
    if (!st) {
        qsort(times, (size_t)reps, sizeof(double), cli_cmp_double);
        *sec = times[reps / 2];
    }
    return st;
}
static mlxn_status replay_fn(void *s) { return mlxn_session_replay((mlxn_session *)s); }

/* Copy bandwidth on the device itself (read + write bytes a second): copies
 * between two pairs of `bytes`-sized f32 buffers, alternated so no copy
 * reads what the one before wrote, recorded once and replayed; the median
 * replay over min_seconds. The reference for GPU matmuls (issue #5: "next
 * to a device-to-device copy measured in the same run"). 0 on failure. */
static double device_copy_bandwidth(mlxn_device *dev, size_t bytes, double min_seconds) {
    enum { NB = 4, CPS = 8 };
    mlxn_buffer *b[NB] = {0};
    int64_t sh[1] = {(int64_t)(bytes / 4)};
    mlxn_session *s = NULL;
    mlxn_status st = MLXN_OK;
    for (int i = 0; i < NB && !st; i++) st = mlxn_buffer_create(&b[i], dev, MLXN_F32, 1, sh);
    if (!st) st = mlxn_session_create(&s, dev, MLXN_MODE_OPTIMIZED, 0);
    for (int c = 0; c < CPS && !st; c++) /* 0 -> 1, 2 -> 3, 0 -> 1, ... */
        st = mlxn_op_copy(s, b[2 * (c % 2) + 1], b[2 * (c % 2)]);
    if (!st) st = mlxn_session_finish(s); /* warm-up */
    double sec = 0, res = 0;
    if (!st) st = median_time(replay_fn, s, min_seconds, &sec);
    if (!st && sec > 0) res = 2.0 * (double)bytes * CPS / sec / 1e9;
    mlxn_session_destroy(s);
    for (int i = 0; i < NB; i++) mlxn_buffer_destroy(b[i]);
    return res;
}

static mlxn_status run_case(mlxn_device *dev, bcase *c, size_t rotate_bytes, double min_seconds) {
    mlxn_qweights qw;
    mlxn_status st = mlxn_quant_make_random(c->format, c->n, c->k, 42, &qw);
    if (st) return st;
    c->wbytes = qw.total_bytes;
    int R = (int)((rotate_bytes + qw.total_bytes - 1) / qw.total_bytes);
    if (c->m > 1) R = 2; /* prefill is compute bound: weights are reused across rows anyway */
    if (R < 1) R = 1;
    if (R > 256) R = 256;
    wcopy *cp = calloc((size_t)R, sizeof *cp);
    mlxn_buffer *x = NULL, *y = NULL;
    mlxn_session *s = NULL;
    bool mlx = qw.mat.kind == MLXN_QKIND_MLX;
    int64_t xs[2] = {c->m, c->k}, ys[2] = {c->m, c->n};
    if (!cp) { st = MLXN_ERR_OUT_OF_MEMORY; goto out; }
    for (int r = 0; r < R && !st; r++) {
        if (mlx) {
            st = upload(dev, &cp[r].w, MLXN_U32, c->n, c->k * qw.mat.bits / 32, qw.data);
            if (!st) st = upload(dev, &cp[r].s, qw.mat.sb_type, c->n, c->k / qw.mat.group, qw.scales);
            if (!st) st = upload(dev, &cp[r].b, qw.mat.sb_type, c->n, c->k / qw.mat.group, qw.biases);
        } else {
            st = upload(dev, &cp[r].w, qw.mat.wtype, c->n, c->k, qw.data);
        }
    }
    if (!st) st = mlxn_buffer_create(&x, dev, MLXN_F32, 2, xs);
    if (!st) st = mlxn_buffer_create(&y, dev, MLXN_F32, 2, ys);
    if (!st) {
        size_t nx = (size_t)(c->m * c->k);
        float *xv = malloc(nx * sizeof(float));
        if (!xv) st = MLXN_ERR_OUT_OF_MEMORY;
        for (size_t i = 0; xv && i < nx; i++) xv[i] = (float)((i * 2654435761u) % 2001) / 1000.0f - 1.0f;
        if (!st) st = mlxn_buffer_write(x, 0, xv, nx * sizeof(float));
        free(xv);
    }
    if (!st) st = mlxn_session_create(&s, dev, MLXN_MODE_OPTIMIZED, g_session_flags);
    mlxn_mlx_quant q = {qw.mat.bits, qw.mat.group};
    for (int r = 0; r < R && !st; r++)
        st = mlx ? mlxn_op_matmul_mlx(s, y, x, cp[r].w, cp[r].s, cp[r].b, &q) : mlxn_op_matmul(s, y, x, cp[r].w);
    if (!st) st = mlxn_session_finish(s); /* warm-up */
    double sec = 0;
    if (!st) st = median_time(replay_fn, s, min_seconds, &sec);
    if (!st) {
        sec /= R;
        c->us = sec * 1e6;
        c->gbps = (double)qw.total_bytes / sec / 1e9;
        c->gflops = 2.0 * (double)c->m * (double)c->n * (double)c->k / sec / 1e9;
    }
out:
    mlxn_session_destroy(s);
    mlxn_buffer_destroy(x);
    mlxn_buffer_destroy(y);
    for (int r = 0; cp && r < R; r++) {
        mlxn_buffer_destroy(cp[r].w);
        mlxn_buffer_destroy(cp[r].s);
        mlxn_buffer_destroy(cp[r].b);
    }
    free(cp);
    mlxn_quant_free(&qw);
    return st;
}

/* ---- sampling ops on one logits row ----
 * What a decode step runs after the output head instead of copying the row
 * to the host: argmax, top_k, logsumexp over [1, n] f32, each recorded REPS
 * times into one graph and replayed (the row stays in cache, as it does
 * right after the head wrote it); next to the copy of the row to the host. */

typedef struct scase {
    const char *op;
    int k; /* top_k */
    double us;
} scase;

typedef struct read_row {
    mlxn_buffer *x;
    float *host;
    size_t bytes;
} read_row;
static mlxn_status read_row_fn(void *p) {
    read_row *r = p;
    return mlxn_buffer_read(r->x, 0, r->host, r->bytes);
}

static mlxn_status run_select_case(mlxn_device *dev, scase *c, int64_t n, double min_seconds) {
    enum { REPS = 16 };
    int64_t ks[2] = {1, c->k > 0 ? c->k : 1}, ls[2] = {1, 2};
    mlxn_buffer *x = NULL, *oi = NULL, *ov = NULL;
    mlxn_session *s = NULL;
    float *host = malloc((size_t)n * sizeof(float));
    mlxn_status st = host ? MLXN_OK : MLXN_ERR_OUT_OF_MEMORY;
    for (int64_t i = 0; host && i < n; i++) host[i] = (float)((i * 2654435761u) % 20011) / 1000.0f - 10.0f;
    if (!st) st = upload(dev, &x, MLXN_F32, 1, n, host);
    if (!st) st = mlxn_buffer_create(&oi, dev, MLXN_I32, 2, ks);
    if (!st) st = mlxn_buffer_create(&ov, dev, MLXN_F32, 2, !strcmp(c->op, "logsumexp") ? ls : ks);
    if (!st) st = mlxn_session_create(&s, dev, MLXN_MODE_OPTIMIZED, 0);
    bool copy = !strcmp(c->op, "read row");
    for (int r = 0; r < REPS && !st && !copy; r++) {
        if (!strcmp(c->op, "argmax")) st = mlxn_op_argmax(s, oi, x);
        else if (!strcmp(c->op, "top_k")) st = mlxn_op_top_k(s, oi, ov, x, c->k);
        else st = mlxn_op_logsumexp(s, ov, x, 1.0 / 0.8);
    }
    if (!st && !copy) st = mlxn_session_finish(s); /* warm-up */
    double sec = 0;
    if (!st) {
        read_row rr = {x, host, (size_t)n * sizeof(float)};
        st = copy ? median_time(read_row_fn, &rr, min_seconds, &sec) : median_time(replay_fn, s, min_seconds, &sec);
    }
    if (!st) c->us = sec / (copy ? 1 : REPS) * 1e6;
    mlxn_session_destroy(s);
    mlxn_buffer_destroy(x);
    mlxn_buffer_destroy(oi);
    mlxn_buffer_destroy(ov);
    free(host);
    return st;
}

/* ---- the other ops of a decode step ----
 * Each at the Llama 3 8B shape for one token (the attention and the KV
 * write at position 4095 of a 4096-token f16 cache, 32 query / 8 KV heads
 * of 128), REPS instances recorded into one graph and replayed: µs a call
 * and GB/s of the bytes it must read and write. Instances rotate over NB
 * sets of buffers, so an attention call (16 MiB of cache) reads memory,
 * not the cache of the call before; the small ops' tensors stay in cache,
 * as they do in a decode step. */

enum { OC_RMS, OC_ADD_RMS, OC_SILU_MUL, OC_ROPE, OC_SOFTMAX, OC_KV_WRITE, OC_ATTN, OC_COUNT };
enum { OC_D = 4096, OC_F = 14336, OC_H = 32, OC_HKV = 8, OC_HD = 128, OC_C = 4096 };
static const int64_t k_vd[] = {1, OC_D}, k_w1[] = {OC_D}, k_vf[] = {1, OC_F}, k_qh[] = {1, OC_H, OC_HD},
                     k_kh[] = {1, OC_HKV, OC_HD}, k_cache[] = {OC_HKV, OC_C, OC_HD}, k_sm[] = {OC_H, OC_C},
                     k_pos[] = {1};

/* A buffer an op case needs: dtype and shape (i32 ones hold position 4095). */
typedef struct obuf {
    mlxn_dtype t;
    int nd;
    const int64_t *sh;
} obuf;

typedef struct ocase {
    const char *op, *dtype, *shape;
    int64_t m, n, k;
    double bytes; /* read + written a call */
    int nbuf;
    obuf buf[5];  /* the order run_op_case passes them to the op */
    bool rotate;  /* NB sets of buffers (the cache-reading ops) */
} ocase;

#define OB(t, a) {t, (int)(sizeof a / sizeof a[0]), a}
static const ocase k_oc[OC_COUNT] = {
    {"rms_norm", "f32", "[1, 4096]", 1, 4096, 0, 3.0 * 4 * OC_D, 4,
     {OB(MLXN_F32, k_vd), OB(MLXN_F32, k_vd), OB(MLXN_F32, k_w1), OB(MLXN_F32, k_vd)}, false},
    {"add_rms_norm", "f32", "[1, 4096] + [1, 4096]", 1, 4096, 0, 5.0 * 4 * OC_D, 5,
     {OB(MLXN_F32, k_vd), OB(MLXN_F32, k_vd), OB(MLXN_F32, k_w1), OB(MLXN_F32, k_vd), OB(MLXN_F32, k_vd)}, false},
    {"silu_mul", "f32", "[1, 14336] x 2", 1, 14336, 0, 3.0 * 4 * OC_F, 3,
     {OB(MLXN_F32, k_vf), OB(MLXN_F32, k_vf), OB(MLXN_F32, k_vf)}, false},
    {"rope", "f32", "[1, 32, 128] llama3", 1, 32, 128, 2.0 * 4 * OC_H * OC_HD, 3,
     {OB(MLXN_F32, k_qh), OB(MLXN_F32, k_qh), OB(MLXN_I32, k_pos)}, false},
    {"softmax", "f32", "[32, 4096]", 32, 4096, 0, 2.0 * 4 * OC_H * OC_C, 2,
     {OB(MLXN_F32, k_sm), OB(MLXN_F32, k_sm)}, false},
    {"kv_write", "f16", "[1, 8, 128] -> [8, 4096, 128]", 1, 8, 128, 4.0 * OC_HKV * OC_HD + 2.0 * OC_HKV * OC_HD, 3,
     {OB(MLXN_F16, k_cache), OB(MLXN_F32, k_kh), OB(MLXN_I32, k_pos)}, true},
    {"attention", "f16", "q [1, 32, 128], kv [8, 4096, 128]", 1, 32, 4096,
     2.0 * 2 * OC_HKV * OC_C * OC_HD + 2.0 * 4 * OC_H * OC_HD, 5,
     {OB(MLXN_F32, k_qh), OB(MLXN_F16, k_cache), OB(MLXN_F16, k_cache), OB(MLXN_I32, k_pos), OB(MLXN_F32, k_qh)},
     true},
};
#undef OB

static mlxn_status ocase_buf(mlxn_device *dev, mlxn_buffer **b, const obuf *d, uint32_t seed) {
    mlxn_status st = mlxn_buffer_create(b, dev, d->t, d->nd, d->sh);
    if (st) return st;
    size_t n = mlxn_buffer_nbytes(*b);
    unsigned char *h = malloc(n);
    if (!h) return mlxn_err(MLXN_ERR_OUT_OF_MEMORY, "bench ops: out of host memory");
    size_t el = d->t == MLXN_F32 || d->t == MLXN_I32 ? 4 : 2;
    for (size_t i = 0; i < n / el; i++) {
        float v = (float)((i * 2654435761u + seed * 40503u) % 2001) / 1000.0f - 1.0f; /* [-1, 1] */
        if (d->t == MLXN_F32) memcpy(h + 4 * i, &v, 4);
        else if (d->t == MLXN_I32) { int32_t p = 4095; memcpy(h + 4 * i, &p, 4); }
        else {
            uint16_t hv = mlxn_f32_to_f16(v);
            memcpy(h + 2 * i, &hv, 2);
        }
    }
    st = mlxn_buffer_write(*b, 0, h, n);
    free(h);
    return st;
}

/* Case `which` of k_oc: its µs a call into *us. */
static mlxn_status run_op_case(mlxn_device *dev, int which, double min_seconds, double *us) {
    enum { REPS = 16, NB = 16 };
    const ocase *c = &k_oc[which];
    mlxn_buffer *b[NB][5] = {{0}};
    mlxn_session *s = NULL;
    mlxn_status st = mlxn_session_create(&s, dev, MLXN_MODE_OPTIMIZED, 0);
    const int nb = c->rotate ? NB : 1;
    mlxn_rope_params rp = {0, 500000.0f, MLXN_ROPE_NEOX, MLXN_ROPE_SCALE_LLAMA3, 8.0f, 1.0f, 4.0f, 8192};
    mlxn_attention_params ap = {0};
    for (int i = 0; i < nb && !st; i++)
        for (int j = 0; j < c->nbuf && !st; j++) st = ocase_buf(dev, &b[i][j], &c->buf[j], (uint32_t)(i * 7 + 1 + j));
    for (int r = 0; r < REPS && !st; r++) {
        mlxn_buffer **x = b[r % nb];
        switch (which) {
        case OC_RMS: st = mlxn_op_rms_norm(s, x[3], x[0], x[2], 1e-5f); break;
        case OC_ADD_RMS: st = mlxn_op_add_rms_norm(s, x[3], x[4], x[0], x[1], x[2], 1e-5f); break;
        case OC_SILU_MUL: st = mlxn_op_silu_mul(s, x[2], x[0], x[1]); break;
        case OC_ROPE: st = mlxn_op_rope(s, x[1], x[0], x[2], NULL, &rp); break;
        case OC_SOFTMAX: st = mlxn_op_softmax(s, x[1], x[0], NULL, 0.088f); break;
        case OC_KV_WRITE: st = mlxn_op_kv_write(s, x[0], x[1], x[2]); break;
        default: st = mlxn_op_attention(s, x[4], x[0], x[1], x[2], x[3], &ap); break;
        }
    }
    if (!st) st = mlxn_session_finish(s); /* warm-up */
    double sec = 0;
    if (!st) st = median_time(replay_fn, s, min_seconds, &sec);
    if (!st) *us = sec / REPS * 1e6;
    mlxn_session_destroy(s);
    for (int i = 0; i < nb; i++)
        for (int j = 0; j < 5; j++) mlxn_buffer_destroy(b[i][j]);
    return st;
}

static void usage(void) {
    printf("usage: mlxn bench ops [--json] [--threads N] [--backend cpu|cuda] [--formats a,b,..]\n"
           "                      [--rows 1,512] [--shape NxK] [--quick] [--rotate-mb MB] [--f32-act]\n"
           "                      [--bw-each]\n"
           "Matmul µs and GB/s of weight bytes per format and shape (N x K = output x input\n"
           "features), weights rotated through --rotate-mb (default 512) so calls read memory.\n"
           "The read bandwidth is measured before the cases (%%read uses it) and after them,\n"
           "and a device-to-device copy (read + write bytes) before them: on a GPU %%read is %% of it;\n"
           "--bw-each measures it again right before and right after every case and takes their\n"
           "mean for its %%read, marking a case where the two differ by more than 15%% (on a machine\n"
           "whose bandwidth changes within a run).\n"
           "--f32-act: decode matmuls keep activations in f32 instead of int8 (see mlxn.h).\n"
           "Formats: mlx-q4-g64 mlx-q8-g64 mlx-q4-g32 mlx-q8-g32 q4_0 q4_1 q8_0 q4_k q5_k q6_k f16 bf16 f32\n"
           "(MLX: bf16 scales/biases; -f16 or -f32 appended selects those, e.g. mlx-q4-g32-f16)\n");
}

int cmd_bench_ops(int argc, char **argv) {
    bool json = false, quick = false, bw_each = false;
    long threads = 0, rotate_mb = 512;
    const char *backend = "auto";
    const char *formats = "mlx-q4-g64,mlx-q8-g64,q4_0,q4_1,q8_0,q4_k,q5_k,q6_k,f16,bf16";
    const char *rows = "1,512";
    const char *shape_arg = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--json")) json = true;
        else if (!strcmp(a, "--quick")) quick = true;
        else if (!strcmp(a, "--bw-each")) bw_each = true;
        else if (!strcmp(a, "--f32-act")) g_session_flags |= MLXN_SESSION_F32_ACTIVATIONS;
        else if (!strcmp(a, "--help") || !strcmp(a, "-h")) { usage(); return 0; }
        else if (!strcmp(a, "--threads")) { if (!cli_int(a, v, 1, 1024, &threads)) return 2; i++; }
        else if (!strcmp(a, "--rotate-mb")) { if (!cli_int(a, v, 0, 1 << 20, &rotate_mb)) return 2; i++; }
        else if (!strcmp(a, "--backend") && v) { backend = v; i++; }
        else if (!strcmp(a, "--formats") && v) { formats = v; i++; }
        else if (!strcmp(a, "--rows") && v) { rows = v; i++; }
        else if (!strcmp(a, "--shape") && v) { shape_arg = v; i++; }
        else { fprintf(stderr, "mlxn bench ops: unknown option '%s'\n", a); usage(); return 2; }
    }
    { /* every format named right, before the bandwidth measurements (a small matrix of each) */
        char fl[512];
        snprintf(fl, sizeof fl, "%s", formats);
        char *save = NULL;
        for (char *f = strtok_r(fl, ",", &save); f; f = strtok_r(NULL, ",", &save)) {
            mlxn_qweights qw;
            mlxn_status sf = mlxn_quant_make_random(f, 1, 256, 1, &qw);
            mlxn_quant_free(&qw);
            if (sf) return cli_fail(f, sf);
        }
    }
    mlxn_device *dev = NULL;
    mlxn_status st = cli_open_device(&dev, backend, (int)threads);
    if (st) return cli_fail("opening the device", st);
    int nth = mlxn_device_threads(dev);
    bool cpu = !strcmp(mlxn_device_kind(dev), "cpu");
    double rbw = cpu ? read_bandwidth(nth, (size_t)1 << 30) : 0;
    double peak = cpu ? fma_peak(nth) : 0;
    /* on a GPU the matmuls' reference is a device-to-device copy (the host
     * read bandwidth says nothing of it): %read is then % of that copy */
    size_t copy_mb = cpu ? 64 : 256; /* each of the 4 buffers: past the last-level cache */
    double cbw_dev = device_copy_bandwidth(dev, copy_mb << 20, 0.5);
    if (!cpu) rbw = cbw_dev;
    int64_t shapes[4][2] = {{4096, 4096}, {4096, 14336}, {14336, 4096}, {32000, 4096}};
    int n_shapes = quick ? 1 : 4;
    if (shape_arg) {
        long long sn, sk;
        if (sscanf(shape_arg, "%lldx%lld", &sn, &sk) != 2 || sn < 1 || sk < 1) {
            fprintf(stderr, "mlxn bench ops: --shape wants NxK, got '%s'\n", shape_arg);
            mlxn_device_close(dev);
            return 2;
        }
        shapes[0][0] = sn;
        shapes[0][1] = sk;
        n_shapes = 1;
    }
    if (!json) {
        printf("bench ops on %s, %s activations\n", mlxn_device_description(dev), g_session_flags ? "f32" : "int8");
        if (cpu) printf("read bandwidth (%d threads): %.1f GB/s; peak f32 FMA: %.0f GFLOP/s\n", nth, rbw, peak);
        printf("device copy (%zu MiB buffers, read + write bytes): %.1f GB/s%s\n", copy_mb, cbw_dev,
               cpu ? "" : "; %read below is % of it");
        printf("%-12s %5s %6s %6s %10s %9s %9s %8s %7s\n", "format", "m", "n", "k", "us", "GB/s", "GFLOP/s", "%read",
               "%peak");
    } else {
        printf("{\"device\": \"%s\", \"activations\": \"%s\", \"read_bandwidth_gbps\": %.2f, "
               "\"copy_bandwidth_gbps\": %.2f, \"fma_peak_gflops\": %.1f, \"results\": [",
               mlxn_device_description(dev), g_session_flags ? "f32" : "int8", cpu ? rbw : 0.0, cbw_dev, peak);
    }
    int printed = 0, rc = 0;
    char fl[512], rl[64];
    snprintf(rl, sizeof rl, "%s", rows);
    for (char *rs = strtok(rl, ","); rs && !rc; rs = strtok(NULL, ",")) {
        long m = atol(rs);
        if (m < 1) continue;
        if (m > 1 && quick) m = 64;
        snprintf(fl, sizeof fl, "%s", formats);
        char *save = NULL;
        for (char *f = strtok_r(fl, ",", &save); f && !rc; f = strtok_r(NULL, ",", &save)) {
            for (int si = 0; si < n_shapes; si++) {
                bcase c = {.format = f, .m = m, .n = shapes[si][0], .k = shapes[si][1]};
                double cbw = rbw, bw0 = rbw, bw1 = rbw;
                if (cpu && bw_each) bw0 = read_bandwidth(nth, (size_t)1 << 30);
                st = run_case(dev, &c, (size_t)rotate_mb << 20, quick ? 0.05 : 0.3);
                if (st) {
                    rc = cli_fail(f, st);
                    break;
                }
                if (cpu && bw_each) {
                    bw1 = read_bandwidth(nth, (size_t)1 << 30);
                    cbw = 0.5 * (bw0 + bw1);
                }
                /* the bandwidth moved during the case: its %read is not to be trusted */
                bool moved = bw_each && fabs(bw1 - bw0) > 0.15 * (bw0 > bw1 ? bw0 : bw1);
                if (json) {
                    printf("%s{\"op\": \"matmul\", \"format\": \"%s\", \"m\": %lld, \"n\": %lld, \"k\": %lld, "
                           "\"threads\": %d, \"us\": %.2f, \"gbps\": %.2f, \"gflops\": %.2f, "
                           "\"read_gbps\": %.2f",
                           printed++ ? ", " : "", f, (long long)c.m, (long long)c.n, (long long)c.k, nth, c.us,
                           c.gbps, c.gflops, cbw);
                    if (bw_each)
                        printf(", \"read_gbps_before\": %.2f, \"read_gbps_after\": %.2f, \"bandwidth_moved\": %s", bw0,
                               bw1, moved ? "true" : "false");
                    printf("}");
                } else {
                    printf("%-12s %5lld %6lld %6lld %10.1f %9.2f %9.1f %7.0f%% %6.0f%%", f, (long long)c.m,
                           (long long)c.n, (long long)c.k, c.us, c.gbps, c.gflops, cbw > 0 ? 100.0 * c.gbps / cbw : 0.0,
                           peak > 0 ? 100.0 * c.gflops / peak : 0.0);
                    if (bw_each) printf("  read %.1f -> %.1f GB/s%s", bw0, bw1, moved ? " (moved)" : "");
                    printf("\n");
                }
                fflush(stdout);
            }
        }
    }
    /* sampling ops over one row of a Llama-3 output head (128256 logits):
     * top_k 104 = 40 + a 64-token penalty window, 256 = the nucleus path */
    scase sc[] = {{"argmax", 0, 0}, {"top_k", 40, 0}, {"top_k", 104, 0}, {"top_k", 256, 0}, {"logsumexp", 0, 0},
                  {"read row", 0, 0}};
    const int64_t vocab = 128256;
    if (!json && !rc) printf("\nsampling ops over one row of %lld logits (row read = copy to the host)\n%-12s %5s %10s\n",
                             (long long)vocab, "op", "k", "us");
    for (size_t i = 0; i < sizeof sc / sizeof sc[0] && !rc; i++) {
        st = run_select_case(dev, &sc[i], vocab, quick ? 0.05 : 0.3);
        if (st) {
            rc = cli_fail(sc[i].op, st);
            break;
        }
        if (json) /* gbps: the logits row read */
            printf("%s{\"op\": \"%s\", \"format\": \"f32\", \"m\": 1, \"n\": %lld, \"k\": %d, \"threads\": %d, "
                   "\"us\": %.2f, \"gbps\": %.2f, \"gflops\": 0}",
                   printed++ ? ", " : "", sc[i].op, (long long)vocab, sc[i].k, nth, sc[i].us,
                   sc[i].us > 0 ? 4.0 * (double)vocab / (sc[i].us * 1e-6) / 1e9 : 0.0);
        else
            printf("%-12s %5d %10.1f\n", sc[i].op, sc[i].k, sc[i].us);
        fflush(stdout);
    }
    if (!json && !rc)
        printf("\ndecode-step ops, Llama 3 8B shapes, one token (GB/s: bytes read + written)\n%-13s %-6s %-34s %9s "
               "%9s\n",
               "op", "dtype", "shape", "us", "GB/s");
    for (int i = 0; i < OC_COUNT && !rc; i++) {
        const ocase *c = &k_oc[i];
        double us = 0;
        st = run_op_case(dev, i, quick ? 0.05 : 0.3, &us);
        if (st) {
            rc = cli_fail("decode-step ops", st);
            break;
        }
        double gbps = us > 0 ? c->bytes / (us * 1e-6) / 1e9 : 0;
        if (json)
            printf("%s{\"op\": \"%s\", \"format\": \"%s\", \"m\": %lld, \"n\": %lld, \"k\": %lld, \"threads\": %d, "
                   "\"us\": %.2f, \"gbps\": %.2f, \"gflops\": 0}",
                   printed++ ? ", " : "", c->op, c->dtype, (long long)c->m, (long long)c->n, (long long)c->k, nth, us,
                   gbps);
        else
            printf("%-13s %-6s %-34s %9.2f %9.2f\n", c->op, c->dtype, c->shape, us, gbps);
        fflush(stdout);
    }
    /* again after the cases: on a shared machine the bandwidth can change
     * during a run, and a case's %read is only as good as its reference */
    double rbw2 = cpu && !rc ? read_bandwidth(nth, (size_t)1 << 30) : 0;
    if (json)
        printf("], \"read_bandwidth_after_gbps\": %.2f}\n", rbw2);
    else if (cpu && !rc)
        printf("read bandwidth after the cases (%d threads): %.1f GB/s\n", nth, rbw2);
    mlxn_device_close(dev);
    return rc;
}
