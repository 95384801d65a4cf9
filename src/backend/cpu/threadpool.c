/* threadpool.c — workers spin briefly for the next job (decode steps come
 * back to back), then sleep on a condition variable. Inside a job, a wait
 * for a count of finished items (a group boundary) and the caller's wait
 * for the workers spin, then yield, then sleep (a futex on Linux), so that
 * oversubscribed machines still progress.
 *
 * Every wait spins at most SPIN_PAUSES pauses (~2.4 us at 24 ns a pause on
 * the dev EPYC) and then yields between checks (a yield that finds nothing
 * else to run returns in ~0.4 us). With 2000 pauses before the first yield,
 * a decode step's 273 barriers cost ~48 us each whenever another process
 * held one of the two cores (both workers then share one): 50 instead of
 * 370 tok/s for SmolLM2-135M.
 *
 * Yielding alone is not enough when other processes keep the cores busy:
 * the yield hands the core to one of them for its whole time slice (ms),
 * not to the worker being waited for, and a decode step meets ~180 group
 * boundaries. So after YIELD_NS of yielding a waiter sleeps on the count
 * (futex), giving its core to whoever is runnable, our late worker
 * included; an add wakes the sleepers (a syscall only when some slept).
 * 2-core Zen 3 VM, SmolLM2 Q4_1 decode with two busy loops and a test run
 * beside it: 1.2-1.3 -> 1.7-1.9 tok/s (~100 alone).
 *
 * The boundaries wait for finished work, not for every worker to arrive
 * (they were barriers): a worker descheduled while holding no item is
 * not waited for, the others take its share. Same VM, one busy loop
 * beside SmolLM2 Q4_1 tg64: 49-60 tok/s with barriers, 66-76 now. */
#define SPIN_PAUSES 100
#define YIELD_NS 50000
#include "backend/cpu/threadpool.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <time.h>
#ifdef __linux__
#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>
#endif

struct mlxn_threadpool {
    int n;
    pthread_t *th;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    atomic_uint gen;        /* bumped to start a job */
    atomic_int running;     /* workers still in the current job */
    atomic_bool stop;
    void (*fn)(void *, int);
    void *arg;
    atomic_int cnt_sleepers; /* waiters asleep (or going to sleep) on a count */
    atomic_int run_sleepers; /* the caller asleep on running */
};

typedef struct worker_arg {
    mlxn_threadpool *tp;
    int tid;
} worker_arg;

static inline void cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Sleep while *w still holds v (returns at once if it no longer does, on a
 * wake, or spuriously: callers re-check). Without futexes: a yield. */
static void sleep_while(void *w, unsigned v) {
#ifdef __linux__
    syscall(SYS_futex, w, FUTEX_WAIT_PRIVATE, v, NULL, NULL, 0);
#else
    (void)w, (void)v;
    sched_yield();
#endif
}
static void wake_all(void *w) {
#ifdef __linux__
    syscall(SYS_futex, w, FUTEX_WAKE_PRIVATE, 0x7fffffff, NULL, NULL, 0);
#else
    (void)w;
#endif
}

/* One wait step of a waiter that has checked n times so far: pause, then
 * yield; past YIELD_NS since *t0 (set at the first yield) true: sleep. */
static bool wait_step(int *n, uint64_t *t0) {
    if (++*n <= SPIN_PAUSES) {
        cpu_relax();
        return false;
    }
    if (*n == SPIN_PAUSES + 1) *t0 = now_ns();
    else if ((*n & 7) == 0 && now_ns() - *t0 > YIELD_NS) return true;
    sched_yield();
    return false;
}

static void *worker_main(void *p) {
    worker_arg wa = *(worker_arg *)p;
    mlxn_free(p);
    mlxn_threadpool *tp = wa.tp;
    unsigned seen = 0;
    for (;;) {
        unsigned g;
        int spins = 0;
        while ((g = atomic_load_explicit(&tp->gen, memory_order_acquire)) == seen &&
               !atomic_load(&tp->stop) && spins < 20000) { /* then sleep: ~5-10 ms */
            if (++spins > SPIN_PAUSES) sched_yield();
            else cpu_relax();
        }
        if (g == seen && !atomic_load(&tp->stop)) {
            pthread_mutex_lock(&tp->mu);
            while ((g = atomic_load(&tp->gen)) == seen && !atomic_load(&tp->stop))
                pthread_cond_wait(&tp->cv, &tp->mu);
            pthread_mutex_unlock(&tp->mu);
        }
        if (atomic_load(&tp->stop)) return NULL;
        seen = g;
        tp->fn(tp->arg, wa.tid);
        atomic_fetch_sub(&tp->running, 1);
        if (atomic_load(&tp->run_sleepers) > 0) wake_all(&tp->running);
    }
}

