/*
 * convert.c — `mlxn convert`: a GGUF file or an HF safetensors directory to
 * an MLX-format directory that mlx-lm loads: model.safetensors (affine-
 * quantized linears and embeddings, norms as they were), config.json with a
 * `quantization` section (global bits/group and per-module overrides),
 * tokenizer.json and tokenizer_config.json.
 *
 * GGUF: tensor names map to HF names; llama's Q/K rows are un-permuted back
 * to the HF layout (so the result uses the usual half-split rope); blocks
 * that are an affine map per 32 values (q4_0, q4_1, q8_0, q4_k, q5_k) are
 * carried over exactly, others are dequantized and quantized at --bits /
 * --group-size. HF: 2-D linear and embedding weights are quantized with the
 * weights' own float dtype for scales and biases, as mlx-lm does.
 */
#include "io/io.h"
#include "model/convert.h"
#include "model/model.h"
#include "model/tokenizer.h"
#include "ops/ops.h"
#include "ops/quant.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <sys/stat.h>
#include <unistd.h>

typedef struct out_tensor {
    char name[160];
    mlxn_dtype dtype;
    int ndim;
    int64_t shape[MLXN_MAX_DIMS];
    void *owned; /* data we made (freed at the end), or NULL when borrowed */
    const void *data;
    size_t nbytes;
} out_tensor;

typedef struct module_q {
    char module[160];
    int bits, group; /* 0 bits = dense */
} module_q;

typedef struct conv {
    out_tensor *t;
    size_t n, cap;
    module_q *mq;
    size_t n_mq, cap_mq;
    const mlxn_convert_options *o;
    size_t done, total;
} conv;

static mlxn_status push_tensor(conv *c, const char *name, mlxn_dtype dt, int ndim, const int64_t *shape,
                               void *owned, const void *data, size_t nbytes) {
    if (c->n == c->cap) {
        size_t cap = c->cap ? c->cap * 2 : 256;
        out_tensor *t = mlxn_realloc(c->t, cap * sizeof *t);
        if (!t) {
            mlxn_free(owned);
            return mlxn_err(MLXN_ERR_OUT_OF_MEMORY, "convert: out of memory");
        }
        c->t = t;
        c->cap = cap;
    }
    out_tensor *o = &c->t[c->n++];
    memset(o, 0, sizeof *o);
    snprintf(o->name, sizeof o->name, "%s", name);
    o->dtype = dt;
    o->ndim = ndim;
    for (int i = 0; i < ndim; i++) o->shape[i] = shape[i];
    o->owned = owned;
    o->data = data;
    o->nbytes = nbytes;
    return MLXN_OK;
}

static mlxn_status note_module(conv *c, const char *module, int bits, int group) {
    if (c->n_mq == c->cap_mq) {
        size_t cap = c->cap_mq ? c->cap_mq * 2 : 64;
        module_q *m = mlxn_realloc(c->mq, cap * sizeof *m);
        if (!m) return mlxn_err(MLXN_ERR_OUT_OF_MEMORY, "convert: out of memory");
        c->mq = m;
        c->cap_mq = cap;
    }
    module_q *m = &c->mq[c->n_mq++];
    snprintf(m->module, sizeof m->module, "%s", module);
    m->bits = bits;
    m->group = group;
    return MLXN_OK;
}

static void progress(conv *c, const char *name) {
    c->done++;
    if (!c->o->progress) return;
    fprintf(stderr, "\rconvert: %zu/%zu %-60.60s", c->done, c->total, name);
    if (c->done == c->total) fprintf(stderr, "\n");
}

