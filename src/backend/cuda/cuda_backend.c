/*
 * cuda_backend.c — the CUDA backend's table: device memory (cudaMalloc,
 * never managed memory), host <-> device copies, and graph execution.
 *
 *  - A one-node exec that is not a replay (direct mode's submission) is
 *    launched straight onto the device's stream.
 *  - Any other exec becomes a cudaGraph, built as graph_mode() says: by
 *    default each node becomes a child graph added with exactly the exec's
 *    dependency edges (ex->deps); MLXN_CU_GRAPH=lanes / stream capture the
 *    nodes over a few streams / one stream with programmatic edges. The instantiated graph and the nodes'
 *    scratch live in ex->backend_state; a replay only calls cudaGraphLaunch
 *    (step values sit in device buffers, so nothing needs updating).
 *    Instantiated graphs are also cached per device by their exact content
 *    (nodes, addresses, shapes, params, edges): recording the same graph
 *    again (batched/optimized sessions, step after step) reuses it.
 *  - wait = cudaStreamSynchronize. Every CUDA failure becomes a status with
 *    "cuda: <call> failed: <reason>"; nothing aborts.
 */
#include "backend/backend.h"
#include "backend/cuda/cuda_internal.h"
#include "graph/graph.h"

#include <cuda_runtime_api.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

_Static_assert((int)CU_OP_COUNT == (int)MLXN_OP_COUNT, "cuda_internal.h op ids out of date");
_Static_assert((int)CU_OP_MATMUL_MLX == (int)MLXN_OP_MATMUL_MLX && (int)CU_OP_ATTENTION == (int)MLXN_OP_ATTENTION &&
                   (int)CU_OP_ARGMAX == (int)MLXN_OP_ARGMAX && (int)CU_OP_KV_WRITE == (int)MLXN_OP_KV_WRITE &&
                   (int)CU_OP_TOP_K == (int)MLXN_OP_TOP_K && (int)CU_OP_MATMUL_ID == (int)MLXN_OP_MATMUL_ID &&
                   (int)CU_OP_ROPE_KV_WRITE == (int)MLXN_OP_ROPE_KV_WRITE &&
                   (int)CU_OP_LOGSUMEXP == (int)MLXN_OP_LOGSUMEXP,
               "cuda_internal.h op ids out of order");
_Static_assert(CU_MAX_SLOTS == MLXN_MAX_SLOTS, "slot count");

/* An instantiated graph. Shared (refcounted) between the execs that use it
 * and the device's cache; `key` is what it was built from. */
typedef struct cuda_graph_state {
    cudaGraph_t graph;
    cudaGraphExec_t exec;
    void *scratch;
    size_t *scr_off; /* each node's scratch offset (plan_scratch) */
    void *epi;       /* the buffer of the norms run inside matmuls (cu_epi), one-stream capture */
    uint32_t n_epi;  /* such triples captured */
    atomic_int refs;
    uint64_t hash;
    void *key; /* the exec's flattened nodes and edges */
    size_t key_len;
    uint32_t kernels; /* kernel nodes in the graph (child graphs included) */
} cuda_graph_state;

/* Graph cache: a session that records the same graph every step (batched
 * and optimized modes) gets the graph instantiated at its first step: same
 * ops, device addresses, shapes and params and same edges make the same
 * launches, whatever the buffers hold. A few entries, least recent out. */
#define GRAPH_CACHE 8
#define CAPTURE_LANES 4
#define QSLOTS 32
_Static_assert(MLXN_QCOPY_MAX <= CU_QBYTES, "queued copies fit the put / get kernels");

typedef struct cuda_dev {
    int ordinal;
    cudaStream_t stream;  /* every launch and graph launch of this device */
    cudaStream_t capture; /* used only to capture nodes into graphs */
    cudaStream_t lanes[CAPTURE_LANES - 1]; /* more capture streams (lazily created) */
    void *scratch;        /* direct launches' scratch (stream-ordered reuse) */
    size_t scratch_cap;
    pthread_mutex_t mu; /* the cache */
    pthread_mutex_t up_mu; /* the staging buffers */
    void *stage[2];        /* pinned host staging for uploads (lazily; NULL: none) */
    cudaEvent_t stage_ev[2];
    int stage_state;       /* 0 not tried, 1 ready, -1 unavailable: plain cudaMemcpy */
    /* queued reads (a decode step's argmax): QSLOTS slots of MLXN_QCOPY_MAX
     * bytes of mapped pinned memory (qbuf; qdev its device address), each
     * with the event recorded after the kernel that fills it; free again
     * once its read was waited for */
    unsigned char *qbuf, *qdev;
    cudaEvent_t qev[QSLOTS];
    bool qread[QSLOTS]; /* holds a read not yet waited for */
    int qnext, qstate;  /* qstate: 0 not tried, 1 ready, -1 unavailable */
    cuda_graph_state *cache[GRAPH_CACHE]; /* most recent first */
    size_t free0; /* the driver's free device memory once the context stood (cuda_mem_taken) */
} cuda_dev;

static void graph_state_free(cuda_graph_state *g);

static mlxn_status cu_fail(cudaError_t e, const char *call) {
    cudaGetLastError(); /* clear a non-sticky error so the device stays usable */
    if (e == cudaErrorMemoryAllocation)
        return mlxn_err(MLXN_ERR_OUT_OF_MEMORY, "cuda: %s failed: %s", call, cudaGetErrorString(e));
    return mlxn_err(MLXN_ERR_DEVICE, "cuda: %s failed: %s", call, cudaGetErrorString(e));
}

