/*
 * test_cuda_model.c — whole models on CUDA against the CPU backend.
 *
 * For each tiny model in tests/data/models (Llama dense and MLX 4-bit,
 * Qwen2, Qwen3, Mistral, GGUF Llama and Q8_0): prefill logits of a 12-token
 * prompt on CUDA within NMSE 1e-4 of the CPU (both round activations to
 * int8 for one-row quantized matmuls, in different orders), and 16 greedy
 * tokens equal. With the default model present (scripts/get-model.sh):
 * the three chat prompts of the e2e goldens, 32 greedy tokens each, with
 * f32 activations (all equal on both backends, prompt logits within NMSE
 * 1e-4) and on the int8 path users get (equal, or the first divergence a
 * flip within the backends' logit disagreement there, its margins shown;
 * prompt logits within 1e-3: bf16 prefill GEMMs on CUDA).
 * Prefill through cuBLAS (bf16 operands, 64-token prompts, activations as
 * a user gets them): the logits of every position within NMSE 1e-3 of the
 * CPU's.
 * Synthetic models: the device's random fills (kernels_fill.cu) equal the
 * host generator (core/fill.h) byte for byte for every kind, odd sizes and
 * offsets, every bit width and group of a synthetic linear, and one fill
 * longer than the kernel's grid; synthetic:tiny at several bit widths has
 * the same weight bytes on CUDA as on the CPU, and its logits and greedy
 * tokens compare as the tiny models' do.
 * Skips, saying so, without a CUDA device.
 */
#include "model/model.h"
#include "testutil.h"
#include "forward_queue.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <unistd.h>

static mlxn_device *cpu, *gpu;

static double nmse(const float *ref, const float *got, size_t n) {
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) {
        double d = (double)got[i] - (double)ref[i];
        num += d * d;
        den += (double)ref[i] * (double)ref[i];
    }
    return den > 0 ? num / den : num;
}

/* Greedy tokens by generate; logits of the prompt's last row too. */
static void run(mlxn_device *dev, const char *path, const int32_t *prompt, int np, int n, int32_t *toks,
                float *logits, int *vocab) {
    mlxn_model *m = NULL;
    CHECK_OK(mlxn_model_load(&m, dev, path));
    if (!m) return;
    *vocab = m->cfg.vocab;
    mlxn_kvcache *kv = NULL;
    CHECK_OK(mlxn_kvcache_create(&kv, m, np + n, MLXN_F32));
    mlxn_forward *f = NULL;
    CHECK_OK(mlxn_forward_create(&f, m, kv, np, MLXN_MODE_OPTIMIZED, 0));
    CHECK_OK(mlxn_forward_run(f, prompt));
    if (logits) CHECK_OK(mlxn_forward_logits(f, logits, (size_t)m->cfg.vocab));
    mlxn_forward_destroy(f);
    mlxn_kvcache_clear(kv);
    mlxn_generate_params p = {.n_predict = n, .ignore_eos = true};
    int got = 0;
    CHECK_OK(mlxn_generate(m, kv, prompt, np, &p, toks, &got, NULL));
    mlxn_kvcache_destroy(kv);
    mlxn_model_destroy(m);
}

/* The model at path on both devices: prefill logits of a 12-token prompt
 * (NMSE bound 1e-4, f32 activations on both) and 16 greedy tokens. */
static void cpu_vs_gpu(const char *label, const char *path) {
    int32_t prompt[12];
    for (int i = 0; i < 12; i++) prompt[i] = (int32_t)(3 + 17 * i % 200);
    int32_t tc[16] = {0}, tg[16] = {0};
    float *lc = malloc(1 << 20), *lg = malloc(1 << 20);
    int V = 0;
    run(cpu, path, prompt, 12, 16, tc, lc, &V);
    run(gpu, path, prompt, 12, 16, tg, lg, &V);
    double e = nmse(lc, lg, (size_t)V);
    CHECK(e <= 1e-4, "%s: prefill logits NMSE %.3g (bound 1e-4)", label, e);
    CHECK(!memcmp(tc, tg, sizeof tc), "%s: 16 greedy tokens equal on CPU and CUDA", label);
    printf("  %-24s logits NMSE %.2e, greedy tokens %s\n", label, e, memcmp(tc, tg, sizeof tc) ? "differ" : "equal");
    free(lc);
    free(lg);
}

