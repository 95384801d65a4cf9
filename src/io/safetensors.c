/* safetensors.c — reader (mmap, zero-copy), writer and sharded-directory
 * helper for the safetensors format: 8-byte little-endian header length, a
 * JSON header {name: {dtype, shape, data_offsets}, "__metadata__": {...}},
 * then the raw data. The checks follow the reference implementation: the
 * tensors must tile the data section exactly, in offset order. */
#include "io/io.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct st_dtype {
    const char *name;
    size_t size;
    mlxn_dtype dtype; /* MLXN_DTYPE_COUNT: no mlxn dtype */
} st_dtype;

static const st_dtype k_st_dtypes[] = {
    {"F32", 4, MLXN_F32},     {"F16", 2, MLXN_F16},     {"BF16", 2, MLXN_BF16},
    {"U8", 1, MLXN_U8},       {"I8", 1, MLXN_I8},       {"U16", 2, MLXN_U16},
    {"U32", 4, MLXN_U32},     {"I32", 4, MLXN_I32},     {"I16", 2, MLXN_DTYPE_COUNT},
    {"I64", 8, MLXN_DTYPE_COUNT}, {"U64", 8, MLXN_DTYPE_COUNT}, {"F64", 8, MLXN_DTYPE_COUNT},
    {"BOOL", 1, MLXN_DTYPE_COUNT}, {"F8_E4M3", 1, MLXN_DTYPE_COUNT},
    {"F8_E5M2", 1, MLXN_DTYPE_COUNT}, {"F8_E8M0", 1, MLXN_DTYPE_COUNT},
};
#define N_ST_DTYPES (sizeof k_st_dtypes / sizeof k_st_dtypes[0])

const char *mlxn_safetensors_dtype_string(mlxn_dtype t) {
    for (size_t i = 0; i < N_ST_DTYPES; i++)
        if (k_st_dtypes[i].dtype == t && t != MLXN_DTYPE_COUNT) return k_st_dtypes[i].name;
    return NULL;
}

struct mlxn_safetensors {
    mlxn_mapfile mf; /* owned mapping (open_file), else zeroed */
    size_t n;
    mlxn_st_tensor *t; /* sorted by name */
    size_t n_meta;
    char **meta; /* 2 * n_meta strings: key, value */
};

void mlxn_safetensors_close(mlxn_safetensors *st) {
    if (!st) return;
    for (size_t i = 0; i < st->n; i++) mlxn_free((void *)st->t[i].name);
    mlxn_free(st->t);
    for (size_t i = 0; i < 2 * st->n_meta; i++) mlxn_free(st->meta[i]);
    mlxn_free(st->meta);
    mlxn_mapfile_close(&st->mf);
    mlxn_free(st);
}

static int cmp_name(const void *a, const void *b) {
    return strcmp(((const mlxn_st_tensor *)a)->name, ((const mlxn_st_tensor *)b)->name);
}
static int cmp_offset(const void *a, const void *b) {
    const mlxn_st_tensor *x = *(const mlxn_st_tensor *const *)a, *y = *(const mlxn_st_tensor *const *)b;
    if (x->offset != y->offset) return x->offset < y->offset ? -1 : 1;
    if (x->nbytes != y->nbytes) return x->nbytes < y->nbytes ? -1 : 1;
    return 0;
}

#define MAX_EXACT 9007199254740992.0 /* 2^53: larger JSON numbers are not exact */

/* A JSON number that must be an exact integer in [0, 2^53]. */
static bool json_uint(const cJSON *it, size_t *out) {
    if (!cJSON_IsNumber(it)) return false;
    double d = it->valuedouble;
    if (!(d >= 0 && d <= MAX_EXACT) || d != floor(d)) return false;
    *out = (size_t)d;
    return true;
}

