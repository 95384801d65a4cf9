/* test_sampler.c — the sampler: exact greedy and top-k=1, reproducibility
 * per seed, and drawn frequencies against the expected distribution
 * (chi-square over 20000 draws with fixed seeds; the bound 3x the degrees of
 * freedom + 30 is far above the 99.9% quantile for these sizes, so a
 * correct sampler never fails, and a wrong distribution — no temperature,
 * wrong cut-off — lands orders of magnitude above it). */
#include "model/model.h"
#include "testutil.h"

#define V 8
static const float g_logits[V] = {1.0f, 3.0f, 2.5f, -1.0f, 0.0f, 2.9f, -4.0f, 0.5f};

static mlxn_sampler *mk(mlxn_sampler_params p) {
    mlxn_sampler *s = NULL;
    CHECK_OK(mlxn_sampler_create(&s, &p, V));
    return s;
}

/* Expected probabilities for temp/top-k/top-p/min-p, computed directly. */
static void expected(const mlxn_sampler_params *p, double *e) {
    int idx[V];
    for (int i = 0; i < V; i++) idx[i] = i;
    for (int i = 0; i < V; i++)
        for (int j = i + 1; j < V; j++)
            if (g_logits[idx[j]] > g_logits[idx[i]]) { int t = idx[i]; idx[i] = idx[j]; idx[j] = t; }
    int n = p->top_k > 0 && p->top_k < V ? p->top_k : V;
    double pr[V], sum = 0;
    for (int i = 0; i < n; i++) sum += pr[i] = exp((double)(g_logits[idx[i]] - g_logits[idx[0]]) / (double)p->temp);
    for (int i = 0; i < n; i++) pr[i] /= sum;
    if (p->top_p > 0 && p->top_p < 1) {
        double cum = 0;
        for (int i = 0; i < n; i++) { cum += pr[i]; if (cum >= (double)p->top_p) { n = i + 1; break; } }
    }
    if (p->min_p > 0) {
        int k = 1;
        while (k < n && pr[k] >= (double)p->min_p * pr[0]) k++;
        n = k;
    }
    double tot = 0;
    for (int i = 0; i < n; i++) tot += pr[i];
    for (int i = 0; i < V; i++) e[i] = 0;
    for (int i = 0; i < n; i++) e[idx[i]] = pr[i] / tot;
}

static void check_dist(const char *what, mlxn_sampler_params p) {
    enum { N = 20000 };
    mlxn_sampler *s = mk(p);
    if (!s) return;
    int cnt[V] = {0}, fails = 0;
    for (int i = 0; i < N; i++) {
        int32_t t = -1;
        fails += mlxn_sampler_sample(s, g_logits, &t) != MLXN_OK;
        if (t >= 0 && t < V) cnt[t]++;
    }
    CHECK(fails == 0, "%s: %d sample calls failed", what, fails);
    double e[V], chi = 0;
    int dof = -1, bad_zero = 0;
    expected(&p, e);
    for (int i = 0; i < V; i++) {
        if (e[i] == 0) { bad_zero += cnt[i]; continue; }
        double ex = e[i] * N;
        chi += (cnt[i] - ex) * (cnt[i] - ex) / ex;
        dof++;
    }
    double bound = 3.0 * (dof > 0 ? dof : 1) + 30;
    printf("  %-28s chi2 %8.2f (dof %d, bound %.0f), draws of excluded tokens %d\n", what, chi, dof, bound, bad_zero);
    CHECK(chi < bound, "%s: chi-square %g over bound %g", what, chi, bound);
    CHECK(bad_zero == 0, "%s: %d draws of tokens the filters exclude", what, bad_zero);
    mlxn_sampler_destroy(s);
}


/* ---- candidates vs the whole row, draw for draw ----
 * The candidates come from the CPU device's top_k and logsumexp ops, as in
 * generation. Two samplers with equal seeds: `full` always draws from the
 * whole row; `cand` from the candidates, falling back to the whole row when
 * they do not decide (as generate.c does). Every token must be equal. */

