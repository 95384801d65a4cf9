/* test_quant_mlx.c — MLX affine quantization against goldens written by
 * scripts/gen_quant_goldens.py from mlx 0.32.4 (CPU): for bits 2,3,4,5,6,8 ×
 * group 32,64,128 × scales f32,f16,bf16, our quantizer must produce MLX's
 * exact bytes (weights, scales, biases) and our dequantizer MLX's exact
 * values (compared bit for bit). Then the bad-input statuses. */
#include "ops/quant.h"
#include "io/io.h"
#include "testutil.h"

#define GN 4
#define GK 256

/* A golden file, whole (NULL when absent); free() it. */
static void *read_file(const char *path, size_t *len) {
    char *p = NULL;
    *len = 0;
    return mlxn_read_file(&p, len, path, (size_t)64 << 20) == MLXN_OK ? p : NULL;
}

static int first_diff(const void *a, const void *b, size_t n, size_t elem) {
    for (size_t i = 0; i < n; i += elem)
        if (memcmp((const char *)a + i, (const char *)b + i, elem)) return (int)(i / elem);
    return -1;
}

static void one_case(int bits, int group, const char *dtname, mlxn_dtype dt) {
    char path[256];
    snprintf(path, sizeof path, "tests/golden/quant/mlx_b%d_g%d_%s.bin", bits, group, dtname);
    size_t len = 0;
    unsigned char *buf = read_file(path, &len);
    size_t wbytes, sbbytes;
    CHECK_OK(mlxn_mlx_sizes(GN, GK, bits, group, dt, &wbytes, &sbbytes));
    size_t want = GN * GK * 4 * 2 + wbytes + 2 * sbbytes;
    CHECK(buf && len == want, "%s: %zu bytes, want %zu (run scripts/gen_quant_goldens.py)", path,
          buf ? len : 0, want);
    if (!buf || len != want) {
        free(buf);
        return;
    }
    const float *w = (const float *)buf;
    const unsigned char *gq = buf + GN * GK * 4, *gs = gq + wbytes, *gb = gs + sbbytes;
    const float *gd = (const float *)(gb + sbbytes);

    uint32_t *q = malloc(wbytes);
    void *s = malloc(sbbytes), *b = malloc(sbbytes);
    float *d = malloc(GN * GK * 4);
    memset(q, 0xAB, wbytes);
    CHECK_OK(mlxn_mlx_quantize(w, GN, GK, bits, group, dt, q, s, b));
    int i;
    i = first_diff(q, gq, wbytes, 4);
    CHECK(i < 0, "%s: weight word %d: got %08x want %08x", path, i, i < 0 ? 0 : q[i],
          i < 0 ? 0 : ((const uint32_t *)gq)[i]);
    size_t es = dt == MLXN_F32 ? 4 : 2;
    i = first_diff(s, gs, sbbytes, es);
    CHECK(i < 0, "%s: scale %d differs", path, i);
    i = first_diff(b, gb, sbbytes, es);
    CHECK(i < 0, "%s: bias %d differs", path, i);

    for (size_t k = 0; k < GN * GK; k++) d[k] = NAN;
    CHECK_OK(mlxn_mlx_dequantize((const uint32_t *)gq, gs, gb, dt, GN, GK, bits, group, d));
    i = first_diff(d, gd, GN * GK * 4, 4);
    CHECK(i < 0, "%s: dequantized[%d]: got %.9g want %.9g", path, i, i < 0 ? 0 : (double)d[i],
          i < 0 ? 0 : (double)gd[i]);
    free(q);
    free(s);
    free(b);
    free(d);
    free(buf);
}

