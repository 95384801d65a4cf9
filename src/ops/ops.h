/*
 * ops.h — the op table. Every op has an id, a typed params struct (in the
 * node's union), and a descriptor: name, how many of its tensor slots are
 * written, whether the reorder pass may move it. Slot order per op is fixed
 * and written beside the enum; outputs come first. Backends keep one kernel
 * table indexed by op id, each with a static_assert on MLXN_OP_COUNT.
 */
#ifndef MLXN_OPS_H
#define MLXN_OPS_H

#include "core/object.h"

typedef enum mlxn_op {
    MLXN_OP_ADD = 0,          /* out | a, b */
    MLXN_OP_MUL = 1,          /* out | a, b */
    MLXN_OP_SCALE = 2,        /* out | a */
    MLXN_OP_SILU = 3,         /* out | a */
    MLXN_OP_SILU_MUL = 4,     /* out | gate, up */
    MLXN_OP_GELU = 5,         /* out | a */
    MLXN_OP_SOFTCAP = 6,      /* out | a */
    MLXN_OP_RMS_NORM = 7,     /* out | x [, w] */
    MLXN_OP_ADD_RMS_NORM = 8, /* sum, out | a, b [, w] */
    MLXN_OP_LAYER_NORM = 9,   /* out | x, [w], [b]  (absent slots have alloc NULL) */
    MLXN_OP_SOFTMAX = 10,     /* out | x [, mask] */
    MLXN_OP_MATMUL = 11,      /* out | x, w */
    MLXN_OP_MATMUL_MLX = 12,  /* out | x, wq, scales, biases */
    MLXN_OP_ROPE = 13,        /* out | x, positions [, freq_factors] */
    MLXN_OP_COPY = 14,        /* out | x */
    MLXN_OP_GET_ROWS = 15,    /* out | table, ids */
    MLXN_OP_GET_ROWS_MLX = 16, /* out | wq, scales, biases, ids */
    MLXN_OP_KV_WRITE = 17,    /* cache | x, positions */
    MLXN_OP_ATTENTION = 18,   /* out | q, k_cache, v_cache, positions */
    MLXN_OP_ARGMAX = 19,      /* out | x */
    MLXN_OP_TOP_K = 20,       /* idx, val | x */
    MLXN_OP_MATMUL_ID = 21,   /* out | x, w, ids */
    MLXN_OP_ROPE_KV_WRITE = 22, /* cache | x, positions [, freq_factors]: fused rope -> kv_write */
    MLXN_OP_ATTENTION_PARTIAL = 23, /* partials | q, k_cache, v_cache, positions: split-KV part */
    MLXN_OP_ATTENTION_MERGE = 24,   /* out | partials: combines the splits */
    MLXN_OP_LOGSUMEXP = 25,   /* out | x: per row (max, sum of exp(scale * (x - max))) */
    MLXN_OP_COUNT
} mlxn_op;

#define MLXN_MAX_SLOTS 8

typedef struct mlxn_unary_params {
    float f;   /* scale / softcap cap */
    int mode;  /* gelu: approximate */
} mlxn_unary_params;

typedef struct mlxn_norm_params {
    float eps;
} mlxn_norm_params;

typedef struct mlxn_softmax_params {
    float scale;
} mlxn_softmax_params;

typedef struct mlxn_topk_params {
    int k;
} mlxn_topk_params;

typedef struct mlxn_lse_params {
    double scale; /* > 0; double so a sampler's 1/temp reaches the kernel unrounded */
} mlxn_lse_params;

typedef struct mlxn_matmul_id_params {
    int top_k;       /* experts per token */
    bool x_per_slot; /* x has one row per (token, slot) instead of per token */
} mlxn_matmul_id_params;

/* Split-KV attention (flash-decoding): each (token, head) runs `splits`
 * parts over slices of its keys; partials rows are [m, l, acc[D]]. */
typedef struct mlxn_attn_split_params {
    mlxn_attention_params a;
    int splits;
} mlxn_attn_split_params;

typedef union mlxn_op_params {
    mlxn_attn_split_params split;
    mlxn_topk_params topk;
    mlxn_lse_params lse;
    mlxn_matmul_id_params mid;
    mlxn_unary_params u;
    mlxn_norm_params norm;
    mlxn_softmax_params softmax;
    mlxn_mlx_quant mlx;
    mlxn_rope_params rope;
    mlxn_attention_params attn;
} mlxn_op_params;

enum { MLXN_ACCESS_READ = 1, MLXN_ACCESS_WRITE = 2 };

typedef struct mlxn_node {
    mlxn_op op;
    uint8_t n_slots;  /* tensors in t[]; optional absent ones have alloc NULL */
    uint8_t n_out;    /* the first n_out slots are written */
    mlxn_tensor t[MLXN_MAX_SLOTS];
    mlxn_op_params p;
    uint32_t id;      /* recording index, for dumps */
    uint32_t flags;   /* MLXN_NODE_* */
} mlxn_node;

enum {
    MLXN_NODE_F32_ACT = 1u << 0,  /* matmuls keep activations in f32 (no int8) */
    MLXN_NODE_INT8_ACT = 1u << 1, /* MLX decode matmuls: x in int8 alone (no residual part) */
};

typedef struct mlxn_op_desc {
    const char *name;
    bool reorderable; /* the reorder pass may move it */
} mlxn_op_desc;

extern const mlxn_op_desc mlxn_op_table[MLXN_OP_COUNT];

static inline const char *mlxn_op_name(mlxn_op op) {
    return (unsigned)op < MLXN_OP_COUNT ? mlxn_op_table[op].name : "?";
}

/* Byte ranges: the slot's [offset, offset + nbytes) in its allocation. Slots
 * with access WRITE are the first n_out. A written slot's range counts as
 * read too when the op reads it (kv_write keeps other rows; in-place ops). */
static inline bool mlxn_ranges_overlap(const mlxn_tensor *a, const mlxn_tensor *b) {
    return a->alloc && b->alloc && a->alloc->id == b->alloc->id && a->offset < b->offset + b->nbytes &&
           b->offset < a->offset + a->nbytes;
}

/* Two nodes conflict when a range one writes overlaps a range the other
 * reads or writes. */
bool mlxn_nodes_conflict(const mlxn_node *a, const mlxn_node *b);

/* Element load/store helpers for weight-like inputs of any float dtype. */
static inline float mlxn_load_f(const void *p, mlxn_dtype t, size_t i) {
    switch (t) {
    case MLXN_F32: return ((const float *)p)[i];
    case MLXN_F16: return mlxn_f16_to_f32(((const uint16_t *)p)[i]);
    case MLXN_BF16: return mlxn_bf16_to_f32(((const uint16_t *)p)[i]);
    default: return 0.0f;
    }
}

#endif
