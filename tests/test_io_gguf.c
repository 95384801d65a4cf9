/* test_io_gguf.c — the GGUF reader against files written by gguf-py
 * (every metadata type, arrays incl. nested, tensors of several ggml types,
 * custom alignment), v2/v1/v4 headers, and hostile input: every truncation,
 * random byte flips, and a table of hand-built corrupt files with the
 * expected status and message. */
#include "test_io_common.h"

#define D "tests/data/io/"

static void test_metadata(const mlxn_gguf *g) {
    uint32_t u32 = 0;
    int32_t i32 = 0;
    uint64_t u64 = 0;
    int64_t i64 = 0;
    float f = 0;
    double d = 0;
    bool bo = false;
    CHECK(mlxn_gguf_version(g) == 3, "version %u", mlxn_gguf_version(g));
    CHECK_OK(mlxn_gguf_get_u32(g, "t.u8", &u32));
    CHECK(u32 == 200, "u8 as u32: %u", u32);
    CHECK_OK(mlxn_gguf_get_i32(g, "t.i8", &i32));
    CHECK(i32 == -100, "i8: %d", i32);
    CHECK_OK(mlxn_gguf_get_u32(g, "t.u16", &u32));
    CHECK(u32 == 60000, "u16");
    CHECK_OK(mlxn_gguf_get_i32(g, "t.i16", &i32));
    CHECK(i32 == -30000, "i16");
    CHECK_OK(mlxn_gguf_get_u32(g, "t.u32", &u32));
    CHECK(u32 == 4000000000u, "u32");
    CHECK_OK(mlxn_gguf_get_i64(g, "t.u32", &i64));
    CHECK(i64 == 4000000000, "u32 as i64");
    CHECK_OK(mlxn_gguf_get_i32(g, "t.i32", &i32));
    CHECK(i32 == -2000000000, "i32");
    CHECK_OK(mlxn_gguf_get_f32(g, "t.f32", &f));
    CHECK(f == 0.15625f, "f32 %g", (double)f);
    CHECK_OK(mlxn_gguf_get_bool(g, "t.bool", &bo));
    CHECK(bo, "bool");
    const char *s = NULL;
    size_t len = 0;
    CHECK_OK(mlxn_gguf_get_string(g, "t.string", &s, &len));
    CHECK(s && len == 11 && strcmp(s, "h\xc3\xa9llo gguf") == 0, "string '%s' len %zu", s, len);
    CHECK_OK(mlxn_gguf_get_string(g, "general.architecture", &s, NULL));
    CHECK(s && strcmp(s, "llama") == 0, "architecture");
    CHECK_OK(mlxn_gguf_get_u64(g, "t.u64", &u64));
    CHECK(u64 == 1ull << 40, "u64");
    CHECK_OK(mlxn_gguf_get_i64(g, "t.i64", &i64));
    CHECK(i64 == -(1ll << 40), "i64");
    CHECK_OK(mlxn_gguf_get_f64(g, "t.f64", &d));
    CHECK(d == 1.0 / 3.0, "f64 %.17g", d);
    CHECK_OK(mlxn_gguf_get_u32(g, "t.small_i64", &u32));
    CHECK(u32 == 4096, "i64 that fits, as u32");
    CHECK_OK(mlxn_gguf_get_u32(g, "llama.context_length", &u32));
    CHECK(u32 == 2048, "context_length");
    CHECK_OK(mlxn_gguf_get_f32(g, "llama.block_count", &f));
    CHECK(f == 1.0f, "int as float");

    /* Type and range errors name the key. */
    CHECK_STATUS(mlxn_gguf_get_i32(g, "t.u32", &i32), MLXN_ERR_RANGE);
    CHECK(msg_has("'t.u32' = 4000000000 does not fit i32"), "msg: %s", mlxn_last_error());
    CHECK_STATUS(mlxn_gguf_get_u32(g, "t.i8", &u32), MLXN_ERR_RANGE);
    CHECK(msg_has("'t.i8' = -100"), "msg: %s", mlxn_last_error());
    CHECK_STATUS(mlxn_gguf_get_u32(g, "t.u64", &u32), MLXN_ERR_RANGE);
    CHECK_STATUS(mlxn_gguf_get_u32(g, "t.string", &u32), MLXN_ERR_DTYPE);
    CHECK(msg_has("'t.string' is string, expected an integer"), "msg: %s", mlxn_last_error());
    CHECK_STATUS(mlxn_gguf_get_u32(g, "t.f32", &u32), MLXN_ERR_DTYPE);
    CHECK_STATUS(mlxn_gguf_get_string(g, "t.u8", &s, NULL), MLXN_ERR_DTYPE);
    CHECK_STATUS(mlxn_gguf_get_bool(g, "t.u8", &bo), MLXN_ERR_DTYPE);
    CHECK_STATUS(mlxn_gguf_get_u32(g, "no.such.key", &u32), MLXN_ERR_NOT_FOUND);
    CHECK(msg_has("'no.such.key'"), "msg: %s", mlxn_last_error());
    CHECK(u32 == 2048, "untouched on failure");

    /* Arrays. */
    const mlxn_gguf_value *a = NULL;
    CHECK_OK(mlxn_gguf_get_array(g, "tokenizer.ggml.tokens", MLXN_GGUF_STRING, &a));
    static const char *const toks[] = {"<s>", "</s>", "a", "", "h\xc3\xa9llo"};
    int bad = 0;
    for (uint64_t i = 0; a && i < 5; i++) {
        mlxn_gguf_str st;
        if (mlxn_gguf_arr_string(a, i, &st) || st.len != strlen(toks[i]) || memcmp(st.ptr, toks[i], st.len)) bad++;
    }
    CHECK(a && a->count == 5 && bad == 0, "tokens: %d wrong", bad);
    mlxn_gguf_str st;
    CHECK_STATUS(mlxn_gguf_arr_string(a, 5, &st), MLXN_ERR_RANGE);
    int64_t iv;
    CHECK_STATUS(mlxn_gguf_arr_i64(a, 0, &iv), MLXN_ERR_DTYPE);
    CHECK_STATUS(mlxn_gguf_get_array(g, "tokenizer.ggml.tokens", MLXN_GGUF_F32, &a), MLXN_ERR_DTYPE);
    CHECK(msg_has("array of string, expected an array of f32"), "msg: %s", mlxn_last_error());
    CHECK_OK(mlxn_gguf_get_array(g, "tokenizer.ggml.scores", MLXN_GGUF_F32, &a));
    static const float scores[] = {0.0f, -1.5f, 2.25f, 3.0f, -4.0f};
    bad = 0;
    for (uint64_t i = 0; i < 5; i++) {
        float x;
        if (mlxn_gguf_arr_f32(a, i, &x) || x != scores[i]) bad++;
    }
    CHECK(bad == 0, "scores: %d wrong", bad);
    CHECK_OK(mlxn_gguf_get_array(g, "tokenizer.ggml.token_type", MLXN_GGUF_I32, &a));
    static const int64_t tt[] = {1, 3, 1, 1, 6};
    bad = 0;
    for (uint64_t i = 0; i < 5; i++)
        if (mlxn_gguf_arr_i64(a, i, &iv) || iv != tt[i]) bad++;
    CHECK(bad == 0, "token types: %d wrong", bad);
    CHECK_OK(mlxn_gguf_get_array(g, "tokenizer.ggml.merges", MLXN_GGUF_STRING, &a));
    CHECK(a->count == 2 && !mlxn_gguf_arr_string(a, 1, &st) && st.len == 4 && !memcmp(st.ptr, "ab c", 4), "merges");
    CHECK_OK(mlxn_gguf_get_array(g, "t.nested", MLXN_GGUF_ARRAY, &a));
    const mlxn_gguf_value *it = NULL;
    CHECK(a->count == 2, "nested count");
    CHECK_OK(mlxn_gguf_arr_item(a, 1, &it));
    CHECK(it && it->elem_type == MLXN_GGUF_STRING && it->count == 3 && !mlxn_gguf_arr_string(it, 2, &st) &&
              st.len == 1 && st.ptr[0] == 'r', "nested item");
    CHECK_OK(mlxn_gguf_arr_item(a, 0, &it));
    CHECK(it && it->count == 2 && !mlxn_gguf_arr_string(it, 1, &st) && st.len == 2 && !memcmp(st.ptr, "yz", 2), "nested item 0");
    CHECK_OK(mlxn_gguf_get_array(g, "t.u8arr", MLXN_GGUF_TYPE_COUNT, &a));
    CHECK(!mlxn_gguf_arr_i64(a, 2, &iv) && iv == 255, "u8 array");
    CHECK_OK(mlxn_gguf_get_array(g, "t.f64arr", MLXN_GGUF_F64, &a));
    CHECK(!mlxn_gguf_arr_f64(a, 1, &d) && d == -2.0, "f64 array");
    /* Iteration in file order. */
    CHECK(mlxn_gguf_kv_count(g) == 23 && strcmp(mlxn_gguf_kv_key(g, 0), "general.architecture") == 0 &&
              mlxn_gguf_kv_value(g, 1)->type == MLXN_GGUF_U8, "kv iteration (%zu)", mlxn_gguf_kv_count(g));
}

