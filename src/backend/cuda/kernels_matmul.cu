/*
 * kernels_matmul.cu — out[M, N] = x[M, K] * W[N, K]^T for every weight
 * format (dense f32/f16/bf16, GGML blocks, MLX affine), and the gathers
 * (get_rows, get_rows_mlx) that share the decoders of quant.cuh.
 *
 *  - M <= 8 (decode): k_mmv, one warp per output row, lanes stride over
 *    units of the row, f32 accumulation, one pass over W for all M rows.
 *    Memory-bound: the goal is HBM bandwidth on W.
 *  - M > 8: k_mm_tiled, 64x64 output tiles; W tiles are decoded into shared
 *    memory once per tile and reused by 64 rows of x; TF32 tensor cores.
 *  - Dense W whose rows are not 16-byte aligned: k_mm_scalar (reference-
 *    speed fallback).
 */
#include "backend/cuda/quant.cuh"

#include <cooperative_groups.h>
namespace cg = cooperative_groups;

#include <mma.h>
#include <stdio.h>
#include <stdlib.h>

using namespace nvcuda;

#define MMV_WARPS 4

template <class F, int MB>
__global__ void __launch_bounds__(MMV_WARPS * 32) k_mmv(F f, float *__restrict__ y, const float *__restrict__ x,
                                                        int M, int64_t N, int64_t K) {
    cu_pdl_enter();
    int64_t n = (int64_t)blockIdx.x * MMV_WARPS + (threadIdx.x >> 5);
    int lane = threadIdx.x & 31;
    if (n >= N) return;
    float acc[MB];
#pragma unroll
    for (int m = 0; m < MB; m++) acc[m] = 0.0f;
    int64_t nu = K / F::U;
#pragma unroll 2
    for (int64_t u = lane; u < nu; u += 32) {
        float w[F::U];
        f.decode(n, u, w);
#pragma unroll
        for (int m = 0; m < MB; m++) {
            if (m < M) {
                const float4 *xp = (const float4 *)(x + m * K + u * F::U);
                float a = 0.0f;
#pragma unroll
                for (int j = 0; j < F::U / 4; j++) {
                    float4 xv = __ldg(xp + j);
                    a = fmaf(w[4 * j], xv.x, a);
                    a = fmaf(w[4 * j + 1], xv.y, a);
                    a = fmaf(w[4 * j + 2], xv.z, a);
                    a = fmaf(w[4 * j + 3], xv.w, a);
                }
                acc[m] += a;
            }
        }
    }
#pragma unroll
    for (int m = 0; m < MB; m++) {
        float v = cu_warp_sum(acc[m]);
        if (lane == 0 && m < M) y[m * N + n] = v;
    }
}

/* M = 1 with x staged in shared memory: lane l works on units l, l+32, ...
 * and reads x of its unit from shared memory laid out with one float4 of
 * padding per unit, so the 8 lanes of each 128-bit phase hit distinct banks
 * (reading x straight from global memory at a stride of U*4 bytes per lane
 * costs one L1 wavefront per lane and was the bottleneck). Each warp does R
 * rows so one x read from shared memory serves R weight rows. */
#define MMVS_WARPS 8
#define MMVS_MAX_SMEM (200 * 1024)

template <class F, int R>
__global__ void __launch_bounds__(MMVS_WARPS * 32) k_mmv_s(F f, float *__restrict__ y, const float *__restrict__ x,
                                                           int64_t N, int64_t K) {
    cu_pdl_enter();
    extern __shared__ float4 xs[];
    constexpr int Q = F::U / 4, S = Q + 1;
    int64_t nu = K / F::U;
    const float4 *x4 = (const float4 *)x;
    for (int64_t i = threadIdx.x; i < K / 4; i += blockDim.x) xs[(i / Q) * S + (i % Q)] = __ldg(x4 + i);
    __syncthreads();
    int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    int64_t n0 = ((int64_t)blockIdx.x * MMVS_WARPS + warp) * R;
    if (n0 >= N) return;
    float acc[R];
#pragma unroll
    for (int r = 0; r < R; r++) acc[r] = 0.0f;
#pragma unroll 2
    for (int64_t u = lane; u < nu; u += 32) {
        float w[R][F::U];
#pragma unroll
        for (int r = 0; r < R; r++) f.decode(n0 + r < N ? n0 + r : N - 1, u, w[r]);
        const float4 *xp = xs + u * S;
#pragma unroll
        for (int j = 0; j < Q; j++) {
            float4 xv = xp[j];
#pragma unroll
            for (int r = 0; r < R; r++) {
                acc[r] = fmaf(w[r][4 * j], xv.x, acc[r]);
                acc[r] = fmaf(w[r][4 * j + 1], xv.y, acc[r]);
                acc[r] = fmaf(w[r][4 * j + 2], xv.z, acc[r]);
                acc[r] = fmaf(w[r][4 * j + 3], xv.w, acc[r]);
            }
        }
    }
#pragma unroll
    for (int r = 0; r < R; r++) {
        float v = cu_warp_sum(acc[r]);
        if (lane == 0 && n0 + r < N) y[n0 + r] = v;
    }
}

/* Launch k_mmv_s when its shared memory fits; false = use another path. */
template <class F, int R>
static bool try_mmv_s(const F &f, float *y, const float *x, int64_t N, int64_t K, cudaStream_t s, cudaError_t *err) {
    size_t smem = (size_t)(K / F::U) * (F::U / 4 + 1) * 16;
    if (smem > MMVS_MAX_SMEM) return false;
    static bool raised = false; /* per instantiation */
    if (!raised) {
        cudaError_t e = cudaFuncSetAttribute(k_mmv_s<F, R>, cudaFuncAttributeMaxDynamicSharedMemorySize, MMVS_MAX_SMEM);
        if (e != cudaSuccess) {
            *err = e;
            return true;
        }
        raised = true;
    }
    cu_launch(k_mmv_s<F, R>, cu_blocks(N, MMVS_WARPS * R), MMVS_WARPS * 32, smem, s, f, y, x, N, K);
    *err = cudaGetLastError();
    return true;
}

/* x f32 [K] -> int8 blocks of 32 (layout in quant.cuh), one warp a block;
 * y [N] (NULL: none) zeroed, for a matmul that adds into it (k_q4kg). */
__global__ void k_quant_x(uint4 *xq, const float *x, int64_t nb, float *y, int64_t N) {
    cu_pdl_enter();
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < N; i += (int64_t)gridDim.x * blockDim.x)
        y[i] = 0.0f;
    int64_t b = (int64_t)blockIdx.x * 8 + (threadIdx.x >> 5);
    int lane = threadIdx.x & 31;
    if (b >= nb) return;
    xq_store((uint8_t *)xq, b, lane, x[b * 32 + lane]);
}

/* The norm between two one-row integer-path matmuls (mm1 -> add_rms_norm ->
 * mm2, as o-projection -> norm -> gate/up in decode), run by the two matmul
 * kernels (k_mlx4g or k_q4kg on each side; mlxn_cu_epi_ok) instead of a kernel of
 * its own (mlxn_cu_launch_mm_ready with a cu_epi). The int8 codes of x =
 * s·rs·w (s = h + y1, rs = 1/sqrt(mean s² + eps)) do not depend on rs,
 * which only scales each 32-block's d: so mm1 writes the codes of s·w and
 * every 32-block's Σ s², and mm2 takes rs from those partial sums and
 * multiplies its row sums by it.
 * Epi (mm1 side; xg NULL: off): each row's value is whole in one warp (R
 * rows a warp, one warp for each R rows, W = N / R, picked by
 * mlx4g_epi_plan or q4kg_epi_rows), and the blocks of each 32 rows form a thread block
 * cluster: they store their rows (no add) and hand them to the cluster's
 * first block through distributed shared memory; after the cluster barrier
 * that block's first warp adds h (read right after the wait), writes s
 * (sum), the 32-block's codes (xg, in mm2's layout xl) and Σ s² (ssp).
 * Every block zeroes y2, mm2's output, when mm2 adds partial sums into it
 * (k_mlx4g, k_q4kg: mlxn_cu_xl_zeroes).
 * Measured on an H100 (bench/RESULTS.md) against the last of the four blocks
 * (a counter) doing it from global memory: that took three L2 round trips at
 * the kernel's end, each queued behind the next kernel's weight loads (+3.8
 * us a call, no gain over the norm kernel); and against every block of mm2
 * quantizing x from the sum row itself: 10 % slower decode. */
struct MmEpi {
    const float *h;
    float *sum;
    const void *w; /* norm weight, or NULL */
    int wdt;
    uint8_t *xg;
    int xl; /* xg's layout: mm2's (XL_G or XL_QZ) */
    float *ssp;
    float *y2; /* or NULL */
    int64_t n2;
};
#define EPI_MAX_K 8192 /* K of mm2 (= N of mm1) */
/* k_mlx4g's Epi: blocks of 8 R rows a cluster, 32 rows (a 32-block of x) */
#define EPI_CLUSTER(R) (4 / (R))
/* Rs (mm2 side; ssp NULL: off): rs from the K/32 partial sums in ssp; the
 * norm's f32 output out = sum·rs·w is written here as well (the graph may
 * read it). */
struct MmRs {
    const float *ssp;
    float eps;
    const float *sum;
    const void *w;
    int wdt;
    float *out;
};

#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900 /* used with clusters only */
/* Epi: the first warp of a cluster's first block, for 32-block g of the
 * norm: yv = row 32 g + lane of mm1's output, hv and wv the residual and
 * norm weight there. */
static __device__ __forceinline__ void epi_block(const MmEpi &ep, int64_t g, int lane, float hv, float wv, float yv) {
    float sv = hv + yv;
    ep.sum[g * 32 + lane] = sv;
    float ss = cu_warp_sum(sv * sv);
    x_store(ep.xl, ep.xg, g, lane, sv * wv);
    if (lane == 0) ep.ssp[g] = ss;
}
#endif
/* MmRs: the norm factor from the sum t of the partial sums of squares. */
static __device__ __forceinline__ float mmrs_factor(const MmRs &rq, float t, int64_t K) {
    return (float)(1.0 / sqrt((double)t / (double)K + (double)rq.eps));
}

/* The norm's halves inside a persistent one-row kernel (k_mlx4g, k_q4kg),
 * after its wait on the producer. mm_rs_begin (rq.ssp set): every warp
 * sums the K/32 partial sums itself and returns rs (1 when off); the
 * threads of the first blocks write the norm's output, one element each,
 * its loads issued with the partials' (one round trip, not two). */
static __device__ __forceinline__ float mm_rs_begin(const MmRs &rq, int64_t K, int lane) {
    float rs = 1.0f;
    if (rq.ssp) {
        int64_t oi = (int64_t)blockIdx.x * 256 + threadIdx.x, ostep = (int64_t)gridDim.x * 256;
        float os = 0.0f, ow = 1.0f;
        if (rq.out && oi < K) {
            os = rq.sum[oi];
            if (rq.w) ow = cu_ld_rt(rq.w, rq.wdt, oi);
        }
        float t = 0.0f;
        for (int64_t i = lane; i < (K >> 5); i += 32) t += rq.ssp[i];
        t = cu_warp_sum(t);
        rs = mmrs_factor(rq, t, K);
        if (rq.out && oi < K) {
            float v = os * rs;
            if (rq.w) v *= ow;
            rq.out[oi] = v;
            for (int64_t i = oi + ostep; i < K; i += ostep) { /* grids of fewer than K threads */
                v = rq.sum[i] * rs;
                if (rq.w) v *= cu_ld_rt(rq.w, rq.wdt, i);
                rq.out[i] = v;
            }
        }
    }
    return rs;
}
/* mm_epi_begin (ep.xg set): every block zeroes its share of y2; the first
 * warp of a cluster's first block (clusters of EPI_CLUSTER(R) blocks of 8
 * warps, R rows a warp) reads h and w of row 32 g + lane into *hv, *wv. */
template <int R>
static __device__ __forceinline__ void mm_epi_begin(const MmEpi &ep, int warp, int lane, float *hv, float *wv) {
    if (!ep.xg) return;
    if (ep.y2)
        for (int64_t i = (int64_t)blockIdx.x * 256 + threadIdx.x; i < ep.n2; i += (int64_t)gridDim.x * 256)
            ep.y2[i] = 0.0f;
    if (warp == 0 && blockIdx.x % EPI_CLUSTER(R) == 0) {
        int64_t n = (int64_t)blockIdx.x * 8 * R + lane;
        *hv = ep.h[n];
        if (ep.w) *wv = cu_ld_rt(ep.w, ep.wdt, n);
    }
}
/* mm_epi_end: the block's rows 8 b R .. (8 b + 8) R - 1, lane 0 of each
 * warp holding its R row values in rowv, to the cluster's first block
 * (distributed shared memory), whose first warp then adds the norm's part
 * (epi_block). Launched on sm_90+ only. */
template <int R>
static __device__ __forceinline__ void mm_epi_end(const MmEpi &ep, int warp, int lane, const float *rowv, float hv,
                                                  float wv) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    if (ep.xg) {
        __shared__ float gy[32];
        cg::cluster_group cl = cg::this_cluster();
        if (lane == 0)
#pragma unroll
            for (int r = 0; r < R; r++) cl.map_shared_rank(gy, 0)[(cl.block_rank() * 8 + warp) * R + r] = rowv[r];
        cl.sync();
        if (cl.block_rank() == 0 && warp == 0) epi_block(ep, blockIdx.x / EPI_CLUSTER(R), lane, hv, wv, gy[lane]);
    }
