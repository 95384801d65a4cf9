/* dtype.c — dtype traits (one table indexed by mlxn_dtype) and exact
 * half / bfloat16 conversions (round to nearest even). */
#include "core/core.h"

#include <string.h>

typedef struct dtype_traits {
    const char *name;
    size_t block_elems;
    size_t block_bytes;
} dtype_traits;

static const dtype_traits k_traits[] = {
    [MLXN_F32] = {"f32", 1, 4},      [MLXN_F16] = {"f16", 1, 2},
    [MLXN_BF16] = {"bf16", 1, 2},    [MLXN_U8] = {"u8", 1, 1},
    [MLXN_U16] = {"u16", 1, 2},      [MLXN_U32] = {"u32", 1, 4},
    [MLXN_I32] = {"i32", 1, 4},      [MLXN_Q4_0] = {"q4_0", 32, 18},
    [MLXN_Q4_1] = {"q4_1", 32, 20},  [MLXN_Q8_0] = {"q8_0", 32, 34},
    [MLXN_Q4_K] = {"q4_k", 256, 144}, [MLXN_Q5_K] = {"q5_k", 256, 176},
    [MLXN_Q6_K] = {"q6_k", 256, 210}, [MLXN_I8] = {"i8", 1, 1},
};
_Static_assert(sizeof k_traits / sizeof k_traits[0] == MLXN_DTYPE_COUNT,
               "dtype traits table out of date");

const char *mlxn_dtype_name(mlxn_dtype t) {
    return (unsigned)t < MLXN_DTYPE_COUNT ? k_traits[t].name : "?";
}
size_t mlxn_dtype_block_elems(mlxn_dtype t) {
    return (unsigned)t < MLXN_DTYPE_COUNT ? k_traits[t].block_elems : 0;
}
size_t mlxn_dtype_block_bytes(mlxn_dtype t) {
    return (unsigned)t < MLXN_DTYPE_COUNT ? k_traits[t].block_bytes : 0;
}
bool mlxn_dtype_is_block(mlxn_dtype t) { return mlxn_dtype_block_elems(t) > 1; }
bool mlxn_dtype_is_float(mlxn_dtype t) {
    return t == MLXN_F32 || t == MLXN_F16 || t == MLXN_BF16;
}

mlxn_status mlxn_dtype_from_name(mlxn_dtype *out, const char *name) {
    if (!out || !name) return mlxn_err(MLXN_ERR_INVALID_ARG, "dtype_from_name: NULL argument");
    for (int i = 0; i < MLXN_DTYPE_COUNT; i++) {
        if (strcmp(k_traits[i].name, name) == 0) {
            *out = (mlxn_dtype)i;
            return MLXN_OK;
        }
    }
    return mlxn_err(MLXN_ERR_DTYPE, "unknown dtype '%s'", name);
}

bool mlxn_dtype_bytes_for(mlxn_dtype t, uint64_t n_elems, size_t *out) {
    size_t be = mlxn_dtype_block_elems(t);
    if (be == 0 || n_elems % be) return false;
    return mlxn_mul_ok((size_t)(n_elems / be), k_traits[t].block_bytes, out);
}

static inline uint32_t f32_bits(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}
static inline float bits_f32(uint32_t u) {
    float f;
    memcpy(&f, &u, 4);
    return f;
}

float mlxn_f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    uint32_t exp = (h >> 10) & 0x1f;
    uint32_t man = h & 0x3ff;
    if (exp == 0x1f) return bits_f32(sign | 0x7f800000u | (man << 13)); /* inf / nan */
    if (exp == 0) {
        if (man == 0) return bits_f32(sign);
        /* subnormal: value = man * 2^-24 */
        float v = (float)man * 5.9604644775390625e-8f;
        return sign ? -v : v;
    }
    return bits_f32(sign | ((exp + 112) << 23) | (man << 13));
}

uint16_t mlxn_f32_to_f16(float f) {
    uint32_t x = f32_bits(f);
    uint16_t sign = (uint16_t)((x >> 16) & 0x8000);
    uint32_t ax = x & 0x7fffffffu;
    if (ax >= 0x7f800000u) /* inf or nan: keep nan quiet and non-zero */
        return sign | 0x7c00 | (ax > 0x7f800000u ? 0x200 | ((ax >> 13) & 0x3ff) : 0);
    if (ax >= 0x477ff000u) return sign | 0x7c00; /* rounds to >= 65520: inf */
    if (ax < 0x38800000u) {                        /* below the smallest normal half */
        if (ax < 0x33000000u) return sign;         /* < 2^-25: rounds to zero */
        uint32_t e = ax >> 23;
        uint32_t m = (ax & 0x7fffff) | 0x800000;
        uint32_t shift = 126 - e; /* 14..24 */
        uint32_t r = m >> shift;
        uint32_t rem = m & ((1u << shift) - 1);
        uint32_t half = 1u << (shift - 1);
        if (rem > half || (rem == half && (r & 1))) r++;
        return sign | (uint16_t)r;
    }
    uint32_t r = ((ax >> 13) - (112u << 10));
    uint32_t rem = ax & 0x1fff;
    if (rem > 0x1000 || (rem == 0x1000 && (r & 1))) r++;
    return sign | (uint16_t)r;
}

float mlxn_bf16_to_f32(uint16_t h) { return bits_f32((uint32_t)h << 16); }

uint16_t mlxn_f32_to_bf16(float f) {
    uint32_t x = f32_bits(f);
    if ((x & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((x >> 16) | 0x40); /* quiet nan */
    uint32_t lsb = (x >> 16) & 1;
    x += 0x7fff + lsb;
    return (uint16_t)(x >> 16);
}
