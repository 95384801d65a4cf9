/*
 * cmd_bench.c — `mlxn bench`: prefill (pp) and decode (tg) tokens/s, as
 * llama-bench measures them. pp: one recorded graph of -p tokens, warmed up
 * once, then replayed -r times from an empty cache. tg: -n one-token steps
 * of a recorded decode graph replayed from an empty cache, -r times. With
 * -d N (llama-bench's depth) each timed run starts instead from a cache that
 * an untimed prefill filled with N tokens. Each
 * reports the median of its -r rates (tok_s) and their standard deviation.
 * Token ids are fixed pseudo-random ids. Text table, or one JSON object
 * with --json.
 */
#include "cli/cli.h"
#include "model/model.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static void usage(FILE *f) {
    fprintf(f, "usage: mlxn bench -m PATH [-p 512] [-n 128] [-r 3] [-d 0] [--json] [--threads N] [--backend cpu|cuda]\n"
               "                  [--kv f16|bf16|f32] [--mode direct|batched|optimized] [--bits B] [--group-size G]\n"
               "PATH may be synthetic:llama3-1b|llama3-3b|llama3-8b|llama3-70b-layer|smollm2-135m[:q<bits>][:g<group>]\n"
               "(random MLX-quantized weights, no file; --bits / --group-size say the same as :q / :g,\n"
               "default 4 and 64). pp and tg each start from an empty KV cache, or with -d N from one\n"
               "holding N tokens (an untimed prefill before every run, as llama-bench's -d);\n"
               "tok/s is the median of the -r repeats. Decode replays one recorded graph per step\n"
               "(--mode direct: one submission per op instead).\n");
}

/* A JSON string literal (quotes, backslashes, control bytes escaped). */
static void json_str(FILE *f, const char *s) {
    fputc('"', f);
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') fprintf(f, "\\%c", c);
        else if (c < 0x20) fprintf(f, "\\u%04x", c);
        else fputc(c, f);
    }
    fputc('"', f);
}

/* The median of x[0..n) (the mean of the middle two for even n; x is
 * sorted in place) and the sample standard deviation around the mean. */
static void median_sd(double *x, int n, double *med, double *sd) {
    double s = 0, q = 0;
    for (int i = 0; i < n; i++) s += x[i];
    double mean = s / n;
    for (int i = 0; i < n; i++) q += (x[i] - mean) * (x[i] - mean);
    *sd = n > 1 ? sqrt(q / (n - 1)) : 0;
    qsort(x, (size_t)n, sizeof *x, cli_cmp_double);
    *med = n % 2 ? x[n / 2] : 0.5 * (x[n / 2 - 1] + x[n / 2]);
}

static mlxn_mode g_mode = MLXN_MODE_OPTIMIZED;

static const char *mode_name(mlxn_mode m) {
    return m == MLXN_MODE_DIRECT ? "direct" : m == MLXN_MODE_BATCHED ? "batched" : "optimized";
}

/* The KV cache emptied, then holding the d tokens toks[0..d) (an untimed
 * prefill by *fd, created on first use in chunks of at most 512 tokens; d =
 * 0: only emptied). The forward runs wait for the device, so timing starts
 * after it. */
static mlxn_status fill_depth(mlxn_model *m, mlxn_kvcache *kv, const int32_t *toks, int d, mlxn_forward **fd) {
    mlxn_kvcache_clear(kv);
    if (d <= 0) return MLXN_OK;
    const int chunk = d < 512 ? d : 512;
    if (!*fd) {
        mlxn_status st = mlxn_forward_create(fd, m, kv, chunk, g_mode, 0);
        if (st) return st;
    }
    for (int done = 0; done + chunk <= d; done += chunk) {
        mlxn_status st = mlxn_forward_run(*fd, toks + done);
        if (st) return st;
    }
    if (d % chunk) { /* the remainder by a forward of its own */
        mlxn_forward *fr = NULL;
        mlxn_status st = mlxn_forward_create(&fr, m, kv, d % chunk, g_mode, 0);
        if (!st) st = mlxn_forward_run(fr, toks + d - d % chunk);
        mlxn_forward_destroy(fr);
        if (st) return st;
    }
    return MLXN_OK;
}

