/*
 * kernels_attention.cu — causal GQA attention over a KV cache, split-KV
 * ("flash-decoding"): the visible range of cache positions of each (token,
 * head) is cut into nsplit chunks; one block per (token, head, chunk) runs an
 * online softmax (4 warps, each over every 4th position, lanes over D) and
 * writes (max, sum, acc[D]) to scratch; a second kernel merges the chunks.
 * On sm_90 decode runs instead as one kernel of thread block clusters
 * (k_attn_cluster: 8 blocks of 8 warps for a head, or for two heads of one
 * KV head that then share each K and V row read, merged in shared memory).
 * Positions come from device memory, so the chunking is fixed by the cache
 * capacity C at launch and chunks past the visible range stay empty: replay
 * with new positions needs no new launch parameters. T > 1 (prefill) runs
 * the same kernels, one (token, head) per block row.
 * T > 1 (prefill) runs a flash-attention kernel on the tensor cores
 * (k_attn_fa, bf16 operands); sessions with f32 activations keep the f32
 * kernels (k_attn_prefill for D <= 128, else split-KV).
 */
#include "backend/cuda/cuda_common.cuh"
#include "backend/cuda/rope.cuh"

#include <cooperative_groups.h>
#include <limits.h>
#include <string.h>

#define ATT_WARPS 4
#define ATT_MAXD 256 /* head dim limit: 8 values per lane */

static int att_splits(int64_t C) {
    int64_t n = (C + 63) / 64; /* 16 positions a warp: shorter serial chains (was 128 a chunk) */
    return (int)(n < 1 ? 1 : n > 64 ? 64 : n);
}

/* One block's share [lo, hi) of the cache positions of (token, head) th:
 * each of its NW warps an online softmax over every NW-th position (lanes over
 * D), then the warps combined into (M, L, acc[D]) at *bm, *bl, bacc (global
 * or shared memory). qr: the head's q row. Position pnew (the newest, the
 * last of the range; -1: none) takes its K and V rows from kn, vn instead of
 * the cache (the values the cache gets, already rounded to its dtype): the
 * same warp visits it last either way, so the sums come out the same.
 * MD: the largest head dim taken (MD / 32 values a lane in registers). */
template <int KT, int NW = ATT_WARPS, int MD = ATT_MAXD>
__device__ __forceinline__ void attn_chunk(float *bm, float *bl, float *bacc, const float *qr, const void *kc,
                                           const void *vc, int64_t hk, int64_t C, int D,
                                           const mlxn_attention_params &p, int64_t lo, int64_t hi,
                                           int64_t pnew = -1, const float *kn = NULL, const float *vn = NULL) {
    constexpr int DPL = MD / 32;
    int lane = threadIdx.x & 31, w = threadIdx.x >> 5;
    float qv[DPL], acc[DPL];
#pragma unroll
    for (int i = 0; i < DPL; i++) {
        int d = lane + 32 * i;
        qv[i] = d < D ? qr[d] : 0.0f;
        acc[i] = 0.0f;
    }
    float mx = -INFINITY, sum = 0.0f;
    auto visit = [&](const float *kf, const float *vf, int64_t base) {
        float s = 0.0f;
#pragma unroll
        for (int i = 0; i < DPL; i++) {
            int d = lane + 32 * i;
            if (d < D) s = fmaf(qv[i], kf ? kf[d] : cu_ld<KT>(kc, base + d), s);
        }
        s = cu_warp_sum(s) * p.scale;
        if (p.softcap > 0) s = tanhf(s / p.softcap) * p.softcap;
        float mn = fmaxf(mx, s);
        float corr = mx == -INFINITY ? 0.0f : expf(mx - mn);
        float e = expf(s - mn);
#pragma unroll
        for (int i = 0; i < DPL; i++) {
            int d = lane + 32 * i;
            float v = d < D ? (vf ? vf[d] : cu_ld<KT>(vc, base + d)) : 0.0f;
            acc[i] = acc[i] * corr + e * v;
        }
        sum = sum * corr + e;
        mx = mn;
    };
    /* The range's last position is visited alone, last, by its warp (from
     * kn / vn when it is pnew): the cache path and the fused one then group
     * and order every sum the same way. Before it, U of the warp's
     * positions a step: their K and V rows loaded first (4x the loads in
     * flight: a warp's chain of one position at a time left decode at
     * position 4095 of an 8B-shaped f16 cache at 254 GB/s on an H200, 66.1
     * us; 4 a step 44.6 us), the 4 dots reduced, then one softmax update. */
    const bool own = pnew >= lo && pnew < hi; /* then pnew == hi - 1 */
    const int64_t last = hi - 1;
    constexpr int U = 4; /* positions a step (8 for head dims <= 128: 63.3 us and 8B tg128 582.7, worse) */
    int64_t pp = lo + w;
    for (; pp + (U - 1) * NW < last; pp += U * NW) {
        float kr[U][DPL], vr[U][DPL], sc[U];
#pragma unroll
        for (int u = 0; u < U; u++) {
            const int64_t base = (hk * C + (pp + u * NW) % C) * D;
#pragma unroll
            for (int i = 0; i < DPL; i++) {
                int d = lane + 32 * i;
                kr[u][i] = d < D ? cu_ld<KT>(kc, base + d) : 0.0f;
                vr[u][i] = d < D ? cu_ld<KT>(vc, base + d) : 0.0f;
            }
        }
#pragma unroll
        for (int u = 0; u < U; u++) {
            float a = 0.0f;
#pragma unroll
            for (int i = 0; i < DPL; i++) a = fmaf(qv[i], kr[u][i], a);
            sc[u] = a;
        }
#pragma unroll
        for (int o = 16; o > 0; o >>= 1)
#pragma unroll
            for (int u = 0; u < U; u++) sc[u] += __shfl_xor_sync(0xffffffffu, sc[u], o);
        float mn = mx;
#pragma unroll
        for (int u = 0; u < U; u++) {
            sc[u] *= p.scale;
            if (p.softcap > 0) sc[u] = tanhf(sc[u] / p.softcap) * p.softcap;
            mn = fmaxf(mn, sc[u]);
        }
        const float corr = mx == -INFINITY ? 0.0f : expf(mx - mn);
        float e[U], es = 0.0f;
#pragma unroll
        for (int u = 0; u < U; u++) es += (e[u] = expf(sc[u] - mn));
#pragma unroll
        for (int i = 0; i < DPL; i++) {
            float a = acc[i] * corr;
#pragma unroll
            for (int u = 0; u < U; u++) a = fmaf(e[u], vr[u][i], a);
            acc[i] = a;
        }
        sum = sum * corr + es;
        mx = mn;
    }
    for (; pp < last; pp += NW) visit(NULL, NULL, (hk * C + pp % C) * D);
    if (last >= lo && (last - lo) % NW == w) {
        if (own) visit(kn, vn, 0);
        else visit(NULL, NULL, (hk * C + last % C) * D);
    }

    __shared__ float sm[NW], ss[NW], sacc[NW][MD];
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
    for (int k = 0; k < NW; k++) M = fmaxf(M, sm[k]);
    float L = 0.0f;
    for (int k = 0; k < NW; k++)
        if (sm[k] != -INFINITY) L += ss[k] * expf(sm[k] - M);
    for (int d = threadIdx.x; d < D; d += blockDim.x) {
        float a = 0.0f;
        for (int k = 0; k < NW; k++)
            if (sm[k] != -INFINITY) a += sacc[k][d] * expf(sm[k] - M);
        bacc[d] = a;
    }
    if (threadIdx.x == 0) {
        *bm = M;
        *bl = L;
    }
}

/* ---- the vector form of a block's share: head dims <= 128, D % 8 == 0 ----
 * A half-warp takes one position at a time: lane hl = lane & 15 holds dims
 * 8 hl .. 8 hl + 7 of q, of the position's K and V rows (one 16-byte load
 * each, two for f32) and of the sums, so a warp reads two rows an
 * instruction where attn_chunk's lanes read 2 or 4 bytes each. And HB query
 * heads of one KV head (grouped-query attention) share every row the block
 * loads: the cache is read once for the HB heads, not once a head. */
