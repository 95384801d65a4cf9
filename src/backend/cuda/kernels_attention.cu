/*
 * kernels_attention.cu — causal GQA attention over a KV cache, split-KV
 * ("flash-decoding"): the visible range of cache positions of each (token,
 * head) is cut into nsplit chunks; one block per (token, head, chunk) runs an
 * online softmax (4 warps, each over every 4th position, lanes over D) and
 * writes (max, sum, acc[D]) to scratch; a second kernel merges the chunks.
 * Positions come from device memory, so the chunking is fixed by the cache
 * capacity C at launch and chunks past the visible range stay empty: replay
 * with new positions needs no new launch parameters. T > 1 (prefill) runs
 * the same kernels, one (token, head) per block row.
 */
#include "backend/cuda/cuda_common.cuh"

#include <limits.h>

#define ATT_WARPS 4
#define ATT_MAXD 256 /* head dim limit: 8 values per lane */

static int att_splits(int64_t C) {
    int64_t n = (C + 63) / 64; /* 16 positions a warp: shorter serial chains (was 128 a chunk) */
    return (int)(n < 1 ? 1 : n > 64 ? 64 : n);
}

template <int KT>
__global__ void __launch_bounds__(ATT_WARPS * 32) k_attn_split(float *part, const float *q, const void *kc, const void *vc,
                                                               const int32_t *pos, int64_t H, int64_t Hkv, int64_t C,
                                                               int D, mlxn_attention_params p, int nsplit, int64_t chunk) {
    cu_pdl_enter();
    constexpr int DPL = ATT_MAXD / 32;
    int64_t th = blockIdx.x; /* t * H + h */
    int split = blockIdx.y;
    int64_t t = th / H, h = th % H, hk = h / (H / Hkv);
    int lane = threadIdx.x & 31, w = threadIdx.x >> 5;
    int64_t pt = pos[t];
    int64_t first = pt - C + 1;
    if (p.window > 0 && pt - p.window + 1 > first) first = pt - p.window + 1;
    if (first < 0) first = 0;
    int64_t lo = first + split * chunk, hi = lo + chunk;
    if (hi > pt + 1) hi = pt + 1;

    float qv[DPL], acc[DPL];
    const float *qr = q + th * D;
#pragma unroll
    for (int i = 0; i < DPL; i++) {
        int d = lane + 32 * i;
        qv[i] = d < D ? qr[d] : 0.0f;
        acc[i] = 0.0f;
    }
    float mx = -INFINITY, sum = 0.0f;
#pragma unroll 2
    for (int64_t pp = lo + w; pp < hi; pp += ATT_WARPS) {
        int64_t base = (hk * C + pp % C) * D;
        float s = 0.0f;
#pragma unroll
        for (int i = 0; i < DPL; i++) {
            int d = lane + 32 * i;
            if (d < D) s = fmaf(qv[i], cu_ld<KT>(kc, base + d), s);
        }
        s = cu_warp_sum(s) * p.scale;
        if (p.softcap > 0) s = tanhf(s / p.softcap) * p.softcap;
        float mn = fmaxf(mx, s);
        float corr = mx == -INFINITY ? 0.0f : expf(mx - mn);
        float e = expf(s - mn);
#pragma unroll
        for (int i = 0; i < DPL; i++) {
            int d = lane + 32 * i;
            float v = d < D ? cu_ld<KT>(vc, base + d) : 0.0f;
            acc[i] = acc[i] * corr + e * v;
        }
        sum = sum * corr + e;
        mx = mn;
    }

    __shared__ float sm[ATT_WARPS], ss[ATT_WARPS], sacc[ATT_WARPS][ATT_MAXD];
    if (lane == 0) {
        sm[w] = mx;
        ss[w] = sum;
    }
#pragma unroll
    for (int i = 0; i < DPL; i++) {
        int d = lane + 32 * i;
        if (d < D) sacc[w][d] = acc[i];
    }
    __syncthreads();
    float M = -INFINITY;
    for (int k = 0; k < ATT_WARPS; k++) M = fmaxf(M, sm[k]);
    float *out = part + (th * nsplit + split) * (int64_t)(D + 2);
    float L = 0.0f;
    for (int k = 0; k < ATT_WARPS; k++)
        if (sm[k] != -INFINITY) L += ss[k] * expf(sm[k] - M);
    for (int d = threadIdx.x; d < D; d += blockDim.x) {
        float a = 0.0f;
        for (int k = 0; k < ATT_WARPS; k++)
            if (sm[k] != -INFINITY) a += sacc[k][d] * expf(sm[k] - M);
        out[2 + d] = a;
    }
    if (threadIdx.x == 0) {
        out[0] = M;
        out[1] = L;
    }
}