#endif
}

/* A persistent kernel's R row sums of row group p done (acc, summed over
 * the warp here and cleared): lane 0 adds them into y, scaled by the
 * norm's factor rs, or with the Epi half (ep.xg; NM) stores them, its
 * warp holding the whole rows, and keeps them in rowv for mm_epi_end.
 * Without NM (no norm halves compiled in) it adds them as they are. */
template <int R, bool NM>
static __device__ __forceinline__ void mm_rows_out(float *acc, int64_t p, int64_t N, int lane, float *y,
                                                   const MmEpi &ep, float rs, float *rowv) {
#pragma unroll
    for (int r = 0; r < R; r++) {
        float v = cu_warp_sum(acc[r]);
        int64_t n = p * R + r;
        if (lane == 0 && n < N) {
            if (!NM) atomicAdd(y + n, v);
            else if (ep.xg) y[n] = rowv[r] = v; /* the row's only warp */
            else atomicAdd(y + n, v * rs);
        }
        acc[r] = 0.0f;
    }
}

/* One block of 8 warps = (8 / split) warp rows x `split` warps each, a
 * warp row being R rows (k_mmvq's R): warp (r, k) takes units k*32 + lane,
 * + 32*split, ... of its R rows, so a long row is cut into shorter
 * independent pieces (more loads in flight, fewer sequential iterations per
 * warp). split is the largest power of two <= 8 that leaves each lane at
 * least 4 / R units of each row (mmvq_split). The int8 x (a few KB) is read
 * through L1. */
#define MMVQ_WARPS 8
/* blocks of 256 threads an SM can hold: 8, but 6 on sm_86/87/89 (1536 threads) */
#if defined(__CUDA_ARCH__) && (__CUDA_ARCH__ == 860 || __CUDA_ARCH__ == 870 || __CUDA_ARCH__ == 890)
#define MMVQ_MAXB 6
#else
#define MMVQ_MAXB 8
#endif

/* R rows a warp (1 or 2; F::ROWS, run_mmvq): the lane's x block, loaded
 * once, serves the R rows' units at the same position (the compiler merges
 * the R identical x loads of the R dotq calls: ldx's plain loads through
 * the restrict pointer; checked in the PTX), so x crosses L1 once for R
 * rows. The register budget a row halves with R = 2. */
template <int MINB, int R>
struct MmvqBounds {
    static constexpr int v = (MINB < MMVQ_MAXB ? MINB : MMVQ_MAXB) / R > 0 ? (MINB < MMVQ_MAXB ? MINB : MMVQ_MAXB) / R : 1;
};
template <class F, int R>
__global__ void __launch_bounds__(MMVQ_WARPS * 32, (MmvqBounds<F::MINB, R>::v)) k_mmvq(F f, float *__restrict__ y, const uint4 *__restrict__ xq,
                                                          int64_t N, int64_t K, int split_log2, int pf) {
    __shared__ float part[MMVQ_WARPS * R];
    int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    int split = 1 << split_log2, rows = MMVQ_WARPS >> split_log2;
    int r = warp >> split_log2, ks = warp & (split - 1);
    int64_t n = ((int64_t)blockIdx.x * rows + r) * R;
    int64_t nn[R];
#pragma unroll
    for (int j = 0; j < R; j++) nn[j] = n + j < N ? n + j : N - 1;
    int64_t nu = K / F::U;
    float acc[R];
#pragma unroll
    for (int j = 0; j < R; j++) acc[j] = 0.0f;
    const int64_t st = 32 * split;
    int64_t u = ks * 32 + lane;
    if (pf) { /* the lane's first two units asked of L2 before the wait (weights: written by no kernel) */
#pragma unroll
        for (int j = 0; j < R; j++) {
            if (u < nu) asm volatile("prefetch.global.L2 [%0];" ::"l"(f.addr(nn[j], u)));
            if (R == 1 && u + st < nu) asm volatile("prefetch.global.L2 [%0];" ::"l"(f.addr(nn[j], u + st)));
        }
    }
    cu_pdl_enter();
    if (F::STEP4 && R == 1) {
        /* 4 (then 2) units per step with no branch between them, so all
         * their loads issue before the first result is needed (measured:
         * helps MLX 4-bit, costs the GGML formats occupancy) */
        for (; u + 3 * st < nu; u += 4 * st) {
            float a0 = f.dotq(nn[0], u, xq), a1 = f.dotq(nn[0], u + st, xq);
            float a2 = f.dotq(nn[0], u + 2 * st, xq), a3 = f.dotq(nn[0], u + 3 * st, xq);
            acc[0] += (a0 + a1) + (a2 + a3);
        }
        for (; u + st < nu; u += 2 * st) acc[0] += f.dotq(nn[0], u, xq) + f.dotq(nn[0], u + st, xq);
        if (u < nu) acc[0] += f.dotq(nn[0], u, xq);
    } else {
#pragma unroll 2
        for (; u < nu; u += st) {
#pragma unroll
            for (int j = 0; j < R; j++) acc[j] += f.dotq(nn[j], u, xq);
        }
    }
#pragma unroll
    for (int j = 0; j < R; j++) {
        float v = cu_warp_sum(acc[j]);
        if (lane == 0) part[warp * R + j] = v;
    }
    __syncthreads();
    if (threadIdx.x < rows * R) {
        int ri = threadIdx.x / R, j = threadIdx.x % R;
        int64_t row = ((int64_t)blockIdx.x * rows + ri) * R + j;
        float v = 0.0f;
        for (int k = 0; k < split; k++) v += part[(ri * split + k) * R + j];
        if (row < N) y[row] = v;
    }
}

/* Decode through int8 x and __dp4a; scratch holds the quantized x. */
/* k_mmvq's split (log2 warps a row) for rows of K elements in units of U,
 * R rows a warp: each lane keeps >= 4 / R units of each of its rows (H100 /
 * H200, bench/RESULTS.md: for one row, >= 4 best or equal for every format
 * and shape against >= 1 and >= 2; for two, >= 2 against >= 4). */
static int mmvq_split(int64_t K, int U, int R) {
    int64_t per_lane = (K / U) / 32;
    int sl = 0;
    while (sl < 3 && (((int64_t)8 / R) << sl) <= per_lane) sl++;
    return sl;
}
/* MLXN_CU_MMVQ_R=1 / 2: every format's k_mmvq at that many rows a warp
 * instead of its own F::ROWS (measuring); 0 when unset. */
static int mmvq_rows_env(void) {
    static int r = -1;
    if (r < 0) {
        const char *e = getenv("MLXN_CU_MMVQ_R");
        r = e && (atoi(e) == 1 || atoi(e) == 2) ? atoi(e) : 0;
    }
    return r;
}
template <class F>
static cudaError_t run_mmvq(const F &f, float *y, const float *x, int64_t N, int64_t K, void *scratch,
                            cudaStream_t s, bool x_ready = false) {
    int64_t nb = K / 32;
    uint4 *xq = (uint4 *)scratch;
    if (!x_ready) { /* else a fused producer wrote xq (mlxn_cu_launch_fused) */
        cu_launch(k_quant_x, cu_blocks(nb, 8), 256, 0, s, xq, x, nb, (float *)NULL, (int64_t)0);
        CU_LAUNCH_CHECK();
    }
    int sl = mmvq_split(K, F::U, 1);
    static int pf = -1; /* MLXN_CU_MMVQ_PF=0: no L2 prefetch before the wait (measuring) */
    if (pf < 0) pf = mlxn_cu_env_flag("MLXN_CU_MMVQ_PF", 1);
    if constexpr (!F::STEP4) { /* (4 units a step: one row a warp) */
        int R = mmvq_rows_env() ? mmvq_rows_env() : F::ROWS;
        if (R == 2) {
            sl = mmvq_split(K, F::U, 2);
            cu_launch(k_mmvq<F, 2>, cu_blocks(N, (MMVQ_WARPS >> sl) * 2), MMVQ_WARPS * 32, 0, s, f, y, xq, N, K, sl, pf);
            CU_LAUNCH_CHECK();
            return cudaSuccess;
        }
    }
    cu_launch(k_mmvq<F, 1>, cu_blocks(N, MMVQ_WARPS >> sl), MMVQ_WARPS * 32, 0, s, f, y, xq, N, K, sl, pf);
    CU_LAUNCH_CHECK();
    return cudaSuccess;
}

/* ---- MLX 4-bit, group 64 or 128, M = 1: a dedicated decode kernel ----
 * Lane work item = one 64-element group-unit of a row: 32 bytes of weights
 * (two 16-byte loads), one scale and one bias. x is int8 per 32 elements
 * (same rounding as k_quant_x), written by k_quant_x64 as 80 bytes per 64
 * elements: 64 int8 with each 8 reordered as e0 e2 e4 e6 e1 e3 e5 e7 (the
 * low / high nibbles of an MLX word are the even / odd elements, so no byte
 * permute is left in the inner loop), then {d0, d1, d0*sum0, d1*sum1} as
 * floats; each block copies it to shared memory (the 80-byte stride keeps 8
 * lanes' 128-bit reads on distinct banks). A warp's first two items of
 * weights are loaded before x is waited for: with programmatic dependent
 * launch (sm_90) the kernel starts while k_quant_x64 runs and
 * griddepcontrol.wait holds only the x copy.
 * Measured on H200 against this design (bench/RESULTS.md): quantizing x in
 * every block instead (no separate launch) is slower, 2x when done warp by
 * warp and still ~10 % with all loads issued at once; block-balanced ranges
 * with partials in shared memory, 4 items in flight, and L2 prefetch of the
 * next items were all slower. */
__global__ void k_quant_x64(uint8_t *xg, const float *x, int64_t nb, float *y, int64_t N) {
    cu_pdl_enter();
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < N; i += (int64_t)gridDim.x * blockDim.x)
        y[i] = 0.0f;
    int64_t b = (int64_t)blockIdx.x * 8 + (threadIdx.x >> 5);
    int lane = threadIdx.x & 31;
    if (b >= nb) return;
    xg_store(xg, b, lane, x[b * 32 + lane]);
}

template <int SDT, int R>
struct Mlx4Step {
    uint4 w[R][2];
    float s[R], b[R];
    __device__ __forceinline__ void load(const uint4 *const *wrow, const int64_t *srow, int64_t g, int gs,
                                         const void *sc, const void *bi) {
#pragma unroll
        for (int i = 0; i < R; i++) {
            w[i][0] = __ldg(wrow[i] + 2 * g);
            w[i][1] = __ldg(wrow[i] + 2 * g + 1);
            s[i] = cu_ld<SDT>(sc, srow[i] + (g >> gs));
            b[i] = cu_ld<SDT>(bi, srow[i] + (g >> gs));
        }
    }
    __device__ __forceinline__ void dot(const uint4 *xsg, int64_t g, float *acc) const {
        const uint4 *xp = xsg + g * 5;
        uint4 xa = xp[0], xb = xp[1], xc = xp[2], xd = xp[3], xf = xp[4];
        int xq[16] = {(int)xa.x, (int)xa.y, (int)xa.z, (int)xa.w, (int)xb.x, (int)xb.y, (int)xb.z, (int)xb.w,
                      (int)xc.x, (int)xc.y, (int)xc.z, (int)xc.w, (int)xd.x, (int)xd.y, (int)xd.z, (int)xd.w};
        float d0 = __int_as_float((int)xf.x), d1 = __int_as_float((int)xf.y);
        float bs = __int_as_float((int)xf.z) + __int_as_float((int)xf.w);
#pragma unroll
        for (int i = 0; i < R; i++) {
            uint32_t q[8] = {w[i][0].x, w[i][0].y, w[i][0].z, w[i][0].w, w[i][1].x, w[i][1].y, w[i][1].z, w[i][1].w};
            int dp0 = 0, dp1 = 0;
#pragma unroll
            for (int k = 0; k < 4; k++) {
                dp0 = __dp4a((int)(q[k] & 0x0F0F0F0Fu), xq[2 * k], dp0);
                dp0 = __dp4a((int)((q[k] >> 4) & 0x0F0F0F0Fu), xq[2 * k + 1], dp0);
                dp1 = __dp4a((int)(q[4 + k] & 0x0F0F0F0Fu), xq[8 + 2 * k], dp1);
                dp1 = __dp4a((int)((q[4 + k] >> 4) & 0x0F0F0F0Fu), xq[8 + 2 * k + 1], dp1);
            }
            acc[i] += s[i] * (d0 * (float)dp0 + d1 * (float)dp1) + b[i] * bs;
        }
    }
};

/* Persistent, balanced: warp gw of W takes items [gw*T/W, (gw+1)*T/W) of
 * the T = (N/R) * (G/32) items (R rows x 32 group-units, row-major), so
 * every warp streams the same number of bytes with its next two items'
 * weights in flight, across row boundaries. A warp adds its partial row sums
 * into y (zeroed by k_quant_x64); W <= N/R keeps every range >= one row, so
 * a row gets at most two partials onto 0, a sum whose value does not depend
 * on their order: results are deterministic. Needs G % 32 == 0. */
