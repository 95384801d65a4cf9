/*
 * cpu_backend.c — the CPU backend: host memory, and graph execution on the
 * thread pool. A submission is one pool job. Inside it every worker takes
 * (node, task) items of the current concurrent group from a shared counter,
 * so a worker that finishes its part of one node goes straight on to the
 * next node of the group. At a group boundary a worker waits until every
 * item of the group is finished, not until every worker has come: one
 * that the OS descheduled while it held no item is not waited for.
 *
 * A worker that has finished its items of a group, and would wait for the
 * others, prefetches the weights of the next group of one-row matmuls
 * instead (the start of each worker's share of rows, up to a budget), so
 * that the memory bus is busy while the step runs norms, rope, attention
 * or waits for a late worker.
 */
#include "backend/backend.h"
#include "backend/cpu/cpu.h"
#include "backend/cpu/threadpool.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct cpu_dev {
    mlxn_threadpool *tp;
    pthread_mutex_t run_mu; /* one submission at a time per device */
    void **scratch;         /* per thread */
    size_t scratch_cap;
} cpu_dev;

static int default_threads(void) {
    const char *e = getenv("MLXN_THREADS");
    if (e && atoi(e) > 0) return atoi(e);
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)n : 1;
}

static mlxn_status cpu_init(mlxn_device *dev, const mlxn_device_options *o) {
    cpu_dev *c = mlxn_calloc(1, sizeof *c);
    if (!c) return mlxn_err(MLXN_ERR_OUT_OF_MEMORY, "cpu: out of host memory");
    int n = o->n_threads > 0 ? o->n_threads : default_threads();
    if (n > 256) n = 256;
    c->scratch = mlxn_calloc((size_t)n, sizeof(void *));
    mlxn_status st = c->scratch ? mlxn_tp_create(&c->tp, n)
                                : mlxn_err(MLXN_ERR_OUT_OF_MEMORY, "cpu: out of host memory");
    if (st) {
        mlxn_free(c->scratch);
        mlxn_free(c);
        return st;
    }
    pthread_mutex_init(&c->run_mu, NULL);
    dev->impl = c;
    dev->n_threads = n;
    const char *isa = __builtin_cpu_supports("avx512f") ? "avx512"
                      : __builtin_cpu_supports("avx2") ? "avx2" : "scalar";
    snprintf(dev->desc, sizeof dev->desc, "cpu: %d threads, %s", n, isa);
    return MLXN_OK;
}

static void cpu_shutdown(mlxn_device *dev) {
    cpu_dev *c = dev->impl;
    mlxn_tp_destroy(c->tp);
    for (int i = 0; i < dev->n_threads; i++) free(c->scratch[i]);
    mlxn_free(c->scratch);
    pthread_mutex_destroy(&c->run_mu);
    mlxn_free(c);
}

static mlxn_status cpu_alloc(mlxn_device *dev, size_t size, void **out) {
    (void)dev;
    /* 64-byte alignment for vector loads; rounded up as aligned_alloc wants */
    size_t sz = (size + 63) & ~(size_t)63;
    void *p = NULL;
    if (sz < size || mlxn_test_alloc_should_fail() || !(p = aligned_alloc(64, sz ? sz : 64)))
        return mlxn_err(MLXN_ERR_OUT_OF_MEMORY, "cpu: cannot allocate %zu bytes", size);
    *out = p;
    return MLXN_OK;
}

static void cpu_free(mlxn_device *dev, void *p) {
    (void)dev;
    free(p);
}

static mlxn_status cpu_copy(mlxn_device *dev, void *dst, const void *src, size_t n) {
    (void)dev;
    if (n) memcpy(dst, src, n);
    return MLXN_OK;
}

/* The exec's plan (ex->backend_state), built on its first run with more
 * than one worker: producer fusion, the weight prefetch while waiting, and
 * the nodes' shared areas. pre[g] = 1 when group g is one producer run
 * inside group g + 1 (cpu.h, mlxn_cpu_pre_ok); xoff: bytes at the start of
 * each worker's scratch for the producer's row (the kernels' scratch
 * follows). MLXN_CPU_PREFUSE=0: no fusion. */
enum { PF_NODES = 4 };
/* The weight prefetch of one group of one-row matmuls: its first nn
 * matmul nodes; node q's parts are prefetched `rows[q]` rows a chunk,
 * rounds[q] chunks a part, the parts' chunks interleaved (round-major),
 * so that every part's first rows come first. */
typedef struct pf_group {
    uint32_t node[PF_NODES];
    uint32_t rows[PF_NODES], rounds[PF_NODES];
    uint8_t nn;
} pf_group;

