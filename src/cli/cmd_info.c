/*
 * cmd_info.c — `mlxn info PATH`: what a model holds. Loads the model the
 * way generate does (so every tensor is checked against the config) and
 * prints the files and their sizes, the tensor count, the hyper-parameters,
 * the weight formats of every linear group across the layers, the weight
 * bytes and the tokenizer.
 */
#include "cli/cli.h"
#include "io/io.h"
#include "model/model.h"
#include "model/tokenizer.h"

#include <dirent.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static void print_size(const char *name, long long bytes) {
    if (bytes >= 1048576) printf("%s %.1f MiB", name, (double)bytes / 1048576.0);
    else if (bytes >= 1024) printf("%s %.1f KiB", name, (double)bytes / 1024.0);
    else printf("%s %lld B", name, bytes);
}

static int by_name(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* The regular files of a model directory with their sizes, by name. */
static void print_dir_files(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return;
    char **names = NULL;
    size_t n = 0, cap = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        if (n == cap) {
            size_t nc = cap ? 2 * cap : 16;
            char **t = realloc(names, nc * sizeof *t);
            if (!t) break;
            names = t, cap = nc;
        }
        if (!(names[n] = strdup(e->d_name))) break;
        n++;
    }
    closedir(d);
    if (n) qsort(names, n, sizeof *names, by_name); /* names is NULL in an empty directory */
    printf("files:");
    long long total = 0;
    int shown = 0;
    for (size_t i = 0; i < n; i++) {
        char p[1024];
        struct stat sb;
        snprintf(p, sizeof p, "%s/%s", dir, names[i]);
        if (stat(p, &sb) == 0 && S_ISREG(sb.st_mode)) {
            printf("%s", shown++ ? ", " : " ");
            print_size(names[i], (long long)sb.st_size);
            total += (long long)sb.st_size;
        }
        free(names[i]);
    }
    free(names);
    print_size(shown ? "; total" : " none; total", total);
    printf("\n");
}

static void print_tokenizer(const mlxn_model *m) {
    if (!strncmp(m->path, "synthetic:", 10)) {
        printf("tokenizer: none (a synthetic model)\n");
        return;
    }
    mlxn_tokenizer *tok = NULL;
    char *tmpl = NULL;
    mlxn_status st = mlxn_model_load_tokenizer(m, &tok, &tmpl);
    if (st) {
        printf("tokenizer: none (%s)\n", mlxn_last_error());
        return;
    }
    size_t nv = mlxn_tokenizer_n_vocab(tok), nc = 0;
    for (size_t i = 0; i < nv; i++) nc += mlxn_tokenizer_is_control(tok, (int32_t)i);
    printf("tokenizer: %s BPE, %zu tokens (%zu special), %zu merges; chat template: %s\n",
           mlxn_tokenizer_kind(tok) == MLXN_TOK_SPM ? "SentencePiece-style" : "byte-level", nv, nc,
           mlxn_tokenizer_n_merges(tok), tmpl ? "yes" : "none");
    free(tmpl);
    mlxn_tokenizer_destroy(tok);
}

int cmd_info(int argc, char **argv) {
    if (argc != 2 || !strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")) {
        fprintf(argc == 2 ? stdout : stderr, "usage: mlxn info PATH   (model directory or .gguf file)\n");
        return argc == 2 ? 0 : 2;
    }
    const char *path = argv[1];
    size_t pl = strlen(path);
    struct stat sb;
    bool found = stat(path, &sb) == 0, is_dir = found && S_ISDIR(sb.st_mode);
    if (pl > 5 && !strcmp(path + pl - 5, ".gguf")) {
        mlxn_gguf *g = NULL;
        mlxn_status st = mlxn_gguf_open_file(&g, path);
        if (st) return cli_fail(path, st);
        const char *name = NULL;
        printf("gguf: version %u, %zu metadata keys, %zu tensors, alignment %zu\n", mlxn_gguf_version(g),
               mlxn_gguf_kv_count(g), mlxn_gguf_tensor_count(g), mlxn_gguf_alignment(g));
        if (!mlxn_gguf_get_string(g, "general.name", &name, NULL)) printf("name: %s\n", name);
        mlxn_gguf_close(g);
        if (found) {
            printf("file:");
            print_size("", (long long)sb.st_size);
            printf("\n");
        }
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
    if (is_dir) { /* a model directory, once it loaded */
        print_dir_files(path);
        mlxn_st_shards *sh = NULL;
        if (mlxn_st_shards_open(&sh, path) == MLXN_OK) {
            printf("safetensors: %zu file%s, %zu tensors\n", mlxn_st_shards_file_count(sh),
                   mlxn_st_shards_file_count(sh) == 1 ? "" : "s", mlxn_st_shards_count(sh));
            mlxn_st_shards_close(sh);
        }
    }
    printf("path: %s\n", m->path);
    mlxn_model_config_print(&m->cfg, stdout);
    char b1[32], b2[32], fb[256];
    printf("weights: %.2f MiB\n", (double)m->weight_bytes / 1048576.0);
    printf("embed: %s; head: %s%s\n", mlxn_linear_format(&m->embed, b1, 32), mlxn_linear_format(&m->head, b2, 32),
           m->head.w == m->embed.w ? " (tied)" : "");
    printf("linears (%d layers):", m->cfg.layers);
    for (int g = 0; g < MLXN_LIN_COUNT; g++)
        printf("%s %s %s", g ? ";" : "", mlxn_linear_group_name((mlxn_linear_group)g),
               mlxn_model_group_formats(m, (mlxn_linear_group)g, fb, sizeof fb));
    printf("\n");
    printf("rope: %s%s\n", m->rope_mode == MLXN_ROPE_NEOX ? "neox" : "normal",
           m->rope_freqs ? ", rope_freqs from file" : "");
    print_tokenizer(m);
    mlxn_model_destroy(m);
    mlxn_device_close(dev);
    return 0;
}