/* toks: d + p ids (the depth's, then the timed prompt's) */
static mlxn_status bench_pp(mlxn_model *m, mlxn_kvcache *kv, const int32_t *toks, int d, int p, int reps,
                            double *tps) {
    mlxn_forward *f = NULL, *fd = NULL;
    mlxn_status st = mlxn_forward_create(&f, m, kv, p, g_mode, 0);
    for (int r = -1; r < reps && !st; r++) { /* r = -1: records; not timed */
        if ((st = fill_depth(m, kv, toks, d, &fd))) break;
        uint64_t t0 = mlxn_now_ns();
        st = mlxn_forward_run(f, toks + d);
        if (r >= 0) tps[r] = p / ((double)(mlxn_now_ns() - t0) * 1e-9);
    }
    mlxn_forward_destroy(fd);
    mlxn_forward_destroy(f);
    return st;
}

/* *launches, *phases, *nodes: kernels a decode step launches (CUDA) and
 * work phases it runs (CPU; 0: the backend does not count), and graph nodes
 * it runs, from the session's stats after the runs */
static mlxn_status bench_tg(mlxn_model *m, mlxn_kvcache *kv, const int32_t *toks, int d, int n, int reps,
                            double *tps, unsigned *launches, unsigned *phases, unsigned *nodes) {
    mlxn_forward *f = NULL, *fd = NULL;
    mlxn_status st = mlxn_forward_create(&f, m, kv, 1, g_mode, 0);
    /* greedy steps pipelined where generate pipelines them */
    bool pipe = !st && mlxn_forward_pipelines(f);
    if (!st) { /* record once */
        mlxn_kvcache_clear(kv);
        st = mlxn_forward_run(f, toks);
    }
    for (int r = 0; r < reps && !st; r++) {
        if ((st = fill_depth(m, kv, toks, d, &fd))) break;
        uint64_t t0 = mlxn_now_ns();
        int32_t t = toks[d];
        if (pipe) { /* as generate runs greedy decoding: one step queued ahead */
            st = mlxn_forward_queue(f, &t);
            for (int i = 1; i < n && !st; i++) {
                st = mlxn_forward_queue(f, NULL);
                if (!st) st = mlxn_forward_next_argmax(f, &t);
            }
            if (!st) st = mlxn_forward_next_argmax(f, &t);
        } else {
            for (int i = 0; i < n && !st; i++) {
                st = mlxn_forward_run(f, &t);
                if (!st) st = mlxn_forward_argmax(f, &t);
            }
        }
        tps[r] = n / ((double)(mlxn_now_ns() - t0) * 1e-9);
    }
    mlxn_graph_stats gs;
    if (!st && !mlxn_session_stats(mlxn_forward_session(f), &gs)) {
        *launches = gs.launches;
        *phases = gs.phases;
        *nodes = gs.nodes;
    }
    mlxn_forward_destroy(fd);
    mlxn_forward_destroy(f);
    return st;
}

