/*
 * cuda_internal.h — the boundary between the CUDA backend's C side
 * (cuda_backend.c: memory, streams, CUDA graphs; it sees the graph IR) and
 * its kernels (kernels_*.cu, compiled by nvcc as C++; they see only this
 * header and mlxn.h). The C side flattens each mlxn_node into a cu_node:
 * device pointers, dtypes, shapes and a copy of the op's params. Slot order
 * per op is the one written in src/ops/ops.h.
 */
#ifndef MLXN_CUDA_INTERNAL_H
#define MLXN_CUDA_INTERNAL_H

#include "core/fill.h" /* plain C, host and device: the random fills */
#include "mlxn.h"

#include <cuda_runtime_api.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Op ids, mirrored from src/ops/ops.h (that header is C-only); the C side
 * static_asserts that the two agree. */
enum {
    CU_OP_ADD = 0, CU_OP_MUL, CU_OP_SCALE, CU_OP_SILU, CU_OP_SILU_MUL, CU_OP_GELU, CU_OP_SOFTCAP,
    CU_OP_RMS_NORM, CU_OP_ADD_RMS_NORM, CU_OP_LAYER_NORM, CU_OP_SOFTMAX, CU_OP_MATMUL,
    CU_OP_MATMUL_MLX, CU_OP_ROPE, CU_OP_COPY, CU_OP_GET_ROWS, CU_OP_GET_ROWS_MLX, CU_OP_KV_WRITE,
    CU_OP_ATTENTION, CU_OP_ARGMAX, CU_OP_TOP_K, CU_OP_MATMUL_ID, CU_OP_ROPE_KV_WRITE,
    CU_OP_ATTENTION_PARTIAL, CU_OP_ATTENTION_MERGE, /* CPU-only: CUDA's attention splits inside its kernel */
    CU_OP_LOGSUMEXP,
    CU_OP_COUNT
};

/* A measuring switch from the environment: dflt when unset or empty, else
 * whether it is not 0. */
static inline int mlxn_cu_env_flag(const char *name, int dflt) {
    const char *e = getenv(name);
    return e && *e ? *e != '0' : dflt;
}

#define CU_MAX_SLOTS 8

typedef struct cu_tensor {
    void *data;        /* device address of the first byte; NULL = absent slot */
    int dtype;         /* mlxn_dtype */
    int ndim;
    int64_t shape[MLXN_MAX_DIMS];
    int64_t elems, rows, cols; /* rows = product of all dims but the last */
    size_t nbytes;
} cu_tensor;

typedef struct cu_node {
    int op;
    int n_slots;
    cu_tensor t[CU_MAX_SLOTS];
    float f;    /* unary: scale / softcap cap */
    int mode;   /* gelu: approximate */
    float eps;  /* norms */
    float softmax_scale;
    mlxn_mlx_quant mlx;
    mlxn_rope_params rope;
    mlxn_attention_params attn;
    int topk;             /* top_k: k */
    double lse_scale;     /* logsumexp: scale */
    int mid_top_k;        /* matmul_id: experts per token */
    bool mid_x_per_slot;  /* matmul_id: one x row per (token, slot) */
    bool f32_act;         /* matmuls: keep x in f32 (no int8 path) */
    bool pos_early;       /* attention: no node of the graph writes the positions (read before the wait) */
} cu_node;

/* Whether two tensors share a byte (absent slots share none). */
static inline bool mlxn_cu_overlap(const cu_tensor *p, const cu_tensor *q) {
    const char *a = (const char *)p->data, *b = (const char *)q->data;
    return a && b && a < b + q->nbytes && b < a + p->nbytes;
}

/* Programmatic dependent launch (sm_90+, MLXN_CU_PDL unset or not 0):
 * every kernel is launched allowed to start while the kernel before it on
 * the stream finishes; each kernel waits (griddepcontrol.wait) before it
 * touches anything an earlier kernel writes or reads. 1 when on. */
