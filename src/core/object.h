/*
 * object.h — the library's internal object layouts: allocations, buffers
 * (typed windows onto an allocation), devices and the tensor descriptor that
 * graph nodes copy by value. Internal header.
 */
#ifndef MLXN_OBJECT_H
#define MLXN_OBJECT_H

#include "core/core.h"

#include <pthread.h>
#include <stdatomic.h>

struct mlxn_backend;
struct mlxn_pool;

enum { MLXN_ALLOC_READONLY = 1u << 0, MLXN_ALLOC_ADOPTED = 1u << 1 };

/* One allocation on one device. Buffers and recorded graph nodes hold
 * references; the last one to let go frees it or returns it to its pool. */
typedef struct mlxn_alloc {
    mlxn_device *dev;
    void *ptr;   /* host address (CPU) or device address (CUDA) */
    size_t size; /* bytes */
    atomic_int refs;
    uint32_t flags;
    uint64_t id; /* unique for the process: the key conflict tracking uses */
    struct mlxn_pool *pool;
    int bucket;
    void (*release)(void *ctx);
    void *release_ctx;
    struct mlxn_alloc *next_free; /* pool free list */
} mlxn_alloc;

/* A typed, contiguous, row-major window onto an allocation. Graph nodes keep
 * tensors by value (with a reference on `alloc`). */
typedef struct mlxn_tensor {
    mlxn_alloc *alloc;
    size_t offset; /* bytes from the allocation start */
    size_t nbytes;
    mlxn_dtype dtype;
    int ndim;
    int64_t shape[MLXN_MAX_DIMS];
} mlxn_tensor;

struct mlxn_buffer {
    mlxn_tensor t;
};

struct mlxn_device {
    const struct mlxn_backend *be;
    void *impl; /* the backend's state */
    char kind[16];
    char desc[160];
    int n_threads;
    atomic_size_t mem_in_use;
    atomic_size_t mem_peak;
};

void mlxn_alloc_retain(mlxn_alloc *a);
void mlxn_alloc_release(mlxn_alloc *a);
/* A new allocation of `size` bytes on dev (refs = 1). */
mlxn_status mlxn_alloc_new(mlxn_device *dev, size_t size, mlxn_alloc **out);

/* Fill a tensor's shape fields and byte size; validates ndim, dims > 0,
 * block multiples and overflow. `what` names the caller in messages. */
mlxn_status mlxn_tensor_init_shape(mlxn_tensor *t, mlxn_dtype dtype, int ndim,
                                   const int64_t *shape, const char *what);
int64_t mlxn_tensor_elems(const mlxn_tensor *t);
/* Rows when the tensor is seen as [rows, last dim]. */
static inline int64_t mlxn_tensor_rows(const mlxn_tensor *t) {
    int64_t r = 1;
    for (int i = 0; i < t->ndim - 1; i++) r *= t->shape[i];
    return r;
}
static inline int64_t mlxn_tensor_cols(const mlxn_tensor *t) { return t->shape[t->ndim - 1]; }
/* Host/device address of the first byte. */
static inline void *mlxn_tensor_data(const mlxn_tensor *t) {
    return (char *)t->alloc->ptr + t->offset;
}
/* "f32[4, 2048]" into buf. */
const char *mlxn_tensor_str(const mlxn_tensor *t, char *buf, size_t cap);

#endif
