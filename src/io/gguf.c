/* gguf.c — GGUF v2/v3 reader over a mapped file.
 *
 * Layout (little-endian): "GGUF", u32 version, u64 n_tensors, u64 n_kv;
 * n_kv × {string key, u32 type, value}; n_tensors × {string name, u32 n_dims,
 * u64 ne[n_dims] (innermost first), u32 ggml type, u64 offset}; padding to
 * general.alignment (default 32); the data section. A string is u64 length +
 * bytes (no NUL); an array is u32 element type + u64 count + elements.
 * Every count is checked against the bytes that remain before anything is
 * allocated for it, so a hostile file can make us allocate at most a small
 * multiple of its own size. */
#include "io/io.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

_Static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "gguf reader assumes a little-endian host");

/* ------------------------------------------------------------ ggml types */

typedef struct ggml_type_info {
    const char *name; /* NULL: id not assigned (or removed) */
    uint32_t blck;
    uint32_t size;
    mlxn_dtype dtype; /* MLXN_DTYPE_COUNT: mlxn has no dtype for it */
} ggml_type_info;

#define NO_DT MLXN_DTYPE_COUNT
/* Block sizes as in ggml.c's type_traits (checked against gguf-py's
 * GGML_QUANT_SIZES by the test data script). */
static const ggml_type_info k_ggml[] = {
    [0] = {"f32", 1, 4, MLXN_F32},        [1] = {"f16", 1, 2, MLXN_F16},
    [2] = {"q4_0", 32, 18, MLXN_Q4_0},    [3] = {"q4_1", 32, 20, MLXN_Q4_1},
    [6] = {"q5_0", 32, 22, NO_DT},        [7] = {"q5_1", 32, 24, NO_DT},
    [8] = {"q8_0", 32, 34, MLXN_Q8_0},    [9] = {"q8_1", 32, 36, NO_DT},
    [10] = {"q2_k", 256, 84, NO_DT},      [11] = {"q3_k", 256, 110, NO_DT},
    [12] = {"q4_k", 256, 144, MLXN_Q4_K}, [13] = {"q5_k", 256, 176, MLXN_Q5_K},
    [14] = {"q6_k", 256, 210, MLXN_Q6_K}, [15] = {"q8_k", 256, 292, NO_DT},
    [16] = {"iq2_xxs", 256, 66, NO_DT},   [17] = {"iq2_xs", 256, 74, NO_DT},
    [18] = {"iq3_xxs", 256, 98, NO_DT},   [19] = {"iq1_s", 256, 50, NO_DT},
    [20] = {"iq4_nl", 32, 18, NO_DT},     [21] = {"iq3_s", 256, 110, NO_DT},
    [22] = {"iq2_s", 256, 82, NO_DT},     [23] = {"iq4_xs", 256, 136, NO_DT},
    [24] = {"i8", 1, 1, MLXN_I8},         [25] = {"i16", 1, 2, NO_DT},
    [26] = {"i32", 1, 4, MLXN_I32},       [27] = {"i64", 1, 8, NO_DT},
    [28] = {"f64", 1, 8, NO_DT},          [29] = {"iq1_m", 256, 56, NO_DT},
    [30] = {"bf16", 1, 2, MLXN_BF16},     [34] = {"tq1_0", 256, 54, NO_DT},
    [35] = {"tq2_0", 256, 66, NO_DT},     [39] = {"mxfp4", 32, 17, NO_DT},
};
#define N_GGML (sizeof k_ggml / sizeof k_ggml[0])

static const ggml_type_info *ggml_info(uint32_t id) {
    return id < N_GGML && k_ggml[id].name ? &k_ggml[id] : NULL;
}

const char *mlxn_ggml_type_name(uint32_t id) {
    const ggml_type_info *t = ggml_info(id);
    return t ? t->name : "?";
}

mlxn_status mlxn_gguf_dtype_from_ggml(mlxn_dtype *out, uint32_t id) {
    const ggml_type_info *t = ggml_info(id);
    if (!t || t->dtype == NO_DT)
        return mlxn_err(MLXN_ERR_UNSUPPORTED, "gguf: ggml type %u (%s) is not supported by mlxn", id,
                        t ? t->name : "unknown");
    if (out) *out = t->dtype;
    return MLXN_OK;
}

static const char *const k_type_names[] = {
    "u8", "i8", "u16", "i16", "u32", "i32", "f32", "bool", "string", "array", "u64", "i64", "f64",
};
_Static_assert(sizeof k_type_names / sizeof k_type_names[0] == MLXN_GGUF_TYPE_COUNT,
               "gguf type name table out of date");
static const uint8_t k_type_size[MLXN_GGUF_TYPE_COUNT] = {1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8};

const char *mlxn_gguf_type_name(mlxn_gguf_type t) {
    return (unsigned)t < MLXN_GGUF_TYPE_COUNT ? k_type_names[t] : "?";
}

/* ------------------------------------------------------------ the object */

typedef struct gguf_kv {
    char *key;
    mlxn_gguf_value v;
} gguf_kv;

