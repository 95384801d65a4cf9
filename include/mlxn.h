/*
 * mlxn.h — the public contract of libmlxn, a compute library for transformer
 * inference: devices, typed buffers, a recorded compute graph that runs a
 * whole forward pass as one submission, and the inference ops.
 *
 * Conventions (they hold for every function below unless its comment says
 * otherwise):
 *  - Fallible calls return mlxn_status. MLXN_OK is 0. On failure a message
 *    saying what and where is kept per thread; mlxn_last_error() returns it.
 *  - Objects are opaque handles made by mlxn_<object>_create/open and freed by
 *    the matching _destroy/_close; destroying NULL is a no-op.
 *  - Results come back through the first argument (a pointer to the handle).
 *    On failure *out is set to NULL and nothing is leaked.
 *  - Parameter structs are zero-initialisable; a zero field means "default",
 *    and the default is written beside the field.
 *  - Thread-safety: different objects may be used from different threads at
 *    once. One session must not be used by two threads at the same time. A
 *    device and its buffers may be shared by sessions on several threads.
 *  - The library never exits, aborts or writes to stdout. Diagnostics that a
 *    caller asks for (graph dumps) go to stderr.
 *
 * Limits on untrusted files (model files, tokenizers and configs come from
 * strangers; every length, count and offset is checked against them and
 * against the bytes that remain before anything is allocated or read):
 *  - GGUF: strings <= 16 MiB, arrays <= 2^26 elements, <= 2^20 tensors,
 *    <= 2^16 metadata keys, arrays nested <= 8 deep, tensors <= 4 dims.
 *  - safetensors: header <= 100 MB, tensors <= 4 dims, data exactly tiling
 *    the data section.
 *  - JSON (config.json, tokenizer.json): nesting <= 64, file <= 64 MiB.
 * Larger inputs fail with MLXN_ERR_FORMAT or MLXN_ERR_UNSUPPORTED and a
 * message naming the field and the numbers.
 */
#ifndef MLXN_H
#define MLXN_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------------------ */
/* Status and errors                                                          */
/* ------------------------------------------------------------------------ */

typedef enum mlxn_status {
    MLXN_OK = 0,
    MLXN_ERR_INVALID_ARG = 1,   /* a NULL where a value is needed, a bad flag */
    MLXN_ERR_OUT_OF_MEMORY = 2, /* host or device allocation failed */
    MLXN_ERR_IO = 3,            /* open/read/mmap failed */
    MLXN_ERR_FORMAT = 4,        /* a file is malformed, truncated or corrupt */
    MLXN_ERR_UNSUPPORTED = 5,   /* valid input that mlxn does not handle */
    MLXN_ERR_SHAPE = 6,         /* shapes disagree */
    MLXN_ERR_DTYPE = 7,         /* a dtype an op or format does not take */
    MLXN_ERR_DEVICE = 8,        /* a device (CUDA) call failed */
    MLXN_ERR_NOT_FOUND = 9,     /* a named thing (tensor, key, device) is absent */
    MLXN_ERR_RANGE = 10,        /* an offset/length outside its allocation */
    MLXN_ERR_STATE = 11,        /* call not valid in the object's current state */
    MLXN_STATUS_COUNT
} mlxn_status;

/* The message of the last failure on this thread ("" when none). The string
 * is owned by the library and valid until the next mlxn call on this thread. */
const char *mlxn_last_error(void);

/* A short constant name for a status ("MLXN_ERR_SHAPE"); never NULL. */
const char *mlxn_status_name(mlxn_status s);

/* ------------------------------------------------------------------------ */
/* Data types                                                                 */
/* ------------------------------------------------------------------------ */

/* Element types. Block types (GGML quantized formats) pack `block_elems`
 * elements into `block_bytes` bytes; a tensor's innermost dimension must be a
 * multiple of the block size. Values are fixed; new types go at the end. */
