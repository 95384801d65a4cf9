/*
 * kernels_dispatch.cu — the CUDA op table: op id -> kernel family, plus
 * which nodes the kernels take and how much scratch they need.
 */
#include "backend/cuda/cuda_common.cuh"

#include <stdlib.h>
#include <string.h>

typedef cudaError_t (*cu_family)(const cu_node *n, void *scratch, cudaStream_t s);

static cudaError_t f_elem(const cu_node *n, void *, cudaStream_t s) { return mlxn_cu_elementwise(n, s); }
static cudaError_t f_norm(const cu_node *n, void *, cudaStream_t s) { return mlxn_cu_norm(n, s); }
static cudaError_t f_mm(const cu_node *n, void *scr, cudaStream_t s) { return mlxn_cu_matmul(n, scr, s); }
static cudaError_t f_rows(const cu_node *n, void *, cudaStream_t s) { return mlxn_cu_get_rows(n, s); }
static cudaError_t f_rope(const cu_node *n, void *, cudaStream_t s) { return mlxn_cu_rope(n, s); }
static cudaError_t f_attn(const cu_node *n, void *scr, cudaStream_t s) { return mlxn_cu_attention(n, scr, s); }
static cudaError_t f_topk(const cu_node *n, void *scr, cudaStream_t s) { return mlxn_cu_top_k(n, scr, s); }
static cudaError_t f_lse(const cu_node *n, void *scr, cudaStream_t s) { return mlxn_cu_logsumexp(n, scr, s); }
static cudaError_t f_amax(const cu_node *n, void *scr, cudaStream_t s) { return mlxn_cu_argmax(n, scr, s); }
static cudaError_t f_none(const cu_node *, void *, cudaStream_t) { return cudaErrorInvalidValue; }
static cudaError_t f_mid(const cu_node *n, void *, cudaStream_t s) { return mlxn_cu_matmul_id(n, s); }

static const cu_family cu_ops[CU_OP_COUNT] = {
    /* ADD */ f_elem, /* MUL */ f_elem, /* SCALE */ f_elem, /* SILU */ f_elem, /* SILU_MUL */ f_elem,
    /* GELU */ f_elem, /* SOFTCAP */ f_elem, /* RMS_NORM */ f_norm, /* ADD_RMS_NORM */ f_norm,
    /* LAYER_NORM */ f_norm, /* SOFTMAX */ f_norm, /* MATMUL */ f_mm, /* MATMUL_MLX */ f_mm,
    /* ROPE */ f_rope, /* COPY */ f_elem, /* GET_ROWS */ f_rows, /* GET_ROWS_MLX */ f_rows,
    /* KV_WRITE */ f_rope, /* ATTENTION */ f_attn, /* ARGMAX */ f_amax, /* TOP_K */ f_topk,
    /* MATMUL_ID */ f_mid, /* ROPE_KV_WRITE */ f_rope, /* ATTENTION_PARTIAL */ f_none, /* ATTENTION_MERGE */ f_none,
    /* LOGSUMEXP */ f_lse,
};
static_assert(sizeof cu_ops / sizeof cu_ops[0] == CU_OP_COUNT, "cuda op table out of date");

extern "C" int mlxn_cu_pdl(void) {
    static int on = -1;
    if (on < 0) on = cu_sm90_feature("MLXN_CU_PDL");
    return on;
}

static bool al16(const void *p) { return ((uintptr_t)p & 15) == 0; }

extern "C" bool mlxn_cu_supports(const cu_node *n) {
    const cu_tensor *t = n->t;
    switch (n->op) {
    case CU_OP_MATMUL:
        if (t[2].dtype == MLXN_F32 || t[2].dtype == MLXN_F16 || t[2].dtype == MLXN_BF16) return true;
        return al16(t[2].data) && al16(t[1].data);
    case CU_OP_MATMUL_MLX: return al16(t[2].data) && al16(t[1].data);
    case CU_OP_GET_ROWS:
        if (t[1].dtype == MLXN_F32 || t[1].dtype == MLXN_F16 || t[1].dtype == MLXN_BF16) return true;
        return al16(t[1].data);
    case CU_OP_GET_ROWS_MLX: return al16(t[1].data);
    case CU_OP_ATTENTION: return t[1].shape[2] <= 256;
    case CU_OP_ATTENTION_PARTIAL:
    case CU_OP_ATTENTION_MERGE: return false;
    case CU_OP_MATMUL_ID: /* the decoders' 16-byte loads: aligned weights, rows of whole 16-byte units */
        return al16(t[2].data) && (t[2].nbytes / (size_t)(t[2].shape[0] * t[2].shape[1])) % 16 == 0;
    default: return (unsigned)n->op < CU_OP_COUNT;
    }
}

extern "C" size_t mlxn_cu_scratch_bytes(const cu_node *n) {
    if (n->op == CU_OP_ATTENTION) return mlxn_cu_attention_scratch(n);
    if (n->op == CU_OP_ARGMAX) return mlxn_cu_argmax_scratch(n);
    if (n->op == CU_OP_TOP_K) return mlxn_cu_top_k_scratch(n);
    if (n->op == CU_OP_LOGSUMEXP) return mlxn_cu_logsumexp_scratch(n);
    if (n->op == CU_OP_MATMUL || n->op == CU_OP_MATMUL_MLX) return mlxn_cu_matmul_node_scratch(n);
    return 0;
}

/* MLXN_CU_SKIP=name,name,... (a measuring aid, results are garbage): nodes
 * of these ops launch nothing, so a replayed step's time without them shows
 * what they cost inside the graph. */
static const char *const cu_op_names[CU_OP_COUNT] = {
    "add", "mul", "scale", "silu", "silu_mul", "gelu", "softcap", "rms_norm", "add_rms_norm", "layer_norm",
    "softmax", "matmul", "matmul_mlx", "rope", "copy", "get_rows", "get_rows_mlx", "kv_write", "attention",
    "argmax", "top_k", "matmul_id", "rope_kv_write", "attention_partial", "attention_merge", "logsumexp"};
static bool cu_skipped(int op) {
    static int init = 0;
    static bool skip[CU_OP_COUNT];
    if (!init) {
        const char *e = getenv("MLXN_CU_SKIP");
        for (int i = 0; e && i < CU_OP_COUNT; i++) {
            size_t l = strlen(cu_op_names[i]);
            for (const char *p = e; (p = strstr(p, cu_op_names[i])) != NULL; p += l)
                if ((p == e || p[-1] == ',') && (p[l] == ',' || p[l] == 0)) skip[i] = true;
        }
        init = 1;
    }
    return skip[op];
}

extern "C" cudaError_t mlxn_cu_launch(const cu_node *n, void *scratch, cudaStream_t s) {
    if ((unsigned)n->op >= CU_OP_COUNT) return cudaErrorInvalidValue;
    if (cu_skipped(n->op)) return cudaSuccess;
    return cu_ops[n->op](n, scratch, s);
}
