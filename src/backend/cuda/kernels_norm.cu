/*
 * kernels_norm.cu — rms_norm, add_rms_norm, layer_norm and softmax: one
 * block per row, block reductions in f32 (the CPU sums in double; the
 * difference is far under the f32 tolerance of the tests).
 */
#include "backend/cuda/cuda_common.cuh"

/* out = x * rsqrt(mean(x^2) + eps) * w; when sum != NULL, x = a + b is
 * written to sum first (add_rms_norm). w may be NULL. */
template <int WT>
__global__ void k_rms(float *out, float *sum, const float *a, const float *b, const void *w, int64_t D, float eps) {
    cu_pdl_enter();
    __shared__ float sh[32];
    int64_t r = blockIdx.x;
    const float *ar = a + r * D;
    float *orow = out + r * D;
    float ss = 0;
    if (sum) {
        const float *br = b + r * D;
        float *sr = sum + r * D;
        for (int64_t i = threadIdx.x; i < D; i += blockDim.x) {
            float v = ar[i] + br[i];
            sr[i] = v;
            ss += v * v;
        }
        ar = sr; /* read back this thread's own writes below */
    } else {
        for (int64_t i = threadIdx.x; i < D; i += blockDim.x) ss += ar[i] * ar[i];
    }
    ss = cu_block_sum(ss, sh);
    float rs = (float)(1.0 / sqrt((double)ss / (double)D + (double)eps));
    for (int64_t i = threadIdx.x; i < D; i += blockDim.x) {
        float v = ar[i] * rs;
        if (w) v *= cu_ld<WT>(w, i);
        orow[i] = v;
    }
}

/* k_rms for rows of D = 4 * blockDim.x: each thread holds one float4 in
 * registers (no read-back of the sum it wrote; one pass over memory). */
template <int WT>
__global__ void k_rms4(float *out, float *sum, const float *a, const float *b, const void *w, int64_t D, float eps) {
    cu_pdl_enter();
    __shared__ float sh[32];
    int64_t r = blockIdx.x;
    int i = threadIdx.x;
    float4 v = ((const float4 *)(a + r * D))[i];
    if (sum) {
        float4 c = ((const float4 *)(b + r * D))[i];
        v.x += c.x;
        v.y += c.y;
        v.z += c.z;
        v.w += c.w;
        ((float4 *)(sum + r * D))[i] = v;
    }
    float ss = v.x * v.x + v.y * v.y + v.z * v.z + v.w * v.w;
    float wv[4] = {1.0f, 1.0f, 1.0f, 1.0f};
    if (w) {
#pragma unroll
        for (int k = 0; k < 4; k++) wv[k] = cu_ld<WT>(w, 4 * (int64_t)i + k);
    }
    ss = cu_block_sum(ss, sh);
    float rs = (float)(1.0 / sqrt((double)ss / (double)D + (double)eps));
    float4 o;
    o.x = v.x * rs * wv[0];
    o.y = v.y * rs * wv[1];
    o.z = v.z * rs * wv[2];
    o.w = v.w * rs * wv[3];
    ((float4 *)(out + r * D))[i] = o;
}

__global__ void k_layer_norm(float *out, const float *x, const void *w, int wdt, const void *b, int bdt, int64_t D,
                             float eps) {
    cu_pdl_enter();
    __shared__ float sh[32];
    const float *xr = x + blockIdx.x * D;
    float *orow = out + blockIdx.x * D;
    float s = 0;
    for (int64_t i = threadIdx.x; i < D; i += blockDim.x) s += xr[i];
    float mean = cu_block_sum(s, sh) / (float)D;
    float v = 0;
    for (int64_t i = threadIdx.x; i < D; i += blockDim.x) {
        float d = xr[i] - mean;
        v += d * d;
    }
    v = cu_block_sum(v, sh);
    float inv = (float)(1.0 / sqrt((double)v / (double)D + (double)eps));
    for (int64_t i = threadIdx.x; i < D; i += blockDim.x) {
        float y = (xr[i] - mean) * inv;
        if (w) y *= cu_ld_rt(w, wdt, i);
        if (b) y += cu_ld_rt(b, bdt, i);
        orow[i] = y;
    }
}