typedef enum mlxn_dtype {
    MLXN_F32 = 0,
    MLXN_F16 = 1,
    MLXN_BF16 = 2,
    MLXN_U8 = 3,
    MLXN_U16 = 4,
    MLXN_U32 = 5,
    MLXN_I32 = 6,
    MLXN_Q4_0 = 7,  /* ggml: 32 elems, f16 d + 16 bytes of nibbles      = 18 B */
    MLXN_Q4_1 = 8,  /* ggml: 32 elems, f16 d, f16 m + 16 bytes          = 20 B */
    MLXN_Q8_0 = 9,  /* ggml: 32 elems, f16 d + 32 int8                  = 34 B */
    MLXN_Q4_K = 10, /* ggml: 256 elems super-block                      = 144 B */
    MLXN_Q5_K = 11, /* ggml: 256 elems                                  = 176 B */
    MLXN_Q6_K = 12, /* ggml: 256 elems                                  = 210 B */
    MLXN_I8 = 13,
    MLXN_DTYPE_COUNT
} mlxn_dtype;

/* Name ("f32", "bf16", "q4_k"), or "?" for an out-of-range value. */
const char *mlxn_dtype_name(mlxn_dtype t);
/* Elements per block (1 for plain types) and bytes per block; 0 if invalid. */
size_t mlxn_dtype_block_elems(mlxn_dtype t);
size_t mlxn_dtype_block_bytes(mlxn_dtype t);
/* Parse a name as printed by mlxn_dtype_name. */
mlxn_status mlxn_dtype_from_name(mlxn_dtype *out, const char *name);

/* Exact conversions; float -> half and float -> bfloat16 round to nearest
 * even, keep NaN a NaN and overflow to infinity. */
float mlxn_f16_to_f32(uint16_t h);
uint16_t mlxn_f32_to_f16(float f);
float mlxn_bf16_to_f32(uint16_t h);
uint16_t mlxn_f32_to_bf16(float f);

/* ------------------------------------------------------------------------ */
/* Devices                                                                    */
/* ------------------------------------------------------------------------ */

typedef struct mlxn_device mlxn_device;

typedef struct mlxn_device_options {
    int n_threads;    /* CPU worker threads; 0 = one per online core, or the
                         MLXN_THREADS environment variable when set */
    int cuda_ordinal; /* CUDA device index; 0 = first */
} mlxn_device_options;

/* Open a device by name: "cpu", "cuda", "cuda:N", or "auto"/NULL (CUDA when
 * built with it and a GPU is present, else CPU). opts may be NULL.
 * Fails with MLXN_ERR_NOT_FOUND / MLXN_ERR_UNSUPPORTED for a device that is
 * not there or not built in. Release with mlxn_device_close. */
mlxn_status mlxn_device_open(mlxn_device **out, const char *name,
                             const mlxn_device_options *opts);
/* 1 when this build of the library has the CUDA backend (make CUDA=1), else
 * 0. "auto" then picks CUDA when a usable GPU is present. */
int mlxn_cuda_compiled(void);
/* Close a device. Every buffer, pool and session of it must be destroyed
 * first. NULL is a no-op. */
void mlxn_device_close(mlxn_device *dev);
/* "cpu" or "cuda"; the description is a human-readable line
 * ("cpu: 2 threads, avx512" / "cuda: NVIDIA H100 80GB HBM3"). */
const char *mlxn_device_kind(const mlxn_device *dev);
const char *mlxn_device_description(const mlxn_device *dev);
int mlxn_device_threads(const mlxn_device *dev);
/* Bytes of device memory currently allocated through this device (buffers
 * and pools), and the peak since open. */
size_t mlxn_device_memory_in_use(const mlxn_device *dev);
size_t mlxn_device_memory_peak(const mlxn_device *dev);
/* Device memory taken since open as the driver reports it (CUDA: free
 * memory at open, once the context stood, minus free memory now), which
 * counts what the library allocates outside its buffers too (graph
 * scratch, the cuBLAS workspace, staging); not the CUDA context itself.
 * 0 where the backend cannot tell (the CPU). */
size_t mlxn_device_memory_driver(mlxn_device *dev);

/* ------------------------------------------------------------------------ */
/* Buffers                                                                    */
/* ------------------------------------------------------------------------ */

#define MLXN_MAX_DIMS 4

typedef struct mlxn_buffer mlxn_buffer;

/* A new buffer of `dtype` and `shape` (ndim 1..4, row-major, dims > 0) on
 * `dev`. Contents are undefined. */
mlxn_status mlxn_buffer_create(mlxn_buffer **out, mlxn_device *dev, mlxn_dtype dtype,
                               int ndim, const int64_t *shape);