/* Parse one tensor entry into *t (name already set). */
static mlxn_status parse_entry(const cJSON *e, mlxn_st_tensor *t, size_t data_size,
                               size_t data_start, const uint8_t *data) {
    const char *nm = t->name;
    if (!cJSON_IsObject(e))
        return mlxn_err(MLXN_ERR_FORMAT, "safetensors: tensor '%s' entry is %s, expected an object",
                        nm, mlxn_json_type_name(e));
    const cJSON *jd = cJSON_GetObjectItemCaseSensitive(e, "dtype");
    const cJSON *js = cJSON_GetObjectItemCaseSensitive(e, "shape");
    const cJSON *jo = cJSON_GetObjectItemCaseSensitive(e, "data_offsets");
    if (!cJSON_IsString(jd))
        return mlxn_err(MLXN_ERR_FORMAT, "safetensors: tensor '%s': 'dtype' is %s, expected a string",
                        nm, mlxn_json_type_name(jd));
    const st_dtype *dt = NULL;
    for (size_t i = 0; i < N_ST_DTYPES; i++)
        if (strcmp(k_st_dtypes[i].name, jd->valuestring) == 0) dt = &k_st_dtypes[i];
    if (!dt)
        return mlxn_err(MLXN_ERR_FORMAT, "safetensors: tensor '%s': unknown dtype '%.32s'", nm,
                        jd->valuestring);
    t->dtype_name = dt->name;
    t->dtype = dt->dtype;
    t->supported = dt->dtype != MLXN_DTYPE_COUNT;
    t->elem_bytes = dt->size;
    if (!cJSON_IsArray(js))
        return mlxn_err(MLXN_ERR_FORMAT, "safetensors: tensor '%s': 'shape' is %s, expected an array",
                        nm, mlxn_json_type_name(js));
    int nd = cJSON_GetArraySize(js);
    if (nd > MLXN_MAX_DIMS)
        return mlxn_err(MLXN_ERR_UNSUPPORTED,
                        "safetensors: tensor '%s' has %d dims, mlxn supports at most %d", nm, nd,
                        MLXN_MAX_DIMS);
    t->ndim = nd;
    size_t elems = 1;
    int k = 0;
    for (const cJSON *d = js->child; d; d = d->next, k++) {
        size_t v;
        if (!json_uint(d, &v)) {
            if (cJSON_IsNumber(d))
                return mlxn_err(MLXN_ERR_FORMAT,
                                "safetensors: tensor '%s': dim %d is %g, expected an integer >= 0",
                                nm, k, d->valuedouble);
            return mlxn_err(MLXN_ERR_FORMAT, "safetensors: tensor '%s': dim %d is %s, expected an integer",
                            nm, k, mlxn_json_type_name(d));
        }
        t->shape[k] = (int64_t)v;
        if (!mlxn_mul_ok(elems, v, &elems))
            return mlxn_err(MLXN_ERR_FORMAT, "safetensors: tensor '%s': element count overflows", nm);
    }
    size_t need;
    if (!mlxn_mul_ok(elems, dt->size, &need))
        return mlxn_err(MLXN_ERR_FORMAT, "safetensors: tensor '%s': byte size overflows", nm);
    size_t b, en;
    if (!cJSON_IsArray(jo) || cJSON_GetArraySize(jo) != 2 || !json_uint(jo->child, &b) ||
        !json_uint(jo->child->next, &en))
        return mlxn_err(MLXN_ERR_FORMAT,
                        "safetensors: tensor '%s': 'data_offsets' must be [begin, end] integers >= 0",
                        nm);
    if (en < b)
        return mlxn_err(MLXN_ERR_FORMAT, "safetensors: tensor '%s': data_offsets [%zu, %zu] end before begin",
                        nm, b, en);
    if (en - b != need)
        return mlxn_err(MLXN_ERR_FORMAT,
                        "safetensors: tensor '%s': data_offsets [%zu, %zu] hold %zu bytes, %zu elements of %s need %zu",
                        nm, b, en, en - b, elems, dt->name, need);
    if (en > data_size)
        return mlxn_err(MLXN_ERR_FORMAT, "safetensors: tensor '%s' data ends at byte %zu, file has %zu",
                        nm, data_start + en, data_start + data_size);
    t->offset = b;
    t->nbytes = need;
    t->data = data + data_start + b;
    return MLXN_OK;
}

