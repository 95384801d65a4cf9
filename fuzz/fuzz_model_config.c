/* fuzz_model_config.c — libFuzzer target for what a model directory or GGUF
 * file configures: the first byte picks the reader, the rest is its input.
 *   even: config.json text -> mlxn_model_config_from_json (hyper-parameters,
 *         rope scaling, the MLX `quantization` / `quantization_config`
 *         section with per-module overrides)
 *   odd:  a GGUF file -> mlxn_model_config_from_gguf and the tokenizer from
 *         its tokenizer.ggml.* arrays, then an encode/decode round
 * Build: scripts/fuzz.sh build. */
#include "io/io.h"
#include "model/model.h"
#include "model/tokenizer.h"

#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    const char *body = (const char *)data + 1;
    size_t n = size - 1;
    mlxn_model_config cfg;
    memset(&cfg, 0, sizeof cfg);
    if (!(data[0] & 1)) {
        if (mlxn_model_config_from_json(&cfg, body, n, "fuzz") == MLXN_OK) {
            int bits, group;
            mlxn_model_config_quant(&cfg, "model.layers.0.mlp.down_proj", &bits, &group);
            mlxn_model_config_free(&cfg);
        }
        return 0;
    }
    mlxn_gguf *g = NULL;
    if (mlxn_gguf_open_memory(&g, body, n, "fuzz") != MLXN_OK) return 0;
    if (mlxn_model_config_from_gguf(&cfg, g, "fuzz") == MLXN_OK) mlxn_model_config_free(&cfg);
    mlxn_tokenizer *tok = NULL;
    char *tmpl = NULL;
    if (mlxn_tokenizer_from_gguf(&tok, &tmpl, g, "fuzz") == MLXN_OK) {
        int32_t *ids = NULL;
        size_t nids = 0;
        static const char text[] = "Hello world, 123 <|im_start|>\xc3\xa9";
        if (mlxn_tokenizer_encode(tok, text, sizeof text - 1, true, &ids, &nids) == MLXN_OK) {
            char *back = NULL;
            size_t blen = 0;
            if (mlxn_tokenizer_decode(tok, ids, nids, false, &back, &blen) == MLXN_OK) mlxn_free(back);
            mlxn_free(ids);
        }
        mlxn_tokenizer_destroy(tok);
    }
    mlxn_free(tmpl);
    mlxn_gguf_close(g);
    return 0;
}