static void tiny(const char *name) {
    char path[256];
    /* GGUF models sit in their folder as model.gguf */
    snprintf(path, sizeof path, "tests/data/models/%s%s", name, strstr(name, "gguf") ? "/model.gguf" : "");
    if (access(path, R_OK)) return;
    cpu_vs_gpu(name, path);
}

/* A fill made on the GPU (at element offset `at` of a buffer of at + n + 1
 * elements) against mlxn_fill_host; prints the first mismatches. */
static void fill_case(const char *what, const mlxn_fill *f, int64_t n, int64_t at) {
    size_t eb = mlxn_fill_elem_bytes(f->kind);
    mlxn_dtype dt = f->kind == MLXN_FILL_BF16 ? MLXN_BF16 : f->kind == MLXN_FILL_F32 ? MLXN_F32 : MLXN_U32;
    int64_t total = at + n + 1;
    mlxn_buffer *b = NULL;
    CHECK_OK(mlxn_buffer_create(&b, gpu, dt, 1, &total));
    if (!b) return;
    uint8_t *got = malloc((size_t)total * eb), *want = malloc((size_t)n * eb);
    memset(got, 0x5a, (size_t)total * eb);
    CHECK_OK(mlxn_buffer_write(b, 0, got, (size_t)total * eb));
    CHECK_OK(mlxn_buffer_fill(b, (size_t)at * eb, f, (size_t)n * eb));
    CHECK_OK(mlxn_buffer_read(b, 0, got, (size_t)total * eb));
    mlxn_fill_host(want, f, 0, (size_t)n);
    int bad = 0;
    for (int64_t i = 0; i < n; i++)
        if (memcmp(got + (size_t)(at + i) * eb, want + (size_t)i * eb, eb)) {
            if (bad < 4) {
                uint32_t g = 0, w = 0;
                memcpy(&g, got + (size_t)(at + i) * eb, eb);
                memcpy(&w, want + (size_t)i * eb, eb);
                fprintf(stderr, "  %s: element %lld: host 0x%08x, device 0x%08x\n", what, (long long)i, w, g);
            }
            bad++;
        }
    bool kept = true;
    for (size_t i = 0; i < (size_t)at * eb; i++) kept &= got[i] == 0x5a;
    for (size_t i = (size_t)(at + n) * eb; i < (size_t)total * eb; i++) kept &= got[i] == 0x5a;
    CHECK(!bad && kept, "%s: %lld elements at %lld: %d differ from the host's; bytes around %s", what, (long long)n,
          (long long)at, bad, kept ? "kept" : "overwritten");
    free(got);
    free(want);
    mlxn_buffer_destroy(b);
}

/* One synthetic linear [N, K] made on the GPU, as the loader makes it. */
static int linear_case(int bits, int group, int64_t N, int64_t K) {
    const char *what[3] = {"weight", "scales", "biases"};
    int64_t shape[3][2] = {{N, K * bits / 32}, {N, K / group}, {N, K / group}};
    mlxn_dtype dt[3] = {MLXN_U32, MLXN_BF16, MLXN_BF16};
    int bad = 0;
    for (int p = 0; p < 3; p++) {
        mlxn_fill f = mlxn_synthetic_fill("model.layers.0.self_attn.q_proj", what[p], K, bits);
        mlxn_buffer *b = NULL;
        CHECK_OK(mlxn_buffer_create_filled(&b, gpu, dt[p], 2, shape[p], &f));
        if (!b) return 1;
        size_t n = mlxn_buffer_nbytes(b);
        uint8_t *got = malloc(n), *want = malloc(n);
        CHECK_OK(mlxn_buffer_read(b, 0, got, n));
        mlxn_fill_host(want, &f, 0, n / mlxn_fill_elem_bytes(f.kind));
        if (memcmp(got, want, n)) {
            bad++;
            fprintf(stderr, "  q%d g%d [%lld, %lld] %s differs from the host's\n", bits, group, (long long)N,
                    (long long)K, what[p]);
        }
        free(got);
        free(want);
        mlxn_buffer_destroy(b);
    }
    return bad;
}

