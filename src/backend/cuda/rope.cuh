/*
 * rope.cuh — the rotary-embedding arithmetic shared by the rope kernels and
 * the decode attention that applies rope itself (kernels_rope.cu,
 * kernels_attention.cu): angles in double, as the CPU, so both agree to f32
 * rounding; the rotation with every product rounded on its own (no fused
 * multiply-add), so each kernel that rotates gets the same bits.
 */
#ifndef MLXN_CUDA_ROPE_CUH
#define MLXN_CUDA_ROPE_CUH

#include "backend/cuda/cuda_common.cuh"

/* The frequency of pair i (host code too: the fused decode attention gets
 * them from the host, ff = NULL, and divides by the factors itself). */
static __host__ __device__ double rope_inv_freq(const mlxn_rope_params &p, int i, const float *ff) {
    double inv = pow((double)p.base, -2.0 * i / p.n_dims);
    if (p.scaling == MLXN_ROPE_SCALE_LLAMA3) {
        double wavelen = 2.0 * M_PI / inv;
        double lo_wl = p.original_max_pos / (double)p.low_freq_factor;
        double hi_wl = p.original_max_pos / (double)p.high_freq_factor;
        if (wavelen > lo_wl) {
            inv /= (double)p.factor;
        } else if (wavelen >= hi_wl) {
            double smooth = (p.original_max_pos / wavelen - (double)p.low_freq_factor) /
                            (double)(p.high_freq_factor - p.low_freq_factor);
            inv = (1 - smooth) * inv / (double)p.factor + smooth * inv;
        }
    }
    if (ff) inv /= (double)ff[i];
    return inv;
}

/* cos and sin of the angle of pair j at position ps, in double as the CPU. */
static __device__ __forceinline__ void rope_cs(int64_t ps, int64_t j, const float *ff, const mlxn_rope_params &p, float *cs,
                                        float *sn) {
    double ppos = (double)ps;
    if (p.scaling == MLXN_ROPE_SCALE_LINEAR) ppos /= (double)p.factor;
    double a = ppos * rope_inv_freq(p, (int)j, ff), c, s;
    sincos(a, &s, &c);
    *cs = (float)c;
    *sn = (float)s;
}

/* rope_cs with the pair's frequency given (rope_inv_freq without factors;
 * ff: the factors, or NULL). */
static __device__ __forceinline__ void rope_cs_inv(int64_t ps, double inv, int64_t j, const float *ff,
                                                   const mlxn_rope_params &p, float *cs, float *sn) {
    double ppos = (double)ps;
    if (p.scaling == MLXN_ROPE_SCALE_LINEAR) ppos /= (double)p.factor;
    if (ff) inv /= (double)ff[j];
    double a = ppos * inv, c, s;
    sincos(a, &s, &c);
    *cs = (float)c;
    *sn = (float)s;
}

static __device__ __forceinline__ float rope_rot0(float x0, float x1, float cs, float sn) {
    return __fsub_rn(__fmul_rn(x0, cs), __fmul_rn(x1, sn));
}
static __device__ __forceinline__ float rope_rot1(float x0, float x1, float cs, float sn) {
    return __fadd_rn(__fmul_rn(x0, sn), __fmul_rn(x1, cs));
}

/* The pair of element d: j (-1 for dims >= n_dims, which pass through) and
 * the two elements i0, i1 of the head it rotates (both d when j < 0). */
static __device__ __forceinline__ int rope_pair(const mlxn_rope_params &p, int d, int *i0, int *i1) {
    int half = p.n_dims / 2;
    if (d >= p.n_dims) {
        *i0 = *i1 = d;
        return -1;
    }
    bool neox = p.mode == MLXN_ROPE_NEOX;
    int j = neox ? (d < half ? d : d - half) : d >> 1;
    *i0 = neox ? j : 2 * j;
    *i1 = neox ? j + half : 2 * j + 1;
    return j;
}
/* Element d after rope, from its pair's values x0 = x[i0], x1 = x[i1]
 * (rope_pair) and the pair's angle cs / sn. */
static __device__ __forceinline__ float rope_val(int d, int j, int i0, float x0, float x1, float cs, float sn) {
    if (j < 0) return x0;
    return d == i0 ? rope_rot0(x0, x1, cs, sn) : rope_rot1(x0, x1, cs, sn);
}

#endif
