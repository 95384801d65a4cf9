/*
 * tokenizer.h — BPE tokenizers (byte-level: GPT-2 / Llama-3 / Qwen2 / SmolLM;
 * SentencePiece-style: Llama-2 / Mistral v1 / Gemma), built from plain arrays
 * so the GGUF loader and the tokenizer.json reader feed the same object; an
 * incremental UTF-8 decoder for streaming; chat templates without Jinja.
 * Internal header.
 *
 * Ownership: every _create/_load returns an object the caller frees with
 * its _destroy; destroy(NULL) is a no-op. Arrays passed in are copied.
 * Thread-safety: a built tokenizer is immutable; encode/decode may run
 * concurrently on one tokenizer.
 */
#ifndef MLXN_TOKENIZER_H
#define MLXN_TOKENIZER_H

#include "core/core.h"

typedef enum mlxn_tok_kind {
    MLXN_TOK_BYTE_LEVEL = 0, /* GPT-2 bytes→unicode chars, regex pre-tokenizer */
    MLXN_TOK_SPM = 1,        /* "▁" for spaces, <0xNN> byte fallback */
    MLXN_TOK_KIND_COUNT
} mlxn_tok_kind;

/* GGUF token types (tokenizer.ggml.token_type). CONTROL and USER_DEFINED
 * tokens are matched verbatim in the text before BPE. */
typedef enum mlxn_tok_type {
    MLXN_TOKT_UNDEFINED = 0,
    MLXN_TOKT_NORMAL = 1,
    MLXN_TOKT_UNKNOWN = 2,
    MLXN_TOKT_CONTROL = 3,
    MLXN_TOKT_USER_DEFINED = 4,
    MLXN_TOKT_UNUSED = 5,
    MLXN_TOKT_BYTE = 6,
    MLXN_TOKT_COUNT
} mlxn_tok_type;

typedef struct mlxn_tokenizer mlxn_tokenizer;

/*
 * Build a BPE tokenizer.
 *  tokens[n_vocab]     token texts as stored in the vocab ("Ġthe", "▁the", "<0x0A>").
 *  scores              nullable; SPM only: with n_merges == 0, merges are
 *                      scored by the merged token's score (highest first,
 *                      leftmost on ties), as SentencePiece/llama.cpp do.
 *  token_types         nullable (all NORMAL); see mlxn_tok_type. CONTROL,
 *                      USER_DEFINED and UNKNOWN tokens are matched verbatim
 *                      in the text (longest first) and decoded verbatim.
 *  merges[n_merges]    "left right" (split at the first space after the first
 *                      byte), rank = index. Pairs whose join is not a token are
 *                      ignored.
 *  pretokenizer_name   nullable ("gpt2" when byte-level); "gpt2", "smollm",
 *                      "starcoder", "llama3" ("llama-bpe"), "qwen2", "default",
 *                      "gpt-2" (the tokenizer.ggml.pre names);
 *                      ignored for SPM. Unknown names fail MLXN_ERR_UNSUPPORTED.
 * BOS/EOS/UNK/PAD are -1 (none) until set with mlxn_tokenizer_set_special.
 * Fails MLXN_ERR_INVALID_ARG on NULL/out-of-range input, MLXN_ERR_FORMAT on a
 * malformed merge, MLXN_ERR_OUT_OF_MEMORY.
 */
mlxn_status mlxn_tokenizer_create_bpe(mlxn_tokenizer **out, mlxn_tok_kind kind,
                                      const char *const *tokens, size_t n_vocab,
                                      const float *scores /* nullable */,
                                      const int32_t *token_types /* nullable */,
                                      const char *const *merges, size_t n_merges,
                                      const char *pretokenizer_name /* nullable */);

/* The same with each merge given as its two halves (tokenizer.json [a, b]
 * pairs, tokens that contain spaces). */
mlxn_status mlxn_tokenizer_create_bpe_pairs(mlxn_tokenizer **out, mlxn_tok_kind kind,
                                            const char *const *tokens, size_t n_vocab,
                                            const float *scores /* nullable */,
                                            const int32_t *token_types /* nullable */,
                                            const char *const *merge_left,
                                            const char *const *merge_right, size_t n_merges,
                                            const char *pretokenizer_name /* nullable */);

/* Special ids (-1 = none) and whether encode(add_special=true) adds BOS/EOS. */
typedef struct mlxn_tok_special {
    int32_t bos, eos, unk, pad;
    bool add_bos, add_eos;
} mlxn_tok_special;
mlxn_status mlxn_tokenizer_set_special(mlxn_tokenizer *tok, const mlxn_tok_special *sp);
mlxn_tok_special mlxn_tokenizer_special(const mlxn_tokenizer *tok);

