/* buffer.c — allocations, buffers, views, adopted (mmapped) memory and
 * devices. An allocation is reference counted; buffers, views and recorded
 * graph nodes each hold one reference. */
#include "backend/backend.h"
#include "core/object.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static atomic_uint_fast64_t g_alloc_id = 1;

void mlxn_pool_return(struct mlxn_pool *pool, mlxn_alloc *a); /* pool.c */

static void account(mlxn_device *dev, size_t add, size_t sub) {
    if (add) {
        size_t now = atomic_fetch_add(&dev->mem_in_use, add) + add;
        size_t peak = atomic_load(&dev->mem_peak);
        while (now > peak && !atomic_compare_exchange_weak(&dev->mem_peak, &peak, now)) {
        }
    }
    if (sub) atomic_fetch_sub(&dev->mem_in_use, sub);
}

mlxn_status mlxn_alloc_new(mlxn_device *dev, size_t size, mlxn_alloc **out) {
    *out = NULL;
    mlxn_alloc *a = mlxn_calloc(1, sizeof *a);
    if (!a) return mlxn_err(MLXN_ERR_OUT_OF_MEMORY, "buffer: out of host memory for a handle");
    mlxn_status st = dev->be->alloc(dev, size ? size : 1, &a->ptr);
    if (st != MLXN_OK) {
        mlxn_free(a);
        return st;
    }
    a->dev = dev;
    a->size = size;
    atomic_init(&a->refs, 1);
    a->id = atomic_fetch_add(&g_alloc_id, 1);
    a->bucket = -1;
    account(dev, size, 0);
    *out = a;
    return MLXN_OK;
}

void mlxn_alloc_retain(mlxn_alloc *a) { atomic_fetch_add(&a->refs, 1); }

void mlxn_alloc_release(mlxn_alloc *a) {
    if (!a || atomic_fetch_sub(&a->refs, 1) != 1) return;
    if (a->pool) {
        mlxn_pool_return(a->pool, a);
        return;
    }
    if (a->flags & MLXN_ALLOC_ADOPTED) {
        if (a->release) a->release(a->release_ctx);
    } else {
        a->dev->be->free(a->dev, a->ptr);
        account(a->dev, 0, a->size);
    }
    mlxn_free(a);
}

int64_t mlxn_tensor_elems(const mlxn_tensor *t) {
    int64_t n = 1;
    for (int i = 0; i < t->ndim; i++) n *= t->shape[i];
    return n;
}

mlxn_status mlxn_tensor_init_shape(mlxn_tensor *t, mlxn_dtype dtype, int ndim,
                                   const int64_t *shape, const char *what) {
    if ((unsigned)dtype >= MLXN_DTYPE_COUNT)
        return mlxn_err(MLXN_ERR_DTYPE, "%s: unknown dtype %d", what, (int)dtype);
    if (ndim < 1 || ndim > MLXN_MAX_DIMS)
        return mlxn_err(MLXN_ERR_SHAPE, "%s: ndim %d outside 1..%d", what, ndim, MLXN_MAX_DIMS);
    if (!shape) return mlxn_err(MLXN_ERR_INVALID_ARG, "%s: shape is NULL", what);
    size_t n = 1;
    for (int i = 0; i < ndim; i++) {
        if (shape[i] <= 0)
            return mlxn_err(MLXN_ERR_SHAPE, "%s: dim %d is %lld, must be > 0", what, i,
                            (long long)shape[i]);
        if (!mlxn_mul_ok(n, (size_t)shape[i], &n))
            return mlxn_err(MLXN_ERR_SHAPE, "%s: element count overflows", what);
    }
    size_t be = mlxn_dtype_block_elems(dtype);
    if (shape[ndim - 1] % (int64_t)be)
        return mlxn_err(MLXN_ERR_SHAPE, "%s: last dim %lld is not a multiple of %s's block of %zu",
                        what, (long long)shape[ndim - 1], mlxn_dtype_name(dtype), be);
    size_t bytes;
    if (!mlxn_dtype_bytes_for(dtype, n, &bytes))
        return mlxn_err(MLXN_ERR_SHAPE, "%s: byte size overflows", what);
    t->dtype = dtype;
    t->ndim = ndim;
    for (int i = 0; i < MLXN_MAX_DIMS; i++) t->shape[i] = i < ndim ? shape[i] : 1;
    t->nbytes = bytes;
    return MLXN_OK;
}

