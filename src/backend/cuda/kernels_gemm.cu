/*
 * kernels_gemm.cu — prefill-sized matmuls (M >= GEMM_MIN = 16 rows) through
 * cuBLAS: out[M, N] = x[M, K] * W[N, K]^T with
 *   1. x (f32) rounded to bf16 into scratch,
 *   2. W decoded to bf16 into scratch (one pass of the quant.cuh decoders;
 *      bf16 W with 16-byte rows is used in place),
 *   3. cublasGemmEx, bf16 operands, f32 accumulation and f32 output.
 * W is decoded in chunks of rows so that a chunk stays under GEMM_WCAP bytes
 * (every Llama-8B layer matrix is one chunk; a full-vocabulary head is cut).
 *
 * Why: the custom bf16 mma.sync kernels (kernels_matmul.cu) reached ~90
 * TFLOP/s at M = 512 with W decoded per tile; cuBLAS's Hopper kernels run
 * the product at ~670 TFLOP/s, and the decode pass moves ~2.6 bytes per
 * 4-bit weight once. Measured on an H100 at M = 512 (bench/RESULTS.md):
 * MLX 4-bit 14336 x 4096 687 -> 145 us (decode ~57 us, GEMM ~88 us).
 *
 * One cuBLAS handle per device, made by mlxn_cu_blas_init at device init
 * (outside any stream capture); a launch sets the node's stream and a
 * workspace inside the node's scratch, so the captured GEMM never allocates
 * and two nodes never share a workspace. Handle calls are serialized by a
 * mutex (a handle is not safe to use from two host threads at once).
 * MLXN_CU_BLAS=0 turns the path off (the bf16 tile kernels run instead).
 */
#include "backend/cuda/quant.cuh"

#include <cublas_v2.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

/* rows of x from which the cuBLAS path runs. Measured on an H100 (mlx4
 * 14336 x 4096, bench/RESULTS.md): ~100 us at M = 16 .. 128 (the decode of
 * W dominates) against 240-580 us for the TF32 / bf16 tile kernels; M <= 8
 * stays on the decode kernels, 9 .. 15 on the TF32 tiles. */
#define GEMM_MIN 16
/* Bytes of decoded W per chunk. Each prefill graph holds its GEMMs'
 * scratch (workspace + bf16 x + a W chunk) while cached, which the driver
 * counts: NVIDIA H200, 8B q4 g64, `bench -p 512 -n 128`, 128 / 64 / 32 MiB:
 * prefill graph scratch 350.0 / 253.0 / 189.5 MiB, device memory taken
 * (driver) weights + KV + 11.0 / 8.8 / 7.3 %, pp512 23749 / 23668 / 22529
 * tok/s. 64 keeps issue #5's +10 % at the same prefill rate.
 * MLXN_CU_WCAP_MB=N sets it for measuring. */
#define GEMM_WCAP ((int64_t)64 << 20)
#define GEMM_WS ((size_t)32 << 20)    /* cuBLAS workspace per node (NVIDIA's advice for Hopper) */
#define BLAS_MAXDEV 64

static pthread_mutex_t blas_mu = PTHREAD_MUTEX_INITIALIZER;
static cublasHandle_t blas_h[BLAS_MAXDEV];
static int blas_refs[BLAS_MAXDEV];

static bool blas_env_on(void) {
    static int m = -1;
    if (m < 0) {
        const char *e = getenv("MLXN_CU_BLAS");
        m = e && *e ? *e != '0' : 1;
    }
    return m == 1;
}

extern "C" int mlxn_cu_blas_init(int ordinal, char *msg, size_t len) {
    if (!blas_env_on()) return 0;
    if (ordinal < 0 || ordinal >= BLAS_MAXDEV) {
        snprintf(msg, len, "cuda: device %d past the cuBLAS handle table (%d)", ordinal, BLAS_MAXDEV);
        return 1;
    }
    pthread_mutex_lock(&blas_mu);
    int rc = 0;
    if (!blas_h[ordinal]) {
        cublasHandle_t h = NULL;
        cublasStatus_t st = cublasCreate(&h);
        if (st != CUBLAS_STATUS_SUCCESS) {
            snprintf(msg, len, "cuda: cublasCreate on device %d failed: %s", ordinal, cublasGetStatusString(st));
            cudaGetLastError();
            rc = 1;
        } else {
            blas_h[ordinal] = h;
        }
    }
    if (!rc) blas_refs[ordinal]++;
    pthread_mutex_unlock(&blas_mu);
    return rc;
}