static mlxn_device *g_dev;

/* The k best of row[nv] (vals, ids) and, when scale > 0, the normalizer. */
static void device_cands(const float *row, int nv, int k, double scale, float *tv, int32_t *ti, float *norm) {
    int64_t xs[2] = {1, nv}, ks[2] = {1, k}, ns[2] = {1, 2};
    mlxn_buffer *x = NULL, *bi = NULL, *bv = NULL, *bn = NULL;
    mlxn_session *S = NULL;
    CHECK_OK(mlxn_buffer_create(&x, g_dev, MLXN_F32, 2, xs));
    CHECK_OK(mlxn_buffer_create(&bi, g_dev, MLXN_I32, 2, ks));
    CHECK_OK(mlxn_buffer_create(&bv, g_dev, MLXN_F32, 2, ks));
    CHECK_OK(mlxn_buffer_create(&bn, g_dev, MLXN_F32, 2, ns));
    CHECK_OK(mlxn_session_create(&S, g_dev, MLXN_MODE_DIRECT, 0));
    if (x && bi && bv && bn && S) {
        CHECK_OK(mlxn_buffer_write(x, 0, row, (size_t)nv * 4));
        CHECK_OK(mlxn_op_top_k(S, bi, bv, x, k));
        if (scale > 0) CHECK_OK(mlxn_op_logsumexp(S, bn, x, scale));
        CHECK_OK(mlxn_session_finish(S));
        CHECK_OK(mlxn_buffer_read(bi, 0, ti, (size_t)k * 4));
        CHECK_OK(mlxn_buffer_read(bv, 0, tv, (size_t)k * 4));
        if (scale > 0) CHECK_OK(mlxn_buffer_read(bn, 0, norm, 8));
    }
    mlxn_session_destroy(S);
    mlxn_buffer_destroy(x); mlxn_buffer_destroy(bi); mlxn_buffer_destroy(bv); mlxn_buffer_destroy(bn);
}

/* Row kinds: 0 = a fixed preference per token (std `spread`) plus noise,
 * so the same tokens stay on top and the penalty window holds them;
 * 1 = flat (small spread); 2 = quarter steps (many ties). */
static void make_row(float *row, const float *base, int nv, int kind, double spread) {
    for (int i = 0; i < nv; i++) {
        float nz = rng_uniform(-0.5f, 0.5f);
        if (kind == 0) row[i] = (float)(spread * (double)base[i] + (double)nz);
        else if (kind == 1) row[i] = 0.05f * base[i] + 0.1f * nz;
        else row[i] = (float)(int)(4 * (spread * (double)base[i] + (double)nz)) * 0.25f;
    }
}

typedef struct eq_stats {
    int steps, hits, misses, bad, penalised_diff;
} eq_stats;

/* `steps` draws; k_use > 0 overrides the candidate count; perturb: the
 * normalizer's sum is moved by up to this relative amount (a device that
 * rounds differently). */