struct mlxn_gguf {
    mlxn_mapfile mf; /* owned mapping (open_file), else zeroed */
    uint32_t version;
    size_t alignment;
    size_t data_offset;
    size_t n_kv;
    gguf_kv *kv;
    const gguf_kv **kv_by_key;
    size_t n_t;
    mlxn_gguf_tensor *t;
    const mlxn_gguf_tensor **t_by_name;
};

static void value_free(mlxn_gguf_value *v) {
    mlxn_free((void *)v->str);
    mlxn_free((void *)v->strs);
    if (v->items) {
        for (uint64_t i = 0; i < v->count; i++) value_free((mlxn_gguf_value *)&v->items[i]);
        mlxn_free((void *)v->items);
    }
    memset(v, 0, sizeof *v);
}

void mlxn_gguf_drop(const mlxn_gguf *g, const void *p, size_t n) {
    if (g) mlxn_mapfile_drop(&g->mf, p, n);
}

void mlxn_gguf_close(mlxn_gguf *g) {
    if (!g) return;
    for (size_t i = 0; i < g->n_kv; i++) {
        mlxn_free(g->kv[i].key);
        value_free(&g->kv[i].v);
    }
    mlxn_free(g->kv);
    mlxn_free(g->kv_by_key);
    for (size_t i = 0; i < g->n_t; i++) mlxn_free((void *)g->t[i].name);
    mlxn_free(g->t);
    mlxn_free(g->t_by_name);
    mlxn_mapfile_close(&g->mf);
    mlxn_free(g);
}

/* ------------------------------------------------------------ the cursor */

typedef struct rd {
    const uint8_t *p;
    size_t size;
    size_t pos;
} rd;

static size_t rd_left(const rd *r) { return r->size - r->pos; }

static mlxn_status truncated(const rd *r, const char *what, uint64_t need) {
    return mlxn_err(MLXN_ERR_FORMAT, "gguf: truncated at byte %zu reading %s: need %llu bytes, %zu remain",
                    r->pos, what, (unsigned long long)need, rd_left(r));
}

static mlxn_status rd_bytes(rd *r, void *dst, size_t n, const char *what) {
    if (n > rd_left(r)) return truncated(r, what, n);
    memcpy(dst, r->p + r->pos, n);
    r->pos += n;
    return MLXN_OK;
}
static mlxn_status rd_u32(rd *r, uint32_t *v, const char *what) { return rd_bytes(r, v, 4, what); }
static mlxn_status rd_u64(rd *r, uint64_t *v, const char *what) { return rd_bytes(r, v, 8, what); }

/* A string in place: length checked against the limit and what remains. */
static mlxn_status rd_str(rd *r, mlxn_gguf_str *s, const char *what) {
    uint64_t len = 0;
    size_t at = r->pos;
    mlxn_status st = rd_u64(r, &len, what);
    if (st) return st;
    if (len > MLXN_GGUF_MAX_STRING)
        return mlxn_err(MLXN_ERR_FORMAT, "gguf: %s at byte %zu has length %llu, limit is %llu", what, at,
                        (unsigned long long)len, (unsigned long long)MLXN_GGUF_MAX_STRING);
    if (len > rd_left(r)) return truncated(r, what, len);
    s->ptr = (const char *)r->p + r->pos;
    s->len = len;
    r->pos += (size_t)len;
    return MLXN_OK;
}

/* A NUL-terminated copy of a string that must not contain NUL. */
static mlxn_status rd_cstr(rd *r, char **out, const char *what) {
    mlxn_gguf_str s;
    mlxn_status st = rd_str(r, &s, what);
    if (st) return st;
    if (memchr(s.ptr, 0, (size_t)s.len))
        return mlxn_err(MLXN_ERR_FORMAT, "gguf: %s at byte %zu contains a NUL byte", what,
                        r->pos - (size_t)s.len);
    char *c = mlxn_malloc((size_t)s.len + 1);
    if (!c) return mlxn_err(MLXN_ERR_OUT_OF_MEMORY, "gguf: out of memory");
    memcpy(c, s.ptr, (size_t)s.len);
    c[s.len] = 0;
    *out = c;
    return MLXN_OK;
}

/* ------------------------------------------------------------ values */

