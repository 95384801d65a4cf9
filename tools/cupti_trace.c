/*
 * cupti_trace.c — a measuring aid, not part of the library: a CUDA
 * injection library (CUDA_INJECTION64_PATH=.../libcupti_trace.so) that
 * records every kernel's start and end on the GPU through CUPTI's activity
 * API, graph-launched kernels included, and writes one line per kernel to
 * $MLXN_TRACE_OUT (default trace.txt) at exit:
 *   start_ns end_ns grid_blocks block_threads graph_node_id name
 * scripts/trace-step.sh builds it on the GPU machine and sums, per kernel,
 * how much each adds to the end of a decode step (tools/trace_step.py).
 */
#include <cupti.h>
#include <stdio.h>
#include <stdlib.h>

static FILE *out;

static void CUPTIAPI buf_req(uint8_t **buf, size_t *size, size_t *maxrec) {
    *size = (size_t)32 << 20;
    *buf = aligned_alloc(64, *size);
    *maxrec = 0;
}

static void CUPTIAPI buf_done(CUcontext ctx, uint32_t sid, uint8_t *buf, size_t size, size_t valid) {
    (void)ctx, (void)sid, (void)size;
    CUpti_Activity *r = NULL;
    while (out && cuptiActivityGetNextRecord(buf, valid, &r) == CUPTI_SUCCESS) {
        if (r->kind != CUPTI_ACTIVITY_KIND_CONCURRENT_KERNEL && r->kind != CUPTI_ACTIVITY_KIND_KERNEL) continue;
        const CUpti_ActivityKernel10 *k = (const CUpti_ActivityKernel10 *)r;
        fprintf(out, "%llu %llu %d %d %llu %s\n", (unsigned long long)k->start, (unsigned long long)k->end,
                k->gridX * k->gridY * k->gridZ, k->blockX * k->blockY * k->blockZ,
                (unsigned long long)k->graphNodeId, k->name ? k->name : "?");
    }
    free(buf);
}

static void at_exit(void) {
    cuptiActivityFlushAll(1);
    if (out) fclose(out);
    out = NULL;
}

int InitializeInjection(void) {
    const char *p = getenv("MLXN_TRACE_OUT");
    out = fopen(p && *p ? p : "trace.txt", "w");
    if (!out) return 0;
    if (cuptiActivityRegisterCallbacks(buf_req, buf_done) != CUPTI_SUCCESS ||
        cuptiActivityEnable(CUPTI_ACTIVITY_KIND_CONCURRENT_KERNEL) != CUPTI_SUCCESS) {
        fprintf(stderr, "cupti_trace: CUPTI did not start\n");
        return 0;
    }
    atexit(at_exit);
    return 1;
}