template <int SDT, int R, int D>
__global__ void __launch_bounds__(256) k_mlx4g(const uint32_t *__restrict__ wq, const void *__restrict__ scales,
                                               const void *__restrict__ biases, int gshift, float *__restrict__ y,
                                               const uint4 *__restrict__ xg, int64_t N, int64_t K, int W,
                                               MmEpi ep, MmRs rq) {
    extern __shared__ uint4 xsg[];
    int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    int G = (int)(K >> 6), CH = G >> 5;
    int P = (int)((N + R - 1) / R), T = P * CH;
    int gw = blockIdx.x * 8 + warp;
    int i0 = (int)((int64_t)gw * T / W), i1 = (int)((int64_t)(gw + 1) * T / W);
    if (gw >= W) i0 = i1 = T;
    int gs = gshift - 6;
    int64_t rowK8 = K >> 3, rowG = K >> gshift;
    auto ld = [&](Mlx4Step<SDT, R> &st, int it) {
        int p = it / CH, c = it - p * CH;
        const uint4 *wr[R];
        int64_t sr[R];
#pragma unroll
        for (int r = 0; r < R; r++) {
            int64_t n = (int64_t)p * R + r;
            n = n < N ? n : N - 1;
            wr[r] = (const uint4 *)(wq + n * rowK8);
            sr[r] = n * rowG;
        }
        st.load(wr, sr, (int64_t)c * 32 + lane, gs, scales, biases);
    };
    Mlx4Step<SDT, R> st[D];
#pragma unroll
    for (int k = 0; k < D; k++)
        if (i0 + k < i1) ld(st[k], i0 + k);
    cu_pdl_wait(); /* x (and y = 0) from k_quant_x64 */
    cu_pdl_trigger();
    for (int64_t i = threadIdx.x; i < (int64_t)G * 5; i += 256) xsg[i] = xg[i];
    float rs = mm_rs_begin(rq, K, lane);
    float hv = 0.0f, wv = 1.0f; /* Epi: the cluster's first block, first warp: h and w of row 32 g + lane */
    mm_epi_begin<R>(ep, warp, lane, &hv, &wv);
    __syncthreads();
    float acc[R];
#pragma unroll
    for (int r = 0; r < R; r++) acc[r] = 0.0f;
    float rowv[R]; /* Epi: lane 0's row values */
    auto step = [&](Mlx4Step<SDT, R> &sv, int it) {
        int p = it / CH, c = it - p * CH;
        sv.dot(xsg, (int64_t)c * 32 + lane, acc);
        if (it + D < i1) ld(sv, it + D);
        if (c == CH - 1 || it + 1 == i1) /* row group done, or the warp's range */
            mm_rows_out<R, true>(acc, p, N, lane, y, ep, rs, rowv);
    };
    for (int it = i0; it < i1; it += D) {
#pragma unroll
        for (int k = 0; k < D; k++)
            if (it + k < i1) step(st[k], it + k);
    }
    mm_epi_end<R>(ep, warp, lane, rowv, hv, wv); /* rows 8 b .. 8 b + 7 done */
}

/* MLXN_CU_MLX4=0 takes the generic k_mmvq for MLX 4-bit (for measuring);
 * MLXN_CU_PDL=0 launches k_mlx4g without programmatic dependent launch. */
static int mlx4_on(void) {
    static int m = -1;
    if (m < 0) m = mlxn_cu_env_flag("MLXN_CU_MLX4", 1);
    return m;
}
/* Blocks of 256 threads of the persistent one-row kernel k (with up to
 * 40 KB of shared memory) resident on the device at once; *sms: its SMs. */
template <typename... KArgs>
static int persist_slots(void (*k)(KArgs...), int *sms) {
    int dev = 0, per = 0;
    *sms = 0;
    cudaGetDevice(&dev);
    cudaDeviceGetAttribute(sms, cudaDevAttrMultiProcessorCount, dev);
    if (cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per, k, 256, 40 * 1024) != cudaSuccess || per < 1) per = 1;
    return *sms * per;
}
/* Warps a persistent one-row kernel with `slots` resident blocks (of 8
 * warps) launches for N rows: one wave, at most one warp per R rows. */
static int64_t persist_warps(int slots, int64_t N, int R) {
    int64_t P = (N + R - 1) / R, W = (int64_t)slots * 8;
    return W > P ? P : W;
}
/* Whether a persistent one-row kernel (items of 2048 elements, x in
 * x_bytes of shared memory) takes N rows of K. */
static bool persist_fits(int64_t N, int64_t K, size_t x_bytes) {
    return K % 2048 == 0 && N * (K / 2048) < ((int64_t)1 << 30) && x_bytes <= 40 * 1024;
}
/* Warps k_mlx4g<SDT, R, D> launches for N rows: one wave of resident warps,
 * at most one per R rows. */
template <int SDT, int R, int D>
static int64_t mlx4g_warps(int64_t N) {
    static int slots = 0, sm_count = 0; /* resident blocks on the device (per instantiation) */
    static int wps = -1; /* MLXN_CU_MLX4_WPS: at most this many warps per SM (measuring) */
    if (wps < 0) {
        const char *e = getenv("MLXN_CU_MLX4_WPS");
        wps = e && *e ? atoi(e) : 0;
    }
    if (!slots) slots = persist_slots(k_mlx4g<SDT, R, D>, &sm_count);
    int64_t W = persist_warps(slots, N, R);
    if (wps > 0 && (int64_t)sm_count * wps < W) W = (int64_t)sm_count * wps;
    return W;
}
template <int SDT, int R, int D>
static cudaError_t launch_mlx4g(const uint32_t *wq, const void *sc, const void *bi, int gshift, float *y,
                                const uint4 *xg, int64_t N, int64_t K, size_t smem, cudaStream_t s,
                                const MmEpi &ep, const MmRs &rq) {
    int64_t W = mlx4g_warps<SDT, R, D>(N);
    if (!ep.xg)
        return cu_launch(k_mlx4g<SDT, R, D>, cu_blocks(W, 8), 256, smem, s, wq, sc, bi, gshift, y, xg, N, K, (int)W,
                         ep, rq);
    if (W * R != N || N % 32) return cudaErrorInvalidValue; /* mlx4g_epi_rows */
    return cu_launch_cluster(k_mlx4g<SDT, R, D>, cu_blocks(W, 8), 256, smem, s, EPI_CLUSTER(R), wq, sc, bi, gshift, y,
                             xg, N, K, (int)W, ep, rq);
}

static bool mlx4g_takes(int gshift, int64_t N, int64_t K) {
    return mlx4_on() && gshift >= 6 && persist_fits(N, K, (size_t)(K / 64) * XG_BYTES);
}
/* k_mlx4g's R: two rows a warp above 4096 rows. On an H200 (bench/RESULTS.md,
 * 2026-11-29) the 8B model's qkv shape, 6144 x 4096, took 7.1 us at one row
 * a warp and 5.9 at two, and 8B decode went 636 -> 650 tok/s; 4096 x 4096
 * and 4096 x 14336 were level (4.7 / 12.2-12.3 us). Two rows from 4096 had
 * lost on an H100 (session of 2026-11-26, before the o / down projections
 * took the Epi plan), so 4096 keeps one. MLXN_CU_PERSIST_R=1 / 2: that
 * many at every N (measuring). */
static int mlx4g_rows(int64_t N) {
    static int f = -1;
    if (f < 0) {
        const char *e = getenv("MLXN_CU_PERSIST_R");
        f = e && (atoi(e) == 1 || atoi(e) == 2) ? atoi(e) : 0;
    }
    return f ? f : N > 4096 ? 2 : 1;
}
/* Clusters of EPI_CLUSTER(R) blocks of k_mlx4g<SDT, R, D> for N rows of K
 * that can be resident at once on the device. */
template <int SDT, int R, int D>
static int mlx4g_epi_clusters(int64_t N, int64_t K) {
    return cu_resident_clusters(k_mlx4g<SDT, R, D>, cu_blocks(N / R, 8), 256, (size_t)(K / 64) * XG_BYTES,
                                EPI_CLUSTER(R));
}
template <int SDT, int R, int D>
static bool mlx4g_epi_fits_r(int64_t N, int64_t K) {
    return mlx4g_warps<SDT, R, D>(N) * R == N && (int64_t)mlx4g_epi_clusters<SDT, R, D>(N, K) * 32 >= N;
}
template <int SDT, int D>
static int mlx4g_epi_rows_d(int64_t N, int64_t K) {
    return mlx4g_epi_fits_r<SDT, 1, D>(N, K) ? 1 : mlx4g_epi_fits_r<SDT, 2, D>(N, K) ? 2 : 0;
}
template <int SDT>
static int mlx4g_epi_plan_t(int64_t N, int64_t K, int *D) {
    static int d2 = -1, fit = -1;
    if (d2 < 0) {
        const char *e = getenv("MLXN_CU_EPI_D");
        d2 = e && atoi(e) == 2;
        fit = mlxn_cu_env_flag("MLXN_CU_EPI_DFIT", 1);
    }
    /* a warp of two rows holds K / 2048 items: with at most two, D = 2
     * already has all of them in flight, in fewer registers (128 -> 80 a
     * thread), so more of the kernel's blocks fit beside the one before */
    int r2 = d2 || (fit && K / 2048 <= 2) ? mlx4g_epi_rows_d<SDT, 2>(N, K) : -1;
    int r = d2 || r2 == 2 ? 0 : mlx4g_epi_rows_d<SDT, 4>(N, K);
    *D = r ? 4 : 2;
    return r ? r : r2 >= 0 ? r2 : mlx4g_epi_rows_d<SDT, 2>(N, K);
}
/* Rows a warp R (1 or 2; 0: none fits) and items in flight a lane D (4 or
 * 2) with which k_mlx4g runs the Epi half for N rows of K: one warp for
 * each R rows, all the rows' clusters resident at once (one wave). One row
 * a warp where that fits; else two, as a cluster of 4 blocks of 8 rows may
 * not: on an H100, 124 such clusters are resident at once, 4096 rows need
 * 128 (measured: 12 % slower decode with the second wave). D = 4 where it
 * fits: the one wave holds fewer warps than the SMs could, so registers do
 * not limit it, and more loads in flight do (H100, bench/RESULTS.md);
 * MLXN_CU_EPI_D=2 keeps 2 (measuring). */
static int mlx4g_epi_plan(int sdt, int64_t N, int64_t K, int *D) {
    *D = 2;
    if (N % 32 || N >= 8192 || !cu_sm90_feature("MLXN_CU_EPI")) return 0; /* clusters: sm_90 */
    int r = 0;
    if (sdt == MLXN_F32) r = mlx4g_epi_plan_t<MLXN_F32>(N, K, D);
    else if (sdt == MLXN_F16) r = mlx4g_epi_plan_t<MLXN_F16>(N, K, D);
    else r = mlx4g_epi_plan_t<MLXN_BF16>(N, K, D);
    static int dbg = -1;
    if (dbg < 0) dbg = mlxn_cu_env_flag("MLXN_CU_EPI_DEBUG", 0);
    if (dbg) fprintf(stderr, "epi: N %lld K %lld: rows a warp %d, items in flight %d\n", (long long)N, (long long)K, r, *D);
    return r;
}
static int mlx4g_epi_rows(int sdt, int64_t N, int64_t K) {
    int d;
    return mlx4g_epi_plan(sdt, N, K, &d);
}

/* true when it took the matmul (result in *err); x_ready: xg and y = 0 are
 * already written (k_pre_quant64); ep / rq: the norm's halves (MmEpi,
 * MmRs; NULL: none) */
template <int SDT>
static bool try_mlx4g(const uint32_t *wq, const void *sc, const void *bi, int gshift, float *y, const float *x,
                      int64_t N, int64_t K, void *scratch, cudaStream_t s, cudaError_t *err, bool x_ready = false,
                      const MmEpi *ep = NULL, const MmRs *rq = NULL) {
    if (!mlx4g_takes(gshift, N, K)) return false;
    size_t smem = (size_t)(K / 64) * XG_BYTES;
    int D = 2;
    int R = ep ? mlx4g_epi_plan(SDT, N, K, &D) : mlx4g_rows(N);
    if (!R) {
        *err = cudaErrorInvalidValue;
        return true;
    }
    int64_t nb = K / 32;
    if (!x_ready) { /* else a fused producer wrote xg and y = 0 (mlxn_cu_launch_fused) */
        cu_launch(k_quant_x64, cu_blocks(nb, 8), 256, 0, s, (uint8_t *)scratch, x, nb, y, N);
        *err = cudaGetLastError();
        if (*err != cudaSuccess) return true;
    }
    const uint4 *xg = (const uint4 *)scratch;
    MmEpi e0 = {};
    MmRs r0 = {};
    const MmEpi &e = ep ? *ep : e0;
    const MmRs &r = rq ? *rq : r0;
    /* D = 2 items in flight a lane for the persistent form (4 measured
     * slower: occupancy; again on an H200, 2026-11-29: 28672 x 4096 20.2 ->
     * 22.5 us, 8B decode 650 -> 604 tok/s); the Epi half's one wave takes
     * 4 where it fits */
    if (D == 4)
        *err = R == 2 ? launch_mlx4g<SDT, 2, 4>(wq, sc, bi, gshift, y, xg, N, K, smem, s, e, r)
                      : launch_mlx4g<SDT, 1, 4>(wq, sc, bi, gshift, y, xg, N, K, smem, s, e, r);
    else
        *err = R == 2 ? launch_mlx4g<SDT, 2, 2>(wq, sc, bi, gshift, y, xg, N, K, smem, s, e, r)
                      : launch_mlx4g<SDT, 1, 2>(wq, sc, bi, gshift, y, xg, N, K, smem, s, e, r);
    return true;
}