#define CU_TRY(call)                                   \
    do {                                               \
        cudaError_t e_ = (call);                       \
        if (e_ != cudaSuccess) return cu_fail(e_, #call); \
    } while (0)

bool mlxn_cuda_available(void) {
    static int cached = -1;
    if (cached < 0) {
        int n = 0;
        cudaError_t e = cudaGetDeviceCount(&n);
        if (e != cudaSuccess) cudaGetLastError();
        cached = e == cudaSuccess && n > 0;
    }
    return cached == 1;
}

static mlxn_status cuda_init(mlxn_device *dev, const mlxn_device_options *o) {
    int n = 0;
    cudaError_t e = cudaGetDeviceCount(&n);
    if (e != cudaSuccess) {
        cudaGetLastError();
        return mlxn_err(MLXN_ERR_NOT_FOUND, "cuda: no usable device: cudaGetDeviceCount failed: %s",
                        cudaGetErrorString(e));
    }
    if (o->cuda_ordinal < 0 || o->cuda_ordinal >= n)
        return mlxn_err(MLXN_ERR_NOT_FOUND, "cuda: device %d asked for, %d present", o->cuda_ordinal, n);
    CU_TRY(cudaSetDevice(o->cuda_ordinal));
    size_t free0 = 0, total = 0;
    CU_TRY(cudaMemGetInfo(&free0, &total)); /* the context is made by now */
    struct cudaDeviceProp prop;
    CU_TRY(cudaGetDeviceProperties(&prop, o->cuda_ordinal));
    cuda_dev *c = mlxn_calloc(1, sizeof *c);
    if (!c) return mlxn_err(MLXN_ERR_OUT_OF_MEMORY, "cuda: out of host memory");
    c->ordinal = o->cuda_ordinal;
    c->free0 = free0;
    e = cudaStreamCreateWithFlags(&c->stream, cudaStreamNonBlocking);
    if (e == cudaSuccess) e = cudaStreamCreateWithFlags(&c->capture, cudaStreamNonBlocking);
    if (e != cudaSuccess) {
        if (c->stream) cudaStreamDestroy(c->stream);
        mlxn_free(c);
        return cu_fail(e, "cudaStreamCreateWithFlags");
    }
    char msg[200];
    if (mlxn_cu_blas_init(c->ordinal, msg, sizeof msg)) {
        cudaStreamDestroy(c->capture);
        cudaStreamDestroy(c->stream);
        mlxn_free(c);
        return mlxn_err(MLXN_ERR_DEVICE, "%s", msg);
    }
    pthread_mutex_init(&c->mu, NULL);
    pthread_mutex_init(&c->up_mu, NULL);
    dev->impl = c;
    dev->n_threads = 1;
    snprintf(dev->desc, sizeof dev->desc, "cuda: %.100s (sm_%d%d, %d SMs, %.0f GiB)", prop.name, prop.major,
             prop.minor, prop.multiProcessorCount, (double)prop.totalGlobalMem / (1024.0 * 1024.0 * 1024.0));
    return MLXN_OK;
}

static void prof_print(void);

static void cuda_shutdown(mlxn_device *dev) {
    cuda_dev *c = dev->impl;
    cudaStreamSynchronize(c->stream);
    prof_print();
    for (int i = 0; i < GRAPH_CACHE; i++) graph_state_free(c->cache[i]);
    pthread_mutex_destroy(&c->mu);
    pthread_mutex_destroy(&c->up_mu);
    for (int i = 0; i < 2; i++) {
        if (c->stage[i]) cudaFreeHost(c->stage[i]);
        if (c->stage_ev[i]) cudaEventDestroy(c->stage_ev[i]);
    }
    for (int i = 0; i < QSLOTS; i++)
        if (c->qev[i]) cudaEventDestroy(c->qev[i]);
    if (c->qbuf) cudaFreeHost(c->qbuf);
    if (c->scratch) cudaFree(c->scratch);
    for (int i = 0; i < CAPTURE_LANES - 1; i++)
        if (c->lanes[i]) cudaStreamDestroy(c->lanes[i]);
    mlxn_cu_blas_release(c->ordinal);
    cudaStreamDestroy(c->capture);
    cudaStreamDestroy(c->stream);
    cudaGetLastError();
    mlxn_free(c);
}

static mlxn_status cuda_alloc(mlxn_device *dev, size_t size, void **out) {
    cuda_dev *c = dev->impl;
    CU_TRY(cudaSetDevice(c->ordinal));
    void *p = NULL;
    cudaError_t e = cudaMalloc(&p, size);
    if (e != cudaSuccess) {
        cudaGetLastError();
        if (e == cudaErrorMemoryAllocation)
            return mlxn_err(MLXN_ERR_OUT_OF_MEMORY, "cuda: cudaMalloc(%zu bytes) failed: %s", size,
                            cudaGetErrorString(e));
        return mlxn_err(MLXN_ERR_DEVICE, "cuda: cudaMalloc(%zu bytes) failed: %s", size, cudaGetErrorString(e));
    }
    *out = p;
    return MLXN_OK;
}

static void cuda_free(mlxn_device *dev, void *p) {
    (void)dev;
    if (p && cudaFree(p) != cudaSuccess) cudaGetLastError();
}

/* Uploads of 1 MiB or more (weights) go through two pinned staging buffers
 * of STAGE_BYTES: the host copies chunk i+1 (reading the mmapped file)
 * while the copy engine moves chunk i, on the device's stream (so after any
 * work queued before it); the call returns when all of it has landed, like
 * cudaMemcpy. Where pinned memory cannot be had (or MLXN_CU_PINNED=0) the
 * upload is one cudaMemcpy from pageable memory. */
#define STAGE_BYTES ((size_t)16 << 20)

static bool stage_ready(cuda_dev *c) {
    if (c->stage_state == 0) {
        const char *e = getenv("MLXN_CU_PINNED");
        bool ok = !(e && *e == '0');
        for (int i = 0; i < 2 && ok; i++) {
            ok = cudaHostAlloc(&c->stage[i], STAGE_BYTES, cudaHostAllocDefault) == cudaSuccess &&
                 cudaEventCreateWithFlags(&c->stage_ev[i], cudaEventDisableTiming) == cudaSuccess;
        }
        if (!ok) {
            cudaGetLastError();
            for (int i = 0; i < 2; i++) {
                if (c->stage[i]) cudaFreeHost(c->stage[i]);
                if (c->stage_ev[i]) cudaEventDestroy(c->stage_ev[i]);
                c->stage[i] = NULL;
                c->stage_ev[i] = NULL;
            }
            cudaGetLastError();
        }
        c->stage_state = ok ? 1 : -1;
    }
    return c->stage_state == 1;
}

static mlxn_status staged_upload(cuda_dev *c, char *dst, const char *src, size_t n) {
    bool used[2] = {false, false};
    int k = 0;
    for (size_t off = 0; off < n; off += STAGE_BYTES, k ^= 1) {
        size_t len = n - off < STAGE_BYTES ? n - off : STAGE_BYTES;
        if (used[k]) CU_TRY(cudaEventSynchronize(c->stage_ev[k]));
        memcpy(c->stage[k], src + off, len);
        CU_TRY(cudaMemcpyAsync(dst + off, c->stage[k], len, cudaMemcpyHostToDevice, c->stream));
        CU_TRY(cudaEventRecord(c->stage_ev[k], c->stream));
        used[k] = true;
    }
    CU_TRY(cudaStreamSynchronize(c->stream));
    return MLXN_OK;
}

static mlxn_status cuda_upload(mlxn_device *dev, void *dst, const void *src, size_t n) {
    cuda_dev *c = dev->impl;
    if (!n) return MLXN_OK;
    CU_TRY(cudaSetDevice(c->ordinal));
    if (n >= ((size_t)1 << 20)) {
        pthread_mutex_lock(&c->up_mu);
        mlxn_status st = MLXN_OK;
        bool staged = stage_ready(c);
        if (staged) st = staged_upload(c, dst, src, n);
        pthread_mutex_unlock(&c->up_mu);
        if (staged) return st;
    }
    /* on the device's stream, waited for: after the work queued before it,
     * and done when this returns (a plain cudaMemcpy from pageable memory
     * may return before its DMA lands, and the legacy stream it uses does
     * not order against our non-blocking streams) */
    CU_TRY(cudaMemcpyAsync(dst, src, n, cudaMemcpyHostToDevice, c->stream));
    CU_TRY(cudaStreamSynchronize(c->stream));
    return MLXN_OK;
}

/* The queued reads' slots, made on first use; false when mapped pinned
 * memory or events cannot be had. */
static bool qslots_ready(cuda_dev *c) {
    if (c->qstate == 0) {
        bool ok = cudaHostAlloc((void **)&c->qbuf, (size_t)QSLOTS * MLXN_QCOPY_MAX, cudaHostAllocMapped) ==
                      cudaSuccess &&
                  cudaHostGetDevicePointer((void **)&c->qdev, c->qbuf, 0) == cudaSuccess;
        for (int i = 0; i < QSLOTS && ok; i++)
            ok = cudaEventCreateWithFlags(&c->qev[i], cudaEventDisableTiming) == cudaSuccess;
        if (!ok) {
            for (int i = 0; i < QSLOTS; i++) {
                if (c->qev[i]) cudaEventDestroy(c->qev[i]);
                c->qev[i] = NULL;
            }
            if (c->qbuf) cudaFreeHost(c->qbuf);
            c->qbuf = c->qdev = NULL;
        }
        cudaGetLastError();
        c->qstate = ok ? 1 : -1;
    }
    return c->qstate == 1;
}

/* A queued upload: the bytes travel in a one-block kernel's arguments, on
 * the stream, so src may be reused at once and no copy-engine hand-off
 * sits between two decode steps (H100, pipelined tg128: with
 * cudaMemcpyAsync for these copies 8B 512.1-513.1 and the 135M shape
 * 1856-1870 tok/s, with the kernels 514.4 and 1876-1888; bench/RESULTS.md). */
static mlxn_status cuda_upload_queued(mlxn_device *dev, void *dst, const void *src, size_t n) {
    cuda_dev *c = dev->impl;
    if (!n) return MLXN_OK;
    if (n > MLXN_QCOPY_MAX) return cuda_upload(dev, dst, src, n);
    CU_TRY(cudaSetDevice(c->ordinal));
    CU_TRY(mlxn_cu_put_bytes(dst, src, n, c->stream));
    return MLXN_OK;
}

/* A queued read: a one-block kernel stores the bytes into a slot of mapped
 * pinned memory, an event after it; read_wait waits for the event. */
static mlxn_status cuda_read_queued(mlxn_device *dev, const void *src, size_t n, int *slot) {
    cuda_dev *c = dev->impl;
    *slot = -1;
    if (n > MLXN_QCOPY_MAX) return mlxn_err(MLXN_ERR_RANGE, "cuda: a queued read of %zu bytes", n);
    CU_TRY(cudaSetDevice(c->ordinal));
    pthread_mutex_lock(&c->up_mu);
    mlxn_status st = MLXN_OK;
    int i = -1;
    if (!qslots_ready(c)) st = mlxn_err(MLXN_ERR_DEVICE, "cuda: no mapped pinned memory for queued reads");
    for (int k = 0, j; k < QSLOTS && !st && i < 0; k++)
        if (!c->qread[j = (c->qnext + k) % QSLOTS]) i = j;
    if (!st && i < 0)
        st = mlxn_err(MLXN_ERR_STATE, "cuda: %d queued reads not waited for; wait for one first", QSLOTS);
    if (!st) {
        cudaError_t e = mlxn_cu_get_bytes(c->qdev + (size_t)i * MLXN_QCOPY_MAX, src, n, c->stream);
        if (e == cudaSuccess) e = cudaEventRecord(c->qev[i], c->stream);
        if (e != cudaSuccess) {
            st = cu_fail(e, "queued read");
        } else {
            c->qread[i] = true;
            c->qnext = (i + 1) % QSLOTS;
            *slot = i;
        }
    }
    pthread_mutex_unlock(&c->up_mu);
    return st;
}

static mlxn_status cuda_read_wait(mlxn_device *dev, int slot, void *dst, size_t n) {
    cuda_dev *c = dev->impl;
    if (slot < 0 || slot >= QSLOTS || !c->qread[slot] || n > MLXN_QCOPY_MAX)
        return mlxn_err(MLXN_ERR_STATE, "cuda: no queued read in slot %d", slot);
    cudaError_t e = cudaEventSynchronize(c->qev[slot]);
    pthread_mutex_lock(&c->up_mu);
    if (e == cudaSuccess) {
        const volatile unsigned char *p = c->qbuf + (size_t)slot * MLXN_QCOPY_MAX;
        for (size_t k = 0; k < n; k++) ((unsigned char *)dst)[k] = p[k];
    }
    c->qread[slot] = false;
    pthread_mutex_unlock(&c->up_mu);
    return e == cudaSuccess ? MLXN_OK : cu_fail(e, "cudaEventSynchronize (queued read)");
}

static mlxn_status cuda_download(mlxn_device *dev, void *dst, const void *src, size_t n) {
    cuda_dev *c = dev->impl;
    if (!n) return MLXN_OK;
    CU_TRY(cudaSetDevice(c->ordinal));
    CU_TRY(cudaMemcpyAsync(dst, src, n, cudaMemcpyDeviceToHost, c->stream));
    CU_TRY(cudaStreamSynchronize(c->stream));
    return MLXN_OK;
}

/* Random fills (synthetic weights) are made here, on the device's stream
 * (after any work queued before); waited for so that a failure is this
 * call's and load times count the work. */
static mlxn_status cuda_fill(mlxn_device *dev, void *dst, const mlxn_fill *f, size_t n) {
    cuda_dev *c = dev->impl;
    if (!n) return MLXN_OK;
    CU_TRY(cudaSetDevice(c->ordinal));
    CU_TRY(mlxn_cu_fill(dst, f, n, c->stream));
    CU_TRY(cudaStreamSynchronize(c->stream));
    return MLXN_OK;
}

static void to_cu(const mlxn_node *n, cu_node *o) {
    memset(o, 0, sizeof *o);
    o->op = (int)n->op;
    o->n_slots = n->n_slots;
    for (int i = 0; i < n->n_slots; i++) {
        const mlxn_tensor *t = &n->t[i];
        cu_tensor *d = &o->t[i];
        if (!t->alloc) continue;
        d->data = mlxn_tensor_data(t);
        d->dtype = (int)t->dtype;
        d->ndim = t->ndim;
        for (int k = 0; k < MLXN_MAX_DIMS; k++) d->shape[k] = t->shape[k];
        d->elems = mlxn_tensor_elems(t);
        d->rows = mlxn_tensor_rows(t);
        d->cols = mlxn_tensor_cols(t);
        d->nbytes = t->nbytes;
    }
    o->f32_act = (n->flags & MLXN_NODE_F32_ACT) != 0;
    switch (n->op) {
    case MLXN_OP_SCALE:
    case MLXN_OP_SOFTCAP:
    case MLXN_OP_GELU:
    case MLXN_OP_SILU:
        o->f = n->p.u.f;
        o->mode = n->p.u.mode;
        break;
    case MLXN_OP_RMS_NORM:
    case MLXN_OP_ADD_RMS_NORM:
    case MLXN_OP_LAYER_NORM: o->eps = n->p.norm.eps; break;
    case MLXN_OP_SOFTMAX: o->softmax_scale = n->p.softmax.scale; break;
    case MLXN_OP_MATMUL_MLX:
    case MLXN_OP_GET_ROWS_MLX: o->mlx = n->p.mlx; break;
    case MLXN_OP_ROPE:
    case MLXN_OP_ROPE_KV_WRITE: o->rope = n->p.rope; break;
    case MLXN_OP_TOP_K: o->topk = n->p.topk.k; break;
    case MLXN_OP_LOGSUMEXP: o->lse_scale = n->p.lse.scale; break;
    case MLXN_OP_MATMUL_ID:
        o->mid_top_k = n->p.mid.top_k;
        o->mid_x_per_slot = n->p.mid.x_per_slot;
        break;
    case MLXN_OP_ATTENTION: o->attn = n->p.attn; break;
    default: break;
    }
}

static bool cuda_supports(mlxn_device *dev, const mlxn_node *n) {
    (void)dev;
    cu_node c;
    to_cu(n, &c);
    return mlxn_cu_supports(&c);
}

static bool unwritten(const mlxn_exec *ex, const cu_tensor *t);

/* An attention node of ex reads its positions before its wait when no node
 * of ex writes them. MLXN_CU_ATT_EARLY=0: never (measuring). */
static void set_pos_early(cu_node *c, const mlxn_exec *ex) {
    static int att_early = -1;
    if (att_early < 0) att_early = mlxn_cu_env_flag("MLXN_CU_ATT_EARLY", 1);
    if (ex && c->op == CU_OP_ATTENTION) c->pos_early = att_early && unwritten(ex, &c->t[4]);
}

/* ex (optional): the graph the node is captured into, for what its kernel
 * may read before its programmatic-launch wait. */
static mlxn_status launch_node_in(const mlxn_node *n, void *scratch, cudaStream_t s, const mlxn_exec *ex) {
    cu_node c;
    to_cu(n, &c);
    set_pos_early(&c, ex);
    cudaError_t e = mlxn_cu_launch(&c, scratch, s);
    if (e != cudaSuccess) {
        cudaGetLastError();
        return mlxn_err(e == cudaErrorMemoryAllocation ? MLXN_ERR_OUT_OF_MEMORY : MLXN_ERR_DEVICE,
                        "cuda: launching %s (node %u) failed: %s", mlxn_op_name(n->op), n->id, cudaGetErrorString(e));
    }
    return MLXN_OK;
}
static mlxn_status launch_node(const mlxn_node *n, void *scratch, cudaStream_t s) {
    return launch_node_in(n, scratch, s, NULL);
}

static size_t node_scratch(const mlxn_node *n) {
    cu_node c;
    to_cu(n, &c);
    return (mlxn_cu_scratch_bytes(&c) + 255) & ~(size_t)255;
}

/* Drop one reference; the last one destroys the graph. */
static void graph_state_free(cuda_graph_state *g) {
    if (!g || atomic_fetch_sub(&g->refs, 1) > 1) return;
    mlxn_free(g->key);
    mlxn_free(g->scr_off);
    if (g->exec) cudaGraphExecDestroy(g->exec);
    if (g->graph) cudaGraphDestroy(g->graph);
    if (g->scratch) cudaFree(g->scratch);
    if (g->epi) cudaFree(g->epi);
    cudaGetLastError();
    mlxn_free(g);
}

/* Capture node i into a child graph and add it to g->graph after deps. */
static mlxn_status add_node(cuda_dev *c, cuda_graph_state *g, const mlxn_node *n, void *scratch,
                            const cudaGraphNode_t *deps, size_t ndeps, cudaGraphNode_t *out) {
    CU_TRY(cudaStreamBeginCapture(c->capture, cudaStreamCaptureModeThreadLocal));
    mlxn_status st = launch_node(n, scratch, c->capture);
    cudaGraph_t child = NULL;
    cudaError_t e = cudaStreamEndCapture(c->capture, &child);
    if (st) {
        if (child) cudaGraphDestroy(child);
        return st;
    }
    if (e != cudaSuccess) return cu_fail(e, "cudaStreamEndCapture");
    size_t cnt = 0;
    e = cudaGraphGetNodes(child, NULL, &cnt);
    if (e == cudaSuccess) {
        if (cnt == 0) e = cudaGraphAddEmptyNode(out, g->graph, deps, ndeps);
        else e = cudaGraphAddChildGraphNode(out, g->graph, deps, ndeps, child);
    }
    cudaGraphDestroy(child);
    if (e != cudaSuccess) return cu_fail(e, "cudaGraphAddChildGraphNode");
    return MLXN_OK;
}

/* How a graph is built from an exec (MLXN_CU_GRAPH):
 *  - "stream" (the default): the nodes are captured in order (a topological
 *    order) into one stream; consecutive kernels get programmatic edges, so
 *    each one's blocks are resident before the one before it ends (kernels
 *    trigger first, cu_pdl_enter) and the M = 1 matmuls load weights before
 *    they wait. Independent nodes no longer overlap; the small independent
 *    rope / kv_write nodes of a layer go out as one launch (group_run).
 *  - "dag": each node becomes a child graph added with exactly the exec's
 *    dependency edges (independent nodes overlap; full edges between nodes).
 *  - "lanes": captured over up to CAPTURE_LANES streams. A node goes on the
 *    stream whose last node it depends on (a programmatic edge from it), else
 *    on an unused stream, else on the stream whose last node is oldest; its
 *    other dependencies become event waits (full edges).
 *  Measured on an H100 (bench/RESULTS.md, synthetic 8B 4-bit decode, with
 *  trigger-first kernels): stream 403 tok/s, lanes 393, dag 386. */
enum { GRAPH_DAG, GRAPH_STREAM, GRAPH_LANES };
static int graph_mode(void) {
    static int m = -1;
    if (m < 0) {
        const char *e = getenv("MLXN_CU_GRAPH");
        if (e && !strcmp(e, "dag")) m = GRAPH_DAG;
        else if (e && !strcmp(e, "stream")) m = GRAPH_STREAM;
        else if (e && !strcmp(e, "lanes")) m = GRAPH_LANES;
        else m = GRAPH_STREAM;
    }
    return m;
}

/* One-stream capture: how many nodes from i on form a launch group (1 =
 * none): consecutive decode-sized rope / rope_kv_write / kv_write nodes, none
 * depending on another of the run (their other inputs come before them on
 * the stream). MLXN_CU_GROUP=0 turns grouping off; so does MLXN_CU_SKIP. */
#define GROUP_MAX 4
static uint32_t group_run(const mlxn_exec *ex, uint32_t i) {
    static int on = -1;
    if (on < 0) {
        const char *e = getenv("MLXN_CU_GROUP"), *k = getenv("MLXN_CU_SKIP");
        on = !(e && *e == '0') && !(k && *k);
    }
    if (!on) return 1;
    uint32_t j = i;
    for (; j < ex->n_nodes && j - i < GROUP_MAX; j++) {
        cu_node cn;
        to_cu(&ex->nodes[j], &cn);
        if (!mlxn_cu_groupable(&cn)) break;
        bool dep = false;
        for (uint32_t d = ex->dep_start[j]; d < ex->dep_start[j + 1]; d++)
            if (ex->deps[d] >= i && ex->deps[d] < j) dep = true;
        if (dep) break;
    }
    return j > i ? j - i : 1;
}

/* Whether node k of ex depends on node j directly. */
static bool depends_on(const mlxn_exec *ex, uint32_t k, uint32_t j) {
    for (uint32_t d = ex->dep_start[k]; d < ex->dep_start[k + 1]; d++)
        if (ex->deps[d] == j) return true;
    return false;
}

/* One-stream capture: whether node i (a one-row norm, silu_mul or decode
 * attention) and node i + 1 (the one-row integer-path matmul of its output)
 * go out as the fused pair (mlxn_cu_launch_fused). MLXN_CU_FUSE=0 turns this
 * off; so does MLXN_CU_SKIP. */
static bool fuse_pair(const mlxn_exec *ex, uint32_t i, bool have_scratch) {
    static int on = -1;
    if (on < 0) {
        const char *e = getenv("MLXN_CU_FUSE"), *k = getenv("MLXN_CU_SKIP");
        on = !(e && *e == '0') && !(k && *k);
    }
    if (!on || !have_scratch || i + 1 >= ex->n_nodes || !node_scratch(&ex->nodes[i + 1])) return false;
    if (!depends_on(ex, i + 1, i)) return false;
    cu_node a, b;
    to_cu(&ex->nodes[i], &a);
    to_cu(&ex->nodes[i + 1], &b);
    return mlxn_cu_fusable(&a, &b);
}

/* One-stream capture: whether node j (a one-row matmul taken as the second
 * half of a fused pair), the add_rms_norm after it and the matmul after that
 * run as a cu_epi triple: the norm inside the two matmul kernels
 * (mlxn_cu_epi_ok). nm, mm2 receive the two nodes; e points at them. */
static bool epi_triple(const mlxn_exec *ex, uint32_t j, cuda_graph_state *g, cu_node *nm, cu_node *mm2,
                       cu_epi *e) {
    if (!g->epi || j + 2 >= ex->n_nodes || !depends_on(ex, j + 1, j) || !depends_on(ex, j + 2, j + 1)) return false;
    cu_node mm1;
    to_cu(&ex->nodes[j], &mm1);
    to_cu(&ex->nodes[j + 1], nm);
    to_cu(&ex->nodes[j + 2], mm2);
    if (!mlxn_cu_epi_ok(&mm1, nm, mm2)) return false;
    static int cap = -2; /* MLXN_CU_EPI_MAX: at most this many triples a graph (debugging) */
    if (cap == -2) {
        const char *v = getenv("MLXN_CU_EPI_MAX");
        cap = v && *v ? atoi(v) : -1;
    }
    if (cap >= 0 && g->n_epi >= (uint32_t)cap) return false;
    g->n_epi++;
    e->norm = nm;
    e->mm2 = mm2;
    e->buf = g->epi;
    return true;
}

/* Whether no node of ex writes bytes of t: a norm's weight, or rope's
 * positions and frequency factors, which a kernel may then read before its
 * programmatic-launch wait (host uploads precede the graph on the stream).
 * MLXN_CU_WPRE=0: never (measuring). */
static bool unwritten(const mlxn_exec *ex, const cu_tensor *t) {
    static int on = -1;
    if (on < 0) on = mlxn_cu_env_flag("MLXN_CU_WPRE", 1);
    if (!on || !t->data) return false;
    const char *a = (const char *)t->data;
    for (uint32_t k = 0; k < ex->n_nodes; k++) {
        const mlxn_node *n = &ex->nodes[k];
        for (int o = 0; o < n->n_out; o++) {
            const mlxn_tensor *u = &n->t[o];
            if (!u->alloc) continue;
            const char *b = (const char *)mlxn_tensor_data(u);
            if (a < b + u->nbytes && b < a + t->nbytes) return false;
        }
    }
    return true;
}

static mlxn_status launch_group(const mlxn_exec *ex, uint32_t i, uint32_t cnt, cudaStream_t s) {
    cu_node cn[GROUP_MAX];
    for (uint32_t k = 0; k < cnt; k++) to_cu(&ex->nodes[i + k], &cn[k]);
    bool early = true; /* positions and frequency factors written by no node */
    for (uint32_t k = 0; k < cnt && early; k++) {
        if (!unwritten(ex, &cn[k].t[2])) early = false;
        if (cn[k].op != CU_OP_KV_WRITE && cn[k].t[3].data && !unwritten(ex, &cn[k].t[3])) early = false;
    }
    cudaError_t e = mlxn_cu_launch_group(cn, (int)cnt, s, early);
    if (e != cudaSuccess) {
        cudaGetLastError();
        return mlxn_err(MLXN_ERR_DEVICE, "cuda: launching %u rope / kv_write nodes from node %u failed: %s", cnt,
                        ex->nodes[i].id, cudaGetErrorString(e));
    }
    return MLXN_OK;
}

/* One-stream capture: the launch group of cnt nodes from i (rope of q,
 * rope_kv_write of k, kv_write of v) and the attention right after it as one
 * kernel (mlxn_cu_launch_rope_attention), with the one-row matmul after that
 * as its fused pair where fuse_pair allows. *taken: nodes launched (0:
 * the pattern is not there; nothing launched). */
static mlxn_status launch_rope_att(const mlxn_exec *ex, uint32_t i, uint32_t cnt, cuda_graph_state *g,
                                   const size_t *off, cudaStream_t s, uint32_t *taken) {
    *taken = 0;
    uint32_t ia = i + cnt;
    if (cnt < 2 || cnt > GROUP_MAX || ia >= ex->n_nodes) return MLXN_OK;
    cu_node gn[GROUP_MAX], an;
    for (uint32_t k = 0; k < cnt; k++) to_cu(&ex->nodes[i + k], &gn[k]);
    to_cu(&ex->nodes[ia], &an);
    if (an.op != CU_OP_ATTENTION || !mlxn_cu_rope_attention_ok(gn, (int)cnt, &an)) return MLXN_OK;
    set_pos_early(&an, ex);
    for (uint32_t k = 0; k < cnt; k++) /* the frequency factors are read early too */
        if (gn[k].op != CU_OP_KV_WRITE && gn[k].t[3].data && !unwritten(ex, &gn[k].t[3])) an.pos_early = false;
    bool pair = fuse_pair(ex, ia, g->scratch != NULL);
    cu_node mm, nm, mm2;
    cu_epi epi;
    static int att_epi = -1; /* MLXN_CU_EPI_ATT=0: not after decode attention (measuring) */
    if (att_epi < 0) att_epi = mlxn_cu_env_flag("MLXN_CU_EPI_ATT", 1);
    bool tri = pair && att_epi && epi_triple(ex, ia + 1, g, &nm, &mm2, &epi);
    uint8_t *xq = NULL;
    float *y = NULL;
    int64_t N = 0;
    int xl = XL_NONE;
    if (pair) {
        to_cu(&ex->nodes[ia + 1], &mm);
        xl = mlxn_cu_mm_xlayout(&mm);
        xq = (uint8_t *)g->scratch + off[ia + 1];
        if (mlxn_cu_xl_zeroes(xl)) { /* k_mlx4g / k_q4kg add into y: zeroed first */
            y = (float *)mm.t[0].data;
            N = mm.t[2].shape[0];
        }
    }
    cudaError_t e = mlxn_cu_launch_rope_attention(gn, (int)cnt, &an, xl, xq, y, N, s);
    if (e == cudaSuccess && pair) e = mlxn_cu_launch_mm_ready(&mm, xq, s, tri ? &epi : NULL);
    if (e != cudaSuccess) {
        cudaGetLastError();
        return mlxn_err(MLXN_ERR_DEVICE, "cuda: launching nodes %u..%u (rope, attention%s) as one failed: %s",
                        ex->nodes[i].id, ex->nodes[ia + pair + 2 * tri].id,
                        tri ? ", matmul, norm, matmul" : pair ? ", matmul" : "", cudaGetErrorString(e));
    }
    *taken = cnt + 1 + pair + 2 * tri;
    return MLXN_OK;
}

static mlxn_status capture_lanes(cuda_dev *c, mlxn_exec *ex, cuda_graph_state *g, const size_t *off, int nl) {
    uint32_t n = ex->n_nodes;
    for (int k = 0; k < nl - 1; k++)
        if (!c->lanes[k]) CU_TRY(cudaStreamCreateWithFlags(&c->lanes[k], cudaStreamNonBlocking));
    cudaEvent_t *ev = mlxn_calloc(n + 1, sizeof *ev);
    int *lane_of = mlxn_calloc(n ? n : 1, sizeof *lane_of);
    if (!ev || !lane_of) {
        mlxn_free(ev);
        mlxn_free(lane_of);
        return mlxn_err(MLXN_ERR_OUT_OF_MEMORY, "cuda: out of host memory capturing a graph");
    }
    mlxn_status st = MLXN_OK;
    cudaError_t e = cudaSuccess;
    uint32_t made = 0;
    if (nl > 1) /* one event after each node, one for the fork */
        for (; made <= n; made++)
            if ((e = cudaEventCreateWithFlags(&ev[made], cudaEventDisableTiming)) != cudaSuccess) break;
    if (e != cudaSuccess) {
        st = cu_fail(e, "cudaEventCreate");
        goto out;
    }
    cudaStream_t ls[CAPTURE_LANES];
    ls[0] = c->capture;
    for (int k = 1; k < nl; k++) ls[k] = c->lanes[k - 1];
    int64_t tail[CAPTURE_LANES];
    bool joined[CAPTURE_LANES] = {true};
    for (int k = 0; k < nl; k++) tail[k] = -1;
    e = cudaStreamBeginCapture(ls[0], cudaStreamCaptureModeThreadLocal);
    if (e != cudaSuccess) {
        st = cu_fail(e, "cudaStreamBeginCapture");
        goto out;
    }
    if (nl > 1) e = cudaEventRecord(ev[n], ls[0]); /* the fork point for lanes joining the capture */
    for (uint32_t i = 0; i < n && !st && e == cudaSuccess; i++) {
        int pick = -1;
        int64_t best = -1;
        for (uint32_t d = ex->dep_start[i]; d < ex->dep_start[i + 1]; d++) {
            int64_t j = ex->deps[d];
            int k = lane_of[j];
            if (tail[k] == j && j > best) best = j, pick = k;
        }
        if (pick < 0)
            for (int k = 0; k < nl; k++)
                if (tail[k] < 0) { pick = k; break; }
        if (pick < 0) {
            pick = 0;
            for (int k = 1; k < nl; k++)
                if (tail[k] < tail[pick]) pick = k;
        }
        if (!joined[pick]) {
            e = cudaStreamWaitEvent(ls[pick], ev[n], 0);
            joined[pick] = true;
        }
        for (uint32_t d = ex->dep_start[i]; d < ex->dep_start[i + 1] && e == cudaSuccess; d++) {
            uint32_t j = ex->deps[d];
            if (lane_of[j] != pick) e = cudaStreamWaitEvent(ls[pick], ev[j], 0);
        }
        if (e != cudaSuccess) break;
        uint32_t cnt = nl == 1 ? group_run(ex, i) : 1, took = 0;
        if (cnt > 1) st = launch_rope_att(ex, i, cnt, g, off, ls[pick], &took);
        if (st) break;
        if (took) {
            for (uint32_t k = 1; k < took; k++) lane_of[i + k] = pick;
            i += took - 1;
        } else if (nl == 1 && cnt == 1 && fuse_pair(ex, i, g->scratch != NULL)) {
            cu_node pm[2];
            to_cu(&ex->nodes[i], &pm[0]);
            to_cu(&ex->nodes[i + 1], &pm[1]);
            set_pos_early(&pm[0], ex);
            const cu_tensor *nw = pm[0].op == CU_OP_RMS_NORM        ? &pm[0].t[2]
                                  : pm[0].op == CU_OP_ADD_RMS_NORM ? &pm[0].t[4]
                                                                   : NULL;
            cu_node nm, mm2;
            cu_epi epi;
            bool tri = nl == 1 && epi_triple(ex, i + 1, g, &nm, &mm2, &epi);
            cudaError_t ef = mlxn_cu_launch_fused(&pm[0], &pm[1], (char *)g->scratch + off[i + 1], ls[pick],
                                                  nw && unwritten(ex, nw), tri ? &epi : NULL);
            if (ef != cudaSuccess) {
                cudaGetLastError();
                st = mlxn_err(MLXN_ERR_DEVICE, "cuda: launching nodes %u..%u as one failed: %s", ex->nodes[i].id,
                              ex->nodes[i + 1 + 2 * tri].id, cudaGetErrorString(ef));
            }
            for (uint32_t k = 0; k < 1u + 2u * tri; k++) lane_of[i++] = pick;
        } else if (cnt > 1) {
            st = launch_group(ex, i, cnt, ls[pick]);
            for (uint32_t k = 1; k < cnt; k++) lane_of[i + k] = pick;
            i += cnt - 1;
        } else {
            st = launch_node_in(&ex->nodes[i], g->scratch ? (char *)g->scratch + off[i] : NULL, ls[pick], ex);
        }
        if (!st && nl > 1) e = cudaEventRecord(ev[i], ls[pick]);
        lane_of[i] = pick;
        tail[pick] = i;
    }
    /* every lane that joined rejoins the origin stream before the capture ends */
    for (int k = 1; k < nl && e == cudaSuccess && !st; k++)
        if (joined[k] && tail[k] >= 0) e = cudaStreamWaitEvent(ls[0], ev[tail[k]], 0);
    {
        cudaGraph_t graph = NULL;
        cudaError_t e2 = cudaStreamEndCapture(ls[0], &graph);
        if (!st && e != cudaSuccess) st = cu_fail(e, "capturing a graph");
        if (!st && e2 != cudaSuccess) st = cu_fail(e2, "cudaStreamEndCapture");
        if (st) {
            if (graph) cudaGraphDestroy(graph);
        } else {
            g->graph = graph;
        }
    }
out:
    for (uint32_t k = 0; k < made; k++) cudaEventDestroy(ev[k]);
    cudaGetLastError();
    mlxn_free(ev);
    mlxn_free(lane_of);
    return st;
}

/* Scratch offsets for an exec's nodes. A node's scratch is dead once the
 * node has run (split-KV partials, int8 x, the bf16 copies of a prefill
 * matmul), so a node may reuse a region whose users all ran before it: the
 * region's last user is an ancestor of the node in the DAG (ex->deps,
 * transitively). Each region's users then form a chain, and no two nodes
 * that may run at once share bytes. Ancestry is kept as bitsets over the
 * nodes that need scratch. Total bytes go to *total. */
static mlxn_status plan_scratch(const mlxn_exec *ex, size_t *off, size_t *total) {
    uint32_t n = ex->n_nodes, ns = 0;
    *total = 0;
    size_t *need = mlxn_calloc(n ? n : 1, sizeof *need);
    int32_t *idx = mlxn_calloc(n ? n : 1, sizeof *idx);    /* node -> index among scratch users, -1 */
    mlxn_status st = MLXN_OK;
    uint64_t *anc = NULL;
    size_t *rsize = NULL, *roff = NULL;
    uint32_t *rlast = NULL, *rof = NULL;
    if (!need || !idx) goto oom;
    for (uint32_t i = 0; i < n; i++) {
        need[i] = node_scratch(&ex->nodes[i]);
        idx[i] = -1;
        if (need[i]) {
            idx[i] = (int32_t)ns++;
        }
    }
    if (ns) {
        size_t W = (ns + 63) / 64;
        anc = mlxn_calloc((size_t)n * W, sizeof *anc);
        rsize = mlxn_calloc(ns, sizeof *rsize);
        roff = mlxn_calloc(ns, sizeof *roff);
        rlast = mlxn_calloc(ns, sizeof *rlast);
        rof = mlxn_calloc(ns, sizeof *rof);
        if (!anc || !rsize || !roff || !rlast || !rof) goto oom;
        uint32_t nr = 0;
        for (uint32_t i = 0; i < n; i++) {
            uint64_t *a = anc + (size_t)i * W;
            for (uint32_t k = ex->dep_start[i]; k < ex->dep_start[i + 1]; k++) {
                uint32_t d = ex->deps[k];
                const uint64_t *b = anc + (size_t)d * W;
                for (size_t w = 0; w < W; w++) a[w] |= b[w];
                if (idx[d] >= 0) a[idx[d] / 64] |= 1ull << (idx[d] % 64);
            }
            if (!need[i]) continue;
            /* among the regions free for i: the smallest that fits, else the largest */
            int64_t best = -1;
            for (uint32_t r = 0; r < nr; r++) {
                uint32_t l = rlast[r];
                if (!(a[l / 64] >> (l % 64) & 1)) continue;
                if (best < 0) best = r;
                else {
                    bool fit = rsize[r] >= need[i], bfit = rsize[best] >= need[i];
                    if (fit ? (!bfit || rsize[r] < rsize[best]) : (!bfit && rsize[r] > rsize[best])) best = r;
                }
            }
            if (best < 0) best = nr++;
            if (rsize[best] < need[i]) rsize[best] = need[i];
            rlast[best] = (uint32_t)idx[i];
            rof[idx[i]] = (uint32_t)best;
        }
        size_t t = 0;
        for (uint32_t r = 0; r < nr; r++) {
            roff[r] = t;
            t += rsize[r];
        }
        *total = t;
    }
    for (uint32_t i = 0; i < n; i++) off[i] = idx[i] >= 0 ? roff[rof[idx[i]]] : 0;
    goto done;
oom:
    st = mlxn_err(MLXN_ERR_OUT_OF_MEMORY, "cuda: out of host memory planning graph scratch");
done:
    mlxn_free(need);
    mlxn_free(idx);
    mlxn_free(anc);
    mlxn_free(rsize);
    mlxn_free(roff);
    mlxn_free(rlast);
    mlxn_free(rof);
    return st;
}

/* Kernel nodes of a graph, those of child graphs included (0 on error). */
static uint32_t count_kernels(cudaGraph_t graph) {
    size_t n = 0;
    if (cudaGraphGetNodes(graph, NULL, &n) != cudaSuccess || n == 0) return 0;
    cudaGraphNode_t *nodes = mlxn_calloc(n, sizeof *nodes);
    uint32_t k = 0;
    if (nodes && cudaGraphGetNodes(graph, nodes, &n) == cudaSuccess) {
        for (size_t i = 0; i < n; i++) {
            enum cudaGraphNodeType t;
            cudaGraph_t child;
            if (cudaGraphNodeGetType(nodes[i], &t) != cudaSuccess) continue;
            if (t == cudaGraphNodeTypeKernel) k++;
            else if (t == cudaGraphNodeTypeGraph && cudaGraphChildGraphNodeGetGraph(nodes[i], &child) == cudaSuccess)
                k += count_kernels(child);
        }
    }
    cudaGetLastError();
    mlxn_free(nodes);
    return k;
}

static mlxn_status build_graph(cuda_dev *c, mlxn_exec *ex, cuda_graph_state **out) {
    *out = NULL;
    cuda_graph_state *g = mlxn_calloc(1, sizeof *g);
    if (g) atomic_init(&g->refs, 1);
    cudaGraphNode_t *gn = mlxn_calloc(ex->n_nodes ? ex->n_nodes : 1, sizeof *gn);
    cudaGraphNode_t *dn = mlxn_calloc(ex->n_nodes ? ex->n_nodes : 1, sizeof *dn);
    size_t *off = mlxn_calloc(ex->n_nodes ? ex->n_nodes : 1, sizeof *off);
    mlxn_status st = MLXN_OK;
    if (!g || !gn || !dn || !off) {
        mlxn_free(off);
        off = NULL;
        st = mlxn_err(MLXN_ERR_OUT_OF_MEMORY, "cuda: out of host memory building a graph");
        goto done;
    }
    g->scr_off = off;
    size_t total = 0;
    st = plan_scratch(ex, off, &total);
    if (st) goto done;
    {
        static int log = -1; /* MLXN_CU_SCRATCH_LOG=1 (measuring): each graph's scratch on stderr */
        if (log < 0) {
            const char *e = getenv("MLXN_CU_SCRATCH_LOG");
            log = e && *e && strcmp(e, "0") != 0;
        }
        if (log) fprintf(stderr, "cuda: graph of %u nodes: scratch %.1f MiB\n", ex->n_nodes, (double)total / 1048576.0);
    }
    if (total) {
        cudaError_t e = cudaMalloc(&g->scratch, total);
        if (e != cudaSuccess) {
            st = cu_fail(e, "cudaMalloc(graph scratch)");
            goto done;
        }
    }
    int mode = graph_mode();
    if (mode == GRAPH_STREAM && total) { /* cu_epi's buffer (the norms run inside matmuls) */
        cudaError_t e = cudaMalloc(&g->epi, MLXN_CU_EPI_BYTES);
        if (e == cudaSuccess) e = cudaMemsetAsync(g->epi, 0, MLXN_CU_EPI_BYTES, c->stream);
        if (e != cudaSuccess) {
            st = cu_fail(e, "cudaMalloc(graph epilogue buffer)");
            goto done;
        }
    }
    if (mode != GRAPH_DAG && ex->n_nodes) {
        st = capture_lanes(c, ex, g, off, mode == GRAPH_STREAM ? 1 : CAPTURE_LANES);
    } else {
        cudaError_t e = cudaGraphCreate(&g->graph, 0);
        if (e != cudaSuccess) {
            st = cu_fail(e, "cudaGraphCreate");
            goto done;
        }
        for (uint32_t i = 0; i < ex->n_nodes && !st; i++) {
            size_t nd = 0;
            for (uint32_t k = ex->dep_start[i]; k < ex->dep_start[i + 1]; k++) dn[nd++] = gn[ex->deps[k]];
            st = add_node(c, g, &ex->nodes[i], g->scratch ? (char *)g->scratch + off[i] : NULL, dn, nd, &gn[i]);
        }
    }
    if (!st) {
        cudaError_t e = cudaGraphInstantiate(&g->exec, g->graph, 0);
        if (e != cudaSuccess) st = cu_fail(e, "cudaGraphInstantiate");
        g->kernels = count_kernels(g->graph);
    }
done:
    mlxn_free(gn);
    mlxn_free(dn);
    if (st) graph_state_free(g);
    else *out = g;
    return st;
}


/* ---- MLXN_CUDA_PROFILE=1: per-node times of replayed graphs ----
 * A replay then launches the exec's nodes one by one on the stream, behind
 * a spin kernel that holds the stream while the host enqueues them (so they
 * run back to back, as in the graph), with an event after each node. Times
 * add up per (op, shape) and print to stderr at shutdown. A measuring aid:
 * the per-node launch boundaries cost a little more than inside a graph. */
typedef struct prof_ent {
    char key[96];
    double ms;
    long calls;
} prof_ent;
#define PROF_MAX 256
static prof_ent prof_tab[PROF_MAX];
static int prof_n = -1; /* -1: not read the environment yet; -2: off */
static long prof_steps;
static double prof_total_ms;
static cudaEvent_t *prof_ev;
static uint32_t prof_cap;

static bool prof_on(void) {
    if (prof_n == -1) {
        const char *e = getenv("MLXN_CUDA_PROFILE");
        prof_n = e && *e && *e != '0' ? 0 : -2;
    }
    return prof_n >= 0;
}

static void prof_key(const mlxn_node *n, char *k, size_t len) {
    const mlxn_tensor *t = n->t;
    if (n->op == MLXN_OP_MATMUL || n->op == MLXN_OP_MATMUL_MLX)
        snprintf(k, len, "%s M=%lld N=%lld K=%lld", mlxn_op_name(n->op), (long long)mlxn_tensor_rows(&t[1]),
                 (long long)t[2].shape[0], (long long)mlxn_tensor_cols(&t[1]));
    else
        snprintf(k, len, "%s out=%lld", mlxn_op_name(n->op), (long long)mlxn_tensor_elems(&t[0]));
}

static void prof_add(const char *k, double ms) {
    int i;
    for (i = 0; i < prof_n; i++)
        if (!strcmp(prof_tab[i].key, k)) break;
    if (i == prof_n) {
        if (prof_n == PROF_MAX) return;
        snprintf(prof_tab[i].key, sizeof prof_tab[i].key, "%s", k);
        prof_n++;
    }
    prof_tab[i].ms += ms;
    prof_tab[i].calls++;
}

static int prof_cmp(const void *a, const void *b) {
    double x = ((const prof_ent *)a)->ms, y = ((const prof_ent *)b)->ms;
    return x < y ? 1 : x > y ? -1 : 0;
}

static void prof_print(void) {
    if (prof_n <= 0) return;
    qsort(prof_tab, (size_t)prof_n, sizeof *prof_tab, prof_cmp);
    fprintf(stderr, "\ncuda profile: %ld graph executions, %.3f ms in all (nodes launched one by one)\n",
            prof_steps, prof_total_ms);
    fprintf(stderr, "%-44s %7s %10s %9s %6s\n", "op shape", "calls", "total ms", "us/call", "share");
    for (int i = 0; i < prof_n && i < 60; i++)
        fprintf(stderr, "%-44s %7ld %10.3f %9.2f %5.1f%%\n", prof_tab[i].key, prof_tab[i].calls, prof_tab[i].ms,
                1e3 * prof_tab[i].ms / (double)prof_tab[i].calls, 100.0 * prof_tab[i].ms / prof_total_ms);
    prof_n = 0;
}

static mlxn_status prof_replay(cuda_dev *c, mlxn_exec *ex, cuda_graph_state *g) {
    if (ex->n_nodes + 1 > prof_cap) {
        for (uint32_t i = 0; i < prof_cap; i++) cudaEventDestroy(prof_ev[i]);
        mlxn_free(prof_ev);
        prof_cap = 0;
        prof_ev = mlxn_calloc(ex->n_nodes + 1, sizeof *prof_ev);
        if (!prof_ev) return mlxn_err(MLXN_ERR_OUT_OF_MEMORY, "cuda: profile events");
        for (uint32_t i = 0; i < ex->n_nodes + 1; i++) CU_TRY(cudaEventCreate(&prof_ev[i]));
        prof_cap = ex->n_nodes + 1;
    }
    CU_TRY(mlxn_cu_spin(10000, c->stream));
    CU_TRY(cudaEventRecord(prof_ev[0], c->stream));
    for (uint32_t i = 0; i < ex->n_nodes; i++) {
        mlxn_status st = launch_node(&ex->nodes[i], g->scratch ? (char *)g->scratch + g->scr_off[i] : NULL, c->stream);
        if (st) return st;
        CU_TRY(cudaEventRecord(prof_ev[i + 1], c->stream));
    }
    CU_TRY(cudaStreamSynchronize(c->stream));
    for (uint32_t i = 0; i < ex->n_nodes; i++) {
        float ms = 0;
        CU_TRY(cudaEventElapsedTime(&ms, prof_ev[i], prof_ev[i + 1]));
        char k[96];
        prof_key(&ex->nodes[i], k, sizeof k);
        prof_add(k, (double)ms);
        prof_total_ms += (double)ms;
    }
    prof_steps++;
    return MLXN_OK;
}

/* The exec flattened: cu_nodes (zeroed padding, so bytes compare) then
 * dep_start and deps. */
static void *exec_key(const mlxn_exec *ex, size_t *len, uint64_t *hash) {
    size_t n = ex->n_nodes, nb = n * sizeof(cu_node), eb = (n + 1 + ex->n_deps) * sizeof(uint32_t);
    char *k = mlxn_malloc(nb + eb);
    if (!k) return NULL;
    for (size_t i = 0; i < n; i++) to_cu(&ex->nodes[i], (cu_node *)(void *)(k + i * sizeof(cu_node)));
    memcpy(k + nb, ex->dep_start, (n + 1) * sizeof(uint32_t));
    if (ex->n_deps) memcpy(k + nb + (n + 1) * sizeof(uint32_t), ex->deps, ex->n_deps * sizeof(uint32_t));
    uint64_t h = 1469598103934665603ull;
    size_t words = (nb + eb) / 8;
    for (size_t i = 0; i < words; i++) {
        uint64_t w;
        memcpy(&w, k + 8 * i, 8);
        h = (h ^ w) * 1099511628211ull;
    }
    for (size_t i = words * 8; i < nb + eb; i++) h = (h ^ (unsigned char)k[i]) * 1099511628211ull;
    *len = nb + eb;
    *hash = h;
    return k;
}

/* A cached graph built from the same key (a new reference), or NULL. */
static cuda_graph_state *cache_find(cuda_dev *c, const void *key, size_t len, uint64_t hash) {
    cuda_graph_state *g = NULL;
    pthread_mutex_lock(&c->mu);
    for (int i = 0; i < GRAPH_CACHE && c->cache[i]; i++) {
        cuda_graph_state *e = c->cache[i];
        if (e->hash == hash && e->key_len == len && memcmp(e->key, key, len) == 0) {
            for (int k = i; k > 0; k--) c->cache[k] = c->cache[k - 1];
            c->cache[0] = e;
            atomic_fetch_add(&e->refs, 1);
            g = e;
            break;
        }
    }
    pthread_mutex_unlock(&c->mu);
    return g;
}

static void cache_put(cuda_dev *c, cuda_graph_state *g) {
    pthread_mutex_lock(&c->mu);
    cuda_graph_state *out = c->cache[GRAPH_CACHE - 1];
    for (int k = GRAPH_CACHE - 1; k > 0; k--) c->cache[k] = c->cache[k - 1];
    c->cache[0] = g;
    atomic_fetch_add(&g->refs, 1);
    if (out) graph_state_free(out);
    pthread_mutex_unlock(&c->mu);
}

static mlxn_status cuda_execute(mlxn_device *dev, mlxn_exec *ex, bool replay) {
    cuda_dev *c = dev->impl;
    CU_TRY(cudaSetDevice(c->ordinal));
    if (ex->n_nodes == 0) return MLXN_OK;
    if (replay && ex->backend_state) {
        ex->launches = ((cuda_graph_state *)ex->backend_state)->kernels;
        if (prof_on()) return prof_replay(c, ex, ex->backend_state);
        CU_TRY(cudaGraphLaunch(((cuda_graph_state *)ex->backend_state)->exec, c->stream));
        return MLXN_OK;
    }
    if (ex->backend_state) { /* not a replay: the exec changed */
        graph_state_free(ex->backend_state);
        ex->backend_state = NULL;
    }
    if (ex->n_nodes == 1 && !replay) {
        size_t need = node_scratch(&ex->nodes[0]);
        if (need > c->scratch_cap) {
            CU_TRY(cudaStreamSynchronize(c->stream));
            if (c->scratch) cudaFree(c->scratch);
            c->scratch = NULL;
            c->scratch_cap = 0;
            CU_TRY(cudaMalloc(&c->scratch, need));
            c->scratch_cap = need;
        }
        return launch_node(&ex->nodes[0], c->scratch, c->stream);
    }
    size_t klen = 0;
    uint64_t hash = 0;
    void *key = exec_key(ex, &klen, &hash);
    if (!key) return mlxn_err(MLXN_ERR_OUT_OF_MEMORY, "cuda: out of host memory keying a graph");
    cuda_graph_state *g = cache_find(c, key, klen, hash);
    if (g) {
        mlxn_free(key);
    } else {
        mlxn_status st = build_graph(c, ex, &g);
        if (st) {
            mlxn_free(key);
            return st;
        }
        g->key = key;
        g->key_len = klen;
        g->hash = hash;
        cache_put(c, g);
    }
    ex->backend_state = g;
    ex->launches = g->kernels;
    if (prof_on()) return prof_replay(c, ex, g);
    CU_TRY(cudaGraphLaunch(g->exec, c->stream));
    return MLXN_OK;
}

static mlxn_status cuda_wait(mlxn_device *dev, mlxn_exec *ex) {
    (void)ex;
    cuda_dev *c = dev->impl;
    CU_TRY(cudaStreamSynchronize(c->stream));
    return MLXN_OK;
}

/* Device memory taken since the device opened, as the driver sees it: its
 * free memory then minus now (everything this process allocated after the
 * context: buffers, graph scratch, cuBLAS workspace, streams; other
 * processes on the same GPU would count too). 0 if the query fails. */
static size_t cuda_mem_taken(mlxn_device *dev) {
    cuda_dev *c = dev->impl;
    size_t fr = 0, total = 0;
    if (cudaMemGetInfo(&fr, &total) != cudaSuccess) {
        cudaGetLastError();
        return 0;
    }
    return c->free0 > fr ? c->free0 - fr : 0;
}

static void cuda_exec_release(mlxn_device *dev, mlxn_exec *ex) {
    (void)dev;
    graph_state_free(ex->backend_state);
    ex->backend_state = NULL;
}

const mlxn_backend mlxn_backend_cuda = {
    .name = "cuda",
    .init = cuda_init,
    .shutdown = cuda_shutdown,
    .alloc = cuda_alloc,
    .free = cuda_free,
    .upload = cuda_upload,
    .download = cuda_download,
    .upload_queued = cuda_upload_queued,
    .read_queued = cuda_read_queued,
    .read_wait = cuda_read_wait,
    .fill = cuda_fill,
    .host_memory = false,
    .supports = cuda_supports,
    .execute = cuda_execute,
    .wait = cuda_wait,
    .exec_release = cuda_exec_release,
    .mem_taken = cuda_mem_taken,
};