typedef struct cpu_plan {
    uint8_t *pre;
    size_t xoff;
    uint32_t fused; /* groups with pre[g] = 1 */
    int32_t *pf_next; /* per group: the next group with a weight prefetch, -1: none */
    pf_group *pf;     /* per group */
    size_t *sh_off;   /* per node: its shared area's offset in sh + 1; 0: none */
    char *sh;         /* the nodes' shared areas (mlxn_cpu_op.shared) */
} cpu_plan;

_Thread_local void *mlxn_cpu_shared_area;

static void plan_free(cpu_plan *p) {
    if (p) {
        mlxn_free(p->pre);
        mlxn_free(p->pf_next);
        mlxn_free(p->pf);
        mlxn_free(p->sh_off);
        free(p->sh);
    }
    mlxn_free(p);
}

/* The nodes' shared areas, 64-byte aligned and zeroed. */
static mlxn_status sh_build(const mlxn_exec *ex, int nth, cpu_plan *p) {
    size_t total = 0;
    for (uint32_t i = 0; i < ex->n_nodes; i++) {
        const mlxn_cpu_op *op = &mlxn_cpu_ops[ex->nodes[i].op];
        size_t b = op->shared ? op->shared(&ex->nodes[i], nth) : 0;
        if (!b) continue;
        if (!p->sh_off && !(p->sh_off = mlxn_calloc(ex->n_nodes, sizeof *p->sh_off)))
            return mlxn_err(MLXN_ERR_OUT_OF_MEMORY, "cpu: out of host memory");
        p->sh_off[i] = total + 1;
        total += (b + 63) & ~(size_t)63;
    }
    if (!total) return MLXN_OK;
    if (!(p->sh = aligned_alloc(64, total)))
        return mlxn_err(MLXN_ERR_OUT_OF_MEMORY, "cpu: cannot allocate %zu bytes of shared kernel state", total);
    memset(p->sh, 0, total);
    return MLXN_OK;
}

/* Matmuls of at most this many x rows stream their weights (decode). */
#define PF_MAX_XROWS 8

static bool pf_node(const mlxn_node *n) {
    return (n->op == MLXN_OP_MATMUL || n->op == MLXN_OP_MATMUL_MLX) && mlxn_tensor_rows(&n->t[1]) <= PF_MAX_XROWS;
}

/* Bytes a row of node n's weight streams (codes, scales, biases). */
static size_t pf_row_bytes(const mlxn_node *n) {
    size_t N = (size_t)n->t[2].shape[0], b = n->t[2].nbytes / N;
    if (n->op == MLXN_OP_MATMUL_MLX) b += (n->t[3].nbytes + n->t[4].nbytes) / N;
    return b;
}

/* The prefetch plan: for each group of one-row matmuls its chunks, the
 * budget (bytes, all parts together) shared by its first nodes; for every
 * group the next such group. MLXN_CPU_PREFETCH_KB=0: none.
 * Dev Zen 3 VM (2 threads, 512 KB L2 each), SmolLM2-135M decode with
 * prefetch on and off in alternate steps of one run (the VM's bandwidth
 * moves too much between runs): step time -0.8 / -2.4 / -3.6 / -2.7 % at
 * a budget of 128 / 256 / 512 / 1024 KB (Q4_1 GGUF); at 512 KB -3.3 %
 * (GGUF), -2.6 / -2.7 % (MLX 4-bit). */
static mlxn_status pf_build(const mlxn_exec *ex, int nth, cpu_plan *p) {
    const char *e = getenv("MLXN_CPU_PREFETCH_KB");
    size_t budget = (size_t)(e ? atol(e) : 512) << 10;
    if (!budget) return MLXN_OK;
    p->pf_next = mlxn_malloc(ex->n_groups * sizeof *p->pf_next);
    p->pf = mlxn_calloc(ex->n_groups, sizeof *p->pf);
    if (!p->pf_next || !p->pf) return mlxn_err(MLXN_ERR_OUT_OF_MEMORY, "cpu: out of host memory");
    int32_t next = -1;
    for (uint32_t g = ex->n_groups; g-- > 0;) {
        p->pf_next[g] = next;
        pf_group *pg = &p->pf[g];
        size_t left = budget;
        for (uint32_t i = ex->group_start[g]; i < ex->group_start[g + 1] && pg->nn < PF_NODES && left; i++) {
            const mlxn_node *n = &ex->nodes[i];
            if (!pf_node(n)) continue;
            size_t rb = pf_row_bytes(n), N = (size_t)n->t[2].shape[0];
            size_t rows = (4096 + rb - 1) / rb; /* ~4 KB a chunk */
            size_t part = (N + (size_t)nth - 1) / (size_t)nth + 16; /* rows of the largest part */
            size_t rounds = (part + rows - 1) / rows, afford = left / (rows * rb * (size_t)nth);
            if (rounds > afford) rounds = afford;
            if (!rounds) break;
            pg->node[pg->nn] = i, pg->rows[pg->nn] = (uint32_t)rows, pg->rounds[pg->nn] = (uint32_t)rounds;
            pg->nn++;
            left -= rounds * rows * rb * (size_t)nth;
        }
        if (pg->nn) next = (int32_t)g;
    }
    return MLXN_OK;
}