static void check_paths(const char *what, mlxn_sampler_params p, int nv, int kind, double spread, int steps, int k_use,
                        double perturb, eq_stats *es) {
    mlxn_sampler *full = NULL, *cand = NULL, *plain = NULL;
    CHECK_OK(mlxn_sampler_create(&full, &p, nv));
    CHECK_OK(mlxn_sampler_create(&cand, &p, nv));
    mlxn_sampler_params pp = p;
    pp.repeat_penalty = 0;
    CHECK_OK(mlxn_sampler_create(&plain, &pp, nv));
    if (!full || !cand || !plain) return;
    int k = k_use > 0 ? k_use : mlxn_sampler_device_top_k(cand);
    double scale = mlxn_sampler_device_norm_scale(cand);
    CHECK(k > 0, "%s: no candidate path (k %d)", what, k);
    float *base = malloc((size_t)nv * 4), *row = malloc((size_t)nv * 4), *tv = malloc((size_t)nv * 4);
    int32_t *ti = malloc((size_t)nv * 4);
    for (int i = 0; i < nv; i++) base[i] = rng_uniform(-1, 1) + rng_uniform(-1, 1) + rng_uniform(-1, 1);
    /* the window starts with the 30 most preferred tokens, so the penalty
     * moves tokens in and out of the top */
    for (int j = 0; j < 30; j++) {
        int b = -1;
        for (int i = 0; i < nv; i++) {
            bool taken = false;
            for (int q = 0; q < j && !taken; q++) taken = ti[q] == i;
            if (!taken && (b < 0 || base[i] > base[b])) b = i;
        }
        ti[j] = b;
    }
    for (int j = 0; j < 30; j++) {
        mlxn_sampler_accept(full, ti[j]);
        mlxn_sampler_accept(cand, ti[j]);
    }
    eq_stats st = {0};
    for (int s = 0; s < steps && k > 0; s++) {
        make_row(row, base, nv, kind, spread);
        int32_t a = -1, b = -1, c = -1;
        CHECK_OK(mlxn_sampler_sample(full, row, &a));
        CHECK_OK(mlxn_sampler_sample(plain, row, &c));
        float norm[2] = {0, 0};
        device_cands(row, nv, k, scale, tv, ti, norm);
        if (perturb > 0) norm[1] = (float)((double)norm[1] * (1 + perturb * (double)rng_uniform(-1, 1)));
        CHECK_OK(mlxn_sampler_sample_top(cand, tv, ti, k, scale > 0 ? norm : NULL, &b));
        if (b < 0) {
            st.misses++;
            CHECK_OK(mlxn_sampler_sample(cand, row, &b));
        } else {
            st.hits++;
        }
        if (a != b && st.bad++ < 3) fprintf(stderr, "  %s step %d: whole row %d, candidates %d\n", what, s, a, b);
        st.penalised_diff += a != c;
        mlxn_sampler_accept(full, a);
        mlxn_sampler_accept(cand, a);
        mlxn_sampler_accept(plain, a);
        st.steps++;
    }
    CHECK(st.bad == 0, "%s: %d of %d tokens differ between candidates and the whole row", what, st.bad, st.steps);
    printf("  %-46s %4d steps: %4d from %3d candidates, %3d from the row, %d differ\n", what, st.steps, st.hits, k,
           st.misses, st.bad);
    if (es) *es = st;
    free(base); free(row); free(tv); free(ti);
    mlxn_sampler_destroy(full);
    mlxn_sampler_destroy(cand);
    mlxn_sampler_destroy(plain);
}