static void test_fill(void) {
    const int64_t sizes[] = {1, 3, 255, 257, 65537, 1000003};
    for (int k = MLXN_FILL_BITS; k <= MLXN_FILL_F32; k++)
        for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
            mlxn_fill f = {(mlxn_fill_kind)k, 77 + i, -0.3f, 0.7f, 0};
            char what[64];
            snprintf(what, sizeof what, "fill kind %d", k);
            fill_case(what, &f, sizes[i], 0);
            fill_case(what, &f, sizes[i], 5);
        }
    /* more elements than the kernel's grid covers (65535·8 blocks of 256):
     * the grid-stride loop's second pass */
    mlxn_fill big = {MLXN_FILL_BITS, 5, 0, 0, 0};
    fill_case("fill kind 1 past one grid", &big, (int64_t)65535 * 8 * 256 + 12345, 0);
    const int bits[] = {2, 3, 4, 5, 6, 8}, groups[] = {32, 64, 128};
    const int64_t N[] = {1, 7, 129}, Kg[] = {1, 3, 32}; /* K = group·Kg */
    int bad = 0, cases = 0;
    for (int b = 0; b < 6; b++)
        for (int g = 0; g < 3; g++)
            for (int n = 0; n < 3; n++)
                for (int k = 0; k < 3; k++, cases++) bad += linear_case(bits[b], groups[g], N[n], groups[g] * Kg[k]);
    CHECK(!bad, "synthetic linears on CUDA equal the host generator (%d of %d tensors differ)", bad, cases * 3);
    /* GGML blocks: 1000 blocks of each type the fill makes, at an offset */
    const mlxn_dtype gt[6] = {MLXN_Q4_0, MLXN_Q4_1, MLXN_Q8_0, MLXN_Q4_K, MLXN_Q5_K, MLXN_Q6_K};
    int gbad = 0;
    for (int t = 0; t < 6; t++) {
        int64_t elems = 1003 * (int64_t)mlxn_dtype_block_elems(gt[t]);
        size_t bb = mlxn_dtype_block_bytes(gt[t]);
        mlxn_fill f = {MLXN_FILL_GGML, 900 + (uint64_t)t, 0.002f, 0.001f, (int)gt[t]};
        mlxn_buffer *b = NULL;
        CHECK_OK(mlxn_buffer_create(&b, gpu, gt[t], 1, &elems));
        if (!b) continue;
        CHECK_OK(mlxn_buffer_fill(b, 3 * bb, &f, 1000 * bb));
        uint8_t *got = malloc(1000 * bb), *want = malloc(1000 * bb);
        CHECK_OK(mlxn_buffer_read(b, 3 * bb, got, 1000 * bb));
        mlxn_fill_host(want, &f, 0, 1000 * bb);
        gbad += memcmp(got, want, 1000 * bb) != 0;
        free(got);
        free(want);
        mlxn_buffer_destroy(b);
    }
    CHECK(!gbad, "GGML block fills on CUDA equal the host generator (%d of 6 types differ)", gbad);
    printf("  random fills: CUDA equals the host generator byte for byte (3 kinds x %zu sizes x 2 offsets, "
           "%d synthetic linears over bits 2-8, groups 32-128)\n",
           sizeof sizes / sizeof sizes[0], cases);
}

/* Every weight tensor of the same synthetic model on both devices. */
static void same_weights(const char *spec) {
    mlxn_model *a = NULL, *b = NULL;
    CHECK_OK(mlxn_model_load(&a, cpu, spec));
    CHECK_OK(mlxn_model_load(&b, gpu, spec));
    if (!a || !b) {
        mlxn_model_destroy(a);
        mlxn_model_destroy(b);
        return;
    }
    const mlxn_buffer *pa[64], *pb[64];
    int n = 0;
    const mlxn_model *ms[2] = {a, b};
    const mlxn_buffer **ps[2] = {pa, pb};
    for (int d = 0; d < 2; d++) {
        const mlxn_model *m = ms[d];
        int j = 0;
        const mlxn_linear *ls[] = {&m->embed, &m->head};
        for (int i = 0; i < 2; i++) ps[d][j++] = ls[i]->w, ps[d][j++] = ls[i]->scales, ps[d][j++] = ls[i]->biases;
        ps[d][j++] = m->out_norm;
        for (int l = 0; l < m->cfg.layers && j + 12 <= 64; l++) {
            const mlxn_layer *L = &m->L[l];
            const mlxn_linear *ll[] = {&L->wq, &L->wk, &L->wv, &L->wo, &L->gate, &L->up, &L->down};
            for (int i = 0; i < 7; i++) ps[d][j++] = ll[i]->w;
            ps[d][j++] = L->wo.scales, ps[d][j++] = L->down.biases;
            ps[d][j++] = L->attn_norm, ps[d][j++] = L->ffn_norm;
        }
        n = j;
    }
    int bad = 0;
    for (int i = 0; i < n; i++) {
        if (!pa[i] || !pb[i]) { /* GGML linears have no scales / biases */
            bad += pa[i] != pb[i];
            continue;
        }
        size_t na = mlxn_buffer_nbytes(pa[i]), nb = mlxn_buffer_nbytes(pb[i]);
        uint8_t *x = malloc(na), *y = malloc(nb);
        CHECK_OK(mlxn_buffer_read(pa[i], 0, x, na));
        CHECK_OK(mlxn_buffer_read(pb[i], 0, y, nb));
        if (na != nb || memcmp(x, y, na)) bad++;
        free(x);
        free(y);
    }
    CHECK(!bad && b->weight_fill_bytes == b->weight_bytes && b->weight_copy_bytes == 0,
          "%s: %d weight tensors equal on CPU and CUDA (%d differ); %zu of %zu bytes made on the GPU", spec, n, bad,
          b->weight_fill_bytes, b->weight_bytes);
    mlxn_model_destroy(a);
    mlxn_model_destroy(b);
}