extern "C" void mlxn_cu_blas_release(int ordinal) {
    if (ordinal < 0 || ordinal >= BLAS_MAXDEV) return;
    pthread_mutex_lock(&blas_mu);
    if (blas_refs[ordinal] > 0 && --blas_refs[ordinal] == 0 && blas_h[ordinal]) {
        cublasDestroy(blas_h[ordinal]);
        blas_h[ordinal] = NULL;
        cudaGetLastError();
    }
    pthread_mutex_unlock(&blas_mu);
}

/* The current device's handle, or NULL (path off, or no handle made). */
static cublasHandle_t blas_cur(void) {
    if (!blas_env_on()) return NULL;
    int dev = 0;
    if (cudaGetDevice(&dev) != cudaSuccess || dev < 0 || dev >= BLAS_MAXDEV) {
        cudaGetLastError();
        return NULL;
    }
    pthread_mutex_lock(&blas_mu);
    cublasHandle_t h = blas_h[dev];
    pthread_mutex_unlock(&blas_mu);
    return h;
}

/* ---- the weight, whatever its format ---- */
typedef struct gemm_w {
    int wt;           /* mlxn_dtype, or -1 for MLX affine */
    const void *w;    /* data (MLX: packed u32 words) */
    const void *scales, *biases;
    int sdt, bits, gshift;
} gemm_w;

static size_t row_bytes_of(int wt, int64_t K) {
    return (size_t)K / mlxn_dtype_block_elems((mlxn_dtype)wt) * mlxn_dtype_block_bytes((mlxn_dtype)wt);
}

/* bf16 W used in place: rows of whole 16-byte units (cuBLAS's fast kernels
 * want aligned leading dimensions) */
static bool w_in_place(const gemm_w *g, int64_t K) {
    return g->wt == MLXN_BF16 && K % 8 == 0 && ((uintptr_t)g->w & 15) == 0;
}

/* Whether the decoders take this W (their 16-byte loads). */
static bool w_decodable(const gemm_w *g, int64_t K) {
    if (g->wt < 0) {
        bool bits_ok = (g->bits >= 2 && g->bits <= 6) || g->bits == 8;
        return bits_ok && g->gshift >= 5 && g->gshift <= 7 && K % ((int64_t)1 << g->gshift) == 0;
    }
    if (((uintptr_t)g->w & 15) != 0) return false;
    switch (g->wt) {
    case MLXN_F32:
    case MLXN_F16:
    case MLXN_BF16: return K % 8 == 0;
    case MLXN_Q4_0:
    case MLXN_Q4_1:
    case MLXN_Q8_0:
    case MLXN_Q4_K:
    case MLXN_Q5_K:
    case MLXN_Q6_K: return true;
    default: return false;
    }
}

/* GEMM_WCAP, or MLXN_CU_WCAP_MB (a measuring switch) */
static int64_t wcap(void) {
    static int64_t v = -1;
    if (v < 0) {
        const char *e = getenv("MLXN_CU_WCAP_MB");
        v = e && atoi(e) > 0 ? (int64_t)atoi(e) << 20 : GEMM_WCAP;
    }
    return v;
}

static int64_t chunk_rows(int64_t N, int64_t K) {
    int64_t c = wcap() / (K * 2);
    c = c / 128 * 128;
    if (c < 128) c = 128;
    return c < N ? c : N;
}

static size_t al256(size_t b) { return (b + 255) & ~(size_t)255; }

/* Scratch layout: [workspace GEMM_WS][x bf16 M*K][W bf16 chunk*K]. */
static size_t gemm_scratch(const gemm_w *g, int64_t M, int64_t N, int64_t K) {
    if (M < GEMM_MIN || !blas_cur() || !w_decodable(g, K)) return 0;
    if (M > INT32_MAX || N > INT32_MAX || K > INT32_MAX) return 0;
    size_t b = GEMM_WS + al256((size_t)(M * K) * 2);
    if (!w_in_place(g, K)) b += al256((size_t)(chunk_rows(N, K) * K) * 2);
    return b;
}

