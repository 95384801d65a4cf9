/* fuzz_safetensors.c — libFuzzer target: the safetensors reader over
 * arbitrary bytes, then every tensor's bytes, name lookup and metadata.
 * Build: scripts/fuzz.sh build. */
#include "io/io.h"

#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static volatile unsigned g_sink;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    mlxn_safetensors *st = NULL;
    if (mlxn_safetensors_open_memory(&st, data, size, "fuzz") != MLXN_OK) {
        if (st) __builtin_trap();
        return 0;
    }
    for (size_t i = 0; i < mlxn_safetensors_count(st); i++) {
        const mlxn_st_tensor *t = mlxn_safetensors_at(st, i), *u;
        if (mlxn_safetensors_find(st, t->name) != t) __builtin_trap();
        if (mlxn_safetensors_get(st, t->name, &u) != MLXN_OK || u != t) __builtin_trap();
        if ((const uint8_t *)t->data < data || (const uint8_t *)t->data + t->nbytes > data + size) __builtin_trap();
        if (t->ndim < 0 || t->ndim > MLXN_MAX_DIMS) __builtin_trap();
        const volatile uint8_t *p = t->data;
        unsigned s = 0;
        for (size_t k = 0; k < t->nbytes; k++) s += p[k];
        g_sink += s + (unsigned)strlen(t->dtype_name);
    }
    for (size_t i = 0; i < mlxn_safetensors_meta_count(st); i++) {
        const char *k = mlxn_safetensors_meta_key(st, i);
        if (!mlxn_safetensors_meta_find(st, k)) __builtin_trap();
        g_sink += (unsigned)strlen(mlxn_safetensors_meta_value(st, i));
    }
    mlxn_safetensors_close(st);
    return 0;
}
