/* test_tokenizer.c — tokenizers against HF `tokenizers` goldens
 * (scripts/gen_tok_goldens.py): SmolLM2 byte-level BPE from tokenizer.json
 * and from plain arrays (the GGUF path), a tiny SentencePiece BPE (merges and
 * score-based, and from a GGUF file's tokenizer.ggml.* metadata as a
 * Llama-2 GGUF holds it), gpt2/llama3/qwen2 pre-tokenizer pieces; decode(encode(s)) ==
 * s; streaming decode of split UTF-8; invalid UTF-8; hostile tokenizer.json;
 * write_json re-read by us and by HF tokenizers; chat templates against
 * SmolLM2's template rendered by jinja2 and hand-derived Llama/Mistral text. */
#include "model/model.h"
#include "model/tokenizer.h"
#include "test_io_common.h"

#include <cjson/cJSON.h>

/* Files the test writes go to a fresh temporary directory (the build
 * folder's name depends on the build). */
static char g_tmp[] = "/tmp/mlxn-tok-XXXXXX";
static const char *tmp_path(const char *name) {
    static char buf[8][256];
    static int k;
    k = (k + 1) % 8;
    snprintf(buf[k], sizeof buf[k], "%s/%s", g_tmp, name);
    return buf[k];
}

#define DIR "tests/data/tok/"

static char *read_all(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = malloc((size_t)n + 1);
    if (fread(b, 1, (size_t)n, f) != (size_t)n) n = 0;
    fclose(f);
    b[n] = 0;
    if (len) *len = (size_t)n;
    return b;
}

static size_t unhex(const char *h, size_t hn, char *out) {
    size_t n = 0;
    if (hn == 1 && h[0] == '-') return 0;
    for (size_t i = 0; i + 1 < hn; i += 2) {
        unsigned v;
        sscanf(h + i, "%2x", &v);
        out[n++] = (char)v;
    }
    return n;
}

typedef struct golden {
    char text[1024];
    size_t len;
    int32_t ids[512];
    size_t n;
} golden;

static int load_golden(const char *path, golden *g, int max) {
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    char line[8192];
    int k = 0;
    while (k < max && fgets(line, sizeof line, f)) {
        char *tab = strchr(line, '\t');
        if (!tab) continue;
        g[k].len = unhex(line, (size_t)(tab - line), g[k].text);
        g[k].n = 0;
        char *p = tab + 1;
        for (;;) {
            char *e;
            long v = strtol(p, &e, 10);
            if (e == p) break;
            g[k].ids[g[k].n++] = (int32_t)v;
            p = e;
        }
        k++;
    }
    fclose(f);
    return k;
}

static void print_ids(const char *what, const int32_t *ids, size_t n) {
    fprintf(stderr, "    %s (%zu):", what, n);
    for (size_t i = 0; i < n && i < 24; i++) fprintf(stderr, " %d", ids[i]);
    fprintf(stderr, n > 24 ? " ...\n" : "\n");
}

/* Encode every golden string; ids must match exactly. Returns mismatches. */
static int check_goldens(const char *what, const mlxn_tokenizer *tok, const golden *g, int n, bool add_special) {
    int bad = 0;
    for (int i = 0; i < n; i++) {
        int32_t *ids = NULL;
        size_t m = 0;
        mlxn_status st = mlxn_tokenizer_encode(tok, g[i].text, g[i].len, add_special, &ids, &m);
        bool ok = st == MLXN_OK && m == g[i].n && (m == 0 || memcmp(ids, g[i].ids, m * sizeof(int32_t)) == 0);
        if (!ok) {
            if (bad < 5) {
                fprintf(stderr, "  %s: string %d '%.*s' differs (%s)\n", what, i, (int)g[i].len, g[i].text,
                        mlxn_status_name(st));
                print_ids("expected", g[i].ids, g[i].n);
                print_ids("actual  ", ids, m);
            }
            bad++;
        }
        mlxn_free(ids);
    }
    CHECK(bad == 0, "%s: %d of %d strings tokenize differently from HF tokenizers", what, bad, n);
    printf("%s: compared ids of %d strings with HF tokenizers, %d differ\n", what, n, bad);
    return bad;
}

/* decode(encode(s)) == s (strip_specials: SPM, strings without <s> only) */
static void check_roundtrip(const char *what, const mlxn_tokenizer *tok, const golden *g, int n, bool spm) {
    int bad = 0, tried = 0;
    for (int i = 0; i < n; i++) {
        if (spm && memmem(g[i].text, g[i].len, "<s>", 3)) continue;
        int32_t *ids = NULL;
        size_t m = 0, dl = 0;
        char *d = NULL;
        tried++;
        if (mlxn_tokenizer_encode(tok, g[i].text, g[i].len, spm, &ids, &m) != MLXN_OK ||
            mlxn_tokenizer_decode(tok, ids, m, spm, &d, &dl) != MLXN_OK || dl != g[i].len ||
            memcmp(d, g[i].text, dl) != 0) {
            if (bad < 3) fprintf(stderr, "  %s: round trip of string %d: '%.*s' -> '%s'\n", what, i, (int)g[i].len, g[i].text, d ? d : "(null)");
            bad++;
        }
        mlxn_free(ids);
        mlxn_free(d);
    }
    CHECK(bad == 0, "%s: %d of %d strings do not round-trip", what, bad, tried);
}