static float f32_at(const void *p, size_t i) {
    float f;
    memcpy(&f, (const uint8_t *)p + 4 * i, 4);
    return f;
}

static void test_tensors(const mlxn_gguf *g, const uint8_t *base, size_t first_data) {
    CHECK(mlxn_gguf_tensor_count(g) == 8, "tensor count %zu", mlxn_gguf_tensor_count(g));
    CHECK(mlxn_gguf_data_offset(g) == first_data, "data offset %zu (gguf-py %zu)", mlxn_gguf_data_offset(g), first_data);
    const mlxn_gguf_tensor *t = mlxn_gguf_find_tensor(g, "tok_embd.weight");
    CHECK(t && t->dtype == MLXN_F32 && t->ndim == 2 && t->ne[0] == 3 && t->ne[1] == 2 && t->shape[0] == 2 &&
              t->shape[1] == 3 && t->nbytes == 24 && t->offset == 0 && (const uint8_t *)t->data == base + first_data,
          "tok_embd info");
    int bad = 0;
    for (int i = 0; t && i < 6; i++) bad += f32_at(t->data, (size_t)i) != -1.0f + 0.5f * (float)i;
    CHECK(bad == 0, "tok_embd values");
    t = mlxn_gguf_find_tensor(g, "blk.0.attn_norm.weight");
    bad = 0;
    for (int i = 0; t && i < 4; i++) {
        uint16_t h;
        memcpy(&h, (const uint8_t *)t->data + 2 * i, 2);
        bad += mlxn_f16_to_f32(h) != 1.0f + 0.25f * (float)i;
    }
    CHECK(t && t->dtype == MLXN_F16 && t->ndim == 1 && bad == 0, "attn_norm f16");
    t = mlxn_gguf_find_tensor(g, "blk.0.attn_q.weight");
    bad = 0;
    for (size_t i = 0; t && i < t->nbytes; i++) bad += ((const uint8_t *)t->data)[i] != (uint8_t)(i * 37 % 251);
    CHECK(t && t->dtype == MLXN_Q8_0 && t->shape[0] == 2 && t->shape[1] == 64 && t->nbytes == 136 && bad == 0,
          "attn_q q8_0");
    t = mlxn_gguf_find_tensor(g, "blk.0.ffn_down.weight");
    CHECK(t && t->dtype == MLXN_Q4_K && t->shape[1] == 256 && t->nbytes == 288 &&
              ((const uint8_t *)t->data)[287] == (uint8_t)(287 * 37 % 251), "ffn_down q4_k");
    t = mlxn_gguf_find_tensor(g, "blk.0.bf16");
    CHECK(t && t->dtype == MLXN_BF16 && t->shape[0] == 3 && t->shape[1] == 2, "bf16");
    if (t) {
        uint16_t h;
        memcpy(&h, (const uint8_t *)t->data + 10, 2);
        CHECK(mlxn_bf16_to_f32(h) == 1.5f, "bf16 value");
    }
    t = mlxn_gguf_find_tensor(g, "t.i32");
    CHECK(t && t->dtype == MLXN_I32 && t->ggml_type == 26, "i32");
    t = mlxn_gguf_find_tensor(g, "t.3d");
    CHECK(t && t->ndim == 3 && t->shape[0] == 2 && t->shape[1] == 3 && t->shape[2] == 4 &&
              f32_at(t->data, 23) == 23.0f, "3d");
    const mlxn_gguf_tensor *out = NULL;
    CHECK_OK(mlxn_gguf_get_tensor(g, "t.3d", &out));
    CHECK_STATUS(mlxn_gguf_get_tensor(g, "missing", &out), MLXN_ERR_NOT_FOUND);
    for (size_t i = 0; i < mlxn_gguf_tensor_count(g); i++) {
        const mlxn_gguf_tensor *x = mlxn_gguf_tensor_at(g, i);
        CHECK(mlxn_gguf_find_tensor(g, x->name) == x && x->offset % mlxn_gguf_alignment(g) == 0, "tensor %zu", i);
    }
}