const char *mlxn_tensor_str(const mlxn_tensor *t, char *buf, size_t cap) {
    int k = snprintf(buf, cap, "%s[", mlxn_dtype_name(t->dtype));
    for (int i = 0; i < t->ndim && k > 0 && (size_t)k < cap; i++)
        k += snprintf(buf + k, cap - (size_t)k, i ? ", %lld" : "%lld", (long long)t->shape[i]);
    if (k > 0 && (size_t)k < cap) snprintf(buf + k, cap - (size_t)k, "]");
    return buf;
}

static mlxn_status wrap(mlxn_buffer **out, mlxn_alloc *a, const mlxn_tensor *shape_src,
                        size_t offset) {
    mlxn_buffer *b = mlxn_malloc(sizeof *b);
    if (!b) return mlxn_err(MLXN_ERR_OUT_OF_MEMORY, "buffer: out of host memory for a handle");
    b->t = *shape_src;
    b->t.alloc = a;
    b->t.offset = offset;
    *out = b;
    return MLXN_OK;
}

mlxn_status mlxn_buffer_create(mlxn_buffer **out, mlxn_device *dev, mlxn_dtype dtype, int ndim,
                               const int64_t *shape) {
    if (!out) return mlxn_err(MLXN_ERR_INVALID_ARG, "buffer_create: out is NULL");
    *out = NULL;
    if (!dev) return mlxn_err(MLXN_ERR_INVALID_ARG, "buffer_create: device is NULL");
    mlxn_tensor t = {0};
    mlxn_status st = mlxn_tensor_init_shape(&t, dtype, ndim, shape, "buffer_create");
    if (st) return st;
    mlxn_alloc *a;
    if ((st = mlxn_alloc_new(dev, t.nbytes, &a))) return st;
    if ((st = wrap(out, a, &t, 0))) mlxn_alloc_release(a);
    return st;
}

mlxn_status mlxn_buffer_view(mlxn_buffer **out, const mlxn_buffer *base, mlxn_dtype dtype,
                             int ndim, const int64_t *shape, size_t byte_offset) {
    if (!out) return mlxn_err(MLXN_ERR_INVALID_ARG, "buffer_view: out is NULL");
    *out = NULL;
    if (!base) return mlxn_err(MLXN_ERR_INVALID_ARG, "buffer_view: base is NULL");
    mlxn_tensor t = {0};
    mlxn_status st = mlxn_tensor_init_shape(&t, dtype, ndim, shape, "buffer_view");
    if (st) return st;
    size_t start, end;
    if (!mlxn_add_ok(base->t.offset, byte_offset, &start) || !mlxn_add_ok(start, t.nbytes, &end) ||
        end > base->t.alloc->size)
        return mlxn_err(MLXN_ERR_RANGE,
                        "buffer_view: view of %zu bytes at offset %zu (+%zu) ends past the "
                        "allocation of %zu bytes",
                        t.nbytes, byte_offset, base->t.offset, base->t.alloc->size);
    if ((st = wrap(out, base->t.alloc, &t, start))) return st;
    mlxn_alloc_retain(base->t.alloc);
    return MLXN_OK;
}

