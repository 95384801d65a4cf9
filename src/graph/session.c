/*
 * session.c — recording nodes, submitting them, replaying a finished graph,
 * and the stats. Direct mode runs each node as it is recorded (one
 * submission per op); batched and optimized modes keep nodes until submit,
 * then run the passes and the schedule and hand the whole graph to the
 * backend at once.
 */
#include "backend/backend.h"
#include "graph/graph.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef enum { S_RECORDING, S_SUBMITTED, S_FINISHED } sess_state;

struct mlxn_session {
    mlxn_device *dev;
    mlxn_mode mode;
    unsigned flags;
    sess_state state;
    bool have_graph;   /* exec holds a finished graph that can be replayed */
    mlxn_node *nodes;  /* recorded, in order */
    uint32_t n_nodes, cap;
    mlxn_outputs outs;
    mlxn_exec exec;
    mlxn_graph_stats stats;
    uint64_t record_start_ns;
};

mlxn_device *mlxn_session_device(const mlxn_session *s);
mlxn_device *mlxn_session_device(const mlxn_session *s) { return s->dev; }

static bool env_on(const char *name) {
    const char *v = getenv(name);
    return v && *v && strcmp(v, "0") != 0;
}

mlxn_status mlxn_session_create(mlxn_session **out, mlxn_device *dev, mlxn_mode mode, unsigned flags) {
    if (!out) return mlxn_err(MLXN_ERR_INVALID_ARG, "session_create: out is NULL");
    *out = NULL;
    if (!dev) return mlxn_err(MLXN_ERR_INVALID_ARG, "session_create: device is NULL");
    if ((unsigned)mode >= MLXN_MODE_COUNT)
        return mlxn_err(MLXN_ERR_INVALID_ARG, "session_create: unknown mode %d", (int)mode);
    mlxn_session *s = mlxn_calloc(1, sizeof *s);
    if (!s) return mlxn_err(MLXN_ERR_OUT_OF_MEMORY, "session_create: out of host memory");
    s->dev = dev;
    s->mode = mode;
    /* The environment switches passes off for every session, in one place. */
    if (env_on("MLXN_NO_FUSE")) flags |= MLXN_SESSION_NO_FUSE;
    if (env_on("MLXN_NO_REORDER")) flags |= MLXN_SESSION_NO_REORDER;
    if (env_on("MLXN_GRAPH_DUMP")) flags |= MLXN_SESSION_DUMP;
    if (env_on("MLXN_F32_ACTIVATIONS")) flags |= MLXN_SESSION_F32_ACTIVATIONS;
    if (env_on("MLXN_INT8_ACTIVATIONS")) flags |= MLXN_SESSION_INT8_ACTIVATIONS;
    s->flags = flags;
    *out = s;
    return MLXN_OK;
}

void mlxn_node_release(mlxn_node *n) {
    for (int i = 0; i < n->n_slots; i++)
        if (n->t[i].alloc) mlxn_alloc_release(n->t[i].alloc);
}

static void drop_graph(mlxn_session *s) {
    if (s->exec.backend_state && s->dev->be->exec_release) s->dev->be->exec_release(s->dev, &s->exec);
    mlxn_exec_clear(&s->exec);
    for (uint32_t i = 0; i < s->n_nodes; i++) mlxn_node_release(&s->nodes[i]);
    s->n_nodes = 0;
    for (size_t i = 0; i < s->outs.n; i++) mlxn_alloc_release(s->outs.t[i].alloc);
    s->outs.n = 0;
    s->have_graph = false;
    s->state = S_RECORDING;
}

void mlxn_session_reset(mlxn_session *s) {
    if (!s) return;
    if (s->state == S_SUBMITTED) s->dev->be->wait(s->dev, &s->exec);
    drop_graph(s);
    memset(&s->stats, 0, sizeof s->stats);
}

void mlxn_session_destroy(mlxn_session *s) {
    if (!s) return;
    mlxn_session_reset(s);
    mlxn_free(s->nodes);
    mlxn_free(s->outs.t);
    mlxn_free(s);
}

mlxn_mode mlxn_session_mode(const mlxn_session *s) { return s->mode; }

mlxn_status mlxn_session_mark_output(mlxn_session *s, const mlxn_buffer *buf) {
    if (!s || !buf) return mlxn_err(MLXN_ERR_INVALID_ARG, "session_mark_output: NULL argument");
    if (s->outs.n == s->outs.cap) {
        size_t cap = s->outs.cap ? s->outs.cap * 2 : 8;
        mlxn_tensor *t = mlxn_realloc(s->outs.t, cap * sizeof *t);
        if (!t) return mlxn_err(MLXN_ERR_OUT_OF_MEMORY, "session_mark_output: out of host memory");
        s->outs.t = t;
        s->outs.cap = cap;
    }
    s->outs.t[s->outs.n++] = buf->t;
    mlxn_alloc_retain(buf->t.alloc);
    return MLXN_OK;
}