static mlxn_status parse_meta(mlxn_safetensors *st, const cJSON *m) {
    if (!cJSON_IsObject(m))
        return mlxn_err(MLXN_ERR_FORMAT, "safetensors: __metadata__ is %s, expected an object",
                        mlxn_json_type_name(m));
    size_t n = (size_t)cJSON_GetArraySize(m);
    if (n == 0) return MLXN_OK;
    st->meta = mlxn_calloc(2 * n, sizeof(char *));
    if (!st->meta) return mlxn_err(MLXN_ERR_OUT_OF_MEMORY, "safetensors: out of memory");
    for (const cJSON *kv = m->child; kv; kv = kv->next) {
        if (!cJSON_IsString(kv))
            return mlxn_err(MLXN_ERR_FORMAT, "safetensors: __metadata__ '%.64s' is %s, expected a string",
                            kv->string, mlxn_json_type_name(kv));
        size_t i = st->n_meta;
        st->meta[2 * i] = mlxn_strdup(kv->string);
        st->meta[2 * i + 1] = mlxn_strdup(kv->valuestring);
        st->n_meta++; /* counted before the check so close frees a half pair */
        if (!st->meta[2 * i] || !st->meta[2 * i + 1])
            return mlxn_err(MLXN_ERR_OUT_OF_MEMORY, "safetensors: out of memory");
    }
    return MLXN_OK;
}

static mlxn_status parse(mlxn_safetensors *st, const uint8_t *data, size_t size) {
    if (size < 8)
        return mlxn_err(MLXN_ERR_FORMAT, "safetensors: file has %zu bytes, the header length needs 8",
                        size);
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = (hlen << 8) | data[i];
    if (hlen > size - 8)
        return mlxn_err(MLXN_ERR_FORMAT,
                        "safetensors: header length %llu runs past the end of the file (%zu bytes follow)",
                        (unsigned long long)hlen, size - 8);
    if (hlen > MLXN_ST_MAX_HEADER)
        return mlxn_err(MLXN_ERR_FORMAT, "safetensors: header length %llu is over the limit %zu",
                        (unsigned long long)hlen, MLXN_ST_MAX_HEADER);
    if (hlen < 2 || data[8] != '{')
        return mlxn_err(MLXN_ERR_FORMAT, "safetensors: header does not start with '{'");
    size_t data_start = 8 + (size_t)hlen, data_size = size - data_start;
    cJSON *root;
    mlxn_status s = mlxn_json_parse(&root, (const char *)data + 8, (size_t)hlen, "safetensors header");
    if (s) return s;
    if (!cJSON_IsObject(root)) {
        cJSON_Delete(root);
        return mlxn_err(MLXN_ERR_FORMAT, "safetensors: header is not a JSON object");
    }
    size_t n = 0;
    for (const cJSON *e = root->child; e; e = e->next)
        if (strcmp(e->string, "__metadata__") != 0) n++;
    st->t = n ? mlxn_calloc(n, sizeof *st->t) : NULL;
    if (n && !st->t) {
        cJSON_Delete(root);
        return mlxn_err(MLXN_ERR_OUT_OF_MEMORY, "safetensors: out of memory for %zu tensors", n);
    }
    bool seen_meta = false;
    for (const cJSON *e = root->child; e; e = e->next) {
        if (strcmp(e->string, "__metadata__") == 0) {
            if (seen_meta) s = mlxn_err(MLXN_ERR_FORMAT, "safetensors: __metadata__ appears twice");
            else s = parse_meta(st, e);
            seen_meta = true;
        } else {
            mlxn_st_tensor *t = &st->t[st->n];
            t->name = mlxn_strdup(e->string);
            if (!t->name) {
                s = mlxn_err(MLXN_ERR_OUT_OF_MEMORY, "safetensors: out of memory");
                break;
            }
            st->n++;
            s = parse_entry(e, t, data_size, data_start, data);
        }
        if (s) break;
    }
    cJSON_Delete(root);
    if (s) return s;

    /* The tensors must tile [0, data_size) in offset order. */
    if (n) {
        const mlxn_st_tensor **by_off = mlxn_malloc(n * sizeof *by_off);
        if (!by_off) return mlxn_err(MLXN_ERR_OUT_OF_MEMORY, "safetensors: out of memory");
        for (size_t i = 0; i < n; i++) by_off[i] = &st->t[i];
        qsort(by_off, n, sizeof *by_off, cmp_offset);
        size_t pos = 0;
        const char *prev = NULL;
        for (size_t i = 0; i < n && !s; i++) {
            const mlxn_st_tensor *t = by_off[i];
            if (t->offset < pos)
                s = mlxn_err(MLXN_ERR_FORMAT,
                             "safetensors: tensor '%s' data [%zu, %zu) overlaps tensor '%s' ending at %zu",
                             t->name, t->offset, t->offset + t->nbytes, prev, pos);
            else if (t->offset > pos)
                s = mlxn_err(MLXN_ERR_FORMAT,
                             "safetensors: gap in data: tensor '%s' starts at %zu, previous data ends at %zu",
                             t->name, t->offset, pos);
            pos = t->offset + t->nbytes;
            prev = t->name;
        }
        mlxn_free(by_off);
        if (s) return s;
        if (pos != data_size)
            return mlxn_err(MLXN_ERR_FORMAT,
                            "safetensors: tensors cover %zu bytes of data, the file has %zu after the header",
                            pos, data_size);
    } else if (data_size != 0) {
        return mlxn_err(MLXN_ERR_FORMAT, "safetensors: no tensors, but %zu bytes follow the header",
                        data_size);
    }
    if (n) qsort(st->t, n, sizeof *st->t, cmp_name);
    for (size_t i = 1; i < n; i++)
        if (strcmp(st->t[i - 1].name, st->t[i].name) == 0)
            return mlxn_err(MLXN_ERR_FORMAT, "safetensors: duplicate tensor name '%s'", st->t[i].name);
    return MLXN_OK;
}