__global__ void k_softmax(float *out, const float *x, const float *mask, int64_t mrows, int64_t C, float scale) {
    cu_pdl_enter();
    __shared__ float sh[32];
    int64_t r = blockIdx.x;
    const float *xr = x + r * C;
    float *orow = out + r * C;
    const float *m = mask ? mask + (mrows == 1 ? 0 : r) * C : nullptr;
    float mx = -INFINITY;
    for (int64_t i = threadIdx.x; i < C; i += blockDim.x) {
        float v = xr[i] * scale + (m ? m[i] : 0.0f);
        orow[i] = v;
        mx = fmaxf(mx, v);
    }
    mx = cu_block_max(mx, sh);
    float s = 0;
    for (int64_t i = threadIdx.x; i < C; i += blockDim.x) {
        float e = mx == -INFINITY ? 0.0f : expf(orow[i] - mx);
        orow[i] = e;
        s += e;
    }
    s = cu_block_sum(s, sh);
    float inv = s > 0 ? 1.0f / s : 0.0f;
    for (int64_t i = threadIdx.x; i < C; i += blockDim.x) orow[i] *= inv;
}

static unsigned threads_for(int64_t D) {
    return D >= 1024 ? 1024 : D >= 256 ? 256 : 128;
}

cudaError_t mlxn_cu_norm(const cu_node *n, cudaStream_t s) {
    const cu_tensor *t = n->t;
    switch (n->op) {
    case CU_OP_RMS_NORM:
    case CU_OP_ADD_RMS_NORM: {
        bool add = n->op == CU_OP_ADD_RMS_NORM;
        const cu_tensor *x = add ? &t[2] : &t[1], *w = add ? &t[4] : &t[2];
        float *out = (float *)(add ? t[1].data : t[0].data);
        float *sum = add ? (float *)t[0].data : nullptr;
        const float *b = add ? (const float *)t[3].data : nullptr;
        int64_t D = x->cols;
        unsigned g = (unsigned)x->rows, th = threads_for(D);
        int wt = w->data ? w->dtype : MLXN_F32;
        bool al = ((uintptr_t)x->data | (uintptr_t)out | (uintptr_t)sum | (uintptr_t)b) % 16 == 0;
        if (al && D % 128 == 0 && D / 4 <= 1024) {
            unsigned t4 = (unsigned)(D / 4);
            if (wt == MLXN_F32) cu_launch(k_rms4<MLXN_F32>, g, t4, 0, s, out, sum, (const float *)x->data, b, w->data, D, n->eps);
            else if (wt == MLXN_F16) cu_launch(k_rms4<MLXN_F16>, g, t4, 0, s, out, sum, (const float *)x->data, b, w->data, D, n->eps);
            else cu_launch(k_rms4<MLXN_BF16>, g, t4, 0, s, out, sum, (const float *)x->data, b, w->data, D, n->eps);
            break;
        }
        if (wt == MLXN_F32) cu_launch(k_rms<MLXN_F32>, g, th, 0, s, out, sum, (const float *)x->data, b, w->data, D, n->eps);
        else if (wt == MLXN_F16) cu_launch(k_rms<MLXN_F16>, g, th, 0, s, out, sum, (const float *)x->data, b, w->data, D, n->eps);
        else cu_launch(k_rms<MLXN_BF16>, g, th, 0, s, out, sum, (const float *)x->data, b, w->data, D, n->eps);
        break;
    }
    case CU_OP_LAYER_NORM:
        cu_launch(k_layer_norm, (unsigned)t[1].rows, threads_for(t[1].cols), 0, s, 
            (float *)t[0].data, (const float *)t[1].data, t[2].data, t[2].dtype, t[3].data, t[3].dtype, t[1].cols,
            n->eps);
        break;
    case CU_OP_SOFTMAX: {
        int64_t C = t[1].cols, mrows = t[2].data ? t[2].elems / C : 0;
        cu_launch(k_softmax, (unsigned)t[1].rows, threads_for(C), 0, s, (float *)t[0].data, (const float *)t[1].data,
                                                                 (const float *)t[2].data, mrows, C, n->softmax_scale);
        break;
    }
    default:
        return cudaErrorInvalidValue;
    }
    CU_LAUNCH_CHECK();
    return cudaSuccess;
}
