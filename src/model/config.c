/*
 * config.c — model hyper-parameters from a HF / MLX config.json (here, over
 * cJSON) and from GGUF metadata (the GGUF glue sits in llama.c with the
 * loader). Missing optional keys take the HF defaults of the architecture;
 * keys of the wrong type, impossible sizes and unknown architectures fail
 * with the file, the key and the numbers in the message.
 */
#include "model/model.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const arch_names[MLXN_ARCH_COUNT] = {
    [MLXN_ARCH_LLAMA] = "llama",
    [MLXN_ARCH_MISTRAL] = "mistral",
    [MLXN_ARCH_QWEN2] = "qwen2",
    [MLXN_ARCH_QWEN3] = "qwen3",
};
_Static_assert(sizeof arch_names / sizeof arch_names[0] == MLXN_ARCH_COUNT, "arch names out of date");

const char *mlxn_arch_name(mlxn_arch a) {
    return (unsigned)a < MLXN_ARCH_COUNT ? arch_names[a] : "?";
}

mlxn_status mlxn_arch_from_name(mlxn_arch *out, const char *name) {
    static const struct { const char *name; mlxn_arch a; } map[] = {
        {"llama", MLXN_ARCH_LLAMA},          {"smollm", MLXN_ARCH_LLAMA},
        {"smollm2", MLXN_ARCH_LLAMA},        {"LlamaForCausalLM", MLXN_ARCH_LLAMA},
        {"mistral", MLXN_ARCH_MISTRAL},      {"MistralForCausalLM", MLXN_ARCH_MISTRAL},
        {"qwen2", MLXN_ARCH_QWEN2},          {"Qwen2ForCausalLM", MLXN_ARCH_QWEN2},
        {"qwen3", MLXN_ARCH_QWEN3},          {"Qwen3ForCausalLM", MLXN_ARCH_QWEN3},
    };
    for (size_t i = 0; name && i < sizeof map / sizeof map[0]; i++)
        if (!strcmp(map[i].name, name)) {
            *out = map[i].a;
            return MLXN_OK;
        }
    return mlxn_err(MLXN_ERR_UNSUPPORTED,
                    "unknown architecture '%s' (supported: llama, smollm, mistral, qwen2, qwen3)",
                    name ? name : "(none)");
}

/* ---- JSON getters that name the file and the key ---- */

typedef struct jctx {
    const char *path;
} jctx;

static const char *jtype(const cJSON *it) {
    if (cJSON_IsNumber(it)) return "number";
    if (cJSON_IsString(it)) return "string";
    if (cJSON_IsBool(it)) return "bool";
    if (cJSON_IsArray(it)) return "array";
    if (cJSON_IsObject(it)) return "object";
    return "null";
}

/* Integer member; absent or null leaves *out (the default). */
static mlxn_status j_int(const jctx *c, const cJSON *obj, const char *key, int *out, bool required) {
    const cJSON *it = obj ? cJSON_GetObjectItemCaseSensitive(obj, key) : NULL;
    if (!it || cJSON_IsNull(it)) {
        if (required) return mlxn_err(MLXN_ERR_NOT_FOUND, "%s: required key '%s' is missing", c->path, key);
        return MLXN_OK;
    }
    double v = it->valuedouble;
    if (!cJSON_IsNumber(it) || v != floor(v) || v < -2147483648.0 || v > 2147483647.0)
        return mlxn_err(MLXN_ERR_FORMAT, "%s: key '%s' must be a 32-bit integer, got %s%s", c->path, key,
                        jtype(it), cJSON_IsNumber(it) ? " out of range or fractional" : "");
    *out = (int)v;
    return MLXN_OK;
}

static mlxn_status j_float(const jctx *c, const cJSON *obj, const char *key, float *out) {
    const cJSON *it = obj ? cJSON_GetObjectItemCaseSensitive(obj, key) : NULL;
    if (!it || cJSON_IsNull(it)) return MLXN_OK;
    if (!cJSON_IsNumber(it))
        return mlxn_err(MLXN_ERR_FORMAT, "%s: key '%s' must be a number, got %s", c->path, key, jtype(it));
    *out = (float)it->valuedouble;
    return MLXN_OK;
}