mlxn_status mlxn_safetensors_open_memory(mlxn_safetensors **out, const void *data, size_t size,
                                         const char *label) {
    if (!out || (!data && size)) return mlxn_err(MLXN_ERR_INVALID_ARG, "safetensors_open: NULL argument");
    *out = NULL;
    mlxn_safetensors *st = mlxn_calloc(1, sizeof *st);
    if (!st) return mlxn_err(MLXN_ERR_OUT_OF_MEMORY, "safetensors: out of memory");
    mlxn_status s = parse(st, data, size);
    if (s) {
        if (label) mlxn_err_prefix("%s", label);
        mlxn_safetensors_close(st);
        return s;
    }
    *out = st;
    return MLXN_OK;
}

mlxn_status mlxn_safetensors_open(mlxn_safetensors **out, const mlxn_mapfile *mf) {
    if (!mf) return mlxn_err(MLXN_ERR_INVALID_ARG, "safetensors_open: NULL mapfile");
    return mlxn_safetensors_open_memory(out, mf->data, mf->size, mf->path);
}

mlxn_status mlxn_safetensors_open_file(mlxn_safetensors **out, const char *path) {
    if (!out) return mlxn_err(MLXN_ERR_INVALID_ARG, "safetensors_open_file: NULL argument");
    *out = NULL;
    mlxn_mapfile mf = {0};
    mlxn_status s = mlxn_mapfile_open(&mf, path);
    if (s) return s;
    s = mlxn_safetensors_open(out, &mf);
    if (s) {
        mlxn_mapfile_close(&mf);
        return s;
    }
    (*out)->mf = mf;
    return MLXN_OK;
}

size_t mlxn_safetensors_count(const mlxn_safetensors *st) { return st ? st->n : 0; }

const mlxn_st_tensor *mlxn_safetensors_at(const mlxn_safetensors *st, size_t i) {
    return st && i < st->n ? &st->t[i] : NULL;
}

const mlxn_st_tensor *mlxn_safetensors_find(const mlxn_safetensors *st, const char *name) {
    if (!st || !name || !st->n) return NULL;
    mlxn_st_tensor key = {.name = name};
    return bsearch(&key, st->t, st->n, sizeof *st->t, cmp_name);
}

mlxn_status mlxn_safetensors_get(const mlxn_safetensors *st, const char *name,
                                 const mlxn_st_tensor **out) {
    if (!out) return mlxn_err(MLXN_ERR_INVALID_ARG, "safetensors_get: NULL argument");
    *out = mlxn_safetensors_find(st, name);
    if (!*out) return mlxn_err(MLXN_ERR_NOT_FOUND, "safetensors: no tensor named '%s'", name ? name : "(null)");
    return MLXN_OK;
}

size_t mlxn_safetensors_meta_count(const mlxn_safetensors *st) { return st ? st->n_meta : 0; }
const char *mlxn_safetensors_meta_key(const mlxn_safetensors *st, size_t i) {
    return st && i < st->n_meta ? st->meta[2 * i] : NULL;
}
const char *mlxn_safetensors_meta_value(const mlxn_safetensors *st, size_t i) {
    return st && i < st->n_meta ? st->meta[2 * i + 1] : NULL;
}
const char *mlxn_safetensors_meta_find(const mlxn_safetensors *st, const char *key) {
    if (!st || !key) return NULL;
    for (size_t i = 0; i < st->n_meta; i++)
        if (strcmp(st->meta[2 * i], key) == 0) return st->meta[2 * i + 1];
    return NULL;
}

