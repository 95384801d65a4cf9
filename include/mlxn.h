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

/* MLXN_GRAPH_API_BEGIN — sessions and ops follow (see below). */

#ifdef __cplusplus
}
#endif
#endif /* MLXN_H */