/* Emit an MLX-quantized linear/embedding `module` from f32 weights w [N, K]. */
static mlxn_status emit_quantized_f32(conv *c, const char *module, const float *w, int64_t N, int64_t K, int bits,
                                      int group, mlxn_dtype sbt) {
    size_t wb, sb;
    mlxn_status st = mlxn_mlx_sizes(N, K, bits, group, sbt, &wb, &sb);
    if (st) return st;
    void *wq = mlxn_malloc(wb), *s = mlxn_malloc(sb), *b = mlxn_malloc(sb);
    if (!wq || !s || !b) {
        mlxn_free(wq);
        mlxn_free(s);
        mlxn_free(b);
        return mlxn_err(MLXN_ERR_OUT_OF_MEMORY, "convert: out of memory quantizing %s", module);
    }
    st = mlxn_mlx_quantize(w, N, K, bits, group, sbt, wq, s, b);
    char name[200];
    int64_t ws[2] = {N, K * bits / 32}, ss[2] = {N, K / group};
    snprintf(name, sizeof name, "%s.weight", module);
    if (!st) st = push_tensor(c, name, MLXN_U32, 2, ws, wq, wq, wb);
    else mlxn_free(wq);
    snprintf(name, sizeof name, "%s.scales", module);
    if (!st) st = push_tensor(c, name, sbt, 2, ss, s, s, sb);
    else mlxn_free(s);
    snprintf(name, sizeof name, "%s.biases", module);
    if (!st) st = push_tensor(c, name, sbt, 2, ss, b, b, sb);
    else mlxn_free(b);
    if (!st) st = note_module(c, module, bits, group);
    return st;
}

/* ---- GGUF ---- */

static bool gguf_to_hf(const char *g, char *out, size_t cap) {
    static const struct { const char *gg, *hf; } top[] = {
        {"token_embd.weight", "model.embed_tokens.weight"},
        {"output_norm.weight", "model.norm.weight"},
        {"output.weight", "lm_head.weight"},
    };
    for (size_t i = 0; i < sizeof top / sizeof top[0]; i++)
        if (!strcmp(g, top[i].gg)) return snprintf(out, cap, "%s", top[i].hf) > 0;
    static const struct { const char *gg, *hf; } blk[] = {
        {"attn_q", "self_attn.q_proj"},     {"attn_k", "self_attn.k_proj"},
        {"attn_v", "self_attn.v_proj"},     {"attn_output", "self_attn.o_proj"},
        {"attn_q_norm", "self_attn.q_norm"}, {"attn_k_norm", "self_attn.k_norm"},
        {"ffn_gate", "mlp.gate_proj"},      {"ffn_up", "mlp.up_proj"},
        {"ffn_down", "mlp.down_proj"},      {"attn_norm", "input_layernorm"},
        {"ffn_norm", "post_attention_layernorm"},
    };
    int layer, used = 0;
    char part[64], suffix[16];
    if (sscanf(g, "blk.%d.%63[^.].%15s%n", &layer, part, suffix, &used) != 3 || g[used]) return false;
    for (size_t i = 0; i < sizeof blk / sizeof blk[0]; i++)
        if (!strcmp(part, blk[i].gg))
            return snprintf(out, cap, "model.layers.%d.%s.%s", layer, blk[i].hf, suffix) > 0;
    return false;
}

