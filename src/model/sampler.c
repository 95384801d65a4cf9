/*
 * sampler.c — picking the next token from logits: repetition penalty,
 * greedy, top-k, temperature, top-p, min-p, and a seeded PCG32 draw, so the
 * same seed and logits always give the same token.
 *
 * Order (as llama.cpp's default chain, temperature applied to the kept
 * logits): penalty → [greedy] → top-k → softmax(l / temp) → top-p → min-p
 * → renormalise → inverse-CDF draw over the kept tokens (sorted by
 * probability, ties by id, when a filter is on). Nothing sorts the whole
 * vocabulary: top-k selects with a heap, top-p sorts only the prefix above
 * a falling threshold, min-p partitions first.
 */
#include "model/model.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct cand {
    float l; /* logit, then probability */
    int32_t id;
} cand;

struct mlxn_sampler {
    mlxn_sampler_params p;
    int vocab;
    uint64_t state, inc; /* PCG32 */
    cand *c;             /* [vocab] scratch */
    int32_t *hist;       /* ring of the last repeat_last_n tokens */
    int n_hist, hist_at;
};

/* PCG32 (O'Neill, pcg32_random_r), seeded like pcg32_srandom_r. */
static uint32_t pcg32(mlxn_sampler *s) {
    uint64_t old = s->state;
    s->state = old * 6364136223846793005ull + s->inc;
    uint32_t xs = (uint32_t)(((old >> 18u) ^ old) >> 27u);
    uint32_t rot = (uint32_t)(old >> 59u);
    return (xs >> rot) | (xs << ((-rot) & 31));
}

static void pcg_seed(mlxn_sampler *s, uint64_t seed) {
    s->state = 0;
    s->inc = (0xda3e39cb94b95bdbull << 1u) | 1u;
    pcg32(s);
    s->state += seed;
    pcg32(s);
}

double mlxn_sampler_uniform(mlxn_sampler *s) {
    uint64_t hi = pcg32(s), lo = pcg32(s);
    return (double)((hi << 21) ^ (lo >> 11)) * (1.0 / 9007199254740992.0); /* 53 bits */
}

void mlxn_sampler_reset(mlxn_sampler *s) {
    if (!s) return;
    pcg_seed(s, s->p.seed);
    s->n_hist = s->hist_at = 0;
}

mlxn_status mlxn_sampler_create(mlxn_sampler **out, const mlxn_sampler_params *p, int vocab) {
    if (!out) return mlxn_err(MLXN_ERR_INVALID_ARG, "sampler: out is NULL");
    *out = NULL;
    mlxn_sampler_params pp = p ? *p : (mlxn_sampler_params){0};
    if (vocab <= 0) return mlxn_err(MLXN_ERR_INVALID_ARG, "sampler: vocab %d must be positive", vocab);
    if (pp.top_k < 0 || pp.top_p < 0 || pp.top_p > 1 || pp.min_p < 0 || pp.min_p > 1 || pp.repeat_penalty < 0 ||
        pp.repeat_last_n < 0 || isnan(pp.temp))
        return mlxn_err(MLXN_ERR_INVALID_ARG,
                        "sampler: top_k %d >= 0, top_p %g and min_p %g in [0, 1], repeat_penalty %g >= 0, "
                        "repeat_last_n %d >= 0 required",
                        pp.top_k, (double)pp.top_p, (double)pp.min_p, (double)pp.repeat_penalty, pp.repeat_last_n);
    if (pp.repeat_last_n == 0) pp.repeat_last_n = 64;
    mlxn_sampler *s = mlxn_calloc(1, sizeof *s);
    if (!s) return mlxn_err(MLXN_ERR_OUT_OF_MEMORY, "sampler: out of memory");
    s->p = pp;
    s->vocab = vocab;
    s->c = mlxn_calloc((size_t)vocab, sizeof *s->c);
    s->hist = mlxn_calloc((size_t)pp.repeat_last_n, sizeof *s->hist);
    if (!s->c || !s->hist) {
        mlxn_sampler_destroy(s);
        return mlxn_err(MLXN_ERR_OUT_OF_MEMORY, "sampler: out of memory");
    }
    mlxn_sampler_reset(s);
    *out = s;
    return MLXN_OK;
}