template <int KT>
struct Row8 {
    uint4 w[KT == MLXN_F32 ? 2 : 1];
};
template <int KT>
static __device__ __forceinline__ void row8_ld(Row8<KT> &r, const void *base, int64_t e) {
    const uint4 *a = (const uint4 *)((const char *)base + e * (KT == MLXN_F32 ? 4 : 2));
#pragma unroll
    for (int i = 0; i < (KT == MLXN_F32 ? 2 : 1); i++) r.w[i] = a[i];
}
static __device__ __forceinline__ float2 half2_f(uint32_t u, int kt) {
    if (kt == MLXN_F16) return __half22float2(*(const __half2 *)&u);
    return make_float2(__uint_as_float(u << 16), __uint_as_float(u & 0xFFFF0000u));
}
template <int KT>
static __device__ __forceinline__ void row8_f(const Row8<KT> &r, float *f) {
    if (KT == MLXN_F32) {
#pragma unroll
        for (int i = 0; i < (KT == MLXN_F32 ? 2 : 1); i++) {
            f[4 * i] = __uint_as_float(r.w[i].x);
            f[4 * i + 1] = __uint_as_float(r.w[i].y);
            f[4 * i + 2] = __uint_as_float(r.w[i].z);
            f[4 * i + 3] = __uint_as_float(r.w[i].w);
        }
    } else {
        const uint32_t u[4] = {r.w[0].x, r.w[0].y, r.w[0].z, r.w[0].w};
#pragma unroll
        for (int i = 0; i < 4; i++) {
            float2 v = half2_f(u[i], KT);
            f[2 * i] = v.x;
            f[2 * i + 1] = v.y;
        }
    }
}
/* f: 8 values already rounded to KT (so storing them back is exact) */
template <int KT>
static __device__ __forceinline__ void row8_set(Row8<KT> &r, const float *f) {
    uint32_t u[8];
#pragma unroll
    for (int i = 0; i < 8; i++) u[i] = KT == MLXN_F32 ? __float_as_uint(f[i]) : KT == MLXN_F16 ? cu_f2h(f[i]) : cu_f2b(f[i]);
    if (KT == MLXN_F32) {
#pragma unroll
        for (int i = 0; i < (KT == MLXN_F32 ? 2 : 1); i++) r.w[i] = make_uint4(u[4 * i], u[4 * i + 1], u[4 * i + 2], u[4 * i + 3]);
    } else {
        r.w[0] = make_uint4(u[0] | u[1] << 16, u[2] | u[3] << 16, u[4] | u[5] << 16, u[6] | u[7] << 16);
    }
}

/* attn_chunk's contract for HB heads: q of head g at qr + g * qs; head g's
 * (M, L) at bm[g], bl[g] and its acc at bacc + g * 128. Every half-warp
 * (stream) visits its positions in the same order whether position pnew
 * comes from the cache or from kn / vn, so both give the same sums. */
/* ATTV_U positions a half-warp a step: all their rows loaded before the
 * step's math, the next step's loaded while it runs. Measured on an H200
 * (bench/RESULTS.md), 8B shape, f16 cache, 2 heads a block: 2 a step (113
 * registers) ran position 4095 in 24.4 us, 4 a step (168) in 34.8 us with
 * decode from an empty cache 9 % slower. */
#ifndef ATTV_U
#define ATTV_U 2
#endif
/* The loop's math, not its loads, sets its time: on an H200 (8B shape,
 * 4000 cached tokens, in-kernel timer; bench/RESULTS.md) the loop took 18.6
 * us, 15.5 with the loads replaced by made-up rows, 9.8 with the math
 * left out. Hence: ATTV_FEXP (default 1) takes the exponentials as one
 * ex2.approx.ftz (expf's range handling and __expf's denormal steps
 * dropped), indices are 32-bit, and the steps take two sets of rows in
 * turn. Position 4095 of the 8B shape: 24.3 -> 17.2 us. */
#ifndef ATTV_FEXP
#define ATTV_FEXP 1
#endif
static __device__ __forceinline__ float att_exp(float x) {
    if (!ATTV_FEXP) return expf(x);
    float y; /* flush-to-zero: e^x under 2^-126 is 0 to the softmax */
    asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x * 1.4426950408889634f));
    return y;
}
#ifdef ATT_TIMING /* measuring (scripts/att-phases.sh): globaltimer stamps */
static __device__ __forceinline__ unsigned long long att_gt() {
    unsigned long long t;
    asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
    return t;
}
__shared__ unsigned long long att_sub[5]; /* attn_chunk_v's, taken by thread 0 */
#define ATT_S(i) if (threadIdx.x == 0) att_sub[i] = att_gt()
#else
#define ATT_S(i)
#endif
template <int KT, int NW, int HB>
__device__ __forceinline__ void attn_chunk_v(float *bm, float *bl, float *bacc, const float *qr, int64_t qs,
                                             const void *kc, const void *vc, int64_t hk, int64_t C, int D,
                                             const mlxn_attention_params &p, int64_t lo64, int64_t hi64,
                                             int64_t pnew64 = -1, const float *kn = NULL, const float *vn = NULL) {
    constexpr int U = ATTV_U, S = 2 * NW;
    ATT_S(4);
    const int lane = threadIdx.x & 31, w = threadIdx.x >> 5, half = lane >> 4, d0 = 8 * (lane & 15);
    const bool on = d0 < D;
    const int lo = (int)lo64, hi = (int)hi64, pnew = (int)pnew64, C32 = (int)C; /* positions are int32 (pos) */
    float qv[HB][8], acc[HB][8], mx[HB], sum[HB];
#pragma unroll
    for (int g = 0; g < HB; g++) {
#pragma unroll
        for (int j = 0; j < 8; j++) {
            qv[g][j] = on ? qr[g * qs + d0 + j] : 0.0f;
            acc[g][j] = 0.0f;
        }
        mx[g] = -INFINITY;
        sum[g] = 0.0f;
    }
    /* the rows of the step at wb: this half's positions wb + half + u S.
     * Without a wrap (hi <= C, every cache but a ring past its end) a
     * position's cache row is the position; else rows rl, rl + S, ... (mod
     * C, kept by steps of S, no division), rl moving on to the next step's. */
    const int64_t eb = KT == MLXN_F32 ? 4 : 2; /* bytes a value */
    const char *kb = (const char *)kc + (hk * C * D + d0) * eb, *vb = (const char *)vc + (hk * C * D + d0) * eb;
    const unsigned rb = (unsigned)(D * eb); /* bytes a row */
    const bool wrap = hi > C32;
    int rl = (int)((lo + 2 * w + half) % C);
    auto load = [&](Row8<KT> *kr, Row8<KT> *vr, int wb) {
#pragma unroll
        for (int u = 0; u < U; u++) {
            const int pp = wb + half + u * S;
            int row = pp;
            if (wrap) {
                row = rl;
                rl += S;
                while (rl >= C32) rl -= C32;
            }
            if (pp < hi && on) {
                if (pp == pnew) {
                    row8_set(kr[u], kn + d0);
                    row8_set(vr[u], vn + d0);
                } else {
                    row8_ld(kr[u], kb + (size_t)(unsigned)row * rb, 0);
                    row8_ld(vr[u], vb + (size_t)(unsigned)row * rb, 0);
                }
            } else {
                kr[u] = Row8<KT>{};
                vr[u] = Row8<KT>{};
            }
        }
    };
    /* one step's math over the rows kr, vr of the positions at wb */
    auto math = [&](const Row8<KT> *kr, const Row8<KT> *vr, int wb) {
        float sc[HB][U];
#pragma unroll
        for (int u = 0; u < U; u++) {
            float kf[8];
            row8_f(kr[u], kf);
#pragma unroll
            for (int g = 0; g < HB; g++) {
                float a = 0.0f;
#pragma unroll
                for (int j = 0; j < 8; j++) a = fmaf(qv[g][j], kf[j], a);
                sc[g][u] = a;
            }
        }
#pragma unroll
        for (int o = 8; o > 0; o >>= 1) /* within the half-warp */
#pragma unroll
            for (int g = 0; g < HB; g++)
#pragma unroll
                for (int u = 0; u < U; u++) sc[g][u] += __shfl_xor_sync(0xffffffffu, sc[g][u], o);
        /* scores to weights: e[g][u] (0 for a position past hi), the
         * running max and sum moved on, acc scaled by corr */
#pragma unroll
        for (int g = 0; g < HB; g++) {
            float mn = mx[g];
#pragma unroll
            for (int u = 0; u < U; u++) {
                float s = sc[g][u] * p.scale;
                if (p.softcap > 0) s = tanhf(s / p.softcap) * p.softcap;
                sc[g][u] = wb + half + u * S < hi ? s : -INFINITY;
                mn = fmaxf(mn, sc[g][u]);
            }
            /* mn = -inf: no position of this half yet, every e 0 */
            const float corr = mx[g] == -INFINITY ? 0.0f : att_exp(mx[g] - mn);
            float es = 0.0f;
#pragma unroll
            for (int u = 0; u < U; u++) es += (sc[g][u] = sc[g][u] == -INFINITY ? 0.0f : att_exp(sc[g][u] - mn));
#pragma unroll
            for (int j = 0; j < 8; j++) acc[g][j] *= corr;
            sum[g] = sum[g] * corr + es;
            mx[g] = mn;
        }
#pragma unroll
        for (int u = 0; u < U; u++) {
            float vf[8];
            row8_f(vr[u], vf);
#pragma unroll
            for (int g = 0; g < HB; g++)
#pragma unroll
                for (int j = 0; j < 8; j++) acc[g][j] = fmaf(sc[g][u], vf[j], acc[g][j]);
        }
    };
    /* two sets of rows taken in turn (no copy from one to the other, which
     * would wait for the loads at the end of every step): while one step's
     * math runs, the next step's rows are on their way */
    const int step = S * U;
    Row8<KT> ka[U], va[U], kx[U], vx[U];
    int wb = lo + 2 * w; /* warp-uniform: both halves shuffle in every step */
    if (wb < hi) load(ka, va, wb);
    for (; wb < hi; wb += 2 * step) {
        if (wb + step < hi) load(kx, vx, wb + step);
        math(ka, va, wb);
        if (wb + step >= hi) break;
        if (wb + 2 * step < hi) load(ka, va, wb + 2 * step);
        math(kx, vx, wb + step);
    }
    ATT_S(0);
    /* the two halves of the warp into one */
#pragma unroll
    for (int g = 0; g < HB; g++) {
        const float mo = __shfl_xor_sync(0xffffffffu, mx[g], 16), so = __shfl_xor_sync(0xffffffffu, sum[g], 16);
        const float M = fmaxf(mx[g], mo);
        const float fs = mx[g] == -INFINITY ? 0.0f : att_exp(mx[g] - M), fo = mo == -INFINITY ? 0.0f : att_exp(mo - M);
        sum[g] = sum[g] * fs + so * fo;
#pragma unroll
        for (int j = 0; j < 8; j++) acc[g][j] = acc[g][j] * fs + __shfl_xor_sync(0xffffffffu, acc[g][j], 16) * fo;
        mx[g] = M;
    }
    /* the warps into one: each warp's weight per head (lane g NW + k of
     * warp 0 for warp k's share of head g) once, then the sums */
    static_assert(HB * NW <= 32, "one lane a (warp, head)");
    __shared__ float sm[NW][HB], ss[NW][HB], sf[NW][HB], sacc[NW][HB][128];
    if (lane == 0)
#pragma unroll
        for (int g = 0; g < HB; g++) {
            sm[w][g] = mx[g];
            ss[w][g] = sum[g];
        }
    if (half == 0 && on)
#pragma unroll
        for (int g = 0; g < HB; g++)
#pragma unroll
            for (int j = 0; j < 8; j++) sacc[w][g][d0 + j] = acc[g][j];
    ATT_S(1);
    __syncthreads();
    ATT_S(2);
    if (w == 0) {
        const int g = lane / NW, k = lane % NW;
        const float m = g < HB ? sm[k][g] : -INFINITY;
        float M = m;
#pragma unroll
        for (int o = NW / 2; o > 0; o >>= 1) M = fmaxf(M, __shfl_xor_sync(0xffffffffu, M, o));
        const float f = m == -INFINITY ? 0.0f : att_exp(m - M);
        float L = g < HB ? ss[k][g] * f : 0.0f;
#pragma unroll
        for (int o = NW / 2; o > 0; o >>= 1) L += __shfl_xor_sync(0xffffffffu, L, o);
        if (g < HB) {
            sf[k][g] = f;
            if (k == 0) {
                bm[g] = M;
                bl[g] = L;
            }
        }
    }
    __syncthreads();
    ATT_S(3);
    for (int i = threadIdx.x; i < HB * D; i += blockDim.x) {
        const int g = i / D, d = i - g * D;
        float a = 0.0f;
#pragma unroll
        for (int k = 0; k < NW; k++) a = fmaf(sacc[k][g][d], sf[k][g], a);
        bacc[g * 128 + d] = a;
    }
}