/* Streaming: feed tokens one at a time; every chunk must be whole UTF-8 and
 * the concatenation must equal the input. */
static void check_stream(const mlxn_tokenizer *tok, const char *s, size_t len, bool spm) {
    int32_t *ids = NULL;
    size_t m = 0;
    CHECK_OK(mlxn_tokenizer_encode(tok, s, len, false, &ids, &m));
    mlxn_tokdec d;
    mlxn_tokdec_reset(&d, tok);
    char acc[4096], chunk[256];
    size_t an = 0;
    int split_tokens = 0, bad_chunks = 0;
    for (size_t i = 0; i < m; i++) {
        size_t k = 0;
        char raw[64];
        int rl = mlxn_tokenizer_decode_token(tok, ids[i], raw, sizeof raw);
        if (rl > 0 && (raw[rl - 1] & 0x80)) split_tokens++;
        CHECK_OK(mlxn_tokdec_push(&d, tok, ids[i], chunk, sizeof chunk, &k));
        if (k && (chunk[0] & 0xC0) == 0x80) bad_chunks++;      /* starts mid-sequence */
        for (size_t j = 0; j < k; j++) acc[an++] = chunk[j];
    }
    an += mlxn_tokdec_flush(&d, acc + an, sizeof acc - an);
    (void)spm;
    CHECK(an == len && memcmp(acc, s, len) == 0, "streaming decode of '%.*s' gave '%.*s'", (int)len, s, (int)an, acc);
    CHECK(bad_chunks == 0, "streaming emitted %d chunks starting inside a UTF-8 sequence", bad_chunks);
    printf("stream: '%.20s...' %zu tokens, %d end inside a multibyte char, chunks whole\n", s, m, split_tokens);
    mlxn_free(ids);
}

/* Invalid UTF-8 and random bytes: must not fail, must round-trip. A byte
 * with no token at all (SmolLM2 lacks 21, e.g. 0xC0, 0xF5-0xFF, 0x04) is
 * dropped, as HF tokenizers does; those are left out of the strings. */
static void check_random_bytes(const mlxn_tokenizer *tok, bool spm) {
    int bad = 0, missing = 0;
    bool ok_byte[256];
    for (int b = 0; b < 256; b++) {
        char c = (char)b;
        int32_t *ids = NULL;
        size_t m = 0;
        ok_byte[b] = mlxn_tokenizer_encode(tok, &c, 1, false, &ids, &m) == MLXN_OK && m > 0;
        missing += !ok_byte[b];
        mlxn_free(ids);
    }
    CHECK(ok_byte[0x80] && ok_byte[0xE4], "lone continuation / truncated lead bytes have tokens");
    printf("%s: %d of 256 bytes have no token and are dropped (as HF does)\n", spm ? "spm" : "byte-level", missing);
    for (int it = 0; it < 300; it++) {
        char s[64];
        size_t len = (size_t)rng_int(0, 63);
        for (size_t i = 0; i < len; i++) {
            int r = rng_int(0, 3);
            do {
                s[i] = r == 0 ? (char)rng_int(0x80, 0xFF) : r == 1 ? (char)rng_int('a', 'z') : r == 2 ? (char)rng_int(1, 0x7F) : (char)0xE4;
            } while (!ok_byte[(unsigned char)s[i]]);
            if (spm && s[i] == ' ') s[i] = 'x'; /* SPM decode strips one leading space */
            if (s[i] == '<') s[i] = '('; /* no special tokens */
        }
        int32_t *ids = NULL;
        size_t m = 0, dl = 0;
        char *d = NULL;
        if (mlxn_tokenizer_encode(tok, s, len, false, &ids, &m) != MLXN_OK ||
            mlxn_tokenizer_decode(tok, ids, m, false, &d, &dl) != MLXN_OK || dl != len || memcmp(d, s, len) != 0)
            bad++;
        mlxn_free(ids);
        mlxn_free(d);
    }
    CHECK(bad == 0, "%s: %d of 300 random byte strings (invalid UTF-8) fail to round-trip", spm ? "spm" : "byte-level", bad);
}

