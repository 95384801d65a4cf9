/*
 * io.h — readers for the files a model comes in: a read-only whole-file
 * mmap, safetensors (single file, writer, and sharded directories), GGUF
 * v2/v3, and small helpers over cJSON for config.json. Internal header.
 *
 * Every reader treats its input as hostile: each length, count and offset is
 * checked against the bytes that remain before it is used or allocated for,
 * and a failure returns a status with a message that names the field and the
 * numbers ("gguf: tensor 'blk.0.attn_q.weight' data ends at byte 4811, file
 * has 4096"). Statuses: MLXN_ERR_IO (open/mmap), MLXN_ERR_FORMAT (malformed,
 * truncated, inconsistent), MLXN_ERR_UNSUPPORTED (valid but not handled:
 * GGUF v1, more than 4 dims, a dtype mlxn has no kernels for when asked for
 * it), MLXN_ERR_NOT_FOUND (absent key or tensor), MLXN_ERR_DTYPE (a key of
 * another type), MLXN_ERR_RANGE (a value that does not fit the asked type,
 * an index past an array).
 *
 * Ownership: readers opened from a mapfile or from memory borrow those bytes;
 * the caller keeps them alive until the reader is closed. Readers opened from
 * a path own their mapping. Every pointer a reader hands out (names, data,
 * values) lives until that reader is closed. _close(NULL) is a no-op.
 * Readers are immutable after open: concurrent reads from several threads
 * are safe.
 */
#ifndef MLXN_IO_H
#define MLXN_IO_H

#include "core/core.h"

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ------------------------------------------------------------------------ */
/* mapfile                                                                    */
/* ------------------------------------------------------------------------ */

/* A whole file mapped read-only. A zero-length file maps to size 0 and a
 * non-NULL data pointer. Zero-initialise before open; close is idempotent. */
typedef struct mlxn_mapfile {
    const uint8_t *data;
    size_t size;
    char *path; /* owned copy, for messages */
    void *map_;  /* what to munmap (NULL for an empty file) */
} mlxn_mapfile;

/* MLXN_ERR_IO naming the path and strerror(errno) when open/fstat/mmap fails
 * or the path is not a regular file. On failure *mf is left zeroed. */
mlxn_status mlxn_mapfile_open(mlxn_mapfile *mf, const char *path);
void mlxn_mapfile_close(mlxn_mapfile *mf);
/* Give back the resident pages wholly inside [p, p + n) when that range
 * lies in mf's mapping (nothing otherwise): for bytes that were copied
 * elsewhere and will not be read here again. The mapping stays valid (the
 * file's bytes are read again on a later access). */
void mlxn_mapfile_drop(const mlxn_mapfile *mf, const void *p, size_t n);

/* Read a whole file into a NUL-terminated heap buffer (mlxn_free it). Fails
 * with MLXN_ERR_RANGE when the file is larger than max_bytes. */
mlxn_status mlxn_read_file(char **out, size_t *len, const char *path, size_t max_bytes);

/* ------------------------------------------------------------------------ */
/* safetensors                                                                */
/* ------------------------------------------------------------------------ */

/* Header limit, as in the reference implementation (100 MB). */
#define MLXN_ST_MAX_HEADER ((size_t)100000000)

/* One tensor. `dtype_name` is the file's string ("F32", "I64", "F8_E4M3").
 * `supported` is false for file dtypes mlxn has no dtype for (I16, I64, U64,
 * F64, BOOL, F8_*): they are still range-checked and readable as bytes, and
 * `dtype` is MLXN_DTYPE_COUNT. Shape is row-major; ndim 0 is a scalar. */
typedef struct mlxn_st_tensor {
    const char *name;
    const char *dtype_name;
    mlxn_dtype dtype;
    bool supported;
    int ndim;
    int64_t shape[MLXN_MAX_DIMS];
    size_t elem_bytes; /* bytes per element of dtype_name */
    size_t offset;     /* from the start of the data section */
    size_t nbytes;
    const void *data;  /* into the mapped file */
} mlxn_st_tensor;

typedef struct mlxn_safetensors mlxn_safetensors;

