/* threadpool.h — one pthread worker per core; the calling thread is worker
 * 0. A job runs fn(arg, tid) on every worker; inside a job, workers meet at
 * mlxn_tp_barrier only where the caller asks (group boundaries). */
#ifndef MLXN_THREADPOOL_H
#define MLXN_THREADPOOL_H

#include "core/core.h"

typedef struct mlxn_threadpool mlxn_threadpool;

mlxn_status mlxn_tp_create(mlxn_threadpool **out, int n_threads);
void mlxn_tp_destroy(mlxn_threadpool *tp);
int mlxn_tp_size(const mlxn_threadpool *tp);
/* Run fn on all workers and return when every one has finished. Not
 * reentrant: one job at a time per pool (the device serializes them). */
void mlxn_tp_run(mlxn_threadpool *tp, void (*fn)(void *arg, int tid), void *arg);
/* All workers of the running job wait here for each other. */
void mlxn_tp_barrier(mlxn_threadpool *tp);

#endif