int mlxn_cu_pdl(void);

/* Device scratch bytes a node needs while it runs (split-KV partials). */
size_t mlxn_cu_scratch_bytes(const cu_node *n);
/* Whether the kernels take this node (dtype combinations). */
bool mlxn_cu_supports(const cu_node *n);
/* Enqueue the node's kernels on `s` (capturable: no sync, no allocation).
 * `scratch` has at least mlxn_cu_scratch_bytes(n) bytes. Returns the first
 * launch error (cudaGetLastError after each launch). */
cudaError_t mlxn_cu_launch(const cu_node *n, void *scratch, cudaStream_t s);

/* Write elements [0, n) of fill f at dst (kernels_fill.cu); the bytes equal
 * mlxn_fill_host's. Enqueued on s; returns the launch error. */
cudaError_t mlxn_cu_fill(void *dst, const mlxn_fill *f, size_t n, cudaStream_t s);

/* Families (one kernels_*.cu each); each returns cudaErrorInvalidValue for
 * a case it does not handle. */
cudaError_t mlxn_cu_elementwise(const cu_node *n, cudaStream_t s);
cudaError_t mlxn_cu_norm(const cu_node *n, cudaStream_t s);
cudaError_t mlxn_cu_matmul(const cu_node *n, void *scratch, cudaStream_t s);
size_t mlxn_cu_matmul_node_scratch(const cu_node *n);
cudaError_t mlxn_cu_get_rows(const cu_node *n, cudaStream_t s);
cudaError_t mlxn_cu_rope(const cu_node *n, cudaStream_t s);          /* rope, rope_kv_write, kv_write */
cudaError_t mlxn_cu_matmul_id(const cu_node *n, cudaStream_t s);
/* A one-row rms_norm / add_rms_norm / silu_mul or a decode attention (pre)
 * whose output is the x of the next node, a one-row matmul on the integer
 * path (mm: MLX 2-8 bits, q4_0 / q4_1 / q8_0 / q4_k / q5_k / q6_k), as two
 * launches instead of three: the producer quantizes x for the matmul itself.
 * scratch: mm's. MLXN_CU_ATTQ=0: not for attention (measuring). */
bool mlxn_cu_fusable(const cu_node *pre, const cu_node *mm);
/* A one-row add_rms_norm between two one-row integer-path matmuls, mm1 ->
 * norm -> mm2 (the norm's output is mm2's x), run by the two matmul kernels
 * with no launch of its own: mm1's kernel adds the residual and writes the
 * norm's sum, mm2's int8 x and partial sums of squares into buf
 * (MLXN_CU_EPI_BYTES, shared by every such triple of a graph: each triple's
 * mm2 has run before the next triple's mm1 writes it); mm2's kernel scales
 * its rows by the norm's factor and writes the norm's output. sm_90
 * (thread block clusters). mlxn_cu_epi_ok: whether the three nodes allow it
 * (shapes, dtypes, no harmful aliasing, clusters resident at once;
 * MLXN_CU_EPI=0: never). */
typedef struct cu_epi {
    const cu_node *norm, *mm2;
    void *buf;
} cu_epi;
#define MLXN_CU_EPI_BYTES 16384
bool mlxn_cu_epi_ok(const cu_node *mm1, const cu_node *norm, const cu_node *mm2);
/* w_const: no node of the graph writes the norm's weight, so the kernel may
 * read it before it waits on the kernel before it. epi: NULL, or the norm
 * and matmul after mm to run as above (mm is then mm1). */
cudaError_t mlxn_cu_launch_fused(const cu_node *pre, const cu_node *mm, void *scratch, cudaStream_t s,
                                 bool w_const, const cu_epi *epi);
/* The matmul half of a fused pair: mm (mlxn_cu_fusable with its producer)
 * after the producer wrote its int8 x into scratch (and, for k_mlx4g, zeroed
 * its output); with epi, then epi's norm and matmul as described there. */