/* Parse `size` bytes at `data` (borrowed). `label` (may be NULL) names the
 * source in messages. Checks: header length vs file, JSON well-formed and an
 * object, dtype strings, shapes (integers >= 0, at most 4 dims — more is
 * MLXN_ERR_UNSUPPORTED — product times element size without overflow equal to
 * the byte range), data_offsets in order, contiguous from 0 without overlap
 * or gap to the end of the file, no duplicate names, __metadata__ an object of
 * strings. */
mlxn_status mlxn_safetensors_open_memory(mlxn_safetensors **out, const void *data, size_t size,
                                         const char *label);
/* Borrow a mapfile (keep it open until close). */
mlxn_status mlxn_safetensors_open(mlxn_safetensors **out, const mlxn_mapfile *mf);
/* Map `path` and own the mapping. */
mlxn_status mlxn_safetensors_open_file(mlxn_safetensors **out, const char *path);
void mlxn_safetensors_close(mlxn_safetensors *st);

size_t mlxn_safetensors_count(const mlxn_safetensors *st);
/* i-th tensor in name order (strcmp); NULL when i >= count. */
const mlxn_st_tensor *mlxn_safetensors_at(const mlxn_safetensors *st, size_t i);
/* By name (binary search); NULL when absent. */
const mlxn_st_tensor *mlxn_safetensors_find(const mlxn_safetensors *st, const char *name);
/* Like find, but MLXN_ERR_NOT_FOUND with the name in the message. */
mlxn_status mlxn_safetensors_get(const mlxn_safetensors *st, const char *name,
                                 const mlxn_st_tensor **out);
/* __metadata__: count, i-th key/value (file order), value by key (NULL if absent). */
size_t mlxn_safetensors_meta_count(const mlxn_safetensors *st);
const char *mlxn_safetensors_meta_key(const mlxn_safetensors *st, size_t i);
const char *mlxn_safetensors_meta_value(const mlxn_safetensors *st, size_t i);
const char *mlxn_safetensors_meta_find(const mlxn_safetensors *st, const char *key);

/* A tensor to write. dtype is any non-block mlxn dtype; nbytes must equal
 * product(shape) * element size. ndim 0..4. */
typedef struct mlxn_st_write_tensor {
    const char *name;
    mlxn_dtype dtype;
    int ndim;
    int64_t shape[MLXN_MAX_DIMS];
    const void *data;
    size_t nbytes;
} mlxn_st_write_tensor;

/* Write a safetensors file: tensors sorted by name (data and header order),
 * `__metadata__` from n_meta key/value pairs (meta_kv[2i], meta_kv[2i+1]);
 * omitted when n_meta is 0. The header is padded with spaces to a multiple
 * of 8. Writes `path`.tmp and renames it over `path`. Duplicate names, block
 * dtypes and size mismatches fail before anything is written. */
mlxn_status mlxn_safetensors_write(const char *path, size_t n, const mlxn_st_write_tensor *tensors,
                                   size_t n_meta, const char *const *meta_kv);

/* The safetensors dtype string for an mlxn dtype ("F32"), NULL for block types. */
const char *mlxn_safetensors_dtype_string(mlxn_dtype t);

/* A model directory: `model.safetensors.index.json` (its `weight_map`, every
 * shard file opened once; shard names must be plain file names) or, without
 * an index, `model.safetensors`. Every tensor named in the weight map must be
 * in its shard; a name in two shards is MLXN_ERR_FORMAT. */
typedef struct mlxn_st_shards mlxn_st_shards;
mlxn_status mlxn_st_shards_open(mlxn_st_shards **out, const char *dir);
void mlxn_st_shards_close(mlxn_st_shards *sh);
/* mlxn_mapfile_drop over the shards' own mappings. */
void mlxn_st_shards_drop(const mlxn_st_shards *sh, const void *p, size_t n);
/* The path of the shard file holding `name` (for messages), or NULL. */
const char *mlxn_st_shards_path(const mlxn_st_shards *sh, const char *name);
size_t mlxn_st_shards_file_count(const mlxn_st_shards *sh);
size_t mlxn_st_shards_count(const mlxn_st_shards *sh);
/* i-th tensor over all shards in name order. */
const mlxn_st_tensor *mlxn_st_shards_at(const mlxn_st_shards *sh, size_t i);
const mlxn_st_tensor *mlxn_st_shards_find(const mlxn_st_shards *sh, const char *name);
mlxn_status mlxn_st_shards_get(const mlxn_st_shards *sh, const char *name,
                               const mlxn_st_tensor **out);

