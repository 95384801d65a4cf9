/*
 * model.h — Llama-family models: hyper-parameters (config.c), the weight
 * table and graph builder (llama.c), the file glue (loader.c), the KV cache
 * (kvcache.c), the sampler (sampler.c) and the generation loop (generate.c).
 * Internal header.
 *
 * A model is a config, a weight table and a graph builder. Weights come from
 * a weight source (a name → tensor lookup over mmapped bytes): safetensors
 * directories and GGUF files are thin adapters onto it, and tests build one
 * from arrays. Buffers are adopted zero-copy on the CPU, except the q/k/v
 * and gate/up weights that are stacked (copied once; see mlxn_layer).
 *
 * Ownership: every _create/_load has a _destroy; destroy(NULL) is a no-op.
 * Failure messages name the file, the tensor or key and the numbers.
 */
#ifndef MLXN_MODEL_H
#define MLXN_MODEL_H

#include "core/core.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

/* ------------------------------------------------------------------------ */
/* Config (config.c)                                                          */
/* ------------------------------------------------------------------------ */

typedef enum mlxn_arch {
    MLXN_ARCH_LLAMA = 0,   /* Llama 2/3, SmolLM */
    MLXN_ARCH_MISTRAL = 1, /* Llama + optional sliding window */
    MLXN_ARCH_QWEN2 = 2,   /* + q/k/v bias */
    MLXN_ARCH_QWEN3 = 3,   /* + per-head q/k RMS norm */
    MLXN_ARCH_COUNT
} mlxn_arch;

const char *mlxn_arch_name(mlxn_arch a); /* "llama", ... or "?" */
/* HF model_type / GGUF general.architecture -> arch ("smollm" = llama).
 * MLXN_ERR_UNSUPPORTED naming the string for anything else. */
mlxn_status mlxn_arch_from_name(mlxn_arch *out, const char *name);

/* A per-module MLX quantization override ("model.layers.3.mlp.down_proj":
 * {"bits": 8, "group_size": 64} or false). bits 0 = left unquantized. */
typedef struct mlxn_quant_rule {
    char *module;
    int bits, group_size;
} mlxn_quant_rule;

#define MLXN_MAX_EOS 8

typedef struct mlxn_model_config {
    mlxn_arch arch;
    int hidden;   /* hidden_size */
    int layers;   /* num_hidden_layers */
    int heads;    /* num_attention_heads */
    int kv_heads; /* num_key_value_heads (= heads when absent) */
    int head_dim; /* head_dim (= hidden / heads when absent) */
    int ffn;      /* intermediate_size */
    int vocab;    /* vocab_size */
    int max_pos;  /* max_position_embeddings (0 = unknown) */
    float rms_eps;
    float rope_theta;
    mlxn_rope_scaling rope_scaling;
    float rope_factor, rope_low_freq, rope_high_freq;
    int rope_orig_max_pos;
    int sliding_window; /* 0 = none */
    bool tie_embeddings, qkv_bias, qk_norm;
    int32_t bos_id; /* -1 = none */
    int32_t eos_ids[MLXN_MAX_EOS];
    int n_eos;
    /* MLX affine quantization: default bits / group (0 = not quantized) and
     * per-module rules. */
    int q_bits, q_group;
    mlxn_quant_rule *q_rules;
    size_t n_q_rules;
    char source[256]; /* the file the config came from, for messages */
} mlxn_model_config;

/* Parse a HF / MLX config.json held in memory (`path` names it in
 * messages). Reads model_type (or architectures[0]), the sizes, rms_norm_eps,
 * rope_theta / rope_scaling (or rope_parameters), tie_word_embeddings,
 * attention_bias, head_dim, bos/eos ids, sliding_window, and quantization /
 * quantization_config. Then validates (mlxn_model_config_check). Free with
 * mlxn_model_config_free. */
mlxn_status mlxn_model_config_from_json(mlxn_model_config *cfg, const char *text, size_t len,
                                        const char *path);
mlxn_status mlxn_model_config_from_json_file(mlxn_model_config *cfg, const char *path);
/* Sizes positive, heads divide into kv_heads, rope scaling sane. */
mlxn_status mlxn_model_config_check(const mlxn_model_config *cfg);
void mlxn_model_config_free(mlxn_model_config *cfg);
/* MLX quantization of a module ("model.layers.0.self_attn.q_proj"): the rule
 * for it, else the default. bits 0 = dense. */
