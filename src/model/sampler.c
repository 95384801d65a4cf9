/*
 * sampler.c — picking the next token from logits: repetition penalty,
 * greedy, top-k, temperature, top-p, min-p, and a seeded PCG32 draw, so the
 * same seed and logits always give the same token.
 *
 * Order (as llama.cpp's default chain, temperature applied to the kept
 * logits): penalty → [greedy] → top-k → softmax(l / temp) → top-p → min-p
 * → renormalise → inverse-CDF draw over the kept tokens (sorted by logit,
 * ties by id, when a filter is on; probability falls with the logit, so
 * this is also descending probability). Nothing sorts the whole
 * vocabulary: top-k selects with a heap, top-p sorts only the prefix above
 * a falling threshold, min-p partitions first.
 *
 * The same draws from candidates (mlxn_sampler_sample_top): the k largest
 * logits that the device's top_k found, and for top-p / min-p without
 * top-k also the row's softmax normalizer from the device's logsumexp.
 * Each path either gives exactly the whole row's token or says it cannot
 * (*out = -1, nothing consumed), never an approximation.
 */
#include "model/model.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct cand {
    float l;  /* logit (after the penalty) */
    float p;  /* probability, once the softmax ran */
    int32_t id;
} cand;

struct mlxn_sampler {
    mlxn_sampler_params p;
    int vocab;
    uint64_t state, inc; /* PCG32 */
    cand *c;             /* [vocab] scratch */
    float *pb;           /* [vocab] scratch: the nucleus path's lower probabilities */
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
    if (pp.n_cands < 0)
        return mlxn_err(MLXN_ERR_INVALID_ARG, "sampler: n_cands %d must be >= 0", pp.n_cands);
    if (pp.repeat_last_n == 0) pp.repeat_last_n = 64;
    if (pp.n_cands == 0) pp.n_cands = MLXN_SAMPLER_CANDS;
    mlxn_sampler *s = mlxn_calloc(1, sizeof *s);
    if (!s) return mlxn_err(MLXN_ERR_OUT_OF_MEMORY, "sampler: out of memory");
    s->p = pp;
    s->vocab = vocab;
    s->c = mlxn_calloc((size_t)vocab, sizeof *s->c);
    s->pb = mlxn_calloc((size_t)vocab, sizeof *s->pb);
    s->hist = mlxn_calloc((size_t)pp.repeat_last_n, sizeof *s->hist);
    if (!s->c || !s->pb || !s->hist) {
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
    mlxn_free(s->pb);
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

/* Descending logit, ascending id on ties: a total order (the device top_k's
 * too), so the draw does not depend on qsort's stability. */
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

/* Move the candidates with probability >= thr to the front; returns their
 * count. The probability never rises with the logit, so these are a prefix
 * of the cmp_cand order. */
static int partition_ge(cand *c, int n, float thr) {
    int m = 0;
    for (int i = 0; i < n; i++)
        if (c[i].p >= thr) {
            cand t = c[m]; c[m] = c[i]; c[i] = t;
            m++;
        }
    return m;
}

static mlxn_status sample_cands(mlxn_sampler *s, cand *c, int V, bool presorted, int32_t *out);

/* CTRL-style repetition penalty: divide positive logits, multiply negative
 * ones; each distinct token of the window once. by_id: c[t] is token t (the
 * whole row); else find it among c[0..n). Returns how many distinct tokens
 * the window holds (the P of the candidate bound below). */
static int penalise(mlxn_sampler *s, cand *c, int n, bool by_id) {
    float r = s->p.repeat_penalty;
    int distinct = 0;
    for (int j = 0; j < s->n_hist; j++) {
        int32_t t = s->hist[j];
        if (t < 0 || t >= s->vocab) continue;
        bool seen = false;
        for (int k = 0; k < j && !seen; k++) seen = s->hist[k] == t;
        if (seen) continue;
        distinct++;
        int at = by_id ? t : -1;
        for (int i = 0; !by_id && i < n && at < 0; i++)
            if (c[i].id == t) at = i;
        if (at >= 0) c[at].l = c[at].l > 0 ? c[at].l / r : c[at].l * r;
    }
    return distinct;
}

/* Which draws candidates can replace the whole row for:
 *  TOPK     temp > 0, 0 < top_k < vocab, no penalty: the top_k best.
 *  PENALTY  a penalty R >= 1 (finite) with top-k, or greedy: the best
 *           kk + W (kk = top_k, 1 when greedy; W = the penalty window). For
 *           R >= 1 a penalty only lowers logits (l/R <= l for l > 0,
 *           l*R <= l for l <= 0, and float rounding keeps that), so a token
 *           outside the pre-penalty top (kk + P), P the distinct penalised
 *           ids, has kk + P tokens ranked above it of which at most P can
 *           fall, and at least kk unpenalised ones stay above it (or above
 *           its own lowered value): it is not in the post-penalty top kk.
 *           R < 1 raises logits and takes the whole row.
 *  NUCLEUS  temp > 0, no top-k, no penalty, top-p and/or min-p: n_cands
 *           best plus the row's normalizer (sample_nucleus). A penalty
 *           with top-p / min-p and no top-k takes the whole row.
 * Counts above MLXN_SAMPLER_MAX_CANDS (or reaching the vocab) take the
 * whole row too. */
enum { PLAN_ROW = 0, PLAN_TOPK, PLAN_PENALTY, PLAN_NUCLEUS };

static int plan(const mlxn_sampler *s, int *k) {
    const mlxn_sampler_params *p = &s->p;
    bool topk = p->top_k > 0 && p->top_k < s->vocab;
    *k = 0;
    if (penalised(s)) {
        if (!(p->repeat_penalty >= 1.0f) || !isfinite(p->repeat_penalty) || (p->temp > 0 && !topk)) return PLAN_ROW;
        int kk = p->temp > 0 ? p->top_k : 1;
        if ((int64_t)kk + p->repeat_last_n > MLXN_SAMPLER_MAX_CANDS || kk + p->repeat_last_n >= s->vocab)
            return PLAN_ROW;
        *k = kk + p->repeat_last_n;
        return PLAN_PENALTY;
    }
    if (p->temp <= 0) return PLAN_ROW; /* greedy: the device's argmax */
    if (topk) {
        *k = p->top_k;
        return PLAN_TOPK;
    }
    bool filter = (p->top_p > 0 && p->top_p < 1) || p->min_p > 0;
    if (!filter || p->n_cands > MLXN_SAMPLER_MAX_CANDS || p->n_cands >= s->vocab) return PLAN_ROW;
    *k = p->n_cands;
    return PLAN_NUCLEUS;
}

int mlxn_sampler_device_top_k(const mlxn_sampler *s) {
    int k = 0;
    if (s) plan(s, &k);
    return k;
}

double mlxn_sampler_device_norm_scale(const mlxn_sampler *s) {
    int k;
    return s && plan(s, &k) == PLAN_NUCLEUS ? 1.0 / (double)s->p.temp : 0.0;
}

/* How far the device's normalizer may be from the whole row's sum: both
 * accumulate in double (rel. error < 1e-11 for any vocab we meet) and the
 * device's is rounded to f32 (2^-24): 2^-21 leaves 8x. */
#define NORM_REL 0x1p-21

/* Top-p / min-p over the k best c[0..k) (cmp_cand order) with the row's
 * normalizer norm = (max, S') from the device. The whole row's draw is a
 * function of its sum S, which we know only as S in [lo, hi] around S'.
 * Every quantity it compares falls (or stays) as S grows: each
 * p_i = f32(f_i / S), their running sums (rounded additions are monotone),
 * the min-p threshold f32(min_p * f32(1 / S)), and u * total. So the
 * top-p cut lies between its values at lo and hi, each min-p test is
 * decided when it holds (or fails) at both ends, and the drawn index is
 * decided when u at its lowest clears the previous running sum at its
 * highest and u at its highest stays under its own at its lowest. When all
 * of that holds for a kept set inside the candidates (the k best are the
 * row's first k in the same order), the token is the whole row's for every
 * S in [lo, hi]; otherwise *out = -1 and the generator is left as it was. */
static void sample_nucleus(mlxn_sampler *s, cand *c, int k, const float *norm, int32_t *out) {
    enum { INF = 0x7fffffff };
    *out = -1;
    bool full = k >= s->vocab;
    float mx = c[0].l;
    if (!isfinite(mx) || norm[0] != mx || !isfinite(norm[1]) || !(norm[1] >= 1.0f)) return;
    double lo = (double)norm[1] * (1 - NORM_REL), hi = (double)norm[1] * (1 + NORM_REL);
    if (lo < 1) lo = 1; /* the max's own term is exp(0) = 1, the rest >= 0 */
    double inv_t = 1.0 / (double)s->p.temp;
    float *pb = s->pb;
    for (int i = 0; i < k; i++) { /* c[i].p at S = lo (the higher), pb[i] at S = hi */
        float f = (float)exp(((double)c[i].l - (double)mx) * inv_t);
        c[i].p = (float)((double)f / lo);
        pb[i] = (float)((double)f / hi);
    }
    int ca = full ? k : INF, cb = ca; /* top-p cut at lo, at hi (none found: all, or unknown) */
    if (s->p.top_p > 0 && s->p.top_p < 1) {
        double cum = 0;
        for (int i = 0; i < k; i++)
            if ((cum += (double)c[i].p) >= (double)s->p.top_p) {
                ca = i + 1;
                break;
            }
        cum = 0;
        for (int i = 0; i < k; i++)
            if ((cum += (double)pb[i]) >= (double)s->p.top_p) {
                cb = i + 1;
                break;
            }
    }
    int fa = full ? k : INF, fb = fa; /* first index that min-p drops: in [fa, fb] */
    if (s->p.min_p > 0) {
        float ta = s->p.min_p * (float)(1.0 / lo), tb = s->p.min_p * (float)(1.0 / hi);
        int i = 1;
        for (; i < k; i++) {
            if (pb[i] >= ta) continue; /* kept for every S */
            if (c[i].p < tb) fa = fb = i; /* dropped for every S */
            else fa = i, fb = INF;        /* undecided: at least i */
            break;
        }
        if (i == k) fa = k; /* every candidate kept; past them unknown unless they are the row */
    }
    int n = ca < fa ? ca : fa, nb = cb < fb ? cb : fb;
    if (n != nb || n > k) return;
    double tot_a = 0, tot_b = 0;
    for (int i = 0; i < n; i++) {
        tot_a += (double)c[i].p;
        tot_b += (double)pb[i];
    }
    uint64_t state = s->state;
    double u01 = mlxn_sampler_uniform(s), ua = u01 * tot_a, ub = u01 * tot_b;
    int j = n - 1; /* the whole row's index at S = lo (its last when u runs past) */
    double cum = 0;
    for (int i = 0; i < n; i++)
        if (ua < (cum += (double)c[i].p)) {
            j = i;
            break;
        }
    double prev_a = 0, cum_b = 0; /* running sums to j - 1 at lo, to j at hi */
    for (int i = 0; i < j; i++) prev_a += (double)c[i].p;
    for (int i = 0; i <= j; i++) cum_b += (double)pb[i];
    bool sure = (j == 0 || ub >= prev_a) && (j == n - 1 || ua < cum_b);
    if (!sure) {
        s->state = state;
        return;
    }
    *out = c[j].id;
}

mlxn_status mlxn_sampler_sample_top(mlxn_sampler *s, const float *vals, const int32_t *ids, int k, const float *norm,
                                    int32_t *out) {
    if (!s || !vals || !ids || !out) return mlxn_err(MLXN_ERR_INVALID_ARG, "sampler: NULL argument");
    *out = -1;
    int want;
    int how = plan(s, &want);
    if (how == PLAN_ROW) return mlxn_err(MLXN_ERR_INVALID_ARG, "sampler: these settings need the whole logits row");
    if (k < 1 || k > s->vocab || (how == PLAN_TOPK && k < want))
        return mlxn_err(MLXN_ERR_INVALID_ARG, "sampler: %d candidates given, need %d..%d", k,
                        how == PLAN_TOPK ? want : 1, s->vocab);
    if (how == PLAN_NUCLEUS && !norm)
        return mlxn_err(MLXN_ERR_INVALID_ARG, "sampler: top-p / min-p from candidates need the row's normalizer");
    cand *c = s->c;
    for (int i = 0; i < k; i++) {
        if (ids[i] < 0 || ids[i] >= s->vocab)
            return mlxn_err(MLXN_ERR_RANGE, "sampler: candidate id %d outside the vocab of %d", ids[i], s->vocab);
        if (isnan(vals[i])) return MLXN_OK; /* the whole row decides what a NaN means */
        c[i] = (cand){vals[i], 0, ids[i]};
    }
    /* the k best of the vocabulary, in the order the whole row's filters
     * leave them */
    qsort(c, (size_t)k, sizeof *c, cmp_cand);
    if (how == PLAN_TOPK) return sample_cands(s, c, s->p.top_k, true, out);
    if (how == PLAN_NUCLEUS) {
        sample_nucleus(s, c, k, norm, out);
        return MLXN_OK;
    }
    /* PLAN_PENALTY: enough candidates for this window's P? */
    int kk = s->p.temp > 0 ? s->p.top_k : 1;
    int distinct = penalise(s, c, k, false);
    if (k < kk + distinct && k < s->vocab) return MLXN_OK;
    if (s->p.temp <= 0) return sample_cands(s, c, k, false, out); /* the best after the penalty */
    select_top(c, k, kk);
    qsort(c, (size_t)kk, sizeof *c, cmp_cand);
    return sample_cands(s, c, kk, true, out);
}

mlxn_status mlxn_sampler_sample(mlxn_sampler *s, const float *logits, int32_t *out) {
    if (!s || !logits || !out) return mlxn_err(MLXN_ERR_INVALID_ARG, "sampler: NULL argument");
    int V = s->vocab;
    cand *c = s->c;
    for (int i = 0; i < V; i++) c[i] = (cand){logits[i], 0, i};
    if (penalised(s)) penalise(s, c, V, true);
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
        c[i].p = (float)e;
        sum += e;
    }
    for (int i = 0; i < n; i++) c[i].p = (float)((double)c[i].p / sum);
    float pmax = (float)(1.0 / sum); /* the best token's probability */
    if (s->p.top_p > 0 && s->p.top_p < 1) {
        /* Sort only a prefix: everything at or above a threshold, lowered
         * until the prefix holds top_p of the mass. Tokens left out are all
         * below the prefix, so the cut is the one a full sort would give.
         * Each lowering sorts only the new band below the last threshold and
         * appends it (everything in the band is below the sorted prefix),
         * and the running sum goes on from where it stopped. */
        float thr = pmax / 64;
        int done = 0; /* c[0..done) sorted and summed into cum */
        double cum = 0;
        for (;;) {
            int m = sorted ? n : done + partition_ge(c + done, n - done, thr);
            if (!sorted) qsort(c + done, (size_t)(m - done), sizeof *c, cmp_cand);
            int keep = -1;
            for (int i = done; i < m; i++) {
                cum += (double)c[i].p;
                if (cum >= (double)s->p.top_p) {
                    keep = i + 1;
                    break;
                }
            }
            if (keep > 0 || m == n) {
                n = keep > 0 ? keep : m;
                break;
            }
            done = m;
            thr = thr > 1e-30f ? thr / 64 : 0.0f;
        }
        sorted = true;
    }
    if (s->p.min_p > 0) {
        float thr = s->p.min_p * pmax;
        if (sorted) {
            int keep = 1;
            while (keep < n && c[keep].p >= thr) keep++;
            n = keep;
        } else {
            n = partition_ge(c, n, thr);
            qsort(c, (size_t)n, sizeof *c, cmp_cand);
            sorted = true;
        }
    }
    /* unsorted (temperature only): the draw runs over a fixed permutation */
    double tot = 0;
    for (int i = 0; i < n; i++) tot += (double)c[i].p;
    double u = mlxn_sampler_uniform(s) * tot, cum = 0;
    for (int i = 0; i < n; i++) {
        cum += (double)c[i].p;
        if (u < cum) {
            *out = c[i].id;
            return MLXN_OK;
        }
    }
    *out = c[n - 1].id; /* rounding at the top end */
    return MLXN_OK;
}