/* The visible cache positions [first, pt] of token t (window, ring). */
__device__ __forceinline__ void attn_range(const int32_t *pos, int64_t t, int64_t C, const mlxn_attention_params &p,
                                           int64_t *first, int64_t *last) {
    int64_t pt = pos[t];
    int64_t f = pt - C + 1;
    if (p.window > 0 && pt - p.window + 1 > f) f = pt - p.window + 1;
    if (f < 0) f = 0;
    *first = f;
    *last = pt;
}

template <int KT>
__global__ void __launch_bounds__(ATT_WARPS * 32) k_attn_split(float *part, const float *q, const void *kc, const void *vc,
                                                               const int32_t *pos, int64_t H, int64_t Hkv, int64_t C,
                                                               int D, mlxn_attention_params p, int nsplit, int64_t chunk) {
    cu_pdl_enter();
    int64_t th = blockIdx.x; /* t * H + h */
    int split = blockIdx.y;
    int64_t t = th / H, h = th % H, hk = h / (H / Hkv);
    int64_t first, pt;
    attn_range(pos, t, C, p, &first, &pt);
    int64_t lo = first + split * chunk, hi = lo + chunk;
    if (hi > pt + 1) hi = pt + 1;
    float *out = part + (th * nsplit + split) * (int64_t)(D + 2);
    attn_chunk<KT>(&out[0], &out[1], out + 2, q + th * D, kc, vc, hk, C, D, p, lo, hi);
}

/* Decode on sm_90: the ATT_CLUSTER blocks of (token, head) form a thread
 * block cluster. Each takes an equal share of the *visible* positions (read
 * from pos, so a short context still spreads over all of them), stores its
 * (M, L, acc) straight into block 0's shared memory (distributed shared
 * memory), and after one cluster barrier block 0 merges them from its own:
 * one kernel, no scratch. Measured on an H200 (bench/RESULTS.md, in-kernel
 * timer) before this form: block 0 reading the shares remotely took 1.3 us
 * and a second barrier 0.4 us of a ~7 us kernel. */
#define ATT_CLUSTER 8
#define ATTC_WARPS 8 /* warps a block: 8 measured faster than 4 (bench/RESULTS.md) */
/* EARLY: no node of the graph writes pos (nor the rope frequency factors),
 * so the block reads it, computes its rope angles (ROPE) and asks L2 for its
 * share of the cache rows before it waits for q and the newest row (a
 * prefetch binds no value: rows the kernel before still writes are read
 * again after the wait).
 * XQ: the next node is a one-row matmul of o on the integer path
 * (mlxn_cu_launch_attention_quant): the merging blocks also write o as its
 * int8 x (xg, in layout xl, as k_quant_x64 / k_quant_x do) and, for XL_G
 * and XL_QZ, every block zeroes part of its output y [N], so the matmul needs no
 * quantization launch of its own.
 * ROPE: the decode layer's rope of q, rope + cache write of k and cache
 * write of v run here too (mlxn_cu_launch_rope_attention), instead of a
 * launch of their own before: every block rotates its head's q (r.qx) and
 * its KV head's new k (r.kx) itself, rounds the new k and v rows to the
 * cache dtype and takes them from shared memory for the newest position;
 * block 0 of each cluster writes the rotated q (r.qo, rope's output), and
 * block 0 of the first q head of each KV head writes the new cache rows.
 * Nothing in the kernel reads those bytes (the visible range holds the
 * newest position's slot once), so no block waits for another's writes.
 * Each pair's frequency (a double pow) comes from the host in r.inv; only
 * the angle's sincos runs here, after the L2 prefetch is issued. Measured
 * on an H100 (bench/RESULTS.md): the per-block pow and the prefetch issued
 * after the angles each cost more than the launch this saves; without them
 * the fused kernel ties the separate rope launch + attention. */
struct RopeAtt {
    const float *qx, *kx, *vx; /* rope's input q [H, D]; new k (unrotated), v [Hkv, D] */
    float *qo;                 /* rope's output: the attention's q */
    const float *ff;           /* frequency factors or NULL */
    mlxn_rope_params p;
    double inv[ATT_MAXD / 2];  /* each pair's frequency, rope_inv_freq on the host without ff */
};
#ifdef ATT_TIMING /* measuring: one launch's phases a block, printed */
__device__ unsigned long long att_tcount;
#define ATT_T(i) tt[i] = att_gt()
#else
#define ATT_T(i)
#endif
template <int KT, bool EARLY, bool XQ, bool ROPE, int MD, int HB>
__global__ void __launch_bounds__(ATTC_WARPS * 32, 1) k_attn_cluster(float *o, const float *q, void *kc, void *vc,
                                                                  const int32_t *pos, int64_t H, int64_t Hkv, int64_t C,
                                                                  int D, mlxn_attention_params p, int xl, uint8_t *xg, float *y,
                                                                  int64_t N, RopeAtt r) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    namespace cg = cooperative_groups;
    cg::cluster_group cl = cg::this_cluster();
    constexpr int NH = HB ? HB : 1, MS = HB ? 128 : MD; /* heads a block; a head's stride in acc */
    /* block 0's: every block's (M, L, acc) for each of its heads, stored there by the block itself */
    __shared__ float cm[ATT_CLUSTER][NH], cls[ATT_CLUSTER][NH], cacc[ATT_CLUSTER][NH][MS];
    __shared__ float cf[ATT_CLUSTER][NH], cinv[NH]; /* block 0's merge: each share's weight, 1 / L */
    __shared__ float qs[ROPE ? NH : 1][ROPE ? MS : 1], kn[ROPE ? MS : 1], vn[ROPE ? MS : 1];
    __shared__ float rc[ROPE ? MD / 2 : 1], rs[ROPE ? MD / 2 : 1];
    /* the cluster's blocks have all started before any writes to block 0's
     * shared memory: arrive now, wait just before those writes */
