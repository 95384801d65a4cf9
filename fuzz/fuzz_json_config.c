/* fuzz_json_config.c — libFuzzer target: bounded JSON parsing (cJSON under
 * our depth check) and every typed getter on every member, recursively into
 * nested objects, as a config.json reader would call them.
 * Build: scripts/fuzz.sh build. */
#include "io/io.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static volatile unsigned g_sink;

static void visit(const cJSON *obj, int depth) {
    if (depth > MLXN_JSON_MAX_DEPTH) __builtin_trap();
    for (const cJSON *it = obj->child; it; it = it->next) {
        if (cJSON_IsObject(obj) && it->string) {
            int64_t i;
            double d;
            bool b;
            const char *s;
            const cJSON *o;
            (void)mlxn_json_get_int(obj, it->string, 0, &i);
            (void)mlxn_json_need_int(obj, it->string, &i);
            (void)mlxn_json_get_float(obj, it->string, 0, &d);
            (void)mlxn_json_need_float(obj, it->string, &d);
            (void)mlxn_json_get_bool(obj, it->string, false, &b);
            if (!mlxn_json_get_string(obj, it->string, NULL, &s) && s) g_sink += (unsigned)s[0];
            (void)mlxn_json_need_string(obj, it->string, &s);
            (void)mlxn_json_get_object(obj, it->string, &o);
        }
        g_sink += (unsigned)mlxn_json_type_name(it)[0];
        if (cJSON_IsObject(it) || cJSON_IsArray(it)) visit(it, depth + 1);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    cJSON *root = NULL;
    if (mlxn_json_parse(&root, (const char *)data, size, "fuzz") != MLXN_OK) {
        if (root) __builtin_trap();
        return 0;
    }
    visit(root, 0);
    cJSON_Delete(root);
    return 0;
}