static void test_candidate_paths(void) {
    printf("candidates vs the whole row:\n");
    char what[96];
    eq_stats es;
    /* 1. penalty (>= 1) with top-k, and greedy with a penalty: never a miss */
    const int Vs[3] = {300, 1000, 5000};
    const float temps[4] = {0.3f, 0.7f, 1.0f, 1.8f}, pens[3] = {1.1f, 1.5f, 3.0f};
    int pen_changed = 0;
    for (int vi = 0; vi < 3; vi++)
        for (int ti = 0; ti < 4; ti++) {
            for (int pi = 0; pi < 3; pi++) {
                int K = (vi + ti + pi) % 3 == 0 ? 1 : (vi + ti + pi) % 3 == 1 ? 10 : 40;
                mlxn_sampler_params p = {.temp = temps[ti], .top_k = K, .repeat_penalty = pens[pi],
                                         .seed = 1000u + (uint64_t)(vi * 100 + ti * 10 + pi)};
                if (pi == 1) p.top_p = 0.9f;
                if (pi == 2) p.min_p = 0.05f;
                if (vi == 0) p.repeat_last_n = 32;
                snprintf(what, sizeof what, "V %d temp %.1f top-k %d%s penalty %.1f", Vs[vi], (double)temps[ti], K,
                         pi == 1 ? " top-p 0.9" : pi == 2 ? " min-p 0.05" : "", (double)pens[pi]);
                check_paths(what, p, Vs[vi], (ti + pi) % 3 == 1 ? 2 : 0, 1.5, 60, 0, 0, &es);
                CHECK(es.misses == 0, "%s: %d misses; a penalty window never exceeds its room", what, es.misses);
                pen_changed += es.penalised_diff;
            }
            mlxn_sampler_params g = {.temp = 0, .repeat_penalty = pens[ti % 3], .seed = 7};
            snprintf(what, sizeof what, "V %d greedy penalty %.1f", Vs[vi], (double)pens[ti % 3]);
            check_paths(what, g, Vs[vi], ti % 3 == 1 ? 2 : 0, 1.5, 40, 0, 0, &es);
            CHECK(es.misses == 0, "%s: %d misses", what, es.misses);
            pen_changed += es.penalised_diff;
        }
    CHECK(pen_changed > 100, "the penalty changed only %d tokens: the runs above do not test it", pen_changed);
    /* fewer candidates than top-k + the window's distinct tokens: a miss,
     * then the row, still the same tokens */
    mlxn_sampler_params pk = {.temp = 0.8f, .top_k = 20, .repeat_penalty = 1.3f, .seed = 5};
    check_paths("V 1000 top-k 20 penalty 1.3, only 24 candidates", pk, 1000, 0, 1.5, 60, 24, 0, &es);
    CHECK(es.misses > 0, "24 candidates for top-k 20 and 30+ penalised tokens: %d misses, want all", es.misses);

    /* 2. top-p / min-p without top-k, with the device's normalizer */
    int hits = 0, misses = 0;
    const int Cs[4] = {8, 32, 64, 0};
    for (int vi = 0; vi < 3; vi++)
        for (int ti = 0; ti < 4; ti++)
            for (int f = 0; f < 3; f++) {
                mlxn_sampler_params p = {.temp = temps[ti], .seed = 2000u + (uint64_t)(vi * 100 + ti * 10 + f)};
                if (f != 1) p.top_p = f == 0 ? 0.9f : 0.7f;
                if (f != 0) p.min_p = f == 1 ? 0.05f : 0.2f;
                int C = Cs[(vi + ti + f) % 4];
                int kind = (ti + f) % 3;
                snprintf(what, sizeof what, "V %d temp %.1f%s%s, %s rows, C %d", Vs[vi], (double)temps[ti],
                         p.top_p > 0 ? (f == 0 ? " top-p 0.9" : " top-p 0.7") : "",
                         p.min_p > 0 ? (f == 1 ? " min-p 0.05" : " min-p 0.2") : "",
                         kind == 0 ? "peaked" : kind == 1 ? "flat" : "tied", C ? C : MLXN_SAMPLER_CANDS);
                check_paths(what, p, Vs[vi], kind, 3.0, 60, C, 0, &es);
                hits += es.hits;
                misses += es.misses;
            }
    CHECK(hits > 500 && misses > 100, "nucleus: %d hits, %d misses: want many of both", hits, misses);
    /* the whole row as candidates decides every draw that does not sit on
     * a rounding boundary */
    mlxn_sampler_params pf = {.temp = 1.0f, .top_p = 0.95f, .min_p = 0.01f, .seed = 9};
    check_paths("V 300 flat rows, all 300 as candidates", pf, 300, 1, 1.0, 60, 300, 0, &es);
    CHECK(es.hits >= 58, "all candidates: %d of 60 decided", es.hits);
    /* a device that rounds its sum differently (within 2^-22): still exact */
    for (int ti = 0; ti < 4; ti++) {
        mlxn_sampler_params p = {.temp = temps[ti], .top_p = 0.9f, .min_p = 0.02f, .seed = 3000u + (uint64_t)ti};
        snprintf(what, sizeof what, "V 1000 temp %.1f top-p 0.9 min-p 0.02, sum +-2^-22", (double)temps[ti]);
        check_paths(what, p, 1000, 0, 3.0, 100, 0, 0x1p-22, &es);
    }
}

/* Knife edges: top_p or min_p set exactly at a value the whole row's
 * running sum or threshold reaches, so the cut depends on the last bits of
 * the normalizer, and just off such a value. With the device's sum nudged
 * within its precision, the candidates must give the whole row's token or
 * step aside, never another; off the edge they must decide. */