static void synthetic(const char *spec) {
    same_weights(spec);
    cpu_vs_gpu(spec, spec);
}

/* Decode with int8 activations (the M = 1 integer kernels): each op
 * launched on its own (direct) against the replayed graph, whose one-stream
 * capture launches rope / kv_write groups and norm or silu_mul fused with
 * the next matmul's x quantization, and runs an add_rms_norm between two
 * MLX 4-bit matmuls inside them (cu_epi). Both against f32 activations
 * (direct) as the reference. Where the graph does only the first kind of
 * fusion its int8 x is the direct one's (NMSE 0 between them, measured);
 * the norm inside the matmuls quantizes s·w and scales by the norm factor
 * afterwards, so a code can move by one step where x / d sits within float
 * rounding of a half, and the model carries that step on through its KV
 * cache (synthetic:llama-2k:q4:g128 on an H200: replay vs direct 3e-14 at
 * the first step, then 4-5e-5 at every later one; against f32 the direct
 * launches 1.14e-4, the graph 1.09e-4). The check: the replayed graph is as
 * close to the f32 result as the direct launches (x 1.25); the two paths'
 * difference prints. */
static void int8_decode(const char *spec) {
    mlxn_model *m = NULL;
    CHECK_OK(mlxn_model_load(&m, gpu, spec));
    if (!m) return;
    enum { NP = 12, NS = 8 };
    int V = m->cfg.vocab;
    float *lg[3] = {malloc((size_t)NS * V * 4), malloc((size_t)NS * V * 4), malloc((size_t)NS * V * 4)};
    int32_t prompt[NP];
    for (int i = 0; i < NP; i++) prompt[i] = (int32_t)(5 + 31 * i % 1000);
    /* int8 direct, int8 replayed graph, f32 activations direct */
    const mlxn_mode modes[3] = {MLXN_MODE_DIRECT, MLXN_MODE_OPTIMIZED, MLXN_MODE_DIRECT};
    for (int k = 0; k < 3; k++) {
        if (k < 2) unsetenv("MLXN_F32_ACTIVATIONS");
        else setenv("MLXN_F32_ACTIVATIONS", "1", 1);
        mlxn_kvcache *kv = NULL;
        mlxn_forward *pf = NULL, *f = NULL;
        CHECK_OK(mlxn_kvcache_create(&kv, m, NP + NS, MLXN_F32));
        CHECK_OK(mlxn_forward_create(&pf, m, kv, NP, MLXN_MODE_OPTIMIZED, 0));
        CHECK_OK(mlxn_forward_run(pf, prompt));
        CHECK_OK(mlxn_forward_create(&f, m, kv, 1, modes[k], 0));
        for (int t = 0; t < NS && f; t++) {
            int32_t tok = (int32_t)(7 + 101 * t % 1500);
            CHECK_OK(mlxn_forward_run(f, &tok));
            CHECK_OK(mlxn_forward_logits(f, lg[k] + (size_t)t * V, (size_t)V));
        }
        mlxn_forward_destroy(f);
        mlxn_forward_destroy(pf);
        mlxn_kvcache_destroy(kv);
    }
    double worst = 0, wd = 0, wr = 0, rms = 0;
    char steps[NS * 12] = "";
    for (int t = 0; t < NS; t++) {
        double e = nmse(lg[0] + (size_t)t * V, lg[1] + (size_t)t * V, (size_t)V);
        double ed = nmse(lg[2] + (size_t)t * V, lg[0] + (size_t)t * V, (size_t)V);
        double er = nmse(lg[2] + (size_t)t * V, lg[1] + (size_t)t * V, (size_t)V);
        if (e > worst) worst = e;
        if (ed > wd) wd = ed;
        if (er > wr) wr = er;
        snprintf(steps + strlen(steps), sizeof steps - strlen(steps), " %.1e", e);
        for (int i = 0; i < V; i++) rms += (double)lg[0][(size_t)t * V + i] * (double)lg[0][(size_t)t * V + i];
    }
    rms = sqrt(rms / ((double)NS * V));
    CHECK(wr <= 1.25 * wd + 1e-12 && rms > 1e-3 && isfinite(rms),
          "%s: int8 decode, %d steps: against f32 activations, direct %.3g, replayed graph %.3g (bound 1.25x the "
          "direct), logits rms %.3g",
          spec, NS, wd, wr, rms);
    printf("  %-24s int8 decode against f32 activations: direct %.2e, replayed graph %.2e; replay vs direct: worst "
           "NMSE %.2e over %d steps (logits rms %.3g; by step%s)\n",
           spec, wd, wr, worst, NS, rms, steps);
    free(lg[2]);
    free(lg[0]);
    free(lg[1]);
    mlxn_model_destroy(m);
    setenv("MLXN_F32_ACTIVATIONS", "1", 1);
}