static void test_pretok_goldens(void) {
    const char *names[3] = {"gpt2", "llama3", "qwen2"};
    /* a vocab of the 256 byte chars is enough to pre-tokenize */
    char bufs[256][4];
    const char *toks[256];
    for (int b = 0; b < 256; b++) {
        mlxn_tokenizer *tmp = NULL;
        (void)tmp;
        unsigned cp = ((b >= 33 && b <= 126) || (b >= 161 && b <= 172) || b >= 174) ? (unsigned)b : 0;
        if (!cp) {
            unsigned k = 0;
            for (int x = 0; x < b; x++)
                if (!((x >= 33 && x <= 126) || (x >= 161 && x <= 172) || x >= 174)) k++;
            cp = 256 + k;
        }
        if (cp < 0x80) { bufs[b][0] = (char)cp; bufs[b][1] = 0; }
        else { bufs[b][0] = (char)(0xC0 | (cp >> 6)); bufs[b][1] = (char)(0x80 | (cp & 63)); bufs[b][2] = 0; }
        toks[b] = bufs[b];
    }
    FILE *f = fopen(DIR "pretok.golden", "r");
    CHECK(f != NULL, "open pretok.golden");
    if (!f) return;
    mlxn_tokenizer *tk[3] = {0};
    for (int i = 0; i < 3; i++)
        CHECK_OK(mlxn_tokenizer_create_bpe(&tk[i], MLXN_TOK_BYTE_LEVEL, toks, 256, NULL, NULL, NULL, 0, names[i]));
    static char line[65536];
    int n = 0, bad = 0;
    while (fgets(line, sizeof line, f)) {
        char *t1 = strchr(line, '\t'), *t2 = t1 ? strchr(t1 + 1, '\t') : NULL;
        if (!t2) continue;
        *t1 = 0;
        int w = -1;
        for (int i = 0; i < 3; i++)
            if (strcmp(line, names[i]) == 0) w = i;
        if (w < 0 || !tk[w]) continue;
        char text[1024];
        size_t len = unhex(t1 + 1, (size_t)(t2 - t1 - 1), text);
        size_t *sp = NULL, np = 0;
        CHECK_OK(mlxn_tokenizer_pretokenize(tk[w], text, len, &sp, &np));
        /* rebuild the expected list and compare piece by piece */
        char *p = t2 + 1;
        p[strcspn(p, "\n")] = 0;
        size_t k = 0;
        bool ok = true;
        if (strcmp(p, "-") != 0) {
            for (char *tokn = strtok(p, ","); tokn; tokn = strtok(NULL, ","), k++) {
                char piece[1024];
                size_t pl = unhex(tokn, strlen(tokn), piece);
                if (k >= np || sp[2 * k + 1] != pl || memcmp(text + sp[2 * k], piece, pl) != 0) ok = false;
            }
        }
        if (k != np) ok = false;
        if (!ok && bad++ < 3) fprintf(stderr, "  pretok %s: '%.*s' splits differently (%zu pieces, want %zu)\n", names[w], (int)len, text, np, k);
        n++;
        mlxn_free(sp);
    }
    fclose(f);
    CHECK(bad == 0 && n > 0, "pre-tokenizer: %d of %d strings split differently from HF Split(regex)", bad, n);
    printf("pretok: gpt2/llama3/qwen2 regex pieces of %d strings compared with HF, %d differ\n", n, bad);
    for (int i = 0; i < 3; i++) mlxn_tokenizer_destroy(tk[i]);
}

/* Rebuild a tokenizer from its plain arrays (what the GGUF loader does). */
static mlxn_tokenizer *rebuild_from_arrays(const mlxn_tokenizer *src, const char *pre, bool with_merges,
                                           const float *scores) {
    size_t nv = mlxn_tokenizer_n_vocab(src), nm = with_merges ? mlxn_tokenizer_n_merges(src) : 0;
    const char **toks = malloc(nv * sizeof(char *));
    int32_t *types = malloc(nv * sizeof(int32_t));
    char **merges = malloc((nm + 1) * sizeof(char *));
    for (size_t i = 0; i < nv; i++) {
        toks[i] = mlxn_tokenizer_token_text(src, (int32_t)i);
        types[i] = mlxn_tokenizer_type(src, (int32_t)i);
    }
    for (size_t i = 0; i < nm; i++) {
        int32_t a, b;
        mlxn_tokenizer_merge(src, i, &a, &b);
        const char *ta = mlxn_tokenizer_token_text(src, a), *tb = mlxn_tokenizer_token_text(src, b);
        merges[i] = malloc(strlen(ta) + strlen(tb) + 2);
        sprintf(merges[i], "%s %s", ta, tb);
    }
    mlxn_tokenizer *t = NULL;
    CHECK_OK(mlxn_tokenizer_create_bpe(&t, mlxn_tokenizer_kind(src), toks, nv, scores, types,
                                       (const char *const *)merges, nm, pre));
    if (t) {
        mlxn_tok_options o = mlxn_tokenizer_options(src);
        mlxn_tok_special sp = mlxn_tokenizer_special(src);
        CHECK_OK(mlxn_tokenizer_set_options(t, &o));
        CHECK_OK(mlxn_tokenizer_set_special(t, &sp));
    }
    for (size_t i = 0; i < nm; i++) free(merges[i]);
    free(merges);
    free(toks);
    free(types);
    return t;
}