static mlxn_status j_bool(const jctx *c, const cJSON *obj, const char *key, bool *out) {
    const cJSON *it = obj ? cJSON_GetObjectItemCaseSensitive(obj, key) : NULL;
    if (!it || cJSON_IsNull(it)) return MLXN_OK;
    if (!cJSON_IsBool(it))
        return mlxn_err(MLXN_ERR_FORMAT, "%s: key '%s' must be true or false, got %s", c->path, key, jtype(it));
    *out = cJSON_IsTrue(it);
    return MLXN_OK;
}

static const char *j_str(const cJSON *obj, const char *key) {
    const cJSON *it = obj ? cJSON_GetObjectItemCaseSensitive(obj, key) : NULL;
    return cJSON_IsString(it) ? it->valuestring : NULL;
}

#define TRY(x)                          \
    do {                                \
        mlxn_status st_ = (x);          \
        if (st_ != MLXN_OK) return st_; \
    } while (0)

static mlxn_status parse_rope(const jctx *c, mlxn_model_config *cfg, const cJSON *root) {
    cfg->rope_theta = 10000.0f;
    TRY(j_float(c, root, "rope_theta", &cfg->rope_theta));
    const cJSON *rs = cJSON_GetObjectItemCaseSensitive(root, "rope_scaling");
    const cJSON *rp = cJSON_GetObjectItemCaseSensitive(root, "rope_parameters"); /* transformers 5 */
    if (cJSON_IsObject(rp)) {
        TRY(j_float(c, rp, "rope_theta", &cfg->rope_theta));
        if (!rs || cJSON_IsNull(rs)) rs = rp;
    }
    if (!rs || cJSON_IsNull(rs)) return MLXN_OK;
    if (!cJSON_IsObject(rs))
        return mlxn_err(MLXN_ERR_FORMAT, "%s: key 'rope_scaling' must be an object, got %s", c->path, jtype(rs));
    const char *type = j_str(rs, "rope_type");
    if (!type) type = j_str(rs, "type");
    if (!type || !strcmp(type, "default")) return MLXN_OK;
    cfg->rope_factor = 1.0f;
    TRY(j_float(c, rs, "factor", &cfg->rope_factor));
    if (!strcmp(type, "linear")) {
        cfg->rope_scaling = MLXN_ROPE_SCALE_LINEAR;
    } else if (!strcmp(type, "llama3")) {
        cfg->rope_scaling = MLXN_ROPE_SCALE_LLAMA3;
        cfg->rope_low_freq = 1.0f;
        cfg->rope_high_freq = 4.0f;
        cfg->rope_orig_max_pos = 8192;
        TRY(j_float(c, rs, "low_freq_factor", &cfg->rope_low_freq));
        TRY(j_float(c, rs, "high_freq_factor", &cfg->rope_high_freq));
        TRY(j_int(c, rs, "original_max_position_embeddings", &cfg->rope_orig_max_pos, false));
    } else {
        return mlxn_err(MLXN_ERR_UNSUPPORTED, "%s: rope_scaling type '%s' is not supported (default, linear, llama3)",
                        c->path, type);
    }
    return MLXN_OK;
}

static mlxn_status check_quant(const jctx *c, const char *where, int bits, int group) {
    if (!(bits == 2 || bits == 3 || bits == 4 || bits == 5 || bits == 6 || bits == 8))
        return mlxn_err(MLXN_ERR_UNSUPPORTED, "%s: %s: %d bits is not an MLX affine width (2, 3, 4, 5, 6, 8)",
                        c->path, where, bits);
    if (!(group == 32 || group == 64 || group == 128))
        return mlxn_err(MLXN_ERR_UNSUPPORTED, "%s: %s: group_size %d is not 32, 64 or 128", c->path, where, group);
    return MLXN_OK;
}