void mlxn_model_config_quant(const mlxn_model_config *cfg, const char *module, int *bits,
                             int *group_size);
/* Print the config as "key: value" lines (mlxn info). */
void mlxn_model_config_print(const mlxn_model_config *cfg, FILE *f);

/* ------------------------------------------------------------------------ */
/* Weight sources (llama.c)                                                   */
/* ------------------------------------------------------------------------ */

/* One tensor as a file holds it: row-major shape, bytes in place — or,
 * from a synthetic source, a description of random bytes (fill.kind set,
 * data NULL) that the device makes in its own memory (mlxn_buffer_fill). */
typedef struct mlxn_tensor_ref {
    mlxn_dtype dtype;
    int ndim;
    int64_t shape[MLXN_MAX_DIMS];
    const void *data; /* NULL when fill.kind != MLXN_FILL_NONE */
    size_t nbytes;
    mlxn_fill fill;   /* zero (MLXN_FILL_NONE): the bytes are at data */
    const char *file; /* the file holding it, for messages (NULL: the source's label) */
} mlxn_tensor_ref;

typedef enum mlxn_weight_names {
    MLXN_NAMES_HF = 0,   /* model.layers.N.self_attn.q_proj.weight (HF / MLX) */
    MLXN_NAMES_GGUF = 1, /* blk.N.attn_q.weight */
    MLXN_NAMES_COUNT
} mlxn_weight_names;

/* A name → tensor lookup. find returns false when absent (no error set).
 * The bytes must outlive the model (close is called by mlxn_model_destroy,
 * after every buffer is gone). */
typedef struct mlxn_weight_source {
    void *ctx;
    bool (*find)(void *ctx, const char *name, mlxn_tensor_ref *out);
    void (*close)(void *ctx); /* nullable */
    mlxn_weight_names names;
    const char *label; /* file or directory, for messages */
    /* nullable: told after each layer's weights are loaded (uploads to a GPU
     * take seconds for large models) */
    void (*progress)(void *pctx, int layers_done, int layers);
    void *pctx;
    /* nullable: bytes of a found tensor (data, nbytes) were copied and will
     * not be read from the source again (its pages may go) */
    void (*drop)(void *ctx, const void *data, size_t n);
} mlxn_weight_source;

/* ------------------------------------------------------------------------ */
/* Model (llama.c)                                                            */
/* ------------------------------------------------------------------------ */

/* One linear layer, y = x W^T (+ bias). Either dense — w [N, K] in f32, f16,
 * bf16 or a GGML block type, recorded as matmul — or MLX-quantized — w u32
 * [N, K*bits/32] with scales/biases [N, K/group], recorded as matmul_mlx. */
typedef struct mlxn_linear {
    mlxn_buffer *w;
    mlxn_buffer *scales, *biases; /* MLX only */
    mlxn_buffer *bias;            /* optional [N] (qwen2 q/k/v) */
    mlxn_mlx_quant q;             /* bits 0: dense */
    int64_t n, k;
} mlxn_linear;

/* q/k/v (and gate/up) of the same format (dtype, MLX bits / group / scale
 * dtype, bias or none) are stacked row-wise at load into one linear, qkv
 * [q_dim + 2 kv_dim, hidden] (gate_up [2 ffn, hidden]); wq, wk, wv (gate,
 * up) are then views of its rows. A one-token forward pass runs the stacked
 * linear as one matmul whose output [1, q|k|v] holds q, k and v side by
 * side; longer passes, whose outputs could not be split without strides,
 * use the views. Stacking copies those weights once into memory the model
 * owns (not zero-copy); MLXN_NO_CONCAT=1 at load turns it off. qkv.w /
 * gate_up.w is NULL when not stacked. */
typedef struct mlxn_layer {
    mlxn_buffer *attn_norm, *ffn_norm; /* [hidden] */
    mlxn_buffer *q_norm, *k_norm;      /* [head_dim], qwen3 only */
    mlxn_linear wq;                    /* [heads*head_dim, hidden] */
    mlxn_linear wk, wv;                /* [kv_heads*head_dim, hidden] */
    mlxn_linear wo;                    /* [hidden, heads*head_dim] */
    mlxn_linear gate, up;              /* [ffn, hidden] */
    mlxn_linear down;                  /* [hidden, ffn] */
    mlxn_linear qkv;                   /* [(heads + 2 kv_heads)*head_dim, hidden] or w NULL */
    mlxn_linear gate_up;               /* [2 ffn, hidden] or w NULL */
} mlxn_layer;