static void test_files(void) {
    size_t n;
    uint8_t *raw = load(D "small.gguf", &n);
    mlxn_gguf *g = NULL;
    CHECK_OK(mlxn_gguf_open_file(&g, D "small.gguf"));
    if (!g) return;
    CHECK(mlxn_gguf_alignment(g) == 32, "default alignment");
    test_metadata(g);
    /* gguf-py reports the first tensor at 1344 (its reader's data_offset). */
    test_tensors(g, (const uint8_t *)mlxn_gguf_find_tensor(g, "tok_embd.weight")->data - 1344, 1344);
    const mlxn_gguf_tensor *t = mlxn_gguf_find_tensor(g, "t.q2k");
    CHECK(t && !t->supported && t->nbytes == 84 && t->dtype == MLXN_DTYPE_COUNT, "q2_k known, unsupported");
    CHECK_STATUS(mlxn_gguf_get_tensor(g, "t.q2k", &t), MLXN_ERR_UNSUPPORTED);
    CHECK(msg_has("ggml type 10 (q2_k)"), "msg: %s", mlxn_last_error());
    mlxn_gguf_close(g);
    mlxn_gguf_close(NULL);

    /* The same bytes as version 2 read the same. */
    uint8_t *p = dup_bytes(raw, n);
    p[4] = 2;
    CHECK_OK(mlxn_gguf_open_memory(&g, p, n, "v2"));
    CHECK(g && mlxn_gguf_version(g) == 2 && mlxn_gguf_tensor_count(g) == 8, "v2");
    mlxn_gguf_close(g);
    p[4] = 1;
    CHECK_STATUS(mlxn_gguf_open_memory(&g, p, n, "v1.gguf"), MLXN_ERR_UNSUPPORTED);
    CHECK(msg_has("v1.gguf: gguf: version 1 files are not supported"), "msg: %s", mlxn_last_error());
    p[4] = 4;
    CHECK_STATUS(mlxn_gguf_open_memory(&g, p, n, NULL), MLXN_ERR_UNSUPPORTED);
    p[4] = 0;
    p[7] = 3;
    CHECK_STATUS(mlxn_gguf_open_memory(&g, p, n, NULL), MLXN_ERR_UNSUPPORTED);
    CHECK(msg_has("byte-swapped"), "msg: %s", mlxn_last_error());
    free(p);
    free(raw);

    CHECK_OK(mlxn_gguf_open_file(&g, D "align64.gguf"));
    if (g) {
        CHECK(mlxn_gguf_alignment(g) == 64 && mlxn_gguf_data_offset(g) % 64 == 0, "alignment 64, data at %zu",
              mlxn_gguf_data_offset(g));
        const mlxn_gguf_tensor *x = mlxn_gguf_find_tensor(g, "t.3d");
        CHECK(x && f32_at(x->data, 5) == 5.0f && mlxn_gguf_tensor_count(g) == 7, "align64 values");
        mlxn_gguf_close(g);
    }
    mlxn_mapfile mf = {0};
    CHECK_OK(mlxn_mapfile_open(&mf, D "small.gguf"));
    CHECK_OK(mlxn_gguf_open(&g, &mf));
    mlxn_gguf_close(g);
    mlxn_mapfile_close(&mf);
    mlxn_mapfile_close(&mf);
    CHECK_STATUS(mlxn_gguf_open_file(&g, D "nope.gguf"), MLXN_ERR_IO);
    CHECK(msg_has("nope.gguf") && msg_has("No such file"), "msg: %s", mlxn_last_error());
    CHECK_STATUS(mlxn_mapfile_open(&mf, D), MLXN_ERR_IO);
    CHECK(msg_has("not a regular file"), "msg: %s", mlxn_last_error());
}

