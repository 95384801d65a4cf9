/* json_util.c — bounded JSON parsing and typed getters over cJSON, for
 * config.json, tokenizer files and the safetensors header. Errors name the
 * key and the JSON types involved. */
#include "io/io.h"

#include <math.h>
#include <string.h>

const char *mlxn_json_type_name(const cJSON *it) {
    if (!it) return "absent";
    if (cJSON_IsNull(it)) return "null";
    if (cJSON_IsBool(it)) return "bool";
    if (cJSON_IsNumber(it)) return "number";
    if (cJSON_IsString(it)) return "string";
    if (cJSON_IsArray(it)) return "array";
    if (cJSON_IsObject(it)) return "object";
    return "invalid";
}

/* Line and column (1-based) of byte `pos`. */
static void line_col(const char *text, size_t pos, size_t *line, size_t *col) {
    size_t l = 1, c = 1;
    for (size_t i = 0; i < pos; i++) {
        if (text[i] == '\n') {
            l++;
            c = 1;
        } else {
            c++;
        }
    }
    *line = l;
    *col = c;
}

/* Deepest [ / { nesting outside strings, and where it first passes `limit`. */
static bool depth_ok(const char *t, size_t n, int limit, size_t *where) {
    int d = 0;
    bool in_str = false;
    for (size_t i = 0; i < n; i++) {
        char ch = t[i];
        if (in_str) {
            if (ch == '\\') i++;
            else if (ch == '"') in_str = false;
        } else if (ch == '"') {
            in_str = true;
        } else if (ch == '[' || ch == '{') {
            if (++d > limit) {
                *where = i;
                return false;
            }
        } else if (ch == ']' || ch == '}') {
            d--;
        }
    }
    return true;
}