mlxn_status mlxn_buffer_adopt(mlxn_buffer **out, mlxn_device *dev, const void *data,
                              mlxn_dtype dtype, int ndim, const int64_t *shape,
                              void (*release)(void *ctx), void *ctx) {
    mlxn_status st = MLXN_OK;
    if (!out) st = mlxn_err(MLXN_ERR_INVALID_ARG, "buffer_adopt: out is NULL");
    else *out = NULL;
    if (!st && (!dev || !data)) st = mlxn_err(MLXN_ERR_INVALID_ARG, "buffer_adopt: NULL device or data");
    mlxn_tensor t = {0};
    if (!st) st = mlxn_tensor_init_shape(&t, dtype, ndim, shape, "buffer_adopt");
    if (st) {
        if (release) release(ctx);
        return st;
    }
    if (!dev->be->host_memory) { /* copy up once, then let the caller's memory go */
        mlxn_buffer *b;
        st = mlxn_buffer_create(&b, dev, dtype, ndim, shape);
        if (!st) st = dev->be->upload(dev, b->t.alloc->ptr, data, t.nbytes);
        if (release) release(ctx);
        if (st) {
            mlxn_buffer_destroy(b);
            return st;
        }
        b->t.alloc->flags |= MLXN_ALLOC_READONLY;
        *out = b;
        return MLXN_OK;
    }
    mlxn_alloc *a = mlxn_calloc(1, sizeof *a);
    if (!a) {
        if (release) release(ctx);
        return mlxn_err(MLXN_ERR_OUT_OF_MEMORY, "buffer_adopt: out of host memory");
    }
    a->dev = dev;
    a->ptr = (void *)data;
    a->size = t.nbytes;
    atomic_init(&a->refs, 1);
    a->id = atomic_fetch_add(&g_alloc_id, 1);
    a->flags = MLXN_ALLOC_READONLY | MLXN_ALLOC_ADOPTED;
    a->bucket = -1;
    a->release = release;
    a->release_ctx = ctx;
    if ((st = wrap(out, a, &t, 0))) mlxn_alloc_release(a);
    return st;
}

void mlxn_buffer_destroy(mlxn_buffer *buf) {
    if (!buf) return;
    mlxn_alloc_release(buf->t.alloc);
    mlxn_free(buf);
}

static mlxn_status check_range(const mlxn_buffer *buf, size_t off, size_t n, const char *what) {
    size_t end;
    if (!mlxn_add_ok(off, n, &end) || end > buf->t.nbytes)
        return mlxn_err(MLXN_ERR_RANGE, "%s: %zu bytes at offset %zu pass the buffer's %zu bytes",
                        what, n, off, buf->t.nbytes);
    return MLXN_OK;
}

/* The checks of a write of n bytes at off (what: the caller's name); *dst
 * the device address. */
static mlxn_status write_target(mlxn_buffer *buf, size_t off, const void *src, size_t n, const char *what,
                                void **dst) {
    if (!buf || (!src && n)) return mlxn_err(MLXN_ERR_INVALID_ARG, "%s: NULL argument", what);
    mlxn_status st = check_range(buf, off, n, what);
    if (st) return st;
    if (buf->t.alloc->flags & MLXN_ALLOC_READONLY)
        return mlxn_err(MLXN_ERR_STATE, "%s: buffer is read-only (adopted memory)", what);
    *dst = (char *)mlxn_tensor_data(&buf->t) + off;
    return MLXN_OK;
}

mlxn_status mlxn_buffer_write(mlxn_buffer *buf, size_t off, const void *src, size_t n) {
    void *dst;
    mlxn_status st = write_target(buf, off, src, n, "buffer_write", &dst);
    if (st) return st;
    mlxn_device *d = buf->t.alloc->dev;
    return d->be->upload(d, dst, src, n);
}

mlxn_status mlxn_buffer_write_queued(mlxn_buffer *buf, size_t off, const void *src, size_t n) {
    if (n > MLXN_QCOPY_MAX)
        return mlxn_err(MLXN_ERR_RANGE, "buffer_write_queued: %zu bytes, at most %d", n, MLXN_QCOPY_MAX);
    void *dst;
    mlxn_status st = write_target(buf, off, src, n, "buffer_write_queued", &dst);
    if (st) return st;
    mlxn_device *d = buf->t.alloc->dev;
    return d->be->upload_queued ? d->be->upload_queued(d, dst, src, n) : d->be->upload(d, dst, src, n);
}

mlxn_status mlxn_buffer_read_queued(const mlxn_buffer *buf, size_t off, size_t n, mlxn_qread *q) {
    if (!buf || !q) return mlxn_err(MLXN_ERR_INVALID_ARG, "buffer_read_queued: NULL argument");
    q->slot = -1;
    q->n = 0;
    q->dev = NULL;
    if (n > MLXN_QCOPY_MAX)
        return mlxn_err(MLXN_ERR_RANGE, "buffer_read_queued: %zu bytes, at most %d", n, MLXN_QCOPY_MAX);
    mlxn_status st = check_range(buf, off, n, "buffer_read_queued");
    if (st) return st;
    mlxn_device *d = buf->t.alloc->dev;
    const void *src = (const char *)mlxn_tensor_data(&buf->t) + off;
    st = d->be->read_queued ? d->be->read_queued(d, src, n, &q->slot) : d->be->download(d, q->bytes, src, n);
    if (st) {
        q->slot = -1;
        return st;
    }
    q->dev = d;
    q->n = n;
    return MLXN_OK;
}

