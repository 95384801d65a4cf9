/*
 * quant.cuh — weight decoders for every matmul / get_rows format. A decoder
 * turns "unit" u of row n (U consecutive elements, starting at element u*U)
 * into U floats in registers; kernels are written once over decoders.
 *
 * GGML layouts (ggml-common.h; W is [N, K], each row K/QK blocks):
 *   q4_0 (32, 18 B): f16 d, qs[16];       y[j] = (lo(qs[j]) - 8) d, y[j+16] = (hi(qs[j]) - 8) d
 *   q4_1 (32, 20 B): f16 d, f16 m, qs[16]; y = q d + m
 *   q8_0 (32, 34 B): f16 d, int8 qs[32];   y = q d
 *   q4_k (256, 144 B): f16 d, f16 dmin, scales[12] (6-bit sc/m pairs), qs[128]
 *   q5_k (256, 176 B): f16 d, f16 dmin, scales[12], qh[32], qs[128]
 *   q6_k (256, 210 B): ql[128], qh[64], int8 scales[16], f16 d
 * MLX affine: wq u32 [N, K*bits/32], an LSB-first bit stream per row;
 * scales/biases [N, K/group]; y = s q + b.
 */
#pragma once

#include "backend/cuda/cuda_common.cuh"

static __device__ __forceinline__ uint32_t ld_u16(const uint8_t *p) { return *(const uint16_t *)p; }

/* v - off as a float for a small unsigned integer v (< 2^23) without the
 * quarter-rate integer->float conversion: 2^23 + v has v in its mantissa,
 * and the subtraction is exact. One LOP + one FADD. */
static __device__ __forceinline__ float u2f(uint32_t v, float off) {
    return __int_as_float(0x4B000000u | v) - (8388608.0f + off);
}