/* A view of `base`'s allocation: its own dtype and shape, starting
 * `byte_offset` bytes after base's start. The view keeps the allocation alive;
 * base may be destroyed first. Fails with MLXN_ERR_RANGE when the view would
 * reach past the allocation. */
mlxn_status mlxn_buffer_view(mlxn_buffer **out, const mlxn_buffer *base, mlxn_dtype dtype,
                             int ndim, const int64_t *shape, size_t byte_offset);
/* Wrap read-only memory the caller owns (an mmapped file region). On the CPU
 * it is used in place (zero-copy); on other devices it is copied up once.
 * `release(ctx)` is called when the library no longer needs the memory —
 * when the last view is destroyed on the CPU, before this call returns
 * elsewhere (and also on failure). release may be NULL. Writing into an
 * adopted buffer fails with MLXN_ERR_STATE. */
mlxn_status mlxn_buffer_adopt(mlxn_buffer **out, mlxn_device *dev, const void *data,
                              mlxn_dtype dtype, int ndim, const int64_t *shape,
                              void (*release)(void *ctx), void *ctx);
/* Drop this handle; the allocation is freed (or returned to its pool) when
 * its last handle, view or recording session lets go. NULL is a no-op. */
void mlxn_buffer_destroy(mlxn_buffer *buf);

/* Copy host memory into the buffer at `byte_offset` / out of it. Ranges are
 * checked against the buffer's size. Waits for nothing: call these only
 * while no submitted session that uses the buffer is running. */
mlxn_status mlxn_buffer_write(mlxn_buffer *buf, size_t byte_offset, const void *src, size_t nbytes);
mlxn_status mlxn_buffer_read(const mlxn_buffer *buf, size_t byte_offset, void *dst, size_t nbytes);

mlxn_dtype mlxn_buffer_dtype(const mlxn_buffer *buf);
int mlxn_buffer_ndim(const mlxn_buffer *buf);
int64_t mlxn_buffer_dim(const mlxn_buffer *buf, int axis); /* 0 if out of range */
int64_t mlxn_buffer_elems(const mlxn_buffer *buf);
size_t mlxn_buffer_nbytes(const mlxn_buffer *buf);
size_t mlxn_buffer_offset(const mlxn_buffer *buf); /* bytes from allocation start */
/* Host address of the data on the CPU device (NULL on other devices). */
void *mlxn_buffer_host_ptr(const mlxn_buffer *buf);

/* ------------------------------------------------------------------------ */
/* Activation pool                                                            */
/* ------------------------------------------------------------------------ */

/* A size-bucketed cache of allocations (power-of-two buckets from 256 B):
 * buffers taken from it return to it when destroyed, so a forward pass that
 * takes and drops the same shapes every step allocates nothing after the
 * first. */
typedef struct mlxn_pool mlxn_pool;

mlxn_status mlxn_pool_create(mlxn_pool **out, mlxn_device *dev);
/* Like mlxn_buffer_create, reusing a cached allocation when one fits. */
mlxn_status mlxn_pool_take(mlxn_pool *pool, mlxn_buffer **out, mlxn_dtype dtype, int ndim,
                           const int64_t *shape);
/* Bytes held by the pool (cached + handed out). */
size_t mlxn_pool_bytes(const mlxn_pool *pool);
/* Free every cached allocation; buffers still handed out are freed when they
 * are destroyed. NULL is a no-op. */
void mlxn_pool_destroy(mlxn_pool *pool);

/* ------------------------------------------------------------------------ */
/* Sessions: the recorded compute graph                                       */
/* ------------------------------------------------------------------------ */

/* A session records op calls as graph nodes. Each node's read and write byte
 * ranges come from the op's declared arguments, so conflicts (read-after-
 * write, write-after-read, write-after-write on overlapping bytes of one
 * allocation) are known exactly; read-read never conflicts.
 *
 * Modes (the op calls are the same in each; only submission differs):
 *  - DIRECT: every op call is submitted and waited for as it is made (one
 *    submission per op). The baseline.
 *  - BATCHED: nodes are recorded and submitted once, with a barrier only
 *    where the schedule finds a conflict.
 *  - OPTIMIZED: BATCHED after the fuse and reorder passes.
 * Replay: a finished session can be run again with mlxn_session_replay — the
 * same nodes on the same buffers, without recording again. Values that change
 * per step (positions, token ids, KV length) are read by the ops from small
 * device buffers at execution time, so writing new values into those buffers
 * and replaying is a decode step.
 *
 * Fusion may leave out the write of an intermediate result that exactly one
 * later node reads. A buffer whose contents you read after the session runs
 * must be marked with mlxn_session_mark_output (or written by the last node
 * that touches it, which fusion never removes).
 */