__global__ void k_attn_merge(float *o, const float *part, int nsplit, int D) {
    cu_pdl_enter();
    int64_t th = blockIdx.x;
    const float *pp = part + th * nsplit * (int64_t)(D + 2);
    float M = -INFINITY;
    for (int s = 0; s < nsplit; s++) M = fmaxf(M, pp[s * (D + 2)]);
    float L = 0.0f;
    for (int s = 0; s < nsplit; s++) {
        float m = pp[s * (D + 2)];
        if (m != -INFINITY) L += pp[s * (D + 2) + 1] * expf(m - M);
    }
    float inv = L > 0 ? 1.0f / L : 0.0f;
    for (int d = threadIdx.x; d < D; d += blockDim.x) {
        float a = 0.0f;
        for (int s = 0; s < nsplit; s++) {
            float m = pp[s * (D + 2)];
            if (m != -INFINITY) a += pp[s * (D + 2) + 2 + d] * expf(m - M);
        }
        o[th * D + d] = a * inv;
    }
}

/* T > 1 (prefill), D <= 128: tiled. A block = 8 warps = 8 consecutive
 * tokens of one head; tiles of 32 cache positions (K rows padded to
 * MAXD + 4 floats, so the 128-bit reads of 8 lanes, each of its own row,
 * hit distinct banks) are loaded once into
 * shared memory for the 8 tokens. In a tile, lane j scores position j
 * (the whole q.k dot, q broadcast from shared memory), the warp takes the
 * tile's max and sum once (online softmax), then lanes over D accumulate
 * p_j v_j. Positions outside a token's visible range score -inf. */
#define ATP_TILE 32
#define ATP_MAXD 128
template <int KT>
__global__ void __launch_bounds__(256) k_attn_prefill(float *o, const float *q, const void *kc, const void *vc,
                                                      const int32_t *pos, int64_t T, int64_t H, int64_t Hkv,
                                                      int64_t C, int D, mlxn_attention_params p) {
    cu_pdl_enter();
    __shared__ __align__(16) float Ks[ATP_TILE][ATP_MAXD + 4];
    __shared__ __align__(16) float Vs[ATP_TILE][ATP_MAXD];
    __shared__ __align__(16) float qs[8][ATP_MAXD];
    __shared__ long long rng[2];
    int w = threadIdx.x >> 5, lane = threadIdx.x & 31;
    int64_t h = blockIdx.y, hk = h / (H / Hkv);
    int64_t t = (int64_t)blockIdx.x * 8 + w;
    bool act = t < T;
    int64_t pt = act ? pos[t] : -1, first = 0;
    if (act) {
        first = pt - C + 1;
        if (p.window > 0 && pt - p.window + 1 > first) first = pt - p.window + 1;
        if (first < 0) first = 0;
        if (pt < 0) act = false;
    }
    if (threadIdx.x == 0) {
        rng[0] = LLONG_MAX;
        rng[1] = -1;
    }
    for (int d = lane; d < ATP_MAXD; d += 32) qs[w][d] = act && d < D ? q[(t * H + h) * D + d] : 0.0f;
    __syncthreads();
    if (act && lane == 0) {
        atomicMin(&rng[0], (long long)first);
        atomicMax(&rng[1], (long long)pt);
    }
    __syncthreads();
    int64_t lo = rng[0], hi = rng[1] + 1;
    float m = -INFINITY, l = 0.0f, acc[ATP_MAXD / 32];
#pragma unroll
    for (int i = 0; i < ATP_MAXD / 32; i++) acc[i] = 0.0f;
    for (int64_t b = lo; b < hi; b += ATP_TILE) {
        __syncthreads();
        for (int idx = threadIdx.x; idx < ATP_TILE * D; idx += 256) {
            int j = idx / D, d = idx - j * D;
            int64_t pp = b + j;
            float kv = 0.0f, vv = 0.0f;
            if (pp < hi) {
                int64_t row = (hk * C + pp % C) * D;
                kv = cu_ld<KT>(kc, row + d);
                vv = cu_ld<KT>(vc, row + d);
            }
            Ks[j][d] = kv;
            Vs[j][d] = vv;
        }
        __syncthreads();
        if (!act) continue;
        int64_t pp = b + lane;
        bool valid = pp >= first && pp <= pt;
        float sc = 0.0f;
        const float4 *q4 = (const float4 *)qs[w], *k4 = (const float4 *)Ks[lane];
        for (int d4 = 0; d4 < D / 4; d4++) {
            float4 a = q4[d4], kk = k4[d4];
            sc = fmaf(a.x, kk.x, sc);
            sc = fmaf(a.y, kk.y, sc);
            sc = fmaf(a.z, kk.z, sc);
            sc = fmaf(a.w, kk.w, sc);
        }
        for (int d = D & ~3; d < D; d++) sc = fmaf(qs[w][d], Ks[lane][d], sc);
        sc *= p.scale;
        if (p.softcap > 0) sc = tanhf(sc / p.softcap) * p.softcap;
        if (!valid) sc = -INFINITY;
        float mt = cu_warp_max(sc);
        if (mt == -INFINITY) continue;
        float mn = fmaxf(m, mt);
        float corr = m == -INFINITY ? 0.0f : expf(m - mn);
        float e = valid ? expf(sc - mn) : 0.0f;
        l = l * corr + cu_warp_sum(e);
#pragma unroll
        for (int i = 0; i < ATP_MAXD / 32; i++) acc[i] *= corr;
#pragma unroll 8
        for (int j = 0; j < ATP_TILE; j++) {
            float pj = __shfl_sync(0xffffffffu, e, j);
#pragma unroll
            for (int i = 0; i < ATP_MAXD / 32; i++) {
                int d = lane + 32 * i;
                if (d < D) acc[i] = fmaf(pj, Vs[j][d], acc[i]);
            }
        }
        m = mn;
    }
    if (t < T) {
        float inv = l > 0 ? 1.0f / l : 0.0f;
#pragma unroll
        for (int i = 0; i < ATP_MAXD / 32; i++) {
            int d = lane + 32 * i;
            if (d < D) o[(t * H + h) * D + d] = acc[i] * inv;
        }
    }
}

