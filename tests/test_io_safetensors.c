/* test_io_safetensors.c — the safetensors reader against files written by
 * the Python `safetensors` package (exact values), the writer (round trip,
 * and byte-identical to Python's output for a one-dtype file), sharded
 * directories, and hostile input: every truncation, random byte flips, and a
 * table of specific corruptions with the expected status and message. */
#include "test_io_common.h"

#include <unistd.h>

#define D "tests/data/io/"

static float f32_at(const mlxn_st_tensor *t, size_t i) {
    float f;
    memcpy(&f, (const uint8_t *)t->data + 4 * i, 4);
    return f;
}

static void test_small(void) {
    mlxn_safetensors *st;
    CHECK_OK(mlxn_safetensors_open_file(&st, D "small.safetensors"));
    if (!st) return;
    CHECK(mlxn_safetensors_count(st) == 14, "count %zu", mlxn_safetensors_count(st));
    for (size_t i = 1; i < mlxn_safetensors_count(st); i++)
        CHECK(strcmp(mlxn_safetensors_at(st, i - 1)->name, mlxn_safetensors_at(st, i)->name) < 0,
              "name order at %zu", i);
    CHECK(mlxn_safetensors_at(st, 14) == NULL, "at past end");
    const mlxn_st_tensor *t = mlxn_safetensors_find(st, "a.f32");
    CHECK(t && t->dtype == MLXN_F32 && t->supported && t->ndim == 2 && t->shape[0] == 2 &&
              t->shape[1] == 3 && t->nbytes == 24, "a.f32 info");
    int bad = 0;
    for (int i = 0; t && i < 6; i++) bad += f32_at(t, (size_t)i) != -1.0f + 0.5f * (float)i;
    CHECK(bad == 0, "a.f32 values: %d wrong", bad);
    t = mlxn_safetensors_find(st, "b.f16");
    bad = 0;
    for (int i = 0; t && i < 4; i++) {
        uint16_t h;
        memcpy(&h, (const uint8_t *)t->data + 2 * i, 2);
        bad += mlxn_f16_to_f32(h) != 1.0f + 0.25f * (float)i;
    }
    CHECK(t && t->dtype == MLXN_F16 && bad == 0, "b.f16 values");
    t = mlxn_safetensors_find(st, "c.i32");
    bad = 0;
    for (int i = 0; t && i < 12; i++) {
        int32_t v;
        memcpy(&v, (const uint8_t *)t->data + 4 * i, 4);
        bad += v != -7 * i;
    }
    CHECK(t && t->ndim == 3 && t->shape[2] == 3 && t->dtype == MLXN_I32 && bad == 0, "c.i32");
    t = mlxn_safetensors_find(st, "d.u8");
    CHECK(t && t->dtype == MLXN_U8 && t->nbytes == 5 && ((const uint8_t *)t->data)[4] == 12, "d.u8");
    t = mlxn_safetensors_find(st, "e.i8");
    CHECK(t && t->dtype == MLXN_I8 && ((const int8_t *)t->data)[0] == -2, "e.i8");
    t = mlxn_safetensors_find(st, "h.i64");
    CHECK(t && !t->supported && strcmp(t->dtype_name, "I64") == 0 && t->elem_bytes == 8 &&
              t->nbytes == 24, "h.i64 unsupported but readable");
    t = mlxn_safetensors_find(st, "j.bool");
    CHECK(t && !t->supported && strcmp(t->dtype_name, "BOOL") == 0 && t->nbytes == 3, "j.bool");
    t = mlxn_safetensors_find(st, "l.scalar");
    CHECK(t && t->ndim == 0 && t->nbytes == 4 && f32_at(t, 0) == 3.5f, "scalar");
    t = mlxn_safetensors_find(st, "m.empty");
    CHECK(t && t->ndim == 2 && t->shape[0] == 0 && t->nbytes == 0, "zero-size tensor");
    t = mlxn_safetensors_find(st, "n.4d");
    CHECK(t && t->ndim == 4 && t->shape[3] == 4 && f32_at(t, 23) == 23.0f, "4d");
    CHECK(mlxn_safetensors_find(st, "zz") == NULL, "absent name");
    const mlxn_st_tensor *out;
    CHECK_STATUS(mlxn_safetensors_get(st, "nope", &out), MLXN_ERR_NOT_FOUND);
    CHECK(msg_has("'nope'"), "not-found message names the tensor: %s", mlxn_last_error());
    CHECK(mlxn_safetensors_meta_count(st) == 2, "meta count");
    const char *fmt = mlxn_safetensors_meta_find(st, "format");
    CHECK(fmt && strcmp(fmt, "mlx") == 0, "metadata format");
    mlxn_safetensors_close(st);
    mlxn_safetensors_close(NULL);

    CHECK_OK(mlxn_safetensors_open_file(&st, D "bf16.safetensors"));
    t = st ? mlxn_safetensors_find(st, "w") : NULL;
    bad = 0;
    for (int i = 0; t && i < 6; i++) {
        uint16_t h;
        memcpy(&h, (const uint8_t *)t->data + 2 * i, 2);
        bad += mlxn_bf16_to_f32(h) != -1.0f + 0.5f * (float)i;
    }
    CHECK(t && t->dtype == MLXN_BF16 && t->shape[0] == 3 && bad == 0, "bf16 values");
    mlxn_safetensors_close(st);

    CHECK_STATUS(mlxn_safetensors_open_file(&st, D "dims5.safetensors"), MLXN_ERR_UNSUPPORTED);
    CHECK(msg_has("5 dims") && msg_has("dims5.safetensors"), "5-dim message: %s", mlxn_last_error());
    CHECK(st == NULL, "out NULL on failure");
    CHECK_STATUS(mlxn_safetensors_open_file(&st, D "missing.safetensors"), MLXN_ERR_IO);
    CHECK(msg_has("missing.safetensors") && msg_has("No such file"), "io message: %s", mlxn_last_error());
}

