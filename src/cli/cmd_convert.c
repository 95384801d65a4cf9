/* cmd_convert.c — `mlxn convert IN OUT [--bits B] [--group-size G] [--force]`. */
#include "cli/cli.h"
#include "model/convert.h"

#include <string.h>
#include <time.h>
#include <unistd.h>

int cmd_convert(int argc, char **argv) {
    const char *in = NULL, *out = NULL;
    long bits = 4, group = 64;
    bool force = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            printf("usage: mlxn convert IN OUT [--bits B] [--group-size G] [--force]\n"
                   "IN: a .gguf file or an HF safetensors directory; OUT: an MLX directory (mlx-lm reads it).\n"
                   "GGUF q4_0/q4_1/q8_0/q4_k/q5_k blocks are carried over exactly (groups of 32);\n"
                   "other weights are quantized at --bits (2,3,4,5,6,8; default 4) and --group-size\n"
                   "(32, 64, 128; default 64). OUT must be new or empty; --force lets the conversion\n"
                   "replace its files in an existing OUT (never the input's own directory).\n");
            return 0;
        }
        if (!strcmp(a, "--bits")) { if (!cli_int(a, v, 2, 8, &bits)) return 2; i++; }
        else if (!strcmp(a, "--force")) force = true;
        else if (!strcmp(a, "--group-size")) { if (!cli_int(a, v, 32, 128, &group)) return 2; i++; }
        else if (a[0] == '-') { fprintf(stderr, "mlxn convert: unknown option '%s'\n", a); return 2; }
        else if (!in) in = a;
        else if (!out) out = a;
        else { fprintf(stderr, "mlxn convert: too many arguments\n"); return 2; }
    }
    if (!in || !out) {
        fprintf(stderr, "usage: mlxn convert IN OUT [--bits B] [--group-size G] [--force]\n");
        return 2;
    }
    mlxn_convert_options o = {.bits = (int)bits, .group_size = (int)group, .progress = isatty(2), .overwrite = force};
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    mlxn_status st = mlxn_convert(in, out, &o);
    if (st) return cli_fail("convert", st);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    fprintf(stderr, "mlxn: converted %s -> %s in %.2f s\n", in, out,
            (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) * 1e-9);
    return 0;
}
