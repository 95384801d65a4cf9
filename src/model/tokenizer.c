/*
 * tokenizer.c — the BPE core shared by byte-level (GPT-2 family) and
 * SentencePiece-style tokenizers: vocab and merge hash tables, verbatim
 * special-token matching, the PCRE2 pre-tokenizer, BPE with a binary heap
 * (O(n log n) per word), and decoding. tokenizer.json I/O is in tok_json.c.
 *
 * A word is turned into initial symbol ids (one per byte for byte-level, one
 * per UTF-8 char or byte-fallback byte for SPM) and merged by rank: lowest
 * rank first, leftmost on ties — the order HF `tokenizers` uses. Merges are
 * keyed by the pair of ids, so no strings are built while merging.
 */
#define PCRE2_CODE_UNIT_WIDTH 8
#include "model/tokenizer.h"

#include <pcre2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_PRETOK 8

/* open addressing: string → id */
typedef struct strmap {
    int32_t *slot; /* id or -1 */
    size_t mask;
} strmap;

/* open addressing: (left id, right id) → merge */
typedef struct pairent {
    uint64_t key; /* (a << 32 | b) + 1; 0 = empty */
    uint32_t rank;
    int32_t id;
} pairent;

struct mlxn_tokenizer {
    mlxn_tok_kind kind;
    size_t n_vocab;
    char **text;     /* [n_vocab] */
    uint32_t *tlen;  /* [n_vocab] */
    float *scores;   /* [n_vocab] or NULL */
    int32_t *types;  /* [n_vocab] */
    strmap vocab;

    pairent *pairs;
    size_t pair_mask;
    int32_t *merge_a, *merge_b; /* [n_merges], rank order */
    size_t n_merges;

    int32_t byte_tok[256];       /* byte-level: id of the char for byte b; SPM: <0xNN> */
    int16_t cp_to_byte[324];     /* byte-level decode: code point → byte, -1 none */
    int32_t *spec;               /* special ids sorted by (first byte, length desc) */
    size_t n_spec;
    uint32_t spec_start[257];    /* spec index range per first byte */

    char *pat[MAX_PRETOK];
    pcre2_code *re[MAX_PRETOK];
    size_t n_re;

    mlxn_tok_special sp;
    mlxn_tok_options opt;
};

/* ---------------- small helpers ---------------- */

static uint64_t fnv1a(const char *s, size_t n) {
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++) {
        h ^= (unsigned char)s[i];
        h *= 1099511628211ull;
    }
    return h;
}

static uint64_t mix64(uint64_t x) {
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ull;
    x ^= x >> 33;
    return x;
}

static size_t pow2_at_least(size_t n) {
    size_t p = 16;
    while (p < n) p <<= 1;
    return p;
}

static int32_t vocab_find_n(const mlxn_tokenizer *t, const char *s, size_t n) {
    if (!t->vocab.slot) return -1;
    size_t i = (size_t)fnv1a(s, n) & t->vocab.mask;
    for (;;) {
        int32_t id = t->vocab.slot[i];
        if (id < 0) return -1;
        if (t->tlen[id] == n && memcmp(t->text[id], s, n) == 0) return id;
        i = (i + 1) & t->vocab.mask;
    }
}

static const pairent *pair_find(const mlxn_tokenizer *t, int32_t a, int32_t b) {
    if (!t->pairs) return NULL;
    uint64_t key = (((uint64_t)(uint32_t)a << 32) | (uint32_t)b) + 1;
    size_t i = (size_t)mix64(key) & t->pair_mask;
    for (;;) {
        const pairent *e = &t->pairs[i];
        if (e->key == 0) return NULL;
        if (e->key == key) return e;
        i = (i + 1) & t->pair_mask;
    }
}

/* Insert unless present (first insertion = lowest rank wins). */
static void pair_insert(mlxn_tokenizer *t, int32_t a, int32_t b, uint32_t rank, int32_t id) {
    uint64_t key = (((uint64_t)(uint32_t)a << 32) | (uint32_t)b) + 1;
    size_t i = (size_t)mix64(key) & t->pair_mask;
    while (t->pairs[i].key != 0) {
        if (t->pairs[i].key == key) return;
        i = (i + 1) & t->pair_mask;
    }
    t->pairs[i] = (pairent){key, rank, id};
}

/* Length of the UTF-8 sequence at s (1 for an invalid or truncated one, so
 * every byte is covered exactly once). */
static size_t utf8_len(const unsigned char *s, size_t n) {
    unsigned c = s[0];
    size_t L = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
    if (L == 0 || L > n) return 1;
    if (c == 0xC0 || c == 0xC1 || c > 0xF4) return 1;
    for (size_t i = 1; i < L; i++)
        if ((s[i] & 0xC0) != 0x80) return 1;
    return L;
}

static size_t utf8_put(uint32_t cp, char *o) {
    if (cp < 0x80) { o[0] = (char)cp; return 1; }
    if (cp < 0x800) { o[0] = (char)(0xC0 | (cp >> 6)); o[1] = (char)(0x80 | (cp & 63)); return 2; }
    if (cp < 0x10000) {
        o[0] = (char)(0xE0 | (cp >> 12));
        o[1] = (char)(0x80 | ((cp >> 6) & 63));
        o[2] = (char)(0x80 | (cp & 63));
        return 3;
    }
    o[0] = (char)(0xF0 | (cp >> 18));
    o[1] = (char)(0x80 | ((cp >> 12) & 63));
    o[2] = (char)(0x80 | ((cp >> 6) & 63));
    o[3] = (char)(0x80 | (cp & 63));
    return 4;
}

/* GPT-2 bytes_to_unicode: printable Latin-1 bytes map to themselves, the
 * other 68 bytes to U+0100.. in byte order. */
static uint32_t byte_to_cp(unsigned b) {
    if ((b >= 33 && b <= 126) || (b >= 161 && b <= 172) || b >= 174) return b;
    uint32_t k = 0;
    for (unsigned x = 0; x < b; x++)
        if (!((x >= 33 && x <= 126) || (x >= 161 && x <= 172) || x >= 174)) k++;
    return 256 + k;
}

/* Growable int32 vector. */
typedef struct ivec {
    int32_t *v;
    size_t n, cap;
} ivec;

static mlxn_status ivec_push(ivec *a, int32_t x) {
    if (a->n == a->cap) {
        size_t nc = a->cap ? a->cap * 2 : 64, bytes;
        if (!mlxn_mul_ok(nc, sizeof(int32_t), &bytes)) return mlxn_err(MLXN_ERR_OUT_OF_MEMORY, "tokenizer: output too long");
        int32_t *p = mlxn_realloc(a->v, bytes);
        if (!p) return mlxn_err(MLXN_ERR_OUT_OF_MEMORY, "tokenizer: out of memory growing ids to %zu", nc);
        a->v = p;
        a->cap = nc;
    }
    a->v[a->n++] = x;
    return MLXN_OK;
}

