/*
 * cuda_common.cuh — what every kernel file shares: half/bfloat16 loads and
 * stores with the same rounding as the CPU (round to nearest even), warp and
 * block reductions, and the launch check.
 */
#pragma once

#include "backend/cuda/cuda_internal.h"

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>

#define CU_LAUNCH_CHECK()                         \
    do {                                          \
        cudaError_t e_ = cudaGetLastError();      \
        if (e_ != cudaSuccess) return e_;         \
    } while (0)

static __device__ __forceinline__ float cu_h2f(uint16_t h) { return __half2float(__ushort_as_half(h)); }
static __device__ __forceinline__ float cu_b2f(uint16_t h) { return __uint_as_float((uint32_t)h << 16); }
static __device__ __forceinline__ uint16_t cu_f2h(float f) { return __half_as_ushort(__float2half_rn(f)); }
static __device__ __forceinline__ uint16_t cu_f2b(float f) {
    return __bfloat16_as_ushort(__float2bfloat16_rn(f));
}

/* Element i of a float-typed buffer (f32, f16, bf16). */
template <int DT> static __device__ __forceinline__ float cu_ld(const void *p, int64_t i);
template <> __device__ __forceinline__ float cu_ld<MLXN_F32>(const void *p, int64_t i) {
    return ((const float *)p)[i];
}
template <> __device__ __forceinline__ float cu_ld<MLXN_F16>(const void *p, int64_t i) {
    return cu_h2f(((const uint16_t *)p)[i]);
}
template <> __device__ __forceinline__ float cu_ld<MLXN_BF16>(const void *p, int64_t i) {
    return cu_b2f(((const uint16_t *)p)[i]);
}
static __device__ __forceinline__ float cu_ld_rt(const void *p, int dt, int64_t i) {
    return dt == MLXN_F32 ? cu_ld<MLXN_F32>(p, i) : dt == MLXN_F16 ? cu_ld<MLXN_F16>(p, i) : cu_ld<MLXN_BF16>(p, i);
}
static __device__ __forceinline__ void cu_st_rt(void *p, int dt, int64_t i, float v) {
    if (dt == MLXN_F32) ((float *)p)[i] = v;
    else if (dt == MLXN_F16) ((uint16_t *)p)[i] = cu_f2h(v);
    else ((uint16_t *)p)[i] = cu_f2b(v);
}

static __device__ __forceinline__ float cu_warp_sum(float v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}
static __device__ __forceinline__ float cu_warp_max(float v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

/* Sum over the block (blockDim.x a multiple of 32, at most 1024); every
 * thread gets the result. `sh` holds 32 floats. */
static __device__ __forceinline__ float cu_block_sum(float v, float *sh) {
    int lane = threadIdx.x & 31, w = threadIdx.x >> 5, nw = blockDim.x >> 5;
    v = cu_warp_sum(v);
    __syncthreads();
    if (lane == 0) sh[w] = v;
    __syncthreads();
    v = lane < nw ? sh[lane] : 0.0f;
    return cu_warp_sum(v);
}
static __device__ __forceinline__ float cu_block_max(float v, float *sh) {
    int lane = threadIdx.x & 31, w = threadIdx.x >> 5, nw = blockDim.x >> 5;
    v = cu_warp_max(v);
    __syncthreads();
    if (lane == 0) sh[w] = v;
    __syncthreads();
    v = lane < nw ? sh[lane] : -INFINITY;
    return cu_warp_max(v);
}

/* A warp's 32 values (one a lane) as int8 with one scale: d = amax / 127,
 * the lane's code rint(v / d) (0 when all are 0). */
static __device__ __forceinline__ int quant_lane(float v, float *d) {
    *d = cu_warp_max(fabsf(v)) / 127.0f;
    return *d > 0 ? (int)rintf(v / *d) : 0;
}

#define XG_BYTES 80

/* The int8 x of the MLX 4-bit decode matmul (k_mlx4g, kernels_matmul.cu,
 * where the layout is described): XG_BYTES per 64 elements. Lane `lane` of
 * the warp that quantizes 32-element block b stores its int8, and lane 0 the
 * block's scale and scale x sum. Every lane of the warp must call it. */
static __device__ __forceinline__ void xg_store(uint8_t *xg, int64_t b, int lane, float v) {
    float d;
    int q = quant_lane(v, &d);
    int sm = q;
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) sm += __shfl_xor_sync(0xffffffffu, sm, o);
    uint8_t *g = xg + (b >> 1) * XG_BYTES;
    int h = (int)(b & 1), j = lane & 7;
    g[h * 32 + (lane & ~7) + (j & 1) * 4 + (j >> 1)] = (uint8_t)(int8_t)q;
    if (lane == 0) {
        float *f = (float *)(g + 64);
        f[h] = d;
        f[2 + h] = d * (float)sm;
    }
}

/* The int8 x of the other one-row integer kernels (k_mmvq; layout in
 * quant.cuh, XQ_BLOCK_U4 = 3 uint4 a block): 32 codes, then {d, sum of codes
 * 0..15, sum of codes 16..31, 0}. Every lane of the warp quantizing block b
 * calls it. */
#define XQ_BYTES 48
static __device__ __forceinline__ void xq_store(uint8_t *xq, int64_t b, int lane, float v) {
    float d;
    int q = quant_lane(v, &d);
    int s = q;
#pragma unroll
    for (int o = 8; o > 0; o >>= 1) s += __shfl_xor_sync(0xffffffffu, s, o); /* sums of 16-lane halves */
    uint8_t *blk = xq + b * XQ_BYTES;
    blk[lane] = (uint8_t)(int8_t)q;
    int *tail = (int *)(blk + 32);
    if (lane == 0) {
        tail[0] = __float_as_int(d);
        tail[1] = s;
        tail[3] = 0;
    }
    if (lane == 16) tail[2] = s;
}

