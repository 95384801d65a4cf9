/* threadpool.h — one pthread worker per core; the calling thread is worker
 * 0. A job runs fn(arg, tid) on every worker; inside a job, workers wait
 * for each other only through counts of finished work (group boundaries):
 * one that has nothing left to finish is not waited for. */
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
/* Add k to the count c (items finished), waking its waiters. */
void mlxn_tp_count_add(mlxn_threadpool *tp, _Atomic int *c, int k);
/* Return once c has reached target: spin, then yield, then sleep. */
void mlxn_tp_count_wait(mlxn_threadpool *tp, _Atomic int *c, int target);

#endif