/* ---------------- pre-tokenizer ---------------- */

static const char RE_GPT2[] =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";
static const char RE_LLAMA3[] =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}"
    "| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
static const char RE_QWEN2[] =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}"
    "| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
static const char RE_DIGIT[] = "\\p{N}";

static void free_pretok(mlxn_tokenizer *t) {
    for (size_t i = 0; i < t->n_re; i++) {
        pcre2_code_free(t->re[i]);
        mlxn_free(t->pat[i]);
    }
    t->n_re = 0;
}

mlxn_status mlxn_tokenizer_set_pretokenizer(mlxn_tokenizer *tok, const char *const *patterns,
                                            size_t n) {
    if (!tok || (n && !patterns)) return mlxn_err(MLXN_ERR_INVALID_ARG, "tokenizer: NULL argument");
    if (n > MAX_PRETOK)
        return mlxn_err(MLXN_ERR_UNSUPPORTED, "tokenizer: %zu pre-tokenizer patterns (max %d)", n, MAX_PRETOK);
    pcre2_code *re[MAX_PRETOK] = {0};
    char *pat[MAX_PRETOK] = {0};
    mlxn_status st = MLXN_OK;
    for (size_t i = 0; i < n && st == MLXN_OK; i++) {
        if (!patterns[i]) { st = mlxn_err(MLXN_ERR_INVALID_ARG, "tokenizer: pattern %zu is NULL", i); break; }
        int ec;
        PCRE2_SIZE eo;
        re[i] = pcre2_compile((PCRE2_SPTR)patterns[i], PCRE2_ZERO_TERMINATED,
                              PCRE2_UTF | PCRE2_UCP | PCRE2_MATCH_INVALID_UTF, &ec, &eo, NULL);
        if (!re[i]) {
            PCRE2_UCHAR msg[160];
            pcre2_get_error_message(ec, msg, sizeof msg);
            st = mlxn_err(MLXN_ERR_FORMAT, "tokenizer: pre-tokenizer regex %zu at offset %zu: %s", i,
                          (size_t)eo, (const char *)msg);
            break;
        }
        (void)pcre2_jit_compile(re[i], PCRE2_JIT_COMPLETE); /* optional speed-up */
        pat[i] = mlxn_strdup(patterns[i]);
        if (!pat[i]) st = mlxn_err(MLXN_ERR_OUT_OF_MEMORY, "tokenizer: out of memory");
    }
    if (st != MLXN_OK) {
        for (size_t i = 0; i < n; i++) {
            if (re[i]) pcre2_code_free(re[i]);
            mlxn_free(pat[i]);
        }
        return st;
    }
    free_pretok(tok);
    for (size_t i = 0; i < n; i++) {
        tok->re[i] = re[i];
        tok->pat[i] = pat[i];
    }
    tok->n_re = n;
    return MLXN_OK;
}

const char *const *mlxn_tokenizer_pretok_patterns(const mlxn_tokenizer *tok, size_t *n) {
    *n = tok ? tok->n_re : 0;
    return tok ? (const char *const *)tok->pat : NULL;
}

typedef struct span {
    size_t off, len;
} span;

typedef struct spanvec {
    span *v;
    size_t n, cap;
} spanvec;

static mlxn_status spans_push(spanvec *a, size_t off, size_t len) {
    if (len == 0) return MLXN_OK;
    if (a->n == a->cap) {
        size_t nc = a->cap ? a->cap * 2 : 32;
        span *p = mlxn_realloc(a->v, nc * sizeof(span));
        if (!p) return mlxn_err(MLXN_ERR_OUT_OF_MEMORY, "tokenizer: out of memory splitting text");
        a->v = p;
        a->cap = nc;
    }
    a->v[a->n++] = (span){off, len};
    return MLXN_OK;
}

/* Split s[0..len) by every regex in turn; each piece is matched on its own,
 * so lookarounds never see past it (HF Split, behaviour Isolated). */
static mlxn_status pretokenize(const mlxn_tokenizer *t, const char *s, size_t len, spanvec *out) {
    spanvec cur = {0}, nxt = {0};
    mlxn_status st = spans_push(&cur, 0, len);
    for (size_t r = 0; r < t->n_re && st == MLXN_OK; r++) {
        pcre2_match_data *md = pcre2_match_data_create_from_pattern(t->re[r], NULL);
        if (!md) { st = mlxn_err(MLXN_ERR_OUT_OF_MEMORY, "tokenizer: out of memory (pcre2)"); break; }
        nxt.n = 0;
        for (size_t k = 0; k < cur.n && st == MLXN_OK; k++) {
            const char *p = s + cur.v[k].off;
            size_t n = cur.v[k].len, pos = 0, last = 0;
            while (pos < n && st == MLXN_OK) {
                int rc = pcre2_match(t->re[r], (PCRE2_SPTR)p, n, pos, 0, md, NULL);
                if (rc == PCRE2_ERROR_NOMATCH) break;
                if (rc < 0) {
                    st = mlxn_err(MLXN_ERR_STATE, "tokenizer: pcre2_match failed (%d)", rc);
                    break;
                }
                PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
                size_t a = ov[0], b = ov[1];
                if (b <= a) { /* empty match: step one char */
                    pos = a + utf8_len((const unsigned char *)p + a, n - a);
                    continue;
                }
                st = spans_push(&nxt, cur.v[k].off + last, a - last);
                if (st == MLXN_OK) st = spans_push(&nxt, cur.v[k].off + a, b - a);
                last = pos = b;
            }
            if (st == MLXN_OK) st = spans_push(&nxt, cur.v[k].off + last, n - last);
        }
        pcre2_match_data_free(md);
        spanvec tmp = cur;
        cur = nxt;
        nxt = tmp;
    }
    mlxn_free(nxt.v);
    if (st != MLXN_OK) {
        mlxn_free(cur.v);
        return st;
    }
    *out = cur;
    return MLXN_OK;
}

/* ---------------- BPE ---------------- */

typedef struct sym {
    int32_t id, prev, next;
} sym;

typedef struct cand {
    uint32_t rank, pos;
    int32_t a, b, id;
} cand;

static bool cand_less(const cand *x, const cand *y) {
    return x->rank < y->rank || (x->rank == y->rank && x->pos < y->pos);
}

typedef struct work {
    sym *sy;
    size_t sy_cap;
    cand *heap;
    size_t nh, heap_cap;
} work;