size_t mlxn_cu_attention_scratch(const cu_node *n) {
    const cu_tensor *q = &n->t[1];
    int64_t TH = q->shape[0] * q->shape[1], D = q->shape[2];
    return (size_t)TH * (size_t)att_splits(n->t[2].shape[1]) * (size_t)(D + 2) * sizeof(float);
}

cudaError_t mlxn_cu_attention(const cu_node *n, void *scratch, cudaStream_t s) {
    const cu_tensor *t = n->t;
    int64_t T = t[1].shape[0], H = t[1].shape[1], D = t[1].shape[2];
    int64_t Hkv = t[2].shape[0], C = t[2].shape[1];
    if (D > ATT_MAXD) return cudaErrorInvalidValue;
    if (T > 1 && D <= ATP_MAXD && H % Hkv == 0) {
        dim3 gp((unsigned)((T + 7) / 8), (unsigned)H);
#define ATP(KT)                                                                                                \
    cu_launch(k_attn_prefill<KT>, gp, 256, 0, s, (float *)t[0].data, (const float *)t[1].data, t[2].data, t[3].data, \
                                          (const int32_t *)t[4].data, T, H, Hkv, C, (int)D, n->attn)
        if (t[2].dtype == MLXN_F32) ATP(MLXN_F32);
        else if (t[2].dtype == MLXN_F16) ATP(MLXN_F16);
        else ATP(MLXN_BF16);
#undef ATP
        CU_LAUNCH_CHECK();
        return cudaSuccess;
    }
    int ns = att_splits(C);
    int64_t chunk = (C + ns - 1) / ns;
    dim3 g((unsigned)(T * H), (unsigned)ns);
    float *part = (float *)scratch;
#define ATT(KT)                                                                                            \
    cu_launch(k_attn_split<KT>, g, ATT_WARPS * 32, 0, s, part, (const float *)t[1].data, t[2].data, t[3].data, \
                                                  (const int32_t *)t[4].data, H, Hkv, C, (int)D, n->attn, ns, chunk)
    if (t[2].dtype == MLXN_F32) ATT(MLXN_F32);
    else if (t[2].dtype == MLXN_F16) ATT(MLXN_F16);
    else ATT(MLXN_BF16);
#undef ATT
    CU_LAUNCH_CHECK();
    cu_launch(k_attn_merge, (unsigned)(T * H), 128, 0, s, (float *)t[0].data, part, ns, (int)D);
    CU_LAUNCH_CHECK();
    return cudaSuccess;
}
