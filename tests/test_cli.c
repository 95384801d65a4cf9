/*
 * test_cli.c — the mlxn program's machine-readable output and bad input,
 * run as a user runs it (the binary next to this test's build folder:
 * build/tests/test_cli -> build/mlxn), on the CPU backend (CUDA builds too).
 *  - `bench ops --json` (with and without --bw-each) prints one JSON
 *    object and nothing else on stdout: read_bandwidth_gbps and results,
 *    each matmul with format, m, n, k, threads and positive us / gbps /
 *    gflops (issue #3's schema), and the sampling and decode-step ops with
 *    the same keys.
 *  - `bench --json` on synthetic:tiny: model, backend, threads and pp / tg
 *    with the requested token counts and positive tok_s (issue #4's); with
 *    --bits / --group-size the model is the spec with :q / :g added.
 *  - --bits that MLX does not define, --bits on a GGML-block synthetic
 *    model or on a file: an error naming why.
 *  - generate against the tiny Llama's 256-token context: a longer prompt
 *    refused, -n capped to what fits, a --ring cache too small for the
 *    prompt refused.
 *  - an unknown format / a missing model: a nonzero exit status and a
 *    message on stderr naming what was wrong, nothing on stdout.
 */
#include "testutil.h"

#include <cjson/cJSON.h>
#include <libgen.h>
#include <sys/wait.h>

static char g_bin[512];

/* Run `mlxn ARGS` with stdout into *out (malloc'd) and stderr into a file
 * read into *err; returns the exit status (-1: not run). */
static int run_cli(const char *args, char **out, char **err) {
    char cmd[8192], errf[64];
    snprintf(errf, sizeof errf, "/tmp/mlxn_test_cli_%d.err", (int)getpid());
    snprintf(cmd, sizeof cmd, "%s %s 2>%s", g_bin, args, errf);
    *out = *err = NULL;
    FILE *p = popen(cmd, "r");
    if (!p) return -1;
    size_t cap = 1 << 16, n = 0;
    char *b = malloc(cap);
    size_t k;
    while (b && (k = fread(b + n, 1, cap - n - 1, p)) > 0) {
        n += k;
        if (n + 1 == cap) {
            char *nb = realloc(b, cap *= 2);
            if (!nb) free(b);
            b = nb;
        }
    }
    int st = pclose(p);
    if (b) b[n] = 0;
    *out = b;
    FILE *e = fopen(errf, "rb");
    if (e) {
        char *eb = calloc(1, 1 << 16);
        if (eb && fread(eb, 1, (1 << 16) - 1, e) == 0) eb[0] = 0;
        fclose(e);
        *err = eb;
    }
    remove(errf);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static double num(const cJSON *o, const char *k) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsNumber(v) ? v->valuedouble : -1;
}

static void bench_ops_json(const char *extra) {
    char args[256], *out, *err;
    snprintf(args, sizeof args,
             "bench ops --backend cpu --quick --json --rows 1 --formats q4_0,mlx-q4-g64 --shape 256x512 %s", extra);
    int rc = run_cli(args, &out, &err);
    CHECK(rc == 0, "mlxn %s: exit status %d (%s)", args, rc, err ? err : "");
    cJSON *j = out ? cJSON_Parse(out) : NULL;
    CHECK(j != NULL, "mlxn %s: stdout is one JSON object: '%.200s'", args, out ? out : "");
    if (j) {
        CHECK(num(j, "read_bandwidth_gbps") > 0, "%s: read_bandwidth_gbps %g", args, num(j, "read_bandwidth_gbps"));
        const cJSON *res = cJSON_GetObjectItemCaseSensitive(j, "results"), *r;
        int mm = 0, good = 0, others = 0, oshape = 0, attn = 0;
        cJSON_ArrayForEach(r, res) {
            const cJSON *op = cJSON_GetObjectItemCaseSensitive(r, "op");
            if (cJSON_IsString(op) && strcmp(op->valuestring, "matmul")) { /* every other op: the same keys */
                const cJSON *f = cJSON_GetObjectItemCaseSensitive(r, "format");
                others++;
                oshape += cJSON_IsString(f) && num(r, "m") >= 1 && num(r, "n") >= 1 && num(r, "k") >= 0 &&
                          num(r, "threads") >= 1 && num(r, "us") > 0 && num(r, "gbps") > 0 && num(r, "gflops") >= 0;
                attn += !strcmp(op->valuestring, "attention");
            }
            if (!cJSON_IsString(op) || strcmp(op->valuestring, "matmul")) continue;
            mm++;
            const cJSON *f = cJSON_GetObjectItemCaseSensitive(r, "format");
            good += cJSON_IsString(f) && (!strcmp(f->valuestring, "q4_0") || !strcmp(f->valuestring, "mlx-q4-g64")) &&
                    num(r, "m") == 1 && num(r, "n") == 256 && num(r, "k") == 512 && num(r, "threads") >= 1 &&
                    num(r, "us") > 0 && num(r, "gbps") > 0 && num(r, "gflops") > 0;
        }
        CHECK(mm == 2 && good == 2, "%s: %d matmul results, %d with format, m = 1, n, k, threads, us, gbps, gflops",
              args, mm, good);
        CHECK(others >= 8 && oshape == others && attn == 1,
              "%s: %d results of other ops (sampling, decode-step ops), %d with every key, %d attention", args, others,
              oshape, attn);
        cJSON_Delete(j);
    }
    printf("  mlxn %s: %s\n", args, j ? "JSON" : "not JSON");
    free(out);
    free(err);
}