mlxn_status mlxn_tp_create(mlxn_threadpool **out, int n) {
    *out = NULL;
    if (n < 1) n = 1;
    mlxn_threadpool *tp = mlxn_calloc(1, sizeof *tp);
    if (!tp) return mlxn_err(MLXN_ERR_OUT_OF_MEMORY, "threadpool: out of host memory");
    tp->n = n;
    tp->th = mlxn_calloc((size_t)n, sizeof(pthread_t));
    if (!tp->th) {
        mlxn_free(tp);
        return mlxn_err(MLXN_ERR_OUT_OF_MEMORY, "threadpool: out of host memory");
    }
    pthread_mutex_init(&tp->mu, NULL);
    pthread_cond_init(&tp->cv, NULL);
    for (int i = 1; i < n; i++) {
        worker_arg *wa = mlxn_malloc(sizeof *wa);
        if (!wa || (*wa = (worker_arg){tp, i}, pthread_create(&tp->th[i], NULL, worker_main, wa)) != 0) {
            mlxn_free(wa);
            tp->n = i; /* destroy joins the ones that started */
            mlxn_tp_destroy(tp);
            return mlxn_err(MLXN_ERR_OUT_OF_MEMORY, "threadpool: could not start worker %d of %d", i, n);
        }
    }
    *out = tp;
    return MLXN_OK;
}

void mlxn_tp_destroy(mlxn_threadpool *tp) {
    if (!tp) return;
    pthread_mutex_lock(&tp->mu);
    atomic_store(&tp->stop, true);
    pthread_cond_broadcast(&tp->cv);
    pthread_mutex_unlock(&tp->mu);
    for (int i = 1; i < tp->n; i++) pthread_join(tp->th[i], NULL);
    pthread_mutex_destroy(&tp->mu);
    pthread_cond_destroy(&tp->cv);
    mlxn_free(tp->th);
    mlxn_free(tp);
}

int mlxn_tp_size(const mlxn_threadpool *tp) { return tp->n; }

void mlxn_tp_run(mlxn_threadpool *tp, void (*fn)(void *, int), void *arg) {
    if (tp->n == 1) {
        fn(arg, 0);
        return;
    }
    tp->fn = fn;
    tp->arg = arg;
    atomic_store(&tp->running, tp->n - 1);
    pthread_mutex_lock(&tp->mu);
    atomic_fetch_add_explicit(&tp->gen, 1, memory_order_release);
    pthread_cond_broadcast(&tp->cv);
    pthread_mutex_unlock(&tp->mu);
    fn(arg, 0);
    int spins = 0;
    uint64_t t0 = 0;
    int left;
    while ((left = atomic_load_explicit(&tp->running, memory_order_acquire)) > 0) {
        if (!wait_step(&spins, &t0)) continue;
        atomic_fetch_add(&tp->run_sleepers, 1); /* seq_cst: see mlxn_tp_count_add */
        if (atomic_load(&tp->running) == left) sleep_while(&tp->running, (unsigned)left);
        atomic_fetch_sub(&tp->run_sleepers, 1);
    }
}

void mlxn_tp_count_add(mlxn_threadpool *tp, atomic_int *c, int k) {
    atomic_fetch_add(c, k);
    /* seq_cst on both sides: a sleeper's count comes before its re-check
     * of c, so either it sees the new value or this sees it */
    if (atomic_load(&tp->cnt_sleepers) > 0) wake_all(c);
}

void mlxn_tp_count_wait(mlxn_threadpool *tp, atomic_int *c, int target) {
    int spins = 0, v;
    uint64_t t0 = 0;
    while ((v = atomic_load_explicit(c, memory_order_acquire)) < target) {
        if (!wait_step(&spins, &t0)) continue;
        atomic_fetch_add(&tp->cnt_sleepers, 1);
        if (atomic_load(c) == v) sleep_while(c, (unsigned)v);
        atomic_fetch_sub(&tp->cnt_sleepers, 1);
    }
}
