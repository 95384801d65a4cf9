/* status.c — per-thread error messages and status names. */
#include "core/core.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#define ERR_CAP 1024
static _Thread_local char g_err[ERR_CAP];

mlxn_status mlxn_err(mlxn_status s, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(g_err, sizeof g_err, fmt, ap);
    va_end(ap);
    return s;
}

void mlxn_err_prefix(const char *fmt, ...) {
    char prefix[256], old[ERR_CAP];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof prefix, fmt, ap);
    va_end(ap);
    memcpy(old, g_err, sizeof old);
    size_t n = strlen(prefix);
    if (n + 2 >= sizeof g_err) n = sizeof g_err - 3;
    memcpy(g_err, prefix, n);
    g_err[n] = ':';
    g_err[n + 1] = ' ';
    size_t room = sizeof g_err - n - 3;
    size_t m = strnlen(old, room);
    memcpy(g_err + n + 2, old, m);
    g_err[n + 2 + m] = 0;
}

void mlxn_err_clear(void) { g_err[0] = 0; }

const char *mlxn_last_error(void) { return g_err; }

static const char *const k_status_names[] = {
    [MLXN_OK] = "MLXN_OK",
    [MLXN_ERR_INVALID_ARG] = "MLXN_ERR_INVALID_ARG",
    [MLXN_ERR_OUT_OF_MEMORY] = "MLXN_ERR_OUT_OF_MEMORY",
    [MLXN_ERR_IO] = "MLXN_ERR_IO",
    [MLXN_ERR_FORMAT] = "MLXN_ERR_FORMAT",
    [MLXN_ERR_UNSUPPORTED] = "MLXN_ERR_UNSUPPORTED",
    [MLXN_ERR_SHAPE] = "MLXN_ERR_SHAPE",
    [MLXN_ERR_DTYPE] = "MLXN_ERR_DTYPE",
    [MLXN_ERR_DEVICE] = "MLXN_ERR_DEVICE",
    [MLXN_ERR_NOT_FOUND] = "MLXN_ERR_NOT_FOUND",
    [MLXN_ERR_RANGE] = "MLXN_ERR_RANGE",
    [MLXN_ERR_STATE] = "MLXN_ERR_STATE",
};
_Static_assert(sizeof k_status_names / sizeof k_status_names[0] == MLXN_STATUS_COUNT,
               "status name table out of date");

const char *mlxn_status_name(mlxn_status s) {
    if ((unsigned)s >= MLXN_STATUS_COUNT) return "MLXN_ERR_UNKNOWN";
    return k_status_names[s];
}

uint64_t mlxn_now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}