typedef struct mlxn_session mlxn_session;

typedef enum mlxn_mode {
    MLXN_MODE_DIRECT = 0,
    MLXN_MODE_BATCHED = 1,
    MLXN_MODE_OPTIMIZED = 2,
    MLXN_MODE_COUNT
} mlxn_mode;

/* Session flags. Each can also be set for every session by an environment
 * variable: MLXN_NO_FUSE=1, MLXN_NO_REORDER=1, MLXN_GRAPH_DUMP=1 (the passes'
 * work and the schedule to stderr), MLXN_F32_ACTIVATIONS=1,
 * MLXN_INT8_ACTIVATIONS=1.
 * By default quantized matmuls with few rows (decode) on the CPU round the
 * activations to int8 per 32 values, as llama.cpp does, for GGML block
 * formats (relative error ~1e-3 of sum |x*w| per output, enough to flip
 * near-tied greedy choices); for MLX weights they take x in two int8
 * parts, the codes and their rounding residual at 1/128 of the step (error
 * 1/128 of that, and greedy decoding of the default model converted to MLX
 * equals mlx-lm's; the integer work costs 1.3-1.8x int8 alone with the
 * weights in cache, less when memory bounds them). INT8_ACTIVATIONS rounds
 * MLX activations to int8 alone (faster, llama.cpp's error). On a CPU
 * without AVX-512 VBMI, MLX 2/3/5/6-bit keep f32 activations; the integer
 * paths are on CPUs with VNNI about 4x faster than f32. The CUDA backend
 * rounds x to int8 alone for every format. Quantized matmuls with many rows (prefill)
 * on CPUs with AVX512-BF16 round the activations and the dequantized
 * weights to bf16 and accumulate in f32 (twice the f32 rate; error at most
 * 2^-7 of sum |x*w|, measured <= 2e-4 at K = 4096). F32_ACTIVATIONS keeps
 * both f32, for comparisons against reference implementations (and wins
 * over INT8_ACTIVATIONS). */
enum {
    MLXN_SESSION_NO_FUSE = 1u << 0,
    MLXN_SESSION_NO_REORDER = 1u << 1,
    MLXN_SESSION_DUMP = 1u << 2,
    MLXN_SESSION_F32_ACTIVATIONS = 1u << 3,
    MLXN_SESSION_INT8_ACTIVATIONS = 1u << 4,
};

/* Group-size histogram buckets: sizes 1..7, and 8 or more. */
#define MLXN_GROUP_HIST 8

typedef struct mlxn_graph_stats {
    uint32_t nodes;       /* nodes submitted (after fusion) */
    uint32_t recorded;    /* op calls recorded */
    uint32_t submissions; /* device submissions of the last run */
    uint32_t barriers;    /* barriers between concurrent groups */
    uint32_t groups;      /* concurrent groups */
    uint32_t edges;       /* dependency edges in the DAG */
    uint32_t fusions;     /* fused patterns applied */
    uint32_t reordered;   /* nodes whose position changed in the reorder pass */
    uint32_t replays;     /* runs by mlxn_session_replay */
    uint32_t group_hist[MLXN_GROUP_HIST];
    uint64_t record_ns, optimize_ns, submit_ns, wait_ns; /* last run */
    uint32_t launches;    /* kernels the last graph run launched on the device (CUDA: the
                           * kernel nodes of its CUDA graph, after the backend's own
                           * fusions); 0 where the backend does not count (CPU, direct) */
    uint32_t phases;      /* CPU: work phases of the last graph run, each but the last ended
                           * by a wait for all of its work to finish (the groups, less those a
                           * one-row norm / silu_mul that runs inside the group of its
                           * matmuls: producer fusion); 0 elsewhere (CUDA, direct) */
} mlxn_graph_stats;

