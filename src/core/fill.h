/*
 * fill.h — counter-based random tensor content. Element i of a fill is a
 * pure function of (seed, i): no state is carried from one element to the
 * next, so any thread can make any element, and the host (mlxn_fill_host,
 * the CPU backend) and the CUDA kernel (kernels_fill.cu) write the same
 * bytes. Synthetic models (model/synthetic.c) describe their weights this
 * way, so a device makes them in its own memory instead of receiving them.
 *
 * Bit-exactness: the random bits are integer arithmetic (splitmix64 of
 * seed + (i+1)·golden); a float value is one correctly rounded fmaf of an
 * exactly representable uniform, and bf16 is round-to-nearest-even done on
 * the bits here. Nothing depends on compiler contraction or fast-math.
 *
 * Included by C (core, backends, model) and by nvcc (kernels_fill.cu).
 */
#ifndef MLXN_FILL_H
#define MLXN_FILL_H

#include "mlxn.h" /* mlxn_dtype: the GGML block types */

#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#ifdef __CUDACC__
#define MLXN_FILL_FN static inline __host__ __device__
#else
#define MLXN_FILL_FN static inline
#endif

typedef enum mlxn_fill_kind {
    MLXN_FILL_NONE = 0, /* no fill: the bytes come from a host pointer */
    MLXN_FILL_BITS = 1, /* u32 words of uniform random bits (packed codes) */
    MLXN_FILL_BF16 = 2, /* bf16 uniform in [lo, lo + span) */
    MLXN_FILL_F32 = 3,  /* f32 uniform in [lo, lo + span) */
    MLXN_FILL_GGML = 4, /* bytes of GGML blocks of type `block` (mlxn_fill_ggml_byte) */
    MLXN_FILL_COUNT
} mlxn_fill_kind;

/* What a fill writes. Zero-initialised: no fill. */
typedef struct mlxn_fill {
    mlxn_fill_kind kind;
    uint64_t seed;
    float lo, span; /* BF16 / F32; GGML: each block's d */
    int block;      /* GGML: the block type (an mlxn_dtype) */
} mlxn_fill;

/* Bytes per element of a fill kind (0 for NONE or an unknown kind). */
MLXN_FILL_FN size_t mlxn_fill_elem_bytes(mlxn_fill_kind k) {
    return k == MLXN_FILL_BITS ? 4 : k == MLXN_FILL_BF16 ? 2 : k == MLXN_FILL_F32 ? 4 : k == MLXN_FILL_GGML ? 1 : 0;
}