int cmd_bench(int argc, char **argv) {
    const char *model_path = NULL, *backend = "auto", *kvname = "f16";
    long pp = 512, tg = 128, reps = 3, depth = 0, threads = 0, bits = 0, group = 0;
    bool json = false;
    char spec[256];
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        bool ok = true;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) { usage(stdout); return 0; }
        else if (!strcmp(a, "--json")) { json = true; continue; }
        else if (!v) { fprintf(stderr, "mlxn bench: %s needs a value\n", a); return 2; }
        else if (!strcmp(a, "-m") || !strcmp(a, "--model")) model_path = v;
        else if (!strcmp(a, "--backend")) backend = v;
        else if (!strcmp(a, "--kv")) kvname = v;
        else if (!strcmp(a, "--mode")) {
            if (!strcmp(v, "direct")) g_mode = MLXN_MODE_DIRECT;
            else if (!strcmp(v, "batched")) g_mode = MLXN_MODE_BATCHED;
            else if (!strcmp(v, "optimized")) g_mode = MLXN_MODE_OPTIMIZED;
            else { fprintf(stderr, "mlxn bench: --mode is direct, batched or optimized\n"); return 2; }
        }
        else if (!strcmp(a, "-p")) ok = cli_int(a, v, 0, 1 << 20, &pp);
        else if (!strcmp(a, "-n")) ok = cli_int(a, v, 0, 1 << 20, &tg);
        else if (!strcmp(a, "-r")) ok = cli_int(a, v, 1, 1000, &reps);
        else if (!strcmp(a, "-d") || !strcmp(a, "--depth")) ok = cli_int(a, v, 0, 1 << 20, &depth);
        else if (!strcmp(a, "--threads") || !strcmp(a, "-t")) ok = cli_int(a, v, 1, 1024, &threads);
        else if (!strcmp(a, "--bits")) ok = cli_int(a, v, 1, 64, &bits);
        else if (!strcmp(a, "--group-size")) ok = cli_int(a, v, 1, 1 << 20, &group);
        else { fprintf(stderr, "mlxn bench: unknown option '%s'\n", a); usage(stderr); return 2; }
        if (!ok) return 2;
        i++;
    }
    if (!model_path || (!pp && !tg)) {
        fprintf(stderr, "mlxn bench: %s\n", !model_path ? "need -m PATH" : "-p and -n are both 0: nothing to time");
        usage(stderr);
        return 2;
    }
    if (bits || group) { /* synthetic models only: as the spec's :q<bits> / :g<group> (the loader checks them) */
        if (strncmp(model_path, "synthetic:", 10)) {
            fprintf(stderr, "mlxn bench: --bits and --group-size choose a synthetic model's quantization; "
                            "'%s' is a file, whose quantization is its own\n", model_path);
            return 2;
        }
        int n = snprintf(spec, sizeof spec, "%s", model_path);
        if (n > 0 && (size_t)n < sizeof spec && bits) n += snprintf(spec + n, sizeof spec - (size_t)n, ":q%ld", bits);
        if (n > 0 && (size_t)n < sizeof spec && group)
            n += snprintf(spec + n, sizeof spec - (size_t)n, ":g%ld", group);
        if (n <= 0 || (size_t)n >= sizeof spec) {
            fprintf(stderr, "mlxn bench: model name too long\n");
            return 2;
        }
        model_path = spec;
    }
    mlxn_dtype kvt;
    if (mlxn_dtype_from_name(&kvt, kvname) || !(kvt == MLXN_F16 || kvt == MLXN_BF16 || kvt == MLXN_F32)) {
        fprintf(stderr, "mlxn bench: --kv must be f16, bf16 or f32\n");
        return 2;
    }
    mlxn_device *dev = NULL;
    mlxn_model *m = NULL;
    mlxn_kvcache *kv = NULL;
    int32_t *toks = NULL;
    double *pps = calloc((size_t)reps, sizeof(double)), *tgs = calloc((size_t)reps, sizeof(double));
    int rc = 1;
    mlxn_status st = cli_open_device(&dev, backend, (int)threads);
    if (st) { rc = cli_fail("opening the device", st); goto done; }
    if ((st = mlxn_model_load_ex(&m, dev, model_path, cli_load_progress, NULL))) { rc = cli_fail("loading the model", st); goto done; }
    long ctx = depth + (pp > tg ? pp : tg), ntok = depth + (pp > 1 ? pp : 1);
    if ((st = mlxn_kvcache_create(&kv, m, (int)ctx, kvt))) { rc = cli_fail("allocating the KV cache", st); goto done; }
    toks = malloc((size_t)ntok * sizeof *toks);
    if (!toks || !pps || !tgs) goto done;
    uint64_t x = 0x9E3779B97F4A7C15ull;
    for (long i = 0; i < ntok; i++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        toks[i] = (int32_t)(x % (uint64_t)m->cfg.vocab);
    }
    if (pp && (st = bench_pp(m, kv, toks, (int)depth, (int)pp, (int)reps, pps))) { rc = cli_fail("prefill", st); goto done; }
    unsigned launches = 0, phases = 0, nodes = 0;
    if (tg && (st = bench_tg(m, kv, toks, (int)depth, (int)tg, (int)reps, tgs, &launches, &phases, &nodes))) {
        rc = cli_fail("decode", st);
        goto done;
    }
    double pm = 0, psd = 0, tm = 0, tsd = 0;
    if (pp) median_sd(pps, (int)reps, &pm, &psd);
    if (tg) median_sd(tgs, (int)reps, &tm, &tsd);
    const size_t drv = mlxn_device_memory_driver(dev); /* one driver query for both outputs */
    if (json) {
        printf("{\"model\": ");
        json_str(stdout, model_path);
        printf(", \"backend\": \"%s\", \"threads\": %d, \"mode\": \"%s\", \"depth\": %ld, "
               "\"pp\": {\"tokens\": %ld, \"tok_s\": %.3f}, "
               "\"tg\": {\"tokens\": %ld, \"tok_s\": %.3f}, \"weights_mib\": %.1f, \"kv_mib\": %.1f, "
               "\"device_peak_mib\": %.1f, \"device_driver_mib\": %.1f, \"tg_nodes\": %u, \"tg_launches\": %u, "
               "\"tg_phases\": %u}\n",
               mlxn_device_kind(dev), mlxn_device_threads(dev), mode_name(g_mode), depth, pp, pm, tg, tm,
               (double)m->weight_bytes / 1048576.0, (double)mlxn_kvcache_bytes(kv) / 1048576.0,
               (double)mlxn_device_memory_peak(dev) / 1048576.0, (double)drv / 1048576.0, nodes, launches, phases);
    } else {
        printf("model: %s (%s, %.1f MiB weights)\ndevice: %s\n", model_path, mlxn_arch_name(m->cfg.arch),
               (double)m->weight_bytes / 1048576.0, mlxn_device_description(dev));
        printf("%-8s %8s %14s %10s\n", "test", "tokens", "tok/s", "± sd");
        if (depth) printf("(pp and tg after %ld tokens already in the KV cache)\n", depth);
        if (pp) printf("%-8s %8ld %14.2f %10.2f\n", "pp", pp, pm, psd);
        if (tg) printf("%-8s %8ld %14.2f %10.2f\n", "tg", tg, tm, tsd);
        printf("mode %s; memory: weights %.1f MiB, KV cache %.1f MiB, device peak %.1f MiB\n", mode_name(g_mode),
               (double)m->weight_bytes / 1048576.0, (double)mlxn_kvcache_bytes(kv) / 1048576.0,
               (double)mlxn_device_memory_peak(dev) / 1048576.0);
        if (drv)
            printf("device memory taken since open (driver): %.1f MiB = weights + KV cache + %.1f %% (buffers, graph "
                   "scratch, cuBLAS; not the CUDA context)\n",
                   (double)drv / 1048576.0,
                   100.0 * ((double)drv / (double)(m->weight_bytes + mlxn_kvcache_bytes(kv)) - 1.0));
        if (tg && launches) printf("decode step: %u graph nodes, %u kernel launches\n", nodes, launches);
        if (tg && phases) printf("decode step: %u graph nodes, %u work phases (barriers + 1)\n", nodes, phases);
    }
    rc = 0;
done:
    free(toks);
    free(pps);
    free(tgs);
    mlxn_kvcache_destroy(kv);
    mlxn_model_destroy(m);
    mlxn_device_close(dev);
    return rc;
}