static void exercise(const uint8_t *p, size_t n, int *n_ok) {
    mlxn_gguf *g = NULL;
    mlxn_status s = mlxn_gguf_open_memory(&g, p, n, NULL);
    if (s) {
        if (!mlxn_last_error()[0] || g) CHECK(0, "failure without message, or out set");
        return;
    }
    (*n_ok)++;
    for (size_t i = 0; i < mlxn_gguf_tensor_count(g); i++) {
        const mlxn_gguf_tensor *t = mlxn_gguf_tensor_at(g, i);
        touch(t->data, t->nbytes);
    }
    for (size_t i = 0; i < mlxn_gguf_kv_count(g); i++) {
        const mlxn_gguf_value *v = mlxn_gguf_kv_value(g, i);
        if (v->type == MLXN_GGUF_STRING) touch(v->str, v->str_len + 1);
        if (v->type != MLXN_GGUF_ARRAY) continue;
        for (uint64_t k = 0; k < v->count; k++) {
            mlxn_gguf_str st;
            double d;
            const mlxn_gguf_value *it;
            if (!mlxn_gguf_arr_string(v, k, &st)) touch(st.ptr, st.len);
            (void)mlxn_gguf_arr_f64(v, k, &d);
            (void)mlxn_gguf_arr_item(v, k, &it);
        }
    }
    mlxn_gguf_close(g);
}