#ifdef ATT_TIMING
    unsigned long long tt[8];
#endif
    ATT_T(0);
    asm volatile("barrier.cluster.arrive.relaxed.aligned;" ::: "memory");
    int64_t th = (int64_t)blockIdx.x * NH; /* t * H + h of the block's first head h */
    int split = (int)cl.block_rank();
    /* T * H and H fit in 32 bits: 32-bit divisions before the wait */
    const unsigned th32 = (unsigned)th, H32 = (unsigned)H, G32 = H32 / (unsigned)Hkv;
    const int64_t t = th32 / H32, h = th32 - (unsigned)t * H32, G = G32, hk = (unsigned)h / G32;
    if (!EARLY) cu_pdl_enter();
    int64_t first, pt;
    attn_range(pos, t, C, p, &first, &pt);
    int64_t n = pt + 1 - first, chunk = (n + ATT_CLUSTER - 1) / ATT_CLUSTER;
    int64_t lo = first + split * chunk, hi = lo + chunk;
    if (hi > pt + 1) hi = pt + 1;
    if (EARLY) { /* the prefetch first: with ROPE the rows are needed soon after the wait */
        const int es = KT == MLXN_F32 ? 4 : 2, lines = (int)((D * es + 127) / 128);
        /* positions and C are int32 (pos): 32-bit division */
        const unsigned L2 = 2u * (unsigned)lines, C32 = (unsigned)C, lo32 = (unsigned)lo;
        const unsigned nk = hi > lo ? (unsigned)(hi - lo) * L2 : 0u; /* a block past the range: none */
        for (unsigned k = threadIdx.x; k < nk; k += blockDim.x) {
            const unsigned rr = k / L2, r2 = k - rr * L2, l = r2 % (unsigned)lines;
            const char *base = (const char *)(r2 >= (unsigned)lines ? vc : kc);
            const char *a = base + ((hk * C + (int64_t)((lo32 + rr) % C32)) * D) * es + 128 * l;
            asm volatile("prefetch.global.L2 [%0];" ::"l"(a));
        }
    }
    if (ROPE)
        for (int j = threadIdx.x; j < r.p.n_dims / 2; j += blockDim.x)
            rope_cs_inv(pt, r.inv[j], j, r.ff, r.p, &rc[j], &rs[j]);
    ATT_T(1);
    if (EARLY) cu_pdl_enter();
    ATT_T(2);
    if (ROPE) {
        __syncthreads(); /* the angles */
        bool writer = split == 0 && h % G == 0 && pt >= 0;
        int64_t row = (hk * C + (pt >= 0 ? pt % C : 0)) * D;
        const float *qh = r.qx + h * D, *kh = r.kx + hk * D;
        for (int d = threadIdx.x; d < D; d += blockDim.x) {
            /* every input read before the first store: one round trip */
            int i0, i1, j = rope_pair(r.p, d, &i0, &i1);
            float q0[NH], q1[NH];
#pragma unroll
            for (int g = 0; g < NH; g++) {
                q0[g] = qh[g * D + i0];
                q1[g] = qh[g * D + i1];
            }
            float k0 = kh[i0], k1 = kh[i1], vv = r.vx[hk * D + d];
            float cs = j >= 0 ? rc[j] : 1.0f, sn = j >= 0 ? rs[j] : 0.0f;
            float kv = rope_val(d, j, i0, k0, k1, cs, sn);
#pragma unroll
            for (int g = 0; g < NH; g++) qs[g][d] = rope_val(d, j, i0, q0[g], q1[g], cs, sn);
            if (writer) {
                cu_st_rt(kc, KT, row + d, kv);
                cu_st_rt(vc, KT, row + d, vv);
            }
            uint32_t tk = 0, tv = 0; /* the values as the cache holds them */
            cu_st_rt(&tk, KT, 0, kv);
            cu_st_rt(&tv, KT, 0, vv);
            kn[d] = cu_ld<KT>(&tk, 0);
            vn[d] = cu_ld<KT>(&tv, 0);
        }
        __syncthreads();
    }
    if (XQ && y) /* after the wait: every kernel before has finished with y's bytes */
        for (int64_t i = ((int64_t)blockIdx.x * ATT_CLUSTER + split) * blockDim.x + threadIdx.x; i < N;
             i += (int64_t)gridDim.x * ATT_CLUSTER * blockDim.x)
            y[i] = 0.0f;
    asm volatile("barrier.cluster.wait.aligned;" ::: "memory");
    ATT_T(3);
    float *bm = cl.map_shared_rank(&cm[split][0], 0), *bl = cl.map_shared_rank(&cls[split][0], 0);
    float *bacc = cl.map_shared_rank(&cacc[split][0][0], 0);
    const float *qr = ROPE ? &qs[0][0] : q + th * D;
    if constexpr (HB > 0)
        attn_chunk_v<KT, ATTC_WARPS, NH>(bm, bl, bacc, qr, ROPE ? MS : D, kc, vc, hk, C, D, p, lo, hi,
                                         ROPE ? pt : -1, kn, vn);
    else if (ROPE) attn_chunk<KT, ATTC_WARPS, MD>(bm, bl, bacc, qr, kc, vc, hk, C, D, p, lo, hi, pt, kn, vn);
    else attn_chunk<KT, ATTC_WARPS, MD>(bm, bl, bacc, qr, kc, vc, hk, C, D, p, lo, hi);
    ATT_T(4);
    cl.sync(); /* the shares are in block 0; also: every block of the heads has read r.qx (rope in place) */
    ATT_T(5);
    if (split == 0) {
        if (ROPE)
            for (int i = threadIdx.x; i < NH * D; i += blockDim.x) r.qo[h * D + i] = qs[i / D][i % D];
        /* each block's weight per head once (lane g * ATT_CLUSTER + k of
         * warp 0 for block k's share of head g), then the sums */
        static_assert(NH * ATT_CLUSTER <= 32, "one lane a (block, head)");
        if (threadIdx.x < 32) {
            const int lane = threadIdx.x, g = lane / ATT_CLUSTER, k = lane % ATT_CLUSTER;
            const float m = g < NH ? cm[k][g] : -INFINITY;
            float M = m;
#pragma unroll
            for (int sh = ATT_CLUSTER / 2; sh > 0; sh >>= 1) M = fmaxf(M, __shfl_xor_sync(0xffffffffu, M, sh));
            const float f = m == -INFINITY ? 0.0f : att_exp(m - M);
            float L = g < NH ? cls[k][g] * f : 0.0f;
#pragma unroll
            for (int sh = ATT_CLUSTER / 2; sh > 0; sh >>= 1) L += __shfl_xor_sync(0xffffffffu, L, sh);
            if (g < NH) {
                cf[k][g] = f;
                if (k == 0) cinv[g] = L > 0 ? 1.0f / L : 0.0f;
            }
        }
        __syncthreads();
        /* NH * D % 32 == 0 where XQ (D % 32 == 0): each warp's i are one 32-block of one head */
        for (int i = threadIdx.x; i < NH * D; i += blockDim.x) {
            const int g = i / D, d = i - g * D;
            float a = 0.0f;
#pragma unroll
            for (int k = 0; k < ATT_CLUSTER; k++) a = fmaf(cacc[k][g][d], cf[k][g], a);
            const float v = a * cinv[g];
            o[th * D + i] = v;
            if (XQ) x_store(xl, xg, (th * D + i) >> 5, d & 31, v);
        }
    }
