/*
 * core.h — what every layer of the library uses: error reporting, checked
 * size arithmetic, dtype traits and the internal assert. Internal header.
 */
#ifndef MLXN_CORE_H
#define MLXN_CORE_H

#include "core/fill.h"
#include "mlxn.h"
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

/* Set the thread's error message (printf-style) and return `s`, so a failing
 * path reads `return mlxn_err(MLXN_ERR_SHAPE, "matmul: ...", ...);`. */
mlxn_status mlxn_err(mlxn_status s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
#ifdef __clang_analyzer__
/* The static analyzer (scan-build) sees one file at a time: without this
 * it takes mlxn_err as able to return MLXN_OK and follows error paths on
 * as if they had succeeded. Analysis builds only. */
#define mlxn_err(s, ...) (mlxn_err((s), __VA_ARGS__), (s))
#endif
/* A measuring switch: on unless the environment sets `name` to 0, read
 * once into *cache (-1 before; relaxed both ways: every thread computes
 * the same answer). */
static inline bool mlxn_env_switch(int *cache, const char *name) {
    int on = __atomic_load_n(cache, __ATOMIC_RELAXED);
    if (on < 0) {
        const char *e = getenv(name);
        on = !(e && *e == '0');
        __atomic_store_n(cache, on, __ATOMIC_RELAXED);
    }
    return on;
}
/* Prefix the current message with "what: " (for adding context on the way up). */
void mlxn_err_prefix(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void mlxn_err_clear(void);

/* Internal invariant: a broken one is a library bug. It records the message
 * and returns MLXN_ERR_STATE from the enclosing function instead of aborting. */
#define MLXN_ASSERT(cond)                                                                   \
    do {                                                                                    \
        if (!(cond))                                                                        \
            return mlxn_err(MLXN_ERR_STATE, "internal error at %s:%d: %s", __FILE__, __LINE__, \
                            #cond);                                                         \
    } while (0)

/* Checked arithmetic for sizes that come from files or callers. Return false
 * on overflow and leave *out untouched. */
static inline bool mlxn_mul_ok(size_t a, size_t b, size_t *out) {
    size_t r;
    if (__builtin_mul_overflow(a, b, &r)) return false;
    *out = r;
    return true;
}
static inline bool mlxn_add_ok(size_t a, size_t b, size_t *out) {
    size_t r;
    if (__builtin_add_overflow(a, b, &r)) return false;
    *out = r;
    return true;
}

/* Bytes of `n_elems` elements of `t` (n_elems must be a multiple of the
 * block size). Returns false when not a multiple or on overflow. */
bool mlxn_dtype_bytes_for(mlxn_dtype t, uint64_t n_elems, size_t *out);
bool mlxn_dtype_is_block(mlxn_dtype t);
bool mlxn_dtype_is_float(mlxn_dtype t); /* f32, f16, bf16 */

/* Allocation with a test hook: when the environment variable or
 * mlxn_fail_alloc_after(n) is set, the n-th call (1-based) fails. Every
 * library allocation goes through these. */
void *mlxn_malloc(size_t n);
/* Test hook: make the n-th allocation from now on fail (0 = off). Counts
 * host allocations and device buffer allocations alike. */
void mlxn_test_fail_alloc_after(long n);
/* Consumes one allocation count; true when this allocation must fail. */
bool mlxn_test_alloc_should_fail(void);
void *mlxn_calloc(size_t n, size_t size);
void *mlxn_realloc(void *p, size_t n);
void mlxn_free(void *p);
char *mlxn_strdup(const char *s);

/* Random buffer content (core/fill.h), made on the buffer's device.
 * mlxn_buffer_fill writes nbytes at byte offset off: element i of the fill
 * (i from 0) lands at off + i·mlxn_fill_elem_bytes. BF16 and F32 fills need
 * a buffer of that dtype; BITS any dtype. nbytes and off must be multiples
 * of the element size. Fails (nothing written) on a bad kind, size, range
 * or a read-only buffer; returns when the bytes are there. */
mlxn_status mlxn_buffer_fill(mlxn_buffer *buf, size_t off, const mlxn_fill *f, size_t nbytes);
/* mlxn_buffer_create, then the whole buffer filled by f (made on the
 * device, nothing crosses from the host) and marked read-only, as adopted
 * weights are. */
mlxn_status mlxn_buffer_create_filled(mlxn_buffer **out, mlxn_device *dev, mlxn_dtype dtype, int ndim,
                                      const int64_t *shape, const mlxn_fill *f);

/* Queued transfers of a few bytes (a decode step's token and position, its
 * argmax): ordered after the work already submitted to the buffer's device
 * and returning without waiting for it where the backend can (CUDA); on the
 * CPU, where submitted work is done on return, they are plain copies. */
#define MLXN_QCOPY_MAX 64
/* src may be reused on return; n <= MLXN_QCOPY_MAX. */
mlxn_status mlxn_buffer_write_queued(mlxn_buffer *buf, size_t off, const void *src, size_t n);
/* A queued read: mlxn_buffer_read_queued starts it, mlxn_qread_wait waits
 * for its bytes (and must be called once for every read started, to free
 * the device's slot). */
typedef struct mlxn_qread {
    mlxn_device *dev;
    int slot; /* the backend's slot; -1: the bytes are already in `bytes` */
    size_t n;
    unsigned char bytes[MLXN_QCOPY_MAX];
} mlxn_qread;
mlxn_status mlxn_buffer_read_queued(const mlxn_buffer *buf, size_t off, size_t n, mlxn_qread *q);
mlxn_status mlxn_qread_wait(mlxn_qread *q, void *dst);
/* Whether the device queues these without waiting (CUDA). */
bool mlxn_device_queues_copies(const mlxn_device *d);
/* True when the device computes in host memory (the CPU: buffers may adopt
 * mapped file bytes without a copy). */
bool mlxn_device_host_memory(const mlxn_device *d);

/* Monotonic time in nanoseconds. */
uint64_t mlxn_now_ns(void);

#endif