/* A GGUF v3 image (test_io_common.h's byte builder) holding only a
 * llama-style (SentencePiece) tokenizer's metadata, as a Llama-2 GGUF
 * stores it: tokens, scores (no merges), token types, bos / unk ids. */
static void put_str(bytes *b, const char *sv) {
    put_u64(b, strlen(sv));
    put(b, sv, strlen(sv));
}
static void put_key(bytes *b, const char *k, uint32_t type) {
    put_str(b, k);
    put_u32(b, type);
}
static bytes spm_gguf(const mlxn_tokenizer *src, const float *scores) {
    enum { U32 = 4, I32 = 5, F32 = 6, STR = 8, ARR = 9 };
    bytes b = {0};
    const uint64_t nv = mlxn_tokenizer_n_vocab(src);
    put_u32(&b, 0x46554747u); /* "GGUF" */
    put_u32(&b, 3);
    put_u64(&b, 0); /* tensors */
    put_u64(&b, 7); /* key-value pairs */
    put_key(&b, "general.architecture", STR);
    put_str(&b, "llama");
    put_key(&b, "tokenizer.ggml.model", STR);
    put_str(&b, "llama");
    put_key(&b, "tokenizer.ggml.tokens", ARR);
    put_u32(&b, STR);
    put_u64(&b, nv);
    for (uint64_t i = 0; i < nv; i++) put_str(&b, mlxn_tokenizer_token_text(src, (int32_t)i));
    put_key(&b, "tokenizer.ggml.scores", ARR);
    put_u32(&b, F32);
    put_u64(&b, nv);
    put(&b, scores, nv * sizeof(float));
    put_key(&b, "tokenizer.ggml.token_type", ARR);
    put_u32(&b, I32);
    put_u64(&b, nv);
    for (uint64_t i = 0; i < nv; i++) put_u32(&b, (uint32_t)mlxn_tokenizer_type(src, (int32_t)i));
    mlxn_tok_special sp = mlxn_tokenizer_special(src);
    put_key(&b, "tokenizer.ggml.bos_token_id", U32);
    put_u32(&b, (uint32_t)sp.bos);
    put_key(&b, "tokenizer.ggml.unknown_token_id", U32);
    put_u32(&b, (uint32_t)sp.unk);
    put_zeros(&b, (32 - b.n % 32) % 32); /* the data section: empty, aligned */
    return b;
}

static bool have_hf_tokenizers(void) {
    return system("python3 -c 'import tokenizers' >/dev/null 2>&1") == 0;
}

static void check_written_by_hf(const char *path) {
    if (!have_hf_tokenizers()) {
        printf("write_json: python3 tokenizers not installed, HF check of %s skipped\n", path);
        return;
    }
    char cmd[512];
    snprintf(cmd, sizeof cmd, "python3 scripts/gen_tok_goldens.py --check-written %s", path);
    int rc = system(cmd);
    CHECK(rc == 0, "HF tokenizers loading %s does not reproduce the goldens (rc %d)", path, rc);
}

