/*
 * tok_json.c — Hugging Face tokenizer.json in and out, for the BPE models
 * mlxn runs. Reading maps the file's normalizer / pre_tokenizer / decoder
 * onto the two kinds in tokenizer.c (byte-level, SentencePiece-style);
 * anything that would silently tokenize differently is refused with
 * MLXN_ERR_UNSUPPORTED rather than approximated. The file is hostile input:
 * every field is type-checked and every id range-checked.
 */
#include "model/tokenizer.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_PATS 8

static const char RE_GPT2[] =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";
static const char SPACE_MARK[] = "\xE2\x96\x81"; /* ▁ */

static const char *jstr(const cJSON *o, const char *k) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

static bool jbool(const cJSON *o, const char *k, bool dflt) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsBool(v) ? cJSON_IsTrue(v) : dflt;
}

/* Does the (possibly Sequence-nested) component have a part of this type? */
static bool has_type(const cJSON *c, const char *type, int depth) {
    if (!cJSON_IsObject(c) || depth > 8) return false;
    const char *ty = jstr(c, "type");
    if (ty && strcmp(ty, type) == 0) return true;
    static const char *const lists[] = {"pretokenizers", "normalizers", "decoders", "processors"};
    for (int i = 0; i < 4; i++) {
        const cJSON *arr = cJSON_GetObjectItemCaseSensitive(c, lists[i]);
        const cJSON *e;
        cJSON_ArrayForEach(e, arr) if (has_type(e, type, depth + 1)) return true;
    }
    return false;
}

typedef struct pats {
    char *p[MAX_PATS];
    size_t n;
} pats;

static mlxn_status pats_add(pats *ps, const char *p, size_t len) {
    if (ps->n == MAX_PATS) return mlxn_err(MLXN_ERR_UNSUPPORTED, "tokenizer.json: more than %d pre-tokenizer splits", MAX_PATS);
    char *c = mlxn_malloc(len + 1);
    if (!c) return mlxn_err(MLXN_ERR_OUT_OF_MEMORY, "tokenizer.json: out of memory");
    memcpy(c, p, len);
    c[len] = 0;
    ps->p[ps->n++] = c;
    return MLXN_OK;
}

static void pats_free(pats *ps) {
    for (size_t i = 0; i < ps->n; i++) mlxn_free(ps->p[i]);
    ps->n = 0;
}

/* Byte-level pre_tokenizer → PCRE2 patterns applied in order. */
static mlxn_status collect_pretok(const cJSON *c, pats *ps, int depth) {
    if (cJSON_IsNull(c) || !c) return MLXN_OK;
    if (!cJSON_IsObject(c) || depth > 8) return mlxn_err(MLXN_ERR_FORMAT, "tokenizer.json: pre_tokenizer is not an object");
    const char *ty = jstr(c, "type");
    if (!ty) return mlxn_err(MLXN_ERR_FORMAT, "tokenizer.json: pre_tokenizer without a type");
    if (strcmp(ty, "Sequence") == 0) {
        const cJSON *arr = cJSON_GetObjectItemCaseSensitive(c, "pretokenizers"), *e;
        if (!cJSON_IsArray(arr)) return mlxn_err(MLXN_ERR_FORMAT, "tokenizer.json: Sequence without pretokenizers");
        cJSON_ArrayForEach(e, arr) {
            mlxn_status st = collect_pretok(e, ps, depth + 1);
            if (st != MLXN_OK) return st;
        }
        return MLXN_OK;
    }
    if (strcmp(ty, "ByteLevel") == 0) {
        if (jbool(c, "add_prefix_space", false))
            return mlxn_err(MLXN_ERR_UNSUPPORTED, "tokenizer.json: ByteLevel add_prefix_space=true");
        return jbool(c, "use_regex", true) ? pats_add(ps, RE_GPT2, strlen(RE_GPT2)) : MLXN_OK;
    }
    if (strcmp(ty, "Digits") == 0) {
        const char *p = jbool(c, "individual_digits", false) ? "\\p{N}" : "\\p{N}+";
        return pats_add(ps, p, strlen(p));
    }
    if (strcmp(ty, "Split") == 0) {
        const char *beh = jstr(c, "behavior");
        if (!beh || strcmp(beh, "Isolated") != 0 || jbool(c, "invert", false))
            return mlxn_err(MLXN_ERR_UNSUPPORTED, "tokenizer.json: Split behavior '%s'%s (only Isolated)",
                            beh ? beh : "?", jbool(c, "invert", false) ? " inverted" : "");
        const cJSON *pat = cJSON_GetObjectItemCaseSensitive(c, "pattern");
        const char *rx = jstr(pat, "Regex"), *lit = jstr(pat, "String");
        if (rx) return pats_add(ps, rx, strlen(rx));
        if (lit) { /* quote the literal for PCRE2 */
            size_t L = strlen(lit);
            char *q = mlxn_malloc(L + 5);
            if (!q) return mlxn_err(MLXN_ERR_OUT_OF_MEMORY, "tokenizer.json: out of memory");
            if (strstr(lit, "\\E")) {
                mlxn_free(q);
                return mlxn_err(MLXN_ERR_UNSUPPORTED, "tokenizer.json: Split string contains \\E");
            }
            snprintf(q, L + 5, "\\Q%s\\E", lit);
            mlxn_status st = pats_add(ps, q, L + 4);
            mlxn_free(q);
            return st;
        }
        return mlxn_err(MLXN_ERR_FORMAT, "tokenizer.json: Split pattern is neither Regex nor String");
    }
    return mlxn_err(MLXN_ERR_UNSUPPORTED, "tokenizer.json: pre_tokenizer type '%s' with byte-level BPE", ty);
}

