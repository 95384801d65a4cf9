/*
 * cmd_generate.c — `mlxn generate`: load a model (MLX/HF directory or GGUF
 * file), encode the prompt (optionally through the model's chat template),
 * prefill it as one graph, then decode by replaying a recorded one-token
 * graph, streaming text to stdout as whole UTF-8 characters. Timing and
 * peak memory go to stderr.
 */
#include "cli/cli.h"
#include "model/model.h"
#include "model/tokenizer.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

static void usage(FILE *f) {
    fprintf(f,
            "usage: mlxn generate -m PATH [-p TEXT | -f FILE | --tokens ID,ID,...] [-n N]\n"
            "                     [--temp T] [--top-k K] [--top-p P] [--min-p P] [--repeat-penalty R] [--cands N]\n"
            "                     [--seed S] [--chat] [--system TEXT] [--ctx N] [--ring] [-b N] [--kv f16|bf16|f32]\n"
            "                     [--ignore-eos] [-v] [--threads N] [--backend cpu|cuda]\n"
            "  -m PATH        model directory (config.json + safetensors) or .gguf file\n"
            "  -n N           tokens to generate (128)\n"
            "  --temp T       0 = greedy (0.8); --top-k 40, --top-p 0.95, --min-p 0.05 by default\n"
            "  --repeat-penalty R  over the last 64 tokens (1 = off)\n"
            "  --cands N      --top-k 0 with top-p/min-p: logits the device picks for a draw (64, at most 256)\n"
            "  --seed S       sampling seed (default: from the clock, printed)\n"
            "  --chat         wrap the prompt in the model's chat template\n"
            "  --ctx N        KV cache tokens (default: the model's context, at most 4096)\n"
            "  --ring         sliding-window cache: generate past --ctx, attending to the last ctx tokens\n"
            "  -b N           prompt tokens per prefill graph (512)\n"
            "  -v             print the (formatted) prompt and its token ids to stderr\n");
}

typedef struct stream {
    const mlxn_tokenizer *tok;
    const mlxn_model_config *cfg; /* end-of-sequence ids end the text unprinted */
    bool ignore_eos;
    mlxn_tokdec dec;
    bool failed;
} stream;

static bool on_token(void *ctx, int32_t id) {
    stream *s = ctx;
    if (!s->tok) {
        printf("%d ", id);
        fflush(stdout);
        return true;
    }
    if (s->cfg && !s->ignore_eos)
        for (int i = 0; i < s->cfg->n_eos; i++)
            if (s->cfg->eos_ids[i] == id) return true;
    char buf[1024];
    size_t n = 0;
    if (mlxn_tokdec_push(&s->dec, s->tok, id, buf, sizeof buf, &n)) {
        s->failed = true;
        return false;
    }
    fwrite(buf, 1, n, stdout);
    fflush(stdout);
    return true;
}

static char *read_text(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    size_t cap = 4096, n = 0;
    char *b = malloc(cap);
    for (size_t r; b && (r = fread(b + n, 1, cap - n - 1, f)) > 0;) {
        n += r;
        if (n + 1 == cap) {
            char *nb = realloc(b, cap *= 2);
            if (!nb) { free(b); b = NULL; }
            else b = nb;
        }
    }
    fclose(f);
    if (b) b[n] = 0;
    return b;
}

static int parse_ids(const char *s, int32_t **out, int *n) {
    int cap = 16;
    *out = malloc((size_t)cap * sizeof **out);
    *n = 0;
    while (*out && *s) {
        char *end;
        long v = strtol(s, &end, 10);
        if (end == s || v < 0 || v > 0x7fffffff) return 0;
        if (*n == cap) {
            int32_t *nb = realloc(*out, (size_t)(cap *= 2) * sizeof **out);
            if (!nb) return 0;
            *out = nb;
        }
        (*out)[(*n)++] = (int32_t)v;
        s = *end == ',' ? end + 1 : end;
        if (*end && *end != ',') return 0;
    }
    return *out && *n > 0;
}

static void add_eos(mlxn_model_config *c, int32_t id) {
    if (id < 0 || c->n_eos >= MLXN_MAX_EOS) return;
    for (int i = 0; i < c->n_eos; i++)
        if (c->eos_ids[i] == id) return;
    c->eos_ids[c->n_eos++] = id;
}