static mlxn_status rd_value(rd *r, mlxn_gguf_type type, mlxn_gguf_value *v, int depth,
                            const char *key) {
    v->type = type;
    switch (type) {
    case MLXN_GGUF_U8: case MLXN_GGUF_U16: case MLXN_GGUF_U32: case MLXN_GGUF_U64: case MLXN_GGUF_BOOL: {
        uint64_t u = 0;
        mlxn_status s = rd_bytes(r, &u, k_type_size[type], key);
        v->num.u = u;
        return s;
    }
    case MLXN_GGUF_I8: case MLXN_GGUF_I16: case MLXN_GGUF_I32: case MLXN_GGUF_I64: {
        uint64_t u = 0;
        unsigned n = k_type_size[type];
        mlxn_status s = rd_bytes(r, &u, n, key);
        if (n < 8 && (u >> (8 * n - 1)) & 1) u |= ~(uint64_t)0 << (8 * n); /* sign-extend */
        v->num.i = (int64_t)u;
        return s;
    }
    case MLXN_GGUF_F32: {
        float f;
        mlxn_status s = rd_bytes(r, &f, 4, key);
        v->num.f = (double)f;
        return s;
    }
    case MLXN_GGUF_F64:
        return rd_bytes(r, &v->num.f, 8, key);
    case MLXN_GGUF_STRING: {
        mlxn_gguf_str s;
        mlxn_status st = rd_str(r, &s, key);
        if (st) return st;
        char *c = mlxn_malloc((size_t)s.len + 1);
        if (!c) return mlxn_err(MLXN_ERR_OUT_OF_MEMORY, "gguf: out of memory");
        memcpy(c, s.ptr, (size_t)s.len);
        c[s.len] = 0;
        v->str = c;
        v->str_len = s.len;
        return MLXN_OK;
    }
    case MLXN_GGUF_ARRAY: {
        if (depth >= MLXN_GGUF_MAX_DEPTH)
            return mlxn_err(MLXN_ERR_FORMAT, "gguf: key '%s': arrays nested deeper than %d", key,
                            MLXN_GGUF_MAX_DEPTH);
        uint32_t et;
        uint64_t n;
        mlxn_status s = rd_u32(r, &et, key);
        if (s) return s;
        if (et >= MLXN_GGUF_TYPE_COUNT)
            return mlxn_err(MLXN_ERR_FORMAT, "gguf: key '%s': array element type %u is not a GGUF type",
                            key, et);
        if ((s = rd_u64(r, &n, key))) return s;
        if (n > MLXN_GGUF_MAX_ARRAY)
            return mlxn_err(MLXN_ERR_FORMAT, "gguf: key '%s': array of %llu elements, limit is %llu", key,
                            (unsigned long long)n, (unsigned long long)MLXN_GGUF_MAX_ARRAY);
        /* Smallest encoding of one element: fixed size, or a string's / an
         * array's own header. */
        size_t min = et == MLXN_GGUF_STRING ? 8 : et == MLXN_GGUF_ARRAY ? 12 : k_type_size[et];
        if ((uint64_t)n * min > rd_left(r))
            return mlxn_err(MLXN_ERR_FORMAT,
                            "gguf: key '%s': array of %llu %s needs at least %llu bytes, %zu remain", key,
                            (unsigned long long)n, k_type_names[et], (unsigned long long)(n * min),
                            rd_left(r));
        v->elem_type = (mlxn_gguf_type)et;
        if (et == MLXN_GGUF_STRING) {
            mlxn_gguf_str *ss = n ? mlxn_calloc((size_t)n, sizeof *ss) : NULL;
            if (n && !ss) return mlxn_err(MLXN_ERR_OUT_OF_MEMORY, "gguf: out of memory");
            v->strs = ss;
            v->count = n;
            for (uint64_t i = 0; i < n; i++)
                if ((s = rd_str(r, &ss[i], key))) return s;
        } else if (et == MLXN_GGUF_ARRAY) {
            mlxn_gguf_value *items = n ? mlxn_calloc((size_t)n, sizeof *items) : NULL;
            if (n && !items) return mlxn_err(MLXN_ERR_OUT_OF_MEMORY, "gguf: out of memory");
            v->items = items;
            v->count = n; /* every item is zeroed, so close can free a partial array */
            for (uint64_t i = 0; i < n; i++)
                if ((s = rd_value(r, MLXN_GGUF_ARRAY, &items[i], depth + 1, key))) return s;
        } else {
            v->raw = r->p + r->pos;
            v->count = n;
            r->pos += (size_t)(n * min);
        }
        return MLXN_OK;
    }
    default:
        return mlxn_err(MLXN_ERR_FORMAT, "gguf: key '%s' has value type %u, not a GGUF type", key,
                        (unsigned)type);
    }
}

static int cmp_kv(const void *a, const void *b) {
    return strcmp((*(const gguf_kv *const *)a)->key, (*(const gguf_kv *const *)b)->key);
}
static int cmp_tname(const void *a, const void *b) {
    return strcmp((*(const mlxn_gguf_tensor *const *)a)->name, (*(const mlxn_gguf_tensor *const *)b)->name);
}
static int cmp_toff(const void *a, const void *b) {
    const mlxn_gguf_tensor *x = *(const mlxn_gguf_tensor *const *)a, *y = *(const mlxn_gguf_tensor *const *)b;
    if (x->offset != y->offset) return x->offset < y->offset ? -1 : 1;
    if (x->nbytes != y->nbytes) return x->nbytes < y->nbytes ? -1 : 1;
    return 0;
}

/* ------------------------------------------------------------ parse */

