/* boundary.cu — a measuring probe (scripts/boundary-probe.sh), not part of
 * the library: on an sm_90 GPU, what a kernel boundary costs in a chain of
 * weight-streaming kernels shaped like one decode layer's matmuls, against
 * the same phases inside one persistent kernel separated by grid barriers.
 *
 * Why: the one-row MLX 4-bit kernel streams at ~98 % of the copy rate
 * between its large shapes, yet costs ~2.5-4 us a call more than its bytes
 * (bench/RESULTS.md, H200); a decode step has ~5 such calls a layer. A
 * kernel's blocks take every SM's registers, so the next kernel's blocks
 * (and their weight loads, issued before they wait) start only as this
 * one's leave. In one persistent kernel each warp issues the next phase's
 * first loads before it reaches the barrier, so the loads stay in flight
 * across it. This probe measures both with plain streams of bytes (each
 * warp xors its 16-byte loads: no matmul math), so the difference is the
 * boundary itself.
 *
 * Phases: one layer of the Llama-3-8B 4-bit shape (qkv 12.6 MB, o 8.4 MB,
 * gate+up 58.7 MB, down 29.4 MB), LAYERS layers, every phase its own bytes
 * (more than the L2 in total). Every form runs BPS blocks of 256 an SM
 * (k_mlx4g's 3) and, but for the last, reserves PAD bytes of shared
 * memory a block, so that as with k_mlx4g's registers no block of the next
 * kernel fits beside them. Forms, each timed by CUDA events around a
 * replayed graph (or one cooperative launch), median of RUNS:
 *   flat    one kernel over all the bytes, no barrier: the floor
 *   fused   one cooperative kernel, cg::grid sync between phases
 *   chain   one kernel a phase, programmatic dependent launch (as the
 *           decode graph), first D items loaded before the wait
 *   plain   one kernel a phase, no programmatic launch
 *   chain, no pad: as chain, but the next kernel's blocks fit beside
 *   chain, D 4 / 8; fused, D 6: more items in flight a warp (registers)
 *   ring flat / fused: D items a warp in flight as cp.async copies into
 *           the warp's slots of shared memory, issued across the phase
 *           ends (so across the grid sync)
 *   chain / fused, no bytes: the kernel boundaries or grid syncs alone
 *   flow    one cooperative kernel, no barrier: chunk c of phase k waits
 *           on counters for chunk c of phase k - 1 (a split-K matmul's
 *           dependency on its chunk of x), 1 or 4 chunks a phase, the
 *           counts fenced, released, or unordered; BACKOFF (ns, a -D
 *           through PROBE_FLAGS) between polls
 *   chain, 1 block of 768 / 2 of 384 an SM (with and without bytes): the
 *           same warps an SM in fewer blocks
 * Found on an H200 (bench/RESULTS.md, 2026-11-30): a boundary costs ~1.8 us
 * whichever way it is crossed (grid sync, PDL chain, deeper or ring
 * loads), ~1.35 us of it the dependency's own latency; the counter forms
 * cost more (2.9-13 us a phase).
 */
#include <cooperative_groups.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <vector>

namespace cg = cooperative_groups;