void mlxn_sampler_destroy(mlxn_sampler *s) {
    if (!s) return;
    mlxn_free(s->c);
    mlxn_free(s->hist);
    mlxn_free(s);
}

void mlxn_sampler_accept(mlxn_sampler *s, int32_t tok) {
    if (!s) return;
    s->hist[s->hist_at] = tok;
    s->hist_at = (s->hist_at + 1) % s->p.repeat_last_n;
    if (s->n_hist < s->p.repeat_last_n) s->n_hist++;
}

static bool penalised(const mlxn_sampler *s) {
    return s->p.repeat_penalty > 0 && s->p.repeat_penalty != 1.0f;
}

bool mlxn_sampler_is_greedy(const mlxn_sampler *s) { return s->p.temp <= 0 && !penalised(s); }

/* Descending probability, ascending id on ties: a total order, so the draw
 * does not depend on qsort's stability. */
static int cmp_cand(const void *a, const void *b) {
    const cand *x = a, *y = b;
    if (x->l != y->l) return x->l > y->l ? -1 : 1;
    return (x->id > y->id) - (x->id < y->id);
}

/* "a ranks below b": lower value, or higher id on equal values. */
static bool below(const cand *a, const cand *b) { return a->l < b->l || (a->l == b->l && a->id > b->id); }

/* Move the k best of c[0..n) to c[0..k) (any order): a min-heap of k over
 * one pass, O(n log k). */
static void select_top(cand *c, int n, int k) {
    for (int i = k / 2 - 1; i >= 0; i--) { /* heapify c[0..k), worst at the root */
        for (int j = i;;) {
            int l = 2 * j + 1, r = l + 1, w = j;
            if (l < k && below(&c[l], &c[w])) w = l;
            if (r < k && below(&c[r], &c[w])) w = r;
            if (w == j) break;
            cand t = c[j]; c[j] = c[w]; c[w] = t;
            j = w;
        }
    }
    for (int i = k; i < n; i++) {
        if (!below(&c[0], &c[i])) continue;
        cand t = c[0]; c[0] = c[i]; c[i] = t;
        for (int j = 0;;) {
            int l = 2 * j + 1, r = l + 1, w = j;
            if (l < k && below(&c[l], &c[w])) w = l;
            if (r < k && below(&c[r], &c[w])) w = r;
            if (w == j) break;
            t = c[j]; c[j] = c[w]; c[w] = t;
            j = w;
        }
    }
}

/* Move the candidates with value >= thr to the front; returns their count. */
static int partition_ge(cand *c, int n, float thr) {
    int m = 0;
    for (int i = 0; i < n; i++)
        if (c[i].l >= thr) {
            cand t = c[m]; c[m] = c[i]; c[i] = t;
            m++;
        }
    return m;
}

static mlxn_status sample_cands(mlxn_sampler *s, cand *c, int V, bool presorted, int32_t *out);

int mlxn_sampler_device_top_k(const mlxn_sampler *s) {
    if (!s || s->p.temp <= 0 || penalised(s) || s->p.top_k <= 0 || s->p.top_k >= s->vocab) return 0;
    return s->p.top_k;
}

mlxn_status mlxn_sampler_sample_top(mlxn_sampler *s, const float *vals, const int32_t *ids, int k, int32_t *out) {
    if (!s || !vals || !ids || !out) return mlxn_err(MLXN_ERR_INVALID_ARG, "sampler: NULL argument");
    if (k != mlxn_sampler_device_top_k(s))
        return mlxn_err(MLXN_ERR_INVALID_ARG, "sampler: %d candidates given, the sampler keeps %d", k,
                        mlxn_sampler_device_top_k(s));
    for (int i = 0; i < k; i++) {
        if (ids[i] < 0 || ids[i] >= s->vocab)
            return mlxn_err(MLXN_ERR_RANGE, "sampler: candidate id %d outside the vocab of %d", ids[i], s->vocab);
        s->c[i] = (cand){vals[i], ids[i]};
    }
    /* the k best of the vocabulary, in the order the full path's top-k
     * step leaves them */
    qsort(s->c, (size_t)k, sizeof *s->c, cmp_cand);
    return sample_cands(s, s->c, k, true, out);
}