static void heap_push(work *w, cand c) {
    size_t i = w->nh++;
    w->heap[i] = c;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (!cand_less(&w->heap[i], &w->heap[p])) break;
        cand tmp = w->heap[i];
        w->heap[i] = w->heap[p];
        w->heap[p] = tmp;
        i = p;
    }
}

static cand heap_pop(work *w) {
    cand top = w->heap[0];
    w->heap[0] = w->heap[--w->nh];
    size_t i = 0;
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        if (l < w->nh && cand_less(&w->heap[l], &w->heap[m])) m = l;
        if (r < w->nh && cand_less(&w->heap[r], &w->heap[m])) m = r;
        if (m == i) break;
        cand tmp = w->heap[i];
        w->heap[i] = w->heap[m];
        w->heap[m] = tmp;
        i = m;
    }
    return top;
}

static mlxn_status work_reserve(work *w, size_t n) {
    if (n <= w->sy_cap) return MLXN_OK;
    size_t cap = pow2_at_least(n), b1, b2;
    /* each merge adds at most 2 candidates: the heap never exceeds 3n */
    if (!mlxn_mul_ok(cap, sizeof(sym), &b1) || !mlxn_mul_ok(cap, 3 * sizeof(cand), &b2))
        return mlxn_err(MLXN_ERR_OUT_OF_MEMORY, "tokenizer: word of %zu symbols too long", n);
    sym *s = mlxn_realloc(w->sy, b1);
    if (!s) return mlxn_err(MLXN_ERR_OUT_OF_MEMORY, "tokenizer: out of memory (%zu symbols)", n);
    w->sy = s;
    cand *h = mlxn_realloc(w->heap, b2);
    if (!h) return mlxn_err(MLXN_ERR_OUT_OF_MEMORY, "tokenizer: out of memory (%zu symbols)", n);
    w->heap = h;
    w->sy_cap = cap;
    w->heap_cap = 3 * cap;
    return MLXN_OK;
}

static void try_pair(const mlxn_tokenizer *t, work *w, int32_t i) {
    int32_t j = w->sy[i].next;
    if (j < 0) return;
    const pairent *e = pair_find(t, w->sy[i].id, w->sy[j].id);
    if (e) heap_push(w, (cand){e->rank, (uint32_t)i, w->sy[i].id, w->sy[j].id, e->id});
}

/* Merge w->sy[0..n) (linked in order) and append the resulting ids. */
static mlxn_status bpe_merge(const mlxn_tokenizer *t, work *w, size_t n, ivec *out) {
    if (n == 0) return MLXN_OK;
    for (size_t i = 0; i < n; i++) {
        w->sy[i].prev = (int32_t)i - 1;
        w->sy[i].next = i + 1 < n ? (int32_t)i + 1 : -1;
    }
    w->nh = 0;
    for (size_t i = 0; i + 1 < n; i++) try_pair(t, w, (int32_t)i);
    while (w->nh) {
        cand c = heap_pop(w);
        sym *L = &w->sy[c.pos];
        if (L->id != c.a || L->next < 0) continue; /* stale */
        sym *R = &w->sy[L->next];
        if (R->id != c.b) continue;
        L->id = c.id;
        R->id = -1;
        L->next = R->next;
        if (R->next >= 0) w->sy[R->next].prev = (int32_t)c.pos;
        if (L->prev >= 0) try_pair(t, w, L->prev);
        try_pair(t, w, (int32_t)c.pos);
    }
    mlxn_status st = MLXN_OK;
    for (int32_t i = 0; i >= 0 && st == MLXN_OK; i = w->sy[i].next) st = ivec_push(out, w->sy[i].id);
    return st;
}

/* Byte-level word: bytes → their char tokens → merges. */
static mlxn_status encode_word_bytes(const mlxn_tokenizer *t, work *w, const char *s, size_t n,
                                     ivec *out) {
    if (t->opt.ignore_merges) {
        /* the word spelled in byte chars; at most 2 bytes per char */
        char stackbuf[256] = {0};
        char *buf = n * 2 <= sizeof stackbuf ? stackbuf : mlxn_malloc(n * 2);
        if (!buf) return mlxn_err(MLXN_ERR_OUT_OF_MEMORY, "tokenizer: out of memory");
        size_t m = 0;
        for (size_t i = 0; i < n; i++) m += utf8_put(byte_to_cp((unsigned char)s[i]), buf + m);
        int32_t id = vocab_find_n(t, buf, m);
        if (buf != stackbuf) mlxn_free(buf);
        if (id >= 0) return ivec_push(out, id);
    }
    mlxn_status st = work_reserve(w, n);
    if (st != MLXN_OK) return st;
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        int32_t id = t->byte_tok[(unsigned char)s[i]];
        if (id < 0) id = t->sp.unk;
        if (id < 0) continue; /* HF drops a char with no token and no unk */
        if (id == t->sp.unk && t->opt.fuse_unk && k && w->sy[k - 1].id == id) continue;
        w->sy[k++].id = id;
    }
    return bpe_merge(t, w, k, out);
}

/* SPM word (already "▁"-normalised): chars → tokens (byte fallback) → merges. */
static mlxn_status encode_word_spm(const mlxn_tokenizer *t, work *w, const char *s, size_t n,
                                   ivec *out) {
    if (t->opt.ignore_merges) {
        int32_t id = vocab_find_n(t, s, n);
        if (id >= 0) return ivec_push(out, id);
    }
    mlxn_status st = work_reserve(w, n);
    if (st != MLXN_OK) return st;
    size_t k = 0;
    for (size_t i = 0; i < n;) {
        size_t L = utf8_len((const unsigned char *)s + i, n - i);
        int32_t id = vocab_find_n(t, s + i, L);
        if (id >= 0) {
            w->sy[k++].id = id;
        } else {
            bool all = t->opt.byte_fallback;
            for (size_t j = 0; j < L && all; j++) all = t->byte_tok[(unsigned char)s[i + j]] >= 0;
            if (all) {
                for (size_t j = 0; j < L; j++) w->sy[k++].id = t->byte_tok[(unsigned char)s[i + j]];
            } else if (t->sp.unk >= 0) {
                if (!(t->opt.fuse_unk && k && w->sy[k - 1].id == t->sp.unk)) w->sy[k++].id = t->sp.unk;
            }
        }
        i += L;
    }
    return bpe_merge(t, w, k, out);
}

static const char SPACE_MARK[] = "\xE2\x96\x81"; /* U+2581 ▁ */

