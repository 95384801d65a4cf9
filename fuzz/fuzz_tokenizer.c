/* fuzz_tokenizer.c — libFuzzer target for the tokenizer.
 *
 * The first input byte picks the mode, the rest is the payload:
 *   0: encode/decode with SmolLM2 (byte-level) — decode(encode(x)) == x
 *      whenever every byte of x has a token and x holds no '<' (no specials)
 *   1: the same with the tiny SentencePiece tokenizer (all bytes have <0xNN>;
 *      exact unless x holds '<' or a literal "▁")
 *   2: parse the payload as tokenizer.json; if it loads, encode/decode/write
 *   3: payload as little-endian int32 ids → decode and streaming decode
 * Test tokenizers are read from tests/data/tok/ (run from the repo root, or
 * set MLXN_TOK_DIR).
 *
 * Build (from the repo root):
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -std=c11 -D_GNU_SOURCE \
 *     -Iinclude -Isrc fuzz/fuzz_tokenizer.c src/core/alloc.c src/core/dtype.c \
 *     src/core/status.c src/model/tokenizer.c \
 *     src/model/tok_json.c -lcjson -lpcre2-8 -lm -o build/fuzz_tokenizer
 *   build/fuzz_tokenizer -max_total_time=60 fuzz/corpus/fuzz_tokenizer
 * (scripts/fuzz.sh builds and runs it with the other targets.)
 */
#include "model/tokenizer.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static mlxn_tokenizer *g_bl, *g_spm;
static bool g_bl_ok[256];

static mlxn_tokenizer *load(const char *name) {
    const char *dir = getenv("MLXN_TOK_DIR");
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", dir ? dir : "tests/data/tok", name);
    mlxn_tokenizer *t = NULL;
    if (mlxn_tokenizer_load_json(&t, path) != MLXN_OK) {
        fprintf(stderr, "fuzz_tokenizer: %s\n", mlxn_last_error());
        abort();
    }
    return t;
}

static void init(void) {
    if (g_bl) return;
    g_bl = load("smollm2.tokenizer.json");
    g_spm = load("spm.tokenizer.json");
    for (int b = 0; b < 256; b++) {
        char c = (char)b;
        int32_t *ids = NULL;
        size_t n = 0;
        g_bl_ok[b] = mlxn_tokenizer_encode(g_bl, &c, 1, false, &ids, &n) == MLXN_OK && n > 0;
        mlxn_free(ids);
    }
}

static void roundtrip(const mlxn_tokenizer *t, const char *s, size_t n, bool expect_exact) {
    int32_t *ids = NULL;
    size_t m = 0;
    if (mlxn_tokenizer_encode(t, s, n, true, &ids, &m) != MLXN_OK) {
        /* only a fuzzed tokenizer.json may fail (e.g. its regex hits PCRE2's match limit) */
        if (t == g_bl || t == g_spm || !mlxn_last_error()[0]) abort();
        return;
    }
    char *d = NULL;
    size_t dl = 0;
    if (mlxn_tokenizer_decode(t, ids, m, true, &d, &dl) != MLXN_OK) abort();
    if (expect_exact && (dl != n || memcmp(d, s, n) != 0)) abort();
    /* streaming must give the same bytes as the whole decode */
    mlxn_tokdec dec;
    mlxn_tokdec_reset(&dec, t);
    char *acc = malloc(dl + 8), chunk[1024];
    size_t an = 0;
    for (size_t i = 0; i < m; i++) {
        if (mlxn_tokenizer_is_control(t, ids[i])) continue;
        size_t k;
        if (mlxn_tokdec_push(&dec, t, ids[i], chunk, sizeof chunk, &k) != MLXN_OK) abort();
        if (an + k > dl) abort();
        memcpy(acc + an, chunk, k);
        an += k;
    }
    an += mlxn_tokdec_flush(&dec, acc + an, dl + 8 - an);
    if (an != dl || memcmp(acc, d, dl) != 0) abort();
    free(acc);
    mlxn_free(d);
    mlxn_free(ids);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    init();
    if (size == 0) return 0;
    const char *s = (const char *)data + 1;
    size_t n = size - 1;
    switch (data[0] % 4) {
    case 0: {
        bool exact = memchr(s, '<', n) == NULL;
        for (size_t i = 0; i < n && exact; i++) exact = g_bl_ok[(unsigned char)s[i]];
        roundtrip(g_bl, s, n, exact);
        break;
    }
    case 1:
        /* a literal "▁" in the text decodes as a space, as in SentencePiece */
        roundtrip(g_spm, s, n, memchr(s, '<', n) == NULL && !memmem(s, n, "\xE2\x96\x81", 3));
        break;
    case 2: {
        mlxn_tokenizer *t = NULL;
        if (mlxn_tokenizer_load_json_mem(&t, s, n) == MLXN_OK) {
            roundtrip(t, "Hello world 123 \xe4\xb8\x96", 17, false);
            roundtrip(t, s, n < 256 ? n : 256, false);
            mlxn_tokenizer_destroy(t);
        } else if (!mlxn_last_error()[0]) {
            abort(); /* a failure must say why */
        }
        break;
    }
    case 3: {
        size_t m = n / 4;
        int32_t *ids = malloc(m * sizeof(int32_t) + 1);
        memcpy(ids, s, m * 4);
        const mlxn_tokenizer *t = (data[0] & 4) ? g_spm : g_bl;
        char *d = NULL;
        size_t dl;
        mlxn_status st = mlxn_tokenizer_decode(t, ids, m, false, &d, &dl);
        mlxn_tokdec dec;
        mlxn_tokdec_reset(&dec, t);
        char chunk[512];
        for (size_t i = 0; i < m; i++) {
            size_t k;
            (void)mlxn_tokdec_push(&dec, t, ids[i], chunk, sizeof chunk, &k);
        }
        (void)mlxn_tokdec_flush(&dec, chunk, sizeof chunk);
        if (st == MLXN_OK) mlxn_free(d);
        free(ids);
        break;
    }
    }
    return 0;
}
