/*
 * kernels_select.cu — top_k: the k largest of each row in descending order,
 * lower index first on ties, NaN ranked last (as the CPU kernel). One block
 * per row makes k passes; pass j takes the best element ranked after the
 * one pass j-1 took, so no mask is stored and any row length works.
 * Long rows (an output head's logits) with k <= TK_MAXK first take the k
 * best of each of TK_PARTS chunks in TK_PARTS blocks, then one block takes
 * the k best of those candidates: the k best of the row are among them, and
 * the same order (value, then index) picks the same ones.
 */
#include "backend/cuda/cuda_common.cuh"

/* (v, i) ranks before (w, j)? */
__device__ static inline bool before(float v, int64_t i, float w, int64_t j) {
    return v > w || (v == w && i < j);
}

/* k passes over n candidates; get(i, &v, &idx) gives candidate i (idx < 0:
 * none). Thread 0 calls put(j, v, idx) for the j-th best (idx -1 when fewer
 * than j + 1 exist). Every thread of the block takes part. */
template <class Get, class Put>
__device__ static void topk_passes(int64_t n, int k, Get get, Put put) {
    __shared__ float sv[32];
    __shared__ int64_t si[32];
    float pv = INFINITY;
    int64_t pi = -1; /* the last taken: nothing yet */
    /* up to TK_REG candidates a thread stay in registers across the passes */
    constexpr int TK_REG = 16;
    bool inreg = n <= (int64_t)blockDim.x * TK_REG;
    float rv[TK_REG];
    int64_t ri[TK_REG];
#pragma unroll
    for (int u = 0; u < TK_REG; u++) {
        int64_t c = threadIdx.x + (int64_t)u * blockDim.x;
        ri[u] = -1;
        rv[u] = -INFINITY;
        if (inreg && c < n) {
            get(c, &rv[u], &ri[u]);
            if (rv[u] != rv[u]) rv[u] = -INFINITY;
        }
    }
    for (int j = 0; j < k; j++) {
        float bv = -INFINITY;
        int64_t bi = -1;
        if (inreg) {
#pragma unroll
            for (int u = 0; u < TK_REG; u++) {
                float v = rv[u];
                int64_t i = ri[u];
                bool after = pi < 0 || before(pv, pi, v, i);
                if (i >= 0 && after && (bi < 0 || before(v, i, bv, bi))) {
                    bv = v;
                    bi = i;
                }
            }
        } else {
            for (int64_t c = threadIdx.x; c < n; c += blockDim.x) {
                float v;
                int64_t i;
                get(c, &v, &i);
                if (i < 0) continue;
                if (v != v) v = -INFINITY;
                bool after = pi < 0 || before(pv, pi, v, i);
                if (after && (bi < 0 || before(v, i, bv, bi))) {
                    bv = v;
                    bi = i;
                }
            }
        }
        /* the block's best: warp shuffles, then the warps' bests */
        for (int o = 16; o > 0; o >>= 1) {
            float ov2 = __shfl_xor_sync(0xffffffffu, bv, o);
            int64_t oi2 = __shfl_xor_sync(0xffffffffu, bi, o);
            if (oi2 >= 0 && (bi < 0 || before(ov2, oi2, bv, bi))) {
                bv = ov2;
                bi = oi2;
            }
        }
        int lane = threadIdx.x & 31, wid = threadIdx.x >> 5;
        if (lane == 0) {
            sv[wid] = bv;
            si[wid] = bi;
        }
        __syncthreads();
        if (wid == 0) {
            int nw = blockDim.x >> 5;
            bv = lane < nw ? sv[lane] : -INFINITY;
            bi = lane < nw ? si[lane] : -1;
            for (int o = 16; o > 0; o >>= 1) {
                float ov2 = __shfl_xor_sync(0xffffffffu, bv, o);
                int64_t oi2 = __shfl_xor_sync(0xffffffffu, bi, o);
                if (oi2 >= 0 && (bi < 0 || before(ov2, oi2, bv, bi))) {
                    bv = ov2;
                    bi = oi2;
                }
            }
            if (lane == 0) {
                sv[0] = bv;
                si[0] = bi;
            }
        }
        __syncthreads();
        if (si[0] >= 0) { /* a pass that found nothing keeps the last taken */
            pv = sv[0];
            pi = si[0];
        }
        if (threadIdx.x == 0) put(j, si[0] >= 0 ? sv[0] : -INFINITY, si[0]);
        __syncthreads();
    }
}

