/*
 * kernels_select.cu — top_k and logsumexp, the device side of sampling.
 *
 * top_k: the k largest of each row in descending order,
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

/* The warp's best (v, i) by `before`, in every lane (i < 0: none). */
__device__ static inline void warp_best(float &v, int64_t &i) {
    for (int o = 16; o > 0; o >>= 1) {
        float ov = __shfl_xor_sync(0xffffffffu, v, o);
        int64_t oi = __shfl_xor_sync(0xffffffffu, i, o);
        if (oi >= 0 && (i < 0 || before(ov, oi, v, i))) {
            v = ov;
            i = oi;
        }
    }
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
        warp_best(bv, bi);
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
            warp_best(bv, bi);
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

/* ---- logsumexp: per row m = max x, s = sum exp(scale * (x - m)) ----
 * Each block takes a chunk of a row: the chunk's max (NaN skipped, as the
 * CPU's strict '>'), then the chunk's sum of exp in double against it.
 * Long rows use LSE_PARTS chunk blocks and a second kernel that rescales
 * the chunk sums to the row's max: s = sum_p s_p * exp(scale * (m_p - m)).
 * In double throughout, so s is as close to the CPU's (an index-order
 * double sum) as the final rounding to f32 allows; the sampler's exactness
 * margin (sampler.c) counts on that. */
#define LSE_PARTS 64
#define LSE_MIN_COLS 16384

static __device__ __forceinline__ double lse_block_sum(double v, double *sh) {
    int lane = threadIdx.x & 31, w = threadIdx.x >> 5, nw = blockDim.x >> 5;
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    __syncthreads();
    if (lane == 0) sh[w] = v;
    __syncthreads();
    v = lane < nw ? sh[lane] : 0.0;
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

/* Block (p, y) over rows y, y + gridDim.y, ...: chunk p of each row, per
 * columns long. FINAL (one chunk a row): (m, s) straight to out [R, 2];
 * else (m, s) as a double2 to part [R, gridDim.x]. */
template <bool FINAL>
__global__ void k_lse_part(void *dst, const float *x, int64_t R, int64_t C, int64_t per, double scale) {
    cu_pdl_enter();
    __shared__ float shf[32];
    __shared__ double shd[32];
    for (int64_t row = blockIdx.y; row < R; row += gridDim.y) {
        int64_t c0 = (int64_t)blockIdx.x * per, c1 = c0 + per < C ? c0 + per : C;
        const float *r = x + row * C;
        float m = -INFINITY;
        for (int64_t i = c0 + threadIdx.x; i < c1; i += blockDim.x)
            if (r[i] > m) m = r[i];
        m = cu_block_max(m, shf);
        double sum = 0;
        if (m != -INFINITY)
            for (int64_t i = c0 + threadIdx.x; i < c1; i += blockDim.x)
                sum += exp(((double)r[i] - (double)m) * scale);
        sum = lse_block_sum(sum, shd);
        if (threadIdx.x == 0) {
            if (FINAL) {
                ((float *)dst)[2 * row] = m;
                ((float *)dst)[2 * row + 1] = (float)sum;
            } else {
                ((double2 *)dst)[row * gridDim.x + blockIdx.x] = make_double2((double)m, sum);
            }
        }
    }
}

/* One block of LSE_PARTS threads a row: combine the chunks. */
__global__ void k_lse_final(float *out, const double2 *part, int64_t R, double scale) {
    cu_pdl_enter();
    __shared__ float shf[32];
    __shared__ double shd[32];
    for (int64_t row = blockIdx.x; row < R; row += gridDim.x) {
        double2 p = part[row * LSE_PARTS + threadIdx.x];
        float m = cu_block_max((float)p.x, shf);
        /* an empty or all -inf chunk has s_p = 0 and adds nothing (also
         * when the whole row is -inf, where m_p - m is NaN); a NaN s_p stays */
        double t = p.y == 0.0 ? 0.0 : p.y * exp((p.x - (double)m) * scale);
        t = lse_block_sum(t, shd);
        if (threadIdx.x == 0) {
            out[2 * row] = m;
            out[2 * row + 1] = (float)t;
        }
    }
}

size_t mlxn_cu_logsumexp_scratch(const cu_node *n) {
    const cu_tensor *x = &n->t[1];
    return x->cols >= LSE_MIN_COLS ? (size_t)x->rows * LSE_PARTS * sizeof(double2) : 0;
}

cudaError_t mlxn_cu_logsumexp(const cu_node *n, void *scratch, cudaStream_t s) {
    const cu_tensor *t = n->t;
    int64_t R = t[1].rows, C = t[1].cols;
    unsigned gy = (unsigned)(R < 65535 ? R : 65535);
    if (R == 0) return cudaSuccess;
    if (scratch && mlxn_cu_logsumexp_scratch(n)) {
        int64_t per = (C + LSE_PARTS - 1) / LSE_PARTS;
        cu_launch(k_lse_part<false>, dim3(LSE_PARTS, gy), 256, 0, s, scratch, (const float *)t[1].data, R, C, per,
                  n->lse_scale);
        CU_LAUNCH_CHECK();
        cu_launch(k_lse_final, gy, LSE_PARTS, 0, s, (float *)t[0].data, (const double2 *)scratch, R, n->lse_scale);
    } else {
        cu_launch(k_lse_part<true>, dim3(1, gy), 256, 0, s, t[0].data, (const float *)t[1].data, R, C, C,
                  n->lse_scale);
    }
    CU_LAUNCH_CHECK();
    return cudaSuccess;
}