static void test_knife_edges(void) {
    enum { KV = 500, KN = 300 };
    float row[KV], tv[64], norm[2];
    int32_t ti[64];
    int hits = 0, bad = 0, off_edge = 0, off_hits = 0;
    for (int t = 0; t < KN; t++) {
        float temp = 0.5f + 0.25f * (float)(t % 5);
        for (int i = 0; i < KV; i++) row[i] = rng_uniform(-1, 1) * 6.0f;
        /* the whole row's probabilities in its order, as the sampler makes them */
        double inv_t = 1.0 / (double)temp, sum = 0;
        float mx = -INFINITY;
        for (int i = 0; i < KV; i++) mx = row[i] > mx ? row[i] : mx;
        static float pr[KV];
        for (int i = 0; i < KV; i++) {
            double e = exp(((double)row[i] - (double)mx) * inv_t);
            pr[i] = (float)e;
            sum += e;
        }
        for (int i = 0; i < KV; i++) pr[i] = (float)((double)pr[i] / sum);
        for (int i = 1; i < KV; i++) /* descending (ties do not matter for the sums) */
            for (int j = i; j > 0 && pr[j] > pr[j - 1]; j--) { float x = pr[j]; pr[j] = pr[j - 1]; pr[j - 1] = x; }
        int m = 1 + t % 20;
        double cum = 0;
        for (int i = 0; i < m; i++) cum += (double)pr[i];
        mlxn_sampler_params p = {.temp = temp, .seed = 4000u + (uint64_t)t};
        /* on the edge, or just off it (decidable) */
        if (t % 4 == 0) p.top_p = (float)cum;
        else if (t % 4 == 1) p.top_p = (float)(cum * (1 + 1e-4));
        else if (t % 4 == 2) p.min_p = pr[m] / pr[0];
        else p.min_p = pr[m] / pr[0] * (1 - 1e-4f);
        if (!(p.top_p < 1) || !(p.min_p <= 1)) continue;
        mlxn_sampler *full = NULL, *cand = NULL;
        CHECK_OK(mlxn_sampler_create(&full, &p, KV));
        CHECK_OK(mlxn_sampler_create(&cand, &p, KV));
        if (!full || !cand) break;
        int k = mlxn_sampler_device_top_k(cand);
        device_cands(row, KV, k, mlxn_sampler_device_norm_scale(cand), tv, ti, norm);
        norm[1] = (float)((double)norm[1] * (1 + 0x1p-22 * (double)rng_uniform(-1, 1)));
        int32_t a = -1, b = -1;
        CHECK_OK(mlxn_sampler_sample(full, row, &a));
        CHECK_OK(mlxn_sampler_sample_top(cand, tv, ti, k, norm, &b));
        off_edge += t % 2;
        if (b >= 0) {
            hits++;
            off_hits += t % 2;
            bad += a != b;
        } else { /* stepped aside: the generator is untouched */
            CHECK_OK(mlxn_sampler_sample(cand, row, &b));
            bad += a != b;
        }
        mlxn_sampler_destroy(full);
        mlxn_sampler_destroy(cand);
    }
    printf("  knife-edge top-p / min-p, sum nudged within 2^-22: %d of %d decided by candidates (%d of %d off the "
           "edge), %d differ\n", hits, KN, off_hits, off_edge, bad);
    CHECK(bad == 0, "knife edges: %d tokens differ", bad);
    CHECK(off_hits > off_edge * 3 / 4, "just off the edges: %d of %d decided", off_hits, off_edge);
}

