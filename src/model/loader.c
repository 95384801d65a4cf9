/*
 * loader.c — the thin layer between files and the model: a weight source
 * over a safetensors directory (single file or sharded index) and over a
 * GGUF file, hyper-parameters from GGUF metadata, mlxn_model_load's
 * dispatch (directory → HF/MLX, .gguf → GGUF), and the tokenizer that goes
 * with the model (tokenizer.json, or the tokenizer.ggml.* arrays).
 * Everything file-format-specific is in io/; this file only maps names.
 */
#include "io/io.h"
#include "model/model.h"
#include "model/tokenizer.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#define TRY(x)                          \
    do {                                \
        mlxn_status st_ = (x);          \
        if (st_ != MLXN_OK) return st_; \
    } while (0)

/* ---- weight sources ---- */

static bool st_find(void *ctx, const char *name, mlxn_tensor_ref *out) {
    const mlxn_st_tensor *t = mlxn_st_shards_find(ctx, name);
    if (!t) return false;
    out->dtype = t->supported ? t->dtype : MLXN_DTYPE_COUNT;
    out->ndim = t->ndim;
    for (int i = 0; i < t->ndim; i++) out->shape[i] = t->shape[i];
    out->data = t->data;
    out->nbytes = t->nbytes;
    out->file = mlxn_st_shards_path(ctx, name);
    return true;
}
static void st_close(void *ctx) { mlxn_st_shards_close(ctx); }
static void st_drop(void *ctx, const void *p, size_t n) { mlxn_st_shards_drop(ctx, p, n); }

static bool gguf_find(void *ctx, const char *name, mlxn_tensor_ref *out) {
    const mlxn_gguf_tensor *t = mlxn_gguf_find_tensor(ctx, name);
    if (!t) return false;
    out->dtype = t->supported ? t->dtype : MLXN_DTYPE_COUNT;
    out->ndim = t->ndim;
    for (int i = 0; i < t->ndim; i++) out->shape[i] = t->shape[i];
    out->data = t->data;
    out->nbytes = t->nbytes;
    return true;
}
static void gguf_close(void *ctx) { mlxn_gguf_close(ctx); }
static void gguf_drop(void *ctx, const void *p, size_t n) { mlxn_gguf_drop(ctx, p, n); }

/* ---- GGUF hyper-parameters ---- */

static mlxn_status g_u32(const mlxn_gguf *g, const char *path, const char *arch, const char *key, int *out,
                         bool required) {
    char k[160];
    snprintf(k, sizeof k, "%s.%s", arch, key);
    uint32_t v;
    mlxn_status st = mlxn_gguf_get_u32(g, k, &v);
    if (st == MLXN_ERR_NOT_FOUND && !required) return MLXN_OK;
    if (st) {
        mlxn_err_prefix("%s", path);
        return st;
    }
    if (v > 0x7fffffffu) return mlxn_err(MLXN_ERR_RANGE, "%s: %s = %u is too large", path, k, v);
    *out = (int)v;
    return MLXN_OK;
}

static mlxn_status g_f32(const mlxn_gguf *g, const char *path, const char *arch, const char *key, float *out) {
    char k[160];
    snprintf(k, sizeof k, "%s.%s", arch, key);
    mlxn_status st = mlxn_gguf_get_f32(g, k, out);
    if (st == MLXN_ERR_NOT_FOUND) return MLXN_OK;
    if (st) mlxn_err_prefix("%s", path);
    return st;
}