bool mlxn_device_queues_copies(const mlxn_device *d) { return d && d->be->read_queued != NULL; }
bool mlxn_device_host_memory(const mlxn_device *d) { return d && d->be->host_memory; }

mlxn_status mlxn_qread_wait(mlxn_qread *q, void *dst) {
    if (!q || !dst) return mlxn_err(MLXN_ERR_INVALID_ARG, "qread_wait: NULL argument");
    if (!q->dev) return mlxn_err(MLXN_ERR_STATE, "qread_wait: no read was started");
    mlxn_status st = MLXN_OK;
    if (q->slot >= 0) st = q->dev->be->read_wait(q->dev, q->slot, q->bytes, q->n);
    if (!st) memcpy(dst, q->bytes, q->n);
    q->dev = NULL;
    q->slot = -1;
    return st;
}

mlxn_status mlxn_buffer_fill(mlxn_buffer *buf, size_t off, const mlxn_fill *f, size_t n) {
    if (!buf || !f) return mlxn_err(MLXN_ERR_INVALID_ARG, "buffer_fill: NULL argument");
    size_t eb = (unsigned)f->kind < MLXN_FILL_COUNT ? mlxn_fill_elem_bytes(f->kind) : 0;
    if (!eb)
        return mlxn_err(MLXN_ERR_INVALID_ARG, "buffer_fill: fill kind %d is not bits, bf16, f32 or ggml", (int)f->kind);
    if (f->kind == MLXN_FILL_GGML && !mlxn_fill_ggml_bb(f->block))
        return mlxn_err(MLXN_ERR_INVALID_ARG, "buffer_fill: a ggml fill of block type %d, which it cannot make",
                        f->block);
    mlxn_dtype want = f->kind == MLXN_FILL_BF16   ? MLXN_BF16
                      : f->kind == MLXN_FILL_F32  ? MLXN_F32
                      : f->kind == MLXN_FILL_GGML ? (mlxn_dtype)f->block
                                                  : buf->t.dtype;
    if (buf->t.dtype != want)
        return mlxn_err(MLXN_ERR_DTYPE, "buffer_fill: a %s fill into a %s buffer", mlxn_dtype_name(want),
                        mlxn_dtype_name(buf->t.dtype));
    size_t at = buf->t.offset + off;
    if (n % eb || at % eb)
        return mlxn_err(MLXN_ERR_INVALID_ARG,
                        "buffer_fill: %zu bytes at offset %zu are not whole %zu-byte elements", n, at, eb);
    mlxn_status st = check_range(buf, off, n, "buffer_fill");
    if (st) return st;
    if (buf->t.alloc->flags & MLXN_ALLOC_READONLY)
        return mlxn_err(MLXN_ERR_STATE, "buffer_fill: buffer is read-only");
    mlxn_device *d = buf->t.alloc->dev;
    if (!d->be->fill) return mlxn_err(MLXN_ERR_UNSUPPORTED, "buffer_fill: the %s backend cannot fill", d->be->name);
    return n ? d->be->fill(d, (char *)mlxn_tensor_data(&buf->t) + off, f, n / eb) : MLXN_OK;
}

mlxn_status mlxn_buffer_create_filled(mlxn_buffer **out, mlxn_device *dev, mlxn_dtype dtype, int ndim,
                                      const int64_t *shape, const mlxn_fill *f) {
    mlxn_status st = mlxn_buffer_create(out, dev, dtype, ndim, shape);
    if (st) return st;
    if ((st = mlxn_buffer_fill(*out, 0, f, (*out)->t.nbytes))) {
        mlxn_buffer_destroy(*out);
        *out = NULL;
        return st;
    }
    (*out)->t.alloc->flags |= MLXN_ALLOC_READONLY;
    return MLXN_OK;
}