int main(void) {
    int32_t t = -1;
    /* greedy: exact argmax, whatever the seed */
    for (uint64_t seed = 0; seed < 4; seed++) {
        mlxn_sampler *s = mk((mlxn_sampler_params){.seed = seed});
        CHECK_OK(mlxn_sampler_sample(s, g_logits, &t));
        CHECK(t == 1, "greedy picked %d, want 1", t);
        CHECK(mlxn_sampler_is_greedy(s), "temp 0 is greedy");
        mlxn_sampler_destroy(s);
    }
    /* top-k 1 at a high temperature is still the argmax */
    mlxn_sampler *s = mk((mlxn_sampler_params){.temp = 5.0f, .top_k = 1, .seed = 7});
    int ok = 1;
    for (int i = 0; i < 1000; i++) ok &= mlxn_sampler_sample(s, g_logits, &t) == MLXN_OK && t == 1;
    CHECK(ok, "top-k 1 must always give the argmax");
    mlxn_sampler_destroy(s);

    /* repetition penalty: token 1 (3.0) seen → 3.0/2 = 1.5 < 2.9, greedy picks 5 */
    s = mk((mlxn_sampler_params){.repeat_penalty = 2.0f});
    mlxn_sampler_accept(s, 1);
    CHECK(!mlxn_sampler_is_greedy(s), "a penalty needs the host logits");
    CHECK_OK(mlxn_sampler_sample(s, g_logits, &t));
    CHECK(t == 5, "penalised greedy picked %d, want 5", t);
    mlxn_sampler_destroy(s);

    /* same seed, same sequence; another seed, another sequence */
    int32_t a[64], b[64], c[64];
    mlxn_sampler_params pp = {.temp = 1.0f, .seed = 42};
    mlxn_sampler *s1 = mk(pp), *s2 = mk(pp);
    pp.seed = 43;
    mlxn_sampler *s3 = mk(pp);
    int same = 1, diff = 0;
    for (int i = 0; i < 64; i++) {
        same &= mlxn_sampler_sample(s1, g_logits, &a[i]) == MLXN_OK;
        same &= mlxn_sampler_sample(s2, g_logits, &b[i]) == MLXN_OK;
        same &= mlxn_sampler_sample(s3, g_logits, &c[i]) == MLXN_OK;
        same &= a[i] == b[i];
        diff |= a[i] != c[i];
    }
    CHECK(same, "equal seeds must give equal draws");
    CHECK(diff, "different seeds should differ within 64 draws");
    mlxn_sampler_reset(s1);
    CHECK_OK(mlxn_sampler_sample(s1, g_logits, &t));
    CHECK(t == a[0], "reset restarts the sequence (%d vs %d)", t, a[0]);
    mlxn_sampler_destroy(s1);
    mlxn_sampler_destroy(s2);
    mlxn_sampler_destroy(s3);

    /* uniform generator: mean 0.5, all in [0, 1) */
    s = mk((mlxn_sampler_params){.seed = 1});
    double m = 0;
    int inr = 1;
    for (int i = 0; i < 100000; i++) {
        double u = mlxn_sampler_uniform(s);
        inr &= u >= 0 && u < 1;
        m += u;
    }
    m /= 100000;
    CHECK(inr && fabs(m - 0.5) < 0.005, "uniform mean %g", m);
    mlxn_sampler_destroy(s);

    printf("distributions, 20000 draws each:\n");
    check_dist("temp 1", (mlxn_sampler_params){.temp = 1.0f, .seed = 11});
    check_dist("temp 0.5", (mlxn_sampler_params){.temp = 0.5f, .seed = 12});
    check_dist("temp 2, top-k 3", (mlxn_sampler_params){.temp = 2.0f, .top_k = 3, .seed = 13});
    check_dist("temp 1, top-p 0.8", (mlxn_sampler_params){.temp = 1.0f, .top_p = 0.8f, .seed = 14});
    check_dist("temp 1, min-p 0.2", (mlxn_sampler_params){.temp = 1.0f, .min_p = 0.2f, .seed = 15});
    check_dist("temp 1.5, top-k 5, top-p 0.9", (mlxn_sampler_params){.temp = 1.5f, .top_k = 5, .top_p = 0.9f, .seed = 16});

    /* top-p over a long flat tail: the first threshold pass holds only the
     * big token, so the prefix must grow; ties keep the lowest ids. Token 7
     * has p = 0.5, the other 999 share 0.5; top-p 0.6 keeps 7 and the 200
     * (ceil of 0.1 / (0.5/999)) lowest other ids. */
    {
        enum { BV = 1000, N = 20000 };
        static float big[BV];
        for (int i = 0; i < BV; i++) big[i] = 0.0f;
        big[7] = logf(999.0f);
        mlxn_sampler *sb = NULL;
        mlxn_sampler_params bp2 = {.temp = 1.0f, .top_p = 0.6f, .seed = 21};
        CHECK_OK(mlxn_sampler_create(&sb, &bp2, BV));
        int n7 = 0, outside = 0, maxid = 0;
        for (int i = 0; i < N && sb; i++) {
            int32_t tk = -1;
            if (mlxn_sampler_sample(sb, big, &tk)) { outside++; continue; }
            if (tk == 7) n7++;
            else if (tk > maxid) maxid = tk;
        }
        double f7 = (double)n7 / N, want7 = 0.5 / (0.5 + 200 * (0.5 / 999));
        printf("  top-p tail: token 7 at %.4f (want %.4f), largest other id %d (want <= 200)\n", f7, want7, maxid);
        CHECK(fabs(f7 - want7) < 0.015, "top-p tail: token 7 frequency %g, want %g", f7, want7);
        CHECK(maxid <= 200 && maxid >= 190 && !outside, "top-p tail: kept ids up to %d, want 200", maxid);
        mlxn_sampler_destroy(sb);
    }

    /* the device path: the k largest logits (here found by a full sort, then
     * handed over shuffled) give the same tokens as the whole row, draw for
     * draw, for each filter combination; ties at the cut keep the lowest ids */
    {
        enum { BV = 1000, K = 40, DRAWS = 300 };
        static float row[BV];
        uint64_t r = 1;
        for (int i = 0; i < BV; i++) {
            r = r * 6364136223846793005ull + 1442695040888963407ull;
            row[i] = (float)((int)(r >> 54) % 40) * 0.25f; /* many ties */
        }
        mlxn_sampler_params ps[5] = {
            {.temp = 0.8f, .top_k = K, .seed = 31},
            {.temp = 0.8f, .top_k = K, .top_p = 0.9f, .seed = 32},
            {.temp = 1.3f, .top_k = K, .min_p = 0.05f, .seed = 33},
            {.temp = 0.7f, .top_k = K, .top_p = 0.95f, .min_p = 0.05f, .seed = 34},
            {.temp = 2.0f, .top_k = 1, .seed = 35},
        };
        for (int ci = 0; ci < 5; ci++) {
            int k = ps[ci].top_k;
            /* ids by descending value, ascending id on ties: the k best */
            static int32_t ord[BV];
            for (int i = 0; i < BV; i++) ord[i] = i;
            for (int i = 1; i < BV; i++) /* insertion sort: stable, small */
                for (int j = i; j > 0 && row[ord[j]] > row[ord[j - 1]]; j--) {
                    int32_t t2 = ord[j]; ord[j] = ord[j - 1]; ord[j - 1] = t2;
                }
            float tv[K];
            int32_t ti[K];
            for (int i = 0; i < k; i++) { /* shuffled: reversed */
                ti[i] = ord[k - 1 - i];
                tv[i] = row[ti[i]];
            }
            mlxn_sampler *full = NULL, *top = NULL;
            CHECK_OK(mlxn_sampler_create(&full, &ps[ci], BV));
            CHECK_OK(mlxn_sampler_create(&top, &ps[ci], BV));
            CHECK(mlxn_sampler_device_top_k(top) == k, "device top-k %d, want %d", mlxn_sampler_device_top_k(top), k);
            int eq = 1;
            for (int i = 0; i < DRAWS && full && top; i++) {
                int32_t a1 = -1, b1 = -2;
                eq &= mlxn_sampler_sample(full, row, &a1) == MLXN_OK;
                eq &= mlxn_sampler_sample_top(top, tv, ti, k, NULL, &b1) == MLXN_OK;
                eq &= a1 == b1;
            }
            CHECK(eq, "top-k candidates path differs from the full row (case %d)", ci);
            if (eq) printf("  ok %d draws from the %d largest logits equal the full row's (case %d)\n", DRAWS, k, ci);
            mlxn_sampler_destroy(full);
            mlxn_sampler_destroy(top);
        }
        /* a penalty >= 1 widens the candidates by its window; < 1 or with
         * top-p and no top-k needs the whole row, as does temperature alone */
        mlxn_sampler *sp = NULL;
        mlxn_sampler_params q1 = {.temp = 0.8f, .top_k = K, .repeat_penalty = 1.1f};
        CHECK_OK(mlxn_sampler_create(&sp, &q1, BV));
        CHECK(mlxn_sampler_device_top_k(sp) == K + 64, "a penalty asks for top-k + 64, got %d",
              mlxn_sampler_device_top_k(sp));
        mlxn_sampler_destroy(sp);
        q1.repeat_penalty = 0.9f;
        CHECK_OK(mlxn_sampler_create(&sp, &q1, BV));
        CHECK(mlxn_sampler_device_top_k(sp) == 0, "a penalty < 1 needs the whole row");
        mlxn_sampler_destroy(sp);
        mlxn_sampler_params q3 = {.temp = 0.8f, .top_p = 0.9f, .repeat_penalty = 1.1f};
        CHECK_OK(mlxn_sampler_create(&sp, &q3, BV));
        CHECK(mlxn_sampler_device_top_k(sp) == 0, "a penalty with top-p and no top-k needs the whole row");
        mlxn_sampler_destroy(sp);
        mlxn_sampler_params q4 = {.temp = 0.8f, .top_k = 200, .repeat_penalty = 1.1f};
        CHECK_OK(mlxn_sampler_create(&sp, &q4, BV));
        CHECK(mlxn_sampler_device_top_k(sp) == 0, "200 + 64 candidates exceed the limit of %d", MLXN_SAMPLER_MAX_CANDS);
        mlxn_sampler_destroy(sp);
        mlxn_sampler_params q5 = {.temp = 0.8f, .top_p = 0.9f};
        CHECK_OK(mlxn_sampler_create(&sp, &q5, BV));
        CHECK(mlxn_sampler_device_top_k(sp) == MLXN_SAMPLER_CANDS && mlxn_sampler_device_norm_scale(sp) == 1.0 / (double)0.8f,
              "top-p without top-k: %d candidates and scale %g", mlxn_sampler_device_top_k(sp),
              mlxn_sampler_device_norm_scale(sp));
        float v2[2] = {1, 0};
        int32_t i2[2] = {0, 1}, o2;
        CHECK_STATUS(mlxn_sampler_sample_top(sp, v2, i2, 2, NULL, &o2), MLXN_ERR_INVALID_ARG); /* no norm */
        mlxn_sampler_destroy(sp);
        mlxn_sampler_params q2 = {.temp = 0.8f};
        CHECK_OK(mlxn_sampler_create(&sp, &q2, BV));
        CHECK(mlxn_sampler_device_top_k(sp) == 0, "top-k off needs the whole row");
        float v1 = 0;
        int32_t i1 = 3;
        CHECK_STATUS(mlxn_sampler_sample_top(sp, &v1, &i1, 1, NULL, &i1), MLXN_ERR_INVALID_ARG);
        mlxn_sampler_destroy(sp);
    }

    CHECK_OK(mlxn_device_open(&g_dev, "cpu", NULL));
    if (g_dev) {
        test_candidate_paths();
        test_knife_edges();
        mlxn_device_close(g_dev);
    }

    /* bad parameters */
    mlxn_sampler *bad = NULL;
    mlxn_sampler_params bp = {.top_p = 1.5f};
    CHECK_STATUS(mlxn_sampler_create(&bad, &bp, V), MLXN_ERR_INVALID_ARG);
    CHECK_STATUS(mlxn_sampler_create(&bad, NULL, 0), MLXN_ERR_INVALID_ARG);
    return test_summary("test_sampler");
}