#ifdef ATT_TIMING
    __syncthreads();
    ATT_T(6);
    if (threadIdx.x == 0) {
        const unsigned long long nb = gridDim.x * gridDim.y, c = atomicAdd(&att_tcount, 1ull);
        unsigned smid;
        asm volatile("mov.u32 %0, %%smid;" : "=r"(smid));
        if (c / nb == 300)
            printf("ATT blk %u split %d sm %u start %llu pre %llu wait %llu cw %llu chunk %llu csync %llu merge %llu hi-lo %lld"
                   " c_in %llu c_loop %llu c_half %llu c_sync1 %llu c_w0 %llu c_out %llu\n",
                   blockIdx.x, split, smid, tt[0] % 100000000ull, tt[1] - tt[0], tt[2] - tt[1], tt[3] - tt[2],
                   tt[4] - tt[3], tt[5] - tt[4], tt[6] - tt[5], (long long)(hi - lo),
                   HB > 0 ? att_sub[4] - tt[3] : 0ull, HB > 0 ? att_sub[0] - att_sub[4] : 0ull,
                   HB > 0 ? att_sub[1] - att_sub[0] : 0ull, HB > 0 ? att_sub[2] - att_sub[1] : 0ull,
                   HB > 0 ? att_sub[3] - att_sub[2] : 0ull, HB > 0 ? tt[4] - att_sub[3] : 0ull);
    }
#endif
#endif
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

/* ---- T > 1 (prefill) on the tensor cores: a flash-attention kernel ----
 * A block = 4 warps = 64 rows; a row is one (token, q head) of one kv head
 * hk: with G = H / Hkv q heads per kv head, rows r = 0 .. TB*G-1 are token
 * t0 + r / G, head hk*G + r % G (TB = 64 / G tokens), so each K/V tile read
 * serves every q head of the group. Tiles of 64 cache positions are rounded
 * to bf16 in shared memory (rows padded by 16 bytes: the 32-bit fragment
 * reads and ldmatrix rows of a warp hit distinct banks); each warp computes
 * its 16 x 64 scores with mma.m16n8k16 (bf16 operands, f32 accumulation),
 * masks positions outside [first, pos] of its rows, runs the online softmax
 * in registers (base 2), and multiplies P (rounded to bf16) by V (B
 * fragments by ldmatrix.trans) into f32 accumulators. Head dims up to DM
 * (64, 128, 256) are zero-padded to a multiple of 16. Blocks run last
 * tokens first (they have the most positions). bf16 operands: NMSE against
 * the f32 CPU result ~1e-5 (tests/test_cuda_ops.c, TOL_BF16). */
#define FA_R 64 /* rows a block */
#define FA_C 64 /* cache positions a tile */

static __device__ __forceinline__ uint32_t fa_pack(float lo, float hi) {
    __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
    return *(uint32_t *)&v;
}

static __device__ __forceinline__ void fa_mma(float *c, const uint32_t *a, uint32_t b0, uint32_t b1) {
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
                 "{%0,%1,%2,%3};"
                 : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

static __device__ __forceinline__ void fa_ldm(uint32_t *r, const __nv_bfloat16 *p) {
    uint32_t a = (uint32_t)__cvta_generic_to_shared(p);
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(a));
}

static __device__ __forceinline__ void fa_ldm_t(uint32_t *r, const __nv_bfloat16 *p) {
    uint32_t a = (uint32_t)__cvta_generic_to_shared(p);
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(a));
}