/* flags: MLXN_SESSION_*. The session keeps references to every buffer its
 * nodes use until it is reset or destroyed. */
mlxn_status mlxn_session_create(mlxn_session **out, mlxn_device *dev, mlxn_mode mode,
                                unsigned flags);
void mlxn_session_destroy(mlxn_session *s);
/* Mark bytes a caller will read after the run (fusion keeps their writes). */
mlxn_status mlxn_session_mark_output(mlxn_session *s, const mlxn_buffer *buf);
/* Optimize, schedule and submit what was recorded; returns without waiting
 * where the device allows (CUDA). On the CPU the work is done on return. */
mlxn_status mlxn_session_submit(mlxn_session *s);
/* Wait for the last submission. */
mlxn_status mlxn_session_wait(mlxn_session *s);
/* submit + wait. */
mlxn_status mlxn_session_finish(mlxn_session *s);
/* Run the finished graph again (submit + wait). MLXN_ERR_STATE when nothing
 * was finished. */
mlxn_status mlxn_session_replay(mlxn_session *s);
mlxn_status mlxn_session_replay_submit(mlxn_session *s); /* without waiting */
/* Forget the recorded graph (drops its buffer references and the marked
 * outputs) to record anew. Recording an op after a finished graph does the
 * same implicitly. */
void mlxn_session_reset(mlxn_session *s);
mlxn_status mlxn_session_stats(const mlxn_session *s, mlxn_graph_stats *out);
mlxn_mode mlxn_session_mode(const mlxn_session *s);

/* ------------------------------------------------------------------------ */
/* Ops                                                                        */
/* ------------------------------------------------------------------------ */
/* Every op records one node into a session. Shapes are row-major; "rows" is
 * the product of all dims but the last. Activations are f32 unless said.
 * Weight-like inputs (norm weights, biases) may be f32, f16 or bf16.
 * An op whose output overlaps an input fails with MLXN_ERR_INVALID_ARG
 * unless the op allows in-place use (said below) and the ranges are equal.
 * A failed op call records nothing; the session stays usable. */

/* out = a + b, out = a * b. b has a's shape, or b is a vector of a's last
 * dim (broadcast over rows). In place allowed (out == a). */
mlxn_status mlxn_op_add(mlxn_session *s, mlxn_buffer *out, const mlxn_buffer *a, const mlxn_buffer *b);
mlxn_status mlxn_op_mul(mlxn_session *s, mlxn_buffer *out, const mlxn_buffer *a, const mlxn_buffer *b);
/* out = a * scale. In place allowed. */
mlxn_status mlxn_op_scale(mlxn_session *s, mlxn_buffer *out, const mlxn_buffer *a, float scale);
/* out = silu(a) = a * sigmoid(a). In place allowed. */
mlxn_status mlxn_op_silu(mlxn_session *s, mlxn_buffer *out, const mlxn_buffer *a);
/* out = silu(gate) * up. In place allowed (out == gate or out == up). */
mlxn_status mlxn_op_silu_mul(mlxn_session *s, mlxn_buffer *out, const mlxn_buffer *gate, const mlxn_buffer *up);
/* out = gelu(a); approximate != 0 uses the tanh form, else erf. */
mlxn_status mlxn_op_gelu(mlxn_session *s, mlxn_buffer *out, const mlxn_buffer *a, int approximate);
/* out = tanh(a / cap) * cap (logit soft-capping). In place allowed. */
mlxn_status mlxn_op_softcap(mlxn_session *s, mlxn_buffer *out, const mlxn_buffer *a, float cap);

/* RMS norm over the last dim: out = x / sqrt(mean(x^2) + eps) * w.
 * w (a vector of the last dim) may be NULL (no scale). eps 0 = 1e-5. */
mlxn_status mlxn_op_rms_norm(mlxn_session *s, mlxn_buffer *out, const mlxn_buffer *x,
                             const mlxn_buffer *w, float eps);
/* Residual add then norm: sum = a + b; out = rms_norm(sum, w, eps). Writes
 * both. (The fuse pass makes this from add -> rms_norm.) */