cudaError_t mlxn_cu_launch_mm_ready(const cu_node *mm, void *scratch, cudaStream_t s, const cu_epi *epi);
/* Where a producer kernel writes the int8 x of the one-row matmul after it:
 * not at all, k_mlx4g's layout (and it zeroes that matmul's y), k_mmvq's,
 * or k_mmvq's bytes with y zeroed as well (XL_QZ: k_q4kg). */
enum { XL_NONE = 0, XL_G = 1, XL_Q = 2, XL_QZ = 3 };
/* Whether the producer zeroes the matmul's y (its kernel adds partial sums). */
static inline bool mlxn_cu_xl_zeroes(int xl) { return xl == XL_G || xl == XL_QZ; }
/* The int8 x layout mm's one-row kernel reads (XL_G = 1: k_mlx4g's, which
 * also needs y = 0; XL_Q = 2: k_mmvq's; XL_QZ = 3: k_mmvq's with y = 0),
 * 0 when mm takes no int8 x. */
int mlxn_cu_mm_xlayout(const cu_node *mm);
/* Several independent rope / rope_kv_write / kv_write nodes of decode size
 * (mlxn_cu_groupable) as one launch (at most 4). */
bool mlxn_cu_groupable(const cu_node *n);
/* early: no node of the graph writes the nodes' positions or frequency
 * factors (they may be read before the kernel waits on the one before). */
cudaError_t mlxn_cu_launch_group(const cu_node *ns, int cnt, cudaStream_t s, bool early);

cudaError_t mlxn_cu_top_k(const cu_node *n, void *scratch, cudaStream_t s);
size_t mlxn_cu_top_k_scratch(const cu_node *n);
cudaError_t mlxn_cu_logsumexp(const cu_node *n, void *scratch, cudaStream_t s);
size_t mlxn_cu_logsumexp_scratch(const cu_node *n);
cudaError_t mlxn_cu_argmax(const cu_node *n, void *scratch, cudaStream_t s);
size_t mlxn_cu_argmax_scratch(const cu_node *n);
cudaError_t mlxn_cu_attention(const cu_node *n, void *scratch, cudaStream_t s);
size_t mlxn_cu_attention_scratch(const cu_node *n);
/* Decode attention that also writes its output as the int8 x of the one-row
 * matmul after it (that matmul's scratch) and, for k_mlx4g, zeroes that
 * matmul's output y [N] (the fused pair of mlxn_cu_launch_fused). */
bool mlxn_cu_attention_quantable(const cu_node *n);
/* xl: the layout (mlxn_cu_mm_xlayout); y, N: the output to zero (XL_G) or
 * NULL, 0 */
cudaError_t mlxn_cu_launch_attention_quant(const cu_node *n, int xl, uint8_t *x, float *y, int64_t N,
                                           cudaStream_t s);
/* A decode layer's rope / kv_write group (g, cnt nodes: rope of q,
 * rope_kv_write of k, kv_write of v) and the attention a after it as one
 * launch; with x non-NULL the attention also quantizes its output for the
 * matmul mm after it (mlxn_cu_fusable(a, mm) must hold; xl its layout; y, N:
 * mm's output when xl is XL_G) and the caller then launches
 * mlxn_cu_launch_mm_ready. a->pos_early: no node
 * writes the positions nor the frequency factors. MLXN_CU_ROPEATT=0: never
 * (measuring). */
bool mlxn_cu_rope_attention_ok(const cu_node *g, int cnt, const cu_node *a);
cudaError_t mlxn_cu_launch_rope_attention(const cu_node *g, int cnt, const cu_node *a, int xl, uint8_t *x, float *y,
                                          int64_t N, cudaStream_t s);

