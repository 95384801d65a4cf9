/* simd256.h — small AVX2 / SSE helpers shared by the CPU kernels (x86
 * only; the AVX ones are inlined into functions whose target includes
 * avx2, fma and f16c; the SSE2 ones work under any x86-64 target). */
#pragma once

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#include <stdint.h>

#define MLXN_T256 __attribute__((target("avx2,fma,f16c"), always_inline)) static inline

/* The sum of v's 8 lanes. */
MLXN_T256 float mlxn_hsum_256(__m256 v) {
    __m128 h = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    h = _mm_add_ps(h, _mm_movehl_ps(h, h));
    h = _mm_add_ss(h, _mm_movehdup_ps(h));
    return _mm_cvtss_f32(h);
}
/* The sums of a, b, c, d's lanes as [a, b, c, d]. */
MLXN_T256 __m128 mlxn_reduce4_256(__m256 a, __m256 b, __m256 c, __m256 d) {
    __m256 ab = _mm256_hadd_ps(a, b), cd = _mm256_hadd_ps(c, d), t = _mm256_hadd_ps(ab, cd);
    return _mm_add_ps(_mm256_castps256_ps128(t), _mm256_extractf128_ps(t, 1));
}
/* One f16 as f32 (F16C). */
MLXN_T256 float mlxn_h2f_f16c(uint16_t h) { return _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(h))); }

/* q6_k codes (0..63, before the -32) of 16 elements l0 .. l0+15 of each of
 * a half super-block's four 32-apart groups: ql, qh the half's 64 / 32
 * bytes; q[g] holds group g's (ql[l] / ql[l+32] low or high nibble, qh bits
 * 2g, 2g+1). SSE2 only. */
static inline void mlxn_q6k_codes16(const uint8_t *ql, const uint8_t *qh, int l0, __m128i q[4]) {
    const __m128i m4 = _mm_set1_epi8(0x0F), m3 = _mm_set1_epi8(3);
    const __m128i a = _mm_loadu_si128((const __m128i *)(ql + l0));
    const __m128i c = _mm_loadu_si128((const __m128i *)(ql + 32 + l0));
    const __m128i hv = _mm_loadu_si128((const __m128i *)(qh + l0));
    q[0] = _mm_or_si128(_mm_and_si128(a, m4), _mm_slli_epi16(_mm_and_si128(hv, m3), 4));
    q[1] = _mm_or_si128(_mm_and_si128(c, m4), _mm_slli_epi16(_mm_and_si128(_mm_srli_epi16(hv, 2), m3), 4));
    q[2] = _mm_or_si128(_mm_and_si128(_mm_srli_epi16(a, 4), m4),
                        _mm_slli_epi16(_mm_and_si128(_mm_srli_epi16(hv, 4), m3), 4));
    q[3] = _mm_or_si128(_mm_and_si128(_mm_srli_epi16(c, 4), m4),
                        _mm_slli_epi16(_mm_and_si128(_mm_srli_epi16(hv, 6), m3), 4));
}
#endif
