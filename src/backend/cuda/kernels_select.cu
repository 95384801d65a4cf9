/*
 * kernels_select.cu — top_k: the k largest of each row in descending order,
 * lower index first on ties, NaN ranked last (as the CPU kernel). One block
 * per row makes k passes; pass j takes the best element ranked after the
 * one pass j-1 took, so no mask is stored and any row length works.
 */
#include "backend/cuda/cuda_common.cuh"

/* (v, i) ranks before (w, j)? */
__device__ static inline bool before(float v, int64_t i, float w, int64_t j) {
    return v > w || (v == w && i < j);
}

__global__ void k_top_k(int32_t *oi, float *ov, const float *x, int64_t C, int k) {
    cu_pdl_enter();
    __shared__ float sv[256];
    __shared__ int64_t si[256];
    const float *r = x + (int64_t)blockIdx.x * C;
    float pv = INFINITY;
    int64_t pi = -1; /* the last taken: nothing yet */
    for (int j = 0; j < k; j++) {
        float bv = -INFINITY;
        int64_t bi = -1;
        for (int64_t i = threadIdx.x; i < C; i += blockDim.x) {
            float v = r[i];
            if (v != v) v = -INFINITY;
            bool after = pi < 0 || before(pv, pi, v, i);
            if (after && (bi < 0 || before(v, i, bv, bi))) {
                bv = v;
                bi = i;
            }
        }
        sv[threadIdx.x] = bv;
        si[threadIdx.x] = bi;
        __syncthreads();
        for (int w = blockDim.x / 2; w > 0; w >>= 1) {
            if (threadIdx.x < w) {
                float ov2 = sv[threadIdx.x + w];
                int64_t oi2 = si[threadIdx.x + w];
                if (oi2 >= 0 && (si[threadIdx.x] < 0 || before(ov2, oi2, sv[threadIdx.x], si[threadIdx.x]))) {
                    sv[threadIdx.x] = ov2;
                    si[threadIdx.x] = oi2;
                }
            }
            __syncthreads();
        }
        pv = sv[0];
        pi = si[0];
        if (threadIdx.x == 0) {
            oi[(int64_t)blockIdx.x * k + j] = (int32_t)pi;
            ov[(int64_t)blockIdx.x * k + j] = r[pi];
        }
        __syncthreads();
    }
}

cudaError_t mlxn_cu_top_k(const cu_node *n, cudaStream_t s) {
    const cu_tensor *t = n->t;
    cu_launch(k_top_k, (unsigned)t[2].rows, 256, 0, s, (int32_t *)t[0].data, (float *)t[1].data, (const float *)t[2].data,
                                                t[2].cols, n->topk);
    CU_LAUNCH_CHECK();
    return cudaSuccess;
}
