/*
 * graph.h — sessions, the passes and the schedule. Internal header.
 *
 * A session owns an array of recorded nodes. Submitting runs the passes
 * (optimized mode), then builds an exec: the order nodes run in, concurrent
 * groups (a barrier between consecutive groups) and the DAG (each node's
 * dependencies: the earlier nodes it conflicts with, reduced to the latest
 * writer/readers so the edge count stays linear in practice).
 */
#ifndef MLXN_GRAPH_H
#define MLXN_GRAPH_H

#include "ops/ops.h"

typedef struct mlxn_exec {
    mlxn_node *nodes;     /* in run order */
    uint32_t n_nodes;
    uint32_t *group_start; /* n_groups + 1 entries: group g is [start[g], start[g+1]) */
    uint32_t n_groups;
    uint32_t *dep_start;  /* n_nodes + 1 entries into deps */
    uint32_t *deps;       /* node indices (in run order) each node waits for */
    uint32_t n_deps;
    size_t scratch_bytes; /* per-thread scratch the CPU kernels need */
    void *backend_state;  /* a backend's cached state (CUDA graph) */
    uint32_t launches;    /* set by execute: device kernel launches of the run (0: not counted) */
    uint32_t phases;      /* set by execute: CPU work phases of the run (0: not counted) */
} mlxn_exec;

/* Build groups and dependency edges for nodes in their current order. */
mlxn_status mlxn_schedule_build(mlxn_exec *ex, bool dump);

void mlxn_exec_clear(mlxn_exec *ex);

/* mlxn_session_replay_submit that may be called while a run is still in
 * flight: the device queues the runs in order (pipelined decode,
 * mlxn_forward_queue). mlxn_session_wait then waits for all of them. */
mlxn_status mlxn_session_replay_queue(mlxn_session *s);

/* Passes over a node array in place. Return how many fusions / moved nodes. */
typedef struct mlxn_outputs {
    mlxn_tensor *t;
    size_t n, cap;
} mlxn_outputs;
/* `can_run` says whether the backend has a kernel for a fused node (NULL:
 * every fusion is allowed); a fusion whose node it refuses is skipped. */
typedef bool (*mlxn_can_run_fn)(void *ctx, const mlxn_node *n);
uint32_t mlxn_pass_fuse(mlxn_node *nodes, uint32_t *n, const mlxn_outputs *outs, bool dump,
                        mlxn_can_run_fn can_run, void *ctx);
uint32_t mlxn_pass_reorder(mlxn_node *nodes, uint32_t n, bool dump);

/* Drop the node's references on its allocations. */
void mlxn_node_release(mlxn_node *n);

#endif
