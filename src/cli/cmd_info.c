/*
 * cmd_info.c — `mlxn info PATH`: what a model holds. Loads the model the
 * way generate does (so every tensor is checked against the config) and
 * prints the hyper-parameters, the weight formats and sizes, and, for GGUF,
 * the file's version and counts.
 */
#include "cli/cli.h"
#include "io/io.h"
#include "model/model.h"

#include <string.h>

static const char *linear_fmt(const mlxn_linear *l, char *buf, size_t cap) {
    if (!l->w) return "-";
    if (l->q.bits) snprintf(buf, cap, "mlx %d-bit/g%d", l->q.bits, l->q.group_size);
    else snprintf(buf, cap, "%s", mlxn_dtype_name(mlxn_buffer_dtype(l->w)));
    return buf;
}

int cmd_info(int argc, char **argv) {
    if (argc != 2 || !strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")) {
        fprintf(argc == 2 ? stdout : stderr, "usage: mlxn info PATH   (model directory or .gguf file)\n");
        return argc == 2 ? 0 : 2;
    }
    const char *path = argv[1];
    size_t pl = strlen(path);
    if (pl > 5 && !strcmp(path + pl - 5, ".gguf")) {
        mlxn_gguf *g = NULL;
        mlxn_status st = mlxn_gguf_open_file(&g, path);
        if (st) return cli_fail(path, st);
        const char *name = NULL;
        printf("gguf: version %u, %zu metadata keys, %zu tensors, alignment %zu\n", mlxn_gguf_version(g),
               mlxn_gguf_kv_count(g), mlxn_gguf_tensor_count(g), mlxn_gguf_alignment(g));
        if (!mlxn_gguf_get_string(g, "general.name", &name, NULL)) printf("name: %s\n", name);
        mlxn_gguf_close(g);
    }
    mlxn_device *dev = NULL;
    mlxn_status st = mlxn_device_open(&dev, "cpu", NULL);
    if (st) return cli_fail("opening the device", st);
    mlxn_model *m = NULL;
    st = mlxn_model_load(&m, dev, path);
    if (st) {
        mlxn_device_close(dev);
        return cli_fail("loading the model", st);
    }
    printf("path: %s\n", m->path);
    mlxn_model_config_print(&m->cfg, stdout);
    char b1[32], b2[32], b3[32], b4[32];
    const mlxn_layer *L = &m->L[0];
    printf("weights: %.2f MiB\n", (double)m->weight_bytes / 1048576.0);
    printf("embed: %s; head: %s%s\n", linear_fmt(&m->embed, b1, 32), linear_fmt(&m->head, b2, 32),
           m->head.w == m->embed.w ? " (tied)" : "");
    printf("layer 0: q %s, k %s, v %s, o %s; ", linear_fmt(&L->wq, b1, 32), linear_fmt(&L->wk, b2, 32),
           linear_fmt(&L->wv, b3, 32), linear_fmt(&L->wo, b4, 32));
    printf("gate %s, up %s, down %s\n", linear_fmt(&L->gate, b1, 32), linear_fmt(&L->up, b2, 32),
           linear_fmt(&L->down, b3, 32));
    printf("rope: %s%s\n", m->rope_mode == MLXN_ROPE_NEOX ? "neox" : "normal",
           m->rope_freqs ? ", rope_freqs from file" : "");
    mlxn_model_destroy(m);
    mlxn_device_close(dev);
    return 0;
}
