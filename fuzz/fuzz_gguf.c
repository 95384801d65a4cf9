/* fuzz_gguf.c — libFuzzer target: the GGUF reader over arbitrary bytes,
 * then every accessor over what it accepted (typed getters on every key,
 * every array element, every tensor's bytes). Build: scripts/fuzz.sh build. */
#include "io/io.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static volatile unsigned g_sink;

static void touch(const void *p, size_t n) {
    const volatile uint8_t *q = p;
    unsigned s = 0;
    for (size_t i = 0; i < n; i++) s += q[i];
    g_sink += s;
}

static void walk(const mlxn_gguf_value *v, int depth) {
    if (depth > MLXN_GGUF_MAX_DEPTH + 1) __builtin_trap();
    if (v->type == MLXN_GGUF_STRING) touch(v->str, v->str_len + 1);
    if (v->type != MLXN_GGUF_ARRAY) return;
    for (uint64_t k = 0; k < v->count && k < 4096; k++) {
        mlxn_gguf_str s;
        int64_t i;
        double d;
        float f;
        const mlxn_gguf_value *it;
        if (!mlxn_gguf_arr_string(v, k, &s)) touch(s.ptr, s.len);
        (void)mlxn_gguf_arr_i64(v, k, &i);
        (void)mlxn_gguf_arr_f64(v, k, &d);
        (void)mlxn_gguf_arr_f32(v, k, &f);
        if (!mlxn_gguf_arr_item(v, k, &it)) walk(it, depth + 1);
    }
    mlxn_gguf_str s;
    (void)mlxn_gguf_arr_string(v, v->count, &s);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    mlxn_gguf *g = NULL;
    if (mlxn_gguf_open_memory(&g, data, size, "fuzz") != MLXN_OK) {
        if (g) __builtin_trap();
        return 0;
    }
    for (size_t i = 0; i < mlxn_gguf_kv_count(g); i++) {
        const char *key = mlxn_gguf_kv_key(g, i);
        if (mlxn_gguf_find(g, key) != mlxn_gguf_kv_value(g, i)) __builtin_trap();
        uint32_t u32;
        int32_t i32;
        uint64_t u64;
        int64_t i64;
        float f;
        double d;
        bool b;
        const char *s;
        size_t len;
        const mlxn_gguf_value *arr;
        (void)mlxn_gguf_get_u32(g, key, &u32);
        (void)mlxn_gguf_get_i32(g, key, &i32);
        (void)mlxn_gguf_get_u64(g, key, &u64);
        (void)mlxn_gguf_get_i64(g, key, &i64);
        (void)mlxn_gguf_get_f32(g, key, &f);
        (void)mlxn_gguf_get_f64(g, key, &d);
        (void)mlxn_gguf_get_bool(g, key, &b);
        if (!mlxn_gguf_get_string(g, key, &s, &len)) touch(s, len + 1);
        (void)mlxn_gguf_get_array(g, key, MLXN_GGUF_STRING, &arr);
        walk(mlxn_gguf_kv_value(g, i), 0);
    }
    for (size_t i = 0; i < mlxn_gguf_tensor_count(g); i++) {
        const mlxn_gguf_tensor *t = mlxn_gguf_tensor_at(g, i), *u;
        if (mlxn_gguf_find_tensor(g, t->name) != t) __builtin_trap();
        if ((const uint8_t *)t->data < data || (const uint8_t *)t->data + t->nbytes > data + size) __builtin_trap();
        touch(t->data, t->nbytes);
        (void)mlxn_gguf_get_tensor(g, t->name, &u);
    }
    mlxn_gguf_close(g);
    return 0;
}
