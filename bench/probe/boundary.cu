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

constexpr int D = 2;          /* items in flight a warp (k_mlx4g's default) */
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

/* flat / fused: each warp walks its items of every phase in turn with D
 * loads in flight; fused syncs the grid before it consumes a phase's first
 * item (its loads were issued before the sync). */
template <bool SYNC>
__global__ void __launch_bounds__(256) k_walk(Phases ph, uint32_t *out) {
    const int lane = threadIdx.x & 31, gw = (int)((blockIdx.x * blockDim.x + threadIdx.x) >> 5);
    const int W = (int)((gridDim.x * blockDim.x) >> 5);
    /* the warp's items in order, as (phase, index) produced on the fly */
    int kl = 0, kc = 0;           /* phase of the next load, of the next use */
    long long il, el, ic, ec;     /* next load / its phase's end; next use / its end */
    range(ph, 0, gw, W, &il, &el);
    range(ph, 0, gw, W, &ic, &ec);
    auto next_load = [&](uint4 *v) -> bool {
        while (il >= el) {
            if (++kl >= ph.n) return false;
            range(ph, kl, gw, W, &il, &el);
        }
        load(v, ph.p, il++, lane);
        return true;
    };
    /* slots by constant index (the loop over them unrolled): a slot picked
     * at run time would put buf in local memory, whose stores wait for each
     * load, leaving one load in flight */
    uint4 buf[D][2];
#pragma unroll
    for (int k = 0; k < D; k++) next_load(buf[k]);
    uint32_t acc = 0;
    for (;;) {
#pragma unroll
        for (int j = 0; j < D; j++) {
            while (ic >= ec) {
                if (++kc >= ph.n) goto done;
                if (SYNC) cg::this_grid().sync();
                range(ph, kc, gw, W, &ic, &ec);
            }
            acc = fold(buf[j], acc);
            ic++;
            next_load(buf[j]);
        }
    }
done:
    if (lane == 0) out[gw] = acc;
}

/* chain / plain: one phase; PDL: first D items before the wait */
template <bool PDL>
__global__ void __launch_bounds__(256) k_phase(Phases ph, int k, uint32_t *out) {
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

    void *fns[4] = {(void *)k_walk<false>, (void *)k_walk<true>, (void *)k_phase<true>, (void *)k_phase<false>};
    for (void *f : fns) CK(cudaFuncSetAttribute(f, cudaFuncAttributeMaxDynamicSharedMemorySize, PAD));
    int per = 0; /* the cooperative kernel must have every block resident */
    CK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per, k_walk<true>, 256, PAD));
    if (per < BPS) {
        printf("boundary: skipped: %d blocks an SM fit with %d bytes of shared memory, %d wanted\n", per, PAD, BPS);
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
    auto launch = [&](void *fn, int blocks, void **args, bool pdl, bool coop, int pad = PAD) {
        cudaLaunchConfig_t c = {};
        c.gridDim = dim3((unsigned)blocks);
        c.blockDim = dim3(256);
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
    cudaGraphExec_t g_flat = capture([&] { launch((void *)k_walk<false>, gb, wargs, false, false); });
    std::vector<int> ks(ph.n);
    auto chain = [&](bool pdl, int pad) {
        return capture([&] {
            for (int k = 0; k < ph.n; k++) {
                ks[k] = k;
                void *a[] = {&ph, &ks[k], &out};
                launch(pdl ? (void *)k_phase<true> : (void *)k_phase<false>, gb, a, pdl, false, pad);
            }
        });
    };
    cudaGraphExec_t g_chain = chain(true, PAD), g_plain = chain(false, PAD), g_nopad = chain(true, 0);

    printf("boundary: %s, %d SMs; %d phases (%d layers of qkv / o / gate+up / down bytes), %.1f MB;"
           " %d blocks of 256 (%d an SM), %d items of 1 KB in flight a warp\n",
           pr.name, sms, ph.n, LAYERS, bytes / 1e6, gb, BPS, D);
    const int NF = 5;
    const char *names[NF] = {"flat (one kernel, no barrier)", "fused (grid sync a phase)", "chain (a kernel a phase, PDL)",
                             "plain (a kernel a phase)", "chain, no pad (blocks may share)"};
    /* the cooperative launch goes straight to the stream (graphs of
     * cooperative kernels need a newer driver than some GPU hosts have) */
    std::function<void()> run[NF] = {
        [&] { CK(cudaGraphLaunch(g_flat, s)); }, [&] { launch((void *)k_walk<true>, gb, wargs, false, true); },
        [&] { CK(cudaGraphLaunch(g_chain, s)); }, [&] { CK(cudaGraphLaunch(g_plain, s)); },
        [&] { CK(cudaGraphLaunch(g_nopad, s)); }};
    float ms[NF];
    for (int round = 0; round < 2; round++)
        for (int f = 0; f < NF; f++) {
            ms[f] = time_ms(run[f], s);
            printf("round %d  %-34s %8.1f us  %7.1f GB/s  %6.2f us a phase over flat\n", round + 1, names[f],
                   ms[f] * 1e3, bytes / (ms[f] * 1e-3) / 1e9, f ? (ms[f] - ms[0]) * 1e3 / ph.n : 0.0);
        }
    CK(cudaFree(p));
    CK(cudaFree(out));
    return 0;
}
