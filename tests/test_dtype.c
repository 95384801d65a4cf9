/* test_dtype.c — half/bfloat16 conversions: every one of the 65536 half
 * values round-trips exactly; float->half/bf16 rounding matches a reference
 * computed in double with ties to even; dtype traits are consistent. */
#include "mlxn.h"
#include "testutil.h"

/* Reference: round a float to the nearest value of a format with `mbits`
 * mantissa bits and minimum normal exponent `emin`, ties to even, in double. */
static double round_ref(double x, int mbits, int emin, double maxv) {
    if (x == 0 || isnan(x)) return x;
    double ax = fabs(x);
    int e;
    frexp(ax, &e); /* ax = f * 2^e, f in [0.5,1) */
    int exp2 = e - 1;
    if (exp2 < emin) exp2 = emin;
    double ulp = ldexp(1.0, exp2 - mbits);
    double q = ax / ulp;
    double fl = floor(q);
    double r = q - fl;
    if (r > 0.5 || (r == 0.5 && fmod(fl, 2.0) != 0)) fl += 1;
    double v = fl * ulp;
    if (v > maxv) v = INFINITY;
    return x < 0 ? -v : v;
}

int main(void) {
    int bad = 0;
    for (uint32_t h = 0; h < 65536; h++) {
        float f = mlxn_f16_to_f32((uint16_t)h);
        if (isnan(f)) {
            if (!isnan(mlxn_f16_to_f32(mlxn_f32_to_f16(f)))) bad++;
            continue;
        }
        if (mlxn_f32_to_f16(f) != h) bad++;
    }
    CHECK(bad == 0, "f16 round trip: %d of 65536 values changed", bad);

    bad = 0;
    int badb = 0;
    for (int i = 0; i < 200000; i++) {
        float f;
        uint32_t u = (uint32_t)rng_u64();
        memcpy(&f, &u, 4);
        if (isnan(f)) continue;
        if (i % 2) f = rng_uniform(-70000.f, 70000.f) * ldexpf(1.f, rng_int(-30, 0));
        double want = round_ref(f, 10, -14, 65504.0);
        double got = mlxn_f16_to_f32(mlxn_f32_to_f16(f));
        if (!(got == want || (isinf(got) && isinf(want) && (got > 0) == (want > 0)))) {
            if (bad < 3) fprintf(stderr, "  f16(%.9g): want %.9g got %.9g\n", (double)f, want, got);
            bad++;
        }
        double wantb = round_ref(f, 7, -126, 3.3895313892515355e38);
        double gotb = mlxn_bf16_to_f32(mlxn_f32_to_bf16(f));
        if (!(gotb == wantb || (isinf(gotb) && isinf(wantb)))) {
            if (badb < 3) fprintf(stderr, "  bf16(%.9g): want %.9g got %.9g\n", (double)f, wantb, gotb);
            badb++;
        }
    }
    CHECK(bad == 0, "f32->f16 rounding: %d mismatches", bad);
    CHECK(badb == 0, "f32->bf16 rounding: %d mismatches", badb);
    CHECK(mlxn_f32_to_f16(65520.f) == 0x7c00, "65520 rounds to inf in f16");
    CHECK(mlxn_f32_to_f16(65519.f) == 0x7bff, "65519 rounds to max half");
    CHECK(isnan(mlxn_bf16_to_f32(mlxn_f32_to_bf16(NAN))), "bf16 keeps NaN");

    for (int t = 0; t < MLXN_DTYPE_COUNT; t++) {
        mlxn_dtype back;
        CHECK_OK(mlxn_dtype_from_name(&back, mlxn_dtype_name((mlxn_dtype)t)));
        CHECK(back == (mlxn_dtype)t, "dtype name round trip %d", t);
        CHECK(mlxn_dtype_block_bytes((mlxn_dtype)t) > 0, "block bytes for %d", t);
    }
    CHECK(mlxn_dtype_block_bytes(MLXN_Q4_K) == 144 && mlxn_dtype_block_bytes(MLXN_Q6_K) == 210,
          "k-quant block sizes");
    mlxn_dtype d;
    CHECK_STATUS(mlxn_dtype_from_name(&d, "q9_9"), MLXN_ERR_DTYPE);
    return test_summary("test_dtype");
}