mlxn_status mlxn_op_add_rms_norm(mlxn_session *s, mlxn_buffer *sum, mlxn_buffer *out,
                                 const mlxn_buffer *a, const mlxn_buffer *b,
                                 const mlxn_buffer *w, float eps);
/* Layer norm over the last dim with optional weight and bias. eps 0 = 1e-5. */
mlxn_status mlxn_op_layer_norm(mlxn_session *s, mlxn_buffer *out, const mlxn_buffer *x,
                               const mlxn_buffer *w, const mlxn_buffer *b, float eps);

/* Softmax over the last dim of x*scale + mask. mask (NULL = none) is
 * [rows, cols] or [cols] (broadcast), f32. scale 0 = 1. In place allowed. */
mlxn_status mlxn_op_softmax(mlxn_session *s, mlxn_buffer *out, const mlxn_buffer *x,
                            const mlxn_buffer *mask, float scale);

/* out = x * W^T. x f32 [..., K]; W [N, K] in f32, f16, bf16 or a GGML
 * block type (q4_0, q4_1, q8_0, q4_k, q5_k, q6_k); out f32 [..., N]. */
mlxn_status mlxn_op_matmul(mlxn_session *s, mlxn_buffer *out, const mlxn_buffer *x, const mlxn_buffer *w);

/* MLX affine quantization: w = scale * q + bias per group of group_size
 * input features, q in [0, 2^bits). */
typedef struct mlxn_mlx_quant {
    int bits;       /* 2, 3, 4, 5, 6 or 8; 0 = 4 */
    int group_size; /* 32, 64 or 128; 0 = 64 */
} mlxn_mlx_quant;
/* out = x * W^T with W MLX-quantized: wq u32 [N, K*bits/32], scales and
 * biases [N, K/group_size] in f32, f16 or bf16 (the same dtype). */
mlxn_status mlxn_op_matmul_mlx(mlxn_session *s, mlxn_buffer *out, const mlxn_buffer *x,
                               const mlxn_buffer *wq, const mlxn_buffer *scales,
                               const mlxn_buffer *biases, const mlxn_mlx_quant *q);

typedef enum mlxn_rope_mode {
    MLXN_ROPE_NORMAL = 0, /* pairs (2i, 2i+1): GPT-J / GGUF llama "normal" */
    MLXN_ROPE_NEOX = 1,   /* pairs (i, i + d/2): HF Llama / Qwen / NeoX */
} mlxn_rope_mode;
typedef enum mlxn_rope_scaling {
    MLXN_ROPE_SCALE_NONE = 0,
    MLXN_ROPE_SCALE_LINEAR = 1, /* positions divided by factor */
    MLXN_ROPE_SCALE_LLAMA3 = 2, /* Llama 3.1 frequency-dependent scaling */
} mlxn_rope_scaling;
typedef struct mlxn_rope_params {
    int n_dims;               /* rotated dims from the start of each head; 0 = all */
    float base;               /* theta; 0 = 10000 */
    mlxn_rope_mode mode;
    mlxn_rope_scaling scaling;
    float factor;             /* linear / llama3 factor; 0 = 1 */
    float low_freq_factor;    /* llama3; 0 = 1 */
    float high_freq_factor;   /* llama3; 0 = 4 */
    int original_max_pos;     /* llama3; 0 = 8192 */
} mlxn_rope_params;
/* Rotary embedding. x f32 [T, H, D]; positions i32 [T] (read when the graph
 * runs, so replay can move them); freq_factors f32 [n_dims/2] or NULL
 * (divides each frequency, as GGUF rope_freqs). In place allowed. */
mlxn_status mlxn_op_rope(mlxn_session *s, mlxn_buffer *out, const mlxn_buffer *x,
                         const mlxn_buffer *positions, const mlxn_buffer *freq_factors,
                         const mlxn_rope_params *p);

/* Convert / copy: out and x have the same element count; dtypes f32, f16,
 * bf16 in any pair (rounding to nearest even), or the same dtype. */
mlxn_status mlxn_op_copy(mlxn_session *s, mlxn_buffer *out, const mlxn_buffer *x);

/* Embedding gather: out f32 [T, D] = table[ids[t]]; table [V, D] in f32,
 * f16, bf16 or a GGML block type; ids i32 [T]. An id outside [0, V) gives a
 * row of NaN (the graph cannot fail mid-run). */