/* Logits on dev for the token after prompt[0..np) + toks[0..i): the prompt
 * as one prefill, then toks one decode step each (the graphs generate
 * runs), into out (V floats). */
static void step_logits(mlxn_device *dev, const char *path, const int32_t *prompt, int np, const int32_t *toks,
                        int i, float *out) {
    mlxn_model *m = NULL;
    CHECK_OK(mlxn_model_load(&m, dev, path));
    if (!m) return;
    mlxn_kvcache *kv = NULL;
    mlxn_forward *fp = NULL, *f1 = NULL;
    CHECK_OK(mlxn_kvcache_create(&kv, m, np + i + 1, MLXN_F32));
    CHECK_OK(mlxn_forward_create(&fp, m, kv, np, MLXN_MODE_OPTIMIZED, 0));
    CHECK_OK(mlxn_forward_create(&f1, m, kv, 1, MLXN_MODE_OPTIMIZED, 0));
    if (fp && f1) {
        CHECK_OK(mlxn_forward_run(fp, prompt));
        for (int k = 0; k < i; k++) CHECK_OK(mlxn_forward_run(f1, &toks[k]));
        CHECK_OK(mlxn_forward_logits(i ? f1 : fp, out, (size_t)m->cfg.vocab));
    }
    mlxn_forward_destroy(f1);
    mlxn_forward_destroy(fp);
    mlxn_kvcache_destroy(kv);
    mlxn_model_destroy(m);
}

/* The default model on both backends, for each chat prompt of the e2e
 * goldens (tests/data/e2e: the three prompts' chat-formatted ids): prompt
 * logits within `bound` NMSE, and 32 greedy tokens. With f32 activations
 * (tie_ok false) the tokens must all be equal. On the int8 path users get
 * (x rounded to int8 per 32 for the one-row matmuls, in a different order
 * on each backend) a greedy pick may flip where two logits are nearly
 * tied: then both backends' logits for that same context are taken, and
 * the flip must be within the backends' disagreement there: the two
 * tokens' logit gaps (CPU: its pick over CUDA's; CUDA: the reverse), which
 * sum to how much the backends disagree on the pair, at most 4·√2 times
 * the RMS difference of the two logit rows (a pair's difference is √2 ×
 * one logit's). The margin is printed either way. */