/* MLX "quantization": {"group_size": 64, "bits": 4, "mode": "affine",
 * "<module>": {"group_size": g, "bits": b} | false, ...}. */
static mlxn_status parse_quant(const jctx *c, mlxn_model_config *cfg, const cJSON *root) {
    const char *key = "quantization";
    const cJSON *q = cJSON_GetObjectItemCaseSensitive(root, key);
    if (!q || cJSON_IsNull(q)) {
        key = "quantization_config";
        q = cJSON_GetObjectItemCaseSensitive(root, key);
    }
    if (!q || cJSON_IsNull(q)) return MLXN_OK;
    if (!cJSON_IsObject(q))
        return mlxn_err(MLXN_ERR_FORMAT, "%s: key '%s' must be an object, got %s", c->path, key, jtype(q));
    const char *method = j_str(q, "quant_method");
    if (method)
        return mlxn_err(MLXN_ERR_UNSUPPORTED, "%s: %s.quant_method '%s' is not MLX affine quantization", c->path,
                        key, method);
    const char *mode = j_str(q, "mode");
    if (mode && strcmp(mode, "affine"))
        return mlxn_err(MLXN_ERR_UNSUPPORTED, "%s: %s.mode '%s' is not supported (affine only)", c->path, key, mode);
    int bits = 0, group = 64;
    TRY(j_int(c, q, "bits", &bits, true));
    TRY(j_int(c, q, "group_size", &group, false));
    TRY(check_quant(c, key, bits, group));
    cfg->q_bits = bits;
    cfg->q_group = group;
    size_t n = 0;
    for (const cJSON *it = q->child; it; it = it->next)
        if (cJSON_IsObject(it) || cJSON_IsBool(it)) n++;
    if (!n) return MLXN_OK;
    cfg->q_rules = mlxn_calloc(n, sizeof *cfg->q_rules);
    if (!cfg->q_rules) return mlxn_err(MLXN_ERR_OUT_OF_MEMORY, "config: out of memory");
    for (const cJSON *it = q->child; it; it = it->next) {
        if (!(cJSON_IsObject(it) || cJSON_IsBool(it))) continue;
        mlxn_quant_rule *r = &cfg->q_rules[cfg->n_q_rules];
        r->module = mlxn_strdup(it->string);
        if (!r->module) return mlxn_err(MLXN_ERR_OUT_OF_MEMORY, "config: out of memory");
        cfg->n_q_rules++;
        if (cJSON_IsBool(it)) {
            /* true = quantize with the defaults, false = keep dense */
            r->bits = cJSON_IsTrue(it) ? bits : 0;
            r->group_size = cJSON_IsTrue(it) ? group : 0;
            continue;
        }
        r->bits = bits;
        r->group_size = group;
        char where[160];
        snprintf(where, sizeof where, "%s.%s", key, it->string);
        TRY(j_int(c, it, "bits", &r->bits, false));
        TRY(j_int(c, it, "group_size", &r->group_size, false));
        TRY(check_quant(c, where, r->bits, r->group_size));
    }
    return MLXN_OK;
}

static mlxn_status parse_ids(const jctx *c, mlxn_model_config *cfg, const cJSON *root) {
    cfg->bos_id = -1;
    TRY(j_int(c, root, "bos_token_id", &cfg->bos_id, false));
    const cJSON *e = cJSON_GetObjectItemCaseSensitive(root, "eos_token_id");
    if (cJSON_IsNumber(e)) {
        int id = -1;
        TRY(j_int(c, root, "eos_token_id", &id, false));
        cfg->eos_ids[cfg->n_eos++] = id;
    } else if (cJSON_IsArray(e)) {
        for (const cJSON *it = e->child; it && cfg->n_eos < MLXN_MAX_EOS; it = it->next) {
            if (!cJSON_IsNumber(it) || it->valuedouble != floor(it->valuedouble))
                return mlxn_err(MLXN_ERR_FORMAT, "%s: eos_token_id entries must be integers, got %s", c->path,
                                jtype(it));
            cfg->eos_ids[cfg->n_eos++] = (int32_t)it->valuedouble;
        }
    } else if (e && !cJSON_IsNull(e)) {
        return mlxn_err(MLXN_ERR_FORMAT, "%s: eos_token_id must be an integer or a list, got %s", c->path, jtype(e));
    }
    return MLXN_OK;
}