mlxn_status mlxn_op_get_rows(mlxn_session *s, mlxn_buffer *out, const mlxn_buffer *table,
                             const mlxn_buffer *ids);
/* Gather from an MLX-quantized table (wq, scales, biases as matmul_mlx). */
mlxn_status mlxn_op_get_rows_mlx(mlxn_session *s, mlxn_buffer *out, const mlxn_buffer *wq,
                                 const mlxn_buffer *scales, const mlxn_buffer *biases,
                                 const mlxn_buffer *ids, const mlxn_mlx_quant *q);

/* KV cache write: x f32 [T, Hkv, D] goes to cache [Hkv, C, D] (f32, f16 or
 * bf16) at rows positions[t] (i32 [T]) modulo C — a linear cache when
 * positions stay below C, a ring (sliding window) when they pass it. */
mlxn_status mlxn_op_kv_write(mlxn_session *s, mlxn_buffer *cache, const mlxn_buffer *x,
                             const mlxn_buffer *positions);

typedef struct mlxn_attention_params {
    float scale;   /* 0 = 1/sqrt(D) */
    float softcap; /* logit soft-capping; 0 = off */
    int window;    /* sliding window in tokens; 0 = unlimited (causal) */
} mlxn_attention_params;
/* Causal grouped-query attention over a KV cache. q f32 [T, H, D]; k_cache,
 * v_cache [Hkv, C, D] (f32, f16, bf16) already holding this step's keys;
 * positions i32 [T] absolute positions of the queries: query t sees cache
 * positions p with p <= positions[t] (and p > positions[t] - window). H must
 * be a multiple of Hkv. out f32 [T, H, D]. */
mlxn_status mlxn_op_attention(mlxn_session *s, mlxn_buffer *out, const mlxn_buffer *q,
                              const mlxn_buffer *k_cache, const mlxn_buffer *v_cache,
                              const mlxn_buffer *positions, const mlxn_attention_params *p);

/* out i32 [rows] = index of the max of each row of x (first on ties). */
mlxn_status mlxn_op_argmax(mlxn_session *s, mlxn_buffer *out, const mlxn_buffer *x);

/* The k largest entries of each row of x f32 [rows, C], in descending order
 * (lower index first on ties): idx i32 [rows, k] and val f32 [rows, k].
 * 1 <= k <= C. (MoE routers; top-k sampling on the device.) */
mlxn_status mlxn_op_top_k(mlxn_session *s, mlxn_buffer *idx, mlxn_buffer *val, const mlxn_buffer *x, int k);

/* The softmax normalizer of each row of x f32 [rows, C] at a scale (1/temp
 * for sampling): out f32 [rows, 2] = (m, s) with m = max_j x[j] and
 * s = sum_j exp(scale * (x[j] - m)), so logsumexp(scale * x) = scale * m +
 * log(s); s is kept as a sum (in [1, C]) rather than a log so it keeps a
 * float's relative precision. Accumulated in double on every backend and
 * rounded once: s is within 2^-24 relative of the exact value plus
 * C * 2^-53. scale must be finite and > 0. NaN entries do not count for m
 * but make s NaN; +inf makes s NaN; a row of -inf gives m = -inf, s = 0.
 * (Top-p / min-p sampling from candidates on the device.) */
mlxn_status mlxn_op_logsumexp(mlxn_session *s, mlxn_buffer *out, const mlxn_buffer *x, double scale);

/* Expert-routed matmul (mixture of experts). w [E, N, K] stacks E expert
 * matrices in any mlxn_op_matmul weight format; ids i32 [T, top_k] picks the
 * experts of each token. out f32 [T * top_k, N]: row t*top_k + j is
 * x_row * W[ids[t, j]]^T, with x_row = x[t] (x f32 [T, K]) or, when
 * x_per_slot, x[t*top_k + j] (x f32 [T * top_k, K]). An id outside [0, E)
 * gives a row of NaN. */
mlxn_status mlxn_op_matmul_id(mlxn_session *s, mlxn_buffer *out, const mlxn_buffer *x, const mlxn_buffer *w,
                              const mlxn_buffer *ids, int x_per_slot);


#ifdef __cplusplus
}
#endif
#endif /* MLXN_H */