/* 8 consecutive elements of a typed row as bf16 (16-byte aligned source) */
template <int KT> static __device__ __forceinline__ uint4 fa_ld8(const void *p, int64_t i);
template <> __device__ __forceinline__ uint4 fa_ld8<MLXN_BF16>(const void *p, int64_t i) {
    return __ldg((const uint4 *)((const uint16_t *)p + i));
}
template <> __device__ __forceinline__ uint4 fa_ld8<MLXN_F16>(const void *p, int64_t i) {
    uint4 v = __ldg((const uint4 *)((const uint16_t *)p + i));
    uint32_t w[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
    for (int k = 0; k < 4; k++) w[k] = fa_pack(cu_h2f((uint16_t)(w[k] & 0xffff)), cu_h2f((uint16_t)(w[k] >> 16)));
    return make_uint4(w[0], w[1], w[2], w[3]);
}
template <> __device__ __forceinline__ uint4 fa_ld8<MLXN_F32>(const void *p, int64_t i) {
    const float4 *f = (const float4 *)((const float *)p + i);
    float4 a = __ldg(f), b = __ldg(f + 1);
    return make_uint4(fa_pack(a.x, a.y), fa_pack(a.z, a.w), fa_pack(b.x, b.y), fa_pack(b.z, b.w));
}

/* 8 f16 or bf16 values (16 bytes) as 8 bf16 */
template <int KT> static __device__ __forceinline__ uint4 fa_to_bf16(uint4 v) {
    if (KT == MLXN_BF16) return v;
    uint32_t w[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
    for (int k = 0; k < 4; k++) w[k] = fa_pack(cu_h2f((uint16_t)(w[k] & 0xffff)), cu_h2f((uint16_t)(w[k] >> 16)));
    return make_uint4(w[0], w[1], w[2], w[3]);
}

template <int KT, int DM>
__global__ void __launch_bounds__(128) k_attn_fa(float *o, const float *q, const void *kc, const void *vc,
                                                 const int32_t *pos, int64_t T, int64_t H, int64_t Hkv, int64_t C,
                                                 int D, mlxn_attention_params p, bool vec) {
    constexpr int LD = DM + 8;
    extern __shared__ __align__(16) unsigned char fa_smem[];
    __nv_bfloat16 *Qs = (__nv_bfloat16 *)fa_smem; /* [FA_R][LD] */
    __nv_bfloat16 *Ks = Qs + FA_R * LD;           /* [FA_C][LD] */
    __nv_bfloat16 *Vs = Ks + FA_C * LD;           /* [FA_C][LD] */
    __shared__ int rng[2];
    const int G = (int)(H / Hkv), TB = FA_R / G, DP = (D + 15) & ~15;
    const int64_t hk = blockIdx.y, t0 = (int64_t)(gridDim.x - 1 - blockIdx.x) * TB;
    const int tid = threadIdx.x, w = tid >> 5, lane = tid & 31, g = lane >> 2, c4 = lane & 3;
    if (tid == 0) {
        rng[0] = INT_MAX;
        rng[1] = -1;
    }
    /* Q rows, bf16 */
    for (int i = tid; i < FA_R * (DP / 8); i += 128) {
        int r = i / (DP / 8), d = (i % (DP / 8)) * 8;
        int64_t t = t0 + r / G, h = hk * G + r % G;
        bool in = r < TB * G && t < T;
        const float *qr = q + (t * H + h) * D;
        uint4 v = make_uint4(0, 0, 0, 0);
        if (in && vec) {
            v = fa_ld8<MLXN_F32>(qr, d);
        } else if (in) {
            float f[8];
#pragma unroll
            for (int k = 0; k < 8; k++) f[k] = d + k < D ? qr[d + k] : 0.0f;
            v = make_uint4(fa_pack(f[0], f[1]), fa_pack(f[2], f[3]), fa_pack(f[4], f[5]), fa_pack(f[6], f[7]));
        }
        *(uint4 *)(Qs + r * LD + d) = v;
    }
    __syncthreads();
    /* the block's range of cache positions */
    if (tid < TB && t0 + tid < T) {
        int pt = pos[t0 + tid];
        if (pt >= 0) {
            int64_t first = (int64_t)pt - C + 1;
            if (p.window > 0 && (int64_t)pt - p.window + 1 > first) first = (int64_t)pt - p.window + 1;
            if (first < 0) first = 0;
            atomicMin(&rng[0], (int)first);
            atomicMax(&rng[1], pt);
        }
    }
    /* this thread's two rows: g and g + 8 of the warp's 16 */
    int64_t trow[2];
    int hrow[2], fst[2], lst[2];
    bool act[2], outr[2];
#pragma unroll
    for (int k = 0; k < 2; k++) {
        int r = w * 16 + g + 8 * k;
        trow[k] = t0 + r / G;
        hrow[k] = (int)(hk * G + r % G);
        outr[k] = r < TB * G && trow[k] < T;
        int pt = outr[k] ? pos[trow[k]] : -1;
        act[k] = pt >= 0;
        int64_t first = (int64_t)pt - C + 1;
        if (p.window > 0 && (int64_t)pt - p.window + 1 > first) first = (int64_t)pt - p.window + 1;
        if (first < 0) first = 0;
        fst[k] = (int)first;
        lst[k] = pt;
    }
    __syncthreads();
    const int lo = rng[0], hi = rng[1] + 1;
    const float L2E = 1.4426950408889634f;
    float oacc[DM / 8][4];
#pragma unroll
    for (int i = 0; i < DM / 8; i++) oacc[i][0] = oacc[i][1] = oacc[i][2] = oacc[i][3] = 0.0f;
    float mrow[2] = {-INFINITY, -INFINITY}, lrow[2] = {0.0f, 0.0f};
    /* ldmatrix.x4 row addresses: lane l gives row l & 7 of 8x8 matrix l >> 3.
     * A (q, 16 x 16): matrices rows 0-7 / 8-15 by (l >> 3) & 1, k halves by
     * l >> 4; B (k, two n-tiles of 8 x 16): n-tile by l >> 4, k halves by
     * (l >> 3) & 1 */
    const __nv_bfloat16 *qa = Qs + (w * 16 + (lane & 8) + (lane & 7)) * LD + (lane >> 4) * 8;
    const __nv_bfloat16 *kbase = Ks + (((lane >> 4) & 1) * 8 + (lane & 7)) * LD + ((lane >> 3) & 1) * 8;
    /* f16/bf16 caches with D <= 128: the next tile's K and V are loaded
     * into registers (raw, 16 bytes an item) while the current one is
     * multiplied, and converted into shared memory after it */
    constexpr bool PF = KT != MLXN_F32 && DM <= 128;
    constexpr int NPT = PF ? FA_C * DM / 8 / 128 : 1;
    const bool pf = PF && vec;
    const int items = FA_C * (DP / 8);
    uint4 rk[NPT], rv[NPT];
    auto fetch = [&](int b) {
#pragma unroll
        for (int k = 0; k < NPT; k++) {
            int i = tid + k * 128, j = i / (DP / 8), d = (i % (DP / 8)) * 8, pp = b + j;
            rk[k] = rv[k] = make_uint4(0, 0, 0, 0);
            if (i < items && pp < hi) {
                int64_t row = (hk * C + pp % C) * D + d;
                rk[k] = __ldg((const uint4 *)((const uint16_t *)kc + row));
                rv[k] = __ldg((const uint4 *)((const uint16_t *)vc + row));
            }
        }
    };
    auto stash = [&]() {
#pragma unroll
        for (int k = 0; k < NPT; k++) {
            int i = tid + k * 128, j = i / (DP / 8), d = (i % (DP / 8)) * 8;
            if (i < items) {
                *(uint4 *)(Ks + j * LD + d) = fa_to_bf16<KT>(rk[k]);
                *(uint4 *)(Vs + j * LD + d) = fa_to_bf16<KT>(rv[k]);
            }
        }
    };
    if (pf && lo < hi) fetch(lo);
    for (int b = lo; b < hi; b += FA_C) {
        __syncthreads(); /* the last tile's readers are done */
        if (pf) {
            stash();
        } else {
            for (int i = tid; i < items; i += 128) {
                int j = i / (DP / 8), d = (i % (DP / 8)) * 8;
                int pp = b + j;
                uint4 kv = make_uint4(0, 0, 0, 0), vv = kv;
                if (pp < hi) {
                    int64_t row = (hk * C + pp % C) * D;
                    if (vec) {
                        kv = fa_ld8<KT>(kc, row + d);
                        vv = fa_ld8<KT>(vc, row + d);
                    } else {
                        float fk[8], fv[8];
#pragma unroll
                        for (int k = 0; k < 8; k++) {
                            fk[k] = d + k < D ? cu_ld<KT>(kc, row + d + k) : 0.0f;
                            fv[k] = d + k < D ? cu_ld<KT>(vc, row + d + k) : 0.0f;
                        }
                        kv = make_uint4(fa_pack(fk[0], fk[1]), fa_pack(fk[2], fk[3]), fa_pack(fk[4], fk[5]),
                                        fa_pack(fk[6], fk[7]));
                        vv = make_uint4(fa_pack(fv[0], fv[1]), fa_pack(fv[2], fv[3]), fa_pack(fv[4], fv[5]),
                                        fa_pack(fv[6], fv[7]));
                    }
                }
                *(uint4 *)(Ks + j * LD + d) = kv;
                *(uint4 *)(Vs + j * LD + d) = vv;
            }
        }
        __syncthreads();
        if (pf && b + FA_C < hi) fetch(b + FA_C);
        /* scores: 16 rows x 64 positions a warp */
        float sc[8][4];
#pragma unroll
        for (int nt = 0; nt < 8; nt++) sc[nt][0] = sc[nt][1] = sc[nt][2] = sc[nt][3] = 0.0f;
#pragma unroll
        for (int ks = 0; ks < DM / 16; ks++) {
            if (ks * 16 >= DP) break;
            uint32_t a[4];
            fa_ldm(a, qa + ks * 16);
#pragma unroll
            for (int np = 0; np < 4; np++) {
                uint32_t bk[4];
                fa_ldm(bk, kbase + np * 16 * LD + ks * 16);
                fa_mma(sc[2 * np], a, bk[0], bk[1]);
                fa_mma(sc[2 * np + 1], a, bk[2], bk[3]);
            }
        }
        /* mask, scale, online softmax (base 2) */
        float mt[2] = {-INFINITY, -INFINITY};
#pragma unroll
        for (int nt = 0; nt < 8; nt++)
#pragma unroll
            for (int e = 0; e < 4; e++) {
                int k = e >> 1, pp = b + nt * 8 + c4 * 2 + (e & 1);
                float v = sc[nt][e] * p.scale;
                if (p.softcap > 0) v = tanhf(v / p.softcap) * p.softcap;
                bool ok = act[k] && pp >= fst[k] && pp <= lst[k];
                v = ok ? v * L2E : -INFINITY;
                sc[nt][e] = v;
                mt[k] = fmaxf(mt[k], v);
            }
        float corr[2];
#pragma unroll
        for (int k = 0; k < 2; k++) {
            mt[k] = fmaxf(mt[k], __shfl_xor_sync(0xffffffffu, mt[k], 1));
            mt[k] = fmaxf(mt[k], __shfl_xor_sync(0xffffffffu, mt[k], 2));
            float mn = fmaxf(mrow[k], mt[k]);
            corr[k] = mn == -INFINITY ? 1.0f : exp2f(mrow[k] - mn);
            mrow[k] = mn;
        }
        float ls[2] = {0.0f, 0.0f};
#pragma unroll
        for (int nt = 0; nt < 8; nt++)
#pragma unroll
            for (int e = 0; e < 4; e++) {
                int k = e >> 1;
                float pv = mrow[k] == -INFINITY ? 0.0f : exp2f(sc[nt][e] - mrow[k]);
                sc[nt][e] = pv;
                ls[k] += pv;
            }
#pragma unroll
        for (int k = 0; k < 2; k++) lrow[k] = lrow[k] * corr[k] + ls[k];
#pragma unroll
        for (int i = 0; i < DM / 8; i++) {
            oacc[i][0] *= corr[0];
            oacc[i][1] *= corr[0];
            oacc[i][2] *= corr[1];
            oacc[i][3] *= corr[1];
        }
        /* O += P V */
#pragma unroll
        for (int kk = 0; kk < FA_C / 16; kk++) {
            uint32_t a[4] = {fa_pack(sc[2 * kk][0], sc[2 * kk][1]), fa_pack(sc[2 * kk][2], sc[2 * kk][3]),
                             fa_pack(sc[2 * kk + 1][0], sc[2 * kk + 1][1]),
                             fa_pack(sc[2 * kk + 1][2], sc[2 * kk + 1][3])};
            const __nv_bfloat16 *vb = Vs + (kk * 16 + (lane & 7) + ((lane >> 3) & 1) * 8) * LD + (lane >> 4) * 8;
#pragma unroll
            for (int dp = 0; dp < DM / 16; dp++) {
                if (dp * 16 >= DP) break;
                uint32_t bv[4];
                fa_ldm_t(bv, vb + dp * 16);
                fa_mma(oacc[2 * dp], a, bv[0], bv[1]);
                fa_mma(oacc[2 * dp + 1], a, bv[2], bv[3]);
            }
        }
    }
    /* normalize and store */
#pragma unroll
    for (int k = 0; k < 2; k++) {
        lrow[k] += __shfl_xor_sync(0xffffffffu, lrow[k], 1);
        lrow[k] += __shfl_xor_sync(0xffffffffu, lrow[k], 2);
    }
#pragma unroll
    for (int k = 0; k < 2; k++) {
        if (!outr[k]) continue;
        float inv = lrow[k] > 0 ? 1.0f / lrow[k] : 0.0f;
        float *orow = o + (trow[k] * H + hrow[k]) * D;
#pragma unroll
        for (int i = 0; i < DM / 8; i++) {
            int d = i * 8 + c4 * 2;
            if (d < D) orow[d] = oacc[i][2 * k] * inv;
            if (d + 1 < D) orow[d + 1] = oacc[i][2 * k + 1] * inv;
        }
    }
}

static size_t fa_smem_bytes(int dm) { return (size_t)3 * FA_R * (dm + 8) * 2; }

template <int KT, int DM>
static cudaError_t launch_fa(const cu_node *n, int64_t T, int64_t H, int64_t Hkv, int64_t C, int D, bool vec,
                             cudaStream_t s) {
    static bool raised = false; /* per instantiation; > 48 KB of dynamic shared memory */
    size_t smem = fa_smem_bytes(DM);
    if (!raised) {
        cudaError_t e = cudaFuncSetAttribute(k_attn_fa<KT, DM>, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem);
        if (e != cudaSuccess) return e;
        raised = true;
    }
    int G = (int)(H / Hkv), TB = FA_R / G;
    dim3 grid((unsigned)((T + TB - 1) / TB), (unsigned)Hkv);
    const cu_tensor *t = n->t;
    k_attn_fa<KT, DM><<<grid, 128, smem, s>>>((float *)t[0].data, (const float *)t[1].data, t[2].data, t[3].data,
                                               (const int32_t *)t[4].data, T, H, Hkv, C, D, n->attn, vec);
    CU_LAUNCH_CHECK();
    return cudaSuccess;
}

template <int KT>
static cudaError_t run_fa(const cu_node *n, int64_t T, int64_t H, int64_t Hkv, int64_t C, int D, cudaStream_t s) {
    const cu_tensor *t = n->t;
    bool vec = D % 8 == 0 && ((uintptr_t)t[1].data & 15) == 0 && ((uintptr_t)t[2].data & 15) == 0 &&
               ((uintptr_t)t[3].data & 15) == 0;
    if (D <= 64) return launch_fa<KT, 64>(n, T, H, Hkv, C, D, vec, s);
    if (D <= 128) return launch_fa<KT, 128>(n, T, H, Hkv, C, D, vec, s);
    return launch_fa<KT, 256>(n, T, H, Hkv, C, D, vec, s);
}

/* Whether k_attn_fa takes the node: prefill, whole GQA groups that fit a
 * block; f32-activation sessions keep the f32 kernels. */
/* Shared memory a block of the current device may opt in to (D = 256 takes
 * 99 KB: more than sm_86 / sm_89 give; 0 when unknown). */
static size_t fa_smem_limit(void) {
    int dev = 0, v = 0;
    if (cudaGetDevice(&dev) != cudaSuccess ||
        cudaDeviceGetAttribute(&v, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev) != cudaSuccess) {
        cudaGetLastError();
        return 0;
    }
    return (size_t)v;
}

static bool fa_takes(const cu_node *n) {
    const cu_tensor *t = n->t;
    int64_t T = t[1].shape[0], H = t[1].shape[1], D = t[1].shape[2], Hkv = t[2].shape[0], C = t[2].shape[1];
    if (!(T > 1 && D <= 256 && Hkv > 0 && H % Hkv == 0 && H / Hkv <= FA_R && !n->f32_act && C < INT_MAX &&
          T * H * D < INT64_MAX / 2))
        return false;
    size_t need = fa_smem_bytes(D <= 64 ? 64 : D <= 128 ? 128 : 256) + 64; /* + the static rng[] */
    return need <= fa_smem_limit();
}

/* The cluster kernel (sm_90+, MLXN_CU_ATT_CLUSTER unset or not 0) for
 * every attention that is not a tensor-core or tiled prefill. */
static bool cluster_on(void) {
    static int on = -1;
    if (on < 0) on = cu_sm90_feature("MLXN_CU_ATT_CLUSTER");
    return on;
}

/* Head dims up to 128 take k_attn_cluster with 4 values a lane instead of
 * 8: 56 registers a thread instead of 63, 10 KB of shared memory a block
 * instead of 20 (bench/RESULTS.md: 8B decode +1.2-1.8 % on an H100). The
 * kernel's launch bounds name one block an SM as the minimum: with none,
 * ptxas put the D <= 128 form in 48 registers with spills. Measured
 * there and not kept: the kernel bound to 48 registers, so that two blocks
 * of the o-projection after it fit beside its two on an SM (slower; so was
 * the o-projection bound to 72 registers for the same end), and four
 * positions a warp in flight instead of two (slower). */
template <int KT, bool XQ, bool ROPE>
static cudaError_t launch_cluster_t(cudaLaunchConfig_t *cfg, bool early, const cu_node *n, int xl, uint8_t *xg, float *y,
                                    int64_t N, const RopeAtt &r, int hb) {
    const cu_tensor *t = n->t;
    int64_t H = t[1].shape[1], D = t[1].shape[2], Hkv = t[2].shape[0], C = t[2].shape[1];
#define ATTC_ARGS                                                                                           \
    (float *)t[0].data, (const float *)t[1].data, t[2].data, t[3].data, (const int32_t *)t[4].data, H, Hkv, C, \
        (int)D, n->attn, xl, xg, y, N, r
#define ATTC_LAUNCH(MD, HB)                                                                                 \
    cudaLaunchKernelEx(cfg, early ? k_attn_cluster<KT, true, XQ, ROPE, MD, HB>                             \
                                  : k_attn_cluster<KT, false, XQ, ROPE, MD, HB>, ATTC_ARGS)
    if (hb == 4) return ATTC_LAUNCH(128, 4);
    if (hb == 2) return ATTC_LAUNCH(128, 2);
    if (hb == 1) return ATTC_LAUNCH(128, 1);
    if (D > 128) return ATTC_LAUNCH(ATT_MAXD, 0);
    return ATTC_LAUNCH(128, 0);
#undef ATTC_LAUNCH
#undef ATTC_ARGS
}
template <bool XQ, bool ROPE>
static cudaError_t launch_cluster_kt(cudaLaunchConfig_t *cfg, bool early, const cu_node *n, int xl, uint8_t *xg, float *y,
                                     int64_t N, const RopeAtt &r, int hb) {
    int kt = n->t[2].dtype;
    return kt == MLXN_F32   ? launch_cluster_t<MLXN_F32, XQ, ROPE>(cfg, early, n, xl, xg, y, N, r, hb)
           : kt == MLXN_F16 ? launch_cluster_t<MLXN_F16, XQ, ROPE>(cfg, early, n, xl, xg, y, N, r, hb)
                            : launch_cluster_t<MLXN_BF16, XQ, ROPE>(cfg, early, n, xl, xg, y, N, r, hb);
}

/* The cluster kernel's form for node n: 0 the scalar one (attn_chunk, one
 * head a block), else the vector one (attn_chunk_v) with that many query
 * heads of one KV head a block: head dims <= 128 and a multiple of 8 (whole
 * 16-byte rows), 16-byte aligned caches; 2 heads where the group is even.
 * H200, 8B shape (bench/RESULTS.md): at position 4095 2 heads a block took
 * 24.4 us, 1 head 35.3 and the scalar form 44.4; 4 heads (64 blocks: half
 * the SMs idle) 28.2, with decode from an empty cache 4 % slower (612
 * against 637 tok/s). MLXN_CU_ATT_VEC=0 keeps the scalar form, MLXN_CU_ATT_HB=1 / 2 / 4
 * sets the heads a block (measuring). */
static int att_heads_a_block(const cu_node *n) {
    static int vec = -1, cap = 2;
    if (vec < 0) {
        vec = mlxn_cu_env_flag("MLXN_CU_ATT_VEC", 1);
        const char *e = getenv("MLXN_CU_ATT_HB");
        if (e && (atoi(e) == 1 || atoi(e) == 2 || atoi(e) == 4)) cap = atoi(e);
    }
    const cu_tensor *t = n->t;
    int64_t H = t[1].shape[1], D = t[1].shape[2], Hkv = t[2].shape[0];
    if (!vec || D > 128 || D % 8 || ((uintptr_t)t[2].data | (uintptr_t)t[3].data) % 16) return 0;
    if (Hkv <= 0 || H % Hkv) return 1;
    int64_t G = H / Hkv;
    return G % 4 == 0 && cap >= 4 ? 4 : G % 2 == 0 && cap >= 2 ? 2 : 1;
}

/* The cluster kernel for node n on s; xg non-NULL: the XQ form (layout xl);
 * r non-NULL:
 * the ROPE form (early then also covers its frequency factors). */
static cudaError_t launch_cluster(const cu_node *n, cudaStream_t s, int xl, uint8_t *xg, float *y, int64_t N,
                                  const RopeAtt *r = NULL) {
    const cu_tensor *t = n->t;
    int64_t T = t[1].shape[0], H = t[1].shape[1];
    const int hb = att_heads_a_block(n);
    cudaLaunchConfig_t cfg = {};
    cfg.gridDim = dim3((unsigned)(T * H / (hb ? hb : 1)), ATT_CLUSTER);
    cfg.blockDim = dim3(ATTC_WARPS * 32);
    cfg.stream = s;
    cudaLaunchAttribute at[2];
    unsigned na = 0;
    at[na].id = cudaLaunchAttributeClusterDimension;
    at[na].val.clusterDim.x = 1;
    at[na].val.clusterDim.y = ATT_CLUSTER;
    at[na++].val.clusterDim.z = 1;
    if (mlxn_cu_pdl()) {
        at[na].id = cudaLaunchAttributeProgrammaticStreamSerialization;
        at[na++].val.programmaticStreamSerializationAllowed = 1;
    }
    cfg.attrs = at;
    cfg.numAttrs = na;
    RopeAtt none = {};
    bool e = n->pos_early;
    if (r) return xg ? launch_cluster_kt<true, true>(&cfg, e, n, xl, xg, y, N, *r, hb)
                     : launch_cluster_kt<false, true>(&cfg, e, n, xl, xg, y, N, *r, hb);
    return xg ? launch_cluster_kt<true, false>(&cfg, e, n, xl, xg, y, N, none, hb)
              : launch_cluster_kt<false, false>(&cfg, e, n, xl, xg, y, N, none, hb);
}

static bool same(const cu_tensor &a, const cu_tensor &b) {
    if (a.data != b.data || a.dtype != b.dtype || a.ndim != b.ndim) return false;
    for (int k = 0; k < a.ndim; k++)
        if (a.shape[k] != b.shape[k]) return false;
    return true;
}
/* Whether attention a is one token on the cluster kernel with an f32
 * output: what its XQ and ROPE forms need. */
static bool decode_cluster(const cu_node *a) {
    const cu_tensor *t = a->t;
    int64_t T = t[1].shape[0], H = t[1].shape[1], D = t[1].shape[2], Hkv = t[2].shape[0];
    return a->op == CU_OP_ATTENTION && T == 1 && D <= ATT_MAXD && Hkv > 0 && H % Hkv == 0 &&
           t[0].dtype == MLXN_F32 && !fa_takes(a) && cluster_on();
}

/* Whether the decode attention n may write its output as the int8 x of a
 * one-row matmul (k_attn_cluster's XQ form): head dim a multiple of 32. */
bool mlxn_cu_attention_quantable(const cu_node *n) { return decode_cluster(n) && n->t[1].shape[2] % 32 == 0; }

/* The XQ form's arguments: a layout, and y (to zero) exactly for the
 * layouts whose matmul adds into it (mlxn_cu_xl_zeroes). */
static bool xq_args_ok(const cu_node *n, int xl, const uint8_t *x, const float *y) {
    return x && (xl == XL_G || xl == XL_Q || xl == XL_QZ) && mlxn_cu_xl_zeroes(xl) == (y != NULL) &&
           mlxn_cu_attention_quantable(n);
}

cudaError_t mlxn_cu_launch_attention_quant(const cu_node *n, int xl, uint8_t *x, float *y, int64_t N,
                                           cudaStream_t s) {
    if (!xq_args_ok(n, xl, x, y)) return cudaErrorInvalidValue;
    return launch_cluster(n, s, xl, x, y, N);
}

/* The group's rope of q, rope_kv_write of k and kv_write of v, each once,
 * for attention a (one token, the cluster kernel): the same positions, the
 * same rope for q and k, q's rope writing a's q, the k and v writes a's
 * caches; no input shares bytes with a cache or with a's output. */
static bool rope_parts(const cu_node *g, int cnt, const cu_node *a, const cu_node **rq, const cu_node **rk,
                       const cu_node **wv) {
    *rq = *rk = *wv = NULL;
    if (cnt != 3) return false;
    for (int k = 0; k < cnt; k++) {
        const cu_node *n = &g[k];
        const cu_node **slot = n->op == CU_OP_ROPE ? rq : n->op == CU_OP_ROPE_KV_WRITE ? rk : n->op == CU_OP_KV_WRITE ? wv : NULL;
        if (!slot || *slot) return false;
        *slot = n;
    }
    const cu_tensor *t = a->t;
    int64_t H = t[1].shape[1], D = t[1].shape[2], Hkv = t[2].shape[0];
    if (!decode_cluster(a) || t[2].dtype != t[3].dtype) return false;
    const cu_node *q = *rq, *k = *rk, *v = *wv;
    if (!same(q->t[0], t[1]) || q->t[1].dtype != MLXN_F32 || q->t[1].elems != H * D || q->t[1].shape[2] != D)
        return false;
    if (!same(k->t[0], t[2]) || !same(v->t[0], t[3])) return false;
    for (const cu_node *x : {k, v})
        if (x->t[1].dtype != MLXN_F32 || x->t[1].shape[0] != 1 || x->t[1].shape[1] != Hkv || x->t[1].shape[2] != D)
            return false;
    for (const cu_node *x : {q, k, v})
        if (x->t[2].data != t[4].data) return false;
    if (memcmp(&q->rope, &k->rope, sizeof q->rope) || q->t[3].data != k->t[3].data) return false;
    if (q->rope.n_dims < 2 || q->rope.n_dims > D || q->rope.n_dims % 2) return false;
    const cu_tensor *ins[3] = {&q->t[1], &k->t[1], &v->t[1]};
    for (int i = 0; i < 3; i++)
        if (mlxn_cu_overlap(ins[i], &t[2]) || mlxn_cu_overlap(ins[i], &t[3]) || mlxn_cu_overlap(ins[i], &t[0]))
            return false;
    if (mlxn_cu_overlap(&t[1], &t[2]) || mlxn_cu_overlap(&t[1], &t[3]) || mlxn_cu_overlap(&t[1], &t[0]) ||
        mlxn_cu_overlap(&t[1], &k->t[1]) || mlxn_cu_overlap(&t[1], &v->t[1]))
        return false; /* q may be rotated in place, but not over anything else */
    return true;
}

bool mlxn_cu_rope_attention_ok(const cu_node *g, int cnt, const cu_node *a) {
    static int on = -1;
    if (on < 0) on = mlxn_cu_env_flag("MLXN_CU_ROPEATT", 1);
    const cu_node *rq, *rk, *wv;
    return on && rope_parts(g, cnt, a, &rq, &rk, &wv);
}

cudaError_t mlxn_cu_launch_rope_attention(const cu_node *g, int cnt, const cu_node *a, int xl, uint8_t *xg, float *y,
                                          int64_t N, cudaStream_t s) {
    const cu_node *rq, *rk, *wv;
    if (!rope_parts(g, cnt, a, &rq, &rk, &wv)) return cudaErrorInvalidValue;
    if (xg && !xq_args_ok(a, xl, xg, y)) return cudaErrorInvalidValue;
    if (xg && y) { /* y is zeroed while the group's inputs are read */
        cu_tensor yt = {};
        yt.data = y;
        yt.nbytes = (size_t)N * sizeof(float);
        for (int k = 0; k < cnt; k++)
            for (int i = 0; i < g[k].n_slots; i++)
                if (mlxn_cu_overlap(&yt, &g[k].t[i])) return cudaErrorInvalidValue;
    }
    RopeAtt r;
    r.qx = (const float *)rq->t[1].data;
    r.kx = (const float *)rk->t[1].data;
    r.vx = (const float *)wv->t[1].data;
    r.qo = (float *)rq->t[0].data;
    r.ff = (const float *)rq->t[3].data;
    r.p = rq->rope;
    for (int j = 0; j < r.p.n_dims / 2; j++) r.inv[j] = rope_inv_freq(r.p, j, NULL);
    return launch_cluster(a, s, xl, xg, y, N, &r);
}

size_t mlxn_cu_attention_scratch(const cu_node *n) {
    if (fa_takes(n)) return 0;
    const cu_tensor *q = &n->t[1];
    int64_t TH = q->shape[0] * q->shape[1], D = q->shape[2];
    return (size_t)TH * (size_t)att_splits(n->t[2].shape[1]) * (size_t)(D + 2) * sizeof(float);
}

cudaError_t mlxn_cu_attention(const cu_node *n, void *scratch, cudaStream_t s) {
    const cu_tensor *t = n->t;
    int64_t T = t[1].shape[0], H = t[1].shape[1], D = t[1].shape[2];
    int64_t Hkv = t[2].shape[0], C = t[2].shape[1];
    if (D > ATT_MAXD) return cudaErrorInvalidValue;
    /* prefill on the tensor cores; f32-activation sessions keep the f32 kernels */
    if (fa_takes(n)) {
        if (t[2].dtype == MLXN_F32) return run_fa<MLXN_F32>(n, T, H, Hkv, C, (int)D, s);
        if (t[2].dtype == MLXN_F16) return run_fa<MLXN_F16>(n, T, H, Hkv, C, (int)D, s);
        return run_fa<MLXN_BF16>(n, T, H, Hkv, C, (int)D, s);
    }
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
    if (cluster_on()) return launch_cluster(n, s, XL_NONE, NULL, NULL, 0);
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