/* ---- q4_k, M = 1: a persistent decode kernel (k_q4kg) ----
 * k_mlx4g's plan for q4_k: warp gw of W takes items [gw*T/W, (gw+1)*T/W)
 * of the T = (N/R) * (K/2048) items (R rows x 32 units of 64 elements,
 * row-major), keeps its next D items' weights in registers (the first ones
 * loaded before the wait on x), and adds its partial row sums into y, which
 * the producer zeroed (layout XL_QZ: k_mmvq's int8 x, 48 bytes a 32-block,
 * copied once to shared memory). W <= N/R: a row gets at most two partials
 * onto 0, so the result does not depend on their order. Lane unit u = 32 c
 * + lane is elements 64u..64u+63: super-block u/4's header (f16 d, dmin and
 * the 12 scale bytes: one 16-byte load) and its code bytes 16 + 32 (u%4)
 * (two), sub-blocks 2j (low nibbles) and 2j+1 (high) for j = u%4 = lane%4.
 * Against k_mmvq (bench/RESULTS.md): x read from shared memory instead of
 * through L1 beside the weights, and no per-block row start. */
#define Q4K_BB 144
template <int R>
struct Q4kStep {
    uint4 h[R], q[R][2];
    __device__ __forceinline__ void load(const uint8_t *const *rows, int64_t u) {
#pragma unroll
        for (int i = 0; i < R; i++) {
            const uint8_t *b = rows[i] + (u >> 2) * Q4K_BB;
            h[i] = __ldg((const uint4 *)b);
            const uint4 *qs = (const uint4 *)(b + 16 + 32 * (u & 3));
            q[i][0] = ld_w<true>(qs);
            q[i][1] = ld_w<true>(qs + 1);
        }
    }
    __device__ __forceinline__ void dot(const uint4 *xs, int64_t u, int j, float *acc) const {
        const uint4 *xp = xs + 6 * u; /* blocks 2u, 2u + 1: 3 uint4 each */
        uint4 a0 = xp[0], a1 = xp[1], a2 = xp[2], b0 = xp[3], b1 = xp[4], b2 = xp[5];
        int xa[8] = {(int)a0.x, (int)a0.y, (int)a0.z, (int)a0.w, (int)a1.x, (int)a1.y, (int)a1.z, (int)a1.w};
        int xb[8] = {(int)b0.x, (int)b0.y, (int)b0.z, (int)b0.w, (int)b1.x, (int)b1.y, (int)b1.z, (int)b1.w};
        float dxa = __int_as_float((int)a2.x), dxb = __int_as_float((int)b2.x);
        int sa = (int)a2.y + (int)a2.z, sb = (int)b2.y + (int)b2.z;
#pragma unroll
        for (int i = 0; i < R; i++) {
            float2 dd = kq_dmin(h[i].x);
            int sc1, sc2, m1, m2;
            kq_scale_min2(j, h[i].y, h[i].z, h[i].w, &sc1, &sc2, &m1, &m2);
            uint32_t qw[8] = {q[i][0].x, q[i][0].y, q[i][0].z, q[i][0].w, q[i][1].x, q[i][1].y, q[i][1].z, q[i][1].w};
            int dpa = 0, dpb = 0;
#pragma unroll
            for (int k = 0; k < 8; k++) {
                dpa = __dp4a((int)(qw[k] & 0x0F0F0F0F), xa[k], dpa);
                dpb = dp4a_hi16(qw[k], xb[k], dpb);
            }
            dpb >>= 4;
            acc[i] += kq_unit(dd, sc1, sc2, m1, m2, dpa, dpb, dxa, dxb, sa, sb);
        }
    }
};

/* NM: the norm's halves (ep / rq, as k_mlx4g: the Epi half needs W = N / R
 * and clusters of EPI_CLUSTER(R) blocks); without, they are compiled out. */
template <int R, int D, int MB, bool NM>
__global__ void __launch_bounds__(256, MB) k_q4kg(const uint8_t *__restrict__ w, int64_t rb, float *__restrict__ y,
                                              const uint4 *__restrict__ xq, int64_t N, int64_t K, int W,
                                              MmEpi ep, MmRs rq) {
    extern __shared__ uint4 xs4[];
    int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    int CH = (int)(K >> 11);
    int P = (int)((N + R - 1) / R), T = P * CH;
    int gw = blockIdx.x * 8 + warp;
    int i0 = (int)((int64_t)gw * T / W), i1 = (int)((int64_t)(gw + 1) * T / W);
    if (gw >= W) i0 = i1 = T;
    auto ld = [&](Q4kStep<R> &st, int it) {
        int p = it / CH, c = it - p * CH;
        const uint8_t *rows[R];
#pragma unroll
        for (int r = 0; r < R; r++) {
            int64_t n = (int64_t)p * R + r;
            rows[r] = w + (n < N ? n : N - 1) * rb;
        }
        st.load(rows, (int64_t)c * 32 + lane);
    };
    Q4kStep<R> st[D];
#pragma unroll
    for (int k = 0; k < D; k++)
        if (i0 + k < i1) ld(st[k], i0 + k);
    cu_pdl_wait(); /* x and y = 0 from the producer */
    cu_pdl_trigger();
    for (int64_t i = threadIdx.x; i < (K >> 5) * XQ_BLOCK_U4; i += 256) xs4[i] = xq[i];
    float rs = 1.0f, hv = 0.0f, wv = 1.0f, rowv[R]; /* the norm's halves (NM) */
    if constexpr (NM) {
        rs = mm_rs_begin(rq, K, lane);
        mm_epi_begin<R>(ep, warp, lane, &hv, &wv);
    }
    __syncthreads();
    float acc[R];
#pragma unroll
    for (int r = 0; r < R; r++) acc[r] = 0.0f;
    int j = lane & 3;
    auto step = [&](Q4kStep<R> &sv, int it) {
        int p = it / CH, c = it - p * CH;
        sv.dot(xs4, (int64_t)c * 32 + lane, j, acc);
        if (it + D < i1) ld(sv, it + D);
        if (c == CH - 1 || it + 1 == i1) /* row group done, or the warp's range */
            mm_rows_out<R, NM>(acc, p, N, lane, y, ep, rs, rowv);
    };
    for (int it = i0; it < i1; it += D) {
#pragma unroll
        for (int k = 0; k < D; k++)
            if (it + k < i1) step(st[k], it + k);
    }
    if constexpr (NM) mm_epi_end<R>(ep, warp, lane, rowv, hv, wv); /* rows 8 b R .. done */
}

/* MLXN_CU_Q4KG=0: q4_k one-row on k_mmvq (measuring). */
static bool q4kg_takes(int64_t N, int64_t K) {
    static int on = -1;
    if (on < 0) on = mlxn_cu_env_flag("MLXN_CU_Q4KG", 1);
    return on && persist_fits(N, K, (size_t)(K / 32) * XQ_BYTES);
}
template <int R, int D, int MB, bool NM>
static int64_t q4kg_warps(int64_t N) {
    static int slots = 0, sms = 0; /* resident blocks on the device (per instantiation) */
    if (!slots) slots = persist_slots(k_q4kg<R, D, MB, NM>, &sms);
    return persist_warps(slots, N, R);
}
template <int R, int D, int MB>
static cudaError_t launch_q4kg(const uint8_t *w, int64_t rb, float *y, const uint4 *xq, int64_t N, int64_t K,
                               cudaStream_t s, const MmEpi *ep, const MmRs *rq) {
    size_t smem = (size_t)(K / 32) * XQ_BYTES;
    if (!ep && !rq) {
        int64_t W = q4kg_warps<R, D, MB, false>(N);
        return cu_launch(k_q4kg<R, D, MB, false>, cu_blocks(W, 8), 256, smem, s, w, rb, y, xq, N, K, (int)W, MmEpi{},
                         MmRs{});
    }
    MmEpi e0 = {};
    MmRs r0 = {};
    int64_t W = q4kg_warps<R, D, MB, true>(N);
    if (!ep)
        return cu_launch(k_q4kg<R, D, MB, true>, cu_blocks(W, 8), 256, smem, s, w, rb, y, xq, N, K, (int)W, e0, *rq);
    if (W * R != N || N % 32) return cudaErrorInvalidValue; /* q4kg_epi_rows */
    return cu_launch_cluster(k_q4kg<R, D, MB, true>, cu_blocks(W, 8), 256, smem, s, EPI_CLUSTER(R), w, rb, y, xq, N,
                             K, (int)W, *ep, rq ? *rq : r0);
}
/* k_q4kg takes either half of the norm between two matmuls
 * (mlxn_cu_epi_ok): 8B q4_k decode 438 -> 457 tok/s on the H100
 * (bench/RESULTS.md); MLXN_CU_Q4K_EPI=0 keeps the norm a kernel of its own. */
static bool q4k_epi_on(void) {
    static int on = -1;
    if (on < 0) on = mlxn_cu_env_flag("MLXN_CU_Q4K_EPI", 1);
    return on;
}
/* The Epi half on k_q4kg (q4k_epi_on): rows a warp R (1 or 2; 0: none
 * fits) for N rows of K, as mlx4g_epi_plan: one warp for each R rows, all
 * the rows' clusters resident at once; R = 1 on <1, 2, 3>, R = 2 on
 * <2, 2, 2>. */
static int q4kg_epi_rows(int64_t N, int64_t K) {
    if (!q4k_epi_on() || N % 32 || N >= 8192 || !q4kg_takes(N, K) || !cu_sm90_feature("MLXN_CU_EPI")) return 0;
    size_t smem = (size_t)(K / 32) * XQ_BYTES;
    if (q4kg_warps<1, 2, 3, true>(N) == N &&
        (int64_t)cu_resident_clusters(k_q4kg<1, 2, 3, true>, cu_blocks(N, 8), 256, smem, EPI_CLUSTER(1)) * 32 >= N)
        return 1;
    if (q4kg_warps<2, 2, 2, true>(N) * 2 == N &&
        (int64_t)cu_resident_clusters(k_q4kg<2, 2, 2, true>, cu_blocks(N / 2, 8), 256, smem, EPI_CLUSTER(2)) * 32 >= N)
        return 2;
    return 0;
}
/* q4_k one-row on k_q4kg (q4kg_takes); x_ready: a producer wrote xq and y =
 * 0; ep / rq: the norm's halves (NULL: none; ep needs q4kg_epi_rows). */
static cudaError_t run_q4kg(const uint8_t *w, int64_t rb, float *y, const float *x, int64_t N, int64_t K,
                            void *scratch, cudaStream_t s, bool x_ready, const MmEpi *ep = NULL,
                            const MmRs *rq = NULL) {
    int64_t nb = K / 32;
    uint4 *xq = (uint4 *)scratch;
    if (!x_ready) {
        cu_launch(k_quant_x, cu_blocks(nb, 8), 256, 0, s, xq, x, nb, y, N);
        CU_LAUNCH_CHECK();
    }
    /* two rows a warp at every N (H100, bench/RESULTS.md: at 4096 rows 3-6
     * points of copy more than one, 8B decode +2 %; k_mlx4g keeps one at
     * 4096 rows, where two lost); from 8192 rows one item in flight a lane
     * and 3 blocks an SM (78 registers) instead of two and 2 (128): 14336 /
     * 32000 rows 6 / 5 points more, 4096 rows 5-11 less (so not there).
     * MLXN_CU_Q4KG_R=1: one row a warp; MLXN_CU_Q4KG_V=1 / 2: one item in
     * flight (3 blocks) / three (2 blocks) at every N (measuring). */
    static int r1 = -1, v = -1;
    if (r1 < 0) {
        const char *e = getenv("MLXN_CU_Q4KG_R");
        r1 = e && atoi(e) == 1;
        e = getenv("MLXN_CU_Q4KG_V");
        v = e ? atoi(e) : 0;
    }
    cudaError_t e;
    if (ep) { /* rows a warp from the plan */
        int R = q4kg_epi_rows(N, K);
        e = R == 1 ? launch_q4kg<1, 2, 3>(w, rb, y, xq, N, K, s, ep, rq)
            : R == 2 ? launch_q4kg<2, 2, 2>(w, rb, y, xq, N, K, s, ep, rq)
                     : cudaErrorInvalidValue;
    } else {
        e = r1 ? launch_q4kg<1, 2, 3>(w, rb, y, xq, N, K, s, NULL, rq)
            : v == 1 || (v == 0 && N >= 8192) ? launch_q4kg<2, 1, 3>(w, rb, y, xq, N, K, s, NULL, rq)
            : v == 2 ? launch_q4kg<2, 3, 2>(w, rb, y, xq, N, K, s, NULL, rq)
                     : launch_q4kg<2, 2, 2>(w, rb, y, xq, N, K, s, NULL, rq);
    }
    if (e != cudaSuccess) return e;
    CU_LAUNCH_CHECK();
    return cudaSuccess;
}

/* Bytes of scratch a matmul needs: the int8 copy of x for M = 1 on the
 * integer path (formats with a dotq; K/32 blocks of 48 bytes). */
