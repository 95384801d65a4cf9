/*
 * quant.h — quantized weight formats and the matmul kernels that read them
 * (internal header, CPU). Pure functions: no threads, no allocation inside
 * the kernels; the op layer splits output columns across its workers.
 *
 * Formats:
 *  - MLX affine: weight uint32 [N, K*bits/32], scales and biases [N, K/group]
 *    (f16, bf16 or f32); w = scale*q + bias, q in [0, 2^bits); q packed as a
 *    little-endian bit stream, least significant bits first.
 *  - GGML blocks: f32, f16, bf16, q4_0, q4_1, q8_0, q4_k, q5_k, q6_k, rows of
 *    K/block_elems blocks (w_row_bytes apart).
 *
 * Matmul: y[M,N] = x[M,K] · Wᵀ, x and y f32 row-major, W [N,K] in one of the
 * formats above, described by an mlxn_qmat. A call writes columns [n0, n1) of
 * every row of y (y row stride N) and nothing else.
 */
#ifndef MLXN_OPS_QUANT_H
#define MLXN_OPS_QUANT_H

#include "core/core.h"

#include <string.h>

/* ------------------------------------------------------------------------ */
/* MLX affine quantization                                                    */
/* ------------------------------------------------------------------------ */

/* Check an (N, K, bits, group, scale dtype) combination: bits 2,3,4,5,6,8,
 * group 32/64/128, K > 0 a multiple of group (and of 32, so every row is a
 * whole number of uint32 words), sb_type f16/bf16/f32. `what` prefixes the
 * message ("mlx quantize"). */
mlxn_status mlxn_mlx_check(const char *what, int64_t N, int64_t K, int bits, int group,
                           mlxn_dtype sb_type);

/* Bytes of the packed weight (N*K*bits/8) and of scales (= of biases,
 * N*(K/group)*sizeof(sb_type)). Returns MLXN_ERR_* like mlxn_mlx_check, or
 * MLXN_ERR_RANGE on overflow. Either output may be NULL. */
mlxn_status mlxn_mlx_sizes(int64_t N, int64_t K, int bits, int group, mlxn_dtype sb_type,
                           size_t *w_bytes, size_t *sb_bytes);

/* Quantize w f32 [N,K] exactly as mlx.core.quantize (mlx 0.32, CPU) does:
 * per group, scale = max((max-min)/(2^bits-1), 1e-7) signed toward the edge of
 * larger magnitude, that edge moved onto the grid (scale = edge/rint(edge/scale),
 * bias = edge, unless rint(...) is 0, then bias = 0), q = clamp(rint((w-bias)/
 * scale)), all in f32; scales and biases are then rounded to sb_type.
 * For an f16/bf16 tensor pass its values widened to f32 and sb_type = its
 * dtype: the bytes equal MLX's. Outputs must have mlxn_mlx_sizes bytes.
 * Fails (MLXN_ERR_SHAPE / _UNSUPPORTED / _DTYPE / _INVALID_ARG) on bad
 * arguments, writing nothing. */
mlxn_status mlxn_mlx_quantize(const float *w, int64_t N, int64_t K, int bits, int group,
                              mlxn_dtype sb_type, uint32_t *wq, void *scales, void *biases);

/* Dequantize into f32 [N,K], bit-exact with mlx.core.dequantize (whose result
 * has sb_type; for f16/bf16 each element is round(round(s*q) + b) in that
 * type, here widened to f32 exactly). */
mlxn_status mlxn_mlx_dequantize(const uint32_t *wq, const void *scales, const void *biases,
                                mlxn_dtype sb_type, int64_t N, int64_t K, int bits, int group,
                                float *out);

/* ------------------------------------------------------------------------ */
/* GGML blocks                                                                */
/* ------------------------------------------------------------------------ */