typedef struct mlxn_model {
    mlxn_model_config cfg;
    mlxn_device *dev; /* borrowed */
    mlxn_rope_mode rope_mode; /* NORMAL for GGUF llama (permuted Q/K), else NEOX */
    mlxn_linear embed;        /* [vocab, hidden]: gathered by get_rows(_mlx) */
    mlxn_linear head;         /* [vocab, hidden]: shares embed's buffers when tied */
    mlxn_buffer *out_norm;    /* [hidden] */
    mlxn_buffer *rope_freqs;  /* GGUF rope_freqs [head_dim/2] or NULL */
    mlxn_layer *L;            /* [layers] */
    size_t weight_bytes;      /* all weights */
    size_t weight_copy_bytes; /* of which copied into model-owned memory (stacked) */
    size_t weight_fill_bytes; /* of which made on the device (synthetic sources) */
    mlxn_weight_source src;
    char path[512];
} mlxn_model;

/* The linear groups of a layer, for reports (mlxn info). */
typedef enum mlxn_linear_group {
    MLXN_LIN_Q, MLXN_LIN_K, MLXN_LIN_V, MLXN_LIN_O, MLXN_LIN_GATE, MLXN_LIN_UP, MLXN_LIN_DOWN, MLXN_LIN_COUNT
} mlxn_linear_group;
/* "q", "k", "v", "o", "gate", "up", "down". */
const char *mlxn_linear_group_name(mlxn_linear_group g);
/* Layer L's linear of group g. */
const mlxn_linear *mlxn_layer_linear(const mlxn_layer *L, mlxn_linear_group g);
/* A linear's weight format into buf: "mlx 4-bit/g64", a dtype name ("q4_k",
 * "bf16"), or "-" when absent. Returns buf. */
const char *mlxn_linear_format(const mlxn_linear *l, char *buf, size_t cap);
/* Group g's formats across the model's layers into buf: the format when
 * every layer has the same one, else each format with its layer count in
 * order of first appearance ("q6_k x16, q4_k x14"; GGUF Q4_K_M files mix
 * them). Returns buf. */
const char *mlxn_model_group_formats(const mlxn_model *m, mlxn_linear_group g, char *buf, size_t cap);

/* Build a model from a config (taken over: cfg is moved into the model and
 * zeroed on success) and a weight source (taken over on success and on
 * failure). Every tensor is checked against the config; a missing tensor,
 * a wrong shape or a dtype no kernel takes fails naming the source, the
 * tensor and the numbers. */
mlxn_status mlxn_model_create(mlxn_model **out, mlxn_device *dev, mlxn_model_config *cfg,
                              mlxn_weight_source *src);
void mlxn_model_destroy(mlxn_model *m);

/* ---- loader.c: files -> weight sources (the io/ glue) ---- */

typedef struct mlxn_gguf mlxn_gguf;           /* io/io.h */
typedef struct mlxn_tokenizer mlxn_tokenizer; /* model/tokenizer.h */

/* Load by path: a directory is an HF/MLX safetensors model (config.json +
 * model.safetensors or model.safetensors.index.json); a .gguf file is GGUF
 * (config from its metadata). Weights are mmapped and adopted zero-copy on
 * the CPU (stacked q/k/v and gate/up: copied once, see mlxn_layer). */
mlxn_status mlxn_model_load(mlxn_model **out, mlxn_device *dev, const char *path);
/* mlxn_model_load with a progress callback (nullable) called per layer. */
mlxn_status mlxn_model_load_ex(mlxn_model **out, mlxn_device *dev, const char *path,
                               void (*progress)(void *pctx, int layers_done, int layers), void *pctx);
/* "synthetic:NAME[:q<bits>][:g<group>]": a known model's shapes with random
 * MLX-quantized weights (synthetic.c; mlxn_model_load takes these too). */
mlxn_status mlxn_model_load_synthetic(mlxn_model **out, mlxn_device *dev, const char *spec,
                                      void (*progress)(void *pctx, int layers_done, int layers), void *pctx);
/* The fill a synthetic model's tensor "<module>.<what>" gets: for a linear
 * of K inputs quantized at `bits`, "weight" is random code words, "scales"
 * bf16 in [0.5, 1)·2/((2^bits-1)·sqrt(K)), "biases" bf16 in [-1, -0.5)/sqrt(K)
 * (dequantized weights: mean 0, variance about 0.25/K); a norm's "weight"
 * (bits 0, K unused) f32 in [0.9, 1.1). The seed is the module's name
 * hashed with the part. kind MLXN_FILL_NONE for anything else. */
