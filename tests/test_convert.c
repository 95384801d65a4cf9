/*
 * test_convert.c — GGML blocks re-expressed as MLX affine groups keep every
 * weight: for random blocks of each exact type, s*q + b evaluated from the
 * MLX fields equals the gguf-exact f32 dequantization (q4_0, q8_0, q4_k,
 * q5_k: bit for bit; q4_1: within the one f32 rounding of d*q + m that ggml
 * itself does). And the Q/K row un-permutation inverts llama.cpp's permute.
 * And end to end: the tiny HF Llama (bf16, untied head) and Qwen3 (f32,
 * tied head, q/k norm, head_dim 32) converted to MLX 4-bit (groups of 32)
 * by mlxn_convert give PyTorch's logits on the weights MLX itself
 * quantizes and dequantizes (tests/data/models/{llama,qwen3}/ref_mlx_q4.bin,
 * from scripts/gen_convert_ref.py; scales/biases in the weights' own dtype,
 * the tied head being the quantized embedding), with activations kept f32:
 * the 12-token prefill's matmuls dequantize tiles exactly as mx.dequantize
 * does. Every converted linear, the embedding and the head are checked to
 * be 4-bit g32, qwen3's q/k norms dense.
 * And the output directory: a non-empty existing one is refused (its file
 * kept) unless overwrite, and the input's own directory always is (the HF
 * input untouched), with a status and a message naming it.
 */
#include "model/convert.h"
#include "model/model.h"
#include "ops/quant.h"
#include "testutil.h"

#include <unistd.h>

static uint32_t get_bits(const uint32_t *row, int64_t i, int bits) {
    uint64_t bit = (uint64_t)i * (uint64_t)bits, w = bit / 32, off = bit % 32;
    uint64_t v = row[w] >> off;
    if (off + (uint64_t)bits > 32) v |= (uint64_t)row[w + 1] << (32 - off);
    return (uint32_t)(v & ((1u << bits) - 1));
}

static double sb(const void *p, mlxn_dtype t, int64_t i) {
    return t == MLXN_F32 ? ((const float *)p)[i] : mlxn_f16_to_f32(((const uint16_t *)p)[i]);
}

static void exact_case(const char *fmt, mlxn_dtype t) {
    const int64_t N = 7, K = 512;
    mlxn_qweights qw;
    CHECK_OK(mlxn_quant_make_random(fmt, N, K, 1234, &qw));
    int bits;
    mlxn_dtype sbt;
    CHECK(mlxn_ggml_to_mlx_exact(t, &bits, &sbt), "%s is exact", fmt);
    uint32_t *wq = calloc((size_t)(N * K * bits / 32), 4);
    void *s = calloc((size_t)(N * K / 32), 4), *b = calloc((size_t)(N * K / 32), 4);
    CHECK_OK(mlxn_ggml_to_mlx(t, qw.data, N, K, wq, s, b));
    float *ref = malloc((size_t)(N * K) * 4);
    CHECK_OK(mlxn_ggml_dequantize(t, qw.data, ref, N * K));
    int bad = 0;
    for (int64_t n = 0; n < N; n++)
        for (int64_t k = 0; k < K; k++) {
            int64_t g = n * (K / 32) + k / 32;
            double v = sb(s, sbt, g) * get_bits(wq + n * (K * bits / 32), k, bits) + sb(b, sbt, g);
            double r = ref[n * K + k];
            double tol = t == MLXN_Q4_1 ? fabs(r) * 0x1p-24 : 0.0;
            if (!(fabs((double)(float)v - r) <= tol)) {
                if (bad < 3) fprintf(stderr, "  %s [%lld,%lld]: mlx %.9g ggml %.9g\n", fmt, (long long)n, (long long)k, v, r);
                bad++;
            }
        }
    CHECK(bad == 0, "%s -> mlx %d-bit g32 (%s scales): %d of %lld weights changed", fmt, bits,
          mlxn_dtype_name(sbt), bad, (long long)(N * K));
    free(wq); free(s); free(b); free(ref);
    mlxn_quant_free(&qw);
}

static void test_unpermute(void) {
    const int n_head = 3, hd = 8;
    const int N = n_head * hd;
    int32_t hf[24], gg[24], back[24];
    for (int i = 0; i < N; i++) hf[i] = i * 10 + 1;
    /* llama.cpp: w.reshape(n_head, 2, hd/2, ...).swapaxes(1, 2).reshape(...) */
    for (int h = 0; h < n_head; h++)
        for (int i = 0; i < hd / 2; i++)
            for (int p = 0; p < 2; p++) gg[h * hd + i * 2 + p] = hf[h * hd + p * (hd / 2) + i];
    CHECK_OK(mlxn_unpermute_qk_rows(gg, back, N, sizeof(int32_t), n_head));
    CHECK(memcmp(back, hf, sizeof hf) == 0, "unpermute inverts the GGUF Q/K permutation");
    CHECK_STATUS(mlxn_unpermute_qk_rows(gg, back, 25, 4, 3), MLXN_ERR_SHAPE);
}

