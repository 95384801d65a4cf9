/*
 * kernels_rope.cu — rotary embedding, normal and neox pairing, partial
 * rotation (n_dims < D), linear and llama3 scaling, freq factors. Positions
 * are read from device memory when the kernel runs (replay moves them).
 * Angles in double, as the CPU, so both agree to f32 rounding.
 */
#include "backend/cuda/cuda_common.cuh"

__device__ static double rope_inv_freq(const mlxn_rope_params &p, int i, const float *ff) {
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

/* One thread per (t, h, j): j < n_dims/2 rotates pair j (both elements, so
 * in-place use is safe); the rest copy the unrotated tail when out != x. */
__global__ void k_rope(float *out, const float *x, const int32_t *pos, const float *ff, mlxn_rope_params p, int64_t T,
                       int64_t H, int64_t D) {
    cu_pdl_enter();
    int half = p.n_dims / 2;
    int64_t per = half + (D - p.n_dims);
    int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= T * H * per) return;
    int64_t j = i % per, th = i / per, t = th / H;
    const float *xr = x + th * D;
    float *o = out + th * D;
    if (j >= half) {
        int64_t d = p.n_dims + (j - half);
        if (o != xr) o[d] = xr[d];
        return;
    }
    double ppos = pos[t];
    if (p.scaling == MLXN_ROPE_SCALE_LINEAR) ppos /= (double)p.factor;
    double a = ppos * rope_inv_freq(p, (int)j, ff);
    float cs = (float)cos(a), sn = (float)sin(a);
    int64_t i0 = p.mode == MLXN_ROPE_NEOX ? j : 2 * j;
    int64_t i1 = p.mode == MLXN_ROPE_NEOX ? j + half : 2 * j + 1;
    float x0 = xr[i0], x1 = xr[i1];
    o[i0] = x0 * cs - x1 * sn;
    o[i1] = x0 * sn + x1 * cs;
}

/* Fused rope -> kv_write: as k_rope, each rotated pair (and the tail) goes
 * straight into the cache [Hkv, C, D] at row positions[t] % C. */
__global__ void k_rope_kv_write(void *cache, int cdt, const float *x, const int32_t *pos, const float *ff,
                                mlxn_rope_params p, int64_t T, int64_t H, int64_t C, int64_t D) {
    cu_pdl_enter();
    int half = p.n_dims / 2;
    int64_t per = half + (D - p.n_dims);
    int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= T * H * per) return;
    int64_t j = i % per, th = i / per, t = th / H, h = th % H;
    int64_t ps = pos[t];
    if (ps < 0) return;
    const float *xr = x + th * D;
    int64_t row = (h * C + ps % C) * D;
    if (j >= half) {
        int64_t d = p.n_dims + (j - half);
        cu_st_rt(cache, cdt, row + d, xr[d]);
        return;
    }
    double ppos = ps;
    if (p.scaling == MLXN_ROPE_SCALE_LINEAR) ppos /= (double)p.factor;
    double a = ppos * rope_inv_freq(p, (int)j, ff);
    float cs = (float)cos(a), sn = (float)sin(a);
    int64_t i0 = p.mode == MLXN_ROPE_NEOX ? j : 2 * j;
    int64_t i1 = p.mode == MLXN_ROPE_NEOX ? j + half : 2 * j + 1;
    float x0 = xr[i0], x1 = xr[i1];
    cu_st_rt(cache, cdt, row + i0, x0 * cs - x1 * sn);
    cu_st_rt(cache, cdt, row + i1, x0 * sn + x1 * cs);
}

cudaError_t mlxn_cu_rope(const cu_node *n, cudaStream_t s) {
    const cu_tensor *t = n->t;
    if (n->op == CU_OP_ROPE_KV_WRITE) {
        int64_t T = t[1].shape[0], H = t[1].shape[1], D = t[1].shape[2], C = t[0].shape[1];
        int64_t per = n->rope.n_dims / 2 + (D - n->rope.n_dims);
        cu_launch(k_rope_kv_write, cu_blocks(T * H * per, 128), 128, 0, s, t[0].data, t[0].dtype, (const float *)t[1].data,
                                                                   (const int32_t *)t[2].data,
                                                                   (const float *)t[3].data, n->rope, T, H, C, D);
        CU_LAUNCH_CHECK();
        return cudaSuccess;
    }
    int64_t T = t[1].shape[0], H = t[1].shape[1], D = t[1].shape[2];
    int64_t per = n->rope.n_dims / 2 + (D - n->rope.n_dims);
    cu_launch(k_rope, cu_blocks(T * H * per, 128), 128, 0, s, (float *)t[0].data, (const float *)t[1].data,
                                                       (const int32_t *)t[2].data, (const float *)t[3].data, n->rope,
                                                       T, H, D);
    CU_LAUNCH_CHECK();
    return cudaSuccess;
}