__global__ void k_top_k(int32_t *oi, float *ov, const float *x, int64_t C, int k) {
    cu_pdl_enter();
    const float *r = x + (int64_t)blockIdx.x * C;
    topk_passes(
        C, k, [&](int64_t c, float *v, int64_t *i) { *v = r[c]; *i = c; },
        [&](int j, float, int64_t i) {
            oi[(int64_t)blockIdx.x * k + j] = (int32_t)i;
            ov[(int64_t)blockIdx.x * k + j] = r[i];
        });
}

#define TK_PARTS 64
#define TK_MAXK 256
#define TK_MIN_COLS 16384

/* Stage 1: block (p, row) leaves the k best of its chunk as (value, index
 * bits) in part[row][p][k]; index -1 where the chunk has fewer. */
__global__ void k_top_k_part(float2 *part, const float *x, int64_t C, int k) {
    cu_pdl_enter();
    int64_t row = blockIdx.y, per = (C + TK_PARTS - 1) / TK_PARTS;
    int64_t c0 = blockIdx.x * per, c1 = c0 + per < C ? c0 + per : C;
    const float *r = x + row * C;
    float2 *o = part + (row * TK_PARTS + blockIdx.x) * k;
    int64_t n = c1 > c0 ? c1 - c0 : 0;
    topk_passes(
        n, k, [&](int64_t c, float *v, int64_t *i) { *v = r[c0 + c]; *i = c0 + c; },
        [&](int j, float v, int64_t i) { o[j] = make_float2(v, __int_as_float((int)i)); });
}

/* Stage 2: one block a row over its TK_PARTS * k candidates. */
__global__ void k_top_k_final(int32_t *oi, float *ov, const float2 *part, const float *x, int64_t C, int k) {
    cu_pdl_enter();
    int64_t row = blockIdx.x;
    const float2 *cand = part + row * TK_PARTS * k;
    const float *r = x + row * C;
    topk_passes(
        (int64_t)TK_PARTS * k, k,
        [&](int64_t c, float *v, int64_t *i) {
            float2 e = cand[c];
            *v = e.x;
            *i = __float_as_int(e.y);
        },
        [&](int j, float, int64_t i) {
            oi[row * k + j] = (int32_t)i;
            ov[row * k + j] = r[i];
        });
}

size_t mlxn_cu_top_k_scratch(const cu_node *n) {
    const cu_tensor *x = &n->t[2];
    if (x->cols < TK_MIN_COLS || n->topk > TK_MAXK) return 0;
    return (size_t)x->rows * TK_PARTS * (size_t)n->topk * sizeof(float2);
}

cudaError_t mlxn_cu_top_k(const cu_node *n, void *scratch, cudaStream_t s) {
    const cu_tensor *t = n->t;
    int64_t R = t[2].rows, C = t[2].cols;
    if (scratch && mlxn_cu_top_k_scratch(n) && R <= 65535) {
        cu_launch(k_top_k_part, dim3(TK_PARTS, (unsigned)R), 256, 0, s, (float2 *)scratch, (const float *)t[2].data, C,
                  n->topk);
        CU_LAUNCH_CHECK();
        cu_launch(k_top_k_final, (unsigned)R, 256, 0, s, (int32_t *)t[0].data, (float *)t[1].data,
                  (const float2 *)scratch, (const float *)t[2].data, C, n->topk);
    } else {
        cu_launch(k_top_k, (unsigned)R, 256, 0, s, (int32_t *)t[0].data, (float *)t[1].data, (const float *)t[2].data,
                  C, n->topk);
    }
    CU_LAUNCH_CHECK();
    return cudaSuccess;
}