mlxn_fill mlxn_synthetic_fill(const char *module, const char *what, int64_t K, int bits);
/* Hyper-parameters from GGUF metadata: general.architecture, then
 * <arch>.block_count, .embedding_length, .attention.head_count(_kv),
 * .feed_forward_length, .context_length, .attention.key_length,
 * .attention.layer_norm_rms_epsilon, .rope.freq_base, .rope.scaling.*,
 * tokenizer.ggml.bos/eos_token_id. */
mlxn_status mlxn_model_config_from_gguf(mlxn_model_config *cfg, const mlxn_gguf *g, const char *path);
/* The model's tokenizer (tokenizer.json next to the weights, or the GGUF's
 * tokenizer.ggml.* arrays) and its chat template (nullable out; NULL when
 * the model has none; mlxn_free it). */
mlxn_status mlxn_model_load_tokenizer(const mlxn_model *m, mlxn_tokenizer **out, char **chat_template);
/* The tokenizer in a GGUF's tokenizer.ggml.* metadata (and its chat
 * template, nullable out); `path` names the file in messages. */
mlxn_status mlxn_tokenizer_from_gguf(mlxn_tokenizer **out, char **chat_template, const mlxn_gguf *g,
                                     const char *path);

/* ------------------------------------------------------------------------ */
/* KV cache (kvcache.c)                                                       */
/* ------------------------------------------------------------------------ */

typedef struct mlxn_kvcache {
    int layers, kv_heads, head_dim, ctx;
    mlxn_dtype dtype;
    mlxn_buffer **k, **v; /* [layers] of [kv_heads, ctx, head_dim] */
    int n_past;           /* tokens already in the cache */
    bool ring;            /* sliding window: decode past ctx, attending to the
                             last ctx tokens (rows reused modulo ctx) */
} mlxn_kvcache;

/* ctx tokens per layer; dtype MLXN_F16 (the usual choice), MLXN_BF16 or MLXN_F32. */
mlxn_status mlxn_kvcache_create(mlxn_kvcache **out, const mlxn_model *m, int ctx, mlxn_dtype dtype);
void mlxn_kvcache_destroy(mlxn_kvcache *kv);
size_t mlxn_kvcache_bytes(const mlxn_kvcache *kv);
/* Forget the tokens (positions restart at 0). */
void mlxn_kvcache_clear(mlxn_kvcache *kv);
/* MLXN_ERR_RANGE "prompt N + n M exceed ctx C" when n_past + n > ctx. A
 * ring cache takes any number of tokens once it is full, but one at a time
 * (a chunk of several would overwrite rows its own earlier queries read). */
mlxn_status mlxn_kvcache_reserve(const mlxn_kvcache *kv, int n, const char *what);

/* ------------------------------------------------------------------------ */
/* Forward graphs (llama.c)                                                   */
/* ------------------------------------------------------------------------ */

enum {
    MLXN_FWD_ALL_LOGITS = 1u << 0, /* logits for every token, not just the last */
};

/* A recorded forward pass of exactly T tokens over a model and a cache. The
 * first run records and finishes; later runs replay the same graph with new
 * token ids and positions written into its i32 buffers. */
typedef struct mlxn_forward mlxn_forward;

mlxn_status mlxn_forward_create(mlxn_forward **out, const mlxn_model *m, mlxn_kvcache *kv, int T,
                                mlxn_mode mode, unsigned flags);
void mlxn_forward_destroy(mlxn_forward *f);
/* Run on tokens[T] at positions kv->n_past .. n_past+T-1 and advance
 * n_past. Fails MLXN_ERR_RANGE when they do not fit the cache or a token
 * is outside [0, vocab) (nothing run, n_past unchanged). */
mlxn_status mlxn_forward_run(mlxn_forward *f, const int32_t *tokens);
/* Logits of the last run: [rows, vocab], rows = T with ALL_LOGITS else 1. */
mlxn_status mlxn_forward_logits(const mlxn_forward *f, float *out, size_t n_floats);
/* argmax of the last row's logits (computed on the device). */
mlxn_status mlxn_forward_argmax(const mlxn_forward *f, int32_t *out);
/* Also compute the k largest logits of each row on the device (recorded
 * with the graph: call before the first run; 0 = off). */