/* A run of text between special tokens. */
static mlxn_status encode_segment(const mlxn_tokenizer *t, work *w, const char *s, size_t n,
                                  bool at_start, ivec *out) {
    if (n == 0) return MLXN_OK;
    if (t->kind == MLXN_TOK_BYTE_LEVEL) {
        spanvec sv = {0};
        mlxn_status st = pretokenize(t, s, n, &sv);
        for (size_t i = 0; i < sv.n && st == MLXN_OK; i++)
            st = encode_word_bytes(t, w, s + sv.v[i].off, sv.v[i].len, out);
        mlxn_free(sv.v);
        return st;
    }
    /* SPM: normalise spaces to ▁ and maybe prefix one */
    bool prefix = t->opt.space_prefix == MLXN_TOK_PREFIX_ALWAYS ||
                  (t->opt.space_prefix == MLXN_TOK_PREFIX_FIRST && at_start);
    if (prefix && t->opt.prefix_unless_space && s[0] == ' ') prefix = false;
    size_t spaces = 0, cap;
    for (size_t i = 0; i < n; i++) spaces += s[i] == ' ';
    if (!mlxn_mul_ok(spaces + 1, 3, &cap) || !mlxn_add_ok(cap, n, &cap))
        return mlxn_err(MLXN_ERR_OUT_OF_MEMORY, "tokenizer: text too long");
    char *buf = mlxn_malloc(cap);
    if (!buf) return mlxn_err(MLXN_ERR_OUT_OF_MEMORY, "tokenizer: out of memory (%zu bytes)", cap);
    size_t m = 0;
    if (prefix) { memcpy(buf, SPACE_MARK, 3); m = 3; }
    for (size_t i = 0; i < n; i++) {
        if (s[i] == ' ') { memcpy(buf + m, SPACE_MARK, 3); m += 3; }
        else buf[m++] = s[i];
    }
    mlxn_status st = MLXN_OK;
    if (!t->opt.metaspace_split) {
        st = encode_word_spm(t, w, buf, m, out);
    } else { /* words start at each ▁ (HF Metaspace split, MergedWithNext) */
        size_t start = 0;
        for (size_t i = 3; i + 3 <= m && st == MLXN_OK; i++) {
            if (memcmp(buf + i, SPACE_MARK, 3) == 0) {
                st = encode_word_spm(t, w, buf + start, i - start, out);
                start = i;
                i += 2;
            }
        }
        if (st == MLXN_OK && m > start) st = encode_word_spm(t, w, buf + start, m - start, out);
    }
    mlxn_free(buf);
    return st;
}

/* Longest special token at s[0..n), or -1. */
static int32_t match_special(const mlxn_tokenizer *t, const char *s, size_t n) {
    unsigned c = (unsigned char)s[0];
    for (uint32_t i = t->spec_start[c]; i < t->spec_start[c + 1]; i++) {
        int32_t id = t->spec[i];
        if (t->tlen[id] <= n && memcmp(t->text[id], s, t->tlen[id]) == 0) return id;
    }
    return -1;
}

mlxn_status mlxn_tokenizer_encode(const mlxn_tokenizer *tok, const char *text, size_t len,
                                  bool add_special, int32_t **ids, size_t *n) {
    if (!tok || !ids || !n || (len && !text))
        return mlxn_err(MLXN_ERR_INVALID_ARG, "tokenizer_encode: NULL argument");
    *ids = NULL;
    *n = 0;
    ivec out = {0};
    work w = {0};
    mlxn_status st = MLXN_OK;
    if (add_special && tok->sp.add_bos && tok->sp.bos >= 0) st = ivec_push(&out, tok->sp.bos);
    size_t seg = 0;
    for (size_t i = 0; i < len && st == MLXN_OK;) {
        int32_t id = tok->n_spec ? match_special(tok, text + i, len - i) : -1;
        if (id < 0) {
            i++;
            continue;
        }
        st = encode_segment(tok, &w, text + seg, i - seg, seg == 0, &out);
        if (st == MLXN_OK) st = ivec_push(&out, id);
        i += tok->tlen[id];
        seg = i;
    }
    if (st == MLXN_OK) st = encode_segment(tok, &w, text + seg, len - seg, seg == 0, &out);
    if (st == MLXN_OK && add_special && tok->sp.add_eos && tok->sp.eos >= 0) st = ivec_push(&out, tok->sp.eos);
    mlxn_free(w.sy);
    mlxn_free(w.heap);
    if (st != MLXN_OK) {
        mlxn_free(out.v);
        return st;
    }
    *ids = out.v;
    *n = out.n;
    return MLXN_OK;
}

mlxn_status mlxn_tokenizer_pretokenize(const mlxn_tokenizer *tok, const char *text, size_t len,
                                       size_t **spans, size_t *n) {
    if (!tok || !spans || !n || (len && !text))
        return mlxn_err(MLXN_ERR_INVALID_ARG, "tokenizer_pretokenize: NULL argument");
    *spans = NULL;
    *n = 0;
    spanvec sv = {0};
    mlxn_status st = pretokenize(tok, text, len, &sv);
    if (st != MLXN_OK) return st;
    if (sv.n) {
        size_t *o = mlxn_malloc(sv.n * 2 * sizeof(size_t));
        if (!o) {
            mlxn_free(sv.v);
            return mlxn_err(MLXN_ERR_OUT_OF_MEMORY, "tokenizer: out of memory");
        }
        for (size_t i = 0; i < sv.n; i++) {
            o[2 * i] = sv.v[i].off;
            o[2 * i + 1] = sv.v[i].len;
        }
        *spans = o;
        *n = sv.n;
    }
    mlxn_free(sv.v);
    return MLXN_OK;
}

/* ---------------- decoding ---------------- */