static bool int_path(int wt, int bits) {
    if (wt < 0) return bits == 2 || bits == 3 || bits == 4 || bits == 5 || bits == 6 || bits == 8;
    return wt == MLXN_Q4_0 || wt == MLXN_Q4_1 || wt == MLXN_Q8_0 || wt == MLXN_Q4_K || wt == MLXN_Q5_K ||
           wt == MLXN_Q6_K;
}
extern "C" size_t mlxn_cu_matmul_scratch(int wt, int bits, int64_t M, int64_t K) {
    if (M != 1 || !int_path(wt, bits)) return 0;
    return (size_t)(K / 32) * XQ_BLOCK_U4 * 16;
}

#define TBM 64
#define TBN 64
#define TBK 64

/* 64x64 output tile per block of 8 warps. x tile [64 m][64 k] and the
 * decoded W tile [64 n][64 k] sit in shared memory as f32 (rows padded to
 * 68 floats); each warp multiplies a 16x32 piece on the tensor cores in
 * TF32 (m16n16k8, f32 accumulation). TF32 keeps f32's range with a 10-bit
 * mantissa: NMSE against the f32 CPU result stays near 1e-7. */
template <class F>
__global__ void __launch_bounds__(256) k_mm_tiled(F f, float *__restrict__ y, const float *__restrict__ x, int64_t M,
                                                  int64_t N, int64_t K) {
    cu_pdl_enter();
    constexpr int LD = TBK + 4;
    __shared__ __align__(128) float xs[TBM][LD]; /* reused for the output tile */
    __shared__ __align__(128) float ws[TBN][LD];
    int64_t m0 = (int64_t)blockIdx.y * TBM, n0 = (int64_t)blockIdx.x * TBN;
    int warp = threadIdx.x >> 5, wm = warp >> 1, wn = (warp & 1) * 2;
    wmma::fragment<wmma::accumulator, 16, 16, 8, float> c0, c1;
    wmma::fill_fragment(c0, 0.0f);
    wmma::fill_fragment(c1, 0.0f);
    constexpr int UPR = TBK / F::U; /* units per tile row */
    for (int64_t k0 = 0; k0 < K; k0 += TBK) {
        for (int i = threadIdx.x; i < TBM * TBK; i += 256) {
            int mm = i / TBK, kk = i % TBK;
            int64_t gm = m0 + mm, gk = k0 + kk;
            xs[mm][kk] = (gm < M && gk < K) ? x[gm * K + gk] : 0.0f;
        }
        for (int i = threadIdx.x; i < TBN * UPR; i += 256) {
            int nn = i / UPR, uu = i % UPR;
            int64_t gn = n0 + nn, gu = k0 / F::U + uu;
            float w[F::U];
            if (gn < N && gu * F::U < K) f.decode(gn, gu, w);
            else
#pragma unroll
                for (int j = 0; j < F::U; j++) w[j] = 0.0f;
#pragma unroll
            for (int j = 0; j < F::U; j++) ws[nn][uu * F::U + j] = w[j];
        }
        __syncthreads();
#pragma unroll
        for (int kk = 0; kk < TBK; kk += 8) {
            wmma::fragment<wmma::matrix_a, 16, 16, 8, wmma::precision::tf32, wmma::row_major> a;
            wmma::fragment<wmma::matrix_b, 16, 16, 8, wmma::precision::tf32, wmma::col_major> b0, b1;
            wmma::load_matrix_sync(a, &xs[wm * 16][kk], LD);
            wmma::load_matrix_sync(b0, &ws[wn * 16][kk], LD);
            wmma::load_matrix_sync(b1, &ws[wn * 16 + 16][kk], LD);
#pragma unroll
            for (int e = 0; e < a.num_elements; e++) a.x[e] = wmma::__float_to_tf32(a.x[e]);
#pragma unroll
            for (int e = 0; e < b0.num_elements; e++) {
                b0.x[e] = wmma::__float_to_tf32(b0.x[e]);
                b1.x[e] = wmma::__float_to_tf32(b1.x[e]);
            }
            wmma::mma_sync(c0, a, b0, c0);
            wmma::mma_sync(c1, a, b1, c1);
        }
        __syncthreads();
    }
    wmma::store_matrix_sync(&xs[wm * 16][wn * 16], c0, LD, wmma::mem_row_major);
    wmma::store_matrix_sync(&xs[wm * 16][wn * 16 + 16], c1, LD, wmma::mem_row_major);
    __syncthreads();
    for (int i = threadIdx.x; i < TBM * TBN; i += 256) {
        int mm = i / TBN, nn = i % TBN;
        int64_t gm = m0 + mm, gn = n0 + nn;
        if (gm < M && gn < N) y[gm * N + gn] = xs[mm][nn];
    }
}

/* The bf16 kernels' shared-memory tiles: BM rows of x and TBN rows of
 * decoded W, TBK wide, rounded to bf16; zeros outside the matrices. x rows
 * load as float4 when K and x allow it. */
template <int BM, int LDH>
__device__ __forceinline__ void tile_x_bf16(__nv_bfloat16 (*xs)[LDH], const float *__restrict__ x, int64_t m0,
                                            int64_t k0, int64_t M, int64_t K, bool vec_x) {
    if (vec_x && k0 + TBK <= K) {
        for (int i = threadIdx.x; i < BM * TBK / 4; i += 256) {
            int mm = i / (TBK / 4), kk = (i % (TBK / 4)) * 4;
            float4 v = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
            if (m0 + mm < M) v = __ldg((const float4 *)(x + (m0 + mm) * K + k0 + kk));
            *(__nv_bfloat162 *)&xs[mm][kk] = __floats2bfloat162_rn(v.x, v.y);
            *(__nv_bfloat162 *)&xs[mm][kk + 2] = __floats2bfloat162_rn(v.z, v.w);
        }
    } else {
        for (int i = threadIdx.x; i < BM * TBK; i += 256) {
            int mm = i / TBK, kk = i % TBK;
            int64_t gm = m0 + mm, gk = k0 + kk;
            xs[mm][kk] = __float2bfloat16_rn((gm < M && gk < K) ? x[gm * K + gk] : 0.0f);
        }
    }
}

template <class F, int LDH>
__device__ __forceinline__ void tile_w_bf16(const F &f, __nv_bfloat16 (*ws)[LDH], int64_t n0, int64_t k0, int64_t N,
                                            int64_t K) {
    constexpr int UPR = TBK / F::U;
    for (int i = threadIdx.x; i < TBN * UPR; i += 256) {
        int nn = i / UPR, uu = i % UPR;
        int64_t gn = n0 + nn, gu = k0 / F::U + uu;
        float w[F::U];
        if (gn < N && gu * F::U < K) f.decode(gn, gu, w);
        else
#pragma unroll
            for (int j = 0; j < F::U; j++) w[j] = 0.0f;
#pragma unroll
        for (int j = 0; j < F::U; j += 2)
            *(__nv_bfloat162 *)&ws[nn][uu * F::U + j] = __floats2bfloat162_rn(w[j], w[j + 1]);
    }
}

/* M >= MM_BF16_MIN rows (prefill): the same 64x64 tiles with x and the
 * decoded W rounded to bf16 in shared memory, m16n16k16 bf16 tensor-core
 * MMA, f32 accumulation; twice TF32's MMA rate and half its shared-memory
 * traffic. bf16 keeps f32's range; its 8-bit significand puts NMSE against
 * the f32 CPU result near 1e-5 (tests/test_cuda_ops.c, TOL_BF16). Smaller M
 * (and f32-activation sessions) keep TF32: there the matmul is bound by W's
 * bytes, not the MMA. */
#define MM_BF16_MIN 128
template <class F>
__global__ void __launch_bounds__(256) k_mm_bf16(F f, float *__restrict__ y, const float *__restrict__ x, int64_t M,
                                                 int64_t N, int64_t K) {
    cu_pdl_enter();
    constexpr int LDH = TBK + 8; /* 144-byte rows */
    __shared__ __align__(128) __nv_bfloat16 xs[TBM][LDH];
    __shared__ __align__(128) __nv_bfloat16 ws[TBN][LDH];
    __shared__ __align__(128) float cs[TBM][TBN + 4];
    int64_t m0 = (int64_t)blockIdx.y * TBM, n0 = (int64_t)blockIdx.x * TBN;
    int warp = threadIdx.x >> 5, wm = warp >> 1, wn = (warp & 1) * 2;
    wmma::fragment<wmma::accumulator, 16, 16, 16, float> c0, c1;
    wmma::fill_fragment(c0, 0.0f);
    wmma::fill_fragment(c1, 0.0f);
    bool vec_x = K % 4 == 0 && ((uintptr_t)x & 15) == 0;
    for (int64_t k0 = 0; k0 < K; k0 += TBK) {
        tile_x_bf16<TBM>(xs, x, m0, k0, M, K, vec_x);
        tile_w_bf16(f, ws, n0, k0, N, K);
        __syncthreads();
#pragma unroll
        for (int kk = 0; kk < TBK; kk += 16) {
            wmma::fragment<wmma::matrix_a, 16, 16, 16, __nv_bfloat16, wmma::row_major> a;
            wmma::fragment<wmma::matrix_b, 16, 16, 16, __nv_bfloat16, wmma::col_major> b0, b1;
            wmma::load_matrix_sync(a, &xs[wm * 16][kk], LDH);
            wmma::load_matrix_sync(b0, &ws[wn * 16][kk], LDH);
            wmma::load_matrix_sync(b1, &ws[wn * 16 + 16][kk], LDH);
            wmma::mma_sync(c0, a, b0, c0);
            wmma::mma_sync(c1, a, b1, c1);
        }
        __syncthreads();
    }
    wmma::store_matrix_sync(&cs[wm * 16][wn * 16], c0, TBN + 4, wmma::mem_row_major);
    wmma::store_matrix_sync(&cs[wm * 16][wn * 16 + 16], c1, TBN + 4, wmma::mem_row_major);
    __syncthreads();
    for (int i = threadIdx.x; i < TBM * TBN; i += 256) {
        int mm = i / TBN, nn = i % TBN;
        int64_t gm = m0 + mm, gn = n0 + nn;
        if (gm < M && gn < N) y[gm * N + gn] = cs[mm][nn];
    }
}

/* The bf16 path with 128-row tiles (M >= 256, quantized W): 8 warps as 4 x 2, each a
 * 32x32 piece (4 MMAs a k-step); W decoded once per 128 rows of x (half the
 * decoding of 64-row tiles), x tile loaded as float4. Results leave through
 * a 16x16 staging square per warp. */
template <class F>
__global__ void __launch_bounds__(256) k_mm_bf16_128(F f, float *__restrict__ y, const float *__restrict__ x,
                                                     int64_t M, int64_t N, int64_t K) {
    cu_pdl_enter();
    constexpr int BM = 128, LDH = TBK + 8;
    __shared__ __align__(128) __nv_bfloat16 xs[BM][LDH];
    __shared__ __align__(128) __nv_bfloat16 ws[TBN][LDH];
    int64_t m0 = (int64_t)blockIdx.y * BM, n0 = (int64_t)blockIdx.x * TBN;
    int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, wm = (warp >> 1) * 32, wn = (warp & 1) * 32;
    wmma::fragment<wmma::accumulator, 16, 16, 16, float> c[2][2];
#pragma unroll
    for (int i = 0; i < 2; i++)
#pragma unroll
        for (int j = 0; j < 2; j++) wmma::fill_fragment(c[i][j], 0.0f);
    bool vec_x = K % 4 == 0 && ((uintptr_t)x & 15) == 0;
    for (int64_t k0 = 0; k0 < K; k0 += TBK) {
        tile_x_bf16<BM>(xs, x, m0, k0, M, K, vec_x);
        tile_w_bf16(f, ws, n0, k0, N, K);
        __syncthreads();
#pragma unroll
        for (int kk = 0; kk < TBK; kk += 16) {
            wmma::fragment<wmma::matrix_a, 16, 16, 16, __nv_bfloat16, wmma::row_major> a[2];
            wmma::fragment<wmma::matrix_b, 16, 16, 16, __nv_bfloat16, wmma::col_major> b[2];
#pragma unroll
            for (int i = 0; i < 2; i++) wmma::load_matrix_sync(a[i], &xs[wm + 16 * i][kk], LDH);
#pragma unroll
            for (int j = 0; j < 2; j++) wmma::load_matrix_sync(b[j], &ws[wn + 16 * j][kk], LDH);
#pragma unroll
            for (int i = 0; i < 2; i++)
#pragma unroll
                for (int j = 0; j < 2; j++) wmma::mma_sync(c[i][j], a[i], b[j], c[i][j]);
        }
        __syncthreads();
    }
    float *stage = (float *)&xs[0][0] + warp * 256; /* 8 x 1 KB inside xs (18 KB) */
#pragma unroll
    for (int i = 0; i < 2; i++)
#pragma unroll
        for (int j = 0; j < 2; j++) {
            wmma::store_matrix_sync(stage, c[i][j], 16, wmma::mem_row_major);
            __syncwarp();
            for (int e = lane; e < 256; e += 32) {
                int64_t gm = m0 + wm + 16 * i + e / 16, gn = n0 + wn + 16 * j + e % 16;
                if (gm < M && gn < N) y[gm * N + gn] = stage[e];
            }
            __syncwarp();
        }
}