static void test_bad_json(void) {
    size_t len;
    char *full = read_all(DIR "spm.tokenizer.json", &len);
    CHECK(full != NULL, "read spm.tokenizer.json");
    if (!full) return;
    mlxn_tokenizer *t = NULL;
    /* every truncation must fail cleanly with a message */
    int bad = 0;
    for (size_t cut = 0; cut < len; cut += 97) {
        mlxn_status st = mlxn_tokenizer_load_json_mem(&t, full, cut);
        if (st != MLXN_ERR_FORMAT || !mlxn_last_error()[0] || t) bad++;
        mlxn_tokenizer_destroy(t);
        t = NULL;
    }
    CHECK(bad == 0, "truncated tokenizer.json: %d cuts not rejected with MLXN_ERR_FORMAT", bad);
    static const struct {
        const char *json;
        mlxn_status want;
    } cases[] = {
        {"", MLXN_ERR_FORMAT},
        {"[1,2]", MLXN_ERR_FORMAT},
        {"{\"model\": 3}", MLXN_ERR_FORMAT},
        {"{\"model\": {\"type\": \"WordPiece\", \"vocab\": {}}}", MLXN_ERR_UNSUPPORTED},
        {"{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": 5}}", MLXN_ERR_FORMAT},
        {"{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": -1}, \"merges\": []}, \"decoder\": {\"type\": \"ByteLevel\"}}", MLXN_ERR_FORMAT},
        {"{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 1e12}, \"merges\": []}, \"decoder\": {\"type\": \"ByteLevel\"}}", MLXN_ERR_FORMAT},
        {"{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0, \"b\": 0}, \"merges\": []}, \"decoder\": {\"type\": \"ByteLevel\"}}", MLXN_ERR_FORMAT},
        {"{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": [\"ab\"]}, \"decoder\": {\"type\": \"ByteLevel\"}}", MLXN_ERR_FORMAT},
        {"{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": [[\"a\"]]}, \"decoder\": {\"type\": \"ByteLevel\"}}", MLXN_ERR_FORMAT},
        {"{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": []}, \"pre_tokenizer\": {\"type\": \"Split\", \"pattern\": {\"Regex\": \"(\"}, \"behavior\": \"Isolated\"}, \"decoder\": {\"type\": \"ByteLevel\"}}", MLXN_ERR_FORMAT},
        {"{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": []}, \"pre_tokenizer\": {\"type\": \"Whitespace\"}, \"decoder\": {\"type\": \"ByteLevel\"}}", MLXN_ERR_UNSUPPORTED},
        {"{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": []}}", MLXN_ERR_UNSUPPORTED},
        {"{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": [], \"unk_token\": \"<unk>\"}, \"decoder\": {\"type\": \"ByteFallback\"}}", MLXN_ERR_FORMAT},
        {"{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": []}, \"added_tokens\": [{\"id\": \"x\"}], \"decoder\": {\"type\": \"ByteLevel\"}}", MLXN_ERR_FORMAT},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        mlxn_status st = mlxn_tokenizer_load_json_mem(&t, cases[i].json, strlen(cases[i].json));
        CHECK(st == cases[i].want && mlxn_last_error()[0] && !t, "bad json %zu: got %s want %s (%s)", i,
              mlxn_status_name(st), mlxn_status_name(cases[i].want), mlxn_last_error());
        mlxn_tokenizer_destroy(t);
        t = NULL;
    }
    CHECK_STATUS(mlxn_tokenizer_load_json(&t, DIR "does-not-exist.json"), MLXN_ERR_IO);
    printf("bad json: %zu truncations and %zu malformed files rejected with a message\n", (len + 96) / 97,
           sizeof cases / sizeof cases[0]);
    free(full);
}

static void check_chat(const char *tmpl, const char *arch, const mlxn_chat_msg *m, size_t n, bool gen,
                       const char *want, const char *what) {
    char *out = NULL;
    CHECK_OK(mlxn_chat_format(tmpl, arch, m, n, gen, &out));
    CHECK(out && strcmp(out, want) == 0, "chat %s:\n--- want\n%s\n--- got\n%s", what, want, out ? out : "(null)");
    mlxn_free(out);
}