/* ---------------------------------------------------------- a tiny writer */

static void g_str(bytes *b, const char *s) {
    put_u64(b, strlen(s));
    put(b, s, strlen(s));
}
static void g_head(bytes *b, uint64_t nt, uint64_t nkv) {
    put(b, "GGUF", 4);
    put_u32(b, 3);
    put_u64(b, nt);
    put_u64(b, nkv);
}
static void g_tinfo(bytes *b, const char *name, uint32_t nd, const uint64_t *ne, uint32_t type, uint64_t off) {
    g_str(b, name);
    put_u32(b, nd);
    for (uint32_t i = 0; i < nd; i++) put_u64(b, ne[i]);
    put_u32(b, type);
    put_u64(b, off);
}
static void g_pad(bytes *b, size_t align) {
    while (b->n % align) put(b, "", 1);
}

typedef struct gcase {
    const char *what;
    mlxn_status want;
    const char *frag;
} gcase;

static void check_case(const char *what, bytes *b, mlxn_status want, const char *frag) {
    uint8_t *p = dup_bytes(b->p, b->n);
    mlxn_gguf *g = NULL;
    mlxn_status s = mlxn_gguf_open_memory(&g, p, b->n, NULL);
    CHECK(s == want && msg_has(frag) && (want == MLXN_OK) == (g != NULL), "%s: %s '%s' (want %s '%s')", what, mlxn_status_name(s),
          mlxn_last_error(), mlxn_status_name(want), frag);
    mlxn_gguf_close(g);
    free(p);
    free(b->p);
    *b = (bytes){0};
}