static mlxn_status parse_config(mlxn_model_config *cfg, const cJSON *root, const jctx *c) {
    if (!cJSON_IsObject(root))
        return mlxn_err(MLXN_ERR_FORMAT, "%s: the top level must be a JSON object, got %s", c->path, jtype(root));
    const char *mt = j_str(root, "model_type");
    if (!mt) {
        const cJSON *a = cJSON_GetObjectItemCaseSensitive(root, "architectures");
        if (cJSON_IsArray(a) && cJSON_IsString(a->child)) mt = a->child->valuestring;
    }
    mlxn_status st = mlxn_arch_from_name(&cfg->arch, mt);
    if (st) {
        mlxn_err_prefix("%s: model_type", c->path);
        return st;
    }
    TRY(j_int(c, root, "hidden_size", &cfg->hidden, true));
    TRY(j_int(c, root, "num_hidden_layers", &cfg->layers, true));
    TRY(j_int(c, root, "num_attention_heads", &cfg->heads, true));
    cfg->kv_heads = cfg->heads;
    TRY(j_int(c, root, "num_key_value_heads", &cfg->kv_heads, false));
    cfg->head_dim = cfg->heads > 0 ? cfg->hidden / cfg->heads : 0;
    TRY(j_int(c, root, "head_dim", &cfg->head_dim, false));
    TRY(j_int(c, root, "intermediate_size", &cfg->ffn, true));
    TRY(j_int(c, root, "vocab_size", &cfg->vocab, true));
    TRY(j_int(c, root, "max_position_embeddings", &cfg->max_pos, false));
    cfg->rms_eps = 1e-5f;
    TRY(j_float(c, root, "rms_norm_eps", &cfg->rms_eps));
    TRY(parse_rope(c, cfg, root));
    TRY(j_bool(c, root, "tie_word_embeddings", &cfg->tie_embeddings));
    cfg->qkv_bias = cfg->arch == MLXN_ARCH_QWEN2;
    if (cfg->arch != MLXN_ARCH_QWEN2) TRY(j_bool(c, root, "attention_bias", &cfg->qkv_bias));
    cfg->qk_norm = cfg->arch == MLXN_ARCH_QWEN3;
    if (cfg->arch == MLXN_ARCH_MISTRAL) TRY(j_int(c, root, "sliding_window", &cfg->sliding_window, false));
    TRY(parse_ids(c, cfg, root));
    TRY(parse_quant(c, cfg, root));
    return mlxn_model_config_check(cfg);
}

mlxn_status mlxn_model_config_from_json(mlxn_model_config *cfg, const char *text, size_t len,
                                        const char *path) {
    if (!cfg || !text) return mlxn_err(MLXN_ERR_INVALID_ARG, "config: NULL argument");
    memset(cfg, 0, sizeof *cfg);
    path = path ? path : "config.json";
    snprintf(cfg->source, sizeof cfg->source, "%s", path);
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(text, len, &end, 0);
    if (!root) {
        size_t at = end ? (size_t)(end - text) : 0;
        return mlxn_err(MLXN_ERR_FORMAT, "%s: not valid JSON (error near byte %zu of %zu)", path, at, len);
    }
    jctx c = {path};
    mlxn_status st = parse_config(cfg, root, &c);
    cJSON_Delete(root);
    if (st) mlxn_model_config_free(cfg);
    if (!st) snprintf(cfg->source, sizeof cfg->source, "%s", path);
    return st;
}

