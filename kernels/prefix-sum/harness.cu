// rdbench-prelude: kernels/harness/splitmix64.cu
// rdbench prefix-sum: the scorer's trusted kernels (never timed).
//
// Task: y[i] = sum_{j<=i} x[j] * p_j, p_j = 1 iff an odd number of x[0..j) are > 0 (so y[0] = 0).
// int32 arithmetic with two's-complement wraparound (sums are done in unsigned int here).
//
// Every kernel below uses 64-bit index math and is correct for any n >= 1 (n = 1 included).
// Launch configurations (the Rust scorer launches them exactly so; all on one stream, in order):
//
//   kernel           grid                          block  dynamic shared
//   ps_generate      any >= 1 (grid-stride);       256    0
//                    use min(ceil_div(n,256),65535)
//   ps_ref_tiles     ceil_div(n, 4096)  (=tiles)   256    0   (must be exactly 256: traps otherwise)
//   ps_ref_carry     1                             32     0   (exactly one warp: traps otherwise)
//   ps_ref_finish    ceil_div(n, 4096)  (=tiles)   256    0   (must be exactly 256: traps otherwise)
//
// Scratch for the reference computation (num_tiles = ceil_div(n, 4096) = 24,415 at n = 1e8):
//   tile_flip, tile_sum0, tile_sum1, carry_parity, carry_sum: u32[num_tiles] each, no init needed.
// Poisoning outputs, comparing them with `expected` and checking that the input is unmodified
// are the kit's (kernels/harness/kit.cu), the same for every kernel task.
//
// The reference is a 3-phase computation with tiles of PS_TILE = 4096 elements:
//   1. ps_ref_tiles : per tile, the aggregate (flip, sum0, sum1): flip = parity of the positives in
//                     the tile, sum_q = sum of x[j] * p_j over the tile when the parity coming into
//                     the tile is q.
//   2. ps_ref_carry : one warp, exclusive scan over the tile aggregates -> (carry_parity, carry_sum)
//                     = the parity of positives before the tile and y[tile_start - 1] (0 for tile 0).
//   3. ps_ref_finish: rescans every tile from its carry and writes `expected`.
// Each thread of a tile block walks PS_ITEMS = 16 consecutive elements serially; thread 0 combines
// the 256 per-thread aggregates serially. Slow-ish but simple; a few ms at n = 1e8.
//
// Input generation (the CPU reproduces it exactly; rdbench_splitmix64_at is the prelude's,
// kernels/harness/splitmix64.cu):
//   h = rdbench_splitmix64_at(seed, i) = splitmix64(seed ^ (i * 0xD1B54A32D192ED03)); u = h >> 32  (u32)
//   dist 0: (int)((u * 20) >> 32) - 10          uniform [-10, 10)
//   dist 1: (int)((u * 10) >> 32) + 1           uniform [1, 10]
//   dist 2: -(int)((u * 11) >> 32)              uniform [-10, 0]
//   dist 3: m = (int)((u * 10) >> 32) + 1; i even: m, i odd: -m
//   other : 0

#define PS_TILE 4096
#define PS_BLOCK 256
#define PS_ITEMS 16 /* PS_TILE / PS_BLOCK */
#define PS_FULL_MASK 0xffffffffu

__device__ __forceinline__ int ps_value(unsigned long long seed, unsigned long long i, int dist)
{
    const unsigned long long u = rdbench_splitmix64_at(seed, i) >> 32; // < 2^32, so the products below fit in 64 bits
    switch (dist) {
    case 0: return (int)((u * 20ull) >> 32) - 10;
    case 1: return (int)((u * 10ull) >> 32) + 1;
    case 2: return -(int)((u * 11ull) >> 32);
    case 3: {
        const int m = (int)((u * 10ull) >> 32) + 1;
        return (i & 1ull) ? -m : m;
    }
    default: return 0;
    }
}

extern "C" __global__ void ps_generate(int* x, long long n, unsigned long long seed, int dist)
{
    const long long stride = (long long)gridDim.x * blockDim.x;
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) {
        x[i] = ps_value(seed, (unsigned long long)i, dist);
    }
}

// Per-thread aggregate of PS_ITEMS consecutive elements starting at `base` (elements >= n are
// ignored), stored at [threadIdx.x] of the block's s_f, s_a0, s_a1; every thread of the block
// calls it (it ends in a barrier). Runs the serial definition twice: from incoming parity 0 and
// from incoming parity 1.
__device__ __forceinline__ void ps_thread_aggregate(const int* x, long long n, long long base, unsigned* s_f,
                                                    unsigned* s_a0, unsigned* s_a1)
{
    unsigned p0 = 0u, p1 = 1u, s0 = 0u, s1 = 0u;
    for (int k = 0; k < PS_ITEMS; ++k) {
        const long long i = base + k;
        if (i < n) {
            const int v = x[i];
            if (p0) s0 += (unsigned)v;
            if (p1) s1 += (unsigned)v;
            const unsigned pos = v > 0 ? 1u : 0u;
            p0 ^= pos;
            p1 ^= pos;
        }
    }
    s_f[threadIdx.x] = p0; // started from 0
    s_a0[threadIdx.x] = s0;
    s_a1[threadIdx.x] = s1;
    __syncthreads();
}