static mlxn_status convert_gguf(conv *c, const char *in, mlxn_model_config *cfg, bool *tied) {
    mlxn_gguf *g = NULL;
    mlxn_status st = mlxn_gguf_open_file(&g, in);
    if (st) return st;
    c->total = mlxn_gguf_tensor_count(g);
    *tied = mlxn_gguf_find_tensor(g, "output.weight") == NULL;
    bool permuted = cfg->arch == MLXN_ARCH_LLAMA || cfg->arch == MLXN_ARCH_MISTRAL;
    for (size_t i = 0; i < c->total && !st; i++) {
        const mlxn_gguf_tensor *t = mlxn_gguf_tensor_at(g, i);
        char hf[200];
        if (!strcmp(t->name, "rope_freqs.weight")) { /* the config's rope_scaling carries it */
            progress(c, t->name);
            continue;
        }
        if (!gguf_to_hf(t->name, hf, sizeof hf)) {
            st = mlxn_err(MLXN_ERR_UNSUPPORTED, "convert: %s: tensor '%s' has no HF name", in, t->name);
            break;
        }
        if (!t->supported) {
            st = mlxn_err(MLXN_ERR_UNSUPPORTED, "convert: %s: tensor '%s' has ggml type %s, which mlxn cannot read", in,
                          t->name, mlxn_ggml_type_name(t->ggml_type));
            break;
        }
        const void *src = t->data;
        void *perm = NULL;
        int heads = strstr(t->name, ".attn_q.") ? cfg->heads : strstr(t->name, ".attn_k.") ? cfg->kv_heads : 0;
        if (permuted && heads && t->ndim == 2) {
            perm = mlxn_malloc(t->nbytes);
            if (!perm) { st = mlxn_err(MLXN_ERR_OUT_OF_MEMORY, "convert: out of memory"); break; }
            st = mlxn_unpermute_qk_rows(t->data, perm, t->shape[0], t->nbytes / (size_t)t->shape[0], heads);
            src = perm;
        }
        int64_t N = t->shape[0], K = t->ndim == 2 ? t->shape[1] : 0;
        char module[200];
        snprintf(module, sizeof module, "%s", hf);
        char *dot = strrchr(module, '.');
        if (dot) *dot = 0; /* drop ".weight" */
        int bits;
        mlxn_dtype sbt;
        if (st) {
        } else if (t->ndim != 2) { /* norms: as they are (copied: the file is closed before writing) */
            void *copy = mlxn_malloc(t->nbytes);
            if (!copy) st = mlxn_err(MLXN_ERR_OUT_OF_MEMORY, "convert: out of memory");
            else {
                memcpy(copy, src, t->nbytes);
                st = push_tensor(c, hf, t->dtype, t->ndim, t->shape, copy, copy, t->nbytes);
            }
        } else if (mlxn_ggml_to_mlx_exact(t->dtype, &bits, &sbt) && K % 32 == 0) {
            size_t wb = (size_t)(N * K * bits / 32) * 4, sb = (size_t)(N * K / 32) * (sbt == MLXN_F32 ? 4 : 2);
            void *wq = mlxn_malloc(wb), *s = mlxn_malloc(sb), *b = mlxn_malloc(sb);
            if (!wq || !s || !b) st = mlxn_err(MLXN_ERR_OUT_OF_MEMORY, "convert: out of memory");
            if (!st) st = mlxn_ggml_to_mlx(t->dtype, src, N, K, wq, s, b);
            int64_t ws[2] = {N, K * bits / 32}, ss[2] = {N, K / 32};
            char name[220];
            snprintf(name, sizeof name, "%s.weight", module);
            if (!st) { st = push_tensor(c, name, MLXN_U32, 2, ws, wq, wq, wb); wq = NULL; }
            snprintf(name, sizeof name, "%s.scales", module);
            if (!st) { st = push_tensor(c, name, sbt, 2, ss, s, s, sb); s = NULL; }
            snprintf(name, sizeof name, "%s.biases", module);
            if (!st) { st = push_tensor(c, name, sbt, 2, ss, b, b, sb); b = NULL; }
            if (!st) st = note_module(c, module, bits, 32);
            mlxn_free(wq);
            mlxn_free(s);
            mlxn_free(b);
        } else { /* requantize through f32 */
            float *w = mlxn_malloc((size_t)(N * K) * sizeof(float));
            if (!w) st = mlxn_err(MLXN_ERR_OUT_OF_MEMORY, "convert: out of memory");
            if (!st) st = mlxn_ggml_dequantize(t->dtype, src, w, N * K);
            if (!st) st = emit_quantized_f32(c, module, w, N, K, c->o->bits, c->o->group_size, MLXN_F16);
            mlxn_free(w);
        }
        mlxn_free(perm);
        if (st) mlxn_err_prefix("convert: tensor '%s'", t->name);
        progress(c, t->name);
    }
    mlxn_gguf_close(g);
    return st;
}

/* ---- HF safetensors directory ---- */

static bool quantizable(const char *name, const mlxn_st_tensor *t) {
    size_t n = strlen(name);
    if (t->ndim != 2 || !mlxn_dtype_is_float(t->dtype) || n < 7 || strcmp(name + n - 7, ".weight")) return false;
    return strstr(name, "_proj.weight") || strstr(name, "embed_tokens.weight") || strstr(name, "lm_head.weight");
}