/* Every linear, the embedding and the head of the converted model are MLX
 * 4-bit, groups of 32, scales/biases in the HF weights' own dtype; a tied
 * head is the embedding itself; qwen3's q/k norms stay dense. */
static void check_converted_4bit(const char *name, const mlxn_model *m, mlxn_dtype sbt, bool tied) {
    int bad = 0;
    const mlxn_linear *lin[2 + 64 * MLXN_LIN_COUNT];
    int n = 0;
    lin[n++] = &m->embed;
    lin[n++] = &m->head;
    for (int l = 0; l < m->cfg.layers && l < 64; l++)
        for (int g = 0; g < MLXN_LIN_COUNT; g++) lin[n++] = mlxn_layer_linear(&m->L[l], (mlxn_linear_group)g);
    for (int i = 0; i < n; i++)
        if (lin[i]->q.bits != 4 || lin[i]->q.group_size != 32 || !lin[i]->scales || !lin[i]->biases ||
            mlxn_buffer_dtype(lin[i]->scales) != sbt || mlxn_buffer_dtype(lin[i]->biases) != sbt)
            bad++;
    CHECK(bad == 0 && n == 2 + m->cfg.layers * MLXN_LIN_COUNT,
          "%s: converted linears, embedding and head are MLX 4-bit g32 with %s scales (%d of %d not)", name,
          mlxn_dtype_name(sbt), bad, n);
    CHECK(m->cfg.tie_embeddings == tied && (!tied || (m->head.w == m->embed.w && m->head.scales == m->embed.scales)),
          "%s: head %s", name, tied ? "tied: the quantized embedding" : "untied");
    if (m->cfg.qk_norm)
        CHECK(m->L[0].q_norm && m->L[0].k_norm && mlxn_buffer_dtype(m->L[0].q_norm) == MLXN_F32 &&
                  mlxn_buffer_dtype(m->L[0].k_norm) == MLXN_F32,
              "%s: q/k norms kept dense f32", name);
}

/* tests/data/models/<name> converted to MLX 4-bit g32 by mlxn_convert vs
 * PyTorch f32 on the weights MLX quantizes and dequantizes itself
 * (<name>/ref_mlx_q4.bin, scripts/gen_convert_ref.py). */
static void test_hf_to_mlx4(const char *name, mlxn_dtype sbt, bool tied) {
    char src[256], ref[300], what[200];
    snprintf(src, sizeof src, "tests/data/models/%s", name);
    snprintf(ref, sizeof ref, "%s/ref_mlx_q4.bin", src);
    FILE *f = fopen(ref, "rb");
    CHECK(f != NULL, "%s present", ref);
    if (!f) return;
    int32_t T = 0, V = 0;
    CHECK(fread(&T, 4, 1, f) == 1 && fread(&V, 4, 1, f) == 1 && T > 0 && T <= 64 && V > 0 && V <= 4096, "header");
    if (!(T > 0 && T <= 64 && V > 0 && V <= 4096)) {
        fclose(f);
        return;
    }
    int32_t toks[64];
    float *want = malloc((size_t)T * (size_t)V * 4), *got = malloc((size_t)T * (size_t)V * 4);
    CHECK(fread(toks, 4, (size_t)T, f) == (size_t)T && fread(want, 4, (size_t)(T * V), f) == (size_t)(T * V),
          "reference data");
    fclose(f);
    char dir[] = "/tmp/mlxn-conv-XXXXXX", stage[] = "/tmp/mlxn-conv-in-XXXXXX", cmd[1024];
    CHECK(mkdtemp(dir) != NULL, "mkdtemp");
    const char *in = src;
    snprintf(cmd, sizeof cmd, "%s/tokenizer.json", src);
    if (access(cmd, R_OK) != 0) {
        /* mlxn_convert loads the input's tokenizer (HF too: it is copied
         * over); qwen3 has none, so convert a copy beside llama's byte
         * tokenizer (vocab 256 too). The weights are untouched. */
        CHECK(mkdtemp(stage) != NULL, "mkdtemp");
        snprintf(cmd, sizeof cmd, "cp %s/config.json %s/model.safetensors tests/data/models/llama/tokenizer.json %s/",
                 src, src, stage);
        CHECK(system(cmd) == 0, "%s", cmd);
        in = stage;
    }
    mlxn_convert_options o = {.bits = 4, .group_size = 32};
    CHECK_OK(mlxn_convert(in, dir, &o));
    if (in == stage) rm_tmp_tree(stage);
    setenv("MLXN_F32_ACTIVATIONS", "1", 1);
    mlxn_device *dev = NULL;
    mlxn_model *m = NULL;
    mlxn_kvcache *kv = NULL;
    mlxn_forward *fw = NULL;
    CHECK_OK(mlxn_device_open(&dev, "cpu", NULL));
    CHECK_OK(mlxn_model_load(&m, dev, dir));
    if (m) {
        check_converted_4bit(name, m, sbt, tied);
        CHECK_OK(mlxn_kvcache_create(&kv, m, T, MLXN_F32));
        CHECK_OK(mlxn_forward_create(&fw, m, kv, T, MLXN_MODE_OPTIMIZED, MLXN_FWD_ALL_LOGITS));
        CHECK_OK(mlxn_forward_run(fw, toks));
        CHECK_OK(mlxn_forward_logits(fw, got, (size_t)(T * V)));
        double *r = malloc((size_t)(T * V) * sizeof(double));
        double maxd = 0, se = 0, sr = 0, worst = 0, maxr = 0;
        for (int i = 0; i < T * V; i++) {
            r[i] = want[i];
            double d = fabs((double)got[i] - r[i]);
            if (d > maxd) maxd = d;
            if (d / (1e-4 + 1e-4 * fabs(r[i])) > worst) worst = d / (1e-4 + 1e-4 * fabs(r[i]));
            if (fabs(r[i]) > maxr) maxr = fabs(r[i]);
            se += d * d;
            sr += r[i] * r[i];
        }
        printf("  %s -> mlx 4-bit g32: max |diff| %.3g (max |logit| %.3g), nmse %.3g over %d logits, "
               "worst %.2g of the tolerance\n", name, maxd, maxr, sr > 0 ? se / sr : 0.0, T * V, worst);
        /* f32 on both sides over the same quantized weights: summation order
         * only. One tolerance for both: qwen3's max |diff| (~1e-5) is larger
         * than llama's only because its logits are (|logit| up to ~70: the
         * tied head is the unit-variance embedding), ~2e-7 relative; measured
         * worst 0.02 of the tolerance. */
        snprintf(what, sizeof what, "%s: mlxn convert -> MLX 4-bit logits vs PyTorch on MLX-dequantized weights", name);
        check_close(what, got, r, (size_t)(T * V), 1e-4, 1e-4);
        free(r);
    }
    unsetenv("MLXN_F32_ACTIVATIONS");
    mlxn_forward_destroy(fw);
    mlxn_kvcache_destroy(kv);
    mlxn_model_destroy(m);
    mlxn_device_close(dev);
    free(want);
    free(got);
    rm_tmp_tree(dir);
}