static void test_corrupt(void) {
    bytes b = {0};
    uint64_t ne[5] = {4, 2, 1, 1, 1};
    char msg[128];

    put(&b, "GGML", 4);
    put_u32(&b, 3);
    put_u64(&b, 0);
    put_u64(&b, 0);
    check_case("bad magic", &b, MLXN_ERR_FORMAT, "bad magic 47 47 4d 4c");

    g_head(&b, 0, 0);
    check_case("empty, valid", &b, MLXN_OK, "");
    put(&b, "GGUF", 4);
    put_u32(&b, 3);
    put_u64(&b, 0);
    check_case("header cut", &b, MLXN_ERR_FORMAT, "truncated at byte 16 reading kv count: need 8 bytes, 0 remain");

    g_head(&b, 1ull << 40, 0);
    check_case("huge tensor count", &b, MLXN_ERR_FORMAT, "tensor count 1099511627776 is over the limit");
    g_head(&b, 0, 1ull << 63);
    check_case("huge kv count", &b, MLXN_ERR_FORMAT, "kv count 9223372036854775808 is over the limit");
    g_head(&b, 1000, 1000);
    put_zeros(&b, 100);
    check_case("counts vs bytes", &b, MLXN_ERR_FORMAT, "1000 key/values and 1000 tensor infos cannot fit in the 100 bytes");

    g_head(&b, 0, 1);
    put_u64(&b, 1ull << 62);
    put_zeros(&b, 16);
    check_case("key length", &b, MLXN_ERR_FORMAT, "key 0 at byte 24 has length 4611686018427387904, limit is");
    g_head(&b, 0, 1);
    put_u64(&b, 1000);
    put_zeros(&b, 16);
    check_case("key past end", &b, MLXN_ERR_FORMAT, "truncated at byte 32 reading key 0: need 1000 bytes, 16 remain");
    g_head(&b, 0, 1);
    put_u64(&b, 3);
    put(&b, "a\0b", 3);
    put_u32(&b, 0);
    put(&b, "x", 1);
    check_case("NUL in key", &b, MLXN_ERR_FORMAT, "contains a NUL byte");

    g_head(&b, 0, 1);
    g_str(&b, "k");
    put_u32(&b, 13);
    put_zeros(&b, 8);
    check_case("bad value type", &b, MLXN_ERR_FORMAT, "key 'k' has value type 13, not a GGUF type");
    g_head(&b, 0, 1);
    g_str(&b, "k");
    put_u32(&b, MLXN_GGUF_ARRAY);
    put_u32(&b, MLXN_GGUF_U32);
    put_u64(&b, 1000);
    put_zeros(&b, 40);
    check_case("array past end", &b, MLXN_ERR_FORMAT, "key 'k': array of 1000 u32 needs at least 4000 bytes, 40 remain");
    g_head(&b, 0, 1);
    g_str(&b, "k");
    put_u32(&b, MLXN_GGUF_ARRAY);
    put_u32(&b, MLXN_GGUF_STRING);
    put_u64(&b, 1ull << 40);
    put_zeros(&b, 40);
    check_case("array limit", &b, MLXN_ERR_FORMAT, "array of 1099511627776 elements, limit is");
    g_head(&b, 0, 1);
    g_str(&b, "k");
    put_u32(&b, MLXN_GGUF_ARRAY);
    put_u32(&b, 77);
    put_u64(&b, 1);
    check_case("array elem type", &b, MLXN_ERR_FORMAT, "array element type 77");
    g_head(&b, 0, 1);
    g_str(&b, "deep");
    put_u32(&b, MLXN_GGUF_ARRAY);
    for (int i = 0; i < 10; i++) {
        put_u32(&b, MLXN_GGUF_ARRAY);
        put_u64(&b, 1);
    }
    put_zeros(&b, 64);
    check_case("nesting", &b, MLXN_ERR_FORMAT, "key 'deep': arrays nested deeper than 8");
    g_head(&b, 0, 2);
    g_str(&b, "k");
    put_u32(&b, MLXN_GGUF_U8);
    put(&b, "x", 1);
    g_str(&b, "k");
    put_u32(&b, MLXN_GGUF_U8);
    put(&b, "x", 1);
    check_case("dup key", &b, MLXN_ERR_FORMAT, "duplicate key 'k'");
    g_head(&b, 0, 1);
    g_str(&b, "general.alignment");
    put_u32(&b, MLXN_GGUF_U32);
    put_u32(&b, 48);
    check_case("alignment 48", &b, MLXN_ERR_FORMAT, "general.alignment 48 is not a power of two");
    g_head(&b, 0, 1);
    g_str(&b, "general.alignment");
    put_u32(&b, MLXN_GGUF_U64);
    put_u64(&b, 64);
    check_case("alignment u64", &b, MLXN_ERR_FORMAT, "general.alignment is u64, expected u32");
    g_head(&b, 0, 1);
    g_str(&b, "general.alignment");
    put_u32(&b, MLXN_GGUF_U32);
    put_u32(&b, 0);
    check_case("alignment 0", &b, MLXN_ERR_FORMAT, "not a power of two");

    /* Tensor infos. The header + one F32 [2,4] tensor info: data at 64. */
    g_head(&b, 1, 0);
    g_tinfo(&b, "w", 2, ne, 0, 0);
    g_pad(&b, 32);
    put_zeros(&b, 32);
    check_case("valid one tensor", &b, MLXN_OK, "");
    g_head(&b, 1, 0);
    g_tinfo(&b, "blk.0.attn_q.weight", 2, ne, 0, 0);
    g_pad(&b, 32);
    size_t data_at = b.n;
    put_zeros(&b, 20);
    snprintf(msg, sizeof msg, "gguf: tensor 'blk.0.attn_q.weight' data ends at byte %zu, file has %zu", data_at + 32,
             data_at + 20);
    check_case("data past end", &b, MLXN_ERR_FORMAT, msg);
    g_head(&b, 1, 0);
    g_tinfo(&b, "w", 2, ne, 0, UINT64_MAX - 31);
    g_pad(&b, 32);
    put_zeros(&b, 32);
    check_case("offset overflow", &b, MLXN_ERR_FORMAT, "data ends at byte");
    g_head(&b, 1, 0);
    g_tinfo(&b, "w", 5, ne, 0, 0);
    put_zeros(&b, 64);
    check_case("5 dims", &b, MLXN_ERR_FORMAT, "tensor 'w' has 5 dims, at most 4");
    uint64_t neg[2] = {4, (uint64_t)-2};
    g_head(&b, 1, 0);
    g_tinfo(&b, "w", 2, neg, 0, 0);
    put_zeros(&b, 64);
    check_case("negative dim", &b, MLXN_ERR_FORMAT, "tensor 'w': dim 1 is negative (-2)");
    uint64_t huge[3] = {1ull << 32, 1ull << 32, 1ull << 32};
    g_head(&b, 1, 0);
    g_tinfo(&b, "w", 3, huge, 0, 0);
    put_zeros(&b, 64);
    check_case("elem overflow", &b, MLXN_ERR_FORMAT, "tensor 'w': element count overflows");
    uint64_t big2[2] = {1ull << 20, 1ull << 20};
    g_head(&b, 1, 0);
    g_tinfo(&b, "w", 2, big2, 0, 0);
    put_zeros(&b, 64);
    check_case("huge but valid count, past end", &b, MLXN_ERR_FORMAT, "data ends at byte");
    g_head(&b, 1, 0);
    g_tinfo(&b, "w", 2, ne, 99, 0);
    put_zeros(&b, 64);
    check_case("unknown ggml type", &b, MLXN_ERR_UNSUPPORTED, "tensor 'w' has unknown ggml type 99");
    g_head(&b, 1, 0);
    g_tinfo(&b, "w", 2, ne, 4, 0);
    put_zeros(&b, 64);
    check_case("removed ggml type", &b, MLXN_ERR_UNSUPPORTED, "unknown ggml type 4");
    uint64_t ne100[2] = {100, 2};
    g_head(&b, 1, 0);
    g_tinfo(&b, "w", 2, ne100, 12, 0);
    put_zeros(&b, 1024);
    check_case("row not a block multiple", &b, MLXN_ERR_FORMAT,
               "tensor 'w': row of 100 elements is not a multiple of the q4_k block size 256");
    g_head(&b, 1, 0);
    g_tinfo(&b, "w", 2, ne, 0, 16);
    put_zeros(&b, 128);
    check_case("misaligned offset", &b, MLXN_ERR_FORMAT, "tensor 'w' offset 16 is not a multiple of the alignment 32");
    g_head(&b, 2, 0);
    g_tinfo(&b, "w", 2, ne, 0, 0);
    uint64_t ne16[1] = {16};
    g_tinfo(&b, "v", 1, ne16, 0, 0);
    put_zeros(&b, 256);
    check_case("overlap", &b, MLXN_ERR_FORMAT, "overlaps tensor");
    g_head(&b, 2, 0);
    g_tinfo(&b, "w", 2, ne, 0, 0);
    g_tinfo(&b, "w", 2, ne, 0, 32);
    put_zeros(&b, 256);
    check_case("dup tensor", &b, MLXN_ERR_FORMAT, "duplicate tensor name 'w'");
    g_head(&b, 2, 0);
    g_tinfo(&b, "w", 2, ne, 0, 0);
    put_zeros(&b, 4);
    check_case("second info cut", &b, MLXN_ERR_FORMAT, "cannot fit");
    g_head(&b, 1, 0);
    g_tinfo(&b, "w", 2, ne, 0, 0);
    b.n -= 3;
    put_zeros(&b, 0);
    check_case("info cut", &b, MLXN_ERR_FORMAT, "truncated");
}