/* Normalizers a byte-level model may have without changing our output:
 * none, or NFC (text is assumed NFC already). */
static mlxn_status check_bl_normalizer(const cJSON *c, int depth) {
    if (!c || cJSON_IsNull(c)) return MLXN_OK;
    const char *ty = jstr(c, "type");
    if (!ty || depth > 8) return mlxn_err(MLXN_ERR_FORMAT, "tokenizer.json: normalizer without a type");
    if (strcmp(ty, "NFC") == 0) return MLXN_OK;
    if (strcmp(ty, "Sequence") == 0) {
        const cJSON *e;
        cJSON_ArrayForEach(e, cJSON_GetObjectItemCaseSensitive(c, "normalizers")) {
            mlxn_status st = check_bl_normalizer(e, depth + 1);
            if (st != MLXN_OK) return st;
        }
        return MLXN_OK;
    }
    return mlxn_err(MLXN_ERR_UNSUPPORTED, "tokenizer.json: normalizer '%s' with byte-level BPE", ty);
}

static int32_t special_id(const cJSON *tp, const cJSON *item, const mlxn_tokenizer *tok) {
    const cJSON *st = cJSON_GetObjectItemCaseSensitive(item, "SpecialToken");
    const char *name = jstr(st, "id");
    if (!name) return -1;
    const cJSON *map = cJSON_GetObjectItemCaseSensitive(tp, "special_tokens");
    const cJSON *ent = cJSON_GetObjectItemCaseSensitive(map, name);
    const cJSON *ids = cJSON_GetObjectItemCaseSensitive(ent, "ids");
    const cJSON *first = cJSON_GetArrayItem(ids, 0);
    if (cJSON_IsNumber(first) && first->valuedouble >= 0 && first->valuedouble < (double)mlxn_tokenizer_n_vocab(tok))
        return (int32_t)first->valuedouble;
    return mlxn_tokenizer_find(tok, name);
}

/* TemplateProcessing (possibly inside a Sequence): BOS/EOS around "A". */
static void read_post(const cJSON *pp, const mlxn_tokenizer *tok, mlxn_tok_special *sp, int depth) {
    if (!cJSON_IsObject(pp) || depth > 8) return;
    const char *ty = jstr(pp, "type");
    if (!ty) return;
    if (strcmp(ty, "Sequence") == 0) {
        const cJSON *e;
        cJSON_ArrayForEach(e, cJSON_GetObjectItemCaseSensitive(pp, "processors")) read_post(e, tok, sp, depth + 1);
        return;
    }
    if (strcmp(ty, "TemplateProcessing") != 0) return;
    const cJSON *single = cJSON_GetObjectItemCaseSensitive(pp, "single");
    int n = cJSON_GetArraySize(single);
    if (!cJSON_IsArray(single) || n == 0) return;
    int32_t b = special_id(pp, cJSON_GetArrayItem(single, 0), tok);
    int32_t e = n > 1 ? special_id(pp, cJSON_GetArrayItem(single, n - 1), tok) : -1;
    if (b >= 0) { sp->bos = b; sp->add_bos = true; }
    if (e >= 0) { sp->eos = e; sp->add_eos = true; }
}