int main(void) {
    const int bits[] = {2, 3, 4, 5, 6, 8}, groups[] = {32, 64, 128};
    const char *dtn[] = {"f32", "f16", "bf16"};
    const mlxn_dtype dts[] = {MLXN_F32, MLXN_F16, MLXN_BF16};
    int cases = 0;
    for (int d = 0; d < 3; d++)
        for (int b = 0; b < 6; b++)
            for (int g = 0; g < 3; g++, cases++) one_case(bits[b], groups[g], dtn[d], dts[d]);
    printf("mlx goldens: %d cases (bits x group x scale dtype), quantize bytes and dequantize bits\n",
           cases);

    /* Bad inputs. */
    float w[64 * 2] = {1};
    uint32_t q[64];
    uint16_t s[8], b[8];
    CHECK_STATUS(mlxn_mlx_quantize(w, 1, 96, 4, 64, MLXN_BF16, q, s, b), MLXN_ERR_SHAPE);
    CHECK(strstr(mlxn_last_error(), "K=96 not divisible by group 64") != NULL, "msg: %s",
          mlxn_last_error());
    CHECK_STATUS(mlxn_mlx_quantize(w, 1, 64, 7, 64, MLXN_BF16, q, s, b), MLXN_ERR_UNSUPPORTED);
    CHECK_STATUS(mlxn_mlx_quantize(w, 1, 64, 4, 16, MLXN_BF16, q, s, b), MLXN_ERR_UNSUPPORTED);
    CHECK_STATUS(mlxn_mlx_quantize(w, 1, 64, 4, 64, MLXN_Q4_0, q, s, b), MLXN_ERR_DTYPE);
    CHECK_STATUS(mlxn_mlx_quantize(w, 0, 64, 4, 64, MLXN_BF16, q, s, b), MLXN_ERR_SHAPE);
    CHECK_STATUS(mlxn_mlx_quantize(NULL, 1, 64, 4, 64, MLXN_BF16, q, s, b), MLXN_ERR_INVALID_ARG);
    CHECK_STATUS(mlxn_mlx_dequantize(q, s, b, MLXN_BF16, 1, 64, 4, 48, w), MLXN_ERR_UNSUPPORTED);
    CHECK_STATUS(mlxn_mlx_sizes(INT64_MAX / 2, INT64_MAX / 2, 4, 64, MLXN_F16, NULL, NULL),
                 MLXN_ERR_SHAPE);
    CHECK_STATUS(mlxn_mlx_sizes((int64_t)1 << 40, (int64_t)1 << 40, 4, 64, MLXN_F16, NULL, NULL),
                 MLXN_ERR_RANGE);
    size_t wb = 0, sb = 0;
    CHECK_OK(mlxn_mlx_sizes(4096, 14336, 3, 64, MLXN_BF16, &wb, &sb));
    CHECK(wb == 4096ull * 14336 * 3 / 8 && sb == 4096ull * 224 * 2, "sizes %zu %zu", wb, sb);

    /* Round trip: |dequantize(quantize(w)) - w| <= 1.5 steps: half a step of
     * rounding, plus MLX moving the edge onto the grid, which can clip the
     * far end of a group by up to one step (|edge| >= range/2 bounds it). */
    float x[4 * 128], y[4 * 128];
    uint32_t qq[4 * 128];
    float ss[16], bb[16];
    rng_fill(x, 4 * 128, -2, 3);
    for (int bi = 0; bi < 6; bi++) {
        CHECK_OK(mlxn_mlx_quantize(x, 4, 128, bits[bi], 32, MLXN_F32, qq, ss, bb));
        CHECK_OK(mlxn_mlx_dequantize(qq, ss, bb, MLXN_F32, 4, 128, bits[bi], 32, y));
        int bad = 0;
        for (int k = 0; k < 4 * 128; k++)
            if (!(fabsf(x[k] - y[k]) <= 1.5f * fabsf(ss[k / 32]) * 1.001f + 1e-6f)) bad++;
        CHECK(bad == 0, "round trip bits %d: %d elements off by more than 1.5 steps", bits[bi], bad);
    }
    return test_summary("test_quant_mlx");
}