/* ------------------------------------------------------------------------ */
/* GGUF                                                                       */
/* ------------------------------------------------------------------------ */

/* Limits, checked before anything is allocated (beyond them: MLXN_ERR_FORMAT
 * naming the count). Counts must also fit in the bytes that remain. */
#define MLXN_GGUF_MAX_STRING ((uint64_t)1 << 24)  /* bytes in one string (16 MiB) */
#define MLXN_GGUF_MAX_ARRAY ((uint64_t)1 << 26)   /* elements in one array */
#define MLXN_GGUF_MAX_TENSORS ((uint64_t)1 << 20) /* tensor infos */
#define MLXN_GGUF_MAX_KV ((uint64_t)1 << 16)      /* metadata key/values */
#define MLXN_GGUF_MAX_DEPTH 8                     /* nesting of arrays of arrays */
#define MLXN_GGUF_DEFAULT_ALIGNMENT 32

/* Value types, numbered as in the file. */
typedef enum mlxn_gguf_type {
    MLXN_GGUF_U8 = 0,
    MLXN_GGUF_I8 = 1,
    MLXN_GGUF_U16 = 2,
    MLXN_GGUF_I16 = 3,
    MLXN_GGUF_U32 = 4,
    MLXN_GGUF_I32 = 5,
    MLXN_GGUF_F32 = 6,
    MLXN_GGUF_BOOL = 7,
    MLXN_GGUF_STRING = 8,
    MLXN_GGUF_ARRAY = 9,
    MLXN_GGUF_U64 = 10,
    MLXN_GGUF_I64 = 11,
    MLXN_GGUF_F64 = 12,
    MLXN_GGUF_TYPE_COUNT
} mlxn_gguf_type;

/* "u32", "string", "array", ... or "?" */
const char *mlxn_gguf_type_name(mlxn_gguf_type t);

/* A string inside the mapped file: NOT NUL-terminated, may contain NULs. */
typedef struct mlxn_gguf_str {
    const char *ptr;
    uint64_t len;
} mlxn_gguf_str;

/* A metadata value. Scalars: integers in `i` (signed types) or `u`
 * (unsigned, bool), floats in `f`; a string in `str` (NUL-terminated copy,
 * length in str_len). Arrays: elem_type and count; numeric elements are
 * little-endian in `raw` (use the accessors), strings in `strs`, nested
 * arrays in `items`. */
typedef struct mlxn_gguf_value {
    mlxn_gguf_type type;
    union {
        uint64_t u;
        int64_t i;
        double f;
    } num;
    const char *str;
    uint64_t str_len;
    mlxn_gguf_type elem_type;
    uint64_t count;
    const uint8_t *raw;
    const mlxn_gguf_str *strs;
    const struct mlxn_gguf_value *items;
} mlxn_gguf_value;

/* A tensor info. `ne` is the file's dims, innermost first (GGML order);
 * `shape` the same reversed (row-major, mlxn order). `dtype` is
 * MLXN_DTYPE_COUNT with `supported` false for ggml types mlxn has no dtype
 * for (their sizes are still known and checked). */
typedef struct mlxn_gguf_tensor {
    const char *name;
    uint32_t ggml_type;
    mlxn_dtype dtype;
    bool supported;
    int ndim;
    int64_t ne[MLXN_MAX_DIMS];
    int64_t shape[MLXN_MAX_DIMS];
    uint64_t offset; /* from the start of the aligned data section */
    size_t nbytes;
    const void *data;
} mlxn_gguf_tensor;

typedef struct mlxn_gguf mlxn_gguf;