mlxn_status mlxn_model_config_from_gguf(mlxn_model_config *cfg, const mlxn_gguf *g, const char *path) {
    memset(cfg, 0, sizeof *cfg);
    snprintf(cfg->source, sizeof cfg->source, "%s", path);
    const char *arch;
    mlxn_status st = mlxn_gguf_get_string(g, "general.architecture", &arch, NULL);
    if (st) {
        mlxn_err_prefix("%s", path);
        return st;
    }
    st = mlxn_arch_from_name(&cfg->arch, arch);
    if (st) {
        mlxn_err_prefix("%s: general.architecture", path);
        return st;
    }
    TRY(g_u32(g, path, arch, "block_count", &cfg->layers, true));
    TRY(g_u32(g, path, arch, "embedding_length", &cfg->hidden, true));
    TRY(g_u32(g, path, arch, "attention.head_count", &cfg->heads, true));
    cfg->kv_heads = cfg->heads;
    TRY(g_u32(g, path, arch, "attention.head_count_kv", &cfg->kv_heads, false));
    TRY(g_u32(g, path, arch, "feed_forward_length", &cfg->ffn, true));
    TRY(g_u32(g, path, arch, "context_length", &cfg->max_pos, false));
    cfg->head_dim = cfg->heads > 0 ? cfg->hidden / cfg->heads : 0;
    TRY(g_u32(g, path, arch, "attention.key_length", &cfg->head_dim, false));
    cfg->rms_eps = 1e-5f;
    TRY(g_f32(g, path, arch, "attention.layer_norm_rms_epsilon", &cfg->rms_eps));
    cfg->rope_theta = 10000.0f;
    TRY(g_f32(g, path, arch, "rope.freq_base", &cfg->rope_theta));
    char k[160];
    const char *stype = NULL;
    snprintf(k, sizeof k, "%s.rope.scaling.type", arch);
    if (!mlxn_gguf_get_string(g, k, &stype, NULL) && strcmp(stype, "none")) {
        if (strcmp(stype, "linear"))
            return mlxn_err(MLXN_ERR_UNSUPPORTED, "%s: %s '%s' is not supported (none, linear)", path, k, stype);
        cfg->rope_scaling = MLXN_ROPE_SCALE_LINEAR;
        cfg->rope_factor = 1.0f;
        TRY(g_f32(g, path, arch, "rope.scaling.factor", &cfg->rope_factor));
    }
    /* vocab: the key, else the token list, else the embedding rows */
    TRY(g_u32(g, path, arch, "vocab_size", &cfg->vocab, false));
    const mlxn_gguf_value *toks;
    if (!cfg->vocab && !mlxn_gguf_get_array(g, "tokenizer.ggml.tokens", MLXN_GGUF_STRING, &toks))
        cfg->vocab = (int)toks->count;
    const mlxn_gguf_tensor *emb = mlxn_gguf_find_tensor(g, "token_embd.weight");
    if (!cfg->vocab && emb && emb->ndim == 2) cfg->vocab = (int)emb->shape[0];
    cfg->qkv_bias = cfg->arch == MLXN_ARCH_QWEN2;
    cfg->qk_norm = cfg->arch == MLXN_ARCH_QWEN3;
    cfg->bos_id = -1;
    uint32_t id;
    if (!mlxn_gguf_get_u32(g, "tokenizer.ggml.bos_token_id", &id)) cfg->bos_id = (int32_t)id;
    if (!mlxn_gguf_get_u32(g, "tokenizer.ggml.eos_token_id", &id)) cfg->eos_ids[cfg->n_eos++] = (int32_t)id;
    if (!mlxn_gguf_get_u32(g, "tokenizer.ggml.eot_token_id", &id) && (!cfg->n_eos || cfg->eos_ids[0] != (int32_t)id))
        cfg->eos_ids[cfg->n_eos++] = (int32_t)id;
    mlxn_err_clear();
    return mlxn_model_config_check(cfg);
}

/* ---- dispatch ---- */

static bool ends_with(const char *s, const char *suf) {
    size_t a = strlen(s), b = strlen(suf);
    return a >= b && !strcmp(s + a - b, suf);
}

typedef void (*progress_fn)(void *pctx, int layers_done, int layers);

static mlxn_status load_dir(mlxn_model **out, mlxn_device *dev, const char *dir, progress_fn progress, void *pctx) {
    char p[4096];
    snprintf(p, sizeof p, "%s/config.json", dir);
    mlxn_model_config cfg;
    TRY(mlxn_model_config_from_json_file(&cfg, p));
    mlxn_st_shards *sh = NULL;
    mlxn_status st = mlxn_st_shards_open(&sh, dir);
    if (st) {
        mlxn_model_config_free(&cfg);
        return st;
    }
    mlxn_weight_source src = {sh, st_find, st_close, MLXN_NAMES_HF, dir, progress, pctx, st_drop};
    st = mlxn_model_create(out, dev, &cfg, &src);
    mlxn_model_config_free(&cfg);
    return st;
}

static mlxn_status load_gguf(mlxn_model **out, mlxn_device *dev, const char *path, progress_fn progress, void *pctx) {
    mlxn_gguf *g = NULL;
    TRY(mlxn_gguf_open_file(&g, path));
    mlxn_model_config cfg;
    mlxn_status st = mlxn_model_config_from_gguf(&cfg, g, path);
    if (st) {
        mlxn_model_config_free(&cfg);
        mlxn_gguf_close(g);
        return st;
    }
    mlxn_weight_source src = {g, gguf_find, gguf_close, MLXN_NAMES_GGUF, path, progress, pctx, gguf_drop};
    st = mlxn_model_create(out, dev, &cfg, &src);
    mlxn_model_config_free(&cfg);
    return st;
}