static mlxn_status rd_tensor(rd *r, mlxn_gguf_tensor *t, size_t idx) {
    char what[64];
    snprintf(what, sizeof what, "tensor %zu name", idx);
    char *name = NULL;
    mlxn_status s = rd_cstr(r, &name, what);
    if (s) return s;
    t->name = name;
    uint32_t nd;
    if ((s = rd_u32(r, &nd, "tensor n_dims"))) return s;
    if (nd > MLXN_MAX_DIMS)
        return mlxn_err(MLXN_ERR_FORMAT, "gguf: tensor '%s' has %u dims, at most %d allowed", name, nd,
                        MLXN_MAX_DIMS);
    t->ndim = (int)nd;
    uint64_t elems = 1;
    for (uint32_t k = 0; k < nd; k++) {
        uint64_t d;
        if ((s = rd_u64(r, &d, "tensor dims"))) return s;
        if (d > (uint64_t)INT64_MAX)
            return mlxn_err(MLXN_ERR_FORMAT, "gguf: tensor '%s': dim %u is negative (%lld)", name, k,
                            (long long)(int64_t)d);
        if (__builtin_mul_overflow(elems, d, &elems) || elems > (uint64_t)INT64_MAX)
            return mlxn_err(MLXN_ERR_FORMAT, "gguf: tensor '%s': element count overflows", name);
        t->ne[k] = (int64_t)d;
        t->shape[nd - 1 - k] = (int64_t)d;
    }
    uint32_t ty;
    if ((s = rd_u32(r, &ty, "tensor type"))) return s;
    if ((s = rd_u64(r, &t->offset, "tensor offset"))) return s;
    const ggml_type_info *ti = ggml_info(ty);
    if (!ti)
        return mlxn_err(MLXN_ERR_UNSUPPORTED, "gguf: tensor '%s' has unknown ggml type %u", name, ty);
    t->ggml_type = ty;
    t->dtype = ti->dtype;
    t->supported = ti->dtype != NO_DT;
    uint64_t ne0 = nd ? (uint64_t)t->ne[0] : 1;
    if (ne0 % ti->blck)
        return mlxn_err(MLXN_ERR_FORMAT,
                        "gguf: tensor '%s': row of %llu elements is not a multiple of the %s block size %u",
                        name, (unsigned long long)ne0, ti->name, ti->blck);
    uint64_t nb;
    if (__builtin_mul_overflow(elems / ti->blck, (uint64_t)ti->size, &nb) || nb > SIZE_MAX)
        return mlxn_err(MLXN_ERR_FORMAT, "gguf: tensor '%s': byte size overflows", name);
    t->nbytes = (size_t)nb;
    return MLXN_OK;
}

