/*
 * kernels_elementwise.cu — add/mul (row broadcast, f32/f16/bf16 b), the
 * unary ops, silu_mul, copy/convert, kv_write and argmax. Same formulas as
 * src/backend/cpu/cpu_kernels.c; grid-stride loops over elements.
 */
#include "backend/cuda/cuda_common.cuh"

#include <string.h>

#define GRID_STRIDE(i, n) for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < (n); i += (int64_t)gridDim.x * blockDim.x)

static unsigned grid_for(int64_t n) {
    int64_t b = (n + 255) / 256;
    return (unsigned)(b < 65535 * 4 ? (b > 0 ? b : 1) : 65535 * 4);
}

template <int BT, bool ADD>
__global__ void k_binary(float *out, const float *a, const void *b, int64_t n, int64_t bn) {
    cu_pdl_enter();
    GRID_STRIDE(i, n) {
        float v = cu_ld<BT>(b, bn == n ? i : i % bn);
        out[i] = ADD ? a[i] + v : a[i] * v;
    }
}


__global__ void k_unary(float *out, const float *a, int64_t n, int op, float f, int mode) {
    cu_pdl_enter();
    GRID_STRIDE(i, n) {
        float x = a[i], y;
        switch (op) {
        case CU_OP_SCALE: y = x * f; break;
        case CU_OP_SILU: y = silu_f(x); break;
        case CU_OP_SOFTCAP: y = tanhf(x / f) * f; break;
        default: /* GELU */
            if (mode) {
                const float c = 0.7978845608028654f;
                y = 0.5f * x * (1.0f + tanhf(c * (x + 0.044715f * x * x * x)));
            } else {
                y = 0.5f * x * (1.0f + erff(x * 0.70710678118654752f));
            }
        }
        out[i] = y;
    }
}

__global__ void k_silu_mul(float *out, const float *g, const float *u, int64_t n) {
    cu_pdl_enter();
    GRID_STRIDE(i, n) out[i] = silu_f(g[i]) * u[i];
}

__global__ void k_convert(void *out, int odt, const void *x, int xdt, int64_t n) {
    cu_pdl_enter();
    GRID_STRIDE(i, n) cu_st_rt(out, odt, i, cu_ld_rt(x, xdt, i));
}

/* 16-byte grid-stride copy (the bench's SM-driven copy-bandwidth floor). */
__global__ void k_copy16(uint4 *dst, const uint4 *src, int64_t n) {
    cu_pdl_enter();
    GRID_STRIDE(i, n) dst[i] = src[i];
}

/* Argmax of long rows (an output head's logits): AM_PARTS blocks a row each
 * take a contiguous chunk and leave (value, index) in scratch; a second
 * kernel picks per row. Ties go to the lowest index, NaNs are skipped (as
 * the one-block kernel and the CPU). */
#define AM_PARTS 64
#define AM_MIN_COLS 16384

static __device__ __forceinline__ void am_better(float &best, int64_t &bi, float v, int64_t i) {
    if (i >= 0 && (bi < 0 || v > best || (v == best && i < bi))) { best = v; bi = i; }
}

/* The block's best (value, index) by am_better, in thread 0. */
static __device__ __forceinline__ void am_block(float &best, int64_t &bi) {
    for (int o = 16; o > 0; o >>= 1) {
        float ov = __shfl_xor_sync(0xffffffffu, best, o);
        int64_t oi = __shfl_xor_sync(0xffffffffu, bi, o);
        am_better(best, bi, ov, oi);
    }
    __shared__ float sv[32];
    __shared__ int64_t si[32];
    int lane = threadIdx.x & 31, w = threadIdx.x >> 5;
    if (lane == 0) { sv[w] = best; si[w] = bi; }
    __syncthreads();
    if (threadIdx.x == 0)
        for (int k = 1; k < (int)(blockDim.x >> 5); k++) am_better(best, bi, sv[k], si[k]);
}

/* One block per row; first index on ties (as the CPU's strict '>'). */
__global__ void k_argmax(int32_t *out, const float *x, int64_t C) {
    cu_pdl_enter();
    const float *r = x + blockIdx.x * C;
    float best = -INFINITY;
    int64_t bi = -1;
    for (int64_t i = threadIdx.x; i < C; i += blockDim.x) {
        float v = r[i];
        if (bi < 0 || v > best) { best = v; bi = i; }
    }
    am_block(best, bi);
    if (threadIdx.x == 0) out[blockIdx.x] = (int32_t)(bi < 0 ? 0 : bi);
}

__global__ void k_argmax_part(float2 *part, const float *x, int64_t C) {
    cu_pdl_enter();
    int64_t row = blockIdx.y, per = (C + AM_PARTS - 1) / AM_PARTS;
    int64_t i0 = blockIdx.x * per, i1 = i0 + per < C ? i0 + per : C;
    const float *r = x + row * C;
    float best = -INFINITY;
    int64_t bi = -1;
    for (int64_t i = i0 + threadIdx.x; i < i1; i += blockDim.x) {
        float v = r[i];
        if (bi < 0 || v > best) { best = v; bi = i; }
    }
    am_block(best, bi);
    if (threadIdx.x == 0) part[row * AM_PARTS + blockIdx.x] = make_float2(best, __int_as_float((int)bi));
}

__global__ void k_argmax_final(int32_t *out, const float2 *part) {
    cu_pdl_enter();
    float2 p = part[blockIdx.x * AM_PARTS + threadIdx.x];
    float best = p.x;
    int64_t bi = __float_as_int(p.y);
    am_block(best, bi);
    if (threadIdx.x == 0) out[blockIdx.x] = (int32_t)(bi < 0 ? 0 : bi);
}