mlxn_status mlxn_forward_set_top_k(mlxn_forward *f, int k);
/* The last row's k largest logits (vals) and their ids. */
mlxn_status mlxn_forward_top_k(const mlxn_forward *f, float *vals, int32_t *ids, int k);
/* Also compute each row's softmax normalizer at `scale` on the device
 * (mlxn_op_logsumexp; recorded with the graph: call before the first run;
 * 0 = off). */
mlxn_status mlxn_forward_set_norm(mlxn_forward *f, double scale);
/* The last row's (max, sum of exp(scale * (l - max))). */
mlxn_status mlxn_forward_norm(const mlxn_forward *f, float out[2]);
int mlxn_forward_rows(const mlxn_forward *f);
mlxn_session *mlxn_forward_session(mlxn_forward *f);

/* Pipelined greedy decode on a one-token forward (T = 1, one row): the
 * step's argmax lands in its token buffer on the device, so the host can
 * queue step n + 1 before it has read step n's token and the device never
 * waits for the host between steps (CUDA; on the CPU each queued run is
 * done on return).
 * mlxn_forward_queue: queue a run at position kv->n_past (and advance it) on
 * *token, or with token NULL on the argmax of the run before (that of a
 * plain mlxn_forward_run too); its argmax is read back in the same queue.
 * The first run of a forward (recording) is not queued: it waits.
 * MLXN_FORWARD_QUEUE runs at most wait to be read; MLXN_ERR_STATE past that.
 * mlxn_forward_next_argmax: wait for the oldest queued run's argmax.
 * mlxn_forward_cancel: wait for the queued runs, drop their argmaxes and
 * give their positions back to the cache (n_past -= their count; the rows
 * they wrote lie past n_past and are written over by the next runs there).
 * mlxn_forward_run / _argmax / _logits / _top_k / _norm fail with
 * MLXN_ERR_STATE while runs are queued. */
#define MLXN_FORWARD_QUEUE 4
mlxn_status mlxn_forward_queue(mlxn_forward *f, const int32_t *token);
mlxn_status mlxn_forward_next_argmax(mlxn_forward *f, int32_t *out);
mlxn_status mlxn_forward_cancel(mlxn_forward *f);
int mlxn_forward_queued(const mlxn_forward *f);
/* Whether greedy decoding should queue its steps (generate, bench): where
 * queued runs overlap the host's work on this device (CUDA); elsewhere
 * pipelining only adds a step after an early stop. MLXN_PIPELINE=0: never,
 * =1: on any device (for tests). */
bool mlxn_forward_pipelines(const mlxn_forward *f);

/* ------------------------------------------------------------------------ */
/* Sampler (sampler.c)                                                        */
/* ------------------------------------------------------------------------ */

/* Defaults in brackets; zero-initialised = greedy. */
typedef struct mlxn_sampler_params {
    float temp;           /* <= 0: greedy (argmax) [0] */
    int top_k;            /* keep the k most likely; 0 = off */
    float top_p;          /* nucleus: smallest set with mass >= p; 0 or 1 = off */
    float min_p;          /* drop tokens with p < min_p * p_max; 0 = off */
    float repeat_penalty; /* > 1 discourages tokens seen in the last repeat_last_n; 0 or 1 = off */
    int repeat_last_n;    /* 0 = 64 */
    uint64_t seed;        /* PCG32 seed; equal seeds give equal samples */
    int n_cands;          /* top-p / min-p without top-k: candidates the device finds
                             for a draw [0 = MLXN_SAMPLER_CANDS] */
} mlxn_sampler_params;

/* Candidates for top-p / min-p without top-k: 64 keeps both stages of the
 * CUDA top_k in registers (64 chunks x 64 = 4096 = 256 threads x 16). */
#define MLXN_SAMPLER_CANDS 64
/* The most candidates a draw asks the device for (top-k + penalty window,
 * or n_cands): the CUDA top_k's two-stage kernel takes k <= 256; past that
 * one block runs k passes over the whole row, slower than reading it. */
#define MLXN_SAMPLER_MAX_CANDS 256

typedef struct mlxn_sampler mlxn_sampler;

mlxn_status mlxn_sampler_create(mlxn_sampler **out, const mlxn_sampler_params *p, int vocab);
void mlxn_sampler_destroy(mlxn_sampler *s);
/* Pick a token from logits[vocab]. Order: repetition penalty over recent
 * tokens, then greedy (temp <= 0), else top-k, softmax(logits / temp),
 * top-p, min-p, renormalise and draw. logits is not modified. */