static void test_writer(void) {
    char dir[] = "/tmp/mlxn_io_XXXXXX";
    if (!mkdtemp(dir)) {
        CHECK(0, "mkdtemp");
        return;
    }
    char path[256];
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    float a[6] = {1, 2, 3, 4, 5, 6};
    uint16_t b[4] = {0x3c00, 0x4000, 0x4200, 0x4400};
    uint8_t c[3] = {7, 8, 9};
    mlxn_st_write_tensor ts[3] = {
        {.name = "z.last", .dtype = MLXN_F32, .ndim = 2, .shape = {2, 3}, .data = a, .nbytes = 24},
        {.name = "a.first", .dtype = MLXN_BF16, .ndim = 1, .shape = {4}, .data = b, .nbytes = 8},
        {.name = "m.mid", .dtype = MLXN_U8, .ndim = 1, .shape = {3}, .data = c, .nbytes = 3},
    };
    const char *meta[] = {"format", "mlx", "quant", "4bit"};
    CHECK_OK(mlxn_safetensors_write(path, 3, ts, 2, meta));
    size_t n;
    uint8_t *raw = load(path, &n);
    uint64_t hl;
    memcpy(&hl, raw, 8);
    CHECK(hl % 8 == 0, "header length %llu multiple of 8", (unsigned long long)hl);
    /* Data is in name order: a.first, m.mid, z.last. */
    CHECK(memcmp(raw + 8 + hl, b, 8) == 0 && memcmp(raw + 8 + hl + 8, c, 3) == 0 &&
              memcmp(raw + 8 + hl + 11, a, 24) == 0, "data in name order");
    free(raw);
    mlxn_safetensors *st;
    CHECK_OK(mlxn_safetensors_open_file(&st, path));
    if (st) {
        const mlxn_st_tensor *t = mlxn_safetensors_find(st, "z.last");
        CHECK(t && t->dtype == MLXN_F32 && t->shape[1] == 3 && memcmp(t->data, a, 24) == 0, "round trip f32");
        t = mlxn_safetensors_find(st, "a.first");
        CHECK(t && t->dtype == MLXN_BF16 && memcmp(t->data, b, 8) == 0, "round trip bf16");
        const char *q = mlxn_safetensors_meta_find(st, "quant");
        CHECK(q && strcmp(q, "4bit") == 0, "round trip metadata");
        mlxn_safetensors_close(st);
    }
    /* Byte-identical to the Python library for a one-dtype file. */
    CHECK_OK(mlxn_safetensors_open_file(&st, D "sharded/model-00001-of-00002.safetensors"));
    if (st) {
        mlxn_st_write_tensor w[2];
        for (size_t i = 0; i < 2; i++) {
            const mlxn_st_tensor *t = mlxn_safetensors_at(st, i);
            w[i] = (mlxn_st_write_tensor){.name = t->name, .dtype = t->dtype, .ndim = t->ndim,
                                          .data = t->data, .nbytes = t->nbytes};
            memcpy(w[i].shape, t->shape, sizeof w[i].shape);
        }
        const char *m[] = {"format", "pt"};
        CHECK_OK(mlxn_safetensors_write(path, 2, w, 1, m));
        size_t n1, n2;
        uint8_t *x = load(path, &n1), *y = load(D "sharded/model-00001-of-00002.safetensors", &n2);
        CHECK(n1 == n2 && memcmp(x, y, n1) == 0, "writer output identical to Python's (%zu vs %zu bytes)", n1, n2);
        free(x);
        free(y);
        mlxn_safetensors_close(st);
    }
    /* Writer rejects bad input before writing anything. */
    mlxn_st_write_tensor dup[2] = {ts[0], ts[0]};
    CHECK_STATUS(mlxn_safetensors_write(path, 2, dup, 0, NULL), MLXN_ERR_INVALID_ARG);
    mlxn_st_write_tensor bad = ts[0];
    bad.nbytes = 20;
    CHECK_STATUS(mlxn_safetensors_write(path, 1, &bad, 0, NULL), MLXN_ERR_SHAPE);
    bad = ts[0];
    bad.dtype = MLXN_Q4_0;
    CHECK_STATUS(mlxn_safetensors_write(path, 1, &bad, 0, NULL), MLXN_ERR_DTYPE);
    const char *dupm[] = {"k", "1", "k", "2"};
    CHECK_STATUS(mlxn_safetensors_write(path, 1, ts, 2, dupm), MLXN_ERR_INVALID_ARG);
    CHECK(msg_has("duplicate metadata key 'k'"), "msg: %s", mlxn_last_error());

    /* A directory with a single model.safetensors and no index. */
    CHECK_OK(mlxn_safetensors_write(path, 3, ts, 0, NULL));
    mlxn_st_shards *sh;
    CHECK_OK(mlxn_st_shards_open(&sh, dir));
    CHECK(sh && mlxn_st_shards_file_count(sh) == 1 && mlxn_st_shards_count(sh) == 3, "single-file dir");
    mlxn_st_shards_close(sh);
    unlink(path);
    CHECK_STATUS(mlxn_st_shards_open(&sh, dir), MLXN_ERR_IO);
    rmdir(dir);
}