/* Parse `size` bytes at `data` (borrowed); `label` (may be NULL) names the
 * source. Rejects: bad magic, version 1 (MLXN_ERR_UNSUPPORTED) or > 3,
 * counts over the limits above or larger than the remaining bytes, strings
 * and arrays past the end, unknown value types, duplicate keys or tensor
 * names, general.alignment not a u32 power of two, n_dims > 4, negative dims
 * or element count overflow, unknown ggml types, innermost dim not a multiple
 * of the block size, tensor offsets not aligned, overlapping, or data past
 * the end of the file. */
mlxn_status mlxn_gguf_open_memory(mlxn_gguf **out, const void *data, size_t size,
                                  const char *label);
mlxn_status mlxn_gguf_open(mlxn_gguf **out, const mlxn_mapfile *mf);
mlxn_status mlxn_gguf_open_file(mlxn_gguf **out, const char *path);
void mlxn_gguf_close(mlxn_gguf *g);
/* mlxn_mapfile_drop over the file's own mapping (open_file). */
void mlxn_gguf_drop(const mlxn_gguf *g, const void *p, size_t n);

uint32_t mlxn_gguf_version(const mlxn_gguf *g);
size_t mlxn_gguf_alignment(const mlxn_gguf *g);
size_t mlxn_gguf_data_offset(const mlxn_gguf *g); /* file offset of the data section */

/* Metadata in file order, and by key (NULL when absent). */
size_t mlxn_gguf_kv_count(const mlxn_gguf *g);
const char *mlxn_gguf_kv_key(const mlxn_gguf *g, size_t i);
const mlxn_gguf_value *mlxn_gguf_kv_value(const mlxn_gguf *g, size_t i);
const mlxn_gguf_value *mlxn_gguf_find(const mlxn_gguf *g, const char *key);

/* Typed getters: MLXN_ERR_NOT_FOUND when the key is absent, MLXN_ERR_DTYPE
 * naming the key and both types when the value is of another kind, and
 * MLXN_ERR_RANGE when an integer does not fit. Integer getters take any
 * integer type whose value fits (as llama.cpp does for hyper-parameters);
 * float getters take f32, f64 and integers. *v is untouched on failure. */
mlxn_status mlxn_gguf_get_u32(const mlxn_gguf *g, const char *key, uint32_t *v);
mlxn_status mlxn_gguf_get_i32(const mlxn_gguf *g, const char *key, int32_t *v);
mlxn_status mlxn_gguf_get_u64(const mlxn_gguf *g, const char *key, uint64_t *v);
mlxn_status mlxn_gguf_get_i64(const mlxn_gguf *g, const char *key, int64_t *v);
mlxn_status mlxn_gguf_get_f32(const mlxn_gguf *g, const char *key, float *v);
mlxn_status mlxn_gguf_get_f64(const mlxn_gguf *g, const char *key, double *v);
mlxn_status mlxn_gguf_get_bool(const mlxn_gguf *g, const char *key, bool *v);
/* NUL-terminated string owned by g; len may be NULL. */
mlxn_status mlxn_gguf_get_string(const mlxn_gguf *g, const char *key, const char **s,
                                 size_t *len);
/* An array whose elements are `elem_type` (MLXN_GGUF_TYPE_COUNT: any). */
mlxn_status mlxn_gguf_get_array(const mlxn_gguf *g, const char *key, mlxn_gguf_type elem_type,
                                const mlxn_gguf_value **arr);

/* Array elements (arr must be an array value). MLXN_ERR_RANGE past count,
 * MLXN_ERR_DTYPE for an element type that does not convert. */
mlxn_status mlxn_gguf_arr_string(const mlxn_gguf_value *arr, uint64_t i, mlxn_gguf_str *s);
mlxn_status mlxn_gguf_arr_i64(const mlxn_gguf_value *arr, uint64_t i, int64_t *v); /* any int, bool */
mlxn_status mlxn_gguf_arr_f64(const mlxn_gguf_value *arr, uint64_t i, double *v); /* floats, ints */
mlxn_status mlxn_gguf_arr_f32(const mlxn_gguf_value *arr, uint64_t i, float *v);
mlxn_status mlxn_gguf_arr_item(const mlxn_gguf_value *arr, uint64_t i,
                               const mlxn_gguf_value **item); /* nested arrays */

