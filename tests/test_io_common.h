/* test_io_common.h — shared helpers for the reader tests: load a test file, a
 * growable byte builder for hand-made corrupt files, and a "touch every
 * byte" pass so ASan sees any pointer a reader hands out past its input. */
#ifndef MLXN_TEST_IO_COMMON_H
#define MLXN_TEST_IO_COMMON_H

#include "io/io.h"
#include "testutil.h"

static inline uint8_t *load(const char *path, size_t *n) {
    char *buf = NULL;
    mlxn_status s = mlxn_read_file(&buf, n, path, 1 << 24);
    if (s) {
        fprintf(stderr, "cannot load %s: %s\n", path, mlxn_last_error());
        exit(2);
    }
    return (uint8_t *)buf;
}

/* An exact-size heap copy, so reads one past the end trip ASan. */
static inline uint8_t *dup_bytes(const uint8_t *p, size_t n) {
    uint8_t *q = malloc(n ? n : 1);
    if (n) memcpy(q, p, n);
    return q;
}

typedef struct bytes {
    uint8_t *p;
    size_t n, cap;
} bytes;

static inline void put(bytes *b, const void *src, size_t n) {
    if (b->n + n > b->cap) {
        b->cap = (b->n + n) * 2 + 64;
        b->p = realloc(b->p, b->cap);
    }
    memcpy(b->p + b->n, src, n);
    b->n += n;
}
static inline void put_u32(bytes *b, uint32_t v) { put(b, &v, 4); }
static inline void put_u64(bytes *b, uint64_t v) { put(b, &v, 8); }
static inline void put_zeros(bytes *b, size_t n) {
    for (size_t i = 0; i < n; i++) put(b, "", 1);
}
static volatile unsigned g_sink;
static inline void touch(const void *p, size_t n) {
    const volatile uint8_t *q = p;
    unsigned s = 0;
    for (size_t i = 0; i < n; i++) s += q[i];
    g_sink += s;
}

/* Failure injection from core/alloc.c: the n-th allocation from now fails
 * (0 turns it off). */
void mlxn_test_fail_alloc_after(long n);

/* Run `open_close` with the n-th allocation failing, n = 1..max: every run
 * must succeed or fail with MLXN_ERR_OUT_OF_MEMORY (and leak nothing, which
 * ASan / valgrind check); the last must succeed. Returns the OOM count. */
static inline int walk_alloc_failures(const char *what, mlxn_status (*open_close)(void), int max) {
    int oom = 0, other = 0;
    mlxn_status last = MLXN_OK;
    for (int n = 1; n <= max; n++) {
        mlxn_test_fail_alloc_after(n);
        last = open_close();
        mlxn_test_fail_alloc_after(0);
        if (last == MLXN_ERR_OUT_OF_MEMORY) oom++;
        else if (last != MLXN_OK && other++ < 3)
            fprintf(stderr, "  %s: allocation %d failing gave %s: %s\n", what, n, mlxn_status_name(last),
                    mlxn_last_error());
    }
    CHECK(other == 0 && oom > 0 && last == MLXN_OK, "%s: %d allocation failures -> OOM, %d other, last %s", what,
          oom, other, mlxn_status_name(last));
    printf("%s: failed each of %d allocations in turn: %d gave MLXN_ERR_OUT_OF_MEMORY\n", what, max, oom);
    return oom;
}

/* The message contains every one of the NULL-terminated fragments. */
static inline int msg_has(const char *frag) { return strstr(mlxn_last_error(), frag) != NULL; }

#endif
