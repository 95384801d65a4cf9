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

    /* bad parameters */
    mlxn_sampler *bad = NULL;
    mlxn_sampler_params bp = {.top_p = 1.5f};
    CHECK_STATUS(mlxn_sampler_create(&bad, &bp, V), MLXN_ERR_INVALID_ARG);
    CHECK_STATUS(mlxn_sampler_create(&bad, NULL, 0), MLXN_ERR_INVALID_ARG);
    return test_summary("test_sampler");
}