/* x_store: block b of x in layout xl (XL_G, or XL_Q / XL_QZ: the same
 * bytes; cuda_internal.h). */
static __device__ __forceinline__ void x_store(int xl, uint8_t *x, int64_t b, int lane, float v) {
    if (xl == XL_G) xg_store(x, b, lane, v);
    else xq_store(x, b, lane, v);
}

/* 16·Σ hi_i·x_i + c over the four bytes: hi_i the high nibble of byte i
 * of q, x_i the signed bytes of x. The nibbles stay in place (q &
 * 0xF0F0F0F0, unsigned bytes: dp4a.u32.s32), so no shift a word; the
 * caller adds the total >> 4 (exact) to its low-nibble sum. */
static __device__ __forceinline__ int dp4a_hi16(uint32_t q, int x, int c) {
    int r;
    asm("dp4a.u32.s32 %0, %1, %2, %3;" : "=r"(r) : "r"(q & 0xF0F0F0F0u), "r"(x), "r"(c));
    return r;
}

static __device__ __forceinline__ float silu_f(float x) { return x / (1.0f + expf(-x)); }

/* Programmatic dependent launch. cu_pdl_wait blocks until the kernel before
 * this one on the stream has completed and its writes are visible (a no-op
 * when the launch had no programmatic dependency, and before sm_90);
 * cu_pdl_trigger lets the next kernel start launching its blocks. Every
 * kernel calls cu_pdl_enter() before it reads or writes global memory: it
 * triggers first, so the next kernel's blocks are resident and waiting by
 * the time this one ends (its launch is off the critical path), then
 * waits. The chain stays ordered: a kernel completes only after its wait
 * returned, i.e. after the kernel before it completed. The M = 1 matmuls
 * first issue loads of their weights, which no kernel writes, then wait;
 * so do the norm + quantization kernel (its norm weight), the rope group
 * (positions, angles) and decode attention (positions, an L2 prefetch of
 * its cache rows) where the capture finds no node that writes them.
 * Measured on an H100 (bench/RESULTS.md): trigger-first with the one-stream
 * capture 403 tok/s against 385 for wait-first (8B 4-bit decode). */
static __device__ __forceinline__ void cu_pdl_wait(void) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
}
static __device__ __forceinline__ void cu_pdl_trigger(void) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
#endif
}
static __device__ __forceinline__ void cu_pdl_enter(void) {
    cu_pdl_trigger();
    cu_pdl_wait();
}

/* An sm_90 feature on the current device, unless the environment variable
 * `env` is set to 0 (read on each call: callers keep the answer). */
static inline bool cu_sm90_feature(const char *env) {
    int dev = 0, major = 0;
    const char *e = getenv(env);
    if (cudaGetDevice(&dev) == cudaSuccess) cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev);
    return major >= 9 && !(e && *e == '0');
}

/* A launch attribute for thread block clusters of cx blocks along x. */
static inline cudaLaunchAttribute cu_cluster_attr(int cx) {
    cudaLaunchAttribute a = {};
    a.id = cudaLaunchAttributeClusterDimension;
    a.val.clusterDim.x = cx;
    a.val.clusterDim.y = 1;
    a.val.clusterDim.z = 1;
    return a;
}

/* Launch kernel k on stream s, with programmatic dependent launch when
 * mlxn_cu_pdl(), in thread block clusters of cx blocks when cx > 0 (sm_90).
 * Returns the launch's status. */
template <typename... KArgs, typename... Args>
static cudaError_t cu_launch_cluster(void (*k)(KArgs...), dim3 grid, dim3 block, size_t smem, cudaStream_t s, int cx,
                                     Args... args) {
    cudaLaunchConfig_t cfg = {};
    cfg.gridDim = grid;
    cfg.blockDim = block;
    cfg.dynamicSmemBytes = smem;
    cfg.stream = s;
    cudaLaunchAttribute at[2];
    int n = 0;
    if (cx > 0) at[n++] = cu_cluster_attr(cx);
    if (mlxn_cu_pdl()) {
        at[n].id = cudaLaunchAttributeProgrammaticStreamSerialization;
        at[n++].val.programmaticStreamSerializationAllowed = 1;
    }
    cfg.attrs = at;
    cfg.numAttrs = (unsigned)n;
    return cudaLaunchKernelEx(&cfg, k, args...);
}
template <typename... KArgs, typename... Args>
static cudaError_t cu_launch(void (*k)(KArgs...), dim3 grid, dim3 block, size_t smem, cudaStream_t s,
                             Args... args) {
    return cu_launch_cluster(k, grid, block, smem, s, 0, args...);
}
/* Clusters of cx blocks of kernel k (block threads, smem bytes) resident at
 * once on the device (0 when unknown). */
template <typename... KArgs>
static int cu_resident_clusters(void (*k)(KArgs...), unsigned grid, unsigned block, size_t smem, int cx) {
    cudaLaunchConfig_t cfg = {};
    cfg.gridDim = dim3(grid);
    cfg.blockDim = dim3(block);
    cfg.dynamicSmemBytes = smem;
    cudaLaunchAttribute at = cu_cluster_attr(cx);
    cfg.attrs = &at;
    cfg.numAttrs = 1;
    int n = 0;
    if (cudaOccupancyMaxActiveClusters(&n, k, &cfg) != cudaSuccess) n = 0;
    cudaGetLastError();
    return n;
}

static inline unsigned cu_blocks(int64_t n, int per) { return (unsigned)((n + per - 1) / per); }