static bool valid_id(const cJSON *v, double limit) {
    return cJSON_IsNumber(v) && v->valuedouble >= 0 && v->valuedouble < limit &&
           v->valuedouble == (double)(int64_t)v->valuedouble;
}

static mlxn_status load_root(mlxn_tokenizer **out, const cJSON *root) {
    if (!cJSON_IsObject(root)) return mlxn_err(MLXN_ERR_FORMAT, "tokenizer.json: top level is not an object");
    const cJSON *model = cJSON_GetObjectItemCaseSensitive(root, "model");
    if (!cJSON_IsObject(model)) return mlxn_err(MLXN_ERR_FORMAT, "tokenizer.json: no \"model\" object");
    const char *mtype = jstr(model, "type");
    if (mtype && strcmp(mtype, "BPE") != 0)
        return mlxn_err(MLXN_ERR_UNSUPPORTED, "tokenizer.json: model type '%s' (only BPE)", mtype);
    const cJSON *vocab = cJSON_GetObjectItemCaseSensitive(model, "vocab");
    const cJSON *merges = cJSON_GetObjectItemCaseSensitive(model, "merges");
    const cJSON *added = cJSON_GetObjectItemCaseSensitive(root, "added_tokens");
    if (!cJSON_IsObject(vocab)) return mlxn_err(MLXN_ERR_FORMAT, "tokenizer.json: model.vocab is not an object");
    if (!cJSON_IsArray(merges)) return mlxn_err(MLXN_ERR_FORMAT, "tokenizer.json: model.merges is not an array");
    if (added && !cJSON_IsArray(added) && !cJSON_IsNull(added))
        return mlxn_err(MLXN_ERR_FORMAT, "tokenizer.json: added_tokens is not an array");
    size_t n_entries = (size_t)cJSON_GetArraySize(vocab) + (size_t)(cJSON_IsArray(added) ? cJSON_GetArraySize(added) : 0);
    /* ids may have a few holes, not millions: bound the table by the entries */
    double limit = (double)n_entries + 1024;
    size_t n_vocab = 0;
    const cJSON *e;
    cJSON_ArrayForEach(e, vocab) {
        if (!valid_id(e, limit))
            return mlxn_err(MLXN_ERR_FORMAT, "tokenizer.json: vocab entry '%.40s' has a bad id", e->string ? e->string : "?");
        if ((size_t)e->valuedouble + 1 > n_vocab) n_vocab = (size_t)e->valuedouble + 1;
    }
    cJSON_ArrayForEach(e, added) {
        const cJSON *id = cJSON_GetObjectItemCaseSensitive(e, "id");
        if (!valid_id(id, limit) || !jstr(e, "content"))
            return mlxn_err(MLXN_ERR_FORMAT, "tokenizer.json: added_tokens entry without valid id/content");
        if ((size_t)id->valuedouble + 1 > n_vocab) n_vocab = (size_t)id->valuedouble + 1;
    }
    if (n_vocab == 0) return mlxn_err(MLXN_ERR_FORMAT, "tokenizer.json: empty vocab");

    /* kind */
    const cJSON *norm = cJSON_GetObjectItemCaseSensitive(root, "normalizer");
    const cJSON *pre = cJSON_GetObjectItemCaseSensitive(root, "pre_tokenizer");
    const cJSON *dec = cJSON_GetObjectItemCaseSensitive(root, "decoder");
    mlxn_tok_kind kind;
    if (has_type(pre, "ByteLevel", 0) || has_type(dec, "ByteLevel", 0)) kind = MLXN_TOK_BYTE_LEVEL;
    else if (has_type(pre, "Metaspace", 0) || has_type(norm, "Prepend", 0) || has_type(norm, "Replace", 0) ||
             has_type(dec, "Metaspace", 0) || has_type(dec, "ByteFallback", 0) || jbool(model, "byte_fallback", false))
        kind = MLXN_TOK_SPM;
    else
        return mlxn_err(MLXN_ERR_UNSUPPORTED, "tokenizer.json: BPE that is neither byte-level nor SentencePiece-style");

    mlxn_status st = MLXN_OK;
    pats ps = {0};
    mlxn_tok_options opt = {0};
    if (kind == MLXN_TOK_BYTE_LEVEL) {
        st = check_bl_normalizer(norm, 0);
        if (st == MLXN_OK) st = collect_pretok(pre, &ps, 0);
    } else {
        opt.space_prefix = MLXN_TOK_PREFIX_NONE;
        if (has_type(norm, "Prepend", 0)) opt.space_prefix = MLXN_TOK_PREFIX_ALWAYS;
        if (pre && !cJSON_IsNull(pre)) {
            const char *ty = jstr(pre, "type");
            if (!ty || strcmp(ty, "Metaspace") != 0) {
                st = mlxn_err(MLXN_ERR_UNSUPPORTED, "tokenizer.json: pre_tokenizer '%s' with SentencePiece BPE", ty ? ty : "?");
            } else {
                const char *scheme = jstr(pre, "prepend_scheme");
                if (scheme) opt.space_prefix = strcmp(scheme, "always") == 0 ? MLXN_TOK_PREFIX_ALWAYS
                                               : strcmp(scheme, "first") == 0 ? MLXN_TOK_PREFIX_FIRST
                                                                                : MLXN_TOK_PREFIX_NONE;
                else opt.space_prefix = jbool(pre, "add_prefix_space", true) ? MLXN_TOK_PREFIX_ALWAYS : MLXN_TOK_PREFIX_NONE;
                opt.metaspace_split = jbool(pre, "split", true);
                opt.prefix_unless_space = true;
            }
        }
    }
    opt.byte_fallback = jbool(model, "byte_fallback", false);
    opt.fuse_unk = jbool(model, "fuse_unk", false);
    opt.ignore_merges = jbool(model, "ignore_merges", false);

    const char **toks = NULL, **ml = NULL;
    int32_t *types = NULL;
    char **owned = NULL; /* merge halves split out of "a b" strings */
    size_t n_merges = (size_t)cJSON_GetArraySize(merges);
    if (st == MLXN_OK) {
        toks = mlxn_calloc(n_vocab, sizeof(char *));
        types = mlxn_malloc(n_vocab * sizeof(int32_t));
        ml = mlxn_calloc(2 * n_merges + 1, sizeof(char *));
        owned = mlxn_calloc(n_merges + 1, sizeof(char *));
        if (!toks || !types || !ml || !owned) st = mlxn_err(MLXN_ERR_OUT_OF_MEMORY, "tokenizer.json: out of memory");
    }
    if (st == MLXN_OK) {
        for (size_t i = 0; i < n_vocab; i++) types[i] = MLXN_TOKT_NORMAL;
        cJSON_ArrayForEach(e, vocab) {
            size_t id = (size_t)e->valuedouble;
            if (toks[id]) { st = mlxn_err(MLXN_ERR_FORMAT, "tokenizer.json: vocab id %zu used twice", id); break; }
            toks[id] = e->string;
        }
    }
    if (st == MLXN_OK) {
        cJSON_ArrayForEach(e, added) {
            size_t id = (size_t)cJSON_GetObjectItemCaseSensitive(e, "id")->valuedouble;
            toks[id] = jstr(e, "content");
            types[id] = jbool(e, "special", false) ? MLXN_TOKT_CONTROL : MLXN_TOKT_USER_DEFINED;
        }
        for (size_t i = 0; i < n_vocab; i++)
            if (!toks[i]) { toks[i] = ""; types[i] = MLXN_TOKT_UNUSED; }
    }
    size_t k = 0;
    if (st == MLXN_OK) {
        cJSON_ArrayForEach(e, merges) {
            if (cJSON_IsString(e)) {
                const char *m = e->valuestring;
                size_t len = strlen(m);
                const char *sp = len > 1 ? memchr(m + 1, ' ', len - 1) : NULL;
                if (!sp || (size_t)(sp - m) + 1 == len) {
                    st = mlxn_err(MLXN_ERR_FORMAT, "tokenizer.json: merge %zu '%.40s' is not 'left right'", k, m);
                    break;
                }
                char *c = mlxn_strdup(m);
                if (!c) { st = mlxn_err(MLXN_ERR_OUT_OF_MEMORY, "tokenizer.json: out of memory"); break; }
                owned[k] = c;
                c[sp - m] = 0;
                ml[k] = c;
                ml[n_merges + k] = c + (sp - m) + 1;
            } else if (cJSON_IsArray(e) && cJSON_GetArraySize(e) == 2 && cJSON_IsString(cJSON_GetArrayItem(e, 0)) &&
                       cJSON_IsString(cJSON_GetArrayItem(e, 1))) {
                ml[k] = cJSON_GetArrayItem(e, 0)->valuestring;
                ml[n_merges + k] = cJSON_GetArrayItem(e, 1)->valuestring;
            } else {
                st = mlxn_err(MLXN_ERR_FORMAT, "tokenizer.json: merge %zu is neither \"a b\" nor [a, b]", k);
                break;
            }
            k++;
        }
    }
    mlxn_tokenizer *tok = NULL;
    if (st == MLXN_OK)
        st = mlxn_tokenizer_create_bpe_pairs(&tok, kind, toks, n_vocab, NULL, types, ml, ml + n_merges,
                                             n_merges, kind == MLXN_TOK_BYTE_LEVEL ? "gpt2" : NULL);
    if (st == MLXN_OK && kind == MLXN_TOK_BYTE_LEVEL)
        st = mlxn_tokenizer_set_pretokenizer(tok, (const char *const *)ps.p, ps.n);
    if (st == MLXN_OK) st = mlxn_tokenizer_set_options(tok, &opt);
    if (st == MLXN_OK) {
        mlxn_tok_special sp = {-1, -1, -1, -1, false, false};
        const char *unk = jstr(model, "unk_token");
        if (unk) {
            sp.unk = mlxn_tokenizer_find(tok, unk);
            if (sp.unk < 0) st = mlxn_err(MLXN_ERR_FORMAT, "tokenizer.json: unk_token '%.40s' not in vocab", unk);
        }
        read_post(cJSON_GetObjectItemCaseSensitive(root, "post_processor"), tok, &sp, 0);
        if (st == MLXN_OK) st = mlxn_tokenizer_set_special(tok, &sp);
    }
    if (owned)
        for (size_t i = 0; i < n_merges; i++) mlxn_free(owned[i]);
    mlxn_free(owned);
    mlxn_free(ml);
    mlxn_free(toks);
    mlxn_free(types);
    pats_free(&ps);
    if (st != MLXN_OK) {
        mlxn_tokenizer_destroy(tok);
        return st;
    }
    *out = tok;
    return MLXN_OK;
}