__global__ void k_mm_scalar(float *y, const float *x, const void *w, int wdt, int64_t M, int64_t N, int64_t K) {
    cu_pdl_enter();
    int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= M * N) return;
    int64_t m = i / N, n = i % N;
    float a = 0;
    for (int64_t k = 0; k < K; k++) a = fmaf(x[m * K + k], cu_ld_rt(w, wdt, n * K + k), a);
    y[i] = a;
}

static int bm128(void) {
    static int m = -1;
    if (m < 0) {
        const char *e = getenv("MLXN_CU_BM128");
        m = e && *e ? *e != '0' : 1;
    }
    return m;
}

/* bf: bf16 MMA allowed for M >= MM_BF16_MIN (off for f32-activation nodes) */
template <class F>
static cudaError_t run_mm(const F &f, float *y, const float *x, int64_t M, int64_t N, int64_t K, cudaStream_t s,
                          bool bf) {
    cudaError_t e;
    if (M == 1 && F::U >= 32 && try_mmv_s<F, (F::U >= 64 ? 1 : 2)>(f, y, x, N, K, s, &e)) return e;
    if (M == 1) {
        cu_launch(k_mmv<F, 1>, cu_blocks(N, MMV_WARPS), MMV_WARPS * 32, 0, s, f, y, x, 1, N, K);
    } else if (M <= 8) {
        cu_launch(k_mmv<F, 8>, cu_blocks(N, MMV_WARPS), MMV_WARPS * 32, 0, s, f, y, x, (int)M, N, K);
    } else if (bf && M >= 256 && F::U >= 32 && bm128() && (int64_t)cu_blocks(N, TBN) * cu_blocks(M, 128) >= 128) {
        /* quantized W (costly decode) with >= ~1 block per SM: measured on
         * H200 at M = 512, mlx4: 14336x4096 773 -> 680 us, 4096x4096 220 ->
         * 182 us; but 1024x4096 (64 blocks) 93 -> 143 us and f16 W 193 ->
         * 239 us, which keep 64-row tiles */
        dim3 g(cu_blocks(N, TBN), cu_blocks(M, 128));
        cu_launch(k_mm_bf16_128<F>, g, 256, 0, s, f, y, x, M, N, K);
    } else if (bf && M >= MM_BF16_MIN) {
        dim3 g(cu_blocks(N, TBN), cu_blocks(M, TBM));
        cu_launch(k_mm_bf16<F>, g, 256, 0, s, f, y, x, M, N, K);
    } else {
        dim3 g(cu_blocks(N, TBN), cu_blocks(M, TBM));
        cu_launch(k_mm_tiled<F>, g, 256, 0, s, f, y, x, M, N, K);
    }
    CU_LAUNCH_CHECK();
    return cudaSuccess;
}

/* q8_0 one-row with 4 units a step, all their loads issued first (H100,
 * bench ops: q8_0 1-7 %, q6_k 2-18 % faster than one unit a step; q4_0 /
 * q4_1 the same way were slower at the large shapes and in the SmolLM2 GGUF
 * decode, q4_k unchanged, q5_k mixed: they keep one unit a step; q6_k now
 * takes two rows a warp instead, faster again at the large shapes).
 * MLXN_CU_STEP4=0: one unit a step (measuring). */
template <class F>
struct S4 : F {
    static constexpr bool STEP4 = true;
    static constexpr int MINB = 4;
};
static bool step4(void) {
    static int on = -1;
    if (on < 0) on = mlxn_cu_env_flag("MLXN_CU_STEP4", 1);
    return on && mmvq_rows_env() != 2;
}

static size_t row_bytes(int wt, int64_t K) {
    return (size_t)K / mlxn_dtype_block_elems((mlxn_dtype)wt) * mlxn_dtype_block_bytes((mlxn_dtype)wt);
}

static cudaError_t matmul_raw(float *y, const float *x, const void *w, int wt, int64_t M, int64_t N, int64_t K,
                              void *scratch, cudaStream_t s, bool bf, bool xr = false, const MmEpi *ep = NULL,
                              const MmRs *rq = NULL) {
    if ((ep || rq) && !(wt == MLXN_Q4_K && M == 1 && xr && q4kg_takes(N, K)))
        return cudaErrorInvalidValue; /* the norm's halves: k_mlx4g and k_q4kg only */
    if (scratch && mlxn_cu_matmul_scratch(wt, 0, M, K)) {
        const uint8_t *wb = (const uint8_t *)w;
        int64_t rb = (int64_t)row_bytes(wt, K);
        if (ep || rq) return run_q4kg(wb, rb, y, x, N, K, scratch, s, xr, ep, rq);
        switch (wt) {
        case MLXN_Q4_0: return run_mmvq(QDotQ4_0{{wb, rb}}, y, x, N, K, scratch, s, xr);
        case MLXN_Q4_1: return run_mmvq(QDotQ4_1{{wb, rb}}, y, x, N, K, scratch, s, xr);
        case MLXN_Q8_0:
            return step4() ? run_mmvq(S4<QDotQ8_0>{{{wb, rb}}}, y, x, N, K, scratch, s, xr)
                           : run_mmvq(QDotQ8_0{{wb, rb}}, y, x, N, K, scratch, s, xr);
        case MLXN_Q4_K:
            if (q4kg_takes(N, K)) return run_q4kg(wb, rb, y, x, N, K, scratch, s, xr);
            return run_mmvq(QDotQK45<false>{{wb, rb}}, y, x, N, K, scratch, s, xr);
        case MLXN_Q5_K: return run_mmvq(QDotQK45<true>{{wb, rb}}, y, x, N, K, scratch, s, xr);
        case MLXN_Q6_K:
            return run_mmvq(QDotQ6K{{wb, rb}}, y, x, N, K, scratch, s, xr); /* two rows a warp (ROWS) */
        default: break;
        }
    }
    if (ep || rq) return cudaErrorInvalidValue; /* (no scratch) */
    const uint8_t *wb = (const uint8_t *)w;
    int64_t rb = (int64_t)row_bytes(wt, K);
    bool aligned = ((uintptr_t)w % 16) == 0 && rb % 16 == 0 && K % 8 == 0 && ((uintptr_t)x % 16) == 0;
    switch (wt) {
    case MLXN_F32:
    case MLXN_F16:
    case MLXN_BF16:
        if (!aligned) {
            cu_launch(k_mm_scalar, cu_blocks(M * N, 256), 256, 0, s, y, x, w, wt, M, N, K);
            CU_LAUNCH_CHECK();
            return cudaSuccess;
        }
        if (wt == MLXN_F32) return run_mm(DecF32{wb, rb}, y, x, M, N, K, s, bf);
        if (wt == MLXN_F16) return run_mm(DecHalf<false>{wb, rb}, y, x, M, N, K, s, bf);
        return run_mm(DecHalf<true>{wb, rb}, y, x, M, N, K, s, bf);
    case MLXN_Q4_0: return run_mm(DecQ4_0{wb, rb}, y, x, M, N, K, s, bf);
    case MLXN_Q4_1: return run_mm(DecQ4_1{wb, rb}, y, x, M, N, K, s, bf);
    case MLXN_Q8_0: return run_mm(DecQ8_0{wb, rb}, y, x, M, N, K, s, bf);
    case MLXN_Q4_K: return run_mm(DecQK45<false>{wb, rb}, y, x, M, N, K, s, bf);
    case MLXN_Q5_K: return run_mm(DecQK45<true>{wb, rb}, y, x, M, N, K, s, bf);
    case MLXN_Q6_K: return run_mm(DecQ6K{wb, rb}, y, x, M, N, K, s, bf);
    default: return cudaErrorInvalidValue;
    }
}

static cudaError_t matmul_mlx_raw(float *y, const float *x, const uint32_t *wq, const void *scales,
                                  const void *biases, int sdt, int bits, int group, int64_t M, int64_t N, int64_t K,
                                  void *scratch, cudaStream_t s, bool bf, bool xr = false, const MmEpi *ep = NULL,
                                  const MmRs *rq = NULL) {
    int gshift = group == 32 ? 5 : group == 64 ? 6 : group == 128 ? 7 : -1;
    if (gshift < 0) return cudaErrorInvalidValue;
    if (scratch && mlxn_cu_matmul_scratch(-1, bits, M, K)) {
        cudaError_t e4 = cudaSuccess;
        if (bits == 4 && (sdt == MLXN_F32 ? try_mlx4g<MLXN_F32>(wq, scales, biases, gshift, y, x, N, K, scratch, s, &e4, xr, ep, rq)
                          : sdt == MLXN_F16 ? try_mlx4g<MLXN_F16>(wq, scales, biases, gshift, y, x, N, K, scratch, s, &e4, xr, ep, rq)
                                            : try_mlx4g<MLXN_BF16>(wq, scales, biases, gshift, y, x, N, K, scratch, s, &e4, xr, ep, rq)))
            return e4;
        if (ep || rq) return cudaErrorInvalidValue; /* the norm's halves: k_mlx4g only */
#define QMLX(B, SDT) run_mmvq(QDotMlx<B, SDT>{{wq, scales, biases, sdt, gshift, K}}, y, x, N, K, scratch, s, xr)
        if (bits == 4) return sdt == MLXN_F32 ? QMLX(4, MLXN_F32) : sdt == MLXN_F16 ? QMLX(4, MLXN_F16) : QMLX(4, MLXN_BF16);
#define QMLXB(B) if (bits == B) return sdt == MLXN_F32 ? QMLX(B, MLXN_F32) : sdt == MLXN_F16 ? QMLX(B, MLXN_F16) : QMLX(B, MLXN_BF16);
        QMLXB(8) QMLXB(2) QMLXB(3) QMLXB(5) QMLXB(6)
#undef QMLXB
#undef QMLX
    }
    switch (bits) {
#define MLX_CASE(B) \
    case B: return run_mm(DecMlx<B>{wq, scales, biases, sdt, gshift, K}, y, x, M, N, K, s, bf);
        MLX_CASE(2) MLX_CASE(3) MLX_CASE(4) MLX_CASE(5) MLX_CASE(6) MLX_CASE(8)
#undef MLX_CASE
    default: return cudaErrorInvalidValue;
    }
}

extern "C" cudaError_t mlxn_cu_matmul_raw(float *y, const float *x, const void *w, int wt, int64_t M, int64_t N,
                                          int64_t K, void *scratch, cudaStream_t s, bool x_ready) {
    return matmul_raw(y, x, w, wt, M, N, K, scratch, s, true, x_ready && M == 1 && scratch);
}
extern "C" cudaError_t mlxn_cu_matmul_mlx_raw(float *y, const float *x, const uint32_t *wq, const void *scales,
                                              const void *biases, int sdt, int bits, int group, int64_t M, int64_t N,
                                              int64_t K, void *scratch, cudaStream_t s, bool x_ready) {
    return matmul_mlx_raw(y, x, wq, scales, biases, sdt, bits, group, M, N, K, scratch, s, true,
                          x_ready && M == 1 && scratch);
}

cudaError_t mlxn_cu_matmul(const cu_node *n, void *scratch, cudaStream_t s) {
    const cu_tensor *t = n->t;
    int64_t M = t[1].rows, K = t[1].cols;
    if (n->f32_act) scratch = NULL; /* the float path: x stays f32 */
    bool bf = !n->f32_act;
    if (scratch && mlxn_cu_gemm_node_scratch(n)) return mlxn_cu_gemm(n, scratch, s); /* prefill: cuBLAS */
    if (n->op == CU_OP_MATMUL)
        return matmul_raw((float *)t[0].data, (const float *)t[1].data, t[2].data, t[2].dtype, M, t[2].shape[0], K,
                          scratch, s, bf);
    return matmul_mlx_raw((float *)t[0].data, (const float *)t[1].data, (const uint32_t *)t[2].data, t[3].data,
                          t[4].data, t[3].dtype, n->mlx.bits, n->mlx.group_size, M, t[2].shape[0], K, scratch, s, bf);
}

size_t mlxn_cu_matmul_node_scratch(const cu_node *n) {
    const cu_tensor *t = n->t;
    size_t g = mlxn_cu_gemm_node_scratch(n);
    if (g) return g;
    if (n->op == CU_OP_MATMUL) return mlxn_cu_matmul_scratch(t[2].dtype, 0, t[1].rows, t[1].cols);
    return mlxn_cu_matmul_scratch(-1, n->mlx.bits, t[1].rows, t[1].cols);
}

/* ---- producer + x quantization in one kernel, ahead of a one-row matmul ----
 * In decode an rms_norm / add_rms_norm (one row) or a silu_mul feeds an
 * M = 1 matmul on the integer path; on one stream the producer and the x
 * quantization (k_quant_x64 for k_mlx4g, k_quant_x for k_mmvq) are two
 * dependent launches in a row. k_pre_quant64 does both: it writes the
 * producer's outputs as the op does, and the int8 x in the matmul's layout
 * xl (XL_G: and y = 0) exactly as those kernels would (block b of 32 warps
 * quantizes elements [1024 b, 1024 b + 1024)). For the norms every block
 * first reads the whole row itself (a few KB from L2, one float4 a thread,
 * kept in shared memory) and sums its squares, so no block waits on
 * another. PRE: 0 rms_norm, 1 add_rms_norm, 2 silu_mul. */
