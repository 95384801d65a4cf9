/* test_quant_ggml.c — GGML blocks against goldens from gguf-py 0.19.0
 * (scripts/gen_quant_goldens.py): dequantization of random blocks of every
 * type equals gguf.quants.dequantize bit for bit; quantization to f16, bf16,
 * q4_0, q4_1, q8_0 equals gguf.quants.quantize byte for byte; the q4_k / q6_k
 * reference quantizers round-trip within a bound derived from their step;
 * bad inputs return the right status. */
#include "ops/quant.h"
#include "io/io.h"
#include "testutil.h"

#define NG 2048

/* A golden file, whole (NULL when absent); free() it. */
static void *read_file(const char *path, size_t *len) {
    char *p = NULL;
    *len = 0;
    return mlxn_read_file(&p, len, path, (size_t)64 << 20) == MLXN_OK ? p : NULL;
}

static const mlxn_dtype k_types[] = {MLXN_F32,  MLXN_F16,  MLXN_BF16, MLXN_Q4_0, MLXN_Q4_1,
                                     MLXN_Q8_0, MLXN_Q4_K, MLXN_Q5_K, MLXN_Q6_K};

int main(void) {
    char path[256];
    for (size_t t = 0; t < sizeof k_types / sizeof k_types[0]; t++) {
        mlxn_dtype ty = k_types[t];
        snprintf(path, sizeof path, "tests/golden/quant/ggml_deq_%s.bin", mlxn_dtype_name(ty));
        size_t len, nbytes = 0;
        unsigned char *buf = read_file(path, &len);
        mlxn_dtype_bytes_for(ty, NG, &nbytes);
        CHECK(buf && len == nbytes + NG * 4, "%s: %zu bytes, want %zu", path, len, nbytes + NG * 4);
        if (!buf || len != nbytes + NG * 4) {
            free(buf);
            continue;
        }
        float *out = malloc(NG * 4);
        for (int i = 0; i < NG; i++) out[i] = NAN;
        CHECK_OK(mlxn_ggml_dequantize(ty, buf, out, NG));
        const float *want = (const float *)(buf + nbytes);
        int bad = 0;
        for (int i = 0; i < NG; i++)
            if (memcmp(&out[i], &want[i], 4)) {
                if (bad < 3)
                    fprintf(stderr, "  %s[%d]: got %.9g want %.9g\n", mlxn_dtype_name(ty), i,
                            (double)out[i], (double)want[i]);
                bad++;
            }
        CHECK(bad == 0, "%s dequantize: %d of %d elements differ from gguf-py", mlxn_dtype_name(ty),
              bad, NG);
        printf("dequantize %-5s vs gguf-py: %d elements, %s\n", mlxn_dtype_name(ty), NG,
               bad ? "DIFFER" : "bit-exact");
        free(out);
        free(buf);
    }

    const mlxn_dtype qtypes[] = {MLXN_F16, MLXN_BF16, MLXN_Q4_0, MLXN_Q4_1, MLXN_Q8_0};
    for (size_t t = 0; t < 5; t++) {
        mlxn_dtype ty = qtypes[t];
        snprintf(path, sizeof path, "tests/golden/quant/ggml_q_%s.bin", mlxn_dtype_name(ty));
        size_t len, nbytes = 0;
        unsigned char *buf = read_file(path, &len);
        mlxn_dtype_bytes_for(ty, NG, &nbytes);
        CHECK(buf && len == nbytes + NG * 4, "%s: %zu bytes", path, len);
        if (!buf || len != nbytes + NG * 4) {
            free(buf);
            continue;
        }
        unsigned char *q = malloc(nbytes);
        memset(q, 0xCD, nbytes);
        CHECK_OK(mlxn_ggml_quantize(ty, (const float *)buf, q, NG));
        size_t i = 0;
        while (i < nbytes && q[i] == buf[NG * 4 + i]) i++;
        CHECK(i == nbytes, "%s quantize: first differing byte %zu of %zu (got %02x want %02x)",
              mlxn_dtype_name(ty), i, nbytes, i < nbytes ? q[i] : 0,
              i < nbytes ? buf[NG * 4 + i] : 0);
        printf("quantize   %-5s vs gguf-py: %zu bytes, %s\n", mlxn_dtype_name(ty), nbytes,
               i == nbytes ? "byte-exact" : "DIFFER");
        free(q);
        free(buf);
    }

    /* Reference K-quantizers: round trip. q4_k: |err| <= d*sc/2 + rounding of
     * the 6-bit scale/min (one unit of d and dmin over 15 and 63 steps) —
     * bounded here by 6% of the sub-block range; q6_k: <= 4% of the 16-block
     * max|x| (half a step of 31 plus the 8-bit scale rounding). */
    float x[1024], y[1024];
    unsigned char qb[1024];
    rng_fill(x, 1024, -1.5f, 2.5f);
    for (int i = 256; i < 512; i++) x[i] *= 1e-3f;
    const mlxn_dtype kt[] = {MLXN_Q4_K, MLXN_Q6_K};
    for (int t = 0; t < 2; t++) {
        CHECK_OK(mlxn_ggml_quantize(kt[t], x, qb, 1024));
        CHECK_OK(mlxn_ggml_dequantize(kt[t], qb, y, 1024));
        int sub = kt[t] == MLXN_Q4_K ? 32 : 16, bad = 0;
        for (int j = 0; j < 1024; j += sub) {
            float mn = 0, mx = 0, am = 0;
            for (int l = 0; l < sub; l++) {
                mn = fminf(mn, x[j + l]);
                mx = fmaxf(mx, x[j + l]);
                am = fmaxf(am, fabsf(x[j + l]));
            }
            float tol = kt[t] == MLXN_Q4_K ? 0.06f * (mx - mn) : 0.04f * am;
            for (int l = 0; l < sub; l++)
                if (!(fabsf(y[j + l] - x[j + l]) <= tol + 1e-7f)) {
                    if (bad < 3)
                        fprintf(stderr, "  %s[%d]: x %g got %g tol %g\n", mlxn_dtype_name(kt[t]),
                                j + l, (double)x[j + l], (double)y[j + l], (double)tol);
                    bad++;
                }
        }
        CHECK(bad == 0, "%s round trip: %d elements outside bound", mlxn_dtype_name(kt[t]), bad);
    }

    /* Bad inputs. */
    CHECK_STATUS(mlxn_ggml_dequantize(MLXN_Q4_0, qb, y, 33), MLXN_ERR_SHAPE);
    CHECK(strstr(mlxn_last_error(), "33 elements") != NULL, "msg: %s", mlxn_last_error());
    CHECK_STATUS(mlxn_ggml_dequantize(MLXN_I32, qb, y, 32), MLXN_ERR_DTYPE);
    CHECK_STATUS(mlxn_ggml_dequantize(MLXN_Q6_K, NULL, y, 256), MLXN_ERR_INVALID_ARG);
    CHECK_STATUS(mlxn_ggml_quantize(MLXN_Q5_K, x, qb, 256), MLXN_ERR_UNSUPPORTED);
    CHECK_STATUS(mlxn_ggml_quantize(MLXN_Q4_K, x, qb, 128), MLXN_ERR_SHAPE);
    return test_summary("test_quant_ggml");
}