static void pf_range(const char *a, size_t n) {
    const char *end = a + n;
    for (a = (const char *)((uintptr_t)a & ~(uintptr_t)63); a < end; a += 64) __builtin_prefetch(a, 0, 3);
}

/* Prefetch the k-th chunk of group h's plan (any worker, any order);
 * false when the plan has no chunk k. */
static bool pf_chunk(const mlxn_exec *ex, const pf_group *pg, int nth, int k) {
    for (int q = 0; q < pg->nn; q++) {
        int c = (int)pg->rounds[q] * nth;
        if (k >= c) {
            k -= c;
            continue;
        }
        const mlxn_node *n = &ex->nodes[pg->node[q]];
        int64_t N = n->t[2].shape[0], lo, hi;
        mlxn_split((N + 15) / 16, k % nth, nth, &lo, &hi); /* the matmul's part: panels of 16 rows */
        lo *= 16;
        hi = hi * 16 < N ? hi * 16 : N;
        int64_t r0 = lo + (int64_t)(k / nth) * pg->rows[q], r1 = r0 + pg->rows[q] < hi ? r0 + pg->rows[q] : hi;
        if (r0 >= r1) return true;
        int streams = n->op == MLXN_OP_MATMUL_MLX ? 3 : 1;
        for (int t = 2; t < 2 + streams; t++) {
            size_t rb = n->t[t].nbytes / (size_t)N;
            pf_range((const char *)mlxn_tensor_data(&n->t[t]) + (size_t)r0 * rb, (size_t)(r1 - r0) * rb);
        }
        return true;
    }
    return false;
}

/* Whether group g (one producer) can run inside group g + 1. */
static bool fusable_group(const mlxn_exec *ex, uint32_t g) {
    if (g + 1 >= ex->n_groups || ex->group_start[g + 1] - ex->group_start[g] != 1) return false;
    const mlxn_node *p = &ex->nodes[ex->group_start[g]];
    if (!mlxn_cpu_pre_ok(p)) return false;
    const mlxn_tensor *x = p->op == MLXN_OP_ADD_RMS_NORM ? &p->t[1] : &p->t[0];
    for (uint32_t i = ex->group_start[g + 1]; i < ex->group_start[g + 2]; i++) {
        const mlxn_node *c = &ex->nodes[i];
        if (c->op != MLXN_OP_MATMUL && c->op != MLXN_OP_MATMUL_MLX) return false;
        const mlxn_tensor *cx = &c->t[1];
        if (cx->alloc != x->alloc || cx->offset != x->offset || cx->nbytes != x->nbytes) return false;
        /* the matmul's output must not touch the producer's tensors, which
         * another worker may still be reading or writing */
        for (int k = 0; k < p->n_slots; k++)
            if (p->t[k].alloc && mlxn_ranges_overlap(&c->t[0], &p->t[k])) return false;
    }
    return true;
}

static mlxn_status plan_build(const mlxn_exec *ex, int nth, cpu_plan **out) {
    *out = NULL;
    cpu_plan *p = mlxn_calloc(1, sizeof *p);
    uint8_t *pre = ex->n_groups ? mlxn_calloc(ex->n_groups, 1) : NULL;
    if (!p || (ex->n_groups && !pre)) {
        mlxn_free(p);
        mlxn_free(pre);
        return mlxn_err(MLXN_ERR_OUT_OF_MEMORY, "cpu: out of host memory");
    }
    p->pre = pre;
    mlxn_status st = pf_build(ex, nth, p);
    if (!st) st = sh_build(ex, nth, p);
    if (st) {
        plan_free(p);
        return st;
    }
    const char *e = getenv("MLXN_CPU_PREFUSE");
    for (uint32_t g = 0; g < ex->n_groups && !(e && *e == '0'); g++) {
        if (g && pre[g - 1]) continue; /* a consumer group is no producer */
        if (!fusable_group(ex, g)) continue;
        pre[g] = 1, p->fused++;
        size_t need = (2 * (size_t)mlxn_tensor_elems(&ex->nodes[ex->group_start[g]].t[0]) * sizeof(float) + 63) &
                      ~(size_t)63;
        if (need > p->xoff) p->xoff = need;
    }
    if (!p->fused && !p->pf && !p->sh) {
        plan_free(p);
        return MLXN_OK;
    }
    *out = p;
    return MLXN_OK;
}

