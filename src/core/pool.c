/* pool.c — a size-bucketed cache of allocations for activations. Bucket b
 * holds allocations of 256 << b bytes. An allocation taken from the pool
 * keeps a pointer to it and comes back to its bucket's free list when its
 * last reference goes. The pool lives until it is destroyed and every
 * allocation it handed out has come back. */
#include "backend/backend.h"
#include "core/object.h"

#define POOL_BUCKETS 48

struct mlxn_pool {
    mlxn_device *dev;
    pthread_mutex_t mu;
    mlxn_alloc *free_list[POOL_BUCKETS];
    size_t bytes;
    int outstanding; /* allocations handed out and not back yet */
    bool destroyed;
};

static void pool_free_struct(struct mlxn_pool *p) {
    pthread_mutex_destroy(&p->mu);
    mlxn_free(p);
}

static void alloc_free_now(mlxn_alloc *a) {
    a->pool = NULL;
    atomic_store(&a->refs, 1);
    mlxn_alloc_release(a); /* frees device memory and the record */
}

void mlxn_pool_return(struct mlxn_pool *p, mlxn_alloc *a);
void mlxn_pool_return(struct mlxn_pool *p, mlxn_alloc *a) {
    pthread_mutex_lock(&p->mu);
    p->outstanding--;
    if (p->destroyed) {
        p->bytes -= a->size;
        bool last = p->outstanding == 0;
        pthread_mutex_unlock(&p->mu);
        alloc_free_now(a);
        if (last) pool_free_struct(p);
        return;
    }
    a->next_free = p->free_list[a->bucket];
    p->free_list[a->bucket] = a;
    pthread_mutex_unlock(&p->mu);
}

mlxn_status mlxn_pool_create(mlxn_pool **out, mlxn_device *dev) {
    if (!out) return mlxn_err(MLXN_ERR_INVALID_ARG, "pool_create: out is NULL");
    *out = NULL;
    if (!dev) return mlxn_err(MLXN_ERR_INVALID_ARG, "pool_create: device is NULL");
    struct mlxn_pool *p = mlxn_calloc(1, sizeof *p);
    if (!p) return mlxn_err(MLXN_ERR_OUT_OF_MEMORY, "pool_create: out of host memory");
    p->dev = dev;
    pthread_mutex_init(&p->mu, NULL);
    *out = p;
    return MLXN_OK;
}

mlxn_status mlxn_pool_take(mlxn_pool *p, mlxn_buffer **out, mlxn_dtype dtype, int ndim,
                           const int64_t *shape) {
    if (!out) return mlxn_err(MLXN_ERR_INVALID_ARG, "pool_take: out is NULL");
    *out = NULL;
    if (!p) return mlxn_err(MLXN_ERR_INVALID_ARG, "pool_take: pool is NULL");
    mlxn_tensor t = {0};
    mlxn_status st = mlxn_tensor_init_shape(&t, dtype, ndim, shape, "pool_take");
    if (st) return st;
    int b = 0;
    while (b < POOL_BUCKETS && ((size_t)256 << b) < t.nbytes) b++;
    if (b == POOL_BUCKETS) return mlxn_err(MLXN_ERR_OUT_OF_MEMORY, "pool_take: %zu bytes is too large", t.nbytes);
    mlxn_buffer *buf = mlxn_malloc(sizeof *buf);
    if (!buf) return mlxn_err(MLXN_ERR_OUT_OF_MEMORY, "pool_take: out of host memory");
    pthread_mutex_lock(&p->mu);
    mlxn_alloc *a = p->free_list[b];
    if (a) {
        p->free_list[b] = a->next_free;
        a->next_free = NULL;
        atomic_store(&a->refs, 1);
    }
    pthread_mutex_unlock(&p->mu);
    if (!a) {
        if ((st = mlxn_alloc_new(p->dev, (size_t)256 << b, &a))) {
            mlxn_free(buf);
            return st;
        }
        a->bucket = b;
        pthread_mutex_lock(&p->mu);
        p->bytes += a->size;
        pthread_mutex_unlock(&p->mu);
    }
    a->pool = p;
    pthread_mutex_lock(&p->mu);
    p->outstanding++;
    pthread_mutex_unlock(&p->mu);
    t.alloc = a;
    t.offset = 0;
    buf->t = t;
    *out = buf;
    return MLXN_OK;
}

size_t mlxn_pool_bytes(const mlxn_pool *p) { return p ? p->bytes : 0; }

void mlxn_pool_destroy(mlxn_pool *p) {
    if (!p) return;
    pthread_mutex_lock(&p->mu);
    p->destroyed = true;
    for (int b = 0; b < POOL_BUCKETS; b++) {
        mlxn_alloc *a = p->free_list[b];
        p->free_list[b] = NULL;
        while (a) {
            mlxn_alloc *n = a->next_free;
            p->bytes -= a->size;
            alloc_free_now(a);
            a = n;
        }
    }
    bool none_out = p->outstanding == 0;
    pthread_mutex_unlock(&p->mu);
    if (none_out) pool_free_struct(p);
}