/* ---- kernels ---- */

/* x f32 [n] -> bf16 (round to nearest even), 4 elements a thread where
 * aligned */
__global__ void k_f32_to_bf16(__nv_bfloat16 *__restrict__ o, const float *__restrict__ x, int64_t n, bool vec) {
    int64_t i = ((int64_t)blockIdx.x * blockDim.x + threadIdx.x) * 4;
    if (i >= n) return;
    if (vec && i + 4 <= n) {
        float4 v = __ldg((const float4 *)(x + i));
        __nv_bfloat162 a = __floats2bfloat162_rn(v.x, v.y), b = __floats2bfloat162_rn(v.z, v.w);
        uint2 u = {*(uint32_t *)&a, *(uint32_t *)&b};
        *(uint2 *)(o + i) = u;
    } else {
        for (int64_t k = i; k < n && k < i + 4; k++) o[k] = __float2bfloat16_rn(x[k]);
    }
}

/* rows [n0, n0 + rows) of W -> bf16 [rows, K]; one thread a decoder unit.
 * The output of a warp's 32 consecutive units is one contiguous range (rows
 * are K long in W's unit order and in the output), so units of more than 8
 * elements are staged in shared memory (each unit's 16-byte pieces padded by
 * one, so the 8 lanes of a store phase hit distinct banks) and written back
 * by the warp in coalesced 16-byte stores: a lane writing its own unit's
 * 64 or 128 bytes instead sends 32 scattered pieces a store instruction
 * (measured ~1.6 TB/s for MLX 4-bit that way on an H100). */
template <class F>
__global__ void __launch_bounds__(256) k_dequant_bf16(F f, __nv_bfloat16 *__restrict__ o, int64_t n0, int64_t rows,
                                                      int64_t K) {
    static_assert(F::U % 8 == 0, "units of whole 16-byte bf16 stores");
    constexpr int V = F::U / 8, SV = V > 1 ? V + 1 : 1; /* 16-byte pieces a unit; staged stride */
    __shared__ uint4 st[V > 1 ? 8 : 1][V > 1 ? 32 * SV : 1];
    int64_t upr = K / F::U, total = rows * upr;
    int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    int64_t base = ((int64_t)blockIdx.x * 8 + warp) * 32, i = base + lane;
    if (base >= total) return; /* whole warps only: the staging below needs all lanes */
    uint4 p[V];
    if (i < total) {
        int64_t r = i / upr, u = i - r * upr;
        float v[F::U];
        f.decode(n0 + r, u, v);
#pragma unroll
        for (int j = 0; j < V; j++) {
            __nv_bfloat162 a = __floats2bfloat162_rn(v[8 * j], v[8 * j + 1]);
            __nv_bfloat162 b = __floats2bfloat162_rn(v[8 * j + 2], v[8 * j + 3]);
            __nv_bfloat162 c = __floats2bfloat162_rn(v[8 * j + 4], v[8 * j + 5]);
            __nv_bfloat162 d = __floats2bfloat162_rn(v[8 * j + 6], v[8 * j + 7]);
            p[j] = make_uint4(*(uint32_t *)&a, *(uint32_t *)&b, *(uint32_t *)&c, *(uint32_t *)&d);
        }
    }
    uint4 *dst = (uint4 *)o + base * V;
    if (V == 1) {
        if (i < total) dst[lane] = p[0];
        return;
    }
    uint4 *sw = st[warp];
    if (i < total)
#pragma unroll
        for (int j = 0; j < V; j++) sw[lane * SV + j] = p[j];
    __syncwarp();
    int n = (int)((total - base < 32 ? total - base : 32) * V);
    for (int k = lane; k < n; k += 32) dst[k] = sw[(k / V) * SV + k % V];
}

template <class F>
static cudaError_t dequant(const F &f, __nv_bfloat16 *o, int64_t n0, int64_t rows, int64_t K, cudaStream_t s) {
    int64_t n = rows * (K / F::U);
    k_dequant_bf16<F><<<cu_blocks(n, 256), 256, 0, s>>>(f, o, n0, rows, K);
    CU_LAUNCH_CHECK();
    return cudaSuccess;
}