typedef struct job {
    const mlxn_exec *ex;
    mlxn_threadpool *tp;
    int nth;
    void **scratch;
    _Atomic int *next; /* per group: the next item to take */
    _Atomic int *done; /* per group: items finished */
    _Atomic int *outs; /* per fused group: the next part of its producer's outputs to write */
    _Atomic int *pfk;  /* per group: its next prefetch chunk */
    const cpu_plan *plan;
} job;

static void run_job(void *arg, int tid) {
    job *j = arg;
    const mlxn_exec *ex = j->ex;
    const uint8_t *pre = j->plan ? j->plan->pre : NULL;
    const size_t *sh_off = j->plan ? j->plan->sh_off : NULL;
    mlxn_cpu_shared_area = NULL;
    float *x = j->scratch[tid]; /* a fused producer's whole row, this worker's own */
    char *scr = (char *)j->scratch[tid] + (j->plan ? j->plan->xoff : 0); /* the kernels' */
    for (uint32_t g = 0; g < ex->n_groups; g++) {
        if (pre && pre[g]) continue; /* runs inside group g + 1, no wait between */
        uint32_t first = ex->group_start[g], end = ex->group_start[g + 1];
        const int items = (int)(end - first) * j->nth;
        const bool fused = pre && g && pre[g - 1];
        int did = 0;
        for (;;) {
            int i = atomic_fetch_add_explicit(&j->next[g], 1, memory_order_relaxed);
            if (i >= items) break;
            if (fused && !did) {
                /* the producer's row once this worker holds an item (so it
                 * is waited for: nothing overwrites the row's inputs
                 * meanwhile), then whichever parts of the producer's
                 * outputs no worker has taken yet: a worker that takes no
                 * item writes none */
                const mlxn_node *p = &ex->nodes[first - 1];
                mlxn_cpu_pre_row(p, x);
                for (int o; (o = atomic_fetch_add_explicit(&j->outs[g], 1, memory_order_relaxed)) < j->nth;)
                    mlxn_cpu_pre_out(p, o, j->nth, x);
            }
            const uint32_t ni = first + (uint32_t)(i / j->nth);
            const mlxn_node *n = &ex->nodes[ni];
            if (sh_off) mlxn_cpu_shared_area = sh_off[ni] ? j->plan->sh + sh_off[ni] - 1 : NULL;
            if (fused) mlxn_cpu_matmul_x(n, i % j->nth, j->nth, scr, x);
            else mlxn_cpu_ops[n->op].run(n, i % j->nth, j->nth, scr);
            did++;
        }
        if (g + 1 == ex->n_groups) break;
        /* the next group starts when every item of this one is finished,
         * not when every worker has come: a worker that was descheduled
         * holding no item is not waited for */
        if (did) mlxn_tp_count_add(j->tp, &j->done[g], did);
        int32_t h = j->plan && j->plan->pf ? j->plan->pf_next[g] : -1;
        if (h >= 0) /* the bus is idle while this worker waits: the next matmuls' weights */
            while (atomic_load_explicit(&j->done[g], memory_order_relaxed) < items &&
                   pf_chunk(ex, &j->plan->pf[h], j->nth, atomic_fetch_add_explicit(&j->pfk[h], 1, memory_order_relaxed)))
                ;
        mlxn_tp_count_wait(j->tp, &j->done[g], items);
    }
}