/* Block layouts, as in ggml (f16 fields are raw IEEE half bits). */
typedef struct mlxn_block_q4_0 {
    uint16_t d;
    uint8_t qs[16]; /* element l in low nibble of qs[l], l+16 in the high nibble; q-8 */
} mlxn_block_q4_0;
typedef struct mlxn_block_q4_1 {
    uint16_t d, m; /* w = d*q + m */
    uint8_t qs[16];
} mlxn_block_q4_1;
typedef struct mlxn_block_q8_0 {
    uint16_t d;
    int8_t qs[32];
} mlxn_block_q8_0;
typedef struct mlxn_block_q4_k { /* 8 sub-blocks of 32: w = d*sc_j*q - dmin*m_j */
    uint16_t d, dmin;
    uint8_t scales[12]; /* 6-bit sc_j, m_j packed */
    uint8_t qs[128];    /* 64-element chunks: low nibbles first 32, high nibbles next 32 */
} mlxn_block_q4_k;
typedef struct mlxn_block_q5_k {
    uint16_t d, dmin;
    uint8_t scales[12];
    uint8_t qh[32]; /* bit j of qh[l]: 5th bit of element 32*j + l */
    uint8_t qs[128];
} mlxn_block_q5_k;
typedef struct mlxn_block_q6_k { /* 16 sub-blocks of 16: w = d*sc_j*(q-32) */
    uint8_t ql[128];
    uint8_t qh[64];
    int8_t scales[16];
    uint16_t d;
} mlxn_block_q6_k;
_Static_assert(sizeof(mlxn_block_q4_0) == 18, "q4_0 block size");
_Static_assert(sizeof(mlxn_block_q4_1) == 20, "q4_1 block size");
_Static_assert(sizeof(mlxn_block_q8_0) == 34, "q8_0 block size");
_Static_assert(sizeof(mlxn_block_q4_k) == 144, "q4_k block size");
_Static_assert(sizeof(mlxn_block_q5_k) == 176, "q5_k block size");
_Static_assert(sizeof(mlxn_block_q6_k) == 210, "q6_k block size");

/* The 8 6-bit scales and mins of a q4_k / q5_k super-block (llama.cpp's
 * packing in 12 bytes), unpacked by word operations: bytes 0-7 of u are
 * sc_0..7, bytes 8-15 m_0..7. */
static inline void mlxn_k4_unpack(const uint8_t *scales, uint32_t u[4]) {
    memcpy(u, scales, 12);
    const uint32_t km1 = 0x3f3f3f3f, km2 = 0x0f0f0f0f, km3 = 0x03030303;
    u[3] = ((u[2] >> 4) & km2) | (((u[1] >> 6) & km3) << 4);
    const uint32_t aux = u[1] & km1;
    u[1] = (u[2] & km2) | (((u[0] >> 6) & km3) << 4);
    u[2] = aux;
    u[0] &= km1;
}

/* Dequantize n elements (a multiple of the block size) of type t, bit-exact
 * with gguf-py's gguf.quants.dequantize. t in f32, f16, bf16, q4_0, q4_1,
 * q8_0, q4_k, q5_k, q6_k; otherwise MLXN_ERR_DTYPE. */
mlxn_status mlxn_ggml_dequantize(mlxn_dtype t, const void *src, float *dst, int64_t n);

/* Quantize n elements (multiple of the block size) into type t. q4_0, q4_1,
 * q8_0, f32, f16, bf16 produce gguf-py's gguf.quants.quantize bytes exactly;
 * q4_k and q6_k use a simple min/max reference (not llama.cpp's search), good
 * for round trips and synthetic weights. q5_k: MLXN_ERR_UNSUPPORTED. */
mlxn_status mlxn_ggml_quantize(mlxn_dtype t, const float *src, void *dst, int64_t n);

/* ------------------------------------------------------------------------ */
/* Matmul kernels                                                             */
/* ------------------------------------------------------------------------ */

typedef enum mlxn_qkind {
    MLXN_QKIND_GGML = 0, /* dense f32/f16/bf16 rows or ggml blocks */
    MLXN_QKIND_MLX = 1,  /* MLX affine */
    MLXN_QKIND_COUNT
} mlxn_qkind;

/* A weight matrix W [N,K] in any supported format. Borrowed pointers. */
typedef struct mlxn_qmat {
    mlxn_qkind kind;
    int64_t N, K;
    const void *w;      /* GGML: row n at w + n*row_bytes. MLX: uint32 [N, K*bits/32] */
    size_t row_bytes;   /* GGML: bytes per row (>= K/block*block_bytes); MLX: ignored */
    mlxn_dtype wtype;   /* GGML: element/block type; MLX: ignored */
    const void *scales; /* MLX: [N, K/group] of sb_type; GGML: NULL */
    const void *biases; /* MLX: [N, K/group] of sb_type; GGML: NULL */
    mlxn_dtype sb_type; /* MLX: f16, bf16 or f32 */
    int bits, group;    /* MLX */
    bool f32_act;       /* keep x in f32 on every path (no int8 activations) */
    bool int8_act;      /* MLX decode: x in int8 alone, not int8 + residual (faster, ~128x the x error) */
} mlxn_qmat;