static mlxn_status convert_hf(conv *c, const char *dir) {
    mlxn_st_shards *sh = NULL;
    mlxn_status st = mlxn_st_shards_open(&sh, dir);
    if (st) return st;
    c->total = mlxn_st_shards_count(sh);
    for (size_t i = 0; i < c->total && !st; i++) {
        const mlxn_st_tensor *t = mlxn_st_shards_at(sh, i);
        if (!t->supported) {
            st = mlxn_err(MLXN_ERR_UNSUPPORTED, "convert: %s: tensor '%s' has dtype %s", dir, t->name, t->dtype_name);
            break;
        }
        int64_t K = t->ndim == 2 ? t->shape[1] : 0;
        if (quantizable(t->name, t) && K % c->o->group_size == 0 && (K * c->o->bits) % 32 == 0) {
            int64_t N = t->shape[0];
            float *w = mlxn_malloc((size_t)(N * K) * sizeof(float));
            if (!w) { st = mlxn_err(MLXN_ERR_OUT_OF_MEMORY, "convert: out of memory"); break; }
            for (int64_t j = 0; j < N * K; j++) w[j] = mlxn_load_f(t->data, t->dtype, (size_t)j);
            char module[200];
            snprintf(module, sizeof module, "%.*s", (int)(strlen(t->name) - 7), t->name);
            st = emit_quantized_f32(c, module, w, N, K, c->o->bits, c->o->group_size, t->dtype);
            mlxn_free(w);
        } else {
            void *copy = mlxn_malloc(t->nbytes);
            if (!copy) { st = mlxn_err(MLXN_ERR_OUT_OF_MEMORY, "convert: out of memory"); break; }
            memcpy(copy, t->data, t->nbytes);
            st = push_tensor(c, t->name, t->dtype, t->ndim, t->shape, copy, copy, t->nbytes);
        }
        progress(c, t->name);
    }
    mlxn_st_shards_close(sh);
    return st;
}

/* ---- config.json and tokenizer files ---- */

static const char *hf_model_type(mlxn_arch a) {
    switch (a) {
    case MLXN_ARCH_MISTRAL: return "mistral";
    case MLXN_ARCH_QWEN2: return "qwen2";
    case MLXN_ARCH_QWEN3: return "qwen3";
    default: return "llama";
    }
}
static const char *hf_arch_class(mlxn_arch a) {
    switch (a) {
    case MLXN_ARCH_MISTRAL: return "MistralForCausalLM";
    case MLXN_ARCH_QWEN2: return "Qwen2ForCausalLM";
    case MLXN_ARCH_QWEN3: return "Qwen3ForCausalLM";
    default: return "LlamaForCausalLM";
    }
}

/* The quantization section: the most common (bits, group) is the default,
 * every module that differs is named. */
static cJSON *quant_json(const conv *c) {
    int best = -1, best_n = 0;
    for (size_t i = 0; i < c->n_mq; i++) {
        int n = 0;
        for (size_t j = 0; j < c->n_mq; j++)
            n += c->mq[j].bits == c->mq[i].bits && c->mq[j].group == c->mq[i].group;
        if (n > best_n) { best_n = n; best = (int)i; }
    }
    if (best < 0) return NULL;
    cJSON *q = cJSON_CreateObject();
    cJSON_AddNumberToObject(q, "group_size", c->mq[best].group);
    cJSON_AddNumberToObject(q, "bits", c->mq[best].bits);
    for (size_t i = 0; i < c->n_mq; i++) {
        if (c->mq[i].bits == c->mq[best].bits && c->mq[i].group == c->mq[best].group) continue;
        cJSON *o = cJSON_CreateObject();
        cJSON_AddNumberToObject(o, "group_size", c->mq[i].group);
        cJSON_AddNumberToObject(o, "bits", c->mq[i].bits);
        cJSON_AddItemToObject(q, c->mq[i].module, o);
    }
    return q;
}

static mlxn_status write_json(const char *dir, const char *file, cJSON *j) {
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", dir, file);
    char *text = cJSON_Print(j);
    if (!text) return mlxn_err(MLXN_ERR_OUT_OF_MEMORY, "convert: out of memory writing %s", path);
    FILE *f = fopen(path, "wb");
    mlxn_status st = MLXN_OK;
    if (!f || fputs(text, f) < 0 || fputc('\n', f) < 0) st = mlxn_err(MLXN_ERR_IO, "convert: cannot write %s: %s", path, strerror(errno));
    if (f && fclose(f) && !st) st = mlxn_err(MLXN_ERR_IO, "convert: cannot write %s: %s", path, strerror(errno));
    cJSON_free(text);
    return st;
}

