/* mapfile.c — a whole file mapped read-only (zero-copy weights on the CPU),
 * and a bounded whole-file read for small text files (config.json). */
#include "io/io.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

static const uint8_t k_empty[1];

mlxn_status mlxn_mapfile_open(mlxn_mapfile *mf, const char *path) {
    if (!mf || !path) return mlxn_err(MLXN_ERR_INVALID_ARG, "mapfile_open: NULL argument");
    memset(mf, 0, sizeof *mf);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return mlxn_err(MLXN_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int e = errno;
        close(fd);
        return mlxn_err(MLXN_ERR_IO, "%s: cannot stat: %s", path, strerror(e));
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        return mlxn_err(MLXN_ERR_IO, "%s: not a regular file", path);
    }
    if ((uint64_t)st.st_size > (uint64_t)SIZE_MAX) {
        close(fd);
        return mlxn_err(MLXN_ERR_IO, "%s: file too large to map", path);
    }
    size_t size = (size_t)st.st_size;
    void *map = NULL;
    if (size > 0) {
        map = mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (map == MAP_FAILED) {
            int e = errno;
            close(fd);
            return mlxn_err(MLXN_ERR_IO, "%s: cannot mmap %zu bytes: %s", path, size, strerror(e));
        }
    }
    close(fd);
    char *p = mlxn_strdup(path);
    if (!p) {
        if (map) munmap(map, size);
        return mlxn_err(MLXN_ERR_OUT_OF_MEMORY, "%s: out of memory", path);
    }
    mf->data = map ? (const uint8_t *)map : k_empty;
    mf->size = size;
    mf->path = p;
    mf->map_ = map;
    return MLXN_OK;
}

void mlxn_mapfile_drop(const mlxn_mapfile *mf, const void *p, size_t n) {
    if (!mf || !mf->map_ || !p || !n) return;
    uintptr_t a = (uintptr_t)p, b = a + n, m0 = (uintptr_t)mf->map_, m1 = m0 + mf->size;
    if (a < m0 || b > m1) return;
    long pg = sysconf(_SC_PAGESIZE);
    uintptr_t ps = pg > 0 ? (uintptr_t)pg : 4096;
    uintptr_t lo = (a + ps - 1) / ps * ps, hi = b / ps * ps;
    if (hi > lo) madvise((void *)lo, hi - lo, MADV_DONTNEED); /* a read-only file mapping: only RSS changes */
}

void mlxn_mapfile_close(mlxn_mapfile *mf) {
    if (!mf) return;
    if (mf->map_) munmap(mf->map_, mf->size);
    mlxn_free(mf->path);
    memset(mf, 0, sizeof *mf);
}

mlxn_status mlxn_read_file(char **out, size_t *len, const char *path, size_t max_bytes) {
    if (!out || !path) return mlxn_err(MLXN_ERR_INVALID_ARG, "read_file: NULL argument");
    *out = NULL;
    if (len) *len = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return mlxn_err(MLXN_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        int e = errno;
        close(fd);
        return mlxn_err(MLXN_ERR_IO, "%s: not a readable regular file%s%s", path, e ? ": " : "",
                        e ? strerror(e) : "");
    }
    if ((uint64_t)st.st_size > (uint64_t)max_bytes) {
        close(fd);
        return mlxn_err(MLXN_ERR_RANGE, "%s: file has %lld bytes, limit is %zu", path,
                        (long long)st.st_size, max_bytes);
    }
    size_t cap = (size_t)st.st_size;
    char *buf = mlxn_malloc(cap + 1);
    if (!buf) {
        close(fd);
        return mlxn_err(MLXN_ERR_OUT_OF_MEMORY, "%s: out of memory for %zu bytes", path, cap);
    }
    size_t got = 0;
    while (got < cap) {
        ssize_t r = read(fd, buf + got, cap - got);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) {
            int e = errno;
            close(fd);
            mlxn_free(buf);
            return mlxn_err(MLXN_ERR_IO, "%s: read failed: %s", path, strerror(e));
        }
        if (r == 0) break; /* file shrank */
        got += (size_t)r;
    }
    close(fd);
    buf[got] = 0;
    *out = buf;
    if (len) *len = got;
    return MLXN_OK;
}