/* Validate a descriptor (formats, shapes, non-NULL pointers). The kernels
 * below assume a valid one and do not check. */
mlxn_status mlxn_qmat_check(const mlxn_qmat *w);

/* Per-thread scratch bytes mlxn_mm needs for this weight and M (x rows
 * quantized to int8 for decode, or a packed f32 panel of W). Each concurrent
 * call needs its own scratch; any alignment works (64 is best). */
size_t mlxn_mm_scratch_bytes(const mlxn_qmat *w, int64_t M);

/* y[m, n] = Σ_k x[m,k]·W[n,k] for m < M, n0 <= n < n1 (0 <= n0 <= n1 <= N);
 * x f32 [M,K], y f32 [M,N] (row stride N); writes nothing else. Picks the
 * path at run time:
 *  - M < MLXN_MM_DECODE_ROWS and AVX-512 VNNI and a quantized W (ggml blocks, MLX 4/8-bit,
 *    MLX 2/3/5/6-bit where the CPU also has AVX-512 VBMI):
 *    x rows quantized to int8 per 32 (d = max|x|/127, like llama.cpp's q8),
 *    integer dot products (VPDPBUSD). Error ≤ Σ_k |w_k|·amax_blk(k)/254
 *    (+ MLX: the unrounded s·q+b, ≤ 2^-8·2·G·|x_k| for bf16 scales). MLX
 *    weights take x in two int8 parts (the codes and their rounding
 *    residual's, x ≈ d·(c + c2/128)): error ≤ Σ_k |w_k|·amax_blk(k)/32512
 *    (d/256; mlxn_mm_x_parts says 2).
 *  - M < 4 on AVX2 (+FMA, F16C) without AVX-512, W in q4_0, q4_1, q8_0,
 *    q4_k, q5_k, q6_k or MLX 4/8-bit: the same int8 x (and for MLX the same two parts,
 *    same bounds), products by VPMADDUBSW (decode_avx2.c).
 *  - same M for MLX 2/3/5/6-bit without VBMI, or M < 4 otherwise: f32 dots.
 *  - else (prefill): quantized W with AVX512-BF16 and w->f32_act off: x and
 *    dequantized W panels rounded to bf16, VDPBF16PS with f32 accumulators
 *    (see mlxn_mm_rounds_bf16); otherwise dequantized f32 panels and a
 *    register-blocked FMA kernel.
 * f32 paths: error ≤ ~1e-5·Σ|x·w| (f32 accumulation in parallel partial
 * sums). mlxn_mm_quantizes_x says whether x is quantized for (w, M);
 * mlxn_mm_x_parts into how many int8 parts (0: f32 x, 1: int8, 2: int8 and
 * its residual at 1/128 of the step). */
#define MLXN_MM_DECODE_ROWS 32
void mlxn_mm(const mlxn_qmat *w, const float *x, float *y, int64_t M, int64_t n0, int64_t n1,
             void *scratch);
bool mlxn_mm_quantizes_x(const mlxn_qmat *w, int64_t M);
int mlxn_mm_x_parts(const mlxn_qmat *w, int64_t M);
/* Whether mlxn_mm rounds x and W to bf16 for (w, M): the prefill GEMM of
 * a quantized (not f32/f16/bf16) W on AVX512-BF16 without w->f32_act.
 * Error ≤ (2^-7 + 2^-16)·Σ_k|x_k·w_k| plus f32 accumulation (each operand
 * rounded to 8 significant bits, products exact in f32). */
bool mlxn_mm_rounds_bf16(const mlxn_qmat *w, int64_t M);

/* Convenience forms of mlxn_mm (same contract). */
void mlxn_mm_ggml(mlxn_dtype wtype, const void *w, size_t w_row_bytes, const float *x, float *y,
                  int64_t M, int64_t N, int64_t K, int64_t n0, int64_t n1, void *scratch);