#define CK(x)                                                                                          \
    do {                                                                                               \
        cudaError_t e_ = (x);                                                                          \
        if (e_ != cudaSuccess) {                                                                       \
            fprintf(stderr, "boundary: %s: %s (line %d)\n", #x, cudaGetErrorString(e_), __LINE__); \
            exit(1);                                                                                   \
        }                                                                                              \
    } while (0)

constexpr int D0 = 2;         /* items in flight a warp (k_mlx4g's default) */
#ifndef BACKOFF
#define BACKOFF 0 /* flow's ns between polls */
#endif
constexpr int DR = 8;         /* the ring forms' items in flight a warp (8 KB: 3 blocks' rings fill 192 KB of an SM) */
constexpr int ITEM = 64;      /* uint4 an item: 1 KB, 2 a lane (k_mlx4g's one-row item) */
constexpr int LAYERS = 8, RUNS = 21, BPS = 3;
constexpr int PAD = 70 * 1024; /* 3 blocks' worth fit in an sm_90 SM's 228 KB, a 4th does not */
static const double PHASE_MB[4] = {12.6, 8.4, 58.7, 29.4};

struct Phases {
    const uint4 *p;        /* all phases' items, back to back */
    int n;                 /* phases */
    long long start[4 * LAYERS + 1]; /* item index where each phase starts */
};

static __device__ __forceinline__ uint32_t fold(const uint4 *v, uint32_t a) {
    return a ^ v[0].x ^ v[0].y ^ v[0].z ^ v[0].w ^ v[1].x ^ v[1].y ^ v[1].z ^ v[1].w;
}
static __device__ __forceinline__ void load(uint4 *v, const uint4 *p, long long item, int lane) {
    const uint4 *q = p + item * ITEM + 2 * lane;
    v[0] = __ldg(q);
    v[1] = __ldg(q + 1);
}

/* Warp gw of W's items of phase k: [s + gw T / W, s + (gw + 1) T / W). */
static __device__ __forceinline__ void range(const Phases &ph, int k, int gw, int W, long long *i0, long long *i1) {
    long long s = ph.start[k], T = ph.start[k + 1] - s;
    *i0 = s + T * gw / W;
    *i1 = s + T * (gw + 1) / W;
}

static __device__ __forceinline__ void cp16(uint32_t dst, const uint4 *src) {
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16;" ::"r"(dst), "l"(src) : "memory");
}
/* The lane's two uint4 of item `item` into slot j of its warp's ring at
 * shared address base (asynchronous: the caller commits the group). */
static __device__ __forceinline__ void ring_put(uint32_t base, const uint4 *p, long long item, int lane, int j) {
    const uint4 *q = p + item * ITEM + 2 * lane;
    cp16(base + (uint32_t)(j * ITEM * 16), q);
    cp16(base + (uint32_t)(j * ITEM * 16 + 16), q + 1);
}

/* flat / fused: each warp walks its items of every phase in turn with D
 * loads in flight; fused syncs the grid before it consumes a phase's first
 * item (its loads were issued before the sync). RING: the D items in
 * flight are asynchronous copies into the warp's own slots of shared
 * memory (cp.async), so far more bytes stay in flight across a grid
 * barrier than registers can hold. */
template <int D, bool SYNC, bool RING = false>
__global__ void __launch_bounds__(256, BPS) k_walk(Phases ph, uint32_t *out) {
    extern __shared__ uint4 sm[];
    const int lane = threadIdx.x & 31, gw = (int)((blockIdx.x * blockDim.x + threadIdx.x) >> 5);
    const int W = (int)((gridDim.x * blockDim.x) >> 5);
    uint4 *mine = sm + (size_t)(threadIdx.x >> 5) * D * ITEM + 2 * lane; /* RING: the warp's slots */
    const uint32_t base = (uint32_t)__cvta_generic_to_shared(mine);
    /* the warp's items in order, as (phase, index) produced on the fly */
    int kl = 0, kc = 0;           /* phase of the next load, of the next use */
    long long il, el, ic, ec;     /* next load / its phase's end; next use / its end */
    range(ph, 0, gw, W, &il, &el);
    range(ph, 0, gw, W, &ic, &ec);
    /* slots by constant index (the loops over them unrolled): a slot picked
     * at run time would put buf in local memory, whose stores wait for each
     * load, leaving one load in flight */
    uint4 buf[D][2];
    auto next_load = [&](int j) {
        while (il >= el) {
            if (++kl >= ph.n) goto none;
            range(ph, kl, gw, W, &il, &el);
        }
        if constexpr (RING) ring_put(base, ph.p, il++, lane, j);
        else load(buf[j], ph.p, il++, lane);
    none:
        if constexpr (RING) asm volatile("cp.async.commit_group;" ::: "memory");
    };
#pragma unroll
    for (int j = 0; j < D; j++) next_load(j);
    uint32_t acc = 0;
    for (;;) {
#pragma unroll
        for (int j = 0; j < D; j++) {
            while (ic >= ec) {
                if (++kc >= ph.n) goto done;
                if (SYNC) cg::this_grid().sync();
                range(ph, kc, gw, W, &ic, &ec);
            }
            if constexpr (RING) {
                asm volatile("cp.async.wait_group %0;" ::"n"(D - 1) : "memory");
                acc = fold(mine + j * ITEM, acc);
            } else {
                acc = fold(buf[j], acc);
            }
            ic++;
            next_load(j);
        }
    }
done:
    if constexpr (RING) asm volatile("cp.async.wait_all;" ::: "memory");
    if (lane == 0) out[gw] = acc;
}

/* flow: one cooperative kernel with no grid barrier. Each phase's items
 * are C chunks in turn; the blocks split every chunk evenly, their warps
 * split the block's share. Before a warp consumes its first item of chunk
 * c of phase k it waits (lane 0 polls) until every block has finished
 * chunk c of phase k - 1: a dependency like a split-K matmul's on the
 * chunk of x its items read. A warp done with a chunk fences and counts
 * into shared memory; the block's last warp adds one to the chunk's global
 * counter (counters grow by one each run: epoch). F: 1 each warp fences
 * first (__threadfence), 2 the count is a release (no fence), 0 neither
 * (not enough for real outputs: measures what the ordering costs). Loads go through the
 * shared-memory ring, issued ahead across the waits. */
template <int D, int C, int F>
__global__ void __launch_bounds__(256) k_flow(Phases ph, uint32_t *out, unsigned *cnt, unsigned epoch) {
    extern __shared__ uint4 sm[];
    __shared__ unsigned done[4 * LAYERS * 8];
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const int U = ph.n * C, nb = (int)gridDim.x;
    for (int u = threadIdx.x; u < U; u += blockDim.x) done[u] = 0;
    __syncthreads();
    uint4 *mine = sm + (size_t)warp * D * ITEM + 2 * lane;
    const uint32_t base = (uint32_t)__cvta_generic_to_shared(mine);
    /* unit u = k * C + c: this warp's items of chunk c of phase k */
    auto urange = [&](int u, long long *i0, long long *i1) {
        const int k = u / C, c = u - k * C;
        const long long s = ph.start[k], T = ph.start[k + 1] - s;
        const long long a = s + T * c / C, b = s + T * (c + 1) / C;
        const long long ba = a + (b - a) * blockIdx.x / nb, bb = a + (b - a) * (blockIdx.x + 1) / nb;
        *i0 = ba + (bb - ba) * warp / 8;
        *i1 = ba + (bb - ba) * (warp + 1) / 8;
    };
    int ul = 0, uc = 0;
    long long il, el, ic, ec;
    urange(0, &il, &el);
    urange(0, &ic, &ec);
    auto next_load = [&](int j) {
        while (il >= el) {
            if (++ul >= U) goto none;
            urange(ul, &il, &el);
        }
        ring_put(base, ph.p, il++, lane, j);
    none:
        asm volatile("cp.async.commit_group;" ::: "memory");
    };
    auto finish = [&](int u) { /* this warp is done with unit u */
        if (lane == 0) {
            if (F == 1) __threadfence();
            if (atomicAdd(&done[u], 1u) == 7u) {
                if (F == 2) asm volatile("red.release.gpu.global.add.u32 [%0], 1;" ::"l"(cnt + u) : "memory");
                else atomicAdd(&cnt[u], 1u);
            }
        }
    };
    auto await = [&](int u) { /* every block done with unit u - C */
        if (u >= C && lane == 0) {
            const unsigned want = epoch * (unsigned)nb;
            unsigned v;
            for (;;) {
                asm volatile("ld.acquire.gpu.global.u32 %0, [%1];" : "=r"(v) : "l"(cnt + u - C) : "memory");
                if ((int)(v - want) >= 0) break;
                if (BACKOFF) __nanosleep(BACKOFF); /* fewer polls of one L2 line */
            }
        }
        __syncwarp();
    };
#pragma unroll
    for (int j = 0; j < D; j++) next_load(j);
    uint32_t acc = 0;
    await(0);
    for (;;) {
#pragma unroll
        for (int j = 0; j < D; j++) {
            while (ic >= ec) {
                finish(uc);
                if (++uc >= U) goto done;
                urange(uc, &ic, &ec);
                await(uc);
            }
            asm volatile("cp.async.wait_group %0;" ::"n"(D - 1) : "memory");
            acc = fold(mine + j * ITEM, acc);
            ic++;
            next_load(j);
        }
    }
done:
    asm volatile("cp.async.wait_all;" ::: "memory");
    if (lane == 0) out[(blockIdx.x * blockDim.x + threadIdx.x) >> 5] = acc;
}

/* chain / plain: one phase; PDL: first D items before the wait */
template <int D, bool PDL, int NT = 256>
__global__ void __launch_bounds__(NT) k_phase(Phases ph, int k, uint32_t *out) {
    const int lane = threadIdx.x & 31, gw = (int)((blockIdx.x * blockDim.x + threadIdx.x) >> 5);
    const int W = (int)((gridDim.x * blockDim.x) >> 5);
    long long i0, i1;
    range(ph, k, gw, W, &i0, &i1);
    uint4 buf[D][2];
    for (int j = 0; j < D; j++)
        if (i0 + j < i1) load(buf[j], ph.p, i0 + j, lane);
    if (PDL) asm volatile("griddepcontrol.wait;" ::: "memory");
    if (PDL) asm volatile("griddepcontrol.launch_dependents;");
    uint32_t acc = 0;
    for (long long it = i0; it < i1; it += D)
#pragma unroll
        for (int j = 0; j < D; j++)
            if (it + j < i1) {
                acc = fold(buf[j], acc);
                if (it + j + D < i1) load(buf[j], ph.p, it + j + D, lane);
            }
    if (lane == 0) out[(long long)k * W + gw] = acc; /* a phase's own words: the kernels overlap under PDL */
}

__global__ void k_fill(uint4 *p, long long n) {
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x)
        p[i] = make_uint4((uint32_t)i * 2654435761u, (uint32_t)(i >> 7) ^ 0x9e3779b9u, (uint32_t)i ^ 0x85ebca6bu, 7u);
}