/* MLX 4 and 8 bits: one thread per 8 elements (one 16-byte bf16 store,
 * one 4- or 8-byte load of the packed words), so loads and stores are
 * coalesced across the warp; rows of K elements are contiguous in both W
 * and the output, so element e = 8 i of the chunk sits in word i * B / 4 and
 * group e >> gshift. Same values as DecMlx (s * q + b, one fmaf). The generic
 * k_dequant_bf16 (a thread per 32-element unit, 64-byte stores) measured
 * ~1.6 TB/s on an H100 for 4-bit; this layout aims at the copy rate. */
template <int B, int SDT>
__global__ void __launch_bounds__(256) k_dequant_mlx(const uint32_t *__restrict__ wq, const void *__restrict__ sc,
                                                     const void *__restrict__ bi, uint4 *__restrict__ o, int64_t n8,
                                                     int gshift) {
    int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n8) return;
    uint32_t w0, w1 = 0;
    if (B == 4) {
        w0 = __ldg(wq + i);
    } else {
        uint2 v = __ldg((const uint2 *)wq + i);
        w0 = v.x;
        w1 = v.y;
    }
    int64_t gi = (i * 8) >> gshift;
    float s = cu_ld<SDT>(sc, gi), b = cu_ld<SDT>(bi, gi);
    float y[8];
#pragma unroll
    for (int j = 0; j < 8; j++) {
        uint32_t q = B == 4 ? (w0 >> (4 * j)) & 15u : ((j < 4 ? w0 : w1) >> (8 * (j & 3))) & 255u;
        y[j] = fmaf(s, u2f(q, 0.0f), b);
    }
    __nv_bfloat162 a0 = __floats2bfloat162_rn(y[0], y[1]), a1 = __floats2bfloat162_rn(y[2], y[3]);
    __nv_bfloat162 a2 = __floats2bfloat162_rn(y[4], y[5]), a3 = __floats2bfloat162_rn(y[6], y[7]);
    o[i] = make_uint4(*(uint32_t *)&a0, *(uint32_t *)&a1, *(uint32_t *)&a2, *(uint32_t *)&a3);
}

template <int B>
static cudaError_t dequant_mlx(const gemm_w *g, __nv_bfloat16 *o, int64_t n0, int64_t rows, int64_t K,
                               cudaStream_t s) {
    const uint32_t *wq = (const uint32_t *)g->w + n0 * (K * B / 32);
    int64_t g0 = n0 * (K >> g->gshift), n8 = rows * K / 8;
    size_t es = g->sdt == MLXN_F32 ? 4 : 2;
    const void *sc = (const char *)g->scales + g0 * es, *bi = (const char *)g->biases + g0 * es;
    unsigned nb = cu_blocks(n8, 256);
    if (g->sdt == MLXN_F32) k_dequant_mlx<B, MLXN_F32><<<nb, 256, 0, s>>>(wq, sc, bi, (uint4 *)o, n8, g->gshift);
    else if (g->sdt == MLXN_F16) k_dequant_mlx<B, MLXN_F16><<<nb, 256, 0, s>>>(wq, sc, bi, (uint4 *)o, n8, g->gshift);
    else k_dequant_mlx<B, MLXN_BF16><<<nb, 256, 0, s>>>(wq, sc, bi, (uint4 *)o, n8, g->gshift);
    CU_LAUNCH_CHECK();
    return cudaSuccess;
}