/* A float as the shortest decimal that reads back to it (1e-05, not
 * 9.99999974737875e-06). */
static double dec(float f) {
    char b[32];
    snprintf(b, sizeof b, "%.7g", (double)f);
    return strtod(b, NULL);
}

static mlxn_status write_config_from_cfg(const char *dir, const mlxn_model_config *cfg, bool tied, cJSON *quant) {
    cJSON *j = cJSON_CreateObject();
    cJSON *arr = cJSON_AddArrayToObject(j, "architectures");
    cJSON_AddItemToArray(arr, cJSON_CreateString(hf_arch_class(cfg->arch)));
    cJSON_AddStringToObject(j, "model_type", hf_model_type(cfg->arch));
    cJSON_AddNumberToObject(j, "hidden_size", cfg->hidden);
    cJSON_AddNumberToObject(j, "intermediate_size", cfg->ffn);
    cJSON_AddNumberToObject(j, "num_hidden_layers", cfg->layers);
    cJSON_AddNumberToObject(j, "num_attention_heads", cfg->heads);
    cJSON_AddNumberToObject(j, "num_key_value_heads", cfg->kv_heads);
    cJSON_AddNumberToObject(j, "head_dim", cfg->head_dim);
    cJSON_AddNumberToObject(j, "vocab_size", cfg->vocab);
    cJSON_AddNumberToObject(j, "rms_norm_eps", dec(cfg->rms_eps));
    cJSON_AddNumberToObject(j, "rope_theta", dec(cfg->rope_theta));
    if (cfg->max_pos) cJSON_AddNumberToObject(j, "max_position_embeddings", cfg->max_pos);
    if (cfg->rope_scaling == MLXN_ROPE_SCALE_LLAMA3 || cfg->rope_scaling == MLXN_ROPE_SCALE_LINEAR) {
        cJSON *rs = cJSON_AddObjectToObject(j, "rope_scaling");
        cJSON_AddStringToObject(rs, "rope_type", cfg->rope_scaling == MLXN_ROPE_SCALE_LLAMA3 ? "llama3" : "linear");
        cJSON_AddNumberToObject(rs, "factor", dec(cfg->rope_factor));
        if (cfg->rope_scaling == MLXN_ROPE_SCALE_LLAMA3) {
            cJSON_AddNumberToObject(rs, "low_freq_factor", dec(cfg->rope_low_freq));
            cJSON_AddNumberToObject(rs, "high_freq_factor", dec(cfg->rope_high_freq));
            cJSON_AddNumberToObject(rs, "original_max_position_embeddings", cfg->rope_orig_max_pos);
        }
    }
    cJSON_AddBoolToObject(j, "tie_word_embeddings", tied);
    if (cfg->arch == MLXN_ARCH_QWEN2) cJSON_AddBoolToObject(j, "attention_bias", true);
    if (cfg->bos_id >= 0) cJSON_AddNumberToObject(j, "bos_token_id", cfg->bos_id);
    if (cfg->n_eos == 1) cJSON_AddNumberToObject(j, "eos_token_id", cfg->eos_ids[0]);
    else if (cfg->n_eos > 1) {
        cJSON *e = cJSON_AddArrayToObject(j, "eos_token_id");
        for (int i = 0; i < cfg->n_eos; i++) cJSON_AddItemToArray(e, cJSON_CreateNumber(cfg->eos_ids[i]));
    }
    cJSON_AddStringToObject(j, "torch_dtype", "float16");
    if (quant) {
        cJSON_AddItemToObject(j, "quantization", cJSON_Duplicate(quant, 1));
        cJSON_AddItemToObject(j, "quantization_config", quant);
    }
    mlxn_status st = write_json(dir, "config.json", j);
    cJSON_Delete(j);
    return st;
}