static void test_hostile(void) {
    size_t n;
    uint8_t *orig = load(D "small.gguf", &n);
    mlxn_gguf *g = NULL;
    mlxn_gguf_open_memory(&g, orig, n, NULL);
    size_t end = 0; /* the last byte any tensor needs */
    for (size_t i = 0; g && i < mlxn_gguf_tensor_count(g); i++) {
        const mlxn_gguf_tensor *t = mlxn_gguf_tensor_at(g, i);
        size_t e = mlxn_gguf_data_offset(g) + t->offset + t->nbytes;
        if (e > end) end = e;
    }
    mlxn_gguf_close(g);
    int fails = 0, n_ok = 0;
    for (size_t cut = 0; cut < n; cut++) {
        uint8_t *p = dup_bytes(orig, cut);
        g = NULL;
        mlxn_status s = mlxn_gguf_open_memory(&g, p, cut, NULL);
        bool want_ok = cut >= end;
        if ((want_ok && s) || (!want_ok && (s != MLXN_ERR_FORMAT || g || !mlxn_last_error()[0]))) {
            if (fails++ < 5) fprintf(stderr, "  cut %zu: %s %s\n", cut, mlxn_status_name(s), mlxn_last_error());
        }
        mlxn_gguf_close(g);
        free(p);
    }
    CHECK(fails == 0, "every truncation of small.gguf (%zu bytes, data ends %zu) fails before the end: %d wrong", n,
          end, fails);
    for (int it = 0; it < 20000; it++) {
        uint8_t *p = dup_bytes(orig, n);
        int flips = rng_int(1, 4);
        for (int k = 0; k < flips; k++) {
            /* Mostly in the header (kv + tensor infos), sometimes anywhere. */
            size_t at = (it % 4 == 0) ? (size_t)rng_int(0, (int)n - 1) : (size_t)rng_int(0, 1343);
            uint64_t r = rng_u64();
            p[at] = (r & 0x300) == 0 ? (uint8_t)(p[at] ^ (1u << (r & 7))) : (uint8_t)r;
        }
        exercise(p, n, &n_ok);
        free(p);
    }
    CHECK(1, "flips");
    printf("gguf: %zu truncations, 20000 flips (%d still valid)\n", n, n_ok);
    free(orig);
}

static mlxn_status open_close_gguf(void) {
    mlxn_gguf *g = NULL;
    mlxn_status s = mlxn_gguf_open_file(&g, D "small.gguf");
    if (!s && (!g || mlxn_gguf_tensor_count(g) != 8)) s = MLXN_ERR_STATE;
    mlxn_gguf_close(g);
    return s;
}

int main(void) {
    walk_alloc_failures("gguf open", open_close_gguf, 200);
    test_files();
    test_corrupt();
    test_hostile();
    return test_summary("test_io_gguf");
}