double cli_peak_rss_mib(void) {
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru)) return 0;
    return (double)ru.ru_maxrss / 1024.0; /* KiB on Linux */
}

int cmd_generate(int argc, char **argv) {
    const char *model_path = NULL, *prompt = NULL, *file = NULL, *ids = NULL, *system = NULL;
    const char *backend = "auto", *kvname = "f16";
    long n_predict = 128, ctx = 0, threads = 0, top_k = 40, seed = -1, n_batch = 512, cands = 0;
    double temp = 0.8, top_p = 0.95, min_p = 0.05, rep = 1.0;
    bool chat = false, ignore_eos = false, verbose = false, ring = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        bool ok = true;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) { usage(stdout); return 0; }
        else if (!strcmp(a, "--chat")) { chat = true; continue; }
        else if (!strcmp(a, "--ignore-eos")) { ignore_eos = true; continue; }
        else if (!strcmp(a, "--ring")) { ring = true; continue; }
        else if (!strcmp(a, "-v") || !strcmp(a, "--verbose")) { verbose = true; continue; }
        else if (!v) { fprintf(stderr, "mlxn generate: %s needs a value\n", a); return 2; }
        else if (!strcmp(a, "-m") || !strcmp(a, "--model")) model_path = v;
        else if (!strcmp(a, "-p") || !strcmp(a, "--prompt")) prompt = v;
        else if (!strcmp(a, "-f") || !strcmp(a, "--file")) file = v;
        else if (!strcmp(a, "--tokens")) ids = v;
        else if (!strcmp(a, "--system")) system = v;
        else if (!strcmp(a, "--backend")) backend = v;
        else if (!strcmp(a, "--kv")) kvname = v;
        else if (!strcmp(a, "-n")) ok = cli_int(a, v, 1, 1 << 24, &n_predict);
        else if (!strcmp(a, "--ctx")) ok = cli_int(a, v, 1, 1 << 24, &ctx);
        else if (!strcmp(a, "-b") || !strcmp(a, "--batch")) ok = cli_int(a, v, 1, 1 << 20, &n_batch);
        else if (!strcmp(a, "--threads") || !strcmp(a, "-t")) ok = cli_int(a, v, 1, 1024, &threads);
        else if (!strcmp(a, "--top-k")) ok = cli_int(a, v, 0, 1 << 24, &top_k);
        else if (!strcmp(a, "--seed")) ok = cli_int(a, v, 0, 0x7fffffffL, &seed);
        else if (!strcmp(a, "--temp")) ok = cli_float(a, v, &temp);
        else if (!strcmp(a, "--top-p")) ok = cli_float(a, v, &top_p);
        else if (!strcmp(a, "--min-p")) ok = cli_float(a, v, &min_p);
        else if (!strcmp(a, "--repeat-penalty")) ok = cli_float(a, v, &rep);
        else if (!strcmp(a, "--cands")) ok = cli_int(a, v, 1, MLXN_SAMPLER_MAX_CANDS, &cands);
        else { fprintf(stderr, "mlxn generate: unknown option '%s'\n", a); usage(stderr); return 2; }
        if (!ok) return 2;
        i++;
    }
    if (!model_path || (!!prompt + !!file + !!ids) != 1) {
        fprintf(stderr, "mlxn generate: need -m PATH and exactly one of -p, -f, --tokens\n");
        usage(stderr);
        return 2;
    }
    /* the sampler's own checks, before the model loads (it would say the same after) */
    if (isnan(temp) || !(top_p >= 0 && top_p <= 1) || !(min_p >= 0 && min_p <= 1) || !(rep >= 0) || isinf(rep)) {
        fprintf(stderr,
                "mlxn generate: --temp must be a number (<= 0: greedy), --top-p and --min-p in [0, 1], "
                "--repeat-penalty finite and >= 0 (got %g, %g, %g, %g)\n",
                temp, top_p, min_p, rep);
        return 2;
    }
    mlxn_dtype kvt;
    if (mlxn_dtype_from_name(&kvt, kvname) || !(kvt == MLXN_F16 || kvt == MLXN_BF16 || kvt == MLXN_F32)) {
        fprintf(stderr, "mlxn generate: --kv must be f16, bf16 or f32\n");
        return 2;
    }
    if (seed < 0) seed = (long)(time(NULL) & 0x7fffffff);

    char *text = NULL; /* -f FILE's text, read before the model loads */
    if (file && !(text = read_text(file))) {
        fprintf(stderr, "mlxn generate: cannot read '%s'\n", file);
        return 1;
    }
    int rc = 1;
    mlxn_device *dev = NULL;
    mlxn_model *m = NULL;
    mlxn_tokenizer *tok = NULL;
    mlxn_kvcache *kv = NULL;
    char *tmpl = NULL, *formatted = NULL;
    int32_t *ptoks = NULL;
    int n_prompt = 0;
    mlxn_status st = cli_open_device(&dev, backend, (int)threads);
    if (st) { rc = cli_fail("opening the device", st); goto done; }
    uint64_t t_load = mlxn_now_ns();
    if ((st = mlxn_model_load_ex(&m, dev, model_path, cli_load_progress, NULL))) {
        rc = cli_fail("loading the model", st);
        goto done;
    }
    fprintf(stderr, "mlxn: loaded %s (%.1f MiB of weights) in %.3f s\n", model_path,
            (double)m->weight_bytes / (1 << 20), (double)(mlxn_now_ns() - t_load) * 1e-9);
    if (ids) {
        if (!parse_ids(ids, &ptoks, &n_prompt)) {
            fprintf(stderr, "mlxn generate: --tokens needs comma-separated ids\n");
            rc = 2;
            goto done;
        }
    } else {
        if ((st = mlxn_model_load_tokenizer(m, &tok, &tmpl))) {
            rc = cli_fail("loading the tokenizer (--tokens ID,... runs without one)", st);
            goto done;
        }
        const char *user = file ? text : prompt;
        bool add_special = true;
        if (chat) {
            mlxn_chat_msg msgs[2];
            size_t nm = 0;
            if (system) msgs[nm++] = (mlxn_chat_msg){"system", system};
            msgs[nm++] = (mlxn_chat_msg){"user", user};
            if ((st = mlxn_chat_format(tmpl, mlxn_arch_name(m->cfg.arch), msgs, nm, true, &formatted))) {
                rc = cli_fail("formatting the chat prompt", st);
                goto done;
            }
            if (!tmpl) /* what the user gets instead of the model's own template */
                fprintf(stderr, "mlxn: %s has no chat template; --chat uses the %s family's format\n", model_path,
                        mlxn_arch_name(m->cfg.arch));
            user = formatted;
            add_special = false;
            add_eos(&m->cfg, mlxn_tokenizer_find(tok, "<|im_end|>"));
            add_eos(&m->cfg, mlxn_tokenizer_find(tok, "<|eot_id|>"));
        }
        size_t nt = 0;
        if ((st = mlxn_tokenizer_encode(tok, user, strlen(user), add_special, &ptoks, &nt))) {
            rc = cli_fail("encoding the prompt", st);
            goto done;
        }
        n_prompt = (int)nt;
        add_eos(&m->cfg, mlxn_tokenizer_special(tok).eos);
    }
    if (verbose) {
        fprintf(stderr, "mlxn: prompt %s%s%s= %d tokens:", formatted ? "\"" : "", formatted ? formatted : "",
                formatted ? "\" " : "", n_prompt);
        for (int i = 0; i < n_prompt; i++) fprintf(stderr, " %d", ptoks[i]);
        fprintf(stderr, "\n");
    }
    if (n_prompt <= 0) {
        fprintf(stderr, "mlxn generate: the prompt encodes to no tokens\n");
        goto done;
    }
    if (!ctx) { /* 4096 tokens, or what this run needs, within the model's own context */
        long model_ctx = m->cfg.max_pos > 0 ? m->cfg.max_pos : 4096;
        ctx = model_ctx < 4096 ? model_ctx : 4096;
        const long need = n_prompt + n_predict - 1; /* the last token is not written to the cache */
        if (!ring) {
            if (ctx < need) ctx = need < model_ctx ? need : model_ctx;
            if (n_prompt > ctx) { /* say so before echoing anything */
                fprintf(stderr,
                        "mlxn generate: the prompt is %d tokens, the model's context %ld (max_position_embeddings); "
                        "--ctx N runs past it\n",
                        n_prompt, model_ctx);
                goto done;
            }
            if (need > ctx) {
                fprintf(stderr, "mlxn: -n %ld capped at %ld: the model's context is %ld tokens (--ctx N runs past it)\n",
                        n_predict, ctx - n_prompt + 1, ctx);
                n_predict = ctx - n_prompt + 1;
            }
        }
    }
    if (ring ? n_prompt > ctx : n_prompt + n_predict - 1 > ctx) { /* say so before echoing anything */
        if (ring)
            fprintf(stderr, "mlxn generate: the prompt is %d tokens; a --ring cache of --ctx %ld must hold it\n", n_prompt,
                    ctx);
        else
            fprintf(stderr, "mlxn generate: prompt %d + n %ld tokens exceed --ctx %ld\n", n_prompt, n_predict, ctx);
        goto done;
    }
    if ((st = mlxn_kvcache_create(&kv, m, (int)ctx, kvt))) { rc = cli_fail("allocating the KV cache", st); goto done; }
    kv->ring = ring;
    stream s = {.tok = tok, .cfg = &m->cfg, .ignore_eos = ignore_eos};
    mlxn_tokdec_reset(&s.dec, tok);
    mlxn_generate_params gp = {
        .n_predict = (int)n_predict, .n_batch = (int)n_batch, .ignore_eos = ignore_eos, .on_token = on_token, .ctx = &s,
        .sampling = {.temp = (float)temp, .top_k = (int)top_k, .top_p = (float)top_p, .min_p = (float)min_p,
                     .repeat_penalty = (float)rep, .seed = (uint64_t)seed, .n_cands = (int)cands},
    };
    if (ids) printf("%s ", ids);
    else if (!chat) fwrite(file ? text : prompt, 1, strlen(file ? text : prompt), stdout);
    fflush(stdout);
    mlxn_generate_stats gs;
    int n_out = 0;
    st = mlxn_generate(m, kv, ptoks, n_prompt, &gp, NULL, &n_out, &gs);
    if (tok) {
        char tail[8];
        size_t nt = mlxn_tokdec_flush(&s.dec, tail, sizeof tail);
        fwrite(tail, 1, nt, stdout);
    }
    printf("\n");
    fflush(stdout);
    if (st) { rc = cli_fail("generating", st); goto done; }
    fprintf(stderr, "\nmlxn: %s, %s, seed %ld\n", m->path, mlxn_device_description(dev), seed);
    fprintf(stderr, "mlxn: prompt %d tokens in %.3f s = %.2f tok/s\n", gs.prompt_tokens, gs.prompt_s,
            gs.prompt_s > 0 ? gs.prompt_tokens / gs.prompt_s : 0.0);
    fprintf(stderr, "mlxn: generation %d tokens in %.3f s = %.2f tok/s (%llu nodes/step, replayed)\n",
            gs.gen_tokens, gs.gen_s, gs.gen_tokens > 1 && gs.gen_s > 0 ? (gs.gen_tokens - 1) / gs.gen_s : 0.0,
            (unsigned long long)gs.decode_nodes);
    if ((temp > 0 || (rep > 0 && rep != 1.0)) && gs.gen_tokens)
        fprintf(stderr, "mlxn: sampling: %d of %d tokens drawn from the device's candidates, %d from the whole row\n",
                gs.gen_tokens - gs.row_reads, gs.gen_tokens, gs.row_reads);
    fprintf(stderr,
            "mlxn: peak memory: device %.1f MiB, process RSS %.1f MiB (weights %.1f MiB: %.1f mmapped, %.1f copied "
            "to stack q/k/v and gate/up, %.1f random, made on the device)\n",
            (double)mlxn_device_memory_peak(dev) / 1048576.0, cli_peak_rss_mib(), (double)m->weight_bytes / 1048576.0,
            (double)(m->weight_bytes - m->weight_copy_bytes - m->weight_fill_bytes) / 1048576.0,
            (double)m->weight_copy_bytes / 1048576.0, (double)m->weight_fill_bytes / 1048576.0);
    size_t drv = mlxn_device_memory_driver(dev);
    if (drv)
        fprintf(stderr, "mlxn: device memory taken since open, as the driver reports it: %.1f MiB (buffers, graph "
                        "scratch, cuBLAS; not the CUDA context)\n", (double)drv / 1048576.0);
    rc = 0;
done:
    free(text);
    if (ids) free(ptoks);
    else mlxn_free(ptoks);
    mlxn_free(formatted);
    mlxn_free(tmpl);
    mlxn_kvcache_destroy(kv);
    mlxn_tokenizer_destroy(tok);
    mlxn_model_destroy(m);
    mlxn_device_close(dev);
    return rc;
}