template <int PRE, int WT, bool WP>
__global__ void __launch_bounds__(1024) k_pre_quant64(int xl, uint8_t *xg, float *out, float *sum, const float *a,
                                                      const float *b, const void *w, int64_t K, float eps, float *y,
                                                      int64_t N) {
    /* WP: no kernel of the graph writes w (a model's norm weight), so its
     * element is loaded before the wait, off the critical path */
    float wv = 1.0f;
    const int wpb = (int)(blockDim.x >> 5); /* warps a block: 32, or fewer for silu_mul (silu_warps) */
    if (WP && PRE != 2 && w) {
        int64_t i0 = ((int64_t)blockIdx.x * wpb + (threadIdx.x >> 5)) * 32 + (threadIdx.x & 31);
        if (i0 < K) wv = cu_ld<WT>(w, i0);
    }
    cu_pdl_enter();
    extern __shared__ float4 row4[]; /* norms: the row (a + b), K floats */
    __shared__ float sh[32];
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < N; i += (int64_t)gridDim.x * blockDim.x)
        y[i] = 0.0f;
    float rs = 1.0f;
    const float *row = (const float *)row4;
    if (PRE != 2) { /* one float4 of a (and b) a thread per pass, all loads issued at once */
        float ss = 0;
#pragma unroll 2
        for (int64_t i = threadIdx.x; i < K / 4; i += blockDim.x) {
            float4 v = ((const float4 *)a)[i];
            if (PRE == 1) {
                float4 c = ((const float4 *)b)[i];
                v.x += c.x, v.y += c.y, v.z += c.z, v.w += c.w;
            }
            row4[i] = v;
            ss += v.x * v.x + v.y * v.y + v.z * v.z + v.w * v.w;
        }
        ss = cu_block_sum(ss, sh); /* its barriers also publish row4 */
        rs = (float)(1.0 / sqrt((double)ss / (double)K + (double)eps));
    }
    int64_t bq = (int64_t)blockIdx.x * wpb + (threadIdx.x >> 5);
    int lane = threadIdx.x & 31;
    if (bq >= K / 32) return;
    int64_t i = bq * 32 + lane;
    float v;
    if (PRE == 2) {
        v = silu_f(a[i]) * b[i];
    } else {
        float xv = row[i];
        if (PRE == 1) sum[i] = xv;
        v = xv * rs;
        if (w) v *= WP ? wv : cu_ld<WT>(w, i);
    }
    out[i] = v;
    x_store(xl, xg, bq, lane, v);
}

/* Where mm wants its int8 x written by a producer (XL_*): one row of x on
 * the integer path; k_mlx4g's layout where that kernel takes mm. */
extern "C" int mlxn_cu_mm_xlayout(const cu_node *mm) {
    const cu_tensor *m = mm->t;
    if ((mm->op != CU_OP_MATMUL && mm->op != CU_OP_MATMUL_MLX) || mm->f32_act || m[1].rows != 1 ||
        m[1].dtype != MLXN_F32 || m[1].cols % 32 || mlxn_cu_gemm_node_scratch(mm))
        return XL_NONE;
    int64_t N = m[2].shape[0], K = m[1].cols;
    if (mm->op == CU_OP_MATMUL) {
        if (!int_path(m[2].dtype, 0)) return XL_NONE;
        return m[2].dtype == MLXN_Q4_K && q4kg_takes(N, K) ? XL_QZ : XL_Q;
    }
    if (m[3].dtype != MLXN_F32 && m[3].dtype != MLXN_F16 && m[3].dtype != MLXN_BF16) return XL_NONE;
    int g = mm->mlx.group_size, gshift = g == 32 ? 5 : g == 64 ? 6 : g == 128 ? 7 : -1;
    if (gshift < 0 || !int_path(-1, mm->mlx.bits)) return XL_NONE;
    return mm->mlx.bits == 4 && mlx4g_takes(gshift, N, K) ? XL_G : XL_Q;
}

extern "C" bool mlxn_cu_fusable(const cu_node *pre, const cu_node *mm) {
    const cu_tensor *t = pre->t, *m = mm->t;
    if (!mlxn_cu_mm_xlayout(mm)) return false;
    int64_t K = m[1].cols;
    /* the producer zeroes y while its blocks still read their inputs */
    for (int k = 0; k < pre->n_slots; k++)
        if (mlxn_cu_overlap(&m[0], &t[k])) return false;
    if (pre->op == CU_OP_ATTENTION) {
        static int attq = -1;
        if (attq < 0) attq = mlxn_cu_env_flag("MLXN_CU_ATTQ", 1);
        return attq && mlxn_cu_attention_quantable(pre) && m[1].data == t[0].data && t[0].elems == K;
    }
    const cu_tensor *out, *ins[2] = {NULL, NULL}, *wt = NULL;
    if (pre->op == CU_OP_RMS_NORM) out = &t[0], ins[0] = &t[1], wt = &t[2];
    else if (pre->op == CU_OP_ADD_RMS_NORM) out = &t[1], ins[0] = &t[2], ins[1] = &t[3], wt = &t[4];
    else if (pre->op == CU_OP_SILU_MUL) out = &t[0], ins[0] = &t[1], ins[1] = &t[2];
    else return false;
    /* the matmul's x is exactly the producer's one-row output, all f32 */
    if (m[1].data != out->data || m[1].elems != K || out->elems != K || out->dtype != MLXN_F32) return false;
    for (int k = 0; k < 2; k++)
        if (ins[k] && (ins[k]->dtype != MLXN_F32 || ins[k]->elems != K)) return false;
    if (wt && wt->data && (wt->elems != K || (wt->dtype != MLXN_F32 && wt->dtype != MLXN_F16 && wt->dtype != MLXN_BF16)))
        return false;
    if (pre->op != CU_OP_SILU_MUL) {
        if (K > 8192) return false; /* the row in shared memory: <= 32 KB */
        for (int k = 0; k < 2; k++)
            if (ins[k] && (uintptr_t)ins[k]->data % 16) return false; /* float4 loads */
        /* blocks read the whole row before they write their part: no output
         * may share bytes with an input (the op allows in-place use) */
        const cu_tensor *outs[2] = {out, pre->op == CU_OP_ADD_RMS_NORM ? &t[0] : NULL};
        for (int o = 0; o < 2; o++)
            for (int k = 0; k < 2; k++)
                if (outs[o] && ins[k] && mlxn_cu_overlap(outs[o], ins[k])) return false;
        if (outs[1] && (outs[1]->elems != K || mlxn_cu_overlap(outs[0], outs[1]))) return false;
    }
    return true;
}

/* Warps a block of the silu_mul + quantization kernel (one 32-block of x
 * a warp): 8, so its blocks fit beside the gate/up matmul's still running
 * (8B decode, H100, two rounds: q4 g64 tg128 499.1 / 502.3 with 32 warps,
 * 507.1 / 507.1 with 8, 504.7 / 506.1 with 16, 506.4 / 504.8 with 4; q4_k
 * 455.9 / 456.5 -> 459.4 / 459.1 with 8); MLXN_CU_SILU_WARPS = 4, 16 or 32
 * (measuring). */
static int silu_warps(void) {
    static int w = -1;
    if (w < 0) {
        const char *e = getenv("MLXN_CU_SILU_WARPS");
        w = e && *e ? atoi(e) : 8;
        if (w != 4 && w != 16 && w != 32) w = 8;
    }
    return w;
}

extern "C" cudaError_t mlxn_cu_launch_fused(const cu_node *pre, const cu_node *mm, void *scratch, cudaStream_t s,
                                            bool w_const, const cu_epi *epi) {
    if (!scratch || !mlxn_cu_fusable(pre, mm)) return cudaErrorInvalidValue;
    const cu_tensor *t = pre->t, *m = mm->t;
    int64_t K = m[1].cols;
    int xl = mlxn_cu_mm_xlayout(mm);
    /* y = 0 only for k_mlx4g / k_q4kg (they add partial sums); k_mmvq writes y */
    float *y = mlxn_cu_xl_zeroes(xl) ? (float *)m[0].data : NULL;
    int64_t N = mlxn_cu_xl_zeroes(xl) ? m[2].shape[0] : 0;
    uint8_t *xg = (uint8_t *)scratch;
    unsigned grid = cu_blocks(K / 32, 32);
    float eps = pre->eps;
    size_t smem = pre->op == CU_OP_SILU_MUL ? 0 : (size_t)K * 4;
    if (pre->op == CU_OP_ATTENTION) {
        cudaError_t ea = mlxn_cu_launch_attention_quant(pre, xl, xg, y, N, s);
        if (ea != cudaSuccess) return ea;
    } else if (pre->op == CU_OP_SILU_MUL) {
        int sw = silu_warps(); /* no whole-row read: any number of warps a block */
        cu_launch(k_pre_quant64<2, MLXN_F32, false>, cu_blocks(K / 32, sw), 32 * sw, 0, s, xl, xg, (float *)t[0].data,
                  (float *)NULL,
                  (const float *)t[1].data, (const float *)t[2].data, (const void *)NULL, K, eps, y, N);
    } else {
        bool add = pre->op == CU_OP_ADD_RMS_NORM;
        const cu_tensor &w = add ? t[4] : t[2];
        float *out = (float *)(add ? t[1].data : t[0].data), *sum = add ? (float *)t[0].data : NULL;
        const float *a = (const float *)(add ? t[2].data : t[1].data), *b = add ? (const float *)t[3].data : NULL;
        int wt = w.data ? w.dtype : MLXN_F32;
#define PQ(P, W)                                                                                                  \
    (w_const ? cu_launch(k_pre_quant64<P, W, true>, grid, 1024, smem, s, xl, xg, out, sum, a, b, (const void *)w.data, \
                         K, eps, y, N)                                                                                \
             : cu_launch(k_pre_quant64<P, W, false>, grid, 1024, smem, s, xl, xg, out, sum, a, b, (const void *)w.data, \
                         K, eps, y, N))
        if (add) {
            if (wt == MLXN_F16) PQ(1, MLXN_F16);
            else if (wt == MLXN_BF16) PQ(1, MLXN_BF16);
            else PQ(1, MLXN_F32);
        } else {
            if (wt == MLXN_F16) PQ(0, MLXN_F16);
            else if (wt == MLXN_BF16) PQ(0, MLXN_BF16);
            else PQ(0, MLXN_F32);
        }
#undef PQ
    }
    CU_LAUNCH_CHECK();
    return mlxn_cu_launch_mm_ready(mm, scratch, s, epi);
}

/* The byte layout of a cu_epi's buffer (MLXN_CU_EPI_BYTES): the partial
 * sums per 32-block of x, then mm2's int8 x. */
enum { EPI_SSP = 0, EPI_XG = 1024 };
static_assert(EPI_XG + EPI_MAX_K / 32 * XQ_BYTES <= MLXN_CU_EPI_BYTES &&
                  EPI_XG + EPI_MAX_K / 64 * XG_BYTES <= MLXN_CU_EPI_BYTES && EPI_MAX_K / 32 * 4 <= EPI_XG,
              "epilogue buffer");

/* Whether two tensors are the same bytes (an op's in-place form) or share none. */
static bool same_or_apart(const cu_tensor *a, const cu_tensor *b) {
    return !mlxn_cu_overlap(a, b) || (a->data == b->data && a->nbytes == b->nbytes);
}

extern "C" bool mlxn_cu_epi_ok(const cu_node *mm1, const cu_node *nm, const cu_node *mm2) {
    static int on = -1; /* MLXN_CU_EPI=0: the norm runs as its own kernel (measuring) */
    if (on < 0) on = mlxn_cu_env_flag("MLXN_CU_EPI", 1);
    if (!on || nm->op != CU_OP_ADD_RMS_NORM) return false;
    /* a persistent kernel on both sides: k_mlx4g (MLX 4-bit, layout XL_G)
     * or k_q4kg (q4_k, XL_QZ; MLXN_CU_Q4K_EPI=0 leaves it out); k_mmvq
     * (blocks of whole rows, several waves) as the first ran 6-8 % slower
     * decode with its blocks in clusters (H100, synthetic 8B q4_0 and 1B
     * q4_1; bench/RESULTS.md) */
    bool q4k = q4k_epi_on();
    int xl1 = mlxn_cu_mm_xlayout(mm1), xl2 = mlxn_cu_mm_xlayout(mm2);
    if (!(xl1 == XL_G || (q4k && xl1 == XL_QZ)) || !(xl2 == XL_G || (q4k && xl2 == XL_QZ))) return false;
    const cu_tensor *t = nm->t, *y1 = &mm1->t[0], *y2 = &mm2->t[0];
    int64_t N1 = mm1->t[2].shape[0], K1 = mm1->t[1].cols, K2 = mm2->t[1].cols;
    if (N1 != K2 || K2 > EPI_MAX_K || y1->elems != N1 || y1->dtype != MLXN_F32) return false;
    if (!(xl1 == XL_G ? mlx4g_epi_rows(mm1->t[3].dtype, N1, K1) : q4kg_epi_rows(N1, K1))) return false;
    const cu_tensor *sum = &t[0], *out = &t[1], *a = &t[2], *b = &t[3], *w = &t[4];
    const cu_tensor *h = a->data == y1->data ? b : b->data == y1->data ? a : NULL;
    if (!h || (h == a ? b : a)->nbytes != y1->nbytes) return false;
    const cu_tensor *f32s[4] = {sum, out, a, b};
    for (int k = 0; k < 4; k++)
        if (f32s[k]->dtype != MLXN_F32 || f32s[k]->elems != N1) return false;
    if (mm2->t[1].data != out->data || mm2->t[1].elems != K2) return false;
    if (w->data && (w->elems != N1 || (w->dtype != MLXN_F32 && w->dtype != MLXN_F16 && w->dtype != MLXN_BF16)))
        return false;
    /* mm1's cluster leaders read h and y1 and write sum, element by
     * element; mm2 writes out from sum the same way and adds into y2, which
     * mm1 zeroes */
    if (mlxn_cu_overlap(h, y1) || !same_or_apart(sum, h) || !same_or_apart(sum, y1)) return false;
    if (!same_or_apart(out, sum) || mlxn_cu_overlap(out, h) || mlxn_cu_overlap(out, y1)) return false;
    const cu_tensor *no2[5] = {y1, h, sum, out, w};
    for (int k = 0; k < 5; k++)
        if (mlxn_cu_overlap(y2, no2[k])) return false;
    for (int k = 2; k < 5; k++) /* the weights: read before the wait */
        for (int j = 0; j < 2; j++)
            if (mlxn_cu_overlap(&mm1->t[k], j ? out : sum) || mlxn_cu_overlap(&mm2->t[k], j ? out : sum) ||
                mlxn_cu_overlap(&mm2->t[k], y1))
                return false;
    return true;
}