/* ---------------------------------------------------------------- writer */

static int cmp_wname(const void *a, const void *b) {
    return strcmp((*(const mlxn_st_write_tensor *const *)a)->name,
                  (*(const mlxn_st_write_tensor *const *)b)->name);
}

static bool write_all(FILE *f, const void *p, size_t n) { return n == 0 || fwrite(p, 1, n, f) == n; }

mlxn_status mlxn_safetensors_write(const char *path, size_t n, const mlxn_st_write_tensor *tensors,
                                   size_t n_meta, const char *const *meta_kv) {
    if (!path || (n && !tensors) || (n_meta && !meta_kv))
        return mlxn_err(MLXN_ERR_INVALID_ARG, "safetensors_write: NULL argument");
    mlxn_status s = MLXN_OK;
    const mlxn_st_write_tensor **ord = NULL;
    cJSON *root = NULL;
    char *json = NULL, *tmp = NULL;
    FILE *f = NULL;
    if (n) {
        ord = mlxn_malloc(n * sizeof *ord);
        if (!ord) return mlxn_err(MLXN_ERR_OUT_OF_MEMORY, "safetensors_write: out of memory");
    }
    for (size_t i = 0; i < n; i++) {
        const mlxn_st_write_tensor *t = &tensors[i];
        ord[i] = t;
        if (!t->name || !t->name[0] || strcmp(t->name, "__metadata__") == 0) {
            s = mlxn_err(MLXN_ERR_INVALID_ARG, "safetensors_write: tensor %zu has an invalid name", i);
            goto done;
        }
        const char *ds = mlxn_safetensors_dtype_string(t->dtype);
        if (!ds) {
            s = mlxn_err(MLXN_ERR_DTYPE, "safetensors_write: tensor '%s': dtype %s has no safetensors type",
                         t->name, mlxn_dtype_name(t->dtype));
            goto done;
        }
        if (t->ndim < 0 || t->ndim > MLXN_MAX_DIMS) {
            s = mlxn_err(MLXN_ERR_SHAPE, "safetensors_write: tensor '%s': ndim %d", t->name, t->ndim);
            goto done;
        }
        size_t elems = 1, need;
        for (int k = 0; k < t->ndim; k++) {
            if (t->shape[k] < 0 || !mlxn_mul_ok(elems, (size_t)t->shape[k], &elems)) {
                s = mlxn_err(MLXN_ERR_SHAPE, "safetensors_write: tensor '%s': bad dim %d = %lld", t->name,
                             k, (long long)t->shape[k]);
                goto done;
            }
        }
        if (!mlxn_dtype_bytes_for(t->dtype, elems, &need) || need != t->nbytes || (need && !t->data)) {
            s = mlxn_err(MLXN_ERR_SHAPE, "safetensors_write: tensor '%s': nbytes %zu, shape needs %zu",
                         t->name, t->nbytes, need);
            goto done;
        }
    }
    if (n) qsort(ord, n, sizeof *ord, cmp_wname);
    for (size_t i = 1; i < n; i++) {
        if (strcmp(ord[i - 1]->name, ord[i]->name) == 0) {
            s = mlxn_err(MLXN_ERR_INVALID_ARG, "safetensors_write: duplicate tensor name '%s'", ord[i]->name);
            goto done;
        }
    }
    root = cJSON_CreateObject();
    if (!root) goto oom;
    if (n_meta) {
        cJSON *m = cJSON_AddObjectToObject(root, "__metadata__");
        if (!m) goto oom;
        for (size_t i = 0; i < n_meta; i++) {
            if (!meta_kv[2 * i] || !meta_kv[2 * i + 1]) {
                s = mlxn_err(MLXN_ERR_INVALID_ARG, "safetensors_write: metadata pair %zu has a NULL", i);
                goto done;
            }
            for (size_t j = 0; j < i; j++) {
                if (strcmp(meta_kv[2 * j], meta_kv[2 * i]) == 0) {
                    s = mlxn_err(MLXN_ERR_INVALID_ARG, "safetensors_write: duplicate metadata key '%s'",
                                 meta_kv[2 * i]);
                    goto done;
                }
            }
            if (!cJSON_AddStringToObject(m, meta_kv[2 * i], meta_kv[2 * i + 1])) goto oom;
        }
    }
    size_t off = 0;
    for (size_t i = 0; i < n; i++) {
        const mlxn_st_write_tensor *t = ord[i];
        cJSON *e = cJSON_AddObjectToObject(root, t->name);
        if (!e || !cJSON_AddStringToObject(e, "dtype", mlxn_safetensors_dtype_string(t->dtype)))
            goto oom;
        cJSON *sh = cJSON_AddArrayToObject(e, "shape");
        if (!sh) goto oom;
        for (int k = 0; k < t->ndim; k++) {
            cJSON *d = cJSON_CreateNumber((double)t->shape[k]);
            if (!d || !cJSON_AddItemToArray(sh, d)) goto oom;
        }
        cJSON *o = cJSON_AddArrayToObject(e, "data_offsets");
        if (!o) goto oom;
        cJSON *b = cJSON_CreateNumber((double)off);
        if (!b || !cJSON_AddItemToArray(o, b)) goto oom;
        off += t->nbytes;
        if ((double)off > MAX_EXACT) {
            s = mlxn_err(MLXN_ERR_RANGE, "safetensors_write: data larger than 2^53 bytes");
            goto done;
        }
        cJSON *en = cJSON_CreateNumber((double)off);
        if (!en || !cJSON_AddItemToArray(o, en)) goto oom;
    }
    json = cJSON_PrintUnformatted(root);
    if (!json) goto oom;
    size_t jl = strlen(json), pad = (8 - jl % 8) % 8;
    uint64_t hlen = jl + pad;
    uint8_t le[8];
    for (int i = 0; i < 8; i++) le[i] = (uint8_t)(hlen >> (8 * i));
    size_t pl = strlen(path);
    tmp = mlxn_malloc(pl + 5);
    if (!tmp) goto oom;
    memcpy(tmp, path, pl);
    memcpy(tmp + pl, ".tmp", 5);
    f = fopen(tmp, "wb");
    if (!f) {
        s = mlxn_err(MLXN_ERR_IO, "%s: cannot create: %s", tmp, strerror(errno));
        goto done;
    }
    bool ok = write_all(f, le, 8) && write_all(f, json, jl) && write_all(f, "        ", pad);
    for (size_t i = 0; ok && i < n; i++) ok = write_all(f, ord[i]->data, ord[i]->nbytes);
    if (fclose(f) != 0) ok = false;
    f = NULL;
    if (!ok) {
        s = mlxn_err(MLXN_ERR_IO, "%s: write failed: %s", tmp, strerror(errno));
        remove(tmp);
        goto done;
    }
    if (rename(tmp, path) != 0) {
        s = mlxn_err(MLXN_ERR_IO, "%s: cannot rename to %s: %s", tmp, path, strerror(errno));
        remove(tmp);
    }
    goto done;
oom:
    s = mlxn_err(MLXN_ERR_OUT_OF_MEMORY, "safetensors_write: out of memory");
done:
    if (f) fclose(f);
    mlxn_free(tmp);
    if (json) cJSON_free(json);
    cJSON_Delete(root);
    mlxn_free(ord);
    return s;
}

