/* testutil.h — the tiny test harness every tests/test_*.c uses.
 * CHECK counts one comparison; a failure prints file:line and the message.
 * Each program ends with test_summary(), which prints
 * "<name>: N passed, N failed" and returns the exit code. Tolerances are
 * atol + rtol*|ref| per element (check_close). */
#ifndef MLXN_TESTUTIL_H
#define MLXN_TESTUTIL_H

#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int g_pass, g_fail;

#define CHECK(cond, ...)                                          \
    do {                                                          \
        if (cond) {                                               \
            g_pass++;                                             \
        } else {                                                  \
            g_fail++;                                             \
            fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__);  \
            fprintf(stderr, __VA_ARGS__);                         \
            fprintf(stderr, "\n");                                \
        }                                                         \
    } while (0)

#define CHECK_OK(expr)                                                               \
    do {                                                                             \
        mlxn_status s_ = (expr);                                                     \
        CHECK(s_ == MLXN_OK, "%s -> %s: %s", #expr, mlxn_status_name(s_), mlxn_last_error()); \
    } while (0)

/* Expect a specific failure status, and a non-empty message. */
#define CHECK_STATUS(expr, want)                                                          \
    do {                                                                                  \
        mlxn_status s_ = (expr);                                                          \
        CHECK(s_ == (want) && mlxn_last_error()[0], "%s -> %s (want %s), msg '%s'", #expr, \
              mlxn_status_name(s_), mlxn_status_name(want), mlxn_last_error());           \
    } while (0)

/* Compare n floats; prints up to 5 mismatches with index, expected, actual.
 * Returns the number of mismatches and counts one check. */
static inline int check_close_(const char *file, int line, const char *what, const float *out,
                               const double *ref, size_t n, double atol, double rtol) {
    int bad = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)out[i] - ref[i]);
        if (!(d <= atol + rtol * fabs(ref[i]))) {
            if (bad < 5)
                fprintf(stderr, "  %s[%zu]: expected %.9g got %.9g (|diff| %.3g)\n", what, i,
                        ref[i], (double)out[i], d);
            bad++;
        }
    }
    if (bad) {
        g_fail++;
        fprintf(stderr, "FAIL %s:%d: %s: %d of %zu elements outside atol %.3g + rtol %.3g\n", file,
                line, what, bad, n, atol, rtol);
    } else {
        g_pass++;
    }
    return bad;
}
#define check_close(what, out, ref, n, atol, rtol) \
    check_close_(__FILE__, __LINE__, what, out, ref, n, atol, rtol)

/* xorshift64* — deterministic test randomness. */
static uint64_t g_rng = 0x9E3779B97F4A7C15ull;
static inline uint64_t rng_u64(void) {
    g_rng ^= g_rng >> 12;
    g_rng ^= g_rng << 25;
    g_rng ^= g_rng >> 27;
    return g_rng * 2685821657736338717ull;
}
static inline float rng_uniform(float lo, float hi) {
    return lo + (hi - lo) * (float)((double)(rng_u64() >> 11) * (1.0 / 9007199254740992.0));
}
static inline int rng_int(int lo, int hi) { /* inclusive */
    return lo + (int)(rng_u64() % (uint64_t)(hi - lo + 1));
}
static inline void rng_fill(float *x, size_t n, float lo, float hi) {
    for (size_t i = 0; i < n; i++) x[i] = rng_uniform(lo, hi);
}

/* Remove a temporary directory tree a test made (under /tmp only). */
static inline void rm_tmp_tree(const char *dir) {
    char cmd[512];
    if (strncmp(dir, "/tmp/", 5) != 0 || strchr(dir, '\'') || strlen(dir) > 400) return;
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", dir);
}

static inline int test_summary(const char *name) {
    printf("%s: %d passed, %d failed\n", name, g_pass, g_fail);
    return g_fail ? 1 : 0;
}

#endif