mlxn_status mlxn_tokenizer_load_json_mem(mlxn_tokenizer **out, const char *data, size_t len) {
    if (!out || (len && !data)) return mlxn_err(MLXN_ERR_INVALID_ARG, "tokenizer_load_json: NULL argument");
    *out = NULL;
    cJSON *root = cJSON_ParseWithLength(data, len);
    if (!root) {
        const char *ep = cJSON_GetErrorPtr();
        size_t off = ep && ep >= data && ep <= data + len ? (size_t)(ep - data) : len;
        return mlxn_err(MLXN_ERR_FORMAT, "tokenizer.json: invalid JSON near byte %zu of %zu", off, len);
    }
    mlxn_status st = load_root(out, root);
    cJSON_Delete(root);
    return st;
}

mlxn_status mlxn_tokenizer_load_json(mlxn_tokenizer **out, const char *path) {
    if (!out || !path) return mlxn_err(MLXN_ERR_INVALID_ARG, "tokenizer_load_json: NULL argument");
    *out = NULL;
    FILE *f = fopen(path, "rb");
    if (!f) return mlxn_err(MLXN_ERR_IO, "tokenizer.json: cannot open '%s'", path);
    long sz = -1;
    if (fseek(f, 0, SEEK_END) == 0) sz = ftell(f);
    if (sz < 0 || fseek(f, 0, SEEK_SET) != 0) {
        fclose(f);
        return mlxn_err(MLXN_ERR_IO, "tokenizer.json: cannot size '%s'", path);
    }
    char *buf = mlxn_malloc((size_t)sz + 1);
    if (!buf) {
        fclose(f);
        return mlxn_err(MLXN_ERR_OUT_OF_MEMORY, "tokenizer.json: out of memory (%ld bytes)", sz);
    }
    size_t got = fread(buf, 1, (size_t)sz, f);
    fclose(f);
    if (got != (size_t)sz) {
        mlxn_free(buf);
        return mlxn_err(MLXN_ERR_IO, "tokenizer.json: read %zu of %ld bytes of '%s'", got, sz, path);
    }
    buf[sz] = 0;
    mlxn_status st = mlxn_tokenizer_load_json_mem(out, buf, (size_t)sz);
    mlxn_free(buf);
    if (st != MLXN_OK) mlxn_err_prefix("%s", path);
    return st;
}

