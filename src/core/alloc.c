/* alloc.c — host allocation with a failure-injection hook for tests.
 * MLXN_FAIL_ALLOC_AFTER=n (or mlxn_test_fail_alloc_after(n)) makes the n-th
 * allocation from then on fail, so tests can walk every failure path. */
#include "core/core.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

static atomic_long g_fail_countdown = 0; /* 0 = off */

void mlxn_test_fail_alloc_after(long n) { atomic_store(&g_fail_countdown, n); }

static bool should_fail(void);
bool mlxn_test_alloc_should_fail(void) { return should_fail(); }

static bool should_fail(void) {
    long c = atomic_load(&g_fail_countdown);
    while (c > 0) {
        if (atomic_compare_exchange_weak(&g_fail_countdown, &c, c - 1)) return c == 1;
    }
    return false;
}

void *mlxn_malloc(size_t n) {
    if (should_fail()) return NULL;
    return malloc(n ? n : 1);
}
void *mlxn_calloc(size_t n, size_t size) {
    if (should_fail()) return NULL;
    return calloc(n ? n : 1, size ? size : 1);
}
void *mlxn_realloc(void *p, size_t n) {
    if (should_fail()) return NULL;
    return realloc(p, n ? n : 1);
}
void mlxn_free(void *p) { free(p); }
char *mlxn_strdup(const char *s) {
    size_t n = strlen(s) + 1;
    char *r = mlxn_malloc(n);
    if (r) memcpy(r, s, n);
    return r;
}