static void default_model_mode(const char *gguf, const cJSON *cases, bool f32, double bound) {
    if (f32) setenv("MLXN_F32_ACTIVATIONS", "1", 1);
    else unsetenv("MLXN_F32_ACTIVATIONS");
    const char *mode = f32 ? "f32 activations" : "int8 activations";
    enum { NT = 32, VMAX = 49152 };
    float *lc = malloc(VMAX * 4), *lg = malloc(VMAX * 4);
    int ci = 0;
    const cJSON *c;
    cJSON_ArrayForEach(c, cases) {
        int32_t ids[256], tc[NT] = {0}, tg[NT] = {0};
        int np = 0;
        const cJSON *v;
        cJSON_ArrayForEach(v, cJSON_GetObjectItemCaseSensitive(c, "ids")) if (np < 256) ids[np++] = (int32_t)v->valuedouble;
        CHECK(np > 0 && np < 256, "e2e case %d: %d prompt ids", ci, np);
        int V = 0, Vg = 0;
        run(cpu, gguf, ids, np, NT, tc, lc, &V);
        run(gpu, gguf, ids, np, NT, tg, lg, &Vg);
        CHECK(V == Vg && V > 0 && V <= VMAX, "SmolLM2: vocabularies %d / %d", V, Vg);
        if (V != Vg || V <= 0 || V > VMAX) break;
        double e = nmse(lc, lg, (size_t)V);
        CHECK(e <= bound, "SmolLM2 (%s), prompt %d: prompt logits NMSE %.3g (bound %.0e)", mode, ci, e, bound);
        int i = 0;
        while (i < NT && tc[i] == tg[i]) i++;
        if (i < NT) { /* the same context on both: how near a tie the pick was */
            step_logits(cpu, gguf, ids, np, tc, i, lc);
            step_logits(gpu, gguf, ids, np, tc, i, lg);
            double gc = (double)lc[tc[i]] - (double)lc[tg[i]], gg = (double)lg[tg[i]] - (double)lg[tc[i]], rd = 0;
            for (int k = 0; k < V; k++) rd += ((double)lc[k] - (double)lg[k]) * ((double)lc[k] - (double)lg[k]);
            rd = sqrt(rd / V);
            printf("  SmolLM2 (%s), prompt %d: first divergence at token %d (cpu %d, cuda %d): CPU gap %.4f, CUDA "
                   "gap %.4f, RMS logit difference %.4f\n",
                   mode, ci, i, tc[i], tg[i], gc, gg, rd);
            CHECK(!f32 && gc >= 0 && gg >= 0 && gc + gg <= 4 * sqrt(2.0) * rd,
                  "SmolLM2 (%s), prompt %d: %d of %d greedy tokens equal; at the divergence the gaps %.4g + %.4g "
                  "against 4·√2 × RMS difference %.4g (f32 activations: no divergence allowed)",
                  mode, ci, i, NT, gc, gg, rd);
        }
        printf("  SmolLM2-135M Q4_1 (%s), prompt %d: logits NMSE %.2e, %d of %d greedy tokens equal\n", mode, ci, e,
               i, NT);
        ci++;
    }
    CHECK(ci == 3, "SmolLM2: %d e2e prompts compared (3 expected)", ci);
    free(lc);
    free(lg);
}

static void default_model(void) {
    const char *gguf = "models/SmolLM2-135M-Instruct.Q4_1.gguf", *golden = "tests/data/e2e/smollm2_mlxlm_greedy.json";
    if (access(gguf, R_OK)) {
        printf("  default model absent (scripts/get-model.sh): its comparison skipped\n");
        return;
    }
    FILE *fp = fopen(golden, "rb");
    char *txt = NULL;
    long n = 0;
    if (fp && !fseek(fp, 0, SEEK_END) && (n = ftell(fp)) > 0 && !fseek(fp, 0, SEEK_SET) && (txt = malloc((size_t)n + 1)))
        txt[fread(txt, 1, (size_t)n, fp)] = 0;
    if (fp) fclose(fp);
    cJSON *j = txt ? cJSON_Parse(txt) : NULL;
    const cJSON *cases = j ? cJSON_GetObjectItemCaseSensitive(j, "cases") : NULL;
    CHECK(cJSON_IsArray(cases), "%s: readable, with a cases array", golden);
    if (cJSON_IsArray(cases)) {
        default_model_mode(gguf, cases, true, 1e-4);
        /* prompt logits through the prefill GEMMs: bf16 operands on CUDA (as prefill_vs_cpu) */
        default_model_mode(gguf, cases, false, 1e-3);
    }
    setenv("MLXN_F32_ACTIVATIONS", "1", 1);
    cJSON_Delete(j);
    free(txt);
}

/* Logits of every position of a 64-token prompt (on CUDA the cuBLAS
 * path: M >= 16) of spec on dev into out (T * V floats); returns V. */