/* ---------------- writing ---------------- */

static cJSON *obj_type(const char *type) {
    cJSON *o = cJSON_CreateObject();
    if (o) cJSON_AddStringToObject(o, "type", type);
    return o;
}

static cJSON *replace_obj(const char *from, const char *to) {
    cJSON *r = obj_type("Replace"), *p = cJSON_CreateObject();
    cJSON_AddStringToObject(p, "String", from);
    cJSON_AddItemToObject(r, "pattern", p);
    cJSON_AddStringToObject(r, "content", to);
    return r;
}

static cJSON *template_single(const mlxn_tokenizer *tok, mlxn_tok_special sp, bool pair) {
    cJSON *arr = cJSON_CreateArray();
    const char *seqs[2] = {"A", "B"};
    for (int s = 0; s < (pair ? 2 : 1); s++) {
        if (sp.add_bos) {
            cJSON *it = cJSON_CreateObject(), *st = cJSON_CreateObject();
            cJSON_AddStringToObject(st, "id", mlxn_tokenizer_token_text(tok, sp.bos));
            cJSON_AddNumberToObject(st, "type_id", s);
            cJSON_AddItemToObject(it, "SpecialToken", st);
            cJSON_AddItemToArray(arr, it);
        }
        cJSON *it = cJSON_CreateObject(), *sq = cJSON_CreateObject();
        cJSON_AddStringToObject(sq, "id", seqs[s]);
        cJSON_AddNumberToObject(sq, "type_id", s);
        cJSON_AddItemToObject(it, "Sequence", sq);
        cJSON_AddItemToArray(arr, it);
        if (sp.add_eos) {
            cJSON *it2 = cJSON_CreateObject(), *st = cJSON_CreateObject();
            cJSON_AddStringToObject(st, "id", mlxn_tokenizer_token_text(tok, sp.eos));
            cJSON_AddNumberToObject(st, "type_id", s);
            cJSON_AddItemToObject(it2, "SpecialToken", st);
            cJSON_AddItemToArray(arr, it2);
        }
    }
    return arr;
}