static void test_shards(void) {
    mlxn_st_shards *sh;
    CHECK_OK(mlxn_st_shards_open(&sh, D "sharded"));
    if (!sh) return;
    CHECK(mlxn_st_shards_file_count(sh) == 2 && mlxn_st_shards_count(sh) == 3, "shards %zu files %zu tensors",
          mlxn_st_shards_file_count(sh), mlxn_st_shards_count(sh));
    const mlxn_st_tensor *t = mlxn_st_shards_find(sh, "lm_head.weight");
    int bad = 0;
    for (int i = 0; t && i < 6; i++) {
        uint16_t h;
        memcpy(&h, (const uint8_t *)t->data + 2 * i, 2);
        bad += mlxn_f16_to_f32(h) != 2.0f * (float)i;
    }
    CHECK(t && t->dtype == MLXN_F16 && t->shape[0] == 3 && bad == 0, "lm_head from shard 2");
    t = mlxn_st_shards_find(sh, "model.embed.weight");
    CHECK(t && f32_at(t, 7) == 7.0f, "embed from shard 1");
    CHECK(strcmp(mlxn_st_shards_at(sh, 0)->name, "lm_head.weight") == 0, "name order across shards");
    CHECK_STATUS(mlxn_st_shards_get(sh, "nope", &t), MLXN_ERR_NOT_FOUND);
    mlxn_st_shards_close(sh);
    mlxn_st_shards_close(NULL);

    /* Hostile index files. */
    char dir[] = "/tmp/mlxn_io_XXXXXX", p[256];
    if (!mkdtemp(dir)) return;
    static const struct {
        const char *json;
        mlxn_status want;
        const char *frag;
    } cases[] = {
        {"{\"weight_map\": {\"x\": \"../etc/passwd\"}}", MLXN_ERR_FORMAT, "expected a file name"},
        {"{\"weight_map\": {\"x\": 3}}", MLXN_ERR_FORMAT, "number"},
        {"{\"weight_map\": []}", MLXN_ERR_FORMAT, "weight_map"},
        {"{\"weight_map\": {}}", MLXN_ERR_FORMAT, "empty"},
        {"{\"weight_map\": {\"x\": \"absent.safetensors\"}}", MLXN_ERR_IO, "absent.safetensors"},
        {"{\"weight_map\": {\"x\": \"model.safetensors\"}}", MLXN_ERR_FORMAT, "'x'"},
        {"{\"weight_map\": ", MLXN_ERR_FORMAT, "invalid JSON"},
    };
    float v = 1;
    mlxn_st_write_tensor w = {.name = "y", .dtype = MLXN_F32, .ndim = 1, .shape = {1}, .data = &v, .nbytes = 4};
    snprintf(p, sizeof p, "%s/model.safetensors", dir);
    mlxn_safetensors_write(p, 1, &w, 0, NULL);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        snprintf(p, sizeof p, "%s/model.safetensors.index.json", dir);
        FILE *f = fopen(p, "w");
        fputs(cases[i].json, f);
        fclose(f);
        mlxn_status s = mlxn_st_shards_open(&sh, dir);
        CHECK(s == cases[i].want && msg_has(cases[i].frag) && !sh, "index case %zu: %s '%s'", i,
              mlxn_status_name(s), mlxn_last_error());
        mlxn_st_shards_close(sh);
    }
    unlink(p);
    snprintf(p, sizeof p, "%s/model.safetensors", dir);
    unlink(p);
    rmdir(dir);
}