static int prefill_all(mlxn_device *dev, const char *spec, float *out, size_t cap) {
    enum { T = 64 };
    int32_t prompt[T];
    for (int i = 0; i < T; i++) prompt[i] = (int32_t)(5 + 37 * i % 250); /* inside every vocabulary here */
    mlxn_model *m = NULL;
    CHECK_OK(mlxn_model_load(&m, dev, spec));
    if (!m) return 0;
    int V = m->cfg.vocab;
    mlxn_kvcache *kv = NULL;
    mlxn_forward *f = NULL;
    CHECK_OK(mlxn_kvcache_create(&kv, m, T, MLXN_F32));
    CHECK_OK(mlxn_forward_create(&f, m, kv, T, MLXN_MODE_OPTIMIZED, MLXN_FWD_ALL_LOGITS));
    if (f && (size_t)T * (size_t)V <= cap) {
        CHECK_OK(mlxn_forward_run(f, prompt));
        CHECK_OK(mlxn_forward_logits(f, out, (size_t)T * (size_t)V));
    } else {
        V = 0;
    }
    mlxn_forward_destroy(f);
    mlxn_kvcache_destroy(kv);
    mlxn_model_destroy(m);
    return V;
}

static void prefill_vs_cpu(const char *spec) {
    const size_t cap = (size_t)64 * 32768;
    float *got = malloc(cap * 4), *ref = malloc(cap * 4);
    int V = prefill_all(gpu, spec, got, cap), Vc = prefill_all(cpu, spec, ref, cap);
    CHECK(V && V == Vc, "%s: prefill vocabularies %d / %d (<= 32768)", spec, V, Vc);
    if (V && V == Vc) {
        double e = nmse(ref, got, (size_t)64 * (size_t)V);
        /* bf16 operands (8 significant bits) in every prefill matmul on CUDA */
        CHECK(e <= 1e-3, "%s: 64-token prefill logits NMSE %.3g against the CPU (bound 1e-3)", spec, e);
        printf("  %-28s 64-token prefill: logits NMSE %.2e against the CPU\n", spec, e);
    }
    free(got);
    free(ref);
}

int main(void) {
    /* both backends keep activations in f32: int8 rounding of x differs in
     * order between them and flips near-tied greedy picks */
    setenv("MLXN_F32_ACTIVATIONS", "1", 1);
    if (mlxn_device_open(&gpu, "cuda", NULL) != MLXN_OK) {
        printf("test_cuda_model: skipped: no CUDA device (%s)\n", mlxn_last_error());
        printf("test_cuda_model: 0 passed, 0 failed, 1 skipped\n");
        return 0;
    }
    CHECK_OK(mlxn_device_open(&cpu, "cpu", NULL));
    const char *names[] = {"llama", "llama_q4", "qwen2", "qwen3", "mistral", "llama_gguf", "llama_q8_gguf", "qwen3_gguf"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) tiny(names[i]);
    test_fill();
    const char *syn[] = {"synthetic:tiny", "synthetic:tiny:q3:g32", "synthetic:tiny:q5:g64", "synthetic:tiny:q8:g32"};
    for (size_t i = 0; i < sizeof syn / sizeof syn[0]; i++) synthetic(syn[i]);
    same_weights("synthetic:llama-2k:q4_k");
    same_weights("synthetic:llama-2k:q6_k");
    int8_decode("synthetic:llama-2k");
    int8_decode("synthetic:llama-2k:q4:g128");
    default_model();
    /* pipelined greedy decode on the int8 decode path (k_mlx4g, k_q4kg) */
    unsetenv("MLXN_F32_ACTIVATIONS");
    const char *pq[] = {"synthetic:llama-2k:q4:g64", "synthetic:llama-2k:q4_k", "synthetic:tiny"};
    for (size_t i = 0; i < sizeof pq / sizeof pq[0]; i++) prefill_vs_cpu(pq[i]);
    for (size_t i = 0; i < sizeof pq / sizeof pq[0]; i++) {
        mlxn_model *m = NULL;
        CHECK_OK(mlxn_model_load(&m, gpu, pq[i]));
        if (m) check_forward_queue(m, pq[i]);
        mlxn_model_destroy(m);
    }
    setenv("MLXN_F32_ACTIVATIONS", "1", 1);
    mlxn_device_close(cpu);
    mlxn_device_close(gpu);
    return test_summary("test_cuda_model");
}