static mlxn_status write_tokenizer(const char *dir, const mlxn_tokenizer *tok, const char *tmpl, int ctx) {
    char path[1024];
    snprintf(path, sizeof path, "%s/tokenizer.json", dir);
    mlxn_status st = mlxn_tokenizer_write_json(tok, path);
    if (st) return st;
    mlxn_tok_special sp = mlxn_tokenizer_special(tok);
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "tokenizer_class", "PreTrainedTokenizerFast");
    cJSON_AddBoolToObject(j, "add_bos_token", sp.add_bos);
    cJSON_AddBoolToObject(j, "add_eos_token", sp.add_eos);
    cJSON_AddBoolToObject(j, "clean_up_tokenization_spaces", false);
    const char *names[4][2] = {{"bos_token", NULL}, {"eos_token", NULL}, {"unk_token", NULL}, {"pad_token", NULL}};
    int32_t ids[4] = {sp.bos, sp.eos, sp.unk, sp.pad};
    for (int i = 0; i < 4; i++) {
        const char *txt = ids[i] >= 0 ? mlxn_tokenizer_token_text(tok, ids[i]) : NULL;
        if (txt) cJSON_AddStringToObject(j, names[i][0], txt);
    }
    if (ctx > 0) cJSON_AddNumberToObject(j, "model_max_length", ctx);
    if (tmpl) cJSON_AddStringToObject(j, "chat_template", tmpl);
    st = write_json(dir, "tokenizer_config.json", j);
    cJSON_Delete(j);
    return st;
}

static mlxn_status copy_file(const char *from, const char *to) {
    char *data = NULL;
    size_t len = 0;
    mlxn_status st = mlxn_read_file(&data, &len, from, (size_t)256 << 20);
    if (st) return st;
    FILE *f = fopen(to, "wb");
    if (!f || fwrite(data, 1, len, f) != len) st = mlxn_err(MLXN_ERR_IO, "convert: cannot write %s: %s", to, strerror(errno));
    if (f && fclose(f) && !st) st = mlxn_err(MLXN_ERR_IO, "convert: cannot write %s: %s", to, strerror(errno));
    mlxn_free(data);
    return st;
}

static mlxn_status write_weights(const char *dir, conv *c) {
    mlxn_st_write_tensor *w = mlxn_calloc(c->n ? c->n : 1, sizeof *w);
    if (!w) return mlxn_err(MLXN_ERR_OUT_OF_MEMORY, "convert: out of memory");
    for (size_t i = 0; i < c->n; i++) {
        w[i].name = c->t[i].name;
        w[i].dtype = c->t[i].dtype;
        w[i].ndim = c->t[i].ndim;
        memcpy(w[i].shape, c->t[i].shape, sizeof w[i].shape);
        w[i].data = c->t[i].data;
        w[i].nbytes = c->t[i].nbytes;
    }
    char path[1024];
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    const char *meta[2] = {"format", "mlx"};
    mlxn_status st = mlxn_safetensors_write(path, c->n, w, 1, meta);
    mlxn_free(w);
    return st;
}

/* out_dir must not be the input's directory (its files would be replaced
 * by what is made of them), and, unless overwrite, not an existing
 * directory with entries in it; a non-directory there fails too. */
static mlxn_status check_out_dir(const char *in, const struct stat *in_st, const char *out_dir, bool overwrite) {
    struct stat os;
    if (stat(out_dir, &os)) return MLXN_OK; /* created below */
    if (!S_ISDIR(os.st_mode)) return mlxn_err(MLXN_ERR_INVALID_ARG, "convert: %s exists and is not a directory", out_dir);
    struct stat ds;
    bool same = false;
    if (S_ISDIR(in_st->st_mode)) {
        same = in_st->st_dev == os.st_dev && in_st->st_ino == os.st_ino;
    } else { /* the file's directory */
        char d[4096];
        snprintf(d, sizeof d, "%s", in);
        char *slash = strrchr(d, '/');
        if (slash) *(slash == d ? slash + 1 : slash) = 0;
        else snprintf(d, sizeof d, ".");
        same = !stat(d, &ds) && ds.st_dev == os.st_dev && ds.st_ino == os.st_ino;
    }
    if (same)
        return mlxn_err(MLXN_ERR_INVALID_ARG,
                        "convert: %s is the input's own directory: the input would be replaced; choose another OUT",
                        out_dir);
    if (overwrite) return MLXN_OK;
    DIR *dir = opendir(out_dir);
    if (!dir) return mlxn_err(MLXN_ERR_IO, "convert: cannot read %s: %s", out_dir, strerror(errno));
    const struct dirent *e;
    bool empty = true;
    while (empty && (e = readdir(dir)))
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) empty = false;
    closedir(dir);
    if (!empty)
        return mlxn_err(MLXN_ERR_INVALID_ARG,
                        "convert: %s already exists and is not empty; remove it, pick a new OUT, or overwrite "
                        "(--force) to replace the files a conversion writes", out_dir);
    return MLXN_OK;
}