mlxn_status mlxn_model_load(mlxn_model **out, mlxn_device *dev, const char *path) {
    return mlxn_model_load_ex(out, dev, path, NULL, NULL);
}

mlxn_status mlxn_model_load_ex(mlxn_model **out, mlxn_device *dev, const char *path,
                               void (*progress)(void *pctx, int layers_done, int layers), void *pctx) {
    if (!out || !dev || !path) return mlxn_err(MLXN_ERR_INVALID_ARG, "model: NULL argument");
    *out = NULL;
    struct stat sb;
    mlxn_status st;
    if (!strncmp(path, "synthetic:", 10)) st = mlxn_model_load_synthetic(out, dev, path, progress, pctx);
    else if (stat(path, &sb)) return mlxn_err(MLXN_ERR_IO, "%s: %s", path, strerror(errno));
    else if (S_ISDIR(sb.st_mode)) st = load_dir(out, dev, path, progress, pctx);
    else if (ends_with(path, ".gguf")) st = load_gguf(out, dev, path, progress, pctx);
    else
        return mlxn_err(MLXN_ERR_UNSUPPORTED,
                        "%s: not a model directory (config.json + safetensors) or a .gguf file", path);
    if (!st) snprintf((*out)->path, sizeof (*out)->path, "%s", path);
    return st;
}

/* ---- tokenizer ---- */

mlxn_status mlxn_tokenizer_from_gguf(mlxn_tokenizer **out, char **tmpl, const mlxn_gguf *g, const char *path) {
    const char *model = "gpt2", *pre = NULL;
    (void)mlxn_gguf_get_string(g, "tokenizer.ggml.model", &model, NULL);
    (void)mlxn_gguf_get_string(g, "tokenizer.ggml.pre", &pre, NULL);
    mlxn_tok_kind kind;
    if (!strcmp(model, "gpt2")) kind = MLXN_TOK_BYTE_LEVEL;
    else if (!strcmp(model, "llama")) kind = MLXN_TOK_SPM;
    else return mlxn_err(MLXN_ERR_UNSUPPORTED, "%s: tokenizer.ggml.model '%s' is not gpt2 or llama", path, model);
    const mlxn_gguf_value *toks, *merges = NULL, *scores = NULL, *types = NULL;
    mlxn_status st = mlxn_gguf_get_array(g, "tokenizer.ggml.tokens", MLXN_GGUF_STRING, &toks);
    if (st) {
        mlxn_err_prefix("%s", path);
        return st;
    }
    (void)mlxn_gguf_get_array(g, "tokenizer.ggml.merges", MLXN_GGUF_STRING, &merges);
    (void)mlxn_gguf_get_array(g, "tokenizer.ggml.scores", MLXN_GGUF_TYPE_COUNT, &scores);
    (void)mlxn_gguf_get_array(g, "tokenizer.ggml.token_type", MLXN_GGUF_TYPE_COUNT, &types);
    mlxn_err_clear();
    size_t nv = (size_t)toks->count, nm = merges ? (size_t)merges->count : 0;
    const char **tv = mlxn_calloc(nv ? nv : 1, sizeof *tv);
    const char **mv = mlxn_calloc(nm ? nm : 1, sizeof *mv);
    char **own = mlxn_calloc(nv + nm + 1, sizeof *own); /* NUL-terminated copies */
    float *sc = scores ? mlxn_calloc(nv ? nv : 1, sizeof *sc) : NULL;
    int32_t *ty = types ? mlxn_calloc(nv ? nv : 1, sizeof *ty) : NULL;
    st = tv && mv && own && (!scores || sc) && (!types || ty) ? MLXN_OK
                                                               : mlxn_err(MLXN_ERR_OUT_OF_MEMORY, "tokenizer: out of memory");
    size_t n_own = 0;
    for (size_t i = 0; i < nv + nm && !st; i++) {
        mlxn_gguf_str s;
        st = mlxn_gguf_arr_string(i < nv ? toks : merges, i < nv ? i : i - nv, &s);
        if (st) break;
        char *c = mlxn_malloc((size_t)s.len + 1);
        if (!c) { st = mlxn_err(MLXN_ERR_OUT_OF_MEMORY, "tokenizer: out of memory"); break; }
        memcpy(c, s.ptr, (size_t)s.len);
        c[s.len] = 0;
        own[n_own++] = c;
        if (i < nv) tv[i] = c;
        else mv[i - nv] = c;
    }
    for (size_t i = 0; i < nv && !st && sc; i++) st = i < scores->count ? mlxn_gguf_arr_f32(scores, i, &sc[i]) : MLXN_OK;
    for (size_t i = 0; i < nv && !st && ty; i++) {
        int64_t v = 1;
        if (i < types->count) st = mlxn_gguf_arr_i64(types, i, &v);
        ty[i] = (int32_t)v;
    }
    if (!st) st = mlxn_tokenizer_create_bpe(out, kind, tv, nv, sc, ty, mv, nm, kind == MLXN_TOK_BYTE_LEVEL ? pre : NULL);
    if (st && kind == MLXN_TOK_BYTE_LEVEL && pre && st == MLXN_ERR_UNSUPPORTED) /* unknown pre: fall back to gpt2 */
        st = mlxn_tokenizer_create_bpe(out, kind, tv, nv, sc, ty, mv, nm, "gpt2");
    for (size_t i = 0; i < n_own; i++) mlxn_free(own[i]);
    mlxn_free(own);
    mlxn_free(tv);
    mlxn_free(mv);
    mlxn_free(sc);
    mlxn_free(ty);
    if (st) {
        mlxn_err_prefix("%s: tokenizer", path);
        return st;
    }
    mlxn_tok_special sp = {-1, -1, -1, -1, false, false};
    uint32_t id;
    bool b;
    if (!mlxn_gguf_get_u32(g, "tokenizer.ggml.bos_token_id", &id)) sp.bos = (int32_t)id;
    if (!mlxn_gguf_get_u32(g, "tokenizer.ggml.eos_token_id", &id)) sp.eos = (int32_t)id;
    if (!mlxn_gguf_get_u32(g, "tokenizer.ggml.unknown_token_id", &id)) sp.unk = (int32_t)id;
    if (!mlxn_gguf_get_u32(g, "tokenizer.ggml.padding_token_id", &id)) sp.pad = (int32_t)id;
    sp.add_bos = kind == MLXN_TOK_SPM;
    if (!mlxn_gguf_get_bool(g, "tokenizer.ggml.add_bos_token", &b)) sp.add_bos = b;
    mlxn_err_clear();
    st = mlxn_tokenizer_set_special(*out, &sp);
    const char *t;
    if (!st && tmpl && !mlxn_gguf_get_string(g, "tokenizer.chat_template", &t, NULL)) {
        *tmpl = mlxn_strdup(t);
        if (!*tmpl) st = mlxn_err(MLXN_ERR_OUT_OF_MEMORY, "tokenizer: out of memory");
    }
    mlxn_err_clear();
    if (st) {
        mlxn_tokenizer_destroy(*out);
        *out = NULL;
    }
    return st;
}