mlxn_status mlxn_sampler_sample(mlxn_sampler *s, const float *logits, int32_t *out);
/* Record a token (prompt or generated) for the repetition penalty. */
void mlxn_sampler_accept(mlxn_sampler *s, int32_t tok);
void mlxn_sampler_reset(mlxn_sampler *s);
/* True when no option needs the host logits (greedy, no penalty). */
bool mlxn_sampler_is_greedy(const mlxn_sampler *s);
/* k > 0 when a draw can be made from the k largest logits, which the
 * device's top_k then finds instead of the logits row being copied:
 *  - temp > 0, 0 < top_k < vocab, no penalty: k = top_k;
 *  - a repetition penalty >= 1 with top-k (or greedy, temp <= 0):
 *    k = top_k (1 when greedy) + repeat_last_n;
 *  - temp > 0, no top-k, no penalty, top-p and/or min-p: k = n_cands, and
 *    the row's normalizer is needed too (mlxn_sampler_device_norm_scale).
 * 0: the whole row (temperature alone, a penalty < 1, a penalty with
 * top-p / min-p but no top-k, or k past MLXN_SAMPLER_MAX_CANDS or the vocab). */
int mlxn_sampler_device_top_k(const mlxn_sampler *s);
/* > 0 when mlxn_sampler_sample_top also needs the row's (max, sum of
 * exp(scale * (l - max))): mlxn_op_logsumexp at this scale (1 / temp). */
double mlxn_sampler_device_norm_scale(const mlxn_sampler *s);
/* The same draw as mlxn_sampler_sample from the k largest logits of the
 * row (vals, their ids, any order; k >= mlxn_sampler_device_top_k is fine,
 * k = vocab is the whole row) and, when mlxn_sampler_device_norm_scale > 0,
 * norm[2] from mlxn_op_logsumexp (else NULL). *out is the whole row's token
 * for the same seed, or -1 when the candidates cannot decide it (a kept set
 * reaching past them, a penalty window with more distinct tokens than k
 * leaves room for, a draw too close to a boundary for the normalizer's
 * precision, a NaN): then nothing was consumed and the caller draws from
 * the whole row with mlxn_sampler_sample. Fails INVALID_ARG when the
 * settings need the whole row (mlxn_sampler_device_top_k is 0). */
mlxn_status mlxn_sampler_sample_top(mlxn_sampler *s, const float *vals, const int32_t *ids, int k, const float *norm,
                                    int32_t *out);
/* The generator alone (for tests): uniform in [0, 1). */
double mlxn_sampler_uniform(mlxn_sampler *s);

/* ------------------------------------------------------------------------ */
/* Generation (generate.c)                                                    */
/* ------------------------------------------------------------------------ */

/* Called with each generated token; return false to stop. */
typedef bool (*mlxn_token_fn)(void *ctx, int32_t tok);

typedef struct mlxn_generate_params {
    int n_predict;          /* tokens to generate [0 = 128] */
    int n_batch;            /* prompt tokens per prefill graph [0 = 512]; longer
                               prompts run as chunks (one recorded graph for the
                               full chunks, replayed, one for the remainder) */
    bool ignore_eos;        /* keep going through end-of-sequence ids */
    mlxn_sampler_params sampling;
    mlxn_token_fn on_token; /* nullable */
    void *ctx;
} mlxn_generate_params;

typedef struct mlxn_generate_stats {
    int prompt_tokens, gen_tokens;
    int row_reads;          /* sampled tokens drawn from the whole logits row read back
                               (greedy reads one id; candidates, when they decide, k values) */
    double prompt_s, gen_s; /* wall time of prefill / of the decode steps */
    uint64_t decode_nodes;  /* nodes per decode step after fusion */
} mlxn_generate_stats;

/* Prefill prompt[n_prompt] as one graph (or n_batch-token chunks), then
 * decode by replaying a one-token graph. out_tokens (nullable) receives up to n_predict generated
 * ids, *n_out their count. Fails before running anything when prompt +
 * n_predict exceed the cache. */
mlxn_status mlxn_generate(const mlxn_model *m, mlxn_kvcache *kv, const int32_t *prompt,
                          int n_prompt, const mlxn_generate_params *p, int32_t *out_tokens,
                          int *n_out, mlxn_generate_stats *stats);

#endif