static cudaError_t dequant_w(const gemm_w *g, __nv_bfloat16 *o, int64_t n0, int64_t rows, int64_t K, cudaStream_t s) {
    if (g->wt < 0 && g->bits == 4 && ((uintptr_t)g->w & 3) == 0) return dequant_mlx<4>(g, o, n0, rows, K, s);
    if (g->wt < 0 && g->bits == 8 && ((uintptr_t)g->w & 7) == 0) return dequant_mlx<8>(g, o, n0, rows, K, s);
    if (g->wt < 0) {
        const uint32_t *wq = (const uint32_t *)g->w;
        switch (g->bits) {
#define MLX_CASE(B) \
    case B: return dequant(DecMlx<B>{wq, g->scales, g->biases, g->sdt, g->gshift, K}, o, n0, rows, K, s);
            MLX_CASE(2) MLX_CASE(3) MLX_CASE(4) MLX_CASE(5) MLX_CASE(6) MLX_CASE(8)
#undef MLX_CASE
        default: return cudaErrorInvalidValue;
        }
    }
    const uint8_t *wb = (const uint8_t *)g->w;
    int64_t rb = (int64_t)row_bytes_of(g->wt, K);
    switch (g->wt) {
    case MLXN_F32: return dequant(DecF32{wb, rb}, o, n0, rows, K, s);
    case MLXN_F16: return dequant(DecHalf<false>{wb, rb}, o, n0, rows, K, s);
    case MLXN_BF16: return dequant(DecHalf<true>{wb, rb}, o, n0, rows, K, s);
    case MLXN_Q4_0: return dequant(DecQ4_0{wb, rb}, o, n0, rows, K, s);
    case MLXN_Q4_1: return dequant(DecQ4_1{wb, rb}, o, n0, rows, K, s);
    case MLXN_Q8_0: return dequant(DecQ8_0{wb, rb}, o, n0, rows, K, s);
    case MLXN_Q4_K: return dequant(DecQK45<false>{wb, rb}, o, n0, rows, K, s);
    case MLXN_Q5_K: return dequant(DecQK45<true>{wb, rb}, o, n0, rows, K, s);
    case MLXN_Q6_K: return dequant(DecQ6K{wb, rb}, o, n0, rows, K, s);
    default: return cudaErrorInvalidValue;
    }
}

static cudaError_t blas_err(cublasStatus_t st) {
    switch (st) {
    case CUBLAS_STATUS_SUCCESS: return cudaSuccess;
    case CUBLAS_STATUS_ALLOC_FAILED: return cudaErrorMemoryAllocation;
    case CUBLAS_STATUS_NOT_SUPPORTED:
    case CUBLAS_STATUS_ARCH_MISMATCH: return cudaErrorNotSupported;
    case CUBLAS_STATUS_INVALID_VALUE: return cudaErrorInvalidValue;
    default: return cudaErrorUnknown;
    }
}

/* y[M, N] (row-major, f32) = xb[M, K] * wb[nc, K]^T for columns [n0, n0+nc).
 * Column-major view: y^T (N x M, ld N) = Wb^T^T x^T, i.e. op(A) = T on the
 * K x nc matrix wb, op(B) = N on the K x M matrix xb. */
static cudaError_t gemm_bf16(cublasHandle_t h, float *y, const __nv_bfloat16 *xb, const __nv_bfloat16 *wb,
                             int64_t M, int64_t N, int64_t K, int64_t n0, int64_t nc, void *ws, cudaStream_t s) {
    const float one = 1.0f, zero = 0.0f;
    pthread_mutex_lock(&blas_mu);
    cublasStatus_t st = cublasSetStream(h, s);
    if (st == CUBLAS_STATUS_SUCCESS) st = cublasSetWorkspace(h, ws, GEMM_WS);
    if (st == CUBLAS_STATUS_SUCCESS)
        st = cublasGemmEx(h, CUBLAS_OP_T, CUBLAS_OP_N, (int)nc, (int)M, (int)K, &one, wb, CUDA_R_16BF, (int)K, xb,
                          CUDA_R_16BF, (int)K, &zero, y + n0, CUDA_R_32F, (int)N, CUBLAS_COMPUTE_32F,
                          CUBLAS_GEMM_DEFAULT);
    pthread_mutex_unlock(&blas_mu);
    return blas_err(st);
}

static cudaError_t gemm_run(const gemm_w *g, float *y, const float *x, int64_t M, int64_t N, int64_t K, void *scratch,
                            cudaStream_t s) {
    cublasHandle_t h = blas_cur();
    if (!h || !scratch) return cudaErrorInvalidValue;
    char *p = (char *)scratch;
    void *ws = p;
    __nv_bfloat16 *xb = (__nv_bfloat16 *)(p + GEMM_WS);
    __nv_bfloat16 *wb = (__nv_bfloat16 *)(p + GEMM_WS + al256((size_t)(M * K) * 2));
    int64_t nx = M * K;
    k_f32_to_bf16<<<cu_blocks((nx + 3) / 4, 256), 256, 0, s>>>(xb, x, nx, ((uintptr_t)x & 15) == 0);
    CU_LAUNCH_CHECK();
    if (w_in_place(g, K)) return gemm_bf16(h, y, xb, (const __nv_bfloat16 *)g->w, M, N, K, 0, N, ws, s);
    int64_t cr = chunk_rows(N, K);
    for (int64_t n0 = 0; n0 < N; n0 += cr) {
        int64_t nc = N - n0 < cr ? N - n0 : cr;
        cudaError_t e = dequant_w(g, wb, n0, nc, K, s);
        if (e == cudaSuccess) e = gemm_bf16(h, y, xb, wb, M, N, K, n0, nc, ws, s);
        if (e != cudaSuccess) return e;
    }
    return cudaSuccess;
}