static mlxn_status tok_from_dir(mlxn_tokenizer **out, char **tmpl, const char *dir) {
    char p[4096];
    snprintf(p, sizeof p, "%s/tokenizer.json", dir);
    TRY(mlxn_tokenizer_load_json(out, p));
    if (!tmpl) return MLXN_OK;
    snprintf(p, sizeof p, "%s/tokenizer_config.json", dir);
    cJSON *tc = NULL;
    if (mlxn_json_parse_file(&tc, p, 0)) { /* optional file */
        mlxn_err_clear();
        return MLXN_OK;
    }
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(tc, "chat_template");
    if (cJSON_IsArray(t)) /* [{"name": "default", "template": ...}, ...] */
        for (const cJSON *it = t->child; it; it = it->next) {
            const cJSON *nm = cJSON_GetObjectItemCaseSensitive(it, "name");
            if (cJSON_IsString(nm) && !strcmp(nm->valuestring, "default")) {
                t = cJSON_GetObjectItemCaseSensitive(it, "template");
                break;
            }
        }
    mlxn_status st = MLXN_OK;
    if (cJSON_IsString(t) && !(*tmpl = mlxn_strdup(t->valuestring)))
        st = mlxn_err(MLXN_ERR_OUT_OF_MEMORY, "tokenizer: out of memory");
    cJSON_Delete(tc);
    return st;
}

mlxn_status mlxn_model_load_tokenizer(const mlxn_model *m, mlxn_tokenizer **out, char **chat_template) {
    if (!m || !out) return mlxn_err(MLXN_ERR_INVALID_ARG, "tokenizer: NULL argument");
    *out = NULL;
    if (chat_template) *chat_template = NULL;
    if (m->src.names == MLXN_NAMES_GGUF) return mlxn_tokenizer_from_gguf(out, chat_template, m->src.ctx, m->path);
    return tok_from_dir(out, chat_template, m->path);
}
