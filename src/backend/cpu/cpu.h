/* cpu.h — the CPU backend's kernel table. A kernel runs task `ith` of `nth`
 * of one node, with per-thread scratch of at least the bytes its scratch
 * function asks for. */
#ifndef MLXN_CPU_H
#define MLXN_CPU_H

#include "graph/graph.h"

typedef void (*mlxn_cpu_kernel)(const mlxn_node *n, int ith, int nth, void *scratch);
typedef size_t (*mlxn_cpu_scratch)(const mlxn_node *n, int nth);

typedef struct mlxn_cpu_op {
    mlxn_cpu_kernel run;
    mlxn_cpu_scratch scratch; /* NULL = none */
    mlxn_cpu_scratch shared;  /* bytes all the node's tasks share; NULL = none */
} mlxn_cpu_op;

extern const mlxn_cpu_op mlxn_cpu_ops[MLXN_OP_COUNT];

/* The running node's shared area while a task of a node whose op asks for
 * one runs (NULL otherwise, and when the exec has none: one worker). It is
 * zeroed when allocated and kept across runs of the exec, one area per
 * node; its tasks may run at once, so they coordinate through atomics
 * in it. */
extern _Thread_local void *mlxn_cpu_shared_area;

/* Producer fusion (cpu_backend.c): a one-row rms_norm / add_rms_norm /
 * silu_mul whose group is followed by a group of one-row matmuls of its
 * output runs inside that group instead, every worker computing the whole
 * row for itself, so the wait between them goes (and the worker that
 * would wait while one thread normalizes one row has work).
 * mlxn_cpu_pre_ok: whether pre can be run so; mlxn_cpu_pre_row: the whole
 * output row into x (2 * K floats of room); mlxn_cpu_pre_out: part ith of
 * nth of pre's outputs from that x, as the op writes them;
 * mlxn_cpu_matmul_x: the matmul's part ith with x in place of its input
 * row. */
bool mlxn_cpu_pre_ok(const mlxn_node *pre);
void mlxn_cpu_pre_row(const mlxn_node *pre, float *x);
void mlxn_cpu_pre_out(const mlxn_node *pre, int ith, int nth, const float *x);
void mlxn_cpu_matmul_x(const mlxn_node *n, int ith, int nth, void *scratch, const float *x);

/* Split [0, total) into nth near-equal parts; part ith is [*lo, *hi). */
static inline void mlxn_split(int64_t total, int ith, int nth, int64_t *lo, int64_t *hi) {
    int64_t per = total / nth, rem = total % nth;
    *lo = ith * per + (ith < rem ? ith : rem);
    *hi = *lo + per + (ith < rem ? 1 : 0);
}

#endif