/* A file from a header string and `data_len` zero bytes. */
static bytes st_file(const char *hdr, size_t data_len) {
    bytes b = {0};
    put_u64(&b, strlen(hdr));
    put(&b, hdr, strlen(hdr));
    put_zeros(&b, data_len);
    return b;
}

static void exercise(const uint8_t *p, size_t n, int *n_ok) {
    mlxn_safetensors *st = NULL;
    mlxn_status s = mlxn_safetensors_open_memory(&st, p, n, NULL);
    if (s == MLXN_OK) {
        (*n_ok)++;
        for (size_t i = 0; i < mlxn_safetensors_count(st); i++) {
            const mlxn_st_tensor *t = mlxn_safetensors_at(st, i);
            touch(t->data, t->nbytes);
            if (mlxn_safetensors_find(st, t->name) != t) CHECK(0, "find after fuzz");
        }
        mlxn_safetensors_close(st);
    } else {
        if (!mlxn_last_error()[0]) CHECK(0, "failure without a message");
        if (st) CHECK(0, "out not NULL on failure");
    }
}

static void test_hostile(void) {
    size_t n;
    uint8_t *orig = load(D "small.safetensors", &n);
    int fails = 0, n_ok = 0;
    for (size_t cut = 0; cut < n; cut++) {
        uint8_t *p = dup_bytes(orig, cut);
        mlxn_safetensors *st = NULL;
        mlxn_status s = mlxn_safetensors_open_memory(&st, p, cut, "cut");
        if (s != MLXN_ERR_FORMAT || st || !mlxn_last_error()[0]) {
            if (fails++ < 5) fprintf(stderr, "  cut %zu: %s %s\n", cut, mlxn_status_name(s), mlxn_last_error());
        }
        mlxn_safetensors_close(st);
        free(p);
    }
    CHECK(fails == 0, "every truncation of small.safetensors (%zu) is MLXN_ERR_FORMAT: %d not", n, fails);
    for (int it = 0; it < 20000; it++) {
        uint8_t *p = dup_bytes(orig, n);
        int flips = rng_int(1, 4);
        for (int k = 0; k < flips; k++) {
            size_t at = (it & 1) ? (size_t)rng_int(0, (int)n - 1) : (size_t)rng_int(0, 40);
            p[at] = (uint8_t)rng_u64();
        }
        exercise(p, n, &n_ok);
        free(p);
    }
    CHECK(1, "20000 random flips of small.safetensors: %d still opened", n_ok);
    printf("safetensors: %zu truncations, 20000 flips (%d still valid)\n", n, n_ok);
    free(orig);

    static const struct {
        const char *hdr;
        size_t data;
        mlxn_status want;
        const char *frag;
    } cases[] = {
        {"{\"x\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 4, MLXN_ERR_FORMAT,
         "tensor 'x' data ends at byte 70, file has 66"},
        {"{\"x\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},\"y\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}",
         12, MLXN_ERR_FORMAT, "overlaps"},
        {"{\"x\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", 8, MLXN_ERR_FORMAT, "gap"},
        {"{\"x\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 8, MLXN_ERR_FORMAT,
         "cover 4 bytes of data, the file has 8"},
        {"{\"x\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}", 8, MLXN_ERR_FORMAT,
         "hold 8 bytes, 3 elements of F32 need 12"},
        {"{\"x\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296,4294967296],\"data_offsets\":[0,8]}}", 8,
         MLXN_ERR_FORMAT, "overflows"},
        {"{\"x\":{\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,0]}}", 0, MLXN_ERR_FORMAT, "dim 0 is -1"},
        {"{\"x\":{\"dtype\":\"F32\",\"shape\":[1.5],\"data_offsets\":[0,0]}}", 0, MLXN_ERR_FORMAT, "dim 0 is 1.5"},
        {"{\"x\":{\"dtype\":\"F32\",\"shape\":[\"2\"],\"data_offsets\":[0,8]}}", 8, MLXN_ERR_FORMAT, "dim 0 is string"},
        {"{\"x\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},\"x\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}",
         8, MLXN_ERR_FORMAT, "duplicate tensor name 'x'"},
        {"{\"x\":{\"dtype\":\"F33\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4, MLXN_ERR_FORMAT, "unknown dtype 'F33'"},
        {"{\"x\":{\"dtype\":7,\"shape\":[1],\"data_offsets\":[0,4]}}", 4, MLXN_ERR_FORMAT, "'dtype' is number"},
        {"{\"x\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,0]}}", 4, MLXN_ERR_FORMAT, "end before begin"},
        {"{\"x\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0]}}", 4, MLXN_ERR_FORMAT, "data_offsets"},
        {"{\"x\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1],\"data_offsets\":[0,4]}}", 4, MLXN_ERR_UNSUPPORTED,
         "tensor 'x' has 5 dims, mlxn supports at most 4"},
        {"{\"__metadata__\":{\"a\":1}}", 0, MLXN_ERR_FORMAT, "__metadata__ 'a' is number"},
        {"{\"__metadata__\":[]}", 0, MLXN_ERR_FORMAT, "__metadata__ is array"},
        {"{\"x\":[]}", 0, MLXN_ERR_FORMAT, "tensor 'x' entry is array"},
        {"{\"x\":", 0, MLXN_ERR_FORMAT, "invalid JSON"},
        {"{} junk", 0, MLXN_ERR_FORMAT, "trailing data"},
        {"[1]", 0, MLXN_ERR_FORMAT, "start with '{'"},
        {"{}", 3, MLXN_ERR_FORMAT, "no tensors, but 3 bytes"},
        {"{\"x\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[0,0]}}  ", 0, MLXN_OK, ""},
        {"{}", 0, MLXN_OK, ""},
        {"{\"a\":[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]}",
         0, MLXN_ERR_FORMAT, "nesting deeper than 64"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        bytes b = st_file(cases[i].hdr, cases[i].data);
        uint8_t *p = dup_bytes(b.p, b.n);
        mlxn_safetensors *st = NULL;
        mlxn_status s = mlxn_safetensors_open_memory(&st, p, b.n, NULL);
        CHECK(s == cases[i].want && msg_has(cases[i].frag) && (s == MLXN_OK) == (st != NULL), "case %zu: %s '%s' (want %s '%s')", i,
              mlxn_status_name(s), mlxn_last_error(), mlxn_status_name(cases[i].want), cases[i].frag);
        mlxn_safetensors_close(st);
        free(p);
        free(b.p);
    }
    /* Found by fuzzing: cJSON reads a raw NUL as whitespace. */
    static const uint8_t nulhdr[] = {4, 0, 0, 0, 0, 0, 0, 0, '{', 0, 0, '}'};
    mlxn_safetensors *stn = NULL;
    CHECK_STATUS(mlxn_safetensors_open_memory(&stn, nulhdr, sizeof nulhdr, NULL), MLXN_ERR_FORMAT);
    CHECK(msg_has("NUL byte at line 1 column 2"), "msg: %s", mlxn_last_error());
    /* Header length past the end, and a file shorter than the length field. */
    bytes b = st_file("{}", 0);
    uint64_t big = 1000;
    memcpy(b.p, &big, 8);
    mlxn_safetensors *st = NULL;
    CHECK_STATUS(mlxn_safetensors_open_memory(&st, b.p, b.n, "f"), MLXN_ERR_FORMAT);
    CHECK(msg_has("header length 1000 runs past the end of the file (2 bytes follow)"), "msg: %s",
          mlxn_last_error());
    big = UINT64_MAX;
    memcpy(b.p, &big, 8);
    CHECK_STATUS(mlxn_safetensors_open_memory(&st, b.p, b.n, "f"), MLXN_ERR_FORMAT);
    CHECK_STATUS(mlxn_safetensors_open_memory(&st, b.p, 5, "f"), MLXN_ERR_FORMAT);
    CHECK(msg_has("5 bytes"), "msg: %s", mlxn_last_error());
    free(b.p);
}

static mlxn_status open_close_st(void) {
    mlxn_safetensors *st = NULL;
    mlxn_status s = mlxn_safetensors_open_file(&st, D "small.safetensors");
    mlxn_safetensors_close(st);
    if (s) return s;
    mlxn_st_shards *sh = NULL;
    s = mlxn_st_shards_open(&sh, D "sharded");
    mlxn_st_shards_close(sh);
    if (s) return s;
    float v[2] = {1, 2};
    mlxn_st_write_tensor w[2] = {
        {.name = "b", .dtype = MLXN_F32, .ndim = 1, .shape = {1}, .data = v, .nbytes = 4},
        {.name = "a", .dtype = MLXN_F32, .ndim = 1, .shape = {1}, .data = v + 1, .nbytes = 4},
    };
    const char *m[] = {"k", "v"};
    s = mlxn_safetensors_write("/tmp/mlxn_io_alloc_test.safetensors", 2, w, 1, m);
    remove("/tmp/mlxn_io_alloc_test.safetensors");
    return s;
}

/* A model-sized table: 1000 tensors written, read back, each found by name. */
static void test_many(void) {
    enum { N = 1000 };
    static mlxn_st_write_tensor w[N];
    static char names[N][48];
    static uint16_t vals[N][3];
    for (int i = 0; i < N; i++) {
        snprintf(names[i], sizeof names[i], "model.layers.%d.mlp.w%d.weight", (i * 7919) % N, i % 3);
        for (int k = 0; k < 3; k++) vals[i][k] = (uint16_t)(i * 3 + k);
        w[i] = (mlxn_st_write_tensor){.name = names[i], .dtype = MLXN_U16, .ndim = 2, .shape = {1, 3},
                                      .data = vals[i], .nbytes = 6};
    }
    const char *path = "/tmp/mlxn_io_many.safetensors";
    CHECK_OK(mlxn_safetensors_write(path, N, w, 0, NULL));
    mlxn_safetensors *st = NULL;
    CHECK_OK(mlxn_safetensors_open_file(&st, path));
    int bad = 0;
    for (int i = 0; st && i < N; i++) {
        const mlxn_st_tensor *t = mlxn_safetensors_find(st, names[i]);
        if (!t || t->nbytes != 6 || memcmp(t->data, vals[i], 6) != 0) bad++;
    }
    CHECK(st && mlxn_safetensors_count(st) == N && bad == 0, "1000 tensors: %d lookups wrong", bad);
    printf("safetensors: wrote and looked up %d tensors\n", N);
    mlxn_safetensors_close(st);
    remove(path);
}

/* Resident pages of this process, in bytes (/proc/self/statm), 0 if unknown. */
static size_t rss_bytes(void) {
    FILE *f = fopen("/proc/self/statm", "r");
    unsigned long size = 0, res = 0;
    if (f && fscanf(f, "%lu %lu", &size, &res) != 2) res = 0;
    if (f) fclose(f);
    return (size_t)res * (size_t)sysconf(_SC_PAGESIZE);
}

/* mlxn_mapfile_drop: a 64 MiB mapped file read through takes its pages into
 * the process; dropping all but its first and last 1 MiB gives at least
 * 60 MiB back, and the bytes read after that are still the file's. A range
 * outside the mapping is ignored. */
static void test_mapfile_drop(void) {
    const size_t n = (size_t)64 << 20;
    char path[] = "/tmp/mlxn_drop_XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0, "mkstemp");
    if (fd < 0) return;
    uint8_t *buf = malloc(1 << 20);
    for (size_t i = 0; i < (1 << 20); i++) buf[i] = (uint8_t)(i * 131 + 7);
    bool ok = true;
    for (size_t o = 0; o < n; o += 1 << 20) ok = ok && write(fd, buf, 1 << 20) == (1 << 20);
    close(fd);
    CHECK(ok, "writing %s", path);
    mlxn_mapfile mf = {0};
    CHECK_OK(mlxn_mapfile_open(&mf, path));
    if (mf.data && mf.size == n) {
        uint64_t sum0 = 0, sum1 = 0;
        for (size_t i = 0; i < n; i += 64) sum0 += mf.data[i];
        size_t r0 = rss_bytes();
        mlxn_mapfile_drop(&mf, buf, 1 << 20); /* not in the mapping: nothing */
        mlxn_mapfile_drop(&mf, mf.data + (1 << 20), n - (2 << 20));
        size_t r1 = rss_bytes();
        for (size_t i = 0; i < n; i += 64) sum1 += mf.data[i];
        CHECK(r0 >= r1 + ((size_t)60 << 20), "drop gave back %.1f MiB of 62 (RSS %.1f -> %.1f MiB)",
              ((double)r0 - (double)r1) / 1048576.0, (double)r0 / 1048576.0, (double)r1 / 1048576.0);
        CHECK(sum0 == sum1, "the bytes read after the drop are the file's (%llu vs %llu)", (unsigned long long)sum0,
              (unsigned long long)sum1);
        printf("  mapfile_drop: RSS %.1f -> %.1f MiB, bytes unchanged\n", (double)r0 / 1048576.0,
               (double)r1 / 1048576.0);
    }
    mlxn_mapfile_close(&mf);
    free(buf);
    unlink(path);
}

int main(void) {
    test_mapfile_drop();
    test_many();
    walk_alloc_failures("safetensors open/shards/write", open_close_st, 200);
    test_small();
    test_writer();
    test_shards();
    test_hostile();
    return test_summary("test_io_safetensors");
}
