// A tiny CPU emulator for the subset of CUDA used by the prefix-sum kernels, so their logic can
// be tested on a machine with no GPU (see ps_emu_test.cpp). Not a GPU model: every CUDA thread
// is a cooperative fiber (ucontext); a block's fibers run round-robin on one OS thread, switching
// only at __syncthreads and warp collectives (shuffles, ballots, votes, reductions), which are
// true barriers here. Blocks run one after another, or in several forked processes at once
// (launch_concurrent) for kernels whose blocks wait on each other (decoupled look-back); device
// buffers must then come from dev_alloc (shared memory mapping). __shared__ becomes `static`
// (one copy per process, fine since a process runs one block at a time).
// Only 1-D blocks whose size is a multiple of 32, and full-mask warp collectives. Integer and
// floating min/max of two same-typed values are defined as CUDA defines them.
#pragma once
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <math.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <ucontext.h>
#include <unistd.h>
#include <vector>

struct emu_dim3 {
    unsigned x, y, z;
};
struct alignas(16) int4 {
    int x, y, z, w;
};
struct alignas(8) int2 {
    int x, y;
};
inline int4 make_int4(int a, int b, int c, int d) { return int4{a, b, c, d}; }
inline int2 make_int2(int a, int b) { return int2{a, b}; }

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __noinline__ __attribute__((noinline))
#define __restrict__ __restrict
#define __launch_bounds__(...)
#define __shared__ static

namespace emu {
struct Fiber {
    ucontext_t ctx;
    emu_dim3 tid;
    bool done;
    std::vector<char> stack;
};
struct Bar {
    int count = 0;
    unsigned gen = 0;
};
inline emu_dim3 g_blockIdx, g_blockDim, g_gridDim;
inline std::vector<Fiber*> fibers;
inline int cur = -1;
inline ucontext_t sched_ctx;
inline std::function<void()> body;
inline std::vector<Bar> warp_bars;
inline Bar block_bar;
inline std::vector<uint64_t> warp_buf;
inline unsigned long long switches = 0;

inline void yield()
{
    ++switches;
    swapcontext(&fibers[cur]->ctx, &sched_ctx);
}
inline void barrier(Bar& b, int size)
{
    const unsigned g = b.gen;
    if (++b.count == size) {
        b.count = 0;
        b.gen++;
    } else {
        while (b.gen == g) yield();
    }
}
inline int tid() { return (int)fibers[cur]->tid.x; }
inline void check_mask(unsigned m)
{
    if (m != 0xffffffffu) {
        fprintf(stderr, "emu: only full-mask warp collectives are supported\n");
        abort();
    }
}
// every lane deposits v; returns the warp's 32 values (valid until release())
inline const uint64_t* gather(uint64_t v)
{
    const int w = tid() >> 5, l = tid() & 31;
    warp_buf[w * 32 + l] = v;
    barrier(warp_bars[w], 32);
    return &warp_buf[w * 32];
}
inline void release() { barrier(warp_bars[tid() >> 5], 32); }

inline void entry()
{
    body();
    fibers[cur]->done = true;
}

inline void run_block(unsigned b, unsigned block)
{
    if (block % 32 != 0 || block == 0 || block > 1024) {
        fprintf(stderr, "emu: block size %u unsupported\n", block);
        abort();
    }
    g_blockIdx = {b, 0, 0};
    warp_bars.assign(block / 32, Bar{});
    warp_buf.assign(block, 0);
    block_bar = Bar{};
    if (fibers.size() != block) {
        for (Fiber* f : fibers) delete f;
        fibers.clear();
        for (unsigned t = 0; t < block; ++t) {
            Fiber* f = new Fiber();
            f->stack.resize(64 * 1024);
            fibers.push_back(f);
        }
    }
    for (unsigned t = 0; t < block; ++t) {
        Fiber* f = fibers[t];
        f->tid = {t, 0, 0};
        f->done = false;
        getcontext(&f->ctx);
        f->ctx.uc_stack.ss_sp = f->stack.data();
        f->ctx.uc_stack.ss_size = f->stack.size();
        f->ctx.uc_link = &sched_ctx;
        makecontext(&f->ctx, entry, 0);
    }
    unsigned remaining = block;
    while (remaining) {
        for (unsigned t = 0; t < block; ++t) {
            if (fibers[t]->done) continue;
            cur = (int)t;
            swapcontext(&sched_ctx, &fibers[t]->ctx);
            if (fibers[t]->done) --remaining;
        }
        // a fiber that finished while others wait at a barrier it never reaches = deadlock
        if (remaining && remaining < block) {
            bool any_waiting_block = block_bar.count > 0;
            if (any_waiting_block && (unsigned)block_bar.count == remaining) {
                // all live threads wait at __syncthreads that exited threads never reach
                fprintf(stderr, "emu: __syncthreads not reached by exited threads (block %u)\n", b);
                abort();
            }
        }
    }
    cur = -1;
}

template <class K, class... Args>
void launch(K k, unsigned grid, unsigned block, Args... args)
{
    g_gridDim = {grid, 1, 1};
    g_blockDim = {block, 1, 1};
    body = [=]() { k(args...); };
    for (unsigned b = 0; b < grid; ++b) run_block(b, block);
}

// Blocks spread over `procs` forked processes running at the same time (block b in process
// b % procs). Needed when blocks wait for each other. Device memory must come from dev_alloc.
template <class K, class... Args>
void launch_concurrent(int procs, K k, unsigned grid, unsigned block, Args... args)
{
    g_gridDim = {grid, 1, 1};
    g_blockDim = {block, 1, 1};
    body = [=]() { k(args...); };
    fflush(stdout);
    fflush(stderr);
    std::vector<pid_t> kids;
    for (int p = 0; p < procs; ++p) {
        const pid_t pid = fork();
        if (pid == 0) {
            for (unsigned b = (unsigned)p; b < grid; b += (unsigned)procs) run_block(b, block);
            fflush(stdout);
            _exit(0);
        }
        kids.push_back(pid);
    }
    for (pid_t pid : kids) {
        int st = 0;
        waitpid(pid, &st, 0);
        if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
            fprintf(stderr, "emu: a block process failed\n");
            abort();
        }
    }
}

