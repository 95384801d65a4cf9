/*
 * kernels_rope.cu — rotary embedding, normal and neox pairing, partial
 * rotation (n_dims < D), linear and llama3 scaling, freq factors. Positions
 * are read from device memory when the kernel runs (replay moves them).
 * Angles in double, as the CPU, so both agree to f32 rounding.
 */
#include "backend/cuda/cuda_common.cuh"
#include "backend/cuda/rope.cuh"

#include <string.h>

/* What thread i of a rope / rope_kv_write job may compute before its
 * inputs exist: its position and its pair's angle (pre = NULL in the
 * kernels that compute them after the wait). */
struct RopePre {
    int64_t ps;
    float cs, sn;
};
__device__ __forceinline__ void rope_pre(int64_t i, const int32_t *pos, const float *ff, const mlxn_rope_params &p,
                                         int64_t T, int64_t H, int64_t D, RopePre *r) {
    int half = p.n_dims / 2;
    int64_t per = half + (D - p.n_dims);
    r->ps = -1;
    r->cs = 1.0f;
    r->sn = 0.0f;
    if (i >= T * H * per) return;
    int64_t j = i % per, t = (i / per) / H;
    r->ps = pos[t];
    if (j < half && r->ps >= 0) rope_cs(r->ps, j, ff, p, &r->cs, &r->sn);
}

/* One thread per (t, h, j): j < n_dims/2 rotates pair j (both elements, so
 * in-place use is safe); the rest copy the unrotated tail when out != x. */
__device__ __forceinline__ void rope_one(int64_t i, float *out, const float *x, const int32_t *pos, const float *ff,
                                         const mlxn_rope_params &p, int64_t T, int64_t H, int64_t D,
                                         const RopePre *pre = NULL) {
    int half = p.n_dims / 2;
    int64_t per = half + (D - p.n_dims);
    if (i >= T * H * per) return;
    int64_t j = i % per, th = i / per, t = th / H;
    const float *xr = x + th * D;
    float *o = out + th * D;
    if (j >= half) {
        int64_t d = p.n_dims + (j - half);
        if (o != xr) o[d] = xr[d];
        return;
    }
    float cs, sn;
    if (pre) cs = pre->cs, sn = pre->sn;
    else rope_cs(pos[t], j, ff, p, &cs, &sn);
    int64_t i0 = p.mode == MLXN_ROPE_NEOX ? j : 2 * j;
    int64_t i1 = p.mode == MLXN_ROPE_NEOX ? j + half : 2 * j + 1;
    float x0 = xr[i0], x1 = xr[i1];
    o[i0] = rope_rot0(x0, x1, cs, sn);
    o[i1] = rope_rot1(x0, x1, cs, sn);
}

/* Fused rope -> kv_write: as rope_one, each rotated pair (and the tail) goes
 * straight into the cache [Hkv, C, D] at row positions[t] % C. */
__device__ __forceinline__ void rope_kv_write_one(int64_t i, void *cache, int cdt, const float *x, const int32_t *pos,
                                                  const float *ff, const mlxn_rope_params &p, int64_t T, int64_t H,
                                                  int64_t C, int64_t D, const RopePre *pre = NULL) {
    int half = p.n_dims / 2;
    int64_t per = half + (D - p.n_dims);
    if (i >= T * H * per) return;
    int64_t j = i % per, th = i / per, t = th / H, h = th % H;
    int64_t ps = pre ? pre->ps : pos[t];
    if (ps < 0) return;
    const float *xr = x + th * D;
    int64_t row = (h * C + ps % C) * D;
    if (j >= half) {
        int64_t d = p.n_dims + (j - half);
        cu_st_rt(cache, cdt, row + d, xr[d]);
        return;
    }
    float cs, sn;
    if (pre) cs = pre->cs, sn = pre->sn;
    else rope_cs(ps, j, ff, p, &cs, &sn);
    int64_t i0 = p.mode == MLXN_ROPE_NEOX ? j : 2 * j;
    int64_t i1 = p.mode == MLXN_ROPE_NEOX ? j + half : 2 * j + 1;
    float x0 = xr[i0], x1 = xr[i1];
    cu_st_rt(cache, cdt, row + i0, rope_rot0(x0, x1, cs, sn));
    cu_st_rt(cache, cdt, row + i1, rope_rot1(x0, x1, cs, sn));
}

/* kv_write, one element: cache [Hkv, C, D] at row positions[t] % C;
 * negative positions write nothing. */
__device__ __forceinline__ void kv_write_one(int64_t i, void *cache, int cdt, const float *x, const int32_t *pos,
                                             int64_t T, int64_t Hkv, int64_t C, int64_t D) {
    if (i >= T * Hkv * D) return;
    int64_t d = i % D, th = i / D, h = th % Hkv, t = th / Hkv;
    int64_t p = pos[t];
    if (p < 0) return;
    cu_st_rt(cache, cdt, (h * C + p % C) * D + d, x[i]);
}

__global__ void k_rope(float *out, const float *x, const int32_t *pos, const float *ff, mlxn_rope_params p, int64_t T,
                       int64_t H, int64_t D) {
    cu_pdl_enter();
    rope_one((int64_t)blockIdx.x * blockDim.x + threadIdx.x, out, x, pos, ff, p, T, H, D);
}

__global__ void k_rope_kv_write(void *cache, int cdt, const float *x, const int32_t *pos, const float *ff,
                                mlxn_rope_params p, int64_t T, int64_t H, int64_t C, int64_t D) {
    cu_pdl_enter();
    rope_kv_write_one((int64_t)blockIdx.x * blockDim.x + threadIdx.x, cache, cdt, x, pos, ff, p, T, H, C, D);
}

