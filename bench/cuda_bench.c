/* cuda_bench.c — decode matmul (M = 1) bandwidth on the CUDA backend's own
 * kernels, for every weight format at the Llama-8B shapes, next to a
 * device-to-device copy measured in the same run (the physical floor).
 *
 * Method (METHOD.md): weights are random bytes (never zeros), rotated over
 * copies totalling >= 256 MB so no call finds its weights in the 50 MB L2;
 * each timing is one CUDA graph of 32 back-to-back matmuls (launch gaps as in
 * a replayed decode graph), timed with events after warm-up; the median of
 * 15 runs is reported. GB/s counts weight bytes + x + y.
 * Usage: cuda_bench [--quick] [--int] [--prefill | --decode]   (build: make CUDA=1 build-cuda/bench/cuda_bench) */
#include "mlxn.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifndef MLXN_CUDA
int main(void) {
    printf("cuda_bench: skipped: built without CUDA (make CUDA=1)\n");
    return 0;
}
#else
#include "backend/cuda/cuda_internal.h"

#define CK(call)                                                                                  \
    do {                                                                                          \
        cudaError_t e_ = (call);                                                                  \
        if (e_ != cudaSuccess) {                                                                  \
            fprintf(stderr, "cuda_bench: %s failed: %s (line %d)\n", #call, cudaGetErrorString(e_), __LINE__); \
            exit(1);                                                                              \
        }                                                                                         \
    } while (0)

static int cmp_f(const void *a, const void *b) {
    float x = *(const float *)a, y = *(const float *)b;
    return x < y ? -1 : x > y;
}

#define RUNS 15
#define PER_GRAPH 32

typedef struct fmt {
    const char *name;
    int wtype; /* mlxn_dtype, or -bits for MLX affine (group 64, f16 scales) */
} fmt;

static size_t wbytes(const fmt *f, size_t N, size_t K) {
    if (f->wtype < 0) {
        int bits = -f->wtype;
        return N * K * (size_t)bits / 8 + 2 * (N * (K / 64) * 2);
    }
    return N * K / mlxn_dtype_block_elems((mlxn_dtype)f->wtype) * mlxn_dtype_block_bytes((mlxn_dtype)f->wtype);
}

static void *g_scratch; /* int8 x for the integer decode path */

static int64_t g_M = 1; /* rows of x */

static bool g_xready; /* M = 1: x's int8 form already in g_scratch (the matmul kernel alone) */

static void *g_gemm; /* non-NULL: prefill through the cuBLAS path with this scratch */
static const char *g_plain_a, *g_plain_b; /* bf16 operands of the reference GEMM */

static cudaError_t launch(const fmt *f, float *y, const float *x, const char *w, size_t N, size_t K, cudaStream_t s) {
    if (g_gemm && f->wtype < 0) {
        int bits = -f->wtype;
        size_t qb = N * K * (size_t)bits / 8, sb = N * (K / 64) * 2;
        return mlxn_cu_gemm_mlx_raw(y, x, (const uint32_t *)w, w + qb, w + qb + sb, MLXN_F16, bits, 64, g_M,
                                    (int64_t)N, (int64_t)K, g_gemm, s);
    }
    if (g_gemm) return mlxn_cu_gemm_raw(y, x, w, f->wtype, g_M, (int64_t)N, (int64_t)K, g_gemm, s);
    if (f->wtype < 0) {
        int bits = -f->wtype;
        size_t qb = N * K * (size_t)bits / 8, sb = N * (K / 64) * 2;
        return mlxn_cu_matmul_mlx_raw(y, x, (const uint32_t *)w, w + qb, w + qb + sb, MLXN_F16, bits, 64, g_M,
                                      (int64_t)N, (int64_t)K, g_scratch, s, g_xready);
    }
    return mlxn_cu_matmul_raw(y, x, w, f->wtype, g_M, (int64_t)N, (int64_t)K, g_scratch, s, g_xready);
}

/* Median milliseconds of one graph launch of `body` (captured once). */
typedef struct job {
    const fmt *f;
    float *y, *x;
    char *pool;
    size_t N, K, stride;
    int copies;
} job;

/* copy: 0 = matmuls of j, 1 = cudaMemcpyAsync, 2 = copy kernel, 3 = the
 * plain bf16 GEMM (g_plain_a/b, workspace in the pool); 4 / 5 = as 1 / 2,
 * alternating between src -> dst and the pair 2 * bytes above them */
static float time_graph(cudaStream_t s, job *j, int copy, char *src, char *dst, size_t bytes) {
    cudaGraph_t g;
    cudaGraphExec_t ge;
    CK(cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal));
    for (int i = 0; i < PER_GRAPH; i++) {
        size_t alt = copy >= 4 ? (size_t)(i % 2) * 2 * bytes : 0;
        if (copy == 1 || copy == 4) CK(cudaMemcpyAsync(dst + alt, src + alt, bytes, cudaMemcpyDeviceToDevice, s));
        else if (copy == 2 || copy == 5) CK(mlxn_cu_copy_raw(dst + alt, src + alt, bytes, s));
        else if (copy == 3)
            CK(mlxn_cu_gemm_bf16_plain(j->y, g_plain_a, g_plain_b, g_M, (int64_t)j->N, (int64_t)j->K, j->pool, s));
        else CK(launch(j->f, j->y, j->x, j->pool + (size_t)(i % j->copies) * j->stride, j->N, j->K, s));
    }
    CK(cudaStreamEndCapture(s, &g));
    CK(cudaGraphInstantiate(&ge, g, 0));
    cudaEvent_t a, b;
    CK(cudaEventCreate(&a));
    CK(cudaEventCreate(&b));
    for (int w = 0; w < 3; w++) CK(cudaGraphLaunch(ge, s));
    float ms[RUNS];
    for (int r = 0; r < RUNS; r++) {
        CK(cudaEventRecord(a, s));
        CK(cudaGraphLaunch(ge, s));
        CK(cudaEventRecord(b, s));
        CK(cudaEventSynchronize(b));
        CK(cudaEventElapsedTime(&ms[r], a, b));
    }
    qsort(ms, RUNS, sizeof(float), cmp_f);
    CK(cudaEventDestroy(a));
    CK(cudaEventDestroy(b));
    CK(cudaGraphExecDestroy(ge));
    CK(cudaGraphDestroy(g));
    return ms[RUNS / 2] / PER_GRAPH;
}