/* The i-th output of splitmix64 started at `seed`. */
MLXN_FILL_FN uint64_t mlxn_fill_hash(uint64_t seed, uint64_t i) {
    uint64_t z = seed + (i + 1) * 0x9E3779B97F4A7C15ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

MLXN_FILL_FN uint32_t mlxn_fill_u32(const mlxn_fill *f, uint64_t i) {
    return (uint32_t)mlxn_fill_hash(f->seed, i);
}

/* lo + span·u with u = k/2^24, k uniform in [0, 2^24): u is exact in f32,
 * the fmaf rounds once. */
MLXN_FILL_FN float mlxn_fill_f32(const mlxn_fill *f, uint64_t i) {
    float u = (float)(uint32_t)(mlxn_fill_hash(f->seed, i) >> 40) * (1.0f / 16777216.0f);
    return fmaf(f->span, u, f->lo);
}

MLXN_FILL_FN uint16_t mlxn_fill_bf16(const mlxn_fill *f, uint64_t i) {
    float v = mlxn_fill_f32(f, i);
    uint32_t x;
    memcpy(&x, &v, 4);
    if ((x & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((x >> 16) | 0x40); /* quiet nan */
    x += 0x7fffu + ((x >> 16) & 1u);
    return (uint16_t)(x >> 16);
}

/* f32 -> f16 bits, round to nearest even, subnormals included (|v| below
 * 65504; the fills' scales). */
MLXN_FILL_FN uint16_t mlxn_fill_f2h(float v) {
    uint32_t x;
    memcpy(&x, &v, 4);
    uint32_t sign = (x >> 16) & 0x8000u, m = x & 0x7fffffu;
    int32_t e = (int32_t)((x >> 23) & 0xffu) - 127 + 15;
    if (e >= 31) return (uint16_t)(sign | 0x7c00u);
    if (e <= 0) { /* subnormal: value = h * 2^-24 */
        if (e < -10) return (uint16_t)sign;
        m |= 0x800000u;
        int sh = 14 - e;
        uint32_t h = m >> sh, rem = m & ((1u << sh) - 1), half = 1u << (sh - 1);
        if (rem > half || (rem == half && (h & 1))) h++;
        return (uint16_t)(sign | h);
    }
    uint32_t h = ((uint32_t)e << 10) | (m >> 13), rem = m & 0x1fffu;
    if (rem > 0x1000u || (rem == 0x1000u && (h & 1))) h++; /* a carry moves into the exponent, as it should */
    return (uint16_t)(sign | h);
}

/* Bytes a GGML block of type t takes (0: not a type the fill makes). */
MLXN_FILL_FN uint32_t mlxn_fill_ggml_bb(int t) {
    return t == MLXN_Q4_0 ? 18 : t == MLXN_Q4_1 ? 20 : t == MLXN_Q8_0 ? 34 : t == MLXN_Q4_K ? 144
         : t == MLXN_Q5_K ? 176 : t == MLXN_Q6_K ? 210 : 0;
}

/* Byte i of random GGML blocks of type f->block: codes, 6-bit scale bytes
 * and q6_k's int8 scales are random bits; a block's d (f16) is uniform in
 * [lo, lo + span), and its offset (q4_1's m = -7.5 d; the K-quants' dmin =
 * 7.5 d for q4_k, 15.5 d for q5_k) puts the middle code near zero on
 * average, so the weights lie around zero as trained ones do. */
MLXN_FILL_FN uint8_t mlxn_fill_ggml_byte(const mlxn_fill *f, uint64_t i) {
    const int t = f->block;
    const uint32_t bb = mlxn_fill_ggml_bb(t), doff = t == MLXN_Q6_K ? 208 : 0;
    if (!bb) return 0;
    const uint64_t b = i / bb;
    const uint32_t o = (uint32_t)(i - b * bb);
    int which = o - doff < 2 ? 0 : (t == MLXN_Q4_1 || t == MLXN_Q4_K || t == MLXN_Q5_K) && (o == 2 || o == 3) ? 1 : -1;
    if (which < 0) return (uint8_t)(mlxn_fill_hash(f->seed, i >> 3) >> (8 * (i & 7)));
    float u = (float)(uint32_t)(mlxn_fill_hash(f->seed ^ 0x5851F42D4C957F2Dull, b) >> 40) * (1.0f / 16777216.0f);
    float d = fmaf(f->span, u, f->lo);
    float v = which == 0 ? d : t == MLXN_Q4_1 ? -7.5f * d : (t == MLXN_Q4_K ? 7.5f : 15.5f) * d;
    uint16_t h = mlxn_fill_f2h(v);
    return (uint8_t)(h >> (8 * (which == 0 ? o - doff : o - 2)));
}

/* Write elements [first, first + n) of f at dst (dst points at element
 * `first`). The host reference; the CPU backend runs it on its workers. */
MLXN_FILL_FN void mlxn_fill_host(void *dst, const mlxn_fill *f, uint64_t first, size_t n) {
    if (f->kind == MLXN_FILL_BITS) {
        uint32_t *p = (uint32_t *)dst;
        for (size_t j = 0; j < n; j++) p[j] = mlxn_fill_u32(f, first + j);
    } else if (f->kind == MLXN_FILL_BF16) {
        uint16_t *p = (uint16_t *)dst;
        for (size_t j = 0; j < n; j++) p[j] = mlxn_fill_bf16(f, first + j);
    } else if (f->kind == MLXN_FILL_F32) {
        float *p = (float *)dst;
        for (size_t j = 0; j < n; j++) p[j] = mlxn_fill_f32(f, first + j);
    } else if (f->kind == MLXN_FILL_GGML) {
        uint8_t *p = (uint8_t *)dst;
        for (size_t j = 0; j < n; j++) p[j] = mlxn_fill_ggml_byte(f, first + j);
    }
}

#endif
