// Host emulation of the CUDA subset used by kernels/cupy/*.cu, for testing the
// kernels' logic on a machine without a GPU.  Every CUDA thread of a block is
// a cooperative fiber (ucontext) on one OS thread; blocks run one after
// another (so `__shared__` = function-local `static` is shared by exactly one
// block at a time); __syncthreads is a block barrier, warp shuffles go through
// a per-warp exchange buffer and barrier.  A barrier that can never complete
// (divergent __syncthreads) is reported as an error instead of hanging.  Kernel arguments arrive as a cuLaunchKernel-style void** with a
// type code per argument, checked against the kernel's signature.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <algorithm>
#include <barrier>
#include <memory>
#include <mutex>
#include <setjmp.h>
#include <ucontext.h>
#include <functional>
#include <type_traits>
#include <utility>
#include <vector>

struct dim3_ { unsigned x = 1, y = 1, z = 1; };
struct alignas(16) int4 { int x, y, z, w; };
inline dim3_ threadIdx, blockIdx, blockDim, gridDim;  // threadIdx set by the scheduler per fiber

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __restrict__ __restrict
#define __launch_bounds__(...)
#define __shared__ static
#define __align__(n) __attribute__((aligned(n)))

using std::max;
using std::min;

// ---- cooperative fibers ---------------------------------------------------------
// Fibers start through makecontext/swapcontext (once per fiber and block) and
// then switch with _setjmp/_longjmp, which skip the signal-mask system call.
struct EmuFiber {
    ucontext_t ctx;
    jmp_buf jb;
    char* stack = nullptr;
    bool started = false, done = false;
    dim3_ tid;
};
inline ucontext_t g_sched;
inline jmp_buf g_sched_jb;
inline std::vector<EmuFiber>* g_fibers = nullptr;
inline unsigned g_cur = 0;
inline unsigned long long g_progress = 0;  // bumped when a barrier opens or a fiber ends
inline void (*g_body)(void*) = nullptr;
inline void* g_body_arg = nullptr;

inline void emu_yield() {
    if (!_setjmp((*g_fibers)[g_cur].jb)) _longjmp(g_sched_jb, 1);
}

struct EmuBarrier {
    unsigned expected = 0, count = 0;
    unsigned long long gen = 0;
    void wait() {
        const unsigned long long my = gen;
        if (++count == expected) {
            count = 0;
            ++gen;
            ++g_progress;
            return;
        }
        while (gen == my) emu_yield();
    }
};

struct EmuBlock {
    EmuBarrier block;
    std::vector<EmuBarrier> warps;
    std::vector<std::vector<unsigned long long>> xchg;  // per warp, 32 lanes
};
inline EmuBlock* g_block = nullptr;

inline void __syncthreads() { g_block->block.wait(); }
inline void __syncwarp(unsigned = 0xffffffffu) {}
inline float __int_as_float(int i) { float f; memcpy(&f, &i, 4); return f; }

template <typename T>
T __shfl_xor_sync(unsigned, T v, int lanemask) {
    static_assert(sizeof(T) <= 8, "shuffle of a type wider than 8 bytes");
    const unsigned tid = threadIdx.x + blockDim.x * (threadIdx.y + blockDim.y * threadIdx.z);
    const unsigned w = tid / 32, lane = tid % 32;
    auto& buf = g_block->xchg[w];
    unsigned long long raw = 0;
    memcpy(&raw, &v, sizeof(T));
    buf[lane] = raw;
    g_block->warps[w].wait();
    raw = buf[lane ^ (unsigned)lanemask];
    g_block->warps[w].wait();  // nobody overwrites buf before all lanes read
    T out;
    memcpy(&out, &raw, sizeof(T));
    return out;
}

inline void emu_trampoline() {
    g_body(g_body_arg);
    (*g_fibers)[g_cur].done = true;
    ++g_progress;
    _longjmp(g_sched_jb, 2);  // never return through uc_link
}

template <typename T>
T atomicMin(T* p, T v) {
    T old = *p;
    if (v < old) *p = v;
    return old;
}
template <typename T>
T atomicMax(T* p, T v) {
    T old = *p;
    if (v > old) *p = v;
    return old;
}
template <typename T>
T atomicAdd(T* p, T v) {  // one OS thread: plain read-modify-write
    T old = *p;
    *p = old + v;
    return old;
}

// ---- argument type codes ------------------------------------------------------
template <typename A> constexpr char code_of() {
    using T = std::remove_cv_t<A>;
    if constexpr (std::is_pointer_v<T>) {
        using E = std::remove_cv_t<std::remove_pointer_t<T>>;
        if constexpr (std::is_same_v<E, float>) return 'F';
        else if constexpr (std::is_same_v<E, double>) return 'D';
        else if constexpr (std::is_same_v<E, long long>) return 'L';
        else if constexpr (std::is_same_v<E, int>) return 'I';
        else return '?';
    } else if constexpr (std::is_same_v<T, float>) return 'f';
    else if constexpr (std::is_same_v<T, double>) return 'd';
    else if constexpr (std::is_same_v<T, int>) return 'i';
    else if constexpr (std::is_same_v<T, long long>) return 'l';
    else if constexpr (std::is_same_v<T, unsigned long long>) return 'u';
    else return '?';
}