static float median(std::vector<float> v) {
    std::sort(v.begin(), v.end());
    return v[v.size() / 2];
}

/* ms of one run(), median of RUNS after a warm-up */
static float time_ms(const std::function<void()> &run, cudaStream_t s) {
    cudaEvent_t a, b;
    CK(cudaEventCreate(&a));
    CK(cudaEventCreate(&b));
    run();
    CK(cudaStreamSynchronize(s));
    std::vector<float> t;
    for (int r = 0; r < RUNS; r++) {
        CK(cudaEventRecord(a, s));
        run();
        CK(cudaEventRecord(b, s));
        CK(cudaEventSynchronize(b));
        float ms = 0;
        CK(cudaEventElapsedTime(&ms, a, b));
        t.push_back(ms);
    }
    CK(cudaEventDestroy(a));
    CK(cudaEventDestroy(b));
    return median(t);
}

int main() {
    int dev = 0, sms = 0, count = 0;
    if (cudaGetDeviceCount(&count) != cudaSuccess || count < 1) {
        printf("boundary: skipped: no CUDA device\n");
        return 0;
    }
    CK(cudaSetDevice(dev));
    cudaDeviceProp pr;
    CK(cudaGetDeviceProperties(&pr, dev));
    sms = pr.multiProcessorCount;
    if (pr.major < 9) {
        printf("boundary: skipped: needs sm_90 (griddepcontrol), found sm_%d%d\n", pr.major, pr.minor);
        return 0;
    }
    Phases ph = {};
    ph.n = 4 * LAYERS;
    long long items = 0;
    for (int k = 0; k < ph.n; k++) {
        ph.start[k] = items;
        items += (long long)(PHASE_MB[k % 4] * 1e6 / (ITEM * 16));
    }
    ph.start[ph.n] = items;
    const double bytes = (double)items * ITEM * 16;
    uint4 *p = nullptr;
    CK(cudaMalloc(&p, (size_t)items * ITEM * 16));
    k_fill<<<sms * 8, 256>>>(p, items * ITEM);
    CK(cudaGetLastError());
    ph.p = p;

    const int RING = 8 * DR * ITEM * 16; /* a block's ring bytes */
    void *fns[] = {(void *)k_walk<D0, false>, (void *)k_walk<D0, true>,  (void *)k_walk<6, true>,
                   (void *)k_phase<D0, true>,  (void *)k_phase<D0, false>, (void *)k_phase<4, true>,
                   (void *)k_phase<8, true>,   (void *)k_walk<DR, false, true>,  (void *)k_walk<DR, true, true>,
                   (void *)k_flow<DR, 1, 1>,   (void *)k_flow<DR, 4, 1>,   (void *)k_flow<DR, 1, 2>,
                   (void *)k_flow<DR, 4, 2>,   (void *)k_flow<DR, 1, 0>,   (void *)k_flow<DR, 4, 0>};
    for (void *f : fns)
        CK(cudaFuncSetAttribute(f, cudaFuncAttributeMaxDynamicSharedMemorySize, std::max(PAD, RING)));
    int per = 0, per_r = 0; /* the cooperative kernels must have every block resident */
    CK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per, k_walk<6, true>, 256, PAD));
    CK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_r, k_walk<DR, true, true>, 256, RING));
    int per_f = 0;
    CK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_f, k_flow<DR, 4, 1>, 256, RING));
    if (per_f < per_r) per_r = per_f;
    if (per < BPS || per_r < BPS) {
        printf("boundary: skipped: %d / %d blocks an SM fit with %d / %d bytes of shared memory, %d wanted\n", per,
               per_r, PAD, RING, BPS);
        return 0;
    }
    const int gb = sms * BPS;
    uint32_t *out = nullptr;
    const size_t words = (size_t)ph.n * (size_t)gb * 8;
    CK(cudaMalloc(&out, words * sizeof(uint32_t)));
    CK(cudaMemset(out, 0, words * sizeof(uint32_t)));
    CK(cudaDeviceSynchronize());
    cudaStream_t s;
    CK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
    unsigned *cnt = nullptr; /* flow: a counter for each phase's chunks, each form its own */
    const int NC = 4 * LAYERS * 8; /* counters a form */
    CK(cudaMalloc(&cnt, 6 * NC * sizeof(unsigned)));
    CK(cudaMemset(cnt, 0, 6 * NC * sizeof(unsigned)));
    unsigned epoch[6] = {0, 0, 0, 0, 0, 0};
    unsigned *cnts[6];
    for (int i = 0; i < 6; i++) cnts[i] = cnt + i * NC;

    auto capture = [&](auto body) {
        cudaGraph_t g;
        cudaGraphExec_t ge;
        CK(cudaStreamBeginCapture(s, cudaStreamCaptureModeGlobal));
        body();
        CK(cudaStreamEndCapture(s, &g));
        CK(cudaGraphInstantiate(&ge, g, 0));
        CK(cudaGraphDestroy(g));
        return ge;
    };
    auto launch = [&](void *fn, int blocks, void **args, bool pdl, bool coop, int pad = PAD, int nt = 256) {
        cudaLaunchConfig_t c = {};
        c.gridDim = dim3((unsigned)blocks);
        c.blockDim = dim3((unsigned)nt);
        c.dynamicSmemBytes = (size_t)pad;
        c.stream = s;
        cudaLaunchAttribute at[1];
        c.attrs = at;
        c.numAttrs = 0;
        if (pdl) {
            at[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
            at[0].val.programmaticStreamSerializationAllowed = 1;
            c.numAttrs = 1;
        }
        if (coop) {
            at[0].id = cudaLaunchAttributeCooperative;
            at[0].val.cooperative = 1;
            c.numAttrs = 1;
        }
        CK(cudaLaunchKernelExC(&c, fn, args));
    };

    void *wargs[] = {&ph, &out};
    cudaGraphExec_t g_flat = capture([&] { launch((void *)k_walk<D0, false>, gb, wargs, false, false); });
    cudaGraphExec_t g_rflat = capture([&] { launch((void *)k_walk<DR, false, true>, gb, wargs, false, false, RING); });
    /* the same phases with no bytes: what a boundary costs by itself */
    Phases ph0 = ph;
    for (int k = 0; k <= ph0.n; k++) ph0.start[k] = 0;
    std::vector<int> ks(ph.n);
    auto chain = [&](void *fn, bool pdl, int pad, int blocks = 0, int nt = 256, const Phases *pp = nullptr) {
        return capture([&] {
            for (int k = 0; k < ph.n; k++) {
                ks[k] = k;
                void *a[] = {(void *)(pp ? pp : &ph), &ks[k], &out};
                launch(fn, blocks ? blocks : gb, a, pdl, false, pad, nt);
            }
        });
    };
    cudaGraphExec_t g_chain = chain((void *)k_phase<D0, true>, true, PAD);
    cudaGraphExec_t g_plain = chain((void *)k_phase<D0, false>, false, PAD);
    cudaGraphExec_t g_nopad = chain((void *)k_phase<D0, true>, true, 0);
    cudaGraphExec_t g_chain4 = chain((void *)k_phase<4, true>, true, PAD);
    cudaGraphExec_t g_chain8 = chain((void *)k_phase<8, true>, true, PAD);
    void *wargs0[] = {&ph0, &out}; /* fused with no bytes */
    /* the same warps an SM in fewer, larger blocks (shared memory padded so
     * that, as above, no block of the next kernel fits beside) */
    CK(cudaFuncSetAttribute((void *)k_phase<D0, true, 768>, cudaFuncAttributeMaxDynamicSharedMemorySize, 3 * PAD));
    CK(cudaFuncSetAttribute((void *)k_phase<D0, true, 384>, cudaFuncAttributeMaxDynamicSharedMemorySize, 3 * PAD / 2));
    cudaGraphExec_t g_big = chain((void *)k_phase<D0, true, 768>, true, 3 * PAD, sms, 768);
    cudaGraphExec_t g_mid = chain((void *)k_phase<D0, true, 384>, true, 3 * PAD / 2, 2 * sms, 384);
    cudaGraphExec_t g_big0 = chain((void *)k_phase<D0, true, 768>, true, 3 * PAD, sms, 768, &ph0);
    cudaGraphExec_t g_mid0 = chain((void *)k_phase<D0, true, 384>, true, 3 * PAD / 2, 2 * sms, 384, &ph0);
    cudaGraphExec_t g_chain0 = chain((void *)k_phase<D0, true>, true, PAD, 0, 256, &ph0);

    printf("boundary: %s, %d SMs; %d phases (%d layers of qkv / o / gate+up / down bytes), %.1f MB;"
           " %d blocks of 256 (%d an SM), D items of 1 KB in flight a warp\n",
           pr.name, sms, ph.n, LAYERS, bytes / 1e6, gb, BPS);
    const int NF = 22;
    const char *names[NF] = {"flat (one kernel, no barrier), D 2",
                             "fused (grid sync a phase), D 2",
                             "chain (a kernel a phase, PDL), D 2",
                             "plain (a kernel a phase), D 2",
                             "chain, no pad (blocks may share), D 2",
                             "chain, D 4",
                             "chain, D 8",
                             "fused, D 6",
                             "ring flat (cp.async to smem), D 8",
                             "ring fused (grid sync), D 8",
                             "chain, no bytes (the boundaries alone)",
                             "fused, no bytes (the syncs alone)",
                             "flow, a phase on the last, fence",
                             "flow, chunk on chunk (4), fence",
                             "flow, a phase on the last, release",
                             "flow, chunk on chunk (4), release",
                             "flow, a phase on the last, unordered",
                             "flow, chunk on chunk (4), unordered",
                             "chain, 1 block of 768 an SM",
                             "chain, 2 blocks of 384 an SM",
                             "chain, no bytes, 1 block of 768 an SM",
                             "chain, no bytes, 2 blocks of 384 an SM"};
    const bool nobytes[NF] = {false, false, false, false, false, false, false, false, false, false, true, true,
                              false, false, false, false, false, false, false, false, true,  true};
    auto flow = [&](int i, void *fn) {
        unsigned e = ++epoch[i];
        void *a[] = {&ph, &out, &cnts[i], &e};
        launch(fn, gb, a, false, true, RING);
    };
    /* the cooperative launch goes straight to the stream (graphs of
     * cooperative kernels need a newer driver than some GPU hosts have) */
    std::function<void()> run[NF] = {
        [&] { CK(cudaGraphLaunch(g_flat, s)); },
        [&] { launch((void *)k_walk<D0, true>, gb, wargs, false, true); },
        [&] { CK(cudaGraphLaunch(g_chain, s)); },
        [&] { CK(cudaGraphLaunch(g_plain, s)); },
        [&] { CK(cudaGraphLaunch(g_nopad, s)); },
        [&] { CK(cudaGraphLaunch(g_chain4, s)); },
        [&] { CK(cudaGraphLaunch(g_chain8, s)); },
        [&] { launch((void *)k_walk<6, true>, gb, wargs, false, true); },
        [&] { CK(cudaGraphLaunch(g_rflat, s)); },
        [&] { launch((void *)k_walk<DR, true, true>, gb, wargs, false, true, RING); },
        [&] { CK(cudaGraphLaunch(g_chain0, s)); },
        [&] { launch((void *)k_walk<D0, true>, gb, wargs0, false, true); },
        [&] { flow(0, (void *)k_flow<DR, 1, 1>); }, [&] { flow(1, (void *)k_flow<DR, 4, 1>); },
        [&] { flow(2, (void *)k_flow<DR, 1, 2>); }, [&] { flow(3, (void *)k_flow<DR, 4, 2>); },
        [&] { flow(4, (void *)k_flow<DR, 1, 0>); }, [&] { flow(5, (void *)k_flow<DR, 4, 0>); },
        [&] { CK(cudaGraphLaunch(g_big, s)); }, [&] { CK(cudaGraphLaunch(g_mid, s)); },
        [&] { CK(cudaGraphLaunch(g_big0, s)); }, [&] { CK(cudaGraphLaunch(g_mid0, s)); }};
    float ms[NF];
    for (int round = 0; round < 2; round++)
        for (int f = 0; f < NF; f++) {
            ms[f] = time_ms(run[f], s);
            if (nobytes[f])
                printf("round %d  %-40s %8.1f us  %6.2f us a phase\n", round + 1, names[f], ms[f] * 1e3,
                       ms[f] * 1e3 / ph.n);
            else
                printf("round %d  %-40s %8.1f us  %7.1f GB/s  %6.2f us a phase over flat\n", round + 1, names[f],
                       ms[f] * 1e3, bytes / (ms[f] * 1e-3) / 1e9, f ? (ms[f] - ms[0]) * 1e3 / ph.n : 0.0);
        }
    CK(cudaFree(p));
    CK(cudaFree(out));
    CK(cudaFree(cnt));
    return 0;
}