/* Run one node on its own: a one-node graph (direct mode's submission). */
static mlxn_status run_single(mlxn_session *s, mlxn_node *n) {
    uint32_t gs[2] = {0, 1}, ds[2] = {0, 0};
    mlxn_exec one = {.nodes = n, .n_nodes = 1, .group_start = gs, .n_groups = 1, .dep_start = ds};
    mlxn_status st = s->dev->be->execute(s->dev, &one, false);
    if (!st) st = s->dev->be->wait(s->dev, &one);
    if (one.backend_state && s->dev->be->exec_release) s->dev->be->exec_release(s->dev, &one);
    return st;
}

mlxn_status mlxn_session_record(mlxn_session *s, mlxn_node *n);
mlxn_status mlxn_session_record(mlxn_session *s, mlxn_node *n) {
    if (s->state == S_SUBMITTED)
        return mlxn_err(MLXN_ERR_STATE, "%s: session has a submission in flight; wait first",
                        mlxn_op_name(n->op));
    if (s->have_graph) drop_graph(s); /* recording after a finish starts a new graph */
    if (s->dev->be->supports && !s->dev->be->supports(s->dev, n))
        return mlxn_err(MLXN_ERR_UNSUPPORTED, "%s: not supported on the %s backend for these dtypes",
                        mlxn_op_name(n->op), s->dev->kind);
    if (s->n_nodes == s->cap) {
        uint32_t cap = s->cap ? s->cap * 2 : 64;
        mlxn_node *nn = mlxn_realloc(s->nodes, (size_t)cap * sizeof *nn);
        if (!nn) return mlxn_err(MLXN_ERR_OUT_OF_MEMORY, "%s: out of host memory recording a node",
                                 mlxn_op_name(n->op));
        s->nodes = nn;
        s->cap = cap;
    }
    if (s->n_nodes == 0) {
        s->record_start_ns = mlxn_now_ns();
        s->stats.submissions = 0;
        s->stats.launches = 0;
    }
    n->id = s->n_nodes;
    if (s->flags & MLXN_SESSION_F32_ACTIVATIONS) n->flags |= MLXN_NODE_F32_ACT;
    if (s->flags & MLXN_SESSION_INT8_ACTIVATIONS) n->flags |= MLXN_NODE_INT8_ACT;
    for (int i = 0; i < n->n_slots; i++)
        if (n->t[i].alloc) mlxn_alloc_retain(n->t[i].alloc);
    s->nodes[s->n_nodes++] = *n;
    if (s->mode == MLXN_MODE_DIRECT) {
        uint64_t t0 = mlxn_now_ns();
        mlxn_status st = run_single(s, &s->nodes[s->n_nodes - 1]);
        s->stats.submit_ns += mlxn_now_ns() - t0;
        s->stats.submissions++;
        if (st) {
            mlxn_node_release(&s->nodes[--s->n_nodes]);
            return st;
        }
    }
    return MLXN_OK;
}

/* Take back the last recorded node (an op that records two nodes and fails
 * on the second). */
void mlxn_session_drop_last(mlxn_session *s);
void mlxn_session_drop_last(mlxn_session *s) {
    if (s->n_nodes) mlxn_node_release(&s->nodes[--s->n_nodes]);
}

static void hist_groups(mlxn_session *s) {
    memset(s->stats.group_hist, 0, sizeof s->stats.group_hist);
    for (uint32_t g = 0; g < s->exec.n_groups; g++) {
        uint32_t sz = s->exec.group_start[g + 1] - s->exec.group_start[g];
        s->stats.group_hist[sz >= MLXN_GROUP_HIST ? MLXN_GROUP_HIST - 1 : sz - 1]++;
    }
    s->stats.groups = s->exec.n_groups;
    s->stats.barriers = s->exec.n_groups ? s->exec.n_groups - 1 : 0;
    s->stats.edges = s->exec.n_deps;
}

static bool backend_can_run(void *ctx, const mlxn_node *n) {
    mlxn_device *d = ctx;
    return !d->be->supports || d->be->supports(d, n);
}

/* Turn the recorded nodes into an exec: passes (optimized), schedule. */
static mlxn_status build_exec(mlxn_session *s) {
    bool dump = s->flags & MLXN_SESSION_DUMP;
    uint64_t t0 = mlxn_now_ns();
    s->stats.recorded = s->n_nodes;
    s->stats.record_ns = t0 - s->record_start_ns;
    mlxn_exec_clear(&s->exec);
    s->exec.nodes = mlxn_malloc((size_t)(s->n_nodes ? s->n_nodes : 1) * sizeof(mlxn_node));
    if (!s->exec.nodes) return mlxn_err(MLXN_ERR_OUT_OF_MEMORY, "session_submit: out of host memory");
    if (s->n_nodes) memcpy(s->exec.nodes, s->nodes, (size_t)s->n_nodes * sizeof(mlxn_node));
    uint32_t n = s->n_nodes;
    s->stats.fusions = s->stats.reordered = 0;
    if (s->mode == MLXN_MODE_OPTIMIZED) {
        if (!(s->flags & MLXN_SESSION_NO_FUSE))
            s->stats.fusions = mlxn_pass_fuse(s->exec.nodes, &n, &s->outs, dump, backend_can_run, s->dev);
        if (!(s->flags & MLXN_SESSION_NO_REORDER))
            s->stats.reordered = mlxn_pass_reorder(s->exec.nodes, n, dump);
    }
    s->exec.n_nodes = n;
    mlxn_status st = mlxn_schedule_build(&s->exec, dump);
    if (st) return st;
    s->stats.nodes = n;
    hist_groups(s);
    s->stats.optimize_ns = mlxn_now_ns() - t0;
    return MLXN_OK;
}

