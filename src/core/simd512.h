/* simd512.h — small AVX-512 helpers shared by the CPU kernels (x86 only;
 * callers compile them inside functions whose target includes avx512f). */
#pragma once

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>

/* Sums of 4 vectors' lanes -> [sum a, sum b, sum c, sum d] (9 shuffles and
 * adds instead of 4 full reductions). */
__attribute__((target("avx512f"), always_inline)) static inline __m128 mlxn_reduce4_512(__m512 a, __m512 b, __m512 c,
                                                                                        __m512 d) {
    __m512 ab = _mm512_add_ps(_mm512_shuffle_f32x4(a, b, 0x44), _mm512_shuffle_f32x4(a, b, 0xEE));
    __m512 cd = _mm512_add_ps(_mm512_shuffle_f32x4(c, d, 0x44), _mm512_shuffle_f32x4(c, d, 0xEE));
    __m512 q = _mm512_add_ps(_mm512_shuffle_f32x4(ab, cd, 0x88), _mm512_shuffle_f32x4(ab, cd, 0xDD));
    q = _mm512_add_ps(q, _mm512_permute_ps(q, 0x4E)); /* quarter i holds vector i's 4 partials */
    q = _mm512_add_ps(q, _mm512_permute_ps(q, 0xB1));
    const __m512i l0 = _mm512_setr_epi32(0, 4, 8, 12, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0);
    return _mm512_castps512_ps128(_mm512_permutexvar_ps(l0, q));
}
#endif
