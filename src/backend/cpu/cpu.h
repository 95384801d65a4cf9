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
} mlxn_cpu_op;

extern const mlxn_cpu_op mlxn_cpu_ops[MLXN_OP_COUNT];

/* Split [0, total) into nth near-equal parts; part ith is [*lo, *hi). */
static inline void mlxn_split(int64_t total, int ith, int nth, int64_t *lo, int64_t *hi) {
    int64_t per = total / nth, rem = total % nth;
    *lo = ith * per + (ith < rem ? ith : rem);
    *hi = *lo + per + (ith < rem ? 1 : 0);
}

#endif