template <class T> T* dev_alloc(size_t count)
{
    void* p = mmap(nullptr, count * sizeof(T) + 64, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS,
                   -1, 0);
    if (p == MAP_FAILED) abort();
    return (T*)p;
}
} // namespace emu

#define threadIdx (emu::fibers[emu::cur]->tid)
#define blockIdx (emu::g_blockIdx)
#define blockDim (emu::g_blockDim)
#define gridDim (emu::g_gridDim)

inline void __syncthreads() { emu::barrier(emu::block_bar, (int)emu::g_blockDim.x); }
inline void __syncwarp(unsigned m = 0xffffffffu)
{
    emu::check_mask(m);
    emu::barrier(emu::warp_bars[emu::tid() >> 5], 32);
}
template <class T> T emu_shfl_idx(unsigned m, T v, int src)
{
    emu::check_mask(m);
    uint64_t b = 0;
    memcpy(&b, &v, sizeof(T));
    const uint64_t* all = emu::gather(b);
    const uint64_t r = all[src];
    emu::release();
    T o;
    memcpy(&o, &r, sizeof(T));
    return o;
}
template <class T> T __shfl_sync(unsigned m, T v, int src) { return emu_shfl_idx(m, v, src & 31); }
template <class T> T __shfl_up_sync(unsigned m, T v, unsigned d)
{
    const int l = emu::tid() & 31;
    return emu_shfl_idx(m, v, l - (int)d >= 0 ? l - (int)d : l);
}
template <class T> T __shfl_down_sync(unsigned m, T v, unsigned d)
{
    const int l = emu::tid() & 31;
    return emu_shfl_idx(m, v, l + (int)d < 32 ? l + (int)d : l);
}
template <class T> T __shfl_xor_sync(unsigned m, T v, int mask)
{
    return emu_shfl_idx(m, v, (emu::tid() & 31) ^ (mask & 31));
}
inline unsigned __ballot_sync(unsigned m, int pred)
{
    emu::check_mask(m);
    const uint64_t* all = emu::gather(pred ? 1 : 0);
    unsigned r = 0;
    for (int i = 0; i < 32; ++i) r |= (all[i] ? 1u : 0u) << i;
    emu::release();
    return r;
}
inline int __any_sync(unsigned m, int pred) { return __ballot_sync(m, pred) != 0u; }
inline int __all_sync(unsigned m, int pred) { return __ballot_sync(m, pred) == 0xffffffffu; }
inline unsigned __reduce_add_sync(unsigned m, unsigned v)
{
    emu::check_mask(m);
    const uint64_t* all = emu::gather(v);
    unsigned r = 0;
    for (int i = 0; i < 32; ++i) r += (unsigned)all[i];
    emu::release();
    return r;
}
inline unsigned __float_as_uint(float f)
{
    unsigned u;
    memcpy(&u, &f, 4);
    return u;
}
inline float __uint_as_float(unsigned u)
{
    float f;
    memcpy(&f, &u, 4);
    return f;
}
inline float rsqrtf(float x) { return 1.0f / sqrtf(x); }
inline int __popc(unsigned v) { return __builtin_popcount(v); }
inline int __ffs(unsigned v) { return __builtin_ffs((int)v); }
template <class T> T __ldg(const T* p) { return *p; }
inline void __threadfence() { __atomic_thread_fence(__ATOMIC_SEQ_CST); }
[[noreturn]] inline void __trap()
{
    fprintf(stderr, "emu: __trap()\n");
    abort();
}
inline unsigned atomicAdd(unsigned* p, unsigned v) { return __atomic_fetch_add(p, v, __ATOMIC_SEQ_CST); }
inline int atomicAdd(int* p, int v) { return __atomic_fetch_add(p, v, __ATOMIC_SEQ_CST); }
inline unsigned long long atomicAdd(unsigned long long* p, unsigned long long v)
{
    return __atomic_fetch_add(p, v, __ATOMIC_SEQ_CST);
}
inline unsigned long long atomicExch(unsigned long long* p, unsigned long long v)
{
    return __atomic_exchange_n(p, v, __ATOMIC_SEQ_CST);
}
inline unsigned long long atomicMin(unsigned long long* p, unsigned long long v)
{
    unsigned long long old = __atomic_load_n(p, __ATOMIC_SEQ_CST);
    while (v < old && !__atomic_compare_exchange_n(p, &old, v, false, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST)) {
    }
    return old;
}
// CUDA's min/max overloads (device functions there; the same-type overloads are enough here).
#define RDB_EMU_MINMAX(T)                                                                          \
    inline T min(T a, T b) { return b < a ? b : a; }                                               \
    inline T max(T a, T b) { return a < b ? b : a; }
RDB_EMU_MINMAX(int)
RDB_EMU_MINMAX(unsigned)
RDB_EMU_MINMAX(long long)
RDB_EMU_MINMAX(unsigned long long)
RDB_EMU_MINMAX(float)
RDB_EMU_MINMAX(double)
#undef RDB_EMU_MINMAX