static void add_special_entry(cJSON *map, const mlxn_tokenizer *tok, int32_t id) {
    const char *t = mlxn_tokenizer_token_text(tok, id);
    if (cJSON_GetObjectItemCaseSensitive(map, t)) return;
    cJSON *e = cJSON_CreateObject(), *ids = cJSON_CreateArray(), *ts = cJSON_CreateArray();
    cJSON_AddStringToObject(e, "id", t);
    cJSON_AddItemToArray(ids, cJSON_CreateNumber(id));
    cJSON_AddItemToArray(ts, cJSON_CreateString(t));
    cJSON_AddItemToObject(e, "ids", ids);
    cJSON_AddItemToObject(e, "tokens", ts);
    cJSON_AddItemToObject(map, t, e);
}

static cJSON *build_json(const mlxn_tokenizer *tok) {
    mlxn_tok_options opt = mlxn_tokenizer_options(tok);
    mlxn_tok_special sp = mlxn_tokenizer_special(tok);
    size_t nv = mlxn_tokenizer_n_vocab(tok);
    bool bl = mlxn_tokenizer_kind(tok) == MLXN_TOK_BYTE_LEVEL;
    cJSON *root = cJSON_CreateObject();
    cJSON_AddStringToObject(root, "version", "1.0");
    cJSON_AddNullToObject(root, "truncation");
    cJSON_AddNullToObject(root, "padding");

    cJSON *added = cJSON_AddArrayToObject(root, "added_tokens");
    for (size_t i = 0; i < nv; i++) {
        int32_t ty = mlxn_tokenizer_type(tok, (int32_t)i);
        const char *t = mlxn_tokenizer_token_text(tok, (int32_t)i);
        if ((ty != MLXN_TOKT_CONTROL && ty != MLXN_TOKT_USER_DEFINED && ty != MLXN_TOKT_UNKNOWN) || !t[0]) continue;
        cJSON *a = cJSON_CreateObject();
        cJSON_AddNumberToObject(a, "id", (double)i);
        cJSON_AddStringToObject(a, "content", t);
        cJSON_AddBoolToObject(a, "single_word", false);
        cJSON_AddBoolToObject(a, "lstrip", false);
        cJSON_AddBoolToObject(a, "rstrip", false);
        cJSON_AddBoolToObject(a, "normalized", false);
        cJSON_AddBoolToObject(a, "special", ty != MLXN_TOKT_USER_DEFINED);
        cJSON_AddItemToArray(added, a);
    }

    if (bl) {
        cJSON_AddNullToObject(root, "normalizer");
        cJSON *pre = obj_type("Sequence");
        cJSON *list = cJSON_AddArrayToObject(pre, "pretokenizers");
        size_t np;
        const char *const *pp = mlxn_tokenizer_pretok_patterns(tok, &np);
        for (size_t i = 0; i < np; i++) {
            cJSON *s = obj_type("Split"), *p = cJSON_CreateObject();
            cJSON_AddStringToObject(p, "Regex", pp[i]);
            cJSON_AddItemToObject(s, "pattern", p);
            cJSON_AddStringToObject(s, "behavior", "Isolated");
            cJSON_AddBoolToObject(s, "invert", false);
            cJSON_AddItemToArray(list, s);
        }
        cJSON *b = obj_type("ByteLevel");
        cJSON_AddBoolToObject(b, "add_prefix_space", false);
        cJSON_AddBoolToObject(b, "trim_offsets", true);
        cJSON_AddBoolToObject(b, "use_regex", false);
        cJSON_AddItemToArray(list, b);
        cJSON_AddItemToObject(root, "pre_tokenizer", pre);
    } else if (opt.space_prefix == MLXN_TOK_PREFIX_ALWAYS && !opt.metaspace_split && !opt.prefix_unless_space) {
        cJSON *n = obj_type("Sequence");
        cJSON *list = cJSON_AddArrayToObject(n, "normalizers");
        cJSON *p = obj_type("Prepend");
        cJSON_AddStringToObject(p, "prepend", SPACE_MARK);
        cJSON_AddItemToArray(list, p);
        cJSON_AddItemToArray(list, replace_obj(" ", SPACE_MARK));
        cJSON_AddItemToObject(root, "normalizer", n);
        cJSON_AddNullToObject(root, "pre_tokenizer");
    } else {
        cJSON_AddNullToObject(root, "normalizer");
        cJSON *m = obj_type("Metaspace");
        cJSON_AddStringToObject(m, "replacement", SPACE_MARK);
        cJSON_AddStringToObject(m, "prepend_scheme", opt.space_prefix == MLXN_TOK_PREFIX_ALWAYS ? "always"
                                                     : opt.space_prefix == MLXN_TOK_PREFIX_FIRST ? "first"
                                                                                                 : "never");
        cJSON_AddBoolToObject(m, "split", opt.metaspace_split);
        cJSON_AddItemToObject(root, "pre_tokenizer", m);
    }

    if (sp.add_bos || sp.add_eos) {
        cJSON *tp = obj_type("TemplateProcessing");
        cJSON_AddItemToObject(tp, "single", template_single(tok, sp, false));
        cJSON_AddItemToObject(tp, "pair", template_single(tok, sp, true));
        cJSON *map = cJSON_AddObjectToObject(tp, "special_tokens");
        if (sp.add_bos) add_special_entry(map, tok, sp.bos);
        if (sp.add_eos) add_special_entry(map, tok, sp.eos);
        cJSON_AddItemToObject(root, "post_processor", tp);
    } else {
        cJSON_AddNullToObject(root, "post_processor");
    }

    if (bl) {
        cJSON *d = obj_type("ByteLevel");
        cJSON_AddBoolToObject(d, "add_prefix_space", true);
        cJSON_AddBoolToObject(d, "trim_offsets", true);
        cJSON_AddBoolToObject(d, "use_regex", true);
        cJSON_AddItemToObject(root, "decoder", d);
    } else {
        cJSON *d = obj_type("Sequence");
        cJSON *list = cJSON_AddArrayToObject(d, "decoders");
        cJSON_AddItemToArray(list, replace_obj(SPACE_MARK, " "));
        cJSON_AddItemToArray(list, obj_type("ByteFallback"));
        cJSON_AddItemToArray(list, obj_type("Fuse"));
        if (opt.space_prefix != MLXN_TOK_PREFIX_NONE) {
            cJSON *s = obj_type("Strip");
            cJSON_AddStringToObject(s, "content", " ");
            cJSON_AddNumberToObject(s, "start", 1);
            cJSON_AddNumberToObject(s, "stop", 0);
            cJSON_AddItemToArray(list, s);
        }
        cJSON_AddItemToObject(root, "decoder", d);
    }

    cJSON *m = cJSON_AddObjectToObject(root, "model");
    cJSON_AddStringToObject(m, "type", "BPE");
    cJSON_AddNullToObject(m, "dropout");
    if (sp.unk >= 0) cJSON_AddStringToObject(m, "unk_token", mlxn_tokenizer_token_text(tok, sp.unk));
    else cJSON_AddNullToObject(m, "unk_token");
    cJSON_AddNullToObject(m, "continuing_subword_prefix");
    cJSON_AddNullToObject(m, "end_of_word_suffix");
    cJSON_AddBoolToObject(m, "fuse_unk", opt.fuse_unk);
    cJSON_AddBoolToObject(m, "byte_fallback", opt.byte_fallback);
    cJSON_AddBoolToObject(m, "ignore_merges", opt.ignore_merges);
    cJSON *v = cJSON_AddObjectToObject(m, "vocab");
    bool spaced = false;
    for (size_t i = 0; i < nv; i++) {
        const char *t = mlxn_tokenizer_token_text(tok, (int32_t)i);
        if (mlxn_tokenizer_type(tok, (int32_t)i) == MLXN_TOKT_UNUSED && !t[0]) continue;
        if (mlxn_tokenizer_find(tok, t) != (int32_t)i) continue; /* duplicate text: first id wins */
        if (strchr(t, ' ')) spaced = true;
        cJSON_AddItemToObject(v, t, cJSON_CreateNumber((double)i));
    }
    cJSON *ml = cJSON_AddArrayToObject(m, "merges");
    size_t nm = mlxn_tokenizer_n_merges(tok);
    for (size_t i = 0; i < nm; i++) {
        int32_t a, b;
        mlxn_tokenizer_merge(tok, i, &a, &b);
        const char *ta = mlxn_tokenizer_token_text(tok, a), *tb = mlxn_tokenizer_token_text(tok, b);
        if (spaced) {
            cJSON *pr = cJSON_CreateArray();
            cJSON_AddItemToArray(pr, cJSON_CreateString(ta));
            cJSON_AddItemToArray(pr, cJSON_CreateString(tb));
            cJSON_AddItemToArray(ml, pr);
        } else {
            size_t la = strlen(ta), lb = strlen(tb);
            char *s = mlxn_malloc(la + lb + 2);
            if (!s) {
                cJSON_Delete(root);
                return NULL;
            }
            memcpy(s, ta, la);
            s[la] = ' ';
            memcpy(s + la + 1, tb, lb + 1);
            cJSON_AddItemToArray(ml, cJSON_CreateString(s));
            mlxn_free(s);
        }
    }
    return root;
}

mlxn_status mlxn_tokenizer_write_json(const mlxn_tokenizer *tok, const char *path) {
    if (!tok || !path) return mlxn_err(MLXN_ERR_INVALID_ARG, "tokenizer_write_json: NULL argument");
    cJSON *root = build_json(tok);
    char *txt = root ? cJSON_PrintUnformatted(root) : NULL;
    cJSON_Delete(root);
    if (!txt) return mlxn_err(MLXN_ERR_OUT_OF_MEMORY, "tokenizer_write_json: out of memory");
    FILE *f = fopen(path, "wb");
    if (!f) {
        cJSON_free(txt);
        return mlxn_err(MLXN_ERR_IO, "tokenizer_write_json: cannot create '%s'", path);
    }
    size_t len = strlen(txt);
    bool ok = fwrite(txt, 1, len, f) == len;
    ok = (fclose(f) == 0) && ok;
    cJSON_free(txt);
    if (!ok) return mlxn_err(MLXN_ERR_IO, "tokenizer_write_json: write to '%s' failed", path);
    return MLXN_OK;
}