static mlxn_status parse(mlxn_gguf *g, const uint8_t *data, size_t size) {
    rd r = {data, size, 0};
    uint8_t magic[4];
    mlxn_status s = rd_bytes(&r, magic, 4, "magic");
    if (s) return s;
    if (memcmp(magic, "GGUF", 4) != 0)
        return mlxn_err(MLXN_ERR_FORMAT, "gguf: bad magic %02x %02x %02x %02x, expected 'GGUF'", magic[0],
                        magic[1], magic[2], magic[3]);
    uint32_t ver;
    if ((s = rd_u32(&r, &ver, "version"))) return s;
    if (ver == 1)
        return mlxn_err(MLXN_ERR_UNSUPPORTED, "gguf: version 1 files are not supported (only v2 and v3)");
    if (ver != 2 && ver != 3) {
        if ((ver & 0xffff) == 0)
            return mlxn_err(MLXN_ERR_UNSUPPORTED, "gguf: version 0x%08x looks byte-swapped (big-endian file)", ver);
        return mlxn_err(MLXN_ERR_UNSUPPORTED, "gguf: version %u is not supported (only v2 and v3)", ver);
    }
    g->version = ver;
    uint64_t nt, nkv;
    if ((s = rd_u64(&r, &nt, "tensor count")) || (s = rd_u64(&r, &nkv, "kv count"))) return s;
    if (nt > MLXN_GGUF_MAX_TENSORS)
        return mlxn_err(MLXN_ERR_FORMAT, "gguf: tensor count %llu is over the limit %llu",
                        (unsigned long long)nt, (unsigned long long)MLXN_GGUF_MAX_TENSORS);
    if (nkv > MLXN_GGUF_MAX_KV)
        return mlxn_err(MLXN_ERR_FORMAT, "gguf: kv count %llu is over the limit %llu",
                        (unsigned long long)nkv, (unsigned long long)MLXN_GGUF_MAX_KV);
    /* Smallest kv: key length 8 + 1 byte + type 4 + a 1-byte value. Smallest
     * tensor info: name 8 + 1, n_dims 4, type 4, offset 8. */
    if (nkv * 14 + nt * 25 > rd_left(&r))
        return mlxn_err(MLXN_ERR_FORMAT,
                        "gguf: %llu key/values and %llu tensor infos cannot fit in the %zu bytes that remain",
                        (unsigned long long)nkv, (unsigned long long)nt, rd_left(&r));

    g->kv = nkv ? mlxn_calloc((size_t)nkv, sizeof *g->kv) : NULL;
    g->t = nt ? mlxn_calloc((size_t)nt, sizeof *g->t) : NULL;
    if ((nkv && !g->kv) || (nt && !g->t)) return mlxn_err(MLXN_ERR_OUT_OF_MEMORY, "gguf: out of memory");
    for (uint64_t i = 0; i < nkv; i++) {
        gguf_kv *kv = &g->kv[i];
        char what[48];
        snprintf(what, sizeof what, "key %llu", (unsigned long long)i);
        if ((s = rd_cstr(&r, &kv->key, what))) return s;
        g->n_kv++;
        uint32_t ty;
        if ((s = rd_u32(&r, &ty, kv->key))) return s;
        if (ty >= MLXN_GGUF_TYPE_COUNT)
            return mlxn_err(MLXN_ERR_FORMAT, "gguf: key '%s' has value type %u, not a GGUF type", kv->key, ty);
        if ((s = rd_value(&r, (mlxn_gguf_type)ty, &kv->v, 0, kv->key))) return s;
    }
    if (g->n_kv) {
        g->kv_by_key = mlxn_malloc(g->n_kv * sizeof *g->kv_by_key);
        if (!g->kv_by_key) return mlxn_err(MLXN_ERR_OUT_OF_MEMORY, "gguf: out of memory");
        for (size_t i = 0; i < g->n_kv; i++) g->kv_by_key[i] = &g->kv[i];
        qsort(g->kv_by_key, g->n_kv, sizeof *g->kv_by_key, cmp_kv);
        for (size_t i = 1; i < g->n_kv; i++)
            if (strcmp(g->kv_by_key[i - 1]->key, g->kv_by_key[i]->key) == 0)
                return mlxn_err(MLXN_ERR_FORMAT, "gguf: duplicate key '%s'", g->kv_by_key[i]->key);
    }
    g->alignment = MLXN_GGUF_DEFAULT_ALIGNMENT;
    const mlxn_gguf_value *al = mlxn_gguf_find(g, "general.alignment");
    if (al) {
        if (al->type != MLXN_GGUF_U32)
            return mlxn_err(MLXN_ERR_FORMAT, "gguf: general.alignment is %s, expected u32",
                            k_type_names[al->type]);
        if (al->num.u == 0 || (al->num.u & (al->num.u - 1)))
            return mlxn_err(MLXN_ERR_FORMAT, "gguf: general.alignment %llu is not a power of two",
                            (unsigned long long)al->num.u);
        g->alignment = (size_t)al->num.u;
    }

    for (uint64_t i = 0; i < nt; i++) {
        g->n_t++;
        if ((s = rd_tensor(&r, &g->t[i], (size_t)i))) return s;
    }
    /* The data section starts at the next multiple of the alignment. A file
     * without tensors may end before it. */
    size_t pad = (g->alignment - r.pos % g->alignment) % g->alignment;
    g->data_offset = r.pos + pad;
    if (g->n_t) {
        g->t_by_name = mlxn_malloc(g->n_t * sizeof *g->t_by_name);
        if (!g->t_by_name) return mlxn_err(MLXN_ERR_OUT_OF_MEMORY, "gguf: out of memory");
        for (size_t i = 0; i < g->n_t; i++) {
            mlxn_gguf_tensor *t = &g->t[i];
            g->t_by_name[i] = t;
            if (t->offset % g->alignment)
                return mlxn_err(MLXN_ERR_FORMAT, "gguf: tensor '%s' offset %llu is not a multiple of the alignment %zu",
                                t->name, (unsigned long long)t->offset, g->alignment);
            uint64_t start, end;
            if (__builtin_add_overflow((uint64_t)g->data_offset, t->offset, &start) ||
                __builtin_add_overflow(start, (uint64_t)t->nbytes, &end) || end > size)
                return mlxn_err(MLXN_ERR_FORMAT, "gguf: tensor '%s' data ends at byte %llu, file has %zu",
                                t->name,
                                (unsigned long long)((uint64_t)g->data_offset + t->offset + t->nbytes), size);
            t->data = data + start;
        }
        /* No two tensors may share bytes. */
        qsort(g->t_by_name, g->n_t, sizeof *g->t_by_name, cmp_toff);
        for (size_t i = 1; i < g->n_t; i++) {
            const mlxn_gguf_tensor *a = g->t_by_name[i - 1], *b = g->t_by_name[i];
            if (b->offset < a->offset + a->nbytes)
                return mlxn_err(MLXN_ERR_FORMAT,
                                "gguf: tensor '%s' data [%llu, %llu) overlaps tensor '%s' [%llu, %llu)",
                                b->name, (unsigned long long)b->offset,
                                (unsigned long long)(b->offset + b->nbytes), a->name,
                                (unsigned long long)a->offset, (unsigned long long)(a->offset + a->nbytes));
        }
        qsort(g->t_by_name, g->n_t, sizeof *g->t_by_name, cmp_tname);
        for (size_t i = 1; i < g->n_t; i++)
            if (strcmp(g->t_by_name[i - 1]->name, g->t_by_name[i]->name) == 0)
                return mlxn_err(MLXN_ERR_FORMAT, "gguf: duplicate tensor name '%s'", g->t_by_name[i]->name);
    }
    return MLXN_OK;
}

mlxn_status mlxn_gguf_open_memory(mlxn_gguf **out, const void *data, size_t size, const char *label) {
    if (!out || (!data && size)) return mlxn_err(MLXN_ERR_INVALID_ARG, "gguf_open: NULL argument");
    *out = NULL;
    mlxn_gguf *g = mlxn_calloc(1, sizeof *g);
    if (!g) return mlxn_err(MLXN_ERR_OUT_OF_MEMORY, "gguf: out of memory");
    mlxn_status s = parse(g, data, size);
    if (s) {
        if (label) mlxn_err_prefix("%s", label);
        mlxn_gguf_close(g);
        return s;
    }
    *out = g;
    return MLXN_OK;
}