mlxn_status mlxn_sampler_sample(mlxn_sampler *s, const float *logits, int32_t *out) {
    if (!s || !logits || !out) return mlxn_err(MLXN_ERR_INVALID_ARG, "sampler: NULL argument");
    int V = s->vocab;
    cand *c = s->c;
    for (int i = 0; i < V; i++) c[i] = (cand){logits[i], i};
    if (penalised(s)) {
        /* CTRL-style: divide positive logits, multiply negative ones; each
         * distinct token once. */
        float r = s->p.repeat_penalty;
        for (int j = 0; j < s->n_hist; j++) {
            int32_t t = s->hist[j];
            if (t < 0 || t >= V) continue;
            bool seen = false;
            for (int k = 0; k < j && !seen; k++) seen = s->hist[k] == t;
            if (seen) continue;
            c[t].l = c[t].l > 0 ? c[t].l / r : c[t].l * r;
        }
    }
    return sample_cands(s, c, V, false, out);
}

/* Everything after the penalty, over candidates c[0..V) (presorted: they
 * are the top-k already, in cmp_cand order). */
static mlxn_status sample_cands(mlxn_sampler *s, cand *c, int V, bool presorted, int32_t *out) {
    int best = 0;
    for (int i = 1; i < V; i++)
        if (below(&c[best], &c[i])) best = i;
    if (s->p.temp <= 0) {
        *out = c[best].id;
        return MLXN_OK;
    }
    float mx = c[best].l;
    if (!isfinite(mx)) return mlxn_err(MLXN_ERR_RANGE, "sampler: the largest logit is %g", (double)mx);
    int n = V;
    bool sorted = presorted; /* c[0..n) in descending order */
    if (!presorted && s->p.top_k > 0 && s->p.top_k < n) {
        select_top(c, n, s->p.top_k);
        n = s->p.top_k;
        qsort(c, (size_t)n, sizeof *c, cmp_cand);
        sorted = true;
    }
    /* softmax of l / temp over the kept candidates */
    double inv_t = 1.0 / (double)s->p.temp, sum = 0;
    for (int i = 0; i < n; i++) {
        double e = exp(((double)c[i].l - (double)mx) * inv_t);
        c[i].l = (float)e;
        sum += e;
    }
    for (int i = 0; i < n; i++) c[i].l = (float)((double)c[i].l / sum);
    float pmax = (float)(1.0 / sum); /* the best token's probability */
    if (s->p.top_p > 0 && s->p.top_p < 1) {
        /* Sort only a prefix: everything at or above a threshold, lowered
         * until the prefix holds top_p of the mass. Tokens left out are all
         * below the prefix, so the cut is the one a full sort would give. */
        float thr = pmax / 64;
        for (;;) {
            int m = sorted ? n : partition_ge(c, n, thr);
            if (!sorted) qsort(c, (size_t)m, sizeof *c, cmp_cand);
            double cum = 0;
            int keep = -1;
            for (int i = 0; i < m; i++) {
                cum += (double)c[i].l;
                if (cum >= (double)s->p.top_p) {
                    keep = i + 1;
                    break;
                }
            }
            if (keep > 0 || m == n) {
                n = keep > 0 ? keep : m;
                break;
            }
            thr = thr > 1e-30f ? thr / 64 : 0.0f;
        }
        sorted = true;
    }
    if (s->p.min_p > 0) {
        float thr = s->p.min_p * pmax;
        if (sorted) {
            int keep = 1;
            while (keep < n && c[keep].l >= thr) keep++;
            n = keep;
        } else {
            n = partition_ge(c, n, thr);
            qsort(c, (size_t)n, sizeof *c, cmp_cand);
            sorted = true;
        }
    }
    /* unsorted (temperature only): the draw runs over a fixed permutation */
    double tot = 0;
    for (int i = 0; i < n; i++) tot += (double)c[i].l;
    double u = mlxn_sampler_uniform(s) * tot, cum = 0;
    for (int i = 0; i < n; i++) {
        cum += (double)c[i].l;
        if (u < cum) {
            *out = c[i].id;
            return MLXN_OK;
        }
    }
    *out = c[n - 1].id; /* rounding at the top end */
    return MLXN_OK;
}