static int hexval(char c) {
    return c >= '0' && c <= '9' ? c - '0' : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                          : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* <0xNN> → NN, else -1 */
static int byte_token_value(const char *s, size_t n) {
    if (n != 6 || memcmp(s, "<0x", 3) != 0 || s[5] != '>') return -1;
    int h = hexval(s[3]), l = hexval(s[4]);
    return h < 0 || l < 0 ? -1 : h * 16 + l;
}

static bool is_verbatim(const mlxn_tokenizer *t, int32_t id) {
    return t->types[id] == MLXN_TOKT_CONTROL || t->types[id] == MLXN_TOKT_USER_DEFINED ||
           t->types[id] == MLXN_TOKT_UNKNOWN;
}

int mlxn_tokenizer_decode_token(const mlxn_tokenizer *tok, int32_t id, char *buf, size_t cap) {
    if (!tok || id < 0 || (size_t)id >= tok->n_vocab) return -1;
    const char *s = tok->text[id];
    size_t n = tok->tlen[id], m = 0;
#define PUTB(c)                                   \
    do {                                          \
        if (m < cap) buf[m] = (char)(c);          \
        m++;                                      \
    } while (0)
    if (is_verbatim(tok, id)) {
        for (size_t i = 0; i < n; i++) PUTB(s[i]);
        return (int)m;
    }
    if (tok->kind == MLXN_TOK_BYTE_LEVEL) {
        for (size_t i = 0; i < n;) {
            const unsigned char *u = (const unsigned char *)s + i;
            size_t L = utf8_len(u, n - i);
            uint32_t cp = L == 1 ? u[0] : L == 2 ? ((u[0] & 31u) << 6) | (u[1] & 63u) : 0x110000;
            int b = cp < 324 ? tok->cp_to_byte[cp] : -1;
            if (b >= 0) PUTB(b);
            else for (size_t j = 0; j < L; j++) PUTB(u[j]);
            i += L;
        }
        return (int)m;
    }
    int bv = byte_token_value(s, n);
    if (bv >= 0) {
        PUTB(bv);
        return (int)m;
    }
    for (size_t i = 0; i < n;) {
        if (i + 3 <= n && memcmp(s + i, SPACE_MARK, 3) == 0) {
            PUTB(' ');
            i += 3;
        } else {
            PUTB(s[i]);
            i++;
        }
    }
#undef PUTB
    return (int)m;
}

mlxn_status mlxn_tokenizer_decode(const mlxn_tokenizer *tok, const int32_t *ids, size_t n,
                                  bool skip_special, char **out, size_t *out_len) {
    if (!tok || !out || (n && !ids)) return mlxn_err(MLXN_ERR_INVALID_ARG, "tokenizer_decode: NULL argument");
    *out = NULL;
    size_t total = 1;
    for (size_t i = 0; i < n; i++) {
        if (ids[i] < 0 || (size_t)ids[i] >= tok->n_vocab)
            return mlxn_err(MLXN_ERR_RANGE, "tokenizer_decode: id %d at %zu outside vocab of %zu",
                            ids[i], i, tok->n_vocab);
        total += tok->tlen[ids[i]]; /* decoded bytes never exceed the token text */
    }
    char *s = mlxn_malloc(total);
    if (!s) return mlxn_err(MLXN_ERR_OUT_OF_MEMORY, "tokenizer_decode: out of memory (%zu bytes)", total);
    size_t m = 0;
    for (size_t i = 0; i < n; i++) {
        if (skip_special && tok->types[ids[i]] == MLXN_TOKT_CONTROL) continue;
        m += (size_t)mlxn_tokenizer_decode_token(tok, ids[i], s + m, total - m);
    }
    if (tok->kind == MLXN_TOK_SPM && tok->opt.space_prefix != MLXN_TOK_PREFIX_NONE && m && s[0] == ' ') {
        memmove(s, s + 1, m - 1);
        m--;
    }
    s[m] = 0;
    *out = s;
    if (out_len) *out_len = m;
    return MLXN_OK;
}

/* ---------------- streaming decoder ---------------- */

void mlxn_tokdec_reset(mlxn_tokdec *d, const mlxn_tokenizer *tok) {
    memset(d, 0, sizeof *d);
    d->strip_leading_space = tok && tok->kind == MLXN_TOK_SPM && tok->opt.space_prefix != MLXN_TOK_PREFIX_NONE;
}

/* Expected length of a sequence led by c (0 = not a valid lead byte). */
static size_t lead_len(unsigned c) {
    if (c < 0x80) return 1;
    if (c >= 0xC2 && c <= 0xDF) return 2;
    if (c >= 0xE0 && c <= 0xEF) return 3;
    if (c >= 0xF0 && c <= 0xF4) return 4;
    return 0;
}

/* How many trailing bytes of b[0..n) form the start of an incomplete sequence. */
static size_t incomplete_tail(const unsigned char *b, size_t n) {
    for (size_t k = 1; k <= 3 && k <= n; k++) {
        unsigned c = b[n - k];
        if ((c & 0xC0) == 0x80) continue; /* continuation: look further back */
        size_t L = lead_len(c);
        return L > k ? k : 0;
    }
    return 0;
}

mlxn_status mlxn_tokdec_push(mlxn_tokdec *d, const mlxn_tokenizer *tok, int32_t id, char *out,
                             size_t cap, size_t *n_out) {
    *n_out = 0;
    int len = mlxn_tokenizer_decode_token(tok, id, NULL, 0);
    if (len < 0) return mlxn_err(MLXN_ERR_RANGE, "tokdec: token id %d outside the vocab", id);
    if ((size_t)len + d->n_pend > cap)
        return mlxn_err(MLXN_ERR_RANGE, "tokdec: token %d needs %zu bytes, buffer has %zu", id,
                        (size_t)len + d->n_pend, cap);
    memcpy(out, d->pend, d->n_pend);
    size_t m = d->n_pend;
    m += (size_t)mlxn_tokenizer_decode_token(tok, id, out + m, cap - m);
    d->n_pend = 0;
    if (!d->started && m > 0) { /* first decoded byte of the stream */
        d->started = true;
        if (d->strip_leading_space && out[0] == ' ') memmove(out, out + 1, --m);
    }
    size_t hold = incomplete_tail((const unsigned char *)out, m);
    memcpy(d->pend, out + m - hold, hold);
    d->n_pend = hold;
    *n_out = m - hold;
    return MLXN_OK;
}

size_t mlxn_tokdec_flush(mlxn_tokdec *d, char *out, size_t cap) {
    size_t m = d->n_pend < cap ? d->n_pend : cap;
    memcpy(out, d->pend, m);
    d->n_pend = 0;
    return m;
}

/* ---------------- construction ---------------- */

static mlxn_status build_vocab_map(mlxn_tokenizer *t) {
    size_t cap = pow2_at_least(t->n_vocab * 2 + 1);
    t->vocab.slot = mlxn_malloc(cap * sizeof(int32_t));
    if (!t->vocab.slot) return mlxn_err(MLXN_ERR_OUT_OF_MEMORY, "tokenizer: out of memory (vocab map)");
    memset(t->vocab.slot, 0xff, cap * sizeof(int32_t));
    t->vocab.mask = cap - 1;
    for (size_t id = 0; id < t->n_vocab; id++) {
        size_t i = (size_t)fnv1a(t->text[id], t->tlen[id]) & t->vocab.mask;
        bool dup = false;
        while (t->vocab.slot[i] >= 0) {
            int32_t o = t->vocab.slot[i];
            if (t->tlen[o] == t->tlen[id] && memcmp(t->text[o], t->text[id], t->tlen[id]) == 0) {
                dup = true; /* first id keeps the string, as in HF's vocab map */
                break;
            }
            i = (i + 1) & t->vocab.mask;
        }
        if (!dup) t->vocab.slot[i] = (int32_t)id;
    }
    return MLXN_OK;
}

static mlxn_status alloc_pairs(mlxn_tokenizer *t, size_t n) {
    size_t cap = pow2_at_least(n * 2 + 1);
    t->pairs = mlxn_calloc(cap, sizeof(pairent));
    if (!t->pairs) return mlxn_err(MLXN_ERR_OUT_OF_MEMORY, "tokenizer: out of memory (merge map)");
    t->pair_mask = cap - 1;
    return MLXN_OK;
}

static mlxn_status build_merges(mlxn_tokenizer *t, const char *const *left,
                                const char *const *right, size_t n) {
    mlxn_status st = alloc_pairs(t, n);
    if (st != MLXN_OK) return st;
    t->merge_a = mlxn_malloc(n * sizeof(int32_t));
    t->merge_b = mlxn_malloc(n * sizeof(int32_t));
    if (!t->merge_a || !t->merge_b) return mlxn_err(MLXN_ERR_OUT_OF_MEMORY, "tokenizer: out of memory (merges)");
    char stackbuf[512];
    for (size_t r = 0; r < n; r++) {
        if (!left[r] || !right[r]) return mlxn_err(MLXN_ERR_INVALID_ARG, "tokenizer: merge %zu is NULL", r);
        size_t la = strlen(left[r]), lb = strlen(right[r]);
        int32_t a = vocab_find_n(t, left[r], la), b = vocab_find_n(t, right[r], lb);
        if (a < 0 || b < 0) continue; /* HF errors here; GGUF files in the wild have such lines */
        char *buf = la + lb <= sizeof stackbuf ? stackbuf : mlxn_malloc(la + lb);
        if (!buf) return mlxn_err(MLXN_ERR_OUT_OF_MEMORY, "tokenizer: out of memory");
        memcpy(buf, left[r], la);
        memcpy(buf + la, right[r], lb);
        int32_t id = vocab_find_n(t, buf, la + lb);
        if (buf != stackbuf) mlxn_free(buf);
        if (id < 0) continue;
        t->merge_a[t->n_merges] = a;
        t->merge_b[t->n_merges] = b;
        pair_insert(t, a, b, (uint32_t)t->n_merges, id);
        t->n_merges++;
    }
    return MLXN_OK;
}

typedef struct scored {
    float score;
    int32_t id;
} scored;

static int cmp_scored(const void *x, const void *y) {
    const scored *a = x, *b = y;
    if (a->score != b->score) return a->score > b->score ? -1 : 1;
    return a->id < b->id ? -1 : a->id > b->id;
}

/* SentencePiece without merges: every split of a token into two tokens is a
 * merge whose priority is the token's score (dense rank, highest first). */
static mlxn_status build_score_merges(mlxn_tokenizer *t) {
    size_t n = t->n_vocab;
    scored *order = mlxn_malloc(n * sizeof(scored));
    if (!order) return mlxn_err(MLXN_ERR_OUT_OF_MEMORY, "tokenizer: out of memory");
    size_t k = 0, total_splits = 0;
    for (size_t i = 0; i < n; i++) {
        if (t->types[i] != MLXN_TOKT_NORMAL && t->types[i] != MLXN_TOKT_USER_DEFINED) continue;
        order[k++] = (scored){t->scores[i], (int32_t)i};
        total_splits += t->tlen[i];
    }
    qsort(order, k, sizeof(scored), cmp_scored);
    mlxn_status st = alloc_pairs(t, total_splits);
    if (st == MLXN_OK) {
        t->merge_a = mlxn_malloc((total_splits + 1) * sizeof(int32_t));
        t->merge_b = mlxn_malloc((total_splits + 1) * sizeof(int32_t));
        if (!t->merge_a || !t->merge_b) st = mlxn_err(MLXN_ERR_OUT_OF_MEMORY, "tokenizer: out of memory");
    }
    uint32_t rank = 0;
    for (size_t r = 0; r < k && st == MLXN_OK; r++) {
        if (r && order[r].score != order[r - 1].score) rank++;
        int32_t id = order[r].id;
        const char *s = t->text[id];
        size_t L = t->tlen[id];
        for (size_t cut = 1; cut < L; cut++) {
            if (((unsigned char)s[cut] & 0xC0) == 0x80) continue; /* only at char boundaries */
            int32_t a = vocab_find_n(t, s, cut), b = vocab_find_n(t, s + cut, L - cut);
            if (a < 0 || b < 0 || pair_find(t, a, b)) continue;
            pair_insert(t, a, b, rank, id);
            t->merge_a[t->n_merges] = a;
            t->merge_b[t->n_merges] = b;
            t->n_merges++;
        }
    }
    mlxn_free(order);
    return st;
}

static int cmp_spec_ctx_len(const mlxn_tokenizer *t, int32_t a, int32_t b) {
    unsigned ca = (unsigned char)t->text[a][0], cb = (unsigned char)t->text[b][0];
    if (ca != cb) return ca < cb ? -1 : 1;
    if (t->tlen[a] != t->tlen[b]) return t->tlen[a] > t->tlen[b] ? -1 : 1;
    return a < b ? -1 : a > b;
}

/* Rebuild the verbatim-match table from the types (CONTROL, USER_DEFINED). */
static mlxn_status build_specials(mlxn_tokenizer *t) {
    mlxn_free(t->spec);
    t->spec = NULL;
    t->n_spec = 0;
    size_t k = 0;
    for (size_t i = 0; i < t->n_vocab; i++)
        if (is_verbatim(t, (int32_t)i) && t->tlen[i]) k++;
    memset(t->spec_start, 0, sizeof t->spec_start);
    if (!k) return MLXN_OK;
    t->spec = mlxn_malloc(k * sizeof(int32_t));
    if (!t->spec) return mlxn_err(MLXN_ERR_OUT_OF_MEMORY, "tokenizer: out of memory");
    for (size_t i = 0; i < t->n_vocab; i++)
        if (is_verbatim(t, (int32_t)i) && t->tlen[i])
            t->spec[t->n_spec++] = (int32_t)i;
    /* insertion sort is fine: special tokens number in the hundreds at most */
    for (size_t i = 1; i < t->n_spec; i++) {
        int32_t x = t->spec[i];
        size_t j = i;
        while (j > 0 && cmp_spec_ctx_len(t, t->spec[j - 1], x) > 0) {
            t->spec[j] = t->spec[j - 1];
            j--;
        }
        t->spec[j] = x;
    }
    for (size_t i = 0; i < t->n_spec; i++) t->spec_start[(unsigned char)t->text[t->spec[i]][0] + 1]++;
    for (int c = 0; c < 256; c++) t->spec_start[c + 1] += t->spec_start[c];
    return MLXN_OK;
}

static const char *const PRE_SMOLLM[] = {RE_DIGIT, RE_GPT2};
static const char *const PRE_GPT2[] = {RE_GPT2};
static const char *const PRE_LLAMA3[] = {RE_LLAMA3};
static const char *const PRE_QWEN2[] = {RE_QWEN2};

static const struct {
    const char *name;
    const char *const *pats;
    size_t n;
    bool ignore_merges;
} PRETOK_NAMES[] = {
    {"gpt2", PRE_GPT2, 1, false},       {"gpt-2", PRE_GPT2, 1, false},
    {"default", PRE_GPT2, 1, false},
    {"smollm", PRE_SMOLLM, 2, false},   {"starcoder", PRE_SMOLLM, 2, false},
    {"refact", PRE_SMOLLM, 2, false},   {"llama3", PRE_LLAMA3, 1, true},
    {"llama-bpe", PRE_LLAMA3, 1, true}, {"llama-v3", PRE_LLAMA3, 1, true},
    {"qwen2", PRE_QWEN2, 1, false},
};

mlxn_status mlxn_tokenizer_create_bpe_pairs(mlxn_tokenizer **out, mlxn_tok_kind kind,
                                            const char *const *tokens, size_t n_vocab,
                                            const float *scores, const int32_t *token_types,
                                            const char *const *merge_left,
                                            const char *const *merge_right, size_t n_merges,
                                            const char *pretokenizer_name) {
    if (!out) return mlxn_err(MLXN_ERR_INVALID_ARG, "tokenizer_create_bpe: out is NULL");
    *out = NULL;
    if (!tokens || !n_vocab || (n_merges && (!merge_left || !merge_right)))
        return mlxn_err(MLXN_ERR_INVALID_ARG, "tokenizer_create_bpe: no tokens or NULL merges");
    if ((unsigned)kind >= MLXN_TOK_KIND_COUNT)
        return mlxn_err(MLXN_ERR_INVALID_ARG, "tokenizer_create_bpe: bad kind %d", (int)kind);
    if (n_vocab > INT32_MAX / 2)
        return mlxn_err(MLXN_ERR_INVALID_ARG, "tokenizer_create_bpe: vocab of %zu tokens", n_vocab);
    int pre = -1;
    if (kind == MLXN_TOK_BYTE_LEVEL) {
        const char *nm = pretokenizer_name ? pretokenizer_name : "gpt2";
        for (size_t i = 0; i < sizeof PRETOK_NAMES / sizeof PRETOK_NAMES[0]; i++)
            if (strcmp(nm, PRETOK_NAMES[i].name) == 0) pre = (int)i;
        if (pre < 0) return mlxn_err(MLXN_ERR_UNSUPPORTED, "tokenizer: unknown pre-tokenizer '%s'", nm);
    }
    mlxn_tokenizer *t = mlxn_calloc(1, sizeof *t);
    if (!t) return mlxn_err(MLXN_ERR_OUT_OF_MEMORY, "tokenizer: out of memory");
    t->kind = kind;
    t->n_vocab = n_vocab;
    t->sp = (mlxn_tok_special){-1, -1, -1, -1, false, false};
    mlxn_status st = MLXN_OK;
    t->text = mlxn_calloc(n_vocab, sizeof(char *));
    t->tlen = mlxn_malloc(n_vocab * sizeof(uint32_t));
    t->types = mlxn_malloc(n_vocab * sizeof(int32_t));
    if (scores) t->scores = mlxn_malloc(n_vocab * sizeof(float));
    if (!t->text || !t->tlen || !t->types || (scores && !t->scores)) st = mlxn_err(MLXN_ERR_OUT_OF_MEMORY, "tokenizer: out of memory");
    for (size_t i = 0; i < n_vocab && st == MLXN_OK; i++) {
        if (!tokens[i]) { st = mlxn_err(MLXN_ERR_INVALID_ARG, "tokenizer: token %zu is NULL", i); break; }
        size_t L = strlen(tokens[i]);
        if (L > UINT32_MAX) { st = mlxn_err(MLXN_ERR_INVALID_ARG, "tokenizer: token %zu too long", i); break; }
        t->text[i] = mlxn_strdup(tokens[i]);
        if (!t->text[i]) { st = mlxn_err(MLXN_ERR_OUT_OF_MEMORY, "tokenizer: out of memory"); break; }
        t->tlen[i] = (uint32_t)L;
        int32_t ty = token_types ? token_types[i] : MLXN_TOKT_NORMAL;
        if (ty < 0 || ty >= MLXN_TOKT_COUNT) ty = MLXN_TOKT_NORMAL;
        t->types[i] = ty;
        if (scores) t->scores[i] = scores[i];
    }
    if (st == MLXN_OK) st = build_vocab_map(t);
    if (st == MLXN_OK) {
        if (kind == MLXN_TOK_SPM && n_merges == 0 && scores) st = build_score_merges(t);
        else st = build_merges(t, merge_left, merge_right, n_merges);
    }
    if (st == MLXN_OK) st = build_specials(t);
    if (st == MLXN_OK) {
        memset(t->cp_to_byte, 0xff, sizeof t->cp_to_byte);
        for (unsigned b = 0; b < 256; b++) {
            char buf[8];
            if (kind == MLXN_TOK_BYTE_LEVEL) {
                uint32_t cp = byte_to_cp(b);
                t->cp_to_byte[cp] = (int16_t)b;
                t->byte_tok[b] = vocab_find_n(t, buf, utf8_put(cp, buf));
            } else {
                snprintf(buf, sizeof buf, "<0x%02X>", b);
                t->byte_tok[b] = vocab_find_n(t, buf, 6);
            }
        }
        if (kind == MLXN_TOK_BYTE_LEVEL) {
            st = mlxn_tokenizer_set_pretokenizer(t, PRETOK_NAMES[pre].pats, PRETOK_NAMES[pre].n);
            t->opt.ignore_merges = PRETOK_NAMES[pre].ignore_merges;
        } else {
            t->opt.space_prefix = MLXN_TOK_PREFIX_ALWAYS;
            t->opt.byte_fallback = true;
            t->opt.fuse_unk = true;
        }
    }
    if (st != MLXN_OK) {
        mlxn_tokenizer_destroy(t);
        return st;
    }
    *out = t;
    return MLXN_OK;
}

mlxn_status mlxn_tokenizer_create_bpe(mlxn_tokenizer **out, mlxn_tok_kind kind,
                                      const char *const *tokens, size_t n_vocab,
                                      const float *scores, const int32_t *token_types,
                                      const char *const *merges, size_t n_merges,
                                      const char *pretokenizer_name) {
    if (!out) return mlxn_err(MLXN_ERR_INVALID_ARG, "tokenizer_create_bpe: out is NULL");
    *out = NULL;
    if (n_merges && !merges) return mlxn_err(MLXN_ERR_INVALID_ARG, "tokenizer_create_bpe: merges is NULL");
    /* one buffer holding every merge with its separating space made a NUL */
    size_t total = 0, bytes;
    for (size_t r = 0; r < n_merges; r++) {
        if (!merges[r]) return mlxn_err(MLXN_ERR_INVALID_ARG, "tokenizer: merge %zu is NULL", r);
        if (!mlxn_add_ok(total, strlen(merges[r]) + 1, &total))
            return mlxn_err(MLXN_ERR_OUT_OF_MEMORY, "tokenizer: merges too large");
    }
    if (!mlxn_mul_ok(n_merges, 2 * sizeof(char *), &bytes))
        return mlxn_err(MLXN_ERR_OUT_OF_MEMORY, "tokenizer: too many merges");
    char *buf = mlxn_malloc(total);
    const char **lr = mlxn_malloc(bytes);
    mlxn_status st = MLXN_OK;
    if (!buf || !lr) st = mlxn_err(MLXN_ERR_OUT_OF_MEMORY, "tokenizer: out of memory (merges)");
    size_t off = 0;
    for (size_t r = 0; r < n_merges && st == MLXN_OK; r++) {
        size_t len = strlen(merges[r]);
        const char *sp = len > 1 ? memchr(merges[r] + 1, ' ', len - 1) : NULL;
        if (!sp || (size_t)(sp - merges[r]) + 1 == len) {
            st = mlxn_err(MLXN_ERR_FORMAT, "tokenizer: merge %zu '%.40s' is not 'left right'", r, merges[r]);
            break;
        }
        memcpy(buf + off, merges[r], len + 1);
        buf[off + (size_t)(sp - merges[r])] = 0;
        lr[r] = buf + off;
        lr[n_merges + r] = buf + off + (size_t)(sp - merges[r]) + 1;
        off += len + 1;
    }
    if (st == MLXN_OK)
        st = mlxn_tokenizer_create_bpe_pairs(out, kind, tokens, n_vocab, scores, token_types, lr,
                                             lr ? lr + n_merges : NULL, n_merges, pretokenizer_name);
    mlxn_free(buf);
    mlxn_free(lr);
    return st;
}

mlxn_status mlxn_tokenizer_set_special(mlxn_tokenizer *tok, const mlxn_tok_special *sp) {
    if (!tok || !sp) return mlxn_err(MLXN_ERR_INVALID_ARG, "tokenizer_set_special: NULL argument");
    const int32_t v[4] = {sp->bos, sp->eos, sp->unk, sp->pad};
    for (int i = 0; i < 4; i++)
        if (v[i] < -1 || (v[i] >= 0 && (size_t)v[i] >= tok->n_vocab))
            return mlxn_err(MLXN_ERR_RANGE, "tokenizer_set_special: id %d outside vocab of %zu", v[i], tok->n_vocab);
    tok->sp = *sp;
    return MLXN_OK;
}

mlxn_tok_special mlxn_tokenizer_special(const mlxn_tokenizer *tok) {
    return tok ? tok->sp : (mlxn_tok_special){-1, -1, -1, -1, false, false};
}

mlxn_status mlxn_tokenizer_set_options(mlxn_tokenizer *tok, const mlxn_tok_options *o) {
    if (!tok || !o) return mlxn_err(MLXN_ERR_INVALID_ARG, "tokenizer_set_options: NULL argument");
    if ((unsigned)o->space_prefix >= MLXN_TOK_PREFIX_COUNT)
        return mlxn_err(MLXN_ERR_INVALID_ARG, "tokenizer_set_options: bad space_prefix %d", (int)o->space_prefix);
    tok->opt = *o;
    return MLXN_OK;
}

mlxn_tok_options mlxn_tokenizer_options(const mlxn_tokenizer *tok) {
    return tok ? tok->opt : (mlxn_tok_options){0};
}

size_t mlxn_tokenizer_n_merges(const mlxn_tokenizer *tok) { return tok ? tok->n_merges : 0; }

bool mlxn_tokenizer_merge(const mlxn_tokenizer *tok, size_t i, int32_t *a, int32_t *b) {
    if (!tok || i >= tok->n_merges) return false;
    *a = tok->merge_a[i];
    *b = tok->merge_b[i];
    return true;
}

size_t mlxn_tokenizer_n_vocab(const mlxn_tokenizer *tok) { return tok ? tok->n_vocab : 0; }
mlxn_tok_kind mlxn_tokenizer_kind(const mlxn_tokenizer *tok) { return tok ? tok->kind : MLXN_TOK_KIND_COUNT; }

const char *mlxn_tokenizer_token_text(const mlxn_tokenizer *tok, int32_t id) {
    if (!tok || id < 0 || (size_t)id >= tok->n_vocab) return NULL;
    return tok->text[id];
}

int32_t mlxn_tokenizer_find(const mlxn_tokenizer *tok, const char *text) {
    if (!tok || !text) return -1;
    return vocab_find_n(tok, text, strlen(text));
}

bool mlxn_tokenizer_is_control(const mlxn_tokenizer *tok, int32_t id) {
    if (!tok || id < 0 || (size_t)id >= tok->n_vocab) return false;
    return tok->types[id] == MLXN_TOKT_CONTROL;
}

int32_t mlxn_tokenizer_type(const mlxn_tokenizer *tok, int32_t id) {
    if (!tok || id < 0 || (size_t)id >= tok->n_vocab) return -1;
    return tok->types[id];
}

void mlxn_tokenizer_destroy(mlxn_tokenizer *tok) {
    if (!tok) return;
    if (tok->text)
        for (size_t i = 0; i < tok->n_vocab; i++) mlxn_free(tok->text[i]);
    mlxn_free(tok->text);
    mlxn_free(tok->tlen);
    mlxn_free(tok->scores);
    mlxn_free(tok->types);
    mlxn_free(tok->vocab.slot);
    mlxn_free(tok->pairs);
    mlxn_free(tok->merge_a);
    mlxn_free(tok->merge_b);
    mlxn_free(tok->spec);
    free_pretok(tok);
    mlxn_free(tok);
}