mlxn_status mlxn_convert(const char *in, const char *out_dir, const mlxn_convert_options *opts) {
    if (!in || !out_dir) return mlxn_err(MLXN_ERR_INVALID_ARG, "convert: NULL path");
    mlxn_convert_options o = opts ? *opts : (mlxn_convert_options){0};
    if (!o.bits) o.bits = 4;
    if (!o.group_size) o.group_size = 64;
    mlxn_status st = mlxn_mlx_check("convert", 1, o.group_size, o.bits, o.group_size, MLXN_F16);
    if (st) return st;
    struct stat sb;
    if (stat(in, &sb)) return mlxn_err(MLXN_ERR_IO, "convert: cannot open %s: %s", in, strerror(errno));
    st = check_out_dir(in, &sb, out_dir, o.overwrite);
    if (st) return st;
    if (mkdir(out_dir, 0755) && errno != EEXIST)
        return mlxn_err(MLXN_ERR_IO, "convert: cannot create %s: %s", out_dir, strerror(errno));
    conv c = {.o = &o};
    /* the model loader gives the config and tokenizer for both kinds of input */
    mlxn_device *cpu = NULL;
    mlxn_model *m = NULL;
    mlxn_tokenizer *tok = NULL;
    char *tmpl = NULL;
    mlxn_device_options dopt = {.n_threads = 1};
    st = mlxn_device_open(&cpu, "cpu", &dopt);
    if (!st) st = mlxn_model_load(&m, cpu, in);
    if (!st) st = mlxn_model_load_tokenizer(m, &tok, &tmpl);
    bool tied = false;
    if (!st) {
        if (S_ISDIR(sb.st_mode)) st = convert_hf(&c, in);
        else st = convert_gguf(&c, in, &m->cfg, &tied);
    }
    if (!st) st = write_weights(out_dir, &c);
    cJSON *quant = st ? NULL : quant_json(&c);
    if (!st && S_ISDIR(sb.st_mode)) { /* keep the HF config, add the quantization section */
        char path[1024];
        snprintf(path, sizeof path, "%s/config.json", in);
        cJSON *j = NULL;
        st = mlxn_json_parse_file(&j, path, (size_t)16 << 20);
        if (!st && quant) {
            cJSON_DeleteItemFromObject(j, "quantization");
            cJSON_DeleteItemFromObject(j, "quantization_config");
            cJSON_AddItemToObject(j, "quantization", cJSON_Duplicate(quant, 1));
            cJSON_AddItemToObject(j, "quantization_config", quant);
            quant = NULL;
        }
        if (!st) st = write_json(out_dir, "config.json", j);
        cJSON_Delete(j);
        static const char *files[] = {"tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
                                      "generation_config.json"};
        for (size_t i = 0; i < 4 && !st; i++) {
            char from[1024], to[1024];
            snprintf(from, sizeof from, "%s/%s", in, files[i]);
            snprintf(to, sizeof to, "%s/%s", out_dir, files[i]);
            if (access(from, R_OK) == 0) st = copy_file(from, to);
        }
    } else if (!st) {
        st = write_config_from_cfg(out_dir, &m->cfg, tied, quant);
        quant = NULL;
        if (!st) st = write_tokenizer(out_dir, tok, tmpl, m->cfg.max_pos);
    }
    cJSON_Delete(quant);
    for (size_t i = 0; i < c.n; i++) mlxn_free(c.t[i].owned);
    mlxn_free(c.t);
    mlxn_free(c.mq);
    mlxn_free(tmpl);
    mlxn_tokenizer_destroy(tok);
    mlxn_model_destroy(m);
    mlxn_device_close(cpu);
    return st;
}