int main(int argc, char **argv) {
    bool quick = false, only_int = false, only_prefill = false, no_prefill = false;
    const char *one = NULL; /* --one FORMAT N K: a few plain launches, for a profiler */
    size_t oneN = 0, oneK = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--quick")) quick = true;
        if (!strcmp(argv[i], "--int")) only_int = true; /* only formats on the integer decode path */
        if (!strcmp(argv[i], "--prefill")) only_prefill = true; /* only the M = 512 tables */
        if (!strcmp(argv[i], "--decode")) no_prefill = true;    /* only the M = 1 table */
        if (!strcmp(argv[i], "--one") && i + 3 < argc) {
            one = argv[i + 1];
            oneN = (size_t)atol(argv[i + 2]);
            oneK = (size_t)atol(argv[i + 3]);
            i += 3;
        }
    }
    int ndev = 0;
    if (cudaGetDeviceCount(&ndev) != cudaSuccess || ndev == 0) {
        printf("cuda_bench: skipped: no CUDA device\n");
        return 0;
    }
    struct cudaDeviceProp prop;
    CK(cudaGetDeviceProperties(&prop, 0));
    printf("cuda_bench: %s, %d SMs, L2 %d MB\n", prop.name, prop.multiProcessorCount, prop.l2CacheSize >> 20);
    cudaStream_t s;
    CK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));

    /* a pool of random bytes that every format's weight copies are cut from */
    const size_t POOL = (size_t)1 << 30;
    char *pool;
    CK(cudaMalloc((void **)&pool, POOL));
    {
        size_t chunk = (size_t)64 << 20;
        uint64_t *h = malloc(chunk), r = 0x9E3779B97F4A7C15ull;
        for (size_t off = 0; off < POOL; off += chunk) {
            for (size_t i = 0; i < chunk / 8; i++) {
                r ^= r >> 12; r ^= r << 25; r ^= r >> 27;
                h[i] = r * 2685821657736338717ull;
            }
            CK(cudaMemcpy(pool + off, h, chunk, cudaMemcpyHostToDevice));
        }
        free(h);
    }
    /* copy bandwidth: 2 x 512 MB halves of the pool, read + write bytes */
    if (one) {
        fmt list[] = {{"f16", MLXN_F16}, {"q8_0", MLXN_Q8_0}, {"q6_k", MLXN_Q6_K}, {"q5_k", MLXN_Q5_K},
                      {"q4_k", MLXN_Q4_K}, {"q4_1", MLXN_Q4_1}, {"q4_0", MLXN_Q4_0}, {"mlx8", -8}, {"mlx4", -4}};
        float *x1, *y1;
        CK(cudaMalloc((void **)&x1, oneK * 4));
        CK(cudaMalloc((void **)&y1, oneN * 4));
        CK(cudaMemset(x1, 0x3c, oneK * 4));
        CK(cudaMalloc(&g_scratch, 1 << 20));
        for (size_t k = 0; k < sizeof list / sizeof list[0]; k++)
            if (!strcmp(list[k].name, one))
                for (int r = 0; r < 3; r++) CK(launch(&list[k], y1, x1, pool, oneN, oneK, s));
        CK(cudaStreamSynchronize(s));
        printf("cuda_bench: ran %s %zux%zu 3 times\n", one, oneN, oneK);
        return 0;
    }
    /* copy bandwidth, read + write bytes: one half of the pool to the
     * other, and 256 MiB quarters alternating q0 -> q1, q2 -> q3 (source
     * and destination at another distance); by cudaMemcpyAsync and by a
     * copy kernel. The best of the four is the reference below (the floor
     * a matmul is measured against should not be a slow copy's) */
    job none = {0};
    size_t half = POOL / 2, quarter = POOL / 4;
    struct { const char *what; int mode; size_t bytes; } cps[] = {
        {"cudaMemcpy, halves", 1, half}, {"copy kernel, halves", 2, half},
        {"cudaMemcpy, quarters", 4, quarter}, {"copy kernel, quarters", 5, quarter}};
    double copy_gbs = 0;
    for (size_t c = 0; c < sizeof cps / sizeof cps[0]; c++) {
        float ms = time_graph(s, &none, cps[c].mode, pool, pool + cps[c].bytes, cps[c].bytes);
        double gbs = 2.0 * (double)cps[c].bytes / ((double)ms * 1e-3) / 1e9;
        printf("device-to-device %-22s %4.0f MB in %.3f ms = %.0f GB/s (read + write)\n", cps[c].what,
               (double)cps[c].bytes / 1e6, (double)ms, gbs);
        if (gbs > copy_gbs) copy_gbs = gbs;
    }
    printf("device-to-device copy reference: %.0f GB/s (the best of the four) <- the reference below\n", copy_gbs);

    float *x, *y;
    CK(cudaMalloc((void **)&x, 14336 * 4));
    CK(cudaMalloc((void **)&y, 32000 * 4));
    CK(cudaMalloc(&g_scratch, 1 << 20));
    {
        float hx[14336];
        for (int i = 0; i < 14336; i++) hx[i] = (float)((i * 7919) % 2001 - 1000) / 1000.0f;
        CK(cudaMemcpy(x, hx, sizeof hx, cudaMemcpyHostToDevice));
    }
    fmt fmts[] = {{"f16", MLXN_F16},  {"bf16", MLXN_BF16}, {"q8_0", MLXN_Q8_0}, {"q6_k", MLXN_Q6_K},
                  {"q5_k", MLXN_Q5_K}, {"q4_k", MLXN_Q4_K}, {"q4_1", MLXN_Q4_1}, {"q4_0", MLXN_Q4_0},
                  {"mlx8", -8},        {"mlx6", -6},        {"mlx4", -4},        {"mlx3", -3},
                  {"mlx2", -2}};
    size_t shapes[4][2] = {{4096, 4096}, {4096, 14336}, {14336, 4096}, {32000, 4096}}; /* N, K */
    int nshapes = quick ? 1 : 4;
    /* "us" / "of copy": a call as a standalone op (its x quantization
     * launch, then the matmul); "kernel us" / "of copy": the matmul kernel
     * alone on an x already quantized, as a decode step runs it after a
     * producer that writes the int8 x (formats on the integer path) */
    printf("\n%-6s %-13s %9s %10s %9s %8s %10s %8s\n", "format", "N x K", "MB", "us", "GB/s", "of copy",
           "kernel us", "of copy");
    for (size_t fi = 0; fi < sizeof fmts / sizeof fmts[0] && !only_prefill; fi++) {
        if (only_int && (fmts[fi].wtype == MLXN_F16 || fmts[fi].wtype == MLXN_BF16 || fmts[fi].wtype == -6 ||
                         fmts[fi].wtype == -3 || fmts[fi].wtype == -2))
            continue;
        for (int si = 0; si < nshapes; si++) {
            size_t N = shapes[si][0], K = shapes[si][1];
            size_t wb = wbytes(&fmts[fi], N, K), stride = (wb + 4095) & ~(size_t)4095;
            int copies = (int)(((size_t)256 << 20) / stride) + 1;
            if ((size_t)copies * stride > POOL) copies = (int)(POOL / stride);
            if (copies < 1) continue;
            job j = {&fmts[fi], y, x, pool, N, K, stride, copies};
            float ms = time_graph(s, &j, 0, NULL, NULL, 0);
            double bytes = (double)wb + 4.0 * (double)(K + N);
            double gbs = bytes / ((double)ms * 1e-3) / 1e9;
            char shape[32], kcol[40] = "";
            snprintf(shape, sizeof shape, "%zux%zu", N, K);
            if (mlxn_cu_matmul_scratch(fmts[fi].wtype < 0 ? -1 : fmts[fi].wtype, fmts[fi].wtype < 0 ? -fmts[fi].wtype : 0,
                                       1, (int64_t)K)) {
                CK(launch(&fmts[fi], y, x, pool, N, K, s)); /* x's int8 form into g_scratch */
                CK(cudaStreamSynchronize(s));
                g_xready = true;
                float kms = time_graph(s, &j, 0, NULL, NULL, 0);
                g_xready = false;
                double kgbs = bytes / ((double)kms * 1e-3) / 1e9;
                snprintf(kcol, sizeof kcol, " %10.2f %7.0f%%", (double)kms * 1e3, 100.0 * kgbs / copy_gbs);
            }
            printf("%-6s %-13s %9.1f %10.2f %9.0f %7.0f%%%s\n", fmts[fi].name, shape, (double)wb / 1e6,
                   (double)ms * 1e3, gbs, 100.0 * gbs / copy_gbs, kcol);
        }
    }
    /* prefill: M = 512 rows. "tiles" = the bf16 mma.sync tile kernels (W
     * decoded per tile, MLXN_CU_BLAS=0's path); "cublas" = W decoded once to
     * bf16 scratch + cuBLAS bf16 GEMM (the default for M >= 128); "bf16 GEMM"
     * = cuBLAS on bf16 operands already in memory, nothing decoded: the
     * reference rate. */
    if (!no_prefill) {
        const int64_t M = 512;
        const size_t KMAX = 14336, NMAX = 14336;
        float *xm, *ym;
        char msg[200];
        if (mlxn_cu_blas_init(0, msg, sizeof msg)) printf("cuda_bench: %s\n", msg);
        CK(cudaMalloc((void **)&xm, (size_t)M * KMAX * 4));
        CK(cudaMalloc((void **)&ym, (size_t)M * NMAX * 4));
        {
            float *hx = malloc((size_t)M * KMAX * 4);
            for (size_t i = 0; i < (size_t)M * KMAX; i++) hx[i] = (float)((i * 7919) % 2001 - 1000) / 1000.0f;
            CK(cudaMemcpy(xm, hx, (size_t)M * KMAX * 4, cudaMemcpyHostToDevice));
            free(hx);
        }
        size_t gs = mlxn_cu_gemm_scratch(-4, 4, M, NMAX, KMAX);
        size_t gs2 = mlxn_cu_gemm_scratch(MLXN_Q4_0, 0, M, NMAX, KMAX);
        if (gs2 > gs) gs = gs2;
        void *gscr = NULL;
        if (gs) CK(cudaMalloc(&gscr, gs));
        g_M = M;
        size_t pshapes[3][2] = {{4096, 4096}, {14336, 4096}, {4096, 14336}};
        printf("\nprefill M=%lld (f32 x, f32 out)\n", (long long)M);
        printf("%-6s %-12s %10s %9s %10s %9s\n", "format", "N x K", "tiles us", "TFLOP/s", "cublas us", "TFLOP/s");
        fmt pf[] = {{"f16", MLXN_F16}, {"bf16", MLXN_BF16}, {"q8_0", MLXN_Q8_0}, {"q4_k", MLXN_Q4_K},
                    {"q4_0", MLXN_Q4_0}, {"mlx4", -4}};
        for (size_t fi = 0; fi < sizeof pf / sizeof pf[0]; fi++) {
            for (int si = 0; si < 3; si++) {
                size_t N = pshapes[si][0], K = pshapes[si][1];
                if (quick && si > 0) continue;
                size_t wb = wbytes(&pf[fi], N, K), stride = (wb + 4095) & ~(size_t)4095;
                int copies = (int)(POOL / stride) < 4 ? (int)(POOL / stride) : 4;
                job j = {&pf[fi], ym, xm, pool, N, K, stride, copies};
                double fl = 2.0 * (double)M * (double)N * (double)K;
                g_gemm = NULL;
                float ms = time_graph(s, &j, 0, NULL, NULL, 0);
                float gms = 0;
                if (gscr) {
                    g_gemm = gscr;
                    gms = time_graph(s, &j, 0, NULL, NULL, 0);
                    g_gemm = NULL;
                }
                char shape[32];
                snprintf(shape, sizeof shape, "%zux%zu", N, K);
                printf("%-6s %-12s %10.1f %9.1f %10.1f %9.1f\n", pf[fi].name, shape, (double)ms * 1e3,
                       fl / ((double)ms * 1e-3) / 1e12, (double)gms * 1e3, gms > 0 ? fl / ((double)gms * 1e-3) / 1e12 : 0.0);
            }
        }
        /* where the cuBLAS path starts to pay: mlx4 14336x4096 at small M
         * (tiles = TF32 tile kernel below M = 128) */
        if (gscr) {
            printf("\nmlx4 14336x4096 by M: %6s %10s %10s\n", "M", "tiles us", "cublas us");
            int64_t Ms[5] = {16, 32, 64, 96, 128};
            for (int mi = 0; mi < 5; mi++) {
                g_M = Ms[mi];
                size_t N = 14336, K = 4096, wb = wbytes(&pf[5], N, K), stride = (wb + 4095) & ~(size_t)4095;
                job j = {&pf[5], ym, xm, pool, N, K, stride, 4};
                float ms = time_graph(s, &j, 0, NULL, NULL, 0);
                g_gemm = gscr;
                float gms = time_graph(s, &j, 0, NULL, NULL, 0);
                g_gemm = NULL;
                printf("%28lld %10.1f %10.1f\n", (long long)Ms[mi], (double)ms * 1e3, (double)gms * 1e3);
            }
            g_M = M;
        }
        /* the reference: plain bf16 GEMM, operands from the random pool
         * (bf16 bit patterns of random bytes include NaN/Inf: mask them to
         * finite values first) */
        if (gscr) {
            size_t n_el = (NMAX * KMAX + (size_t)M * KMAX);
            uint16_t *h = malloc(n_el * 2);
            uint64_t r = 0x2545F4914F6CDD1Dull;
            for (size_t i = 0; i < n_el; i++) {
                r ^= r >> 12; r ^= r << 25; r ^= r >> 27;
                uint16_t v = (uint16_t)((r * 2685821657736338717ull) >> 48);
                h[i] = (uint16_t)((v & 0x80ff) | 0x3c00); /* finite, magnitude 2^-7 .. 2^-5 */
            }
            char *ab;
            CK(cudaMalloc((void **)&ab, n_el * 2));
            CK(cudaMemcpy(ab, h, n_el * 2, cudaMemcpyHostToDevice));
            free(h);
            size_t rs[2][2] = {{14336, 4096}, {4096, 14336}};
            for (int si = 0; si < 2; si++) {
                g_plain_a = ab;
                g_plain_b = ab + (size_t)M * KMAX * 2;
                job j = {&pf[0], ym, xm, pool, rs[si][0], rs[si][1], 0, 1};
                float ms = time_graph(s, &j, 3, NULL, NULL, 0);
                double tf = 2.0 * (double)M * (double)rs[si][0] * (double)rs[si][1] / ((double)ms * 1e-3) / 1e12;
                printf("bf16 GEMM reference (cuBLAS, bf16 in, f32 out) M=%lld N=%zu K=%zu: %.1f us = %.1f TFLOP/s\n",
                       (long long)M, rs[si][0], rs[si][1], (double)ms * 1e3, tf);
            }
            CK(cudaFree(ab));
        }
        g_M = 1;
        if (gscr) CK(cudaFree(gscr));
        CK(cudaFree(xm));
        CK(cudaFree(ym));
    }
    CK(cudaFree(pool));
    CK(cudaFree(x));
    CK(cudaFree(y));
    CK(cudaStreamDestroy(s));
    return 0;
}
#endif