size_t mlxn_cu_argmax_scratch(const cu_node *n) {
    return n->t[1].cols >= AM_MIN_COLS ? (size_t)n->t[1].rows * AM_PARTS * sizeof(float2) : 0;
}

cudaError_t mlxn_cu_argmax(const cu_node *n, void *scratch, cudaStream_t s) {
    const cu_tensor *t = n->t;
    int64_t R = t[1].rows, C = t[1].cols;
    if (C >= AM_MIN_COLS && scratch && R <= 65535) {
        cu_launch(k_argmax_part, dim3(AM_PARTS, (unsigned)R), 256, 0, s, (float2 *)scratch, (const float *)t[1].data, C);
        CU_LAUNCH_CHECK();
        cu_launch(k_argmax_final, (unsigned)R, AM_PARTS, 0, s, (int32_t *)t[0].data, (const float2 *)scratch);
    } else {
        cu_launch(k_argmax, (unsigned)R, 256, 0, s, (int32_t *)t[0].data, (const float *)t[1].data, C);
    }
    CU_LAUNCH_CHECK();
    return cudaSuccess;
}

struct QBytes {
    unsigned char b[CU_QBYTES];
};
__global__ void k_put_bytes(unsigned char *dst, QBytes v, int n) {
    if ((int)threadIdx.x < n) dst[threadIdx.x] = v.b[threadIdx.x];
}
__global__ void k_get_bytes(volatile unsigned char *dst, const unsigned char *src, int n) {
    if ((int)threadIdx.x < n) dst[threadIdx.x] = src[threadIdx.x];
    __threadfence_system();
}

cudaError_t mlxn_cu_put_bytes(void *dst, const void *src, size_t n, cudaStream_t s) {
    if (n > CU_QBYTES) return cudaErrorInvalidValue;
    QBytes v;
    memcpy(v.b, src, n);
    k_put_bytes<<<1, CU_QBYTES, 0, s>>>((unsigned char *)dst, v, (int)n);
    return cudaGetLastError();
}

cudaError_t mlxn_cu_get_bytes(void *dst, const void *src, size_t n, cudaStream_t s) {
    if (n > CU_QBYTES) return cudaErrorInvalidValue;
    k_get_bytes<<<1, CU_QBYTES, 0, s>>>((volatile unsigned char *)dst, (const unsigned char *)src, (int)n);
    return cudaGetLastError();
}

cudaError_t mlxn_cu_copy_raw(void *dst, const void *src, size_t bytes, cudaStream_t s) {
    int dev = 0, sms = 132;
    cudaGetDevice(&dev);
    cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev);
    cu_launch(k_copy16, (unsigned)sms * 8, 512, 0, s, (uint4 *)dst, (const uint4 *)src, (int64_t)(bytes / 16));
    CU_LAUNCH_CHECK();
    return cudaSuccess;
}

cudaError_t mlxn_cu_elementwise(const cu_node *n, cudaStream_t s) {
    const cu_tensor *t = n->t;
    switch (n->op) {
    case CU_OP_ADD:
    case CU_OP_MUL: {
        int64_t total = t[1].elems, bn = t[2].elems;
        float *o = (float *)t[0].data;
        const float *a = (const float *)t[1].data;
        bool add = n->op == CU_OP_ADD;
        unsigned g = grid_for(total);
#define BIN(BT) add ? cu_launch(k_binary<BT, true>, g, 256, 0, s, o, a, t[2].data, total, bn) \
                    : cu_launch(k_binary<BT, false>, g, 256, 0, s, o, a, t[2].data, total, bn)
        if (t[2].dtype == MLXN_F32) BIN(MLXN_F32);
        else if (t[2].dtype == MLXN_F16) BIN(MLXN_F16);
        else BIN(MLXN_BF16);
#undef BIN
        break;
    }
    case CU_OP_SCALE:
    case CU_OP_SILU:
    case CU_OP_GELU:
    case CU_OP_SOFTCAP:
        cu_launch(k_unary, grid_for(t[1].elems), 256, 0, s, (float *)t[0].data, (const float *)t[1].data, t[1].elems,
                                                      n->op, n->f, n->mode);
        break;
    case CU_OP_SILU_MUL:
        cu_launch(k_silu_mul, grid_for(t[0].elems), 256, 0, s, (float *)t[0].data, (const float *)t[1].data,
                                                         (const float *)t[2].data, t[0].elems);
        break;
    case CU_OP_COPY:
        if (t[0].dtype == t[1].dtype) {
            if (t[0].data != t[1].data) return cudaMemcpyAsync(t[0].data, t[1].data, t[0].nbytes, cudaMemcpyDeviceToDevice, s);
            return cudaSuccess;
        }
        cu_launch(k_convert, grid_for(t[0].elems), 256, 0, s, t[0].data, t[0].dtype, t[1].data, t[1].dtype, t[0].elems);
        break;
    default:
        return cudaErrorInvalidValue;
    }
    CU_LAUNCH_CHECK();
    return cudaSuccess;
}

/* Spin about `us` microseconds (the profiler holds the stream with it while
 * the host enqueues a step, so the step's kernels then run back to back). */
__global__ void k_spin(long long cycles) {
    cu_pdl_enter();
    long long t0 = clock64();
    while (clock64() - t0 < cycles) {
    }
}
extern "C" cudaError_t mlxn_cu_spin(int us, cudaStream_t s) {
    cu_launch(k_spin, 1, 1, 0, s, (long long)us * 2000); /* ~2 GHz */
    return cudaGetLastError();
}