static void test_chat(const mlxn_tokenizer *sm) {
    char *tmpl = read_all(DIR "smollm2.chat_template", NULL);
    char *js = read_all(DIR "smollm2.chat.json", NULL);
    CHECK(tmpl && js, "read chat goldens");
    cJSON *root = js ? cJSON_Parse(js) : NULL;
    int n = 0;
    const cJSON *c;
    cJSON_ArrayForEach(c, root) {
        const cJSON *msgs = cJSON_GetObjectItem(c, "messages"), *mm;
        mlxn_chat_msg m[8];
        size_t k = 0;
        cJSON_ArrayForEach(mm, msgs) {
            m[k].role = cJSON_GetObjectItem(mm, "role")->valuestring;
            m[k].content = cJSON_GetObjectItem(mm, "content")->valuestring;
            k++;
        }
        bool gen = cJSON_IsTrue(cJSON_GetObjectItem(c, "add_generation_prompt"));
        check_chat(tmpl, "llama", m, k, gen, cJSON_GetObjectItem(c, "expected")->valuestring,
                   "smollm2 (jinja2 golden)");
        /* the prompt the CLI would feed the model: format, then encode */
        char *out = NULL;
        int32_t *ids = NULL;
        size_t nid = 0;
        if (sm && mlxn_chat_format(tmpl, "llama", m, k, gen, &out) == MLXN_OK &&
            mlxn_tokenizer_encode(sm, out, strlen(out), false, &ids, &nid) == MLXN_OK) {
            const cJSON *want = cJSON_GetObjectItem(c, "ids"), *w;
            size_t j = 0;
            bool same = (size_t)cJSON_GetArraySize(want) == nid;
            cJSON_ArrayForEach(w, want) {
                if (same && ids[j] != (int32_t)w->valuedouble) same = false;
                j++;
            }
            CHECK(same, "chat %d: prompt ids differ from HF (%zu vs %d ids)", n, nid, cJSON_GetArraySize(want));
        }
        mlxn_free(out);
        mlxn_free(ids);
        n++;
    }
    CHECK(n >= 4, "chat goldens: %d conversations", n);
    printf("chat: %d SmolLM2 conversations vs jinja2 render (text and HF ids), 7 hand-derived family cases\n", n);
    cJSON_Delete(root);

    mlxn_chat_style s;
    CHECK(mlxn_chat_detect(tmpl, "llama", &s) == MLXN_OK && s == MLXN_CHAT_CHATML, "SmolLM2 template is ChatML");
    CHECK_STATUS(mlxn_chat_detect(NULL, "gpt-j", &s), MLXN_ERR_UNSUPPORTED);

    /* hand-derived from the HF templates of each family */
    const mlxn_chat_msg conv[] = {{"system", "Be brief."}, {"user", " Hi "}, {"assistant", "Hello."}, {"user", "2+2?"}};
    check_chat("{{ '<|im_start|>' + message['role'] }}", NULL, conv, 4, true,
               "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\n Hi <|im_end|>\n"
               "<|im_start|>assistant\nHello.<|im_end|>\n<|im_start|>user\n2+2?<|im_end|>\n<|im_start|>assistant\n",
               "chatml");
    check_chat("{% if messages[0]['role'] != 'system' %}{{ '<|im_start|>system\\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\\n' }}{% endif %}",
               NULL, conv + 1, 1, true,
               "<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n"
               "<|im_start|>user\n Hi <|im_end|>\n<|im_start|>assistant\n", "qwen2.5 default system");
    check_chat(NULL, "qwen3", conv + 1, 1, false, "<|im_start|>user\n Hi <|im_end|>\n", "qwen3 by arch");
    check_chat("{{ '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n' }}", NULL, conv, 4, true,
               "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nBe brief.<|eot_id|>"
               "<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>"
               "<|start_header_id|>assistant<|end_header_id|>\n\nHello.<|eot_id|>"
               "<|start_header_id|>user<|end_header_id|>\n\n2+2?<|eot_id|>"
               "<|start_header_id|>assistant<|end_header_id|>\n\n", "llama3");
    check_chat("<|start_header_id|> Cutting Knowledge Date: {{ date_string }}", NULL, conv + 1, 1, true,
               "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\n"
               "Cutting Knowledge Date: December 2023\nToday Date: 26 Jul 2024\n\n<|eot_id|>"
               "<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>"
               "<|start_header_id|>assistant<|end_header_id|>\n\n", "llama3.1 date header");
    check_chat("[INST] <<SYS>>", NULL, conv, 4, true,
               "<s>[INST] <<SYS>>\nBe brief.\n<</SYS>>\n\n Hi [/INST] Hello. </s><s>[INST] 2+2? [/INST]", "llama2");
    check_chat("{{ bos_token }}[INST]", NULL, conv + 1, 3, true,
               "<s>[INST]  Hi  [/INST]Hello.</s>[INST] 2+2? [/INST]", "mistral");
    free(tmpl);
    free(js);
}

/* Every allocation of load/encode/decode/write failing in turn must give
 * MLXN_ERR_OUT_OF_MEMORY (or succeed), never crash or leak (ASan build). */
static void test_alloc_failures(void) {
    size_t len;
    char *js = read_all(DIR "spm.tokenizer.json", &len);
    if (!js) return;
    const char *text = "hello <s>world caf\xc3\xa9 \xe4\xb8\x96 zz";
    int bad = 0, ok_at = -1;
    for (long k = 1; k < 2000 && ok_at < 0; k++) {
        mlxn_tokenizer *t = NULL;
        int32_t *ids = NULL;
        size_t n = 0;
        char *d = NULL;
        mlxn_test_fail_alloc_after(k);
        mlxn_status st = mlxn_tokenizer_load_json_mem(&t, js, len);
        if (st == MLXN_OK) st = mlxn_tokenizer_encode(t, text, strlen(text), true, &ids, &n);
        if (st == MLXN_OK) st = mlxn_tokenizer_decode(t, ids, n, false, &d, NULL);
        if (st == MLXN_OK) st = mlxn_tokenizer_write_json(t, tmp_path("oom.tokenizer.json"));
        mlxn_test_fail_alloc_after(0);
        if (st != MLXN_OK && st != MLXN_ERR_OUT_OF_MEMORY) {
            if (bad++ < 3) fprintf(stderr, "  alloc failure %ld: %s %s\n", k, mlxn_status_name(st), mlxn_last_error());
        }
        if (st == MLXN_OK) ok_at = (int)k;
        mlxn_free(d);
        mlxn_free(ids);
        mlxn_tokenizer_destroy(t);
    }
    CHECK(bad == 0 && ok_at > 0, "allocation failures: %d wrong statuses, first success at %d", bad, ok_at);
    printf("alloc failures: each of the first %d allocations failed in turn, all reported OUT_OF_MEMORY\n", ok_at - 1);
    free(js);
}

