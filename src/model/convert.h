/*
 * convert.h — GGUF or HF safetensors models to MLX-format directories
 * (affine-quantized safetensors, config.json, tokenizer files) that mlx-lm
 * reads. GGML blocks whose arithmetic is an affine map per group of 32 are
 * carried over exactly: q4_0, q4_1, q8_0 with f16 scales and biases, q4_k and
 * q5_k with f32 ones. Everything else is dequantized and quantized again.
 */
#ifndef MLXN_CONVERT_H
#define MLXN_CONVERT_H

#include "core/core.h"

/* True when `t` maps onto MLX affine groups of 32 without loss. */
bool mlxn_ggml_to_mlx_exact(mlxn_dtype t, int *bits, mlxn_dtype *sb_type);

/* Re-express W [N, K] in GGML block type t as MLX affine (group 32, the
 * bits and scale dtype mlxn_ggml_to_mlx_exact gives). wq has N*K*bits/32
 * words; scales and biases N*K/32 values of sb_type. Exact: dequantizing the
 * result gives the block's values (computed in f32) to the last bit. */
mlxn_status mlxn_ggml_to_mlx(mlxn_dtype t, const void *src, int64_t N, int64_t K, uint32_t *wq,
                             void *scales, void *biases);

/* Undo llama.cpp's Q/K row permutation for a [N, row_bytes] matrix of
 * n_head heads (GGUF llama stores rows of each head as (d/2, 2) interleaved
 * pairs for normal-mode rope; HF layout keeps halves). Works on raw rows, so
 * any row format. */
mlxn_status mlxn_unpermute_qk_rows(const void *src, void *dst, int64_t N, size_t row_bytes, int n_head);

typedef struct mlxn_convert_options {
    int bits;       /* for tensors that are (re)quantized; 0 = 4 */
    int group_size; /* 0 = 64 */
    bool progress;  /* progress lines on stderr */
    bool overwrite; /* out_dir may already hold files (the ones written are replaced) */
} mlxn_convert_options;

/* Convert `in` (a .gguf file or an HF safetensors directory) into the MLX
 * directory `out_dir`, created if missing. An out_dir that exists and is not
 * empty fails MLXN_ERR_INVALID_ARG unless opts->overwrite; out_dir being the
 * input directory (or the directory of the input file) always fails: the
 * input would be replaced by what is made of it. Nothing is written then. */
mlxn_status mlxn_convert(const char *in, const char *out_dir, const mlxn_convert_options *opts);

#endif