mlxn_status mlxn_gguf_open(mlxn_gguf **out, const mlxn_mapfile *mf) {
    if (!mf) return mlxn_err(MLXN_ERR_INVALID_ARG, "gguf_open: NULL mapfile");
    return mlxn_gguf_open_memory(out, mf->data, mf->size, mf->path);
}

mlxn_status mlxn_gguf_open_file(mlxn_gguf **out, const char *path) {
    if (!out) return mlxn_err(MLXN_ERR_INVALID_ARG, "gguf_open_file: NULL argument");
    *out = NULL;
    mlxn_mapfile mf = {0};
    mlxn_status s = mlxn_mapfile_open(&mf, path);
    if (s) return s;
    s = mlxn_gguf_open(out, &mf);
    if (s) {
        mlxn_mapfile_close(&mf);
        return s;
    }
    (*out)->mf = mf;
    return MLXN_OK;
}

/* ------------------------------------------------------------ queries */

uint32_t mlxn_gguf_version(const mlxn_gguf *g) { return g ? g->version : 0; }
size_t mlxn_gguf_alignment(const mlxn_gguf *g) { return g ? g->alignment : 0; }
size_t mlxn_gguf_data_offset(const mlxn_gguf *g) { return g ? g->data_offset : 0; }
size_t mlxn_gguf_kv_count(const mlxn_gguf *g) { return g ? g->n_kv : 0; }
const char *mlxn_gguf_kv_key(const mlxn_gguf *g, size_t i) {
    return g && i < g->n_kv ? g->kv[i].key : NULL;
}
const mlxn_gguf_value *mlxn_gguf_kv_value(const mlxn_gguf *g, size_t i) {
    return g && i < g->n_kv ? &g->kv[i].v : NULL;
}

const mlxn_gguf_value *mlxn_gguf_find(const mlxn_gguf *g, const char *key) {
    if (!g || !key || !g->kv_by_key) return NULL;
    size_t lo = 0, hi = g->n_kv;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(g->kv_by_key[mid]->key, key);
        if (c == 0) return &g->kv_by_key[mid]->v;
        if (c < 0) lo = mid + 1;
        else hi = mid;
    }
    return NULL;
}

size_t mlxn_gguf_tensor_count(const mlxn_gguf *g) { return g ? g->n_t : 0; }
const mlxn_gguf_tensor *mlxn_gguf_tensor_at(const mlxn_gguf *g, size_t i) {
    return g && i < g->n_t ? &g->t[i] : NULL;
}
const mlxn_gguf_tensor *mlxn_gguf_find_tensor(const mlxn_gguf *g, const char *name) {
    if (!g || !name || !g->t_by_name) return NULL;
    size_t lo = 0, hi = g->n_t;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(g->t_by_name[mid]->name, name);
        if (c == 0) return g->t_by_name[mid];
        if (c < 0) lo = mid + 1;
        else hi = mid;
    }
    return NULL;
}

mlxn_status mlxn_gguf_get_tensor(const mlxn_gguf *g, const char *name, const mlxn_gguf_tensor **out) {
    if (!out) return mlxn_err(MLXN_ERR_INVALID_ARG, "gguf_get_tensor: NULL argument");
    *out = NULL;
    const mlxn_gguf_tensor *t = mlxn_gguf_find_tensor(g, name);
    if (!t) return mlxn_err(MLXN_ERR_NOT_FOUND, "gguf: no tensor named '%s'", name ? name : "(null)");
    if (!t->supported)
        return mlxn_err(MLXN_ERR_UNSUPPORTED, "gguf: tensor '%s' has ggml type %u (%s), which mlxn does not support",
                        t->name, t->ggml_type, mlxn_ggml_type_name(t->ggml_type));
    *out = t;
    return MLXN_OK;
}

/* ------------------------------------------------------------ typed getters */

static bool is_signed_int(mlxn_gguf_type t) {
    return t == MLXN_GGUF_I8 || t == MLXN_GGUF_I16 || t == MLXN_GGUF_I32 || t == MLXN_GGUF_I64;
}
static bool is_unsigned_int(mlxn_gguf_type t) {
    return t == MLXN_GGUF_U8 || t == MLXN_GGUF_U16 || t == MLXN_GGUF_U32 || t == MLXN_GGUF_U64;
}

static mlxn_status lookup(const mlxn_gguf *g, const char *key, const mlxn_gguf_value **v) {
    if (!g || !key) return mlxn_err(MLXN_ERR_INVALID_ARG, "gguf_get: NULL argument");
    *v = mlxn_gguf_find(g, key);
    if (!*v) return mlxn_err(MLXN_ERR_NOT_FOUND, "gguf: key '%s' not found", key);
    return MLXN_OK;
}

static mlxn_status wrong_type(const char *key, const mlxn_gguf_value *v, const char *want) {
    return mlxn_err(MLXN_ERR_DTYPE, "gguf: key '%s' is %s, expected %s", key, k_type_names[v->type], want);
}