int main(void) {
    if (!mkdtemp(g_tmp)) {
        printf("test_tokenizer: cannot make a temporary directory\n");
        return 1;
    }
    static golden g[64], gs[64];
    int ng = load_golden(DIR "smollm2.golden", g, 64);
    int ns = load_golden(DIR "spm.golden", gs, 64);
    CHECK(ng > 20 && ns > 5, "goldens: %d smollm2, %d spm strings", ng, ns);

    /* SmolLM2 from tokenizer.json */
    mlxn_tokenizer *sm = NULL;
    CHECK_OK(mlxn_tokenizer_load_json(&sm, DIR "smollm2.tokenizer.json"));
    if (sm) {
        CHECK(mlxn_tokenizer_n_vocab(sm) == 49152, "smollm2 vocab %zu", mlxn_tokenizer_n_vocab(sm));
        CHECK(mlxn_tokenizer_kind(sm) == MLXN_TOK_BYTE_LEVEL, "smollm2 is byte-level");
        check_goldens("smollm2 json", sm, g, ng, false);
        check_roundtrip("smollm2 json", sm, g, ng, false);
        check_random_bytes(sm, false);
        const char *u = "héllo 世界 😀👨‍👩‍👧 ∑x² — fin";
        check_stream(sm, u, strlen(u), false);

        /* the same from plain arrays, as the GGUF loader builds it */
        mlxn_tokenizer *arr = rebuild_from_arrays(sm, "smollm", true, NULL);
        if (arr) check_goldens("smollm2 arrays", arr, g, ng, false);
        mlxn_tokenizer_destroy(arr);

        /* Llama-3 (with ignore_merges) and Qwen2 regexes on the same vocab */
        static golden g3[64];
        const char *fam[2] = {"llama3", "qwen2"};
        for (int f = 0; f < 2; f++) {
            char path[256], what[64];
            snprintf(path, sizeof path, DIR "smollm2_%s.golden", fam[f]);
            int n3 = load_golden(path, g3, 64);
            CHECK(n3 == ng, "%s goldens: %d strings", fam[f], n3);
            mlxn_tokenizer *fz = rebuild_from_arrays(sm, fam[f], true, NULL);
            if (fz) {
                mlxn_tok_options o = mlxn_tokenizer_options(fz);
                o.ignore_merges = f == 0;
                CHECK_OK(mlxn_tokenizer_set_options(fz, &o));
                snprintf(what, sizeof what, "smollm2 vocab + %s regex", fam[f]);
                check_goldens(what, fz, g3, n3, false);
                check_roundtrip(what, fz, g, ng, false);
                snprintf(path, sizeof path, "%s/smollm2_%s.written.tokenizer.json", g_tmp, fam[f]);
                CHECK_OK(mlxn_tokenizer_write_json(fz, path));
                check_written_by_hf(path);
            }
            mlxn_tokenizer_destroy(fz);
        }

        /* write_json → read by us and by HF */
        CHECK_OK(mlxn_tokenizer_write_json(sm, tmp_path("smollm2.written.tokenizer.json")));
        mlxn_tokenizer *back = NULL;
        CHECK_OK(mlxn_tokenizer_load_json(&back, tmp_path("smollm2.written.tokenizer.json")));
        if (back) check_goldens("smollm2 written+reread", back, g, ng, false);
        mlxn_tokenizer_destroy(back);
        check_written_by_hf(tmp_path("smollm2.written.tokenizer.json"));

        int32_t one = mlxn_tokenizer_find(sm, "<|im_start|>");
        CHECK(one == 1 && mlxn_tokenizer_is_control(sm, one), "<|im_start|> is control id 1 (%d)", one);
        char buf[8];
        CHECK(mlxn_tokenizer_decode_token(sm, 1, buf, sizeof buf) == 12, "decode_token returns the full size");
        CHECK(mlxn_tokenizer_decode_token(sm, 49152, buf, sizeof buf) == -1, "decode_token out of range");
    }

    /* SentencePiece-style BPE */
    mlxn_tokenizer *spm = NULL;
    CHECK_OK(mlxn_tokenizer_load_json(&spm, DIR "spm.tokenizer.json"));
    if (spm) {
        CHECK(mlxn_tokenizer_kind(spm) == MLXN_TOK_SPM, "spm kind");
        mlxn_tok_special sp = mlxn_tokenizer_special(spm);
        CHECK(sp.bos == 1 && sp.add_bos && sp.unk == 0, "spm specials bos %d unk %d", sp.bos, sp.unk);
        check_goldens("spm json", spm, gs, ns, true);
        check_roundtrip("spm json", spm, gs, ns, true);
        check_random_bytes(spm, true);
        const char *u = "hello 世界 😀 the";
        check_stream(spm, u, strlen(u), true);

        /* score-based merges (Llama-2 GGUF: no merges, scores): merged
         * token of merge rank r scores -r, so priorities agree */
        size_t nv = mlxn_tokenizer_n_vocab(spm);
        float *scores = malloc(nv * sizeof(float));
        for (size_t i = 0; i < nv; i++) scores[i] = -1e9f;
        for (size_t r = mlxn_tokenizer_n_merges(spm); r-- > 0;) {
            int32_t a, b;
            mlxn_tokenizer_merge(spm, r, &a, &b);
            char cat[256];
            snprintf(cat, sizeof cat, "%s%s", mlxn_tokenizer_token_text(spm, a), mlxn_tokenizer_token_text(spm, b));
            int32_t id = mlxn_tokenizer_find(spm, cat);
            if (id >= 0) scores[id] = -(float)r;
        }
        mlxn_tokenizer *sc = rebuild_from_arrays(spm, NULL, false, scores);
        if (sc) check_goldens("spm scores", sc, gs, ns, true);
        mlxn_tokenizer_destroy(sc);
        /* the same vocabulary and scores as GGUF metadata (tokenizer.ggml.model
         * "llama", no merges), read by the loader's own path */
        bytes img = spm_gguf(spm, scores);
        mlxn_gguf *gf = NULL;
        CHECK_OK(mlxn_gguf_open_memory(&gf, img.p, img.n, "spm.gguf"));
        mlxn_tokenizer *gt = NULL;
        if (gf) CHECK_OK(mlxn_tokenizer_from_gguf(&gt, NULL, gf, "spm.gguf"));
        if (gt) {
            mlxn_tok_special gsp = mlxn_tokenizer_special(gt);
            CHECK(mlxn_tokenizer_kind(gt) == MLXN_TOK_SPM && gsp.bos == 1 && gsp.add_bos && gsp.unk == 0,
                  "spm gguf: kind %d, bos %d (add %d), unk %d", (int)mlxn_tokenizer_kind(gt), gsp.bos, gsp.add_bos,
                  gsp.unk);
            check_goldens("spm gguf", gt, gs, ns, true);
            check_roundtrip("spm gguf", gt, gs, ns, true);
        }
        mlxn_tokenizer_destroy(gt);
        mlxn_gguf_close(gf);
        free(img.p);
        free(scores);

        CHECK_OK(mlxn_tokenizer_write_json(spm, tmp_path("spm.written.tokenizer.json")));
        mlxn_tokenizer *back = NULL;
        CHECK_OK(mlxn_tokenizer_load_json(&back, tmp_path("spm.written.tokenizer.json")));
        if (back) check_goldens("spm written+reread", back, gs, ns, true);
        mlxn_tokenizer_destroy(back);
        check_written_by_hf(tmp_path("spm.written.tokenizer.json"));
    }

    /* Metaspace pre-tokenizer (prepend "first", split; no prefix before a space) */
    mlxn_tokenizer *meta = NULL;
    CHECK_OK(mlxn_tokenizer_load_json(&meta, DIR "spm_meta.tokenizer.json"));
    if (meta) {
        static golden gm[64];
        int nm = load_golden(DIR "spm_meta.golden", gm, 64);
        check_goldens("spm metaspace json", meta, gm, nm, true);
        CHECK_OK(mlxn_tokenizer_write_json(meta, tmp_path("spm_meta.written.tokenizer.json")));
        check_written_by_hf(tmp_path("spm_meta.written.tokenizer.json"));
    }
    mlxn_tokenizer_destroy(meta);

    test_pretok_goldens();
    test_alloc_failures();
    test_bad_json();
    test_chat(sm);

    /* API misuse */
    mlxn_tokenizer *t = NULL;
    const char *toks[] = {"a", "b", "ab"};
    const char *bad_merge[] = {"ab"};
    CHECK_STATUS(mlxn_tokenizer_create_bpe(&t, MLXN_TOK_BYTE_LEVEL, toks, 3, NULL, NULL, bad_merge, 1, NULL), MLXN_ERR_FORMAT);
    CHECK_STATUS(mlxn_tokenizer_create_bpe(&t, MLXN_TOK_BYTE_LEVEL, toks, 3, NULL, NULL, NULL, 0, "nope"), MLXN_ERR_UNSUPPORTED);
    CHECK_STATUS(mlxn_tokenizer_create_bpe(&t, MLXN_TOK_BYTE_LEVEL, NULL, 3, NULL, NULL, NULL, 0, NULL), MLXN_ERR_INVALID_ARG);
    mlxn_tokenizer_destroy(NULL);

    mlxn_tokenizer_destroy(sm);
    mlxn_tokenizer_destroy(spm);
    rm_tmp_tree(g_tmp);
    return test_summary("test_tokenizer");
}