/* Tensors in file order, and by name (NULL when absent). */
size_t mlxn_gguf_tensor_count(const mlxn_gguf *g);
const mlxn_gguf_tensor *mlxn_gguf_tensor_at(const mlxn_gguf *g, size_t i);
const mlxn_gguf_tensor *mlxn_gguf_find_tensor(const mlxn_gguf *g, const char *name);
/* By name; MLXN_ERR_NOT_FOUND when absent, MLXN_ERR_UNSUPPORTED naming the
 * ggml type when mlxn has no dtype for it. */
mlxn_status mlxn_gguf_get_tensor(const mlxn_gguf *g, const char *name,
                                 const mlxn_gguf_tensor **out);

/* ggml type id -> mlxn dtype: 0 F32, 1 F16, 2 Q4_0, 3 Q4_1, 8 Q8_0, 12 Q4_K,
 * 13 Q5_K, 14 Q6_K, 24 I8, 26 I32, 30 BF16. Others: MLXN_ERR_UNSUPPORTED
 * naming the type ("ggml type 10 (q2_k)"). */
mlxn_status mlxn_gguf_dtype_from_ggml(mlxn_dtype *out, uint32_t ggml_type);
/* ggml type name ("q4_k"), "?" for an unknown id. */
const char *mlxn_ggml_type_name(uint32_t ggml_type);

/* ------------------------------------------------------------------------ */
/* JSON (config.json) over cJSON                                              */
/* ------------------------------------------------------------------------ */

#define MLXN_JSON_MAX_DEPTH 64                        /* nesting of [ and { */
#define MLXN_JSON_MAX_FILE ((size_t)64 * 1024 * 1024) /* default file limit */

/* Parse `len` bytes (need not be NUL-terminated). MLXN_ERR_FORMAT with the
 * label, line and column on a syntax error, a raw NUL byte, nesting beyond
 * MLXN_JSON_MAX_DEPTH or trailing garbage. Free with cJSON_Delete. cJSON
 * allocates with plain malloc (not mlxn_malloc) and records its last error
 * position in a process-wide slot: parses on several threads give correct
 * results but race on that slot (ThreadSanitizer reports it). */
mlxn_status mlxn_json_parse(cJSON **out, const char *text, size_t len, const char *label);
/* Read and parse a file of at most max_bytes (0: MLXN_JSON_MAX_FILE). */
mlxn_status mlxn_json_parse_file(cJSON **out, const char *path, size_t max_bytes);

/* Getters on an object. Absent key or JSON null: *out = def and MLXN_OK.
 * Wrong type: MLXN_ERR_DTYPE naming the key, the expected and the found type.
 * Integers must be integral and within int64 (|v| <= 2^53) else
 * MLXN_ERR_RANGE. Strings are owned by the cJSON tree. obj may be NULL (all
 * keys absent). */
mlxn_status mlxn_json_get_int(const cJSON *obj, const char *key, int64_t def, int64_t *out);
mlxn_status mlxn_json_get_float(const cJSON *obj, const char *key, double def, double *out);
mlxn_status mlxn_json_get_bool(const cJSON *obj, const char *key, bool def, bool *out);
mlxn_status mlxn_json_get_string(const cJSON *obj, const char *key, const char *def,
                                 const char **out);
/* Required: MLXN_ERR_NOT_FOUND naming the key when absent or null. */
mlxn_status mlxn_json_need_int(const cJSON *obj, const char *key, int64_t *out);
mlxn_status mlxn_json_need_float(const cJSON *obj, const char *key, double *out);
mlxn_status mlxn_json_need_string(const cJSON *obj, const char *key, const char **out);
/* An object member that must be an object (absent: *out = NULL, MLXN_OK). */
mlxn_status mlxn_json_get_object(const cJSON *obj, const char *key, const cJSON **out);
/* JSON type name of an item ("string", "number", "object", ...). */
const char *mlxn_json_type_name(const cJSON *item);

#endif