/* Integer value into [lo, hi] (as signed) or [0, uhi] for unsigned targets. */
static mlxn_status get_int(const mlxn_gguf *g, const char *key, bool want_signed, int64_t lo, int64_t hi,
                           uint64_t uhi, int64_t *si, uint64_t *ui) {
    const mlxn_gguf_value *v;
    mlxn_status s = lookup(g, key, &v);
    if (s) return s;
    bool neg = false;
    uint64_t mag;
    if (is_unsigned_int(v->type)) {
        mag = v->num.u;
    } else if (is_signed_int(v->type)) {
        neg = v->num.i < 0;
        mag = (uint64_t)v->num.i;
    } else {
        return wrong_type(key, v, "an integer");
    }
    if (want_signed) {
        int64_t x;
        if (neg) x = v->num.i;
        else if (mag > (uint64_t)INT64_MAX) goto range;
        else x = (int64_t)mag;
        if (x < lo || x > hi) goto range;
        *si = x;
    } else {
        if (neg || mag > uhi) goto range;
        *ui = mag;
    }
    return MLXN_OK;
range:
    if (neg)
        return mlxn_err(MLXN_ERR_RANGE, "gguf: key '%s' = %lld does not fit %s", key, (long long)v->num.i,
                        want_signed ? (hi == INT32_MAX ? "i32" : "i64") : (uhi == UINT32_MAX ? "u32" : "u64"));
    return mlxn_err(MLXN_ERR_RANGE, "gguf: key '%s' = %llu does not fit %s", key, (unsigned long long)mag,
                    want_signed ? (hi == INT32_MAX ? "i32" : "i64") : (uhi == UINT32_MAX ? "u32" : "u64"));
}

mlxn_status mlxn_gguf_get_u32(const mlxn_gguf *g, const char *key, uint32_t *v) {
    uint64_t u;
    mlxn_status s = get_int(g, key, false, 0, 0, UINT32_MAX, NULL, &u);
    if (!s) *v = (uint32_t)u;
    return s;
}
mlxn_status mlxn_gguf_get_u64(const mlxn_gguf *g, const char *key, uint64_t *v) {
    uint64_t u;
    mlxn_status s = get_int(g, key, false, 0, 0, UINT64_MAX, NULL, &u);
    if (!s) *v = u;
    return s;
}
mlxn_status mlxn_gguf_get_i32(const mlxn_gguf *g, const char *key, int32_t *v) {
    int64_t i;
    mlxn_status s = get_int(g, key, true, INT32_MIN, INT32_MAX, 0, &i, NULL);
    if (!s) *v = (int32_t)i;
    return s;
}
mlxn_status mlxn_gguf_get_i64(const mlxn_gguf *g, const char *key, int64_t *v) {
    int64_t i;
    mlxn_status s = get_int(g, key, true, INT64_MIN, INT64_MAX, 0, &i, NULL);
    if (!s) *v = i;
    return s;
}

mlxn_status mlxn_gguf_get_f64(const mlxn_gguf *g, const char *key, double *out) {
    const mlxn_gguf_value *v;
    mlxn_status s = lookup(g, key, &v);
    if (s) return s;
    if (v->type == MLXN_GGUF_F32 || v->type == MLXN_GGUF_F64) *out = v->num.f;
    else if (is_unsigned_int(v->type)) *out = (double)v->num.u;
    else if (is_signed_int(v->type)) *out = (double)v->num.i;
    else return wrong_type(key, v, "a number");
    return MLXN_OK;
}
mlxn_status mlxn_gguf_get_f32(const mlxn_gguf *g, const char *key, float *out) {
    double d;
    mlxn_status s = mlxn_gguf_get_f64(g, key, &d);
    if (!s) *out = (float)d;
    return s;
}
mlxn_status mlxn_gguf_get_bool(const mlxn_gguf *g, const char *key, bool *out) {
    const mlxn_gguf_value *v;
    mlxn_status s = lookup(g, key, &v);
    if (s) return s;
    if (v->type != MLXN_GGUF_BOOL) return wrong_type(key, v, "bool");
    *out = v->num.u != 0;
    return MLXN_OK;
}
mlxn_status mlxn_gguf_get_string(const mlxn_gguf *g, const char *key, const char **str, size_t *len) {
    const mlxn_gguf_value *v;
    mlxn_status s = lookup(g, key, &v);
    if (s) return s;
    if (v->type != MLXN_GGUF_STRING) return wrong_type(key, v, "string");
    *str = v->str;
    if (len) *len = (size_t)v->str_len;
    return MLXN_OK;
}
mlxn_status mlxn_gguf_get_array(const mlxn_gguf *g, const char *key, mlxn_gguf_type elem_type,
                                const mlxn_gguf_value **arr) {
    const mlxn_gguf_value *v;
    mlxn_status s = lookup(g, key, &v);
    if (s) return s;
    if (v->type != MLXN_GGUF_ARRAY) return wrong_type(key, v, "array");
    if (elem_type != MLXN_GGUF_TYPE_COUNT && v->elem_type != elem_type)
        return mlxn_err(MLXN_ERR_DTYPE, "gguf: key '%s' is an array of %s, expected an array of %s", key,
                        k_type_names[v->elem_type], mlxn_gguf_type_name(elem_type));
    *arr = v;
    return MLXN_OK;
}