mlxn_status mlxn_buffer_read(const mlxn_buffer *buf, size_t off, void *dst, size_t n) {
    if (!buf || (!dst && n)) return mlxn_err(MLXN_ERR_INVALID_ARG, "buffer_read: NULL argument");
    mlxn_status st = check_range(buf, off, n, "buffer_read");
    if (st) return st;
    mlxn_device *d = buf->t.alloc->dev;
    return d->be->download(d, dst, (const char *)mlxn_tensor_data(&buf->t) + off, n);
}

mlxn_dtype mlxn_buffer_dtype(const mlxn_buffer *b) { return b->t.dtype; }
int mlxn_buffer_ndim(const mlxn_buffer *b) { return b->t.ndim; }
int64_t mlxn_buffer_dim(const mlxn_buffer *b, int axis) {
    return (axis >= 0 && axis < b->t.ndim) ? b->t.shape[axis] : 0;
}
int64_t mlxn_buffer_elems(const mlxn_buffer *b) { return mlxn_tensor_elems(&b->t); }
size_t mlxn_buffer_nbytes(const mlxn_buffer *b) { return b->t.nbytes; }
size_t mlxn_buffer_offset(const mlxn_buffer *b) { return b->t.offset; }
void *mlxn_buffer_host_ptr(const mlxn_buffer *b) {
    return b->t.alloc->dev->be->host_memory ? mlxn_tensor_data(&b->t) : NULL;
}

/* ---- devices ---- */

mlxn_status mlxn_device_open(mlxn_device **out, const char *name, const mlxn_device_options *opts) {
    if (!out) return mlxn_err(MLXN_ERR_INVALID_ARG, "device_open: out is NULL");
    *out = NULL;
    const mlxn_backend *be = NULL;
    mlxn_device_options o = {0};
    if (opts) o = *opts;
    if (!name || strcmp(name, "auto") == 0) {
#ifdef MLXN_CUDA
        be = mlxn_cuda_available() ? &mlxn_backend_cuda : &mlxn_backend_cpu;
#else
        be = &mlxn_backend_cpu;
#endif
    } else if (strcmp(name, "cpu") == 0) {
        be = &mlxn_backend_cpu;
    } else if (strncmp(name, "cuda", 4) == 0 && (name[4] == 0 || name[4] == ':')) {
#ifdef MLXN_CUDA
        if (name[4] == ':') o.cuda_ordinal = atoi(name + 5);
        be = &mlxn_backend_cuda;
#else
        return mlxn_err(MLXN_ERR_UNSUPPORTED,
                        "device_open: '%s' asked for, but this build has no CUDA backend "
                        "(build with `make CUDA=1`)",
                        name);
#endif
    } else {
        return mlxn_err(MLXN_ERR_NOT_FOUND, "device_open: unknown device '%s' (cpu, cuda, auto)", name);
    }
    mlxn_device *d = mlxn_calloc(1, sizeof *d);
    if (!d) return mlxn_err(MLXN_ERR_OUT_OF_MEMORY, "device_open: out of host memory");
    d->be = be;
    snprintf(d->kind, sizeof d->kind, "%s", be->name);
    mlxn_status st = be->init(d, &o);
    if (st) {
        mlxn_free(d);
        return st;
    }
    *out = d;
    return MLXN_OK;
}

int mlxn_cuda_compiled(void) {
#ifdef MLXN_CUDA
    return 1;
#else
    return 0;
#endif
}

void mlxn_device_close(mlxn_device *dev) {
    if (!dev) return;
    dev->be->shutdown(dev);
    mlxn_free(dev);
}

const char *mlxn_device_kind(const mlxn_device *d) { return d->kind; }
const char *mlxn_device_description(const mlxn_device *d) { return d->desc; }
int mlxn_device_threads(const mlxn_device *d) { return d->n_threads; }
size_t mlxn_device_memory_in_use(const mlxn_device *d) { return atomic_load(&d->mem_in_use); }
size_t mlxn_device_memory_peak(const mlxn_device *d) { return atomic_load(&d->mem_peak); }
size_t mlxn_device_memory_driver(mlxn_device *d) { return d->be->mem_taken ? d->be->mem_taken(d) : 0; }
