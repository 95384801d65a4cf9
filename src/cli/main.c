/* main.c — the mlxn program: dispatch to subcommands. */
#include "cli/cli.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

mlxn_status cli_open_device(mlxn_device **out, const char *name, int threads) {
    mlxn_device_options o = {.n_threads = threads};
    mlxn_status st = mlxn_device_open(out, name, &o);
    if (!st && (!name || !strcmp(name, "auto")) && mlxn_cuda_compiled() && !strcmp(mlxn_device_kind(*out), "cpu"))
        fprintf(stderr, "mlxn: no usable CUDA device; running on the CPU (%s)\n", mlxn_device_description(*out));
    return st;
}

int cli_fail(const char *what, mlxn_status st) {
    fprintf(stderr, "mlxn: %s: %s: %s\n", what, mlxn_status_name(st), mlxn_last_error());
    return 1;
}

bool cli_int(const char *flag, const char *v, long lo, long hi, long *out) {
    char *end;
    errno = 0;
    long x = v ? strtol(v, &end, 10) : 0;
    if (!v || errno || *end || x < lo || x > hi) {
        fprintf(stderr, "mlxn: %s needs an integer in %ld..%ld, got '%s'\n", flag, lo, hi, v ? v : "");
        return false;
    }
    *out = x;
    return true;
}

bool cli_float(const char *flag, const char *v, double *out) {
    char *end;
    errno = 0;
    double x = v ? strtod(v, &end) : 0;
    if (!v || errno || *end) {
        fprintf(stderr, "mlxn: %s needs a number, got '%s'\n", flag, v ? v : "");
        return false;
    }
    *out = x;
    return true;
}

void cli_load_progress(void *ctx, int layers_done, int layers) {
    (void)ctx;
    if (!isatty(2)) return;
    fprintf(stderr, "\rmlxn: loading layer %d/%d", layers_done, layers);
    if (layers_done == layers - 1) fprintf(stderr, "\r%40s\r", "");
}

int cli_cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static void usage(FILE *f) {
    fprintf(f,
            "usage: mlxn <command> [options]\n"
            "commands:\n"
            "  generate  run a model on a prompt, streaming the text\n"
            "  bench     prefill and decode tokens/s of a model (bench -m PATH)\n"
            "  info      what a model directory or GGUF file holds\n"
            "  convert   GGUF file or HF safetensors directory -> MLX directory\n"
            "  graph     record a Llama-shaped decode step and run it in every graph mode\n"
            "  bench ops matmul speed per weight format and shape vs memory bandwidth\n"
            "run `mlxn <command> --help` for a command's options\n");
}

int main(int argc, char **argv) {
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    const char *cmd = argv[1];
    if (!strcmp(cmd, "graph")) return cmd_graph(argc - 1, argv + 1);
    if (!strcmp(cmd, "bench") && argc > 2 && !strcmp(argv[2], "ops")) return cmd_bench_ops(argc - 2, argv + 2);
    if (!strcmp(cmd, "bench")) return cmd_bench(argc - 1, argv + 1);
    if (!strcmp(cmd, "generate")) return cmd_generate(argc - 1, argv + 1);
    if (!strcmp(cmd, "info")) return cmd_info(argc - 1, argv + 1);
    if (!strcmp(cmd, "convert")) return cmd_convert(argc - 1, argv + 1);
    fprintf(stderr, "mlxn: unknown command '%s'\n", cmd);
    usage(stderr);
    return 2;
}