/* Where SPM puts the "▁" that stands for a leading space. */
typedef enum mlxn_tok_prefix {
    MLXN_TOK_PREFIX_NONE = 0,
    MLXN_TOK_PREFIX_FIRST = 1,  /* only before the text at offset 0 (Metaspace "first") */
    MLXN_TOK_PREFIX_ALWAYS = 2, /* before every non-empty run between special tokens
                                   (HF Prepend normalizer, Llama-2 legacy) */
    MLXN_TOK_PREFIX_COUNT
} mlxn_tok_prefix;

/* Behaviour switches. Defaults after create: byte-level all false except
 * ignore_merges for "llama3"; SPM space_prefix ALWAYS, byte_fallback and
 * fuse_unk true. */
typedef struct mlxn_tok_options {
    mlxn_tok_prefix space_prefix; /* SPM only */
    bool metaspace_split;         /* SPM: split words at "▁" before BPE */
    bool byte_fallback;           /* unknown chars → <0xNN> tokens */
    bool fuse_unk;                /* consecutive unknowns → one unk */
    bool ignore_merges;           /* a whole word that is a token wins (Llama-3) */
    bool prefix_unless_space;     /* SPM: no "▁" prefix when the run already starts
                                     with a space (HF Metaspace; Prepend has none) */
} mlxn_tok_options;
mlxn_status mlxn_tokenizer_set_options(mlxn_tokenizer *tok, const mlxn_tok_options *o);
mlxn_tok_options mlxn_tokenizer_options(const mlxn_tokenizer *tok);

/* Merges in rank order (for writers): returns the count; (a, b) ids of
 * merge i via mlxn_tokenizer_merge. Score-based SPM reports the merges it
 * derived from the scores. */
size_t mlxn_tokenizer_n_merges(const mlxn_tokenizer *tok);
bool mlxn_tokenizer_merge(const mlxn_tokenizer *tok, size_t i, int32_t *a, int32_t *b);
/* The pre-tokenizer patterns (byte-level), n via *n; owned by tok. */
const char *const *mlxn_tokenizer_pretok_patterns(const mlxn_tokenizer *tok, size_t *n);

/* Split text with the byte-level pre-tokenizer regexes (no special-token
 * matching; SPM: the whole text is one piece). *spans gets n (offset,
 * length) pairs as 2*n size_t, free with mlxn_free. For tests and tools. */
mlxn_status mlxn_tokenizer_pretokenize(const mlxn_tokenizer *tok, const char *text, size_t len,
                                       size_t **spans, size_t *n);

/* Replace the pre-tokenizer with explicit PCRE2 patterns applied in order
 * (each splits every piece into matches and the gaps between them, HF
 * "Isolated"). Byte-level only. Fails MLXN_ERR_FORMAT on a bad pattern. */
mlxn_status mlxn_tokenizer_set_pretokenizer(mlxn_tokenizer *tok, const char *const *patterns,
                                            size_t n);

/* Read a Hugging Face tokenizer.json: model.type BPE (vocab + merges as
 * "a b" strings or [a, b] pairs, byte_fallback, unk_token, ignore_merges),
 * added_tokens, normalizer (Prepend/Replace "▁"), pre_tokenizer (ByteLevel,
 * Split with Regex/String, Digits, Metaspace, Sequence), decoder, and a
 * TemplateProcessing post-processor for BOS/EOS. Every malformed or missing
 * piece fails MLXN_ERR_FORMAT (MLXN_ERR_IO if unreadable,
 * MLXN_ERR_UNSUPPORTED for valid but unhandled models, e.g. WordPiece). */
mlxn_status mlxn_tokenizer_load_json(mlxn_tokenizer **out, const char *path);
mlxn_status mlxn_tokenizer_load_json_mem(mlxn_tokenizer **out, const char *data, size_t len);

/* Write a tokenizer.json that HF `tokenizers` (and so mlx-lm) loads and
 * that encodes like this tokenizer. */
mlxn_status mlxn_tokenizer_write_json(const mlxn_tokenizer *tok, const char *path);

/* Encode len bytes of text (any bytes; invalid UTF-8 goes through byte
 * tokens). *ids is allocated with mlxn_malloc (free with mlxn_free); an empty
 * result gives *ids == NULL, *n == 0. add_special: add BOS/EOS as configured.
 * Special/added tokens in the text are always matched verbatim. */
mlxn_status mlxn_tokenizer_encode(const mlxn_tokenizer *tok, const char *text, size_t len,
                                  bool add_special, int32_t **ids, size_t *n);

/* Bytes of one token (byte-level chars mapped back to bytes, "▁" → " ",
 * <0xNN> → the byte, special tokens verbatim). Writes min(cap, size) bytes,
 * no terminator, and returns the full size (like snprintf, without the NUL);
 * returns -1 for an id out of range. May end inside a UTF-8 sequence: use
 * mlxn_tokdec for streaming text. */