extern "C" __global__ void ps_ref_tiles(const int* x, long long n, unsigned int* tile_flip,
                                        unsigned int* tile_sum0, unsigned int* tile_sum1)
{
    __shared__ unsigned s_f[PS_BLOCK];
    __shared__ unsigned s_a0[PS_BLOCK];
    __shared__ unsigned s_a1[PS_BLOCK];
    if (blockDim.x != PS_BLOCK) __trap();
    const long long tile = blockIdx.x;
    const long long tile_start = tile * PS_TILE;
    if (tile_start >= n) return; // whole block: grid larger than the number of tiles

    ps_thread_aggregate(x, n, tile_start + (long long)threadIdx.x * PS_ITEMS, s_f, s_a0, s_a1);
    if (threadIdx.x == 0) {
        // Apply the 256 thread aggregates in order to the states (parity 0, sum 0), (parity 1, sum 0).
        unsigned q0 = 0u, q1 = 1u, t0 = 0u, t1 = 0u;
        for (int t = 0; t < PS_BLOCK; ++t) {
            t0 += q0 ? s_a1[t] : s_a0[t];
            t1 += q1 ? s_a1[t] : s_a0[t];
            q0 ^= s_f[t];
            q1 ^= s_f[t];
        }
        tile_flip[tile] = q0;
        tile_sum0[tile] = t0;
        tile_sum1[tile] = t1;
    }
}

// One block of exactly 32 threads (one warp). Chunks of 32 tiles; inclusive warp scan of the
// aggregate composition (A then B) = (A.f ^ B.f, A.s0 + (A.f ? B.s1 : B.s0),
// A.s1 + (A.f ? B.s0 : B.s1)), then each tile's incoming state is the running state (P, C) with the
// exclusive aggregate applied.
extern "C" __global__ void ps_ref_carry(long long num_tiles, const unsigned int* tile_flip,
                                        const unsigned int* tile_sum0,
                                        const unsigned int* tile_sum1, unsigned int* carry_parity,
                                        unsigned int* carry_sum)
{
    if (blockDim.x != 32 || blockDim.y != 1 || blockDim.z != 1 || gridDim.x != 1) __trap();
    const int lane = (int)threadIdx.x;
    unsigned P = 0u, C = 0u; // state before the current chunk (same in every lane)
    for (long long base = 0; base < num_tiles; base += 32) {
        const long long t = base + lane;
        unsigned f = 0u, a0 = 0u, a1 = 0u; // identity aggregate for lanes past the end
        if (t < num_tiles) {
            f = tile_flip[t] & 1u;
            a0 = tile_sum0[t];
            a1 = tile_sum1[t];
        }
        for (int d = 1; d < 32; d <<= 1) {
            const unsigned uf = __shfl_up_sync(PS_FULL_MASK, f, d);
            const unsigned u0 = __shfl_up_sync(PS_FULL_MASK, a0, d);
            const unsigned u1 = __shfl_up_sync(PS_FULL_MASK, a1, d);
            if (lane >= d) { // (lanes lane-2d+1 .. lane-d) then (lanes lane-d+1 .. lane)
                const unsigned n0 = u0 + (uf ? a1 : a0);
                const unsigned n1 = u1 + (uf ? a0 : a1);
                f ^= uf;
                a0 = n0;
                a1 = n1;
            }
        }
        unsigned ef = __shfl_up_sync(PS_FULL_MASK, f, 1);
        unsigned e0 = __shfl_up_sync(PS_FULL_MASK, a0, 1);
        unsigned e1 = __shfl_up_sync(PS_FULL_MASK, a1, 1);
        if (lane == 0) {
            ef = 0u;
            e0 = 0u;
            e1 = 0u;
        }
        if (t < num_tiles) {
            carry_parity[t] = P ^ ef;
            carry_sum[t] = C + (P ? e1 : e0);
        }
        const unsigned tf = __shfl_sync(PS_FULL_MASK, f, 31);
        const unsigned t0 = __shfl_sync(PS_FULL_MASK, a0, 31);
        const unsigned t1 = __shfl_sync(PS_FULL_MASK, a1, 31);
        C += P ? t1 : t0;
        P ^= tf;
    }
}

extern "C" __global__ void ps_ref_finish(const int* x, long long n, const unsigned int* carry_parity,
                                         const unsigned int* carry_sum, int* expected)
{
    __shared__ unsigned s_f[PS_BLOCK];
    __shared__ unsigned s_a0[PS_BLOCK];
    __shared__ unsigned s_a1[PS_BLOCK];
    __shared__ unsigned s_inP[PS_BLOCK];
    __shared__ unsigned s_inC[PS_BLOCK];
    if (blockDim.x != PS_BLOCK) __trap();
    const long long tile = blockIdx.x;
    const long long tile_start = tile * PS_TILE;
    if (tile_start >= n) return; // whole block
    const long long base = tile_start + (long long)threadIdx.x * PS_ITEMS;

    ps_thread_aggregate(x, n, base, s_f, s_a0, s_a1);
    if (threadIdx.x == 0) {
        unsigned P = carry_parity[tile] & 1u, C = carry_sum[tile];
        for (int t = 0; t < PS_BLOCK; ++t) {
            s_inP[t] = P;
            s_inC[t] = C;
            C += P ? s_a1[t] : s_a0[t];
            P ^= s_f[t];
        }
    }
    __syncthreads();
    unsigned P = s_inP[threadIdx.x], C = s_inC[threadIdx.x];
    for (int k = 0; k < PS_ITEMS; ++k) {
        const long long i = base + k;
        if (i < n) {
            const int v = x[i];
            if (P) C += (unsigned)v;
            expected[i] = (int)C;
            P ^= v > 0 ? 1u : 0u;
        }
    }
}