static mlxn_status cpu_execute(mlxn_device *dev, mlxn_exec *ex, bool replay) {
    (void)replay;
    cpu_dev *c = dev->impl;
    int nth = mlxn_tp_size(c->tp);
    if (!ex->scratch_bytes) { /* first run of this schedule */
        size_t need_max = 0;
        for (uint32_t i = 0; i < ex->n_nodes; i++) {
            const mlxn_cpu_op *op = &mlxn_cpu_ops[ex->nodes[i].op];
            if (!op->run) return mlxn_err(MLXN_ERR_UNSUPPORTED, "cpu: no kernel for %s", mlxn_op_name(ex->nodes[i].op));
            size_t need = op->scratch ? op->scratch(&ex->nodes[i], nth) : 0;
            if (need > need_max) need_max = need;
        }
        plan_free(ex->backend_state);
        ex->backend_state = NULL;
        cpu_plan *plan = NULL;
        if (nth > 1 && ex->n_groups) {
            mlxn_status sp = plan_build(ex, nth, &plan);
            if (sp) return sp;
        }
        ex->backend_state = plan;
        ex->scratch_bytes = need_max + (plan ? plan->xoff : 0);
        if (!ex->scratch_bytes) ex->scratch_bytes = 64;
    }
    pthread_mutex_lock(&c->run_mu);
    if (ex->scratch_bytes > c->scratch_cap) {
        size_t cap = (ex->scratch_bytes + 4095) & ~(size_t)4095;
        for (int t = 0; t < nth; t++) {
            void *p = aligned_alloc(64, cap);
            if (!p) {
                pthread_mutex_unlock(&c->run_mu);
                return mlxn_err(MLXN_ERR_OUT_OF_MEMORY, "cpu: cannot allocate %zu bytes of kernel scratch", cap);
            }
            free(c->scratch[t]);
            c->scratch[t] = p;
        }
        c->scratch_cap = cap;
    }
    _Atomic int stack_next[4 * 64];
    _Atomic int *next = ex->n_groups <= 64 ? stack_next : mlxn_malloc(4 * ex->n_groups * sizeof(_Atomic int));
    if (!next) {
        pthread_mutex_unlock(&c->run_mu);
        return mlxn_err(MLXN_ERR_OUT_OF_MEMORY, "cpu: out of host memory");
    }
    for (uint32_t g = 0; g < 4 * ex->n_groups; g++) atomic_init(&next[g], 0);
    job j = {ex, c->tp, nth, c->scratch, next, next + ex->n_groups, next + 2 * ex->n_groups, next + 3 * ex->n_groups,
             ex->backend_state};
    ex->phases = ex->n_groups - (ex->backend_state ? ((const cpu_plan *)ex->backend_state)->fused : 0);
    mlxn_tp_run(c->tp, run_job, &j);
    if (next != stack_next) mlxn_free(next);
    pthread_mutex_unlock(&c->run_mu);
    return MLXN_OK;
}

static void cpu_exec_release(mlxn_device *dev, mlxn_exec *ex) {
    (void)dev;
    plan_free(ex->backend_state);
    ex->backend_state = NULL;
}

static mlxn_status cpu_wait(mlxn_device *dev, mlxn_exec *ex) {
    (void)dev;
    (void)ex;
    return MLXN_OK; /* execute ran to completion */
}

/* A fill split into one contiguous run of elements per worker (multiples of
 * 64 elements, so runs start on a cache line of the 64-byte-aligned
 * allocation). On the CPU the host generator is the device's own. */
typedef struct fill_job {
    char *dst;
    const mlxn_fill *f;
    size_t n, per;
} fill_job;

static void run_fill(void *arg, int tid) {
    fill_job *j = arg;
    size_t a = (size_t)tid * j->per, b = a + j->per < j->n ? a + j->per : j->n;
    if (a < b) mlxn_fill_host(j->dst + a * mlxn_fill_elem_bytes(j->f->kind), j->f, a, b - a);
}

static mlxn_status cpu_fill(mlxn_device *dev, void *dst, const mlxn_fill *f, size_t n) {
    cpu_dev *c = dev->impl;
    int nth = mlxn_tp_size(c->tp);
    fill_job j = {dst, f, n, ((n + (size_t)nth - 1) / (size_t)nth + 63) & ~(size_t)63};
    if (n < ((size_t)1 << 16) || nth == 1) { /* not worth waking the workers */
        mlxn_fill_host(dst, f, 0, n);
        return MLXN_OK;
    }
    pthread_mutex_lock(&c->run_mu);
    mlxn_tp_run(c->tp, run_fill, &j);
    pthread_mutex_unlock(&c->run_mu);
    return MLXN_OK;
}

static bool cpu_supports(mlxn_device *dev, const mlxn_node *n) {
    (void)dev;
    return mlxn_cpu_ops[n->op].run != NULL;
}

const mlxn_backend mlxn_backend_cpu = {
    .name = "cpu",
    .init = cpu_init,
    .shutdown = cpu_shutdown,
    .alloc = cpu_alloc,
    .free = cpu_free,
    .upload = cpu_copy,
    .download = cpu_copy,
    .fill = cpu_fill,
    .host_memory = true,
    .supports = cpu_supports,
    .execute = cpu_execute,
    .wait = cpu_wait,
    .exec_release = cpu_exec_release,
};