static bool node_w(const cu_node *n, gemm_w *g) {
    const cu_tensor *t = n->t;
    memset(g, 0, sizeof *g);
    if (n->f32_act) return false; /* f32-activation sessions keep the f32 (TF32) path */
    if (n->op == CU_OP_MATMUL) {
        g->wt = t[2].dtype;
        g->w = t[2].data;
        return true;
    }
    if (n->op != CU_OP_MATMUL_MLX) return false;
    int gs = n->mlx.group_size;
    g->wt = -1;
    g->w = t[2].data;
    g->scales = t[3].data;
    g->biases = t[4].data;
    g->sdt = t[3].dtype;
    g->bits = n->mlx.bits;
    g->gshift = gs == 32 ? 5 : gs == 64 ? 6 : gs == 128 ? 7 : -1;
    return g->gshift > 0;
}

extern "C" size_t mlxn_cu_gemm_node_scratch(const cu_node *n) {
    gemm_w g;
    if (!node_w(n, &g)) return 0;
    return gemm_scratch(&g, n->t[1].rows, n->t[2].shape[0], n->t[1].cols);
}

extern "C" cudaError_t mlxn_cu_gemm(const cu_node *n, void *scratch, cudaStream_t s) {
    gemm_w g;
    if (!node_w(n, &g)) return cudaErrorInvalidValue;
    const cu_tensor *t = n->t;
    return gemm_run(&g, (float *)t[0].data, (const float *)t[1].data, t[1].rows, t[2].shape[0], t[1].cols, scratch,
                    s);
}

/* ---- standalone entry points (bench/cuda_bench.c) ---- */

extern "C" size_t mlxn_cu_gemm_scratch(int wt, int bits, int64_t M, int64_t N, int64_t K) {
    /* the size depends on the format only: a stand-in aligned address, MLX group 64 */
    gemm_w g = {wt, (const void *)(uintptr_t)16, NULL, NULL, MLXN_F16, bits, 6};
    return gemm_scratch(&g, M, N, K);
}

extern "C" cudaError_t mlxn_cu_gemm_raw(float *y, const float *x, const void *w, int wt, int64_t M, int64_t N,
                                        int64_t K, void *scratch, cudaStream_t s) {
    gemm_w g = {wt, w, NULL, NULL, 0, 0, 0};
    return gemm_run(&g, y, x, M, N, K, scratch, s);
}

extern "C" cudaError_t mlxn_cu_gemm_mlx_raw(float *y, const float *x, const uint32_t *wq, const void *scales,
                                            const void *biases, int sdt, int bits, int group, int64_t M, int64_t N,
                                            int64_t K, void *scratch, cudaStream_t s) {
    int gshift = group == 32 ? 5 : group == 64 ? 6 : group == 128 ? 7 : -1;
    if (gshift < 0) return cudaErrorInvalidValue;
    gemm_w g = {-1, wq, scales, biases, sdt, bits, gshift};
    return gemm_run(&g, y, x, M, N, K, scratch, s);
}

/* The reference rate: a plain bf16 GEMM y[M, N] f32 = a[M, K] b[N, K]^T on
 * device bf16 operands, nothing decoded. ws: GEMM_WS bytes. */
extern "C" cudaError_t mlxn_cu_gemm_bf16_plain(float *y, const void *a, const void *b, int64_t M, int64_t N,
                                               int64_t K, void *ws, cudaStream_t s) {
    cublasHandle_t h = blas_cur();
    if (!h) return cudaErrorInvalidValue;
    return gemm_bf16(h, y, (const __nv_bfloat16 *)a, (const __nv_bfloat16 *)b, M, N, K, 0, N, ws, s);
}

extern "C" size_t mlxn_cu_gemm_workspace(void) { return GEMM_WS; }