void mlxn_mm_mlx(const uint32_t *w, const void *scales, const void *biases, mlxn_dtype sb_type,
                 int bits, int group, const float *x, float *y, int64_t M, int64_t N, int64_t K,
                 int64_t n0, int64_t n1, void *scratch);

/* Expert-routed matmul (MoE). Experts are stacked: expert e's matrix is
 * `w0` with w, scales and biases advanced by e·w_stride / e·sb_stride bytes.
 * For every token t < n_tok and slot j < top_k, with e = ids[t·top_k + j]
 * (0 <= e < n_experts, checked: an out-of-range id writes NaN to its row):
 *   y[t·top_k + j, n] = x_row · W_eᵀ,  n0 <= n < n1,
 * x_row = x[t] when x_per_slot is false (gate/up: one input per token) or
 * x[t·top_k + j] when true (down: one input per slot). x rows are K long,
 * y rows N long. Uses mlxn_mm per slot (decode kernels), scratch as for M=1. */
void mlxn_mm_id(const mlxn_qmat *w0, size_t w_stride, size_t sb_stride, int n_experts,
                const int32_t *ids, int64_t n_tok, int top_k, bool x_per_slot, const float *x,
                float *y, int64_t n0, int64_t n1, void *scratch);

/* Reference: dequantize row by row (bit-exact dequantizers above) and
 * accumulate in double. Needs no scratch. For tests. */
void mlxn_mm_ref(const mlxn_qmat *w, const float *x, double *y, int64_t M, int64_t n0,
                 int64_t n1);

/* Which path mlxn_mm takes ("avx512vnni", "avx2", "scalar"), and a switch
 * for tests: force = 0 automatic, 1 scalar, 2 at most AVX2. The CPU
 * backend's attention kernels follow it too (mlxn_mm_forced_isa), so a
 * test on an AVX-512 machine checks their AVX2 and scalar forms. Not
 * thread-safe against running kernels. */
const char *mlxn_mm_isa(void);
void mlxn_mm_force_isa(int force);
int mlxn_mm_forced_isa(void);

/* Dequantize elements [k0, k1) of row n of W into out (k0, k1 multiples of
 * the block or group size). */
void mlxn_qmat_dequant_row(const mlxn_qmat *w, int64_t n, int64_t k0, int64_t k1, float *out);

/* Internal: nb blocks (elements for f32/f16/bf16) of a valid type → f32. */
void mlxn_ggml_dequant_blocks_(mlxn_dtype t, const void *src, float *y, int64_t nb);
/* Internal: row n, elements [k0,k1) (multiples of group) of an MLX matrix → f32. */
void mlxn_mlx_dequant_row_(const uint32_t *wq, const void *scales, const void *biases,
                           mlxn_dtype sb_type, int64_t K, int bits, int group, int64_t n,
                           int64_t k0, int64_t k1, float *out);

/* ------------------------------------------------------------------------ */
/* Random weights (tests, benchmarks)                                         */
/* ------------------------------------------------------------------------ */

/* A weight matrix that owns its memory. */
typedef struct mlxn_qweights {
    mlxn_qmat mat;      /* describes the data below */
    void *data;         /* weight bytes (mat.w) */
    void *scales;       /* MLX only, else NULL */
    void *biases;       /* MLX only, else NULL */
    size_t data_bytes;  /* bytes of data */
    size_t sb_bytes;    /* bytes of scales (= of biases), 0 for GGML */
    size_t total_bytes; /* bytes a matmul reads from W: data + scales + biases */
    char format[32];
} mlxn_qweights;

/* Random W [N,K] (never all zero; values ~U(-1,1) before quantization) in
 * `format`: "f32", "f16", "bf16", "q4_0", "q4_1", "q8_0", "q4_k", "q5_k",
 * "q6_k", or "mlx-q<bits>-g<group>[-f16|-bf16|-f32]" (scales default bf16),
 * e.g. "mlx-q4-g64". Deterministic for a seed. Codes are random bits and
 * scales random nonzero values (no quantizer runs), so it is fast.
 * On failure *out is zeroed. Free with mlxn_quant_free. */
mlxn_status mlxn_quant_make_random(const char *format, int64_t N, int64_t K, uint64_t seed,
                                   mlxn_qweights *out);
/* Free what mlxn_quant_make_random allocated; NULL or zeroed is a no-op. */
void mlxn_quant_free(mlxn_qweights *q);

#endif