template <typename... A, size_t... I>
void emu_call(void (*k)(A...), void** argv, std::index_sequence<I...>) {
    k(*reinterpret_cast<std::remove_reference_t<A>*>(argv[I])...);
}

// Returns 0, or an error code: 1 argument count, 2 + index*... type mismatch (message in err).
template <typename... A>
int emu_launch(void (*k)(A...), const unsigned* g, const unsigned* b, void** argv, const char* codes, int nargs,
               char* err, int errlen) {
    constexpr int n = sizeof...(A);
    if (nargs != n) {
        snprintf(err, errlen, "kernel takes %d arguments, got %d", n, nargs);
        return 1;
    }
    const char expect[n + 1] = {code_of<A>()..., 0};
    for (int i = 0; i < n; ++i) {
        const char got = codes[i];
        bool ok = got == expect[i];
        // a null pointer is passed as an 8-byte zero (numpy.uint64(0))
        if (!ok && got == 'u' && (expect[i] == 'F' || expect[i] == 'D' || expect[i] == 'L' || expect[i] == 'I'))
            ok = *reinterpret_cast<unsigned long long*>(argv[i]) == 0;
        if (!ok) {
            snprintf(err, errlen, "argument %d: kernel expects type code '%c', got '%c' (signature %s)", i, expect[i],
                     got, expect);
            return 2;
        }
    }
    gridDim = {g[0], g[1], g[2]};
    blockDim = {b[0], b[1], b[2]};
    const unsigned nt = b[0] * b[1] * b[2];
    if (nt == 0 || nt > 1024 || g[0] == 0 || g[1] == 0 || g[2] == 0 || g[1] > 65535 || g[2] > 65535) {
        snprintf(err, errlen, "invalid launch configuration grid (%u,%u,%u) block (%u,%u,%u)", g[0], g[1], g[2],
                 b[0], b[1], b[2]);
        return 3;
    }
    const unsigned nw = (nt + 31) / 32;
    // fiber stacks: allocated once per process and reused (no zero-filling, few page faults)
    static std::vector<std::unique_ptr<char[]>> stacks;
    const size_t stack_size = 128 * 1024;
    while (stacks.size() < nt) stacks.emplace_back(new char[stack_size]);
    std::vector<EmuFiber> fibers(nt);
    for (unsigned t = 0; t < nt; ++t) {
        fibers[t].stack = stacks[t].get();
        fibers[t].tid = {t % b[0], (t / b[0]) % b[1], t / (b[0] * b[1])};
    }
    std::function<void()> body = [&]() { emu_call(k, argv, std::index_sequence_for<A...>{}); };
    g_body = [](void* f) { (*static_cast<std::function<void()>*>(f))(); };
    g_body_arg = &body;
    g_fibers = &fibers;
    const unsigned long long nblocks = (unsigned long long)g[0] * g[1] * g[2];
    int rc = 0;
    for (unsigned long long blk_id = 0; blk_id < nblocks && rc == 0; ++blk_id) {
        EmuBlock blk;
        blk.block.expected = nt;
        blk.warps.resize(nw);
        for (unsigned w = 0; w < nw; ++w) {
            blk.warps[w].expected = std::min(32u, nt - 32 * w);
            blk.xchg.emplace_back(32, 0ULL);
        }
        g_block = &blk;
        blockIdx = {(unsigned)(blk_id % g[0]), (unsigned)((blk_id / g[0]) % g[1]),
                    (unsigned)(blk_id / ((unsigned long long)g[0] * g[1]))};
        for (auto& f : fibers) {
            f.done = false;
            f.started = false;
            getcontext(&f.ctx);
            f.ctx.uc_stack.ss_sp = f.stack;
            f.ctx.uc_stack.ss_size = stack_size;
            f.ctx.uc_link = &g_sched;
            makecontext(&f.ctx, emu_trampoline, 0);
        }
        unsigned alive = nt;
        unsigned long long stalled_rounds = 0;
        while (alive) {
            const unsigned long long before = g_progress;
            alive = 0;
            for (unsigned t = 0; t < nt; ++t) {
                if (fibers[t].done) continue;
                g_cur = t;
                threadIdx = fibers[t].tid;
                if (!_setjmp(g_sched_jb)) {
                    if (fibers[t].started) {
                        _longjmp(fibers[t].jb, 1);
                    } else {
                        fibers[t].started = true;
                        swapcontext(&g_sched, &fibers[t].ctx);
                    }
                }
                if (!fibers[t].done) ++alive;
            }
            stalled_rounds = (g_progress == before) ? stalled_rounds + 1 : 0;
            if (alive && stalled_rounds > 2) {
                snprintf(err, errlen, "deadlock: %u threads wait at a barrier that cannot complete (block %llu)",
                         alive, blk_id);
                rc = 4;
                break;
            }
        }
    }
    g_block = nullptr;
    g_fibers = nullptr;
    if (rc) return rc;
    return 0;
}

#define EMU_ENTRY(sym, ...)                                                                          \
    extern "C" int sym(const unsigned* g, const unsigned* b, void** argv, const char* codes, int nargs, \
                       char* err, int errlen) {                                                        \
        return emu_launch(&__VA_ARGS__, g, b, argv, codes, nargs, err, errlen);                        \
    }
