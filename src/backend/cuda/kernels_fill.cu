/*
 * kernels_fill.cu — random tensor content made on the device (synthetic
 * model weights): element i of a fill is core/fill.h's function of (seed, i),
 * the same code the host runs, so the bytes equal mlxn_fill_host's. One
 * element per thread in a grid-stride loop; the kernel is memory-bound.
 */
#include "backend/cuda/cuda_internal.h"

template <int KIND>
__global__ void k_fill(void *dst, mlxn_fill f, uint64_t n) {
    for (uint64_t i = blockIdx.x * (uint64_t)blockDim.x + threadIdx.x; i < n; i += (uint64_t)gridDim.x * blockDim.x) {
        if (KIND == MLXN_FILL_BITS) ((uint32_t *)dst)[i] = mlxn_fill_u32(&f, i);
        else if (KIND == MLXN_FILL_BF16) ((uint16_t *)dst)[i] = mlxn_fill_bf16(&f, i);
        else if (KIND == MLXN_FILL_GGML) ((uint8_t *)dst)[i] = mlxn_fill_ggml_byte(&f, i);
        else ((float *)dst)[i] = mlxn_fill_f32(&f, i);
    }
}

cudaError_t mlxn_cu_fill(void *dst, const mlxn_fill *f, size_t n, cudaStream_t s) {
    if (!n) return cudaSuccess;
    uint64_t blocks = (n + 255) / 256;
    unsigned grid = (unsigned)(blocks < 65535u * 8 ? blocks : 65535u * 8);
    switch (f->kind) {
    case MLXN_FILL_BITS: k_fill<MLXN_FILL_BITS><<<grid, 256, 0, s>>>(dst, *f, n); break;
    case MLXN_FILL_BF16: k_fill<MLXN_FILL_BF16><<<grid, 256, 0, s>>>(dst, *f, n); break;
    case MLXN_FILL_F32: k_fill<MLXN_FILL_F32><<<grid, 256, 0, s>>>(dst, *f, n); break;
    case MLXN_FILL_GGML: k_fill<MLXN_FILL_GGML><<<grid, 256, 0, s>>>(dst, *f, n); break;
    default: return cudaErrorInvalidValue;
    }
    return cudaGetLastError();
}