/* Prefill-sized matmuls through cuBLAS (kernels_gemm.cu). A device's
 * handle is made by mlxn_cu_blas_init (0, or nonzero with a message in msg)
 * and dropped by mlxn_cu_blas_release (one release per successful init).
 * mlxn_cu_gemm_node_scratch: bytes the node needs to take the cuBLAS path on
 * the current device, 0 when it does not take it (then mlxn_cu_matmul runs
 * the tile kernels). */
int mlxn_cu_blas_init(int ordinal, char *msg, size_t len);
void mlxn_cu_blas_release(int ordinal);
size_t mlxn_cu_gemm_node_scratch(const cu_node *n);
cudaError_t mlxn_cu_gemm(const cu_node *n, void *scratch, cudaStream_t s);
/* bench: the same path on raw pointers (scratch: mlxn_cu_gemm_scratch
 * bytes; 0 = path not available), and a plain bf16 GEMM y = a b^T of bf16
 * a [M, K], b [N, K] (ws: mlxn_cu_gemm_workspace bytes) as the reference */
size_t mlxn_cu_gemm_scratch(int wtype, int bits, int64_t M, int64_t N, int64_t K);
cudaError_t mlxn_cu_gemm_raw(float *y, const float *x, const void *w, int wtype, int64_t M, int64_t N, int64_t K,
                             void *scratch, cudaStream_t s);
cudaError_t mlxn_cu_gemm_mlx_raw(float *y, const float *x, const uint32_t *wq, const void *scales,
                                 const void *biases, int sdt, int bits, int group, int64_t M, int64_t N, int64_t K,
                                 void *scratch, cudaStream_t s);
cudaError_t mlxn_cu_gemm_bf16_plain(float *y, const void *a, const void *b, int64_t M, int64_t N, int64_t K, void *ws,
                                    cudaStream_t s);
size_t mlxn_cu_gemm_workspace(void);

/* Standalone entry points for bench/cuda_bench.c: y[M,N] = x[M,K] * W^T
 * with W in any matmul format (wtype; -1 with `bits` for MLX), device
 * pointers. scratch: mlxn_cu_matmul_scratch bytes (NULL = take the float
 * path, which needs none). x_ready (M = 1, integer path): scratch already
 * holds x's int8 form from an earlier call of the same matmul, as a fused
 * producer leaves it in a decode step, so only the matmul kernel runs (and
 * a k_mlx4g matmul adds into y as it is, for timing). */
size_t mlxn_cu_matmul_scratch(int wtype, int bits, int64_t M, int64_t K);
cudaError_t mlxn_cu_matmul_raw(float *y, const float *x, const void *w, int wtype, int64_t M,
                               int64_t N, int64_t K, void *scratch, cudaStream_t s, bool x_ready);
/* dst = src (bytes a multiple of 16, 16-byte aligned) by SM loads/stores. */
/* Hold the stream ~us microseconds (profiling). */
cudaError_t mlxn_cu_spin(int us, cudaStream_t s);
cudaError_t mlxn_cu_copy_raw(void *dst, const void *src, size_t bytes, cudaStream_t s);
/* Queued copies of n <= CU_QBYTES bytes on the compute queue rather than
 * the copy engine (between two decode steps' graphs they measured a little
 * faster: cuda_upload_queued): put writes the bytes at src (host memory,
 * carried in the kernel's arguments) to dst; get copies device bytes at src
 * to dst, a mapped pinned host address. */
#define CU_QBYTES 64
cudaError_t mlxn_cu_put_bytes(void *dst, const void *src, size_t n, cudaStream_t s);
cudaError_t mlxn_cu_get_bytes(void *dst, const void *src, size_t n, cudaStream_t s);
cudaError_t mlxn_cu_matmul_mlx_raw(float *y, const float *x, const uint32_t *wq, const void *scales,
                                   const void *biases, int sdtype, int bits, int group, int64_t M,
                                   int64_t N, int64_t K, void *scratch, cudaStream_t s, bool x_ready);

#ifdef __cplusplus
}
#endif

#endif