/* ------------------------------------------------------------ array elements */

static mlxn_status arr_check(const mlxn_gguf_value *a, uint64_t i) {
    if (!a || a->type != MLXN_GGUF_ARRAY) return mlxn_err(MLXN_ERR_INVALID_ARG, "gguf: not an array value");
    if (i >= a->count)
        return mlxn_err(MLXN_ERR_RANGE, "gguf: index %llu past an array of %llu", (unsigned long long)i,
                        (unsigned long long)a->count);
    return MLXN_OK;
}

mlxn_status mlxn_gguf_arr_string(const mlxn_gguf_value *a, uint64_t i, mlxn_gguf_str *out) {
    mlxn_status s = arr_check(a, i);
    if (s) return s;
    if (a->elem_type != MLXN_GGUF_STRING)
        return mlxn_err(MLXN_ERR_DTYPE, "gguf: array of %s, expected strings", k_type_names[a->elem_type]);
    *out = a->strs[i];
    return MLXN_OK;
}

mlxn_status mlxn_gguf_arr_i64(const mlxn_gguf_value *a, uint64_t i, int64_t *out) {
    mlxn_status s = arr_check(a, i);
    if (s) return s;
    if (!a->raw)
        return mlxn_err(MLXN_ERR_DTYPE, "gguf: array of %s, expected integers", k_type_names[a->elem_type]);
    const uint8_t *p = a->raw + i * k_type_size[a->elem_type];
    switch (a->elem_type) {
    case MLXN_GGUF_U8: case MLXN_GGUF_BOOL: *out = p[0]; break;
    case MLXN_GGUF_I8: *out = (int8_t)p[0]; break;
    case MLXN_GGUF_U16: { uint16_t x; memcpy(&x, p, 2); *out = x; break; }
    case MLXN_GGUF_I16: { int16_t x; memcpy(&x, p, 2); *out = x; break; }
    case MLXN_GGUF_U32: { uint32_t x; memcpy(&x, p, 4); *out = x; break; }
    case MLXN_GGUF_I32: { int32_t x; memcpy(&x, p, 4); *out = x; break; }
    case MLXN_GGUF_I64: { int64_t x; memcpy(&x, p, 8); *out = x; break; }
    case MLXN_GGUF_U64: {
        uint64_t x;
        memcpy(&x, p, 8);
        if (x > (uint64_t)INT64_MAX)
            return mlxn_err(MLXN_ERR_RANGE, "gguf: array element %llu = %llu does not fit i64",
                            (unsigned long long)i, (unsigned long long)x);
        *out = (int64_t)x;
        break;
    }
    default:
        return mlxn_err(MLXN_ERR_DTYPE, "gguf: array of %s, expected integers", k_type_names[a->elem_type]);
    }
    return MLXN_OK;
}

mlxn_status mlxn_gguf_arr_f64(const mlxn_gguf_value *a, uint64_t i, double *out) {
    mlxn_status s = arr_check(a, i);
    if (s) return s;
    if (!a->raw)
        return mlxn_err(MLXN_ERR_DTYPE, "gguf: array of %s, expected numbers", k_type_names[a->elem_type]);
    const uint8_t *p = a->raw + i * k_type_size[a->elem_type];
    if (a->elem_type == MLXN_GGUF_F32) {
        float f;
        memcpy(&f, p, 4);
        *out = (double)f;
    } else if (a->elem_type == MLXN_GGUF_F64) {
        memcpy(out, p, 8);
    } else if (a->elem_type == MLXN_GGUF_U64) {
        uint64_t x;
        memcpy(&x, p, 8);
        *out = (double)x;
    } else {
        int64_t x;
        if (a->elem_type == MLXN_GGUF_BOOL || a->elem_type == MLXN_GGUF_STRING || a->elem_type == MLXN_GGUF_ARRAY)
            return mlxn_err(MLXN_ERR_DTYPE, "gguf: array of %s, expected numbers", k_type_names[a->elem_type]);
        if ((s = mlxn_gguf_arr_i64(a, i, &x))) return s;
        *out = (double)x;
    }
    return MLXN_OK;
}

mlxn_status mlxn_gguf_arr_f32(const mlxn_gguf_value *a, uint64_t i, float *out) {
    double d;
    mlxn_status s = mlxn_gguf_arr_f64(a, i, &d);
    if (!s) *out = (float)d;
    return s;
}

mlxn_status mlxn_gguf_arr_item(const mlxn_gguf_value *a, uint64_t i, const mlxn_gguf_value **item) {
    mlxn_status s = arr_check(a, i);
    if (s) return s;
    if (a->elem_type != MLXN_GGUF_ARRAY)
        return mlxn_err(MLXN_ERR_DTYPE, "gguf: array of %s, expected arrays", k_type_names[a->elem_type]);
    *item = &a->items[i];
    return MLXN_OK;
}