/* mm's one-row integer-path kernel, x already in scratch, with the norm's
 * halves ep / rq (NULL: none). */
static cudaError_t mm_ready(const cu_node *mm, void *scratch, cudaStream_t s, const MmEpi *ep, const MmRs *rq) {
    const cu_tensor *m = mm->t;
    int64_t N = m[2].shape[0], K = m[1].cols;
    float *y = (float *)m[0].data;
    if (mm->op == CU_OP_MATMUL)
        return matmul_raw(y, (const float *)m[1].data, m[2].data, m[2].dtype, 1, N, K, scratch, s, true, true, ep, rq);
    return matmul_mlx_raw(y, (const float *)m[1].data, (const uint32_t *)m[2].data, m[3].data, m[4].data, m[3].dtype,
                          mm->mlx.bits, mm->mlx.group_size, 1, N, K, scratch, s, true, true, ep, rq);
}

extern "C" cudaError_t mlxn_cu_launch_mm_ready(const cu_node *mm, void *scratch, cudaStream_t s, const cu_epi *epi) {
    if (!mlxn_cu_mm_xlayout(mm)) return cudaErrorInvalidValue;
    if (!epi) return mm_ready(mm, scratch, s, NULL, NULL);
    if (!epi->buf || !mlxn_cu_epi_ok(mm, epi->norm, epi->mm2)) return cudaErrorInvalidValue;
    const cu_tensor *t = epi->norm->t, *m = mm->t;
    const cu_node *mm2 = epi->mm2;
    uint8_t *buf = (uint8_t *)epi->buf;
    int xl2 = mlxn_cu_mm_xlayout(mm2);
    MmEpi ep = {};
    ep.h = (const float *)(t[2].data == m[0].data ? t[3].data : t[2].data);
    ep.sum = (float *)t[0].data;
    ep.w = t[4].data;
    ep.wdt = t[4].dtype;
    ep.xg = buf + EPI_XG;
    ep.xl = xl2;
    ep.ssp = (float *)(buf + EPI_SSP);
    ep.y2 = mlxn_cu_xl_zeroes(xl2) ? (float *)mm2->t[0].data : NULL; /* mm2 adds into it */
    ep.n2 = mm2->t[2].shape[0];
    MmRs rq = {};
    rq.ssp = ep.ssp;
    rq.eps = epi->norm->eps;
    rq.sum = ep.sum;
    rq.w = ep.w;
    rq.wdt = ep.wdt;
    rq.out = (float *)t[1].data;
    cudaError_t e = mm_ready(mm, scratch, s, &ep, NULL);
    return e != cudaSuccess ? e : mm_ready(mm2, ep.xg, s, NULL, &rq);
}

/* ---- gathers: out[T, D] = decode(table row ids[t]); NaN rows for bad ids ---- */

template <class F>
__global__ void k_get_rows(F f, float *out, const int32_t *ids, int64_t T, int64_t V, int64_t D) {
    cu_pdl_enter();
    int64_t nu = D / F::U;
    int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= T * nu) return;
    int64_t t = i / nu, u = i % nu;
    int32_t id = ids[t];
    float *o = out + t * D + u * F::U;
    if (id < 0 || id >= V) {
#pragma unroll
        for (int j = 0; j < F::U; j++) o[j] = __int_as_float(0x7fc00000);
        return;
    }
    float w[F::U];
    f.decode(id, u, w);
#pragma unroll
    for (int j = 0; j < F::U; j++) o[j] = w[j];
}

/* Up to GR_EL_MAX elements (a decode step's embedding row): one thread an
 * element, each decoding its unit and keeping its own value, so a warp's
 * stores are coalesced and the row is spread over D threads instead of
 * D / U (k_get_rows: one block of 128 for a 4096-wide MLX 4-bit row, 6.4 us
 * at the start of every 8B decode step on an H100). */
#define GR_EL_MAX 65536
template <class F>
__global__ void k_get_rows_el(F f, float *out, const int32_t *ids, int64_t T, int64_t V, int64_t D) {
    cu_pdl_enter();
    int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= T * D) return;
    int64_t t = i / D, d = i % D;
    int32_t id = ids[t];
    if (id < 0 || id >= V) {
        out[i] = __int_as_float(0x7fc00000);
        return;
    }
    float w[F::U];
    f.decode(id, d / F::U, w);
    int j = (int)(d % F::U);
    float v = w[0];
#pragma unroll
    for (int k = 1; k < F::U; k++) v = k == j ? w[k] : v; /* no dynamic index into w */
    out[i] = v;
}

__global__ void k_get_rows_scalar(float *out, const void *tab, int dt, const int32_t *ids, int64_t T, int64_t V,
                                  int64_t D) {
    cu_pdl_enter();
    int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= T * D) return;
    int64_t t = i / D, d = i % D;
    int32_t id = ids[t];
    out[i] = (id < 0 || id >= V) ? __int_as_float(0x7fc00000) : cu_ld_rt(tab, dt, (int64_t)id * D + d);
}

template <class F>
static cudaError_t run_gr(const F &f, float *out, const int32_t *ids, int64_t T, int64_t V, int64_t D,
                          cudaStream_t s) {
    static int el = -1; /* MLXN_CU_GR_EL=0: one thread a unit at every size (measuring) */
    if (el < 0) el = mlxn_cu_env_flag("MLXN_CU_GR_EL", 1);
    if (el && T * D <= GR_EL_MAX) cu_launch(k_get_rows_el<F>, cu_blocks(T * D, 256), 256, 0, s, f, out, ids, T, V, D);
    else cu_launch(k_get_rows<F>, cu_blocks(T * (D / F::U), 128), 128, 0, s, f, out, ids, T, V, D);
    CU_LAUNCH_CHECK();
    return cudaSuccess;
}

cudaError_t mlxn_cu_get_rows(const cu_node *n, cudaStream_t s) {
    const cu_tensor *t = n->t;
    float *out = (float *)t[0].data;
    int64_t T = t[0].rows, D = t[0].cols;
    if (n->op == CU_OP_GET_ROWS_MLX) {
        const int32_t *ids = (const int32_t *)t[4].data;
        int g = n->mlx.group_size, gshift = g == 32 ? 5 : g == 64 ? 6 : 7;
        switch (n->mlx.bits) {
#define MLX_CASE(B)                                                                                          \
    case B:                                                                                                  \
        return run_gr(DecMlx<B>{(const uint32_t *)t[1].data, t[2].data, t[3].data, t[2].dtype, gshift, D}, \
                      out, ids, T, t[1].shape[0], D, s);
            MLX_CASE(2) MLX_CASE(3) MLX_CASE(4) MLX_CASE(5) MLX_CASE(6) MLX_CASE(8)
#undef MLX_CASE
        default: return cudaErrorInvalidValue;
        }
    }
    const cu_tensor *tab = &t[1];
    const int32_t *ids = (const int32_t *)t[2].data;
    int64_t V = tab->shape[0];
    const uint8_t *wb = (const uint8_t *)tab->data;
    int64_t rb = (int64_t)row_bytes(tab->dtype, D);
    bool aligned = ((uintptr_t)wb % 16) == 0 && rb % 16 == 0 && D % 8 == 0;
    switch (tab->dtype) {
    case MLXN_F32:
    case MLXN_F16:
    case MLXN_BF16:
        if (!aligned) {
            cu_launch(k_get_rows_scalar, cu_blocks(T * D, 256), 256, 0, s, out, tab->data, tab->dtype, ids, T, V, D);
            CU_LAUNCH_CHECK();
            return cudaSuccess;
        }
        if (tab->dtype == MLXN_F32) return run_gr(DecF32{wb, rb}, out, ids, T, V, D, s);
        if (tab->dtype == MLXN_F16) return run_gr(DecHalf<false>{wb, rb}, out, ids, T, V, D, s);
        return run_gr(DecHalf<true>{wb, rb}, out, ids, T, V, D, s);
    case MLXN_Q4_0: return run_gr(DecQ4_0{wb, rb}, out, ids, T, V, D, s);
    case MLXN_Q4_1: return run_gr(DecQ4_1{wb, rb}, out, ids, T, V, D, s);
    case MLXN_Q8_0: return run_gr(DecQ8_0{wb, rb}, out, ids, T, V, D, s);
    case MLXN_Q4_K: return run_gr(DecQK45<false>{wb, rb}, out, ids, T, V, D, s);
    case MLXN_Q5_K: return run_gr(DecQK45<true>{wb, rb}, out, ids, T, V, D, s);
    case MLXN_Q6_K: return run_gr(DecQ6K{wb, rb}, out, ids, T, V, D, s);
    default: return cudaErrorInvalidValue;
    }
}

/* ---- expert-routed matmul: out[T*top_k, N], row t*top_k+j = x_row * W[e]^T
 * with e = ids[t, j] read on the device. Experts are stacked rows of one
 * decoder (row e*N + n). One warp per output element; NaN for a bad id. ---- */

template <class F>
__global__ void k_matmul_id(F f, float *out, const float *x, const int32_t *ids, int64_t slots, int top_k,
                            bool x_per_slot, int64_t E, int64_t N, int64_t K) {
    cu_pdl_enter();
    int64_t warp = ((int64_t)blockIdx.x * blockDim.x + threadIdx.x) / 32;
    int lane = threadIdx.x % 32;
    if (warp >= slots * N) return;
    int64_t slot = warp / N, n = warp % N;
    int32_t e = ids[slot];
    if (e < 0 || e >= E) {
        if (lane == 0) out[slot * N + n] = __int_as_float(0x7fc00000);
        return;
    }
    const float *xr = x + (x_per_slot ? slot : slot / top_k) * K;
    float acc = 0.0f, w[F::U];
    for (int64_t u = lane; u < K / F::U; u += 32) {
        f.decode((int64_t)e * N + n, u, w);
#pragma unroll
        for (int j = 0; j < F::U; j++) acc += w[j] * xr[u * F::U + j];
    }
    for (int o = 16; o > 0; o >>= 1) acc += __shfl_xor_sync(0xffffffffu, acc, o);
    if (lane == 0) out[slot * N + n] = acc;
}

template <class F>
static cudaError_t run_mid(const F &f, const cu_node *nd, cudaStream_t s) {
    const cu_tensor *t = nd->t;
    int64_t E = t[2].shape[0], N = t[2].shape[1], K = t[2].shape[2], slots = t[3].elems;
    cu_launch(k_matmul_id<F>, cu_blocks(slots * N * 32, 256), 256, 0, s, f, (float *)t[0].data, (const float *)t[1].data,
                                                                  (const int32_t *)t[3].data, slots, nd->mid_top_k,
                                                                  nd->mid_x_per_slot, E, N, K);
    CU_LAUNCH_CHECK();
    return cudaSuccess;
}

cudaError_t mlxn_cu_matmul_id(const cu_node *n, cudaStream_t s) {
    const cu_tensor *w = &n->t[2];
    const uint8_t *wb = (const uint8_t *)w->data;
    int64_t rb = (int64_t)row_bytes(w->dtype, w->shape[2]);
    switch (w->dtype) {
    case MLXN_F32: return run_mid(DecF32{wb, rb}, n, s);
    case MLXN_F16: return run_mid(DecHalf<false>{wb, rb}, n, s);
    case MLXN_BF16: return run_mid(DecHalf<true>{wb, rb}, n, s);
    case MLXN_Q4_0: return run_mid(DecQ4_0{wb, rb}, n, s);
    case MLXN_Q4_1: return run_mid(DecQ4_1{wb, rb}, n, s);
    case MLXN_Q8_0: return run_mid(DecQ8_0{wb, rb}, n, s);
    case MLXN_Q4_K: return run_mid(DecQK45<false>{wb, rb}, n, s);
    case MLXN_Q5_K: return run_mid(DecQK45<true>{wb, rb}, n, s);
    case MLXN_Q6_K: return run_mid(DecQ6K{wb, rb}, n, s);
    default: return cudaErrorInvalidValue;
    }
}