/* ---------------------------------------------------------------- shards */

typedef struct shard_ref {
    const mlxn_st_tensor *t;
    size_t shard;
} shard_ref;

struct mlxn_st_shards {
    size_t n_files;
    mlxn_safetensors **files;
    char **file_names;
    size_t n;
    shard_ref *refs; /* sorted by tensor name */
};

void mlxn_st_shards_drop(const mlxn_st_shards *sh, const void *p, size_t n) {
    for (size_t i = 0; sh && i < sh->n_files; i++) mlxn_mapfile_drop(&sh->files[i]->mf, p, n);
}

void mlxn_st_shards_close(mlxn_st_shards *sh) {
    if (!sh) return;
    for (size_t i = 0; i < sh->n_files; i++) {
        mlxn_safetensors_close(sh->files[i]);
        mlxn_free(sh->file_names[i]);
    }
    mlxn_free(sh->files);
    mlxn_free(sh->file_names);
    mlxn_free(sh->refs);
    mlxn_free(sh);
}

static int cmp_ref(const void *a, const void *b) {
    return strcmp(((const shard_ref *)a)->t->name, ((const shard_ref *)b)->t->name);
}
static int cmp_str(const void *a, const void *b) {
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static char *join_path(const char *dir, const char *file) {
    size_t a = strlen(dir), b = strlen(file);
    char *p = mlxn_malloc(a + b + 2);
    if (!p) return NULL;
    memcpy(p, dir, a);
    p[a] = '/';
    memcpy(p + a + 1, file, b + 1);
    return p;
}

static bool plain_file_name(const char *s) {
    return s[0] && strchr(s, '/') == NULL && strcmp(s, ".") != 0 && strcmp(s, "..") != 0;
}

static mlxn_status shards_build(mlxn_st_shards *sh, const char *dir, const cJSON *wm) {
    mlxn_status s;
    size_t n_entries = wm ? (size_t)cJSON_GetArraySize(wm) : 0;
    /* Unique shard names. */
    if (wm) {
        if (n_entries == 0) return mlxn_err(MLXN_ERR_FORMAT, "weight_map is empty");
        const char **names = mlxn_malloc(n_entries * sizeof *names);
        if (!names) return mlxn_err(MLXN_ERR_OUT_OF_MEMORY, "shards: out of memory");
        size_t k = 0;
        for (const cJSON *e = wm->child; e; e = e->next) {
            if (!cJSON_IsString(e) || !plain_file_name(e->valuestring)) {
                mlxn_free(names);
                return mlxn_err(MLXN_ERR_FORMAT, "weight_map: '%.64s' maps to %s%.64s%s, expected a file name",
                                e->string, cJSON_IsString(e) ? "'" : "", cJSON_IsString(e) ? e->valuestring : mlxn_json_type_name(e),
                                cJSON_IsString(e) ? "'" : "");
            }
            names[k++] = e->valuestring;
        }
        qsort(names, k, sizeof *names, cmp_str);
        size_t u = 0;
        for (size_t i = 0; i < k; i++)
            if (i == 0 || strcmp(names[i], names[i - 1]) != 0) names[u++] = names[i];
        sh->files = mlxn_calloc(u, sizeof *sh->files);
        sh->file_names = mlxn_calloc(u, sizeof *sh->file_names);
        if (!sh->files || !sh->file_names) {
            mlxn_free(names);
            return mlxn_err(MLXN_ERR_OUT_OF_MEMORY, "shards: out of memory");
        }
        for (size_t i = 0; i < u; i++) {
            sh->file_names[i] = mlxn_strdup(names[i]);
            if (!sh->file_names[i]) {
                sh->n_files = i;
                mlxn_free(names);
                return mlxn_err(MLXN_ERR_OUT_OF_MEMORY, "shards: out of memory");
            }
            sh->n_files = i + 1;
        }
        mlxn_free(names);
    } else {
        sh->files = mlxn_calloc(1, sizeof *sh->files);
        sh->file_names = mlxn_calloc(1, sizeof *sh->file_names);
        if (!sh->files || !sh->file_names || !(sh->file_names[0] = mlxn_strdup("model.safetensors")))
            return mlxn_err(MLXN_ERR_OUT_OF_MEMORY, "shards: out of memory");
        sh->n_files = 1;
    }
    size_t total = 0;
    for (size_t i = 0; i < sh->n_files; i++) {
        char *p = join_path(dir, sh->file_names[i]);
        if (!p) return mlxn_err(MLXN_ERR_OUT_OF_MEMORY, "shards: out of memory");
        s = mlxn_safetensors_open_file(&sh->files[i], p);
        mlxn_free(p);
        if (s) return s;
        total += sh->files[i]->n;
    }
    sh->refs = total ? mlxn_malloc(total * sizeof *sh->refs) : NULL;
    if (total && !sh->refs) return mlxn_err(MLXN_ERR_OUT_OF_MEMORY, "shards: out of memory");
    for (size_t i = 0; i < sh->n_files; i++)
        for (size_t j = 0; j < sh->files[i]->n; j++)
            sh->refs[sh->n++] = (shard_ref){&sh->files[i]->t[j], i};
    if (sh->n) qsort(sh->refs, sh->n, sizeof *sh->refs, cmp_ref);
    for (size_t i = 1; i < sh->n; i++)
        if (strcmp(sh->refs[i - 1].t->name, sh->refs[i].t->name) == 0)
            return mlxn_err(MLXN_ERR_FORMAT, "tensor '%s' is in both %s and %s", sh->refs[i].t->name,
                            sh->file_names[sh->refs[i - 1].shard], sh->file_names[sh->refs[i].shard]);
    for (const cJSON *e = wm ? wm->child : NULL; e; e = e->next) {
        shard_ref key = {.t = &(mlxn_st_tensor){.name = e->string}};
        const shard_ref *r = sh->n ? bsearch(&key, sh->refs, sh->n, sizeof *sh->refs, cmp_ref) : NULL;
        if (!r || strcmp(sh->file_names[r->shard], e->valuestring) != 0)
            return mlxn_err(MLXN_ERR_FORMAT, "weight_map says tensor '%s' is in %s, but it is %s%s",
                            e->string, e->valuestring, r ? "in " : "in no shard",
                            r ? sh->file_names[r->shard] : "");
    }
    return MLXN_OK;
}

mlxn_status mlxn_st_shards_open(mlxn_st_shards **out, const char *dir) {
    if (!out || !dir) return mlxn_err(MLXN_ERR_INVALID_ARG, "st_shards_open: NULL argument");
    *out = NULL;
    mlxn_st_shards *sh = mlxn_calloc(1, sizeof *sh);
    if (!sh) return mlxn_err(MLXN_ERR_OUT_OF_MEMORY, "shards: out of memory");
    char *ip = join_path(dir, "model.safetensors.index.json");
    if (!ip) {
        mlxn_free(sh);
        return mlxn_err(MLXN_ERR_OUT_OF_MEMORY, "shards: out of memory");
    }
    cJSON *root = NULL;
    const cJSON *wm = NULL;
    mlxn_status s = MLXN_OK;
    FILE *probe = fopen(ip, "rb");
    if (probe) {
        fclose(probe);
        s = mlxn_json_parse_file(&root, ip, 0);
        if (!s) {
            wm = cJSON_GetObjectItemCaseSensitive(root, "weight_map");
            if (!cJSON_IsObject(wm))
                s = mlxn_err(MLXN_ERR_FORMAT, "%s: 'weight_map' is %s, expected an object", ip,
                             mlxn_json_type_name(wm));
        }
    }
    if (!s) {
        s = shards_build(sh, dir, wm);
        if (s && wm) mlxn_err_prefix("%s", ip);
    }
    cJSON_Delete(root);
    mlxn_free(ip);
    if (s) {
        mlxn_st_shards_close(sh);
        return s;
    }
    *out = sh;
    return MLXN_OK;
}

size_t mlxn_st_shards_file_count(const mlxn_st_shards *sh) { return sh ? sh->n_files : 0; }
size_t mlxn_st_shards_count(const mlxn_st_shards *sh) { return sh ? sh->n : 0; }
const mlxn_st_tensor *mlxn_st_shards_at(const mlxn_st_shards *sh, size_t i) {
    return sh && i < sh->n ? sh->refs[i].t : NULL;
}
static const shard_ref *find_ref(const mlxn_st_shards *sh, const char *name) {
    if (!sh || !name || !sh->n) return NULL;
    shard_ref key = {.t = &(mlxn_st_tensor){.name = name}};
    return bsearch(&key, sh->refs, sh->n, sizeof *sh->refs, cmp_ref);
}
const mlxn_st_tensor *mlxn_st_shards_find(const mlxn_st_shards *sh, const char *name) {
    const shard_ref *r = find_ref(sh, name);
    return r ? r->t : NULL;
}
const char *mlxn_st_shards_path(const mlxn_st_shards *sh, const char *name) {
    const shard_ref *r = find_ref(sh, name);
    return r && sh->files[r->shard]->mf.path ? sh->files[r->shard]->mf.path : NULL;
}
mlxn_status mlxn_st_shards_get(const mlxn_st_shards *sh, const char *name, const mlxn_st_tensor **out) {
    if (!out) return mlxn_err(MLXN_ERR_INVALID_ARG, "st_shards_get: NULL argument");
    *out = mlxn_st_shards_find(sh, name);
    if (!*out) return mlxn_err(MLXN_ERR_NOT_FOUND, "safetensors: no tensor named '%s' in any shard",
                               name ? name : "(null)");
    return MLXN_OK;
}