/* Dense rows, 8 elements a unit, 16-byte loads (caller checks alignment). */
struct DecF32 {
    static constexpr int U = 8;
    const uint8_t *w;
    int64_t rb;
    __device__ __forceinline__ void decode(int64_t n, int64_t u, float *y) const {
        const float4 *p = (const float4 *)(w + n * rb) + u * 2;
        float4 a = __ldg(p), b = __ldg(p + 1);
        y[0] = a.x; y[1] = a.y; y[2] = a.z; y[3] = a.w;
        y[4] = b.x; y[5] = b.y; y[6] = b.z; y[7] = b.w;
    }
};
template <bool BF>
struct DecHalf {
    static constexpr int U = 8;
    const uint8_t *w;
    int64_t rb;
    __device__ __forceinline__ void decode(int64_t n, int64_t u, float *y) const {
        uint4 v = __ldg((const uint4 *)(w + n * rb) + u);
        uint32_t q[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
        for (int i = 0; i < 4; i++) {
            y[2 * i] = BF ? cu_b2f((uint16_t)(q[i] & 0xffff)) : cu_h2f((uint16_t)(q[i] & 0xffff));
            y[2 * i + 1] = BF ? cu_b2f((uint16_t)(q[i] >> 16)) : cu_h2f((uint16_t)(q[i] >> 16));
        }
    }
};

struct DecQ4_0 {
    static constexpr int U = 32, QK = 32, BB = 18;
    const uint8_t *w;
    int64_t rb;
    /* where unit u of row n starts (for prefetching) */
    __device__ __forceinline__ const void *addr(int64_t n, int64_t u) const { return w + n * rb + (u * U / QK) * BB; }
    __device__ __forceinline__ void decode(int64_t n, int64_t u, float *y) const {
        const uint8_t *b = w + n * rb + u * BB;
        float d = cu_h2f((uint16_t)ld_u16(b));
#pragma unroll
        for (int i = 0; i < 8; i++) {
            uint32_t q = ld_u16(b + 2 + 2 * i);
            y[2 * i] = u2f(q & 15, 8.0f) * d;
            y[2 * i + 16] = u2f((q >> 4) & 15, 8.0f) * d;
            y[2 * i + 1] = u2f((q >> 8) & 15, 8.0f) * d;
            y[2 * i + 17] = u2f((q >> 12) & 15, 8.0f) * d;
        }
    }
};
struct DecQ4_1 {
    static constexpr int U = 32, QK = 32, BB = 20;
    const uint8_t *w;
    int64_t rb;
    /* where unit u of row n starts (for prefetching) */
    __device__ __forceinline__ const void *addr(int64_t n, int64_t u) const { return w + n * rb + (u * U / QK) * BB; }
    __device__ __forceinline__ void decode(int64_t n, int64_t u, float *y) const {
        const uint8_t *b = w + n * rb + u * BB;
        uint32_t dm = *(const uint32_t *)b;
        float d = cu_h2f((uint16_t)(dm & 0xffff)), m = cu_h2f((uint16_t)(dm >> 16));
#pragma unroll
        for (int i = 0; i < 4; i++) {
            uint32_t q = *(const uint32_t *)(b + 4 + 4 * i);
#pragma unroll
            for (int k = 0; k < 4; k++) {
                y[4 * i + k] = fmaf(u2f((q >> (8 * k)) & 15, 0.0f), d, m);
                y[4 * i + k + 16] = fmaf(u2f((q >> (8 * k + 4)) & 15, 0.0f), d, m);
            }
        }
    }
};
struct DecQ8_0 {
    static constexpr int U = 32, QK = 32, BB = 34;
    const uint8_t *w;
    int64_t rb;
    /* where unit u of row n starts (for prefetching) */
    __device__ __forceinline__ const void *addr(int64_t n, int64_t u) const { return w + n * rb + (u * U / QK) * BB; }
    __device__ __forceinline__ void decode(int64_t n, int64_t u, float *y) const {
        const uint8_t *b = w + n * rb + u * BB;
        float d = cu_h2f((uint16_t)ld_u16(b));
#pragma unroll
        for (int i = 0; i < 16; i++) {
            uint32_t q = ld_u16(b + 2 + 2 * i);
            /* int8 b as (b ^ 0x80) - 128 */
            y[2 * i] = u2f((q & 0xff) ^ 0x80, 128.0f) * d;
            y[2 * i + 1] = u2f(((q >> 8) & 0xff) ^ 0x80, 128.0f) * d;
        }
    }
};

/* The 6-bit scales and mins of sub-blocks 2j and 2j + 1 of a q4_k / q5_k
 * block (unit j, 0..3), from its 12 scale bytes held as three words s0..s2
 * (ggml's get_scale_min_k4): the eight scales and eight mins are first
 * rebuilt as bytes of one word each for the unit's half (j < 2: the low 6
 * bits of bytes 0-3 / 4-7; j >= 2: a nibble of bytes 8-11 under the top
 * two bits of bytes 0-3 / 4-7), then the unit's two bytes taken by shifts.
 * A handful of word operations instead of a select chain a value: H100,
 * bench/RESULTS.md (q4_k one-row kernel 57-87 -> 71-89 % of copy). */
static __device__ __forceinline__ void kq_scale_min2(int j, uint32_t s0, uint32_t s1, uint32_t s2, int *sc1, int *sc2,
                                                     int *m1, int *m2) {
    bool hi = j >= 2;
    int sh = 16 * (j & 1);
    uint32_t scw = hi ? (s2 & 0x0F0F0F0Fu) | ((s0 >> 2) & 0x30303030u) : s0 & 0x3F3F3F3Fu;
    uint32_t mw = hi ? ((s2 >> 4) & 0x0F0F0F0Fu) | ((s1 >> 2) & 0x30303030u) : s1 & 0x3F3F3F3Fu;
    *sc1 = (int)((scw >> sh) & 0xff);
    *sc2 = (int)((scw >> (sh + 8)) & 0xff);
    *m1 = (int)((mw >> sh) & 0xff);
    *m2 = (int)((mw >> (sh + 8)) & 0xff);
}
/* A q4_k / q5_k unit's dot from its two sub-blocks' integer dots dpa, dpb
 * with x blocks of scales dxa, dxb and code sums sa, sb: the scale and min
 * products stay integers (|sc·dp| < 2^22: exact), two conversions a
 * sub-block. dd = (d, dmin). */
static __device__ __forceinline__ float kq_unit(float2 dd, int sc1, int sc2, int m1, int m2, int dpa, int dpb,
                                                float dxa, float dxb, int sa, int sb) {
    return dxa * (dd.x * (float)(sc1 * dpa) - dd.y * (float)(m1 * sa)) +
           dxb * (dd.x * (float)(sc2 * dpb) - dd.y * (float)(m2 * sb));
}
static __device__ __forceinline__ float2 kq_dmin(uint32_t w) { return __half22float2(*(const __half2 *)&w); }

/* q4_k / q5_k: unit j (0..3) = elements 64j..64j+63 of the block. */
template <bool Q5>
struct DecQK45 {
    static constexpr int U = 64, QK = 256, BB = Q5 ? 176 : 144;
    const uint8_t *w;
    int64_t rb;
    __device__ __forceinline__ const void *addr(int64_t n, int64_t u) const {
        return w + n * rb + (u >> 2) * BB + (Q5 ? 48 : 16) + 32 * (u & 3);
    }
    __device__ __forceinline__ void decode(int64_t n, int64_t u, float *y) const {
        const uint8_t *b = w + n * rb + (u >> 2) * BB;
        int j = (int)(u & 3);
        float2 dd = kq_dmin(*(const uint32_t *)b);
        uint32_t w0 = *(const uint32_t *)(b + 4), w1 = *(const uint32_t *)(b + 8), w2 = *(const uint32_t *)(b + 12);
        int s1, m1, s2, m2;
        kq_scale_min2(j, w0, w1, w2, &s1, &s2, &m1, &m2);
        float d1 = dd.x * (float)s1, d2 = dd.x * (float)s2, mm1 = dd.y * (float)m1, mm2 = dd.y * (float)m2;
        const uint8_t *qs = b + (Q5 ? 48 : 16) + 32 * j;
        uint4 q0 = *(const uint4 *)qs, q1 = *(const uint4 *)(qs + 16);
        uint32_t q[8] = {q0.x, q0.y, q0.z, q0.w, q1.x, q1.y, q1.z, q1.w};
        uint32_t h[8];
        if (Q5) {
            uint4 h0 = *(const uint4 *)(b + 16), h1 = *(const uint4 *)(b + 32);
            h[0] = h0.x; h[1] = h0.y; h[2] = h0.z; h[3] = h0.w;
            h[4] = h1.x; h[5] = h1.y; h[6] = h1.z; h[7] = h1.w;
        }
#pragma unroll
        for (int i = 0; i < 8; i++) {
#pragma unroll
            for (int k = 0; k < 4; k++) {
                int l = 4 * i + k;
                uint32_t lq = (q[i] >> (8 * k)) & 15, hq = (q[i] >> (8 * k + 4)) & 15;
                if (Q5) {
                    uint32_t hb = (h[i] >> (8 * k)) & 0xff;
                    lq |= ((hb >> (2 * j)) & 1) << 4;
                    hq |= ((hb >> (2 * j + 1)) & 1) << 4;
                }
                float lo = u2f(lq, 0.0f), hi = u2f(hq, 0.0f);
                y[l] = d1 * lo - mm1;
                y[l + 32] = d2 * hi - mm2;
            }
        }
    }
};

/* q6_k: unit u (0..7) = elements 32u..32u+31: half nh = u/4, group g = u%4;
 * element l of the group: ql[64 nh + l + 32 (g & 1)] (low nibble for g < 2),
 * qh[32 nh + l] bits 2g, scale sc[8 nh + l/16 + 2g]. */
struct DecQ6K {
    static constexpr int U = 32, QK = 256, BB = 210;
    const uint8_t *w;
    int64_t rb;
    /* where unit u of row n starts (for prefetching) */
    __device__ __forceinline__ const void *addr(int64_t n, int64_t u) const { return w + n * rb + (u * U / QK) * BB; }
    __device__ __forceinline__ void decode(int64_t n, int64_t u, float *y) const {
        const uint8_t *b = w + n * rb + (u >> 3) * BB;
        int s = (int)(u & 7), nh = s >> 2, g = s & 3;
        float d = cu_h2f((uint16_t)ld_u16(b + 208));
        const uint8_t *ql = b + 64 * nh + 32 * (g & 1), *qh = b + 128 + 32 * nh;
        const int8_t *sc = (const int8_t *)(b + 192 + 8 * nh);
        float da = d * (float)sc[2 * g], db = d * (float)sc[2 * g + 1];
        int shl = (g >> 1) * 4, shh = 2 * g;
#pragma unroll
        for (int i = 0; i < 16; i++) {
            uint32_t lq = ld_u16(ql + 2 * i), hq = ld_u16(qh + 2 * i);
#pragma unroll
            for (int k = 0; k < 2; k++) {
                int l = 2 * i + k;
                uint32_t q = ((lq >> (8 * k + shl)) & 15) | (((hq >> (8 * k + shh)) & 3) << 4);
                y[l] = (l < 16 ? da : db) * u2f(q, 32.0f);
            }
        }
    }
};

/* MLX affine, unit = 32 elements = B u32 words. */
template <int B>
struct DecMlx {
    static constexpr int U = 32;
    const uint32_t *wq;
    const void *scales, *biases;
    int sdt, gshift; /* group size = 1 << gshift (32, 64, 128) */
    int64_t K;
    __device__ __forceinline__ const void *addr(int64_t n, int64_t u) const { return wq + n * (K * B / 32) + u * B; }
    __device__ __forceinline__ void decode(int64_t n, int64_t u, float *y) const {
        const uint32_t *p = wq + n * (K * B / 32) + u * B;
        uint32_t w[B + 1];
        if (B == 4) {
            uint4 v = __ldg((const uint4 *)p);
            w[0] = v.x; w[1] = v.y; w[2] = v.z; w[3] = v.w;
        } else if (B == 8) {
            uint4 v = __ldg((const uint4 *)p), v2 = __ldg((const uint4 *)p + 1);
            w[0] = v.x; w[1] = v.y; w[2] = v.z; w[3] = v.w;
            w[4] = v2.x; w[5] = v2.y; w[6] = v2.z; w[7] = v2.w;
        } else {
#pragma unroll
            for (int i = 0; i < B; i++) w[i] = __ldg(p + i);
        }
        w[B] = 0;
        int64_t gi = n * (K >> gshift) + ((u * 32) >> gshift);
        float s = cu_ld_rt(scales, sdt, gi), bb = cu_ld_rt(biases, sdt, gi);
#pragma unroll
        for (int i = 0; i < 32; i++) {
            const int pos = i * B, wd = pos >> 5, sh = pos & 31;
            uint32_t v = w[wd] >> sh;
            if (sh + B > 32) v |= w[wd + 1] << (32 - sh);
            v &= (1u << B) - 1u;
            y[i] = fmaf(s, u2f(v, 0.0f), bb);
        }
    }
};

/* ---- integer dot products for decode (M = 1) ----
 * x is quantized to int8 per 32 elements (as llama.cpp's q8_1): a block is
 * 48 bytes = 3 uint4: q[32] int8, then {f32 d, i32 sum of q[0..15], i32 sum
 * of q[16..31], pad}. The 48-byte stride keeps the 128-bit shared-memory
 * reads of 8 lanes on distinct banks. dotq(n, u, xs) returns the dot of unit
 * u of row n with x; 4 weights per __dp4a, scales applied once per block. */
#define XQ_BLOCK_U4 (XQ_BYTES / 16) /* xq_store (cuda_common.cuh) writes it */

static __device__ __forceinline__ void ldx(const uint4 *xs, int64_t b, int *xq, float *d, int *s0, int *s1) {
    uint4 a = xs[b * 3], c = xs[b * 3 + 1], e = xs[b * 3 + 2]; /* plain loads: the R dotq calls of a k_mmvq lane share them */
    xq[0] = (int)a.x; xq[1] = (int)a.y; xq[2] = (int)a.z; xq[3] = (int)a.w;
    xq[4] = (int)c.x; xq[5] = (int)c.y; xq[6] = (int)c.z; xq[7] = (int)c.w;
    *d = __int_as_float((int)e.x);
    *s0 = (int)e.y;
    *s1 = (int)e.z;
}
/* 4 bytes at a 2-byte-aligned address. */
static __device__ __forceinline__ uint32_t ld_u32_a2(const uint8_t *p) { return ld_u16(p) | (ld_u16(p + 2) << 16); }
/* A weight load of the one-row dots. CS: streaming (ld.global.cs, evict
 * first), which leaves L1 to the int8 x read beside the weights; taken per
 * format where it measured faster (bench/RESULTS.md, H100: q4_1, q4_k,
 * q6_k, MLX 8-bit; slower for q4_0, q8_0, q5_k). */
template <bool CS, class T>
static __device__ __forceinline__ T ld_w(const T *p) {
    return CS ? __ldcs(p) : __ldg(p);
}
/* NW words at a 2-byte-aligned address: NW (+1 when misaligned) aligned
 * loads and a funnel shift each (instead of 2 NW 16-bit loads). */
template <int NW, bool CS = false>
static __device__ __forceinline__ void ld_words_a2(const uint8_t *p, uint32_t *out) {
    const uint32_t *a = (const uint32_t *)((uintptr_t)p & ~(uintptr_t)3);
    uint32_t sh = ((uint32_t)(uintptr_t)p & 2u) * 8u;
    uint32_t w[NW + 1];
#pragma unroll
    for (int i = 0; i < NW; i++) w[i] = ld_w<CS>(a + i);
    w[NW] = sh ? ld_w<CS>(a + NW) : 0u; /* aligned: never read past the run */
#pragma unroll
    for (int i = 0; i < NW; i++) out[i] = __funnelshift_r(w[i], w[i + 1], sh);
}

/* A block of an f16 scale and NW code words at a 2-byte-aligned address
 * p (q8_0: NW = 8): the NW + 1 aligned words that hold it, one
 * load each (the scale's half word rides in the first), whichever half of
 * a word p starts at; returns the scale's bits, the codes in out. Each
 * word loaded holds at least one byte of the block. */
template <int NW>
static __device__ __forceinline__ uint16_t ld_block_a2(const uint8_t *p, uint32_t *out) {
    const uint32_t *a = (const uint32_t *)((uintptr_t)p & ~(uintptr_t)3);
    uint32_t sh = ((uint32_t)(uintptr_t)p & 2u) * 8u; /* 0 or 16 */
    uint32_t w[NW + 1];
#pragma unroll
    for (int i = 0; i <= NW; i++) w[i] = __ldg(a + i);
#pragma unroll
    for (int i = 0; i < NW; i++) out[i] = __funnelshift_rc(w[i], w[i + 1], 16u + sh); /* clamped: 32 gives w[i + 1] */
    return (uint16_t)(w[0] >> sh);
}

struct QDotQ4_0 : DecQ4_0 {
    static constexpr bool STEP4 = false;
    /* rows a warp of k_mmvq (kernels_matmul.cu), measured on an H100
     * (bench/RESULTS.md): 2 for q4_0, q4_1, q6_k and MLX 8-bit; 1 for
     * q8_0, q5_k, MLX 2 / 3 / 6-bit (slower with 2 at the 4096-row shapes)
     * and MLX 5-bit (not measured) */
    static constexpr int ROWS = 2;
    static constexpr int MINB = 8; /* blocks of 256 per SM the register budget aims at */
    __device__ __forceinline__ float dotq(int64_t n, int64_t u, const uint4 *xs) const {
        const uint8_t *b = w + n * rb + u * BB;
        float d = cu_h2f((uint16_t)ld_u16(b));
        int xq[8], s0, s1;
        float dx;
        ldx(xs, u, xq, &dx, &s0, &s1);
        uint32_t qw[4];
        ld_words_a2<4>(b + 2, qw); /* (ld_block_a2 measured slower here: H100, bench/RESULTS.md) */
        int dp = 0, dh = 0;
#pragma unroll
        for (int i = 0; i < 4; i++) {
            uint32_t q = qw[i];
            dp = __dp4a((int)(q & 0x0F0F0F0F), xq[i], dp);
            dh = dp4a_hi16(q, xq[4 + i], dh);
        }
        return d * dx * (float)(dp + (dh >> 4) - 8 * (s0 + s1));
    }
};
struct QDotQ4_1 : DecQ4_1 {
    static constexpr bool STEP4 = false;
    static constexpr int ROWS = 2;
    static constexpr int MINB = 8; /* blocks of 256 per SM the register budget aims at */
    __device__ __forceinline__ float dotq(int64_t n, int64_t u, const uint4 *xs) const {
        const uint8_t *b = w + n * rb + u * BB;
        uint32_t dm = *(const uint32_t *)b;
        float d = cu_h2f((uint16_t)(dm & 0xffff)), m = cu_h2f((uint16_t)(dm >> 16));
        int xq[8], s0, s1;
        float dx;
        ldx(xs, u, xq, &dx, &s0, &s1);
        int dp = 0, dh = 0;
#pragma unroll
        for (int i = 0; i < 4; i++) {
            uint32_t q = ld_w<true>((const uint32_t *)(b + 4 + 4 * i));
            dp = __dp4a((int)(q & 0x0F0F0F0F), xq[i], dp);
            dh = dp4a_hi16(q, xq[4 + i], dh);
        }
        return d * dx * (float)(dp + (dh >> 4)) + m * dx * (float)(s0 + s1);
    }
};
struct QDotQ8_0 : DecQ8_0 {
    static constexpr bool STEP4 = false;
    static constexpr int ROWS = 1;
    static constexpr int MINB = 8; /* blocks of 256 per SM the register budget aims at */
    __device__ __forceinline__ float dotq(int64_t n, int64_t u, const uint4 *xs) const {
        const uint8_t *b = w + n * rb + u * BB;
        uint32_t qw[8];
        float d = cu_h2f(ld_block_a2<8>(b, qw));
        int xq[8], s0, s1;
        float dx;
        ldx(xs, u, xq, &dx, &s0, &s1);
        int dp = 0;
#pragma unroll
        for (int i = 0; i < 8; i++) dp = __dp4a((int)qw[i], xq[i], dp);
        return d * dx * (float)dp;
    }
};
template <bool Q5>
struct QDotQK45 : DecQK45<Q5> {
    static constexpr bool STEP4 = false;
    static constexpr int ROWS = 1;
    static constexpr int MINB = 4;
    using DecQK45<Q5>::w;
    using DecQK45<Q5>::rb;
    __device__ __forceinline__ float dotq(int64_t n, int64_t u, const uint4 *xs) const {
        const uint8_t *b = w + n * rb + (u >> 2) * DecQK45<Q5>::BB;
        int j = (int)(u & 3);
        uint4 hd = __ldg((const uint4 *)b); /* d, dmin, the 12 scale bytes: one load */
        float2 dd = kq_dmin(hd.x);
        int sc1, m1, sc2, m2;
        kq_scale_min2(j, hd.y, hd.z, hd.w, &sc1, &sc2, &m1, &m2);
        const uint8_t *qs = b + (Q5 ? 48 : 16) + 32 * j;
        uint4 q0 = ld_w<!Q5>((const uint4 *)qs), q1 = ld_w<!Q5>((const uint4 *)(qs + 16));
        uint32_t q[8] = {q0.x, q0.y, q0.z, q0.w, q1.x, q1.y, q1.z, q1.w};
        uint32_t h[8];
        if (Q5) {
            uint4 h0 = *(const uint4 *)(b + 16), h1 = *(const uint4 *)(b + 32);
            h[0] = h0.x; h[1] = h0.y; h[2] = h0.z; h[3] = h0.w;
            h[4] = h1.x; h[5] = h1.y; h[6] = h1.z; h[7] = h1.w;
        }
        int xa[8], xb[8], sa0, sa1, sb0, sb1;
        float dxa, dxb;
        ldx(xs, 2 * u, xa, &dxa, &sa0, &sa1);
        ldx(xs, 2 * u + 1, xb, &dxb, &sb0, &sb1);
        int dpa = 0, dpb = 0;
#pragma unroll
        for (int i = 0; i < 8; i++) {
            uint32_t lo = q[i] & 0x0F0F0F0F;
            if (Q5) {
                uint32_t hi = (q[i] >> 4) & 0x0F0F0F0F;
                lo |= ((h[i] >> (2 * j)) & 0x01010101) << 4;
                hi |= ((h[i] >> (2 * j + 1)) & 0x01010101) << 4;
                dpb = __dp4a((int)hi, xb[i], dpb);
            } else {
                dpb = dp4a_hi16(q[i], xb[i], dpb); /* 16 x: >> 4 below */
            }
            dpa = __dp4a((int)lo, xa[i], dpa);
        }
        if (!Q5) dpb >>= 4;
        return kq_unit(dd, sc1, sc2, m1, m2, dpa, dpb, dxa, dxb, sa0 + sa1, sb0 + sb1);
    }
};
struct QDotQ6K : DecQ6K {
    static constexpr bool STEP4 = false;
    static constexpr int ROWS = 2;
    static constexpr int MINB = 6; /* blocks of 256 per SM the register budget aims at */
    __device__ __forceinline__ float dotq(int64_t n, int64_t u, const uint4 *xs) const {
        const uint8_t *b = w + n * rb + (u >> 3) * BB;
        int s = (int)(u & 7), nh = s >> 2, g = s & 3;
        float d = cu_h2f((uint16_t)ld_u16(b + 208));
        const uint8_t *ql = b + 64 * nh + 32 * (g & 1), *qh = b + 128 + 32 * nh;
        const int8_t *sc = (const int8_t *)(b + 192 + 8 * nh);
        float da = d * (float)sc[2 * g], db = d * (float)sc[2 * g + 1];
        int shl = (g >> 1) * 4, shh = 2 * g;
        int xq[8], s0, s1;
        float dx;
        ldx(xs, u, xq, &dx, &s0, &s1);
        uint32_t lw[8], hw[8];
        ld_words_a2<8, true>(ql, lw);
        ld_words_a2<8, true>(qh, hw);
        int dpa = 0, dpb = 0;
#pragma unroll
        for (int i = 0; i < 8; i++) {
            uint32_t v = ((lw[i] >> shl) & 0x0F0F0F0F) | (((hw[i] >> shh) & 0x03030303) << 4);
            if (i < 4) dpa = __dp4a((int)v, xq[i], dpa);
            else dpb = __dp4a((int)v, xq[i], dpb);
        }
        return dx * (da * (float)(dpa - 32 * s0) + db * (float)(dpb - 32 * s1));
    }
};
/* MLX affine, every width (2, 3, 4, 5, 6, 8 bits). */
template <int B, int SDT>
struct QDotMlx : DecMlx<B> {
    /* measured on H200: 4-bit gains from 4 units per step, 8-bit from
     * occupancy (unconstrained registers, 2 per step) */
    static constexpr bool STEP4 = B == 4;
    static constexpr int MINB = B == 4 ? 3 : 1;
    static constexpr int ROWS = B == 8 ? 2 : 1; /* measured: H100, bench/RESULTS.md */
    using DecMlx<B>::wq;
    using DecMlx<B>::scales;
    using DecMlx<B>::biases;
    using DecMlx<B>::sdt;
    using DecMlx<B>::gshift;
    using DecMlx<B>::K;
    __device__ __forceinline__ float dotq(int64_t n, int64_t u, const uint4 *xs) const {
        const uint32_t *p = wq + n * (K * B / 32) + u * B;
        int64_t gi = n * (K >> gshift) + ((u * 32) >> gshift);
        float s = cu_ld<SDT>(scales, gi), bb = cu_ld<SDT>(biases, gi); /* no branch: loads issue together */
        int xq[8], s0, s1;
        float dx;
        ldx(xs, u, xq, &dx, &s0, &s1);
        int dp = 0;
        if constexpr (B == 4) {
            uint4 v = __ldg((const uint4 *)p);
            uint32_t wv[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
            for (int k = 0; k < 4; k++) {
                int xe = (int)__byte_perm(xq[2 * k], xq[2 * k + 1], 0x6420);
                int xo = (int)__byte_perm(xq[2 * k], xq[2 * k + 1], 0x7531);
                dp = __dp4a((int)(wv[k] & 0x0F0F0F0F), xe, dp);
                dp = __dp4a((int)((wv[k] >> 4) & 0x0F0F0F0F), xo, dp);
            }
            return s * dx * (float)dp + bb * dx * (float)(s0 + s1);
        } else if constexpr (B == 8) {
            uint4 v0 = ld_w<true>((const uint4 *)p), v1 = ld_w<true>((const uint4 *)p + 1);
            uint32_t wv[8] = {v0.x, v0.y, v0.z, v0.w, v1.x, v1.y, v1.z, v1.w};
#pragma unroll
            for (int k = 0; k < 8; k++) dp = __dp4a((int)(wv[k] ^ 0x80808080u), xq[k], dp); /* (q - 128) x */
            return s * dx * (float)(dp + 128 * (s0 + s1)) + bb * dx * (float)(s0 + s1);
        } else {
            /* 2, 3, 5, 6 bits: codes 4k..4k+3 are the 4B bits from bit 4kB
             * of the unit's B words (one funnel shift), spread into the 4
             * bytes of a word for __dp4a by masks and shifts */
            uint32_t wv[B + 1];
#pragma unroll
            for (int i = 0; i < B; i++) wv[i] = __ldg(p + i);
            wv[B] = 0u;
            constexpr uint32_t M = (1u << B) - 1u;
#pragma unroll
            for (int k = 0; k < 8; k++) {
                const int bit = 4 * k * B, j = bit >> 5, sh = bit & 31;
                uint32_t t = sh ? __funnelshift_r(wv[j], wv[j + 1], sh) : wv[j];
                uint32_t pk = (t & M) | ((t & (M << B)) << (8 - B)) | ((t & (M << 2 * B)) << (16 - 2 * B)) |
                              ((t & (M << 3 * B)) << (24 - 3 * B));
                dp = __dp4a((int)pk, xq[k], dp);
            }
            return s * dx * (float)dp + bb * dx * (float)(s0 + s1);
        }
    }
};