mlxn_status mlxn_model_config_from_json_file(mlxn_model_config *cfg, const char *path) {
    if (!cfg || !path) return mlxn_err(MLXN_ERR_INVALID_ARG, "config: NULL argument");
    memset(cfg, 0, sizeof *cfg);
    FILE *f = fopen(path, "rb");
    if (!f) return mlxn_err(MLXN_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    char *buf = NULL;
    size_t len = 0, cap = 0;
    mlxn_status st = MLXN_OK;
    for (;;) {
        if (len + 4096 > cap) {
            cap = cap ? cap * 2 : 65536;
            if (cap > ((size_t)64 << 20)) {
                st = mlxn_err(MLXN_ERR_RANGE, "%s: larger than 64 MiB, not a config", path);
                break;
            }
            char *nb = mlxn_realloc(buf, cap);
            if (!nb) {
                st = mlxn_err(MLXN_ERR_OUT_OF_MEMORY, "%s: out of memory", path);
                break;
            }
            buf = nb;
        }
        size_t r = fread(buf + len, 1, cap - len, f);
        len += r;
        if (r == 0) break;
    }
    if (!st && ferror(f)) st = mlxn_err(MLXN_ERR_IO, "%s: read error", path);
    fclose(f);
    if (!st) st = mlxn_model_config_from_json(cfg, buf, len, path);
    mlxn_free(buf);
    return st;
}

mlxn_status mlxn_model_config_check(const mlxn_model_config *c) {
    const char *p = c->source[0] ? c->source : "config";
    size_t pl = strlen(p);
    const bool gguf = pl >= 5 && !strcmp(p + pl - 5, ".gguf");
    /* the config.json key, the GGUF key (after "<arch>."), and the largest
     * value loaded: far past any released model, so a corrupt or hostile
     * file fails here with the key and the number instead of an
     * out-of-memory later */
    struct { const char *k, *g; int v, max; } pos[] = {
        {"hidden_size", "embedding_length", c->hidden, 1 << 17},
        {"num_hidden_layers", "block_count", c->layers, 1024},
        {"num_attention_heads", "attention.head_count", c->heads, 4096},
        {"num_key_value_heads", "attention.head_count_kv", c->kv_heads, 4096},
        {"head_dim", "attention.key_length", c->head_dim, 1024},
        {"intermediate_size", "feed_forward_length", c->ffn, 1 << 20},
        {"vocab_size", "vocab_size / tokenizer.ggml.tokens", c->vocab, 1 << 22},
    };
    for (size_t i = 0; i < sizeof pos / sizeof pos[0]; i++) {
        char key[96];
        snprintf(key, sizeof key, gguf ? "%s (%s)" : "%s", gguf ? pos[i].g : pos[i].k, pos[i].k);
        if (pos[i].v <= 0) return mlxn_err(MLXN_ERR_FORMAT, "%s: %s = %d must be positive", p, key, pos[i].v);
        if (pos[i].v > pos[i].max)
            return mlxn_err(MLXN_ERR_FORMAT, "%s: %s = %d is past the largest mlxn loads (%d)", p, key, pos[i].v,
                            pos[i].max);
    }
    if (c->heads % c->kv_heads)
        return mlxn_err(MLXN_ERR_FORMAT, "%s: num_attention_heads %d is not a multiple of num_key_value_heads %d", p,
                        c->heads, c->kv_heads);
    if (c->head_dim % 2)
        return mlxn_err(MLXN_ERR_FORMAT, "%s: head_dim %d must be even for rotary embeddings", p, c->head_dim);
    if (!(c->rms_eps > 0) || !(c->rope_theta > 0))
        return mlxn_err(MLXN_ERR_FORMAT, "%s: rms_norm_eps %g and rope_theta %g must be positive", p,
                        (double)c->rms_eps, (double)c->rope_theta);
    if (c->rope_scaling != MLXN_ROPE_SCALE_NONE && !(c->rope_factor > 0))
        return mlxn_err(MLXN_ERR_FORMAT, "%s: rope_scaling factor %g must be positive", p, (double)c->rope_factor);
    if (c->rope_scaling == MLXN_ROPE_SCALE_LLAMA3 &&
        (!(c->rope_high_freq > c->rope_low_freq) || c->rope_orig_max_pos <= 0))
        return mlxn_err(MLXN_ERR_FORMAT,
                        "%s: llama3 rope scaling needs high_freq_factor %g > low_freq_factor %g and "
                        "original_max_position_embeddings %d > 0",
                        p, (double)c->rope_high_freq, (double)c->rope_low_freq, c->rope_orig_max_pos);
    return MLXN_OK;
}

void mlxn_model_config_free(mlxn_model_config *cfg) {
    if (!cfg) return;
    for (size_t i = 0; i < cfg->n_q_rules; i++) mlxn_free(cfg->q_rules[i].module);
    mlxn_free(cfg->q_rules);
    cfg->q_rules = NULL;
    cfg->n_q_rules = 0;
}

void mlxn_model_config_quant(const mlxn_model_config *cfg, const char *module, int *bits, int *group_size) {
    *bits = cfg->q_bits;
    *group_size = cfg->q_group;
    for (size_t i = 0; module && i < cfg->n_q_rules; i++)
        if (!strcmp(cfg->q_rules[i].module, module)) {
            *bits = cfg->q_rules[i].bits;
            *group_size = cfg->q_rules[i].group_size;
            return;
        }
}

void mlxn_model_config_print(const mlxn_model_config *c, FILE *f) {
    static const char *const sc[] = {"none", "linear", "llama3"};
    fprintf(f, "arch: %s\n", mlxn_arch_name(c->arch));
    fprintf(f, "hidden: %d\nlayers: %d\nheads: %d\nkv_heads: %d\nhead_dim: %d\nffn: %d\nvocab: %d\n", c->hidden,
            c->layers, c->heads, c->kv_heads, c->head_dim, c->ffn, c->vocab);
    fprintf(f, "max_position: %d\nrms_eps: %g\nrope_theta: %g\nrope_scaling: %s", c->max_pos, (double)c->rms_eps,
            (double)c->rope_theta, (unsigned)c->rope_scaling <= 2 ? sc[c->rope_scaling] : "?");
    if (c->rope_scaling == MLXN_ROPE_SCALE_LINEAR) fprintf(f, " (factor %g)", (double)c->rope_factor);
    if (c->rope_scaling == MLXN_ROPE_SCALE_LLAMA3)
        fprintf(f, " (factor %g, low %g, high %g, original %d)", (double)c->rope_factor, (double)c->rope_low_freq,
                (double)c->rope_high_freq, c->rope_orig_max_pos);
    fprintf(f, "\ntie_embeddings: %s\nqkv_bias: %s\nqk_norm: %s\n", c->tie_embeddings ? "yes" : "no",
            c->qkv_bias ? "yes" : "no", c->qk_norm ? "yes" : "no");
    if (c->sliding_window) fprintf(f, "sliding_window: %d\n", c->sliding_window);
    fprintf(f, "bos: %d\neos:", c->bos_id);
    for (int i = 0; i < c->n_eos; i++) fprintf(f, " %d", c->eos_ids[i]);
    fprintf(f, "\n");
    if (c->q_bits) {
        fprintf(f, "quantization: mlx affine %d bits, group %d", c->q_bits, c->q_group);
        for (size_t i = 0; i < c->n_q_rules; i++) {
            if (c->q_rules[i].bits) fprintf(f, "; %s: %d bits/%d", c->q_rules[i].module, c->q_rules[i].bits,
                                            c->q_rules[i].group_size);
            else fprintf(f, "; %s: dense", c->q_rules[i].module);
        }
        fprintf(f, "\n");
    } else {
        fprintf(f, "quantization: no MLX quantization section (each tensor's own type)\n");
    }
}