static bool is_ws(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

mlxn_status mlxn_json_parse(cJSON **out, const char *text, size_t len, const char *label) {
    if (!out || (!text && len)) return mlxn_err(MLXN_ERR_INVALID_ARG, "json_parse: NULL argument");
    *out = NULL;
    if (!label) label = "json";
    size_t line, col, where = 0;
    if (!depth_ok(text, len, MLXN_JSON_MAX_DEPTH, &where)) {
        line_col(text, where, &line, &col);
        return mlxn_err(MLXN_ERR_FORMAT, "%s: nesting deeper than %d at line %zu column %zu", label,
                        MLXN_JSON_MAX_DEPTH, line, col);
    }
    /* cJSON takes a raw NUL for whitespace; JSON has no raw NUL anywhere. */
    const char *nul = len ? memchr(text, 0, len) : NULL;
    if (nul) {
        line_col(text, (size_t)(nul - text), &line, &col);
        return mlxn_err(MLXN_ERR_FORMAT, "%s: NUL byte at line %zu column %zu", label, line, col);
    }
    /* cJSON gets a NUL-terminated copy so no path of it can read past the end. */
    char *buf = mlxn_malloc(len + 1);
    if (!buf) return mlxn_err(MLXN_ERR_OUT_OF_MEMORY, "%s: out of memory (%zu bytes)", label, len);
    if (len) memcpy(buf, text, len);
    buf[len] = 0;
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(buf, len, &end, 0);
    size_t pos = end && end >= buf && end <= buf + len ? (size_t)(end - buf) : len;
    if (!root) {
        line_col(buf, pos, &line, &col);
        mlxn_free(buf);
        return mlxn_err(MLXN_ERR_FORMAT, "%s: invalid JSON at line %zu column %zu (byte %zu of %zu)",
                        label, line, col, pos, len);
    }
    while (pos < len && is_ws(buf[pos])) pos++;
    if (pos < len) {
        line_col(buf, pos, &line, &col);
        mlxn_free(buf);
        cJSON_Delete(root);
        return mlxn_err(MLXN_ERR_FORMAT, "%s: trailing data after JSON value at line %zu column %zu",
                        label, line, col);
    }
    mlxn_free(buf);
    *out = root;
    return MLXN_OK;
}

mlxn_status mlxn_json_parse_file(cJSON **out, const char *path, size_t max_bytes) {
    if (!out || !path) return mlxn_err(MLXN_ERR_INVALID_ARG, "json_parse_file: NULL argument");
    *out = NULL;
    char *text;
    size_t len;
    mlxn_status s = mlxn_read_file(&text, &len, path, max_bytes ? max_bytes : MLXN_JSON_MAX_FILE);
    if (s) return s;
    s = mlxn_json_parse(out, text, len, path);
    mlxn_free(text);
    return s;
}

static const cJSON *member(const cJSON *obj, const char *key) {
    if (!obj || !key || !cJSON_IsObject(obj)) return NULL;
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(obj, key);
    return (it && cJSON_IsNull(it)) ? NULL : it;
}

static mlxn_status type_err(const char *key, const char *want, const cJSON *it) {
    return mlxn_err(MLXN_ERR_DTYPE, "json: key '%s' is %s, expected %s", key,
                    mlxn_json_type_name(it), want);
}

static mlxn_status to_int(const char *key, const cJSON *it, int64_t *out) {
    if (!cJSON_IsNumber(it)) return type_err(key, "an integer", it);
    double d = it->valuedouble;
    if (!(fabs(d) <= 9007199254740992.0)) /* also NaN */
        return mlxn_err(MLXN_ERR_RANGE, "json: key '%s' = %g is outside the integer range", key, d);
    if (d != floor(d)) return mlxn_err(MLXN_ERR_RANGE, "json: key '%s' = %g is not an integer", key, d);
    *out = (int64_t)d;
    return MLXN_OK;
}

mlxn_status mlxn_json_get_int(const cJSON *obj, const char *key, int64_t def, int64_t *out) {
    const cJSON *it = member(obj, key);
    if (!it) {
        *out = def;
        return MLXN_OK;
    }
    return to_int(key, it, out);
}

mlxn_status mlxn_json_need_int(const cJSON *obj, const char *key, int64_t *out) {
    const cJSON *it = member(obj, key);
    if (!it) return mlxn_err(MLXN_ERR_NOT_FOUND, "json: required key '%s' is missing", key);
    return to_int(key, it, out);
}

static mlxn_status to_float(const char *key, const cJSON *it, double *out) {
    if (!cJSON_IsNumber(it)) return type_err(key, "a number", it);
    *out = it->valuedouble;
    return MLXN_OK;
}

mlxn_status mlxn_json_get_float(const cJSON *obj, const char *key, double def, double *out) {
    const cJSON *it = member(obj, key);
    if (!it) {
        *out = def;
        return MLXN_OK;
    }
    return to_float(key, it, out);
}

mlxn_status mlxn_json_need_float(const cJSON *obj, const char *key, double *out) {
    const cJSON *it = member(obj, key);
    if (!it) return mlxn_err(MLXN_ERR_NOT_FOUND, "json: required key '%s' is missing", key);
    return to_float(key, it, out);
}

mlxn_status mlxn_json_get_bool(const cJSON *obj, const char *key, bool def, bool *out) {
    const cJSON *it = member(obj, key);
    if (!it) {
        *out = def;
        return MLXN_OK;
    }
    if (!cJSON_IsBool(it)) return type_err(key, "a bool", it);
    *out = cJSON_IsTrue(it);
    return MLXN_OK;
}

mlxn_status mlxn_json_get_string(const cJSON *obj, const char *key, const char *def,
                                 const char **out) {
    const cJSON *it = member(obj, key);
    if (!it) {
        *out = def;
        return MLXN_OK;
    }
    if (!cJSON_IsString(it)) return type_err(key, "a string", it);
    *out = it->valuestring;
    return MLXN_OK;
}

mlxn_status mlxn_json_need_string(const cJSON *obj, const char *key, const char **out) {
    const cJSON *it = member(obj, key);
    if (!it) return mlxn_err(MLXN_ERR_NOT_FOUND, "json: required key '%s' is missing", key);
    if (!cJSON_IsString(it)) return type_err(key, "a string", it);
    *out = it->valuestring;
    return MLXN_OK;
}

mlxn_status mlxn_json_get_object(const cJSON *obj, const char *key, const cJSON **out) {
    const cJSON *it = member(obj, key);
    *out = NULL;
    if (!it) return MLXN_OK;
    if (!cJSON_IsObject(it)) return type_err(key, "an object", it);
    *out = it;
    return MLXN_OK;
}