/* `mlxn ARGS` (a bench of synthetic:tiny, -p 16 -n 4, --json): "model"
 * is `model` (the spec with --bits / --group-size folded in), "depth" is
 * `depth` (-d: tokens in the cache before each timed run). */
static void bench_json(const char *args, const char *model, int depth) {
    char *out, *err;
    int rc = run_cli(args, &out, &err);
    CHECK(rc == 0, "mlxn %s: exit status %d (%s)", args, rc, err ? err : "");
    cJSON *j = out ? cJSON_Parse(out) : NULL;
    CHECK(j != NULL, "mlxn %s: stdout is one JSON object: '%.200s'", args, out ? out : "");
    if (j) {
        const cJSON *m = cJSON_GetObjectItemCaseSensitive(j, "model"), *b = cJSON_GetObjectItemCaseSensitive(j, "backend");
        const cJSON *pp = cJSON_GetObjectItemCaseSensitive(j, "pp"), *tg = cJSON_GetObjectItemCaseSensitive(j, "tg");
        CHECK(cJSON_IsString(m) && !strcmp(m->valuestring, model) && cJSON_IsString(b) &&
                  !strcmp(b->valuestring, "cpu") && num(j, "threads") >= 1 && num(j, "depth") == depth,
              "%s: model, backend cpu, threads, depth %d", args, depth);
        CHECK(pp && tg && num(pp, "tokens") == 16 && num(tg, "tokens") == 4 && num(pp, "tok_s") > 0 &&
                  num(tg, "tok_s") > 0,
              "%s: pp 16 and tg 4 tokens with positive tok/s", args);
        cJSON_Delete(j);
    }
    printf("  mlxn %s: %s\n", args, j ? "JSON" : "not JSON");
    free(out);
    free(err);
}

static void bad_input(const char *args, const char *want) {
    char *out, *err;
    int rc = run_cli(args, &out, &err);
    CHECK(rc > 0 && err && strstr(err, want) && out && !out[0],
          "mlxn %s: exit status %d, stderr naming '%s' ('%s'), stdout empty ('%.80s')", args, rc, want,
          err ? err : "", out ? out : "");
    printf("  mlxn %s -> exit %d: %.*s\n", args, rc, err ? (int)strcspn(err, "\n") : 0, err ? err : "");
    free(out);
    free(err);
}

/* generate's context on the tiny Llama (max_position_embeddings 256): a
 * prompt past it is refused before anything is printed; -n past it is
 * capped to what fits, with a note, and the run ends after that many
 * tokens; a --ring cache must hold the prompt. */
static void generate_ctx(void) {
    char *longp = malloc(4096), args[4600];
    longp[0] = 0;
    for (int i = 0; i < 200; i++) strcat(longp, "hello world ");
    snprintf(args, sizeof args, "generate -m tests/data/models/llama --temp 0 -n 4 -p \"%s\"", longp);
    bad_input(args, "the model's context 256");
    snprintf(args, sizeof args, "generate -m tests/data/models/llama --temp 0 -n 4 --ring --ctx 8 -p \"%s\"", longp);
    bad_input(args, "a --ring cache of --ctx 8 must hold it");
    const char *capped = "generate -m tests/data/models/llama --temp 0 --ignore-eos -n 400 -p \"hello world\"";
    char *out, *err;
    int rc = run_cli(capped, &out, &err);
    int np = 0, ng = 0;
    const char *pp = err ? strstr(err, "mlxn: prompt ") : NULL, *gg = err ? strstr(err, "mlxn: generation ") : NULL;
    if (pp) sscanf(pp, "mlxn: prompt %d", &np);
    if (gg) sscanf(gg, "mlxn: generation %d", &ng);
    CHECK(rc == 0 && err && strstr(err, "-n 400 capped at") && np > 0 && ng == 256 - np + 1,
          "mlxn %s: exit %d, a cap note, prompt %d + generation %d tokens = the 256-token context + 1 (%s)", capped, rc,
          np, ng, err ? err : "");
    printf("  mlxn %s -> exit %d, prompt %d + %d generated\n", capped, rc, np, ng);
    free(out);
    free(err);
    free(longp);
}

int main(int argc, char **argv) {
    (void)argc;
    char self[512];
    snprintf(self, sizeof self, "%s", argv[0]);
    snprintf(g_bin, sizeof g_bin, "%s/../mlxn", dirname(self));
    setenv("MLXN_THREADS", "2", 1);
    bench_ops_json("");
    bench_ops_json("--bw-each");
    bench_json("bench -m synthetic:tiny --backend cpu -p 16 -n 4 -r 1 --json", "synthetic:tiny", 0);
    /* 600 tokens: one 512-token chunk and a remainder before each run */
    bench_json("bench -m synthetic:tiny --backend cpu -p 16 -n 4 -r 1 -d 600 --json", "synthetic:tiny", 600);
    bench_json("bench -m synthetic:tiny --backend cpu -p 16 -n 4 -r 1 --bits 8 --group-size 32 --json",
               "synthetic:tiny:q8:g32", 0);
    bad_input("bench -m synthetic:tiny --bits 7 -p 8 -n 2 -r 1", "bits=7");
    bad_input("bench -m synthetic:tiny:q4_0 --bits 8 -p 8 -n 2 -r 1", "q4_0 blocks have their own");
    bad_input("bench -m /nonexistent/model.gguf --bits 4 -p 8 -n 2 -r 1", "synthetic model");
    generate_ctx();
    bad_input("bench ops --quick --rows 1 --formats q4_9", "q4_9");
    bad_input("bench -m /nonexistent/model.gguf -p 8 -n 2 -r 1", "/nonexistent/model.gguf");
    return test_summary("test_cli");
}