static mlxn_status do_submit(mlxn_session *s, bool replay) {
    uint64_t t0 = mlxn_now_ns();
    mlxn_status st;
    if (s->mode == MLXN_MODE_DIRECT && replay) {
        st = MLXN_OK;
        for (uint32_t i = 0; i < s->n_nodes && !st; i++) st = run_single(s, &s->nodes[i]);
        s->stats.submissions = s->n_nodes;
        s->stats.launches = 0;
        s->stats.submit_ns = mlxn_now_ns() - t0;
        s->stats.wait_ns = 0;
        if (st) return st;
        s->state = S_FINISHED;
        return MLXN_OK;
    }
    if (s->mode == MLXN_MODE_DIRECT) { /* already ran node by node */
        s->stats.nodes = s->stats.recorded = s->n_nodes;
        s->stats.groups = s->n_nodes;
        s->stats.barriers = s->n_nodes ? s->n_nodes - 1 : 0;
        memset(s->stats.group_hist, 0, sizeof s->stats.group_hist);
        s->stats.group_hist[0] = s->n_nodes;
        s->stats.record_ns = mlxn_now_ns() - s->record_start_ns;
        s->state = S_FINISHED;
        s->have_graph = true;
        return MLXN_OK;
    }
    s->exec.launches = 0;
    s->exec.phases = 0;
    st = s->dev->be->execute(s->dev, &s->exec, replay);
    s->stats.submissions = 1;
    s->stats.launches = s->exec.launches;
    s->stats.phases = s->exec.phases;
    s->stats.submit_ns = mlxn_now_ns() - t0;
    if (st) return st;
    s->state = S_SUBMITTED;
    return MLXN_OK;
}

mlxn_status mlxn_session_submit(mlxn_session *s) {
    if (!s) return mlxn_err(MLXN_ERR_INVALID_ARG, "session_submit: session is NULL");
    if (s->state == S_SUBMITTED) return mlxn_err(MLXN_ERR_STATE, "session_submit: already submitted; wait first");
    if (s->have_graph) return mlxn_err(MLXN_ERR_STATE, "session_submit: graph already finished; replay it or reset");
    if (s->mode != MLXN_MODE_DIRECT) {
        mlxn_status st = build_exec(s);
        if (st) return st;
    }
    s->have_graph = true;
    mlxn_status st = do_submit(s, false);
    if (st) s->have_graph = false;
    return st;
}

mlxn_status mlxn_session_wait(mlxn_session *s) {
    if (!s) return mlxn_err(MLXN_ERR_INVALID_ARG, "session_wait: session is NULL");
    if (s->state != S_SUBMITTED) return MLXN_OK;
    uint64_t t0 = mlxn_now_ns();
    mlxn_status st = s->dev->be->wait(s->dev, &s->exec);
    s->stats.wait_ns = mlxn_now_ns() - t0;
    s->state = S_FINISHED;
    return st;
}

mlxn_status mlxn_session_finish(mlxn_session *s) {
    mlxn_status st = mlxn_session_submit(s);
    if (st) return st;
    return mlxn_session_wait(s);
}

mlxn_status mlxn_session_replay_queue(mlxn_session *s) {
    if (!s) return mlxn_err(MLXN_ERR_INVALID_ARG, "session_replay: session is NULL");
    if (!s->have_graph) return mlxn_err(MLXN_ERR_STATE, "session_replay: no finished graph to replay");
    s->stats.replays++;
    return do_submit(s, true);
}

mlxn_status mlxn_session_replay_submit(mlxn_session *s) {
    if (s && s->state == S_SUBMITTED) return mlxn_err(MLXN_ERR_STATE, "session_replay: a run is in flight; wait first");
    return mlxn_session_replay_queue(s);
}

mlxn_status mlxn_session_replay(mlxn_session *s) {
    mlxn_status st = mlxn_session_replay_submit(s);
    if (st) return st;
    return mlxn_session_wait(s);
}

mlxn_status mlxn_session_stats(const mlxn_session *s, mlxn_graph_stats *out) {
    if (!s || !out) return mlxn_err(MLXN_ERR_INVALID_ARG, "session_stats: NULL argument");
    *out = s->stats;
    return MLXN_OK;
}