int mlxn_tokenizer_decode_token(const mlxn_tokenizer *tok, int32_t id, char *buf, size_t cap);

/* Decode a whole sequence into a NUL-terminated string (*out, mlxn_free).
 * skip_special drops CONTROL tokens; SPM strips the one leading space that
 * the "▁" prefix added. */
mlxn_status mlxn_tokenizer_decode(const mlxn_tokenizer *tok, const int32_t *ids, size_t n,
                                  bool skip_special, char **out, size_t *out_len);

size_t mlxn_tokenizer_n_vocab(const mlxn_tokenizer *tok);
mlxn_tok_kind mlxn_tokenizer_kind(const mlxn_tokenizer *tok);
/* Token text as stored in the vocab (NULL if out of range). */
const char *mlxn_tokenizer_token_text(const mlxn_tokenizer *tok, int32_t id);
/* Id of an exact vocab string, -1 if absent. */
int32_t mlxn_tokenizer_find(const mlxn_tokenizer *tok, const char *text);
bool mlxn_tokenizer_is_control(const mlxn_tokenizer *tok, int32_t id);
/* mlxn_tok_type of id, -1 if out of range. */
int32_t mlxn_tokenizer_type(const mlxn_tokenizer *tok, int32_t id);
void mlxn_tokenizer_destroy(mlxn_tokenizer *tok);

/*
 * Streaming decoder: holds back an incomplete UTF-8 sequence at the end of
 * the bytes so far, so each push emits only whole characters. A byte that can
 * never start or continue a valid sequence is emitted as is. Zero-initialise
 * (or mlxn_tokdec_reset) before use. For SPM, strip_leading_space drops the
 * first space of the stream (the "▁" prefix).
 */
typedef struct mlxn_tokdec {
    unsigned char pend[4];
    size_t n_pend;
    bool started;
    bool strip_leading_space;
} mlxn_tokdec;
void mlxn_tokdec_reset(mlxn_tokdec *d, const mlxn_tokenizer *tok /* nullable */);
/* Append the text of token id. Writes up to cap bytes of complete UTF-8 to
 * out, *n_out = bytes written. Fails MLXN_ERR_RANGE for a bad id or if out
 * is too small (cap >= 4 + longest token is always enough). */
mlxn_status mlxn_tokdec_push(mlxn_tokdec *d, const mlxn_tokenizer *tok, int32_t id, char *out,
                             size_t cap, size_t *n_out);
/* Emit whatever is still held back (an incomplete sequence at end of stream). */
size_t mlxn_tokdec_flush(mlxn_tokdec *d, char *out, size_t cap);

/* ---- chat templates (chat.c) ---- */
typedef struct mlxn_chat_msg {
    const char *role; /* "system", "user", "assistant" */
    const char *content;
} mlxn_chat_msg;

typedef enum mlxn_chat_style {
    MLXN_CHAT_CHATML = 0, /* SmolLM2, Qwen2/2.5/3: <|im_start|>role\n...<|im_end|>\n */
    MLXN_CHAT_LLAMA3 = 1, /* <|start_header_id|>role<|end_header_id|>\n\n...<|eot_id|> */
    MLXN_CHAT_LLAMA2 = 2, /* <s>[INST] <<SYS>>\n..\n<</SYS>>\n\n.. [/INST] */
    MLXN_CHAT_MISTRAL = 3, /* <s>[INST] .. [/INST]..</s> */
    MLXN_CHAT_STYLE_COUNT
} mlxn_chat_style;

/* The style for a model: from markers in its chat_template (nullable), else
 * from the architecture name (nullable; "llama" alone means Llama-3 style
 * only when the template says nothing, qwen* → ChatML). Fails
 * MLXN_ERR_UNSUPPORTED when neither tells. */
mlxn_status mlxn_chat_detect(const char *template_or_null, const char *arch,
                             mlxn_chat_style *style);

/* Format msgs as the model's template would (HF apply_chat_template with
 * tokenize=False): includes the template's default system prompt when the
 * template has one and msgs[0] is not a system message (SmolLM2: "You are a
 * helpful AI assistant named SmolLM, trained by Hugging Face"; Qwen2.5),
 * the Llama-3.1 date header, and BOS text where the template writes it
 * (Llama-2/3, Mistral) — so encode the result with add_special = false.
 * *out is NUL-terminated, free with mlxn_free. */
mlxn_status mlxn_chat_format(const char *template_or_null, const char *arch,
                             const mlxn_chat_msg *msgs, size_t n, bool add_generation_prompt,
                             char **out);

#endif