static long file_size(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return -1;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fclose(f);
    return n;
}

static void test_out_dir(void) {
    char dir[] = "/tmp/mlxn-conv-out-XXXXXX", keep[256], hf[256], cmd[2048];
    CHECK(mkdtemp(dir) != NULL, "mkdtemp");
    snprintf(keep, sizeof keep, "%s/notes.txt", dir);
    FILE *f = fopen(keep, "wb");
    if (f) {
        fputs("a user's file", f);
        fclose(f);
    }
    mlxn_convert_options o = {.bits = 4, .group_size = 32};
    CHECK_STATUS(mlxn_convert("tests/data/models/llama", dir, &o), MLXN_ERR_INVALID_ARG);
    CHECK(strstr(mlxn_last_error(), dir) && strstr(mlxn_last_error(), "not empty"), "message names %s: '%s'", dir,
          mlxn_last_error());
    snprintf(cmd, sizeof cmd, "%s/model.safetensors", dir);
    CHECK(file_size(keep) == 13 && file_size(cmd) < 0, "refused: the user's file kept, nothing written");
    o.overwrite = true;
    CHECK_OK(mlxn_convert("tests/data/models/llama", dir, &o));
    CHECK(file_size(keep) == 13 && file_size(cmd) > 0, "overwrite: the model written beside the user's file");
    /* the HF input's own directory, even with overwrite */
    snprintf(hf, sizeof hf, "%s/hf", dir);
    snprintf(cmd, sizeof cmd, "mkdir -p %s && cp tests/data/models/llama/config.json "
             "tests/data/models/llama/model.safetensors tests/data/models/llama/tokenizer.json %s/", hf, hf);
    CHECK(system(cmd) == 0, "%s", cmd);
    snprintf(cmd, sizeof cmd, "%s/model.safetensors", hf);
    long before = file_size(cmd);
    CHECK_STATUS(mlxn_convert(hf, hf, &o), MLXN_ERR_INVALID_ARG);
    CHECK(strstr(mlxn_last_error(), "input's own directory") != NULL, "message: '%s'", mlxn_last_error());
    CHECK(before > 0 && file_size(cmd) == before, "the input kept (%ld -> %ld bytes)", before, file_size(cmd));
    printf("  convert into a non-empty / the input's directory: refused, files kept\n");
    rm_tmp_tree(dir);
}

int main(void) {
    exact_case("q4_0", MLXN_Q4_0);
    exact_case("q4_1", MLXN_Q4_1);
    exact_case("q8_0", MLXN_Q8_0);
    exact_case("q4_k", MLXN_Q4_K);
    exact_case("q5_k", MLXN_Q5_K);
    uint32_t w[1];
    CHECK_STATUS(mlxn_ggml_to_mlx(MLXN_Q6_K, w, 1, 256, w, w, w), MLXN_ERR_UNSUPPORTED);
    test_unpermute();
    test_hf_to_mlx4("llama", MLXN_BF16, false); /* bf16 weights, untied head */
    test_hf_to_mlx4("qwen3", MLXN_F32, true);   /* f32 weights, tied head, q/k norm, head_dim 32 */
    test_out_dir();
    return test_summary("test_convert");
}