__global__ void k_kv_write(void *cache, int cdt, const float *x, const int32_t *pos, int64_t T, int64_t Hkv,
                           int64_t C, int64_t D) {
    cu_pdl_enter();
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < T * Hkv * D; i += (int64_t)gridDim.x * blockDim.x)
        kv_write_one(i, cache, cdt, x, pos, T, Hkv, C, D);
}

/* ---- a group of rope / rope_kv_write / kv_write nodes as one launch ----
 * Decode runs three of them a layer (q, k, v), independent of each other
 * and each a few hundred threads: one after another on a stream, each pays
 * a launch and a wait on the one before. Here each job takes a contiguous
 * range of the blocks. */
#define ROPE_GROUP_MAX 4
struct RopeJob {
    int op;           /* CU_OP_ROPE, CU_OP_ROPE_KV_WRITE or CU_OP_KV_WRITE */
    int cdt;          /* cache dtype */
    void *out;        /* rope: out; the others: the cache */
    const float *x;
    const int32_t *pos;
    const float *ff;
    mlxn_rope_params p;
    int64_t T, H, C, D;
    unsigned b0, b1;  /* the job's blocks */
};
struct RopeGroup {
    RopeJob j[ROPE_GROUP_MAX];
    int n;
};

/* EARLY: no kernel of the graph writes the positions or the frequency
 * factors, so each rotating thread reads its position and computes its
 * angle (double pow, cos, sin) before the wait for q / k, off the critical
 * path. */
template <bool EARLY>
__global__ void __launch_bounds__(128) k_rope_group(RopeGroup g) {
    int k = 0;
    while (k + 1 < g.n && blockIdx.x >= g.j[k].b1) k++;
    const RopeJob &J = g.j[k];
    int64_t i = (int64_t)(blockIdx.x - J.b0) * blockDim.x + threadIdx.x;
    RopePre pre;
    if (EARLY && J.op != CU_OP_KV_WRITE) rope_pre(i, J.pos, J.ff, J.p, J.T, J.H, J.D, &pre);
    cu_pdl_enter();
    const RopePre *pp = EARLY ? &pre : NULL;
    if (J.op == CU_OP_ROPE) rope_one(i, (float *)J.out, J.x, J.pos, J.ff, J.p, J.T, J.H, J.D, pp);
    else if (J.op == CU_OP_ROPE_KV_WRITE) rope_kv_write_one(i, J.out, J.cdt, J.x, J.pos, J.ff, J.p, J.T, J.H, J.C, J.D, pp);
    else kv_write_one(i, J.out, J.cdt, J.x, J.pos, J.T, J.H, J.C, J.D);
}

/* Threads a node of the group takes (0: not a group op). */
static int64_t rope_threads(const cu_node *n) {
    const cu_tensor *t = n->t;
    int64_t T = t[1].shape[0], H = t[1].shape[1], D = t[1].shape[2];
    if (n->op == CU_OP_ROPE || n->op == CU_OP_ROPE_KV_WRITE) return T * H * (n->rope.n_dims / 2 + (D - n->rope.n_dims));
    if (n->op == CU_OP_KV_WRITE) return T * H * D;
    return 0;
}

extern "C" bool mlxn_cu_groupable(const cu_node *n) {
    int64_t th = rope_threads(n);
    return th > 0 && th <= 65536; /* decode-sized */
}

extern "C" cudaError_t mlxn_cu_launch_group(const cu_node *ns, int cnt, cudaStream_t s, bool early) {
    if (cnt < 1 || cnt > ROPE_GROUP_MAX) return cudaErrorInvalidValue;
    RopeGroup g;
    memset(&g, 0, sizeof g);
    unsigned b = 0;
    for (int k = 0; k < cnt; k++) {
        const cu_node *n = &ns[k];
        const cu_tensor *t = n->t;
        if (!mlxn_cu_groupable(n)) return cudaErrorInvalidValue;
        RopeJob &J = g.j[k];
        J.op = n->op;
        J.x = (const float *)t[1].data;
        J.pos = (const int32_t *)t[2].data;
        J.T = t[1].shape[0];
        J.H = t[1].shape[1];
        J.D = t[1].shape[2];
        if (n->op == CU_OP_ROPE) {
            J.out = t[0].data;
        } else {
            J.out = t[0].data;
            J.cdt = t[0].dtype;
            J.C = t[0].shape[1];
        }
        if (n->op != CU_OP_KV_WRITE) {
            J.ff = (const float *)t[3].data;
            J.p = n->rope;
        }
        J.b0 = b;
        b += cu_blocks(rope_threads(n), 128);
        J.b1 = b;
    }
    g.n = cnt;
    if (early) cu_launch(k_rope_group<true>, b, 128, 0, s, g);
    else cu_launch(k_rope_group<false>, b, 128, 0, s, g);
    CU_LAUNCH_CHECK();
    return cudaSuccess;
}

cudaError_t mlxn_cu_rope(const cu_node *n, cudaStream_t s) {
    const cu_tensor *t = n->t;
    if (n->op == CU_OP_KV_WRITE) {
        int64_t T = t[1].shape[0], Hkv = t[1].shape[1], D = t[1].shape[2], C = t[0].shape[1];
        int64_t nb = cu_blocks(T * Hkv * D, 256);
        cu_launch(k_kv_write, (unsigned)(nb < 4096 ? nb : 4096), 256, 0, s, t[0].data, t[0].dtype,
                  (const float *)t[1].data, (const int32_t *)t[2].data, T, Hkv, C, D);
        CU_LAUNCH_CHECK();
        return cudaSuccess;
    }
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

