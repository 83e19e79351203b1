// prefix-sum: reference solution (classic reduce-then-scan, 3 launches).
//
// y[i] = sum_{j<=i} x[j] * p_j, p_j = 1 iff an odd number of x[0..j) are positive.
//
// Key idea: fuse the parity scan and the sum scan into one scan over the aggregate
//   g = (f, s0, s1): f = parity of the positives in a segment, s_q = sum of x[j]*p_j over the
//   segment when the parity coming into it is q (s1 = segment total - s0).
// Composition (A then B) = (A.f ^ B.f, A.s0 + (A.f ? B.s1 : B.s0), A.s1 + (A.f ? B.s0 : B.s1)).
// Applying g to a state (parity P, sum C) gives (P ^ g.f, C + (P ? g.s1 : g.s0)).
//
//   1. tile_reduce    grid = tiles, block 256: aggregate per tile of TILE = 8192 -> tile_agg
//   2. tile_scan      grid = 1, block 1024: exclusive scan of tile aggregates -> tile_carry
//   3. tile_downsweep grid = tiles, block 256: rescans each tile from its carry, writes y
//
// Inside a tile, warp w owns the 1024 consecutive elements [w*1024, (w+1)*1024), read as CHUNKS = 8
// chunks of 128; in chunk k lane l holds the 4 consecutive elements at k*128 + 4*l (one coalesced
// int4 load per lane). The parity across lanes comes from a ballot (popc of the lower lanes'
// flips), the sums from warp shuffles. Memory traffic: x read twice, y written once (1.2 GB at
// n = 1e8). Correct for any n >= 1: a partial last tile (or a misaligned pointer) takes a scalar,
// bounds-checked path, with zeros (neutral: not positive, add nothing) past the end.
// Must match launch.toml: BLOCK = 256, TILE = 8192, SCAN_BLOCK = 1024.

#define BLOCK 256
#define WARPS (BLOCK / 32)
#define CHUNKS 8
#define WARP_SEG (CHUNKS * 128)
#define TILE (WARPS * WARP_SEG) /* 8192 */
#define SCAN_BLOCK 1024
#define FULL 0xffffffffu

struct Agg {
    unsigned f, s0, s1;
};

__device__ __forceinline__ Agg agg_identity()
{
    Agg a;
    a.f = 0u;
    a.s0 = 0u;
    a.s1 = 0u;
    return a;
}

// a then b
__device__ __forceinline__ Agg agg_compose(const Agg& a, const Agg& b)
{
    Agg r;
    r.f = a.f ^ b.f;
    r.s0 = a.s0 + (a.f ? b.s1 : b.s0);
    r.s1 = a.s1 + (a.f ? b.s0 : b.s1);
    return r;
}

__device__ __forceinline__ unsigned pos(int v) { return v > 0 ? 1u : 0u; }

// Loads this lane's CHUNKS int4 of warp segment `seg` (element index of the segment's first
// element). Vector path only when the whole tile is in range and the pointer is 16-byte aligned.
__device__ __forceinline__ void load_segment(const int* x, long long n, long long seg, bool vec,
                                             int lane, int4 (&v)[CHUNKS])
{
    if (vec) {
        const int4* x4 = reinterpret_cast<const int4*>(x + seg);
#pragma unroll
        for (int k = 0; k < CHUNKS; ++k) v[k] = __ldg(x4 + k * 32 + lane);
    } else {
#pragma unroll
        for (int k = 0; k < CHUNKS; ++k) {
            const long long e = seg + k * 128 + lane * 4;
            v[k].x = e < n ? x[e] : 0;
            v[k].y = e + 1 < n ? x[e + 1] : 0;
            v[k].z = e + 2 < n ? x[e + 2] : 0;
            v[k].w = e + 3 < n ? x[e + 3] : 0;
        }
    }
}

// Aggregate of the warp's segment (as if the parity coming into the segment were 0), returned
// in every lane. All 32 lanes must call it.
__device__ __forceinline__ Agg warp_segment_aggregate(const int4 (&v)[CHUNKS], int lane)
{
    const unsigned lt = (1u << lane) - 1u;
    unsigned P = 0u;        // parity before the chunk (warp-uniform)
    unsigned accA = 0u;     // this lane's contributions with segment parity 0
    unsigned accX = 0u;     // this lane's plain sum
#pragma unroll
    for (int k = 0; k < CHUNKS; ++k) {
        // lane-local, incoming parity 0: a = sum of the elements preceded by an odd count
        unsigned f = pos(v[k].x);
        unsigned a = f ? (unsigned)v[k].y : 0u;
        f ^= pos(v[k].y);
        a += f ? (unsigned)v[k].z : 0u;
        f ^= pos(v[k].z);
        a += f ? (unsigned)v[k].w : 0u;
        f ^= pos(v[k].w);
        const unsigned t = (unsigned)v[k].x + (unsigned)v[k].y + (unsigned)v[k].z + (unsigned)v[k].w;
        const unsigned bal = __ballot_sync(FULL, f != 0u);
        const unsigned e = P ^ (__popc(bal & lt) & 1u); // parity coming into this lane's 4
        accA += e ? t - a : a;
        accX += t;
        P ^= __popc(bal) & 1u;
    }
    Agg g;
    g.f = P;
    g.s0 = __reduce_add_sync(FULL, accA);
    g.s1 = __reduce_add_sync(FULL, accX) - g.s0;
    return g;
}

extern "C" __global__ void tile_reduce(const int* x, long long n, int* tile_agg)
{
    __shared__ unsigned s_f[WARPS], s_0[WARPS], s_1[WARPS];
    const long long tile = blockIdx.x;
    const long long tile_start = tile * TILE;
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const bool vec = tile_start + TILE <= n && ((unsigned long long)x & 15ull) == 0ull;

    int4 v[CHUNKS];
    load_segment(x, n, tile_start + (long long)warp * WARP_SEG, vec, lane, v);
    const Agg g = warp_segment_aggregate(v, lane);
    if (lane == 0) {
        s_f[warp] = g.f;
        s_0[warp] = g.s0;
        s_1[warp] = g.s1;
    }
    __syncthreads();
    if (threadIdx.x == 0) {
        Agg t = agg_identity();
        for (int w = 0; w < WARPS; ++w) {
            Agg b;
            b.f = s_f[w];
            b.s0 = s_0[w];
            b.s1 = s_1[w];
            t = agg_compose(t, b);
        }
        reinterpret_cast<int4*>(tile_agg)[tile] = make_int4((int)t.f, (int)t.s0, (int)t.s1, 0);
    }
}

// Inclusive scan of Agg over the warp (lane order = sequence order).
__device__ __forceinline__ Agg warp_scan_agg(Agg g, int lane)
{
#pragma unroll
    for (int d = 1; d < 32; d <<= 1) {
        Agg u;
        u.f = __shfl_up_sync(FULL, g.f, d);
        u.s0 = __shfl_up_sync(FULL, g.s0, d);
        u.s1 = __shfl_up_sync(FULL, g.s1, d);
        if (lane >= d) g = agg_compose(u, g);
    }
    return g;
}

__device__ __forceinline__ Agg shfl_agg(const Agg& g, int src)
{
    Agg r;
    r.f = __shfl_sync(FULL, g.f, src);
    r.s0 = __shfl_sync(FULL, g.s0, src);
    r.s1 = __shfl_sync(FULL, g.s1, src);
    return r;
}

// One block of SCAN_BLOCK = 1024 threads (32 warps). Chunks of 1024 tiles; tile_carry[2t] = parity
// before tile t, tile_carry[2t+1] = y[tile_start - 1] (0 for tile 0).
extern "C" __global__ void tile_scan(const int* tile_agg, int* tile_carry, long long num_tiles)
{
    __shared__ unsigned s_f[32], s_0[32], s_1[32];
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    unsigned P = 0u, C = 0u; // state before the chunk (block-uniform)
    for (long long base = 0; base < num_tiles; base += SCAN_BLOCK) {
        const long long t = base + threadIdx.x;
        Agg g = agg_identity();
        if (t < num_tiles) {
            const int4 a = reinterpret_cast<const int4*>(tile_agg)[t];
            g.f = (unsigned)a.x & 1u;
            g.s0 = (unsigned)a.y;
            g.s1 = (unsigned)a.z;
        }
        const Agg incl = warp_scan_agg(g, lane);
        if (lane == 31) {
            s_f[warp] = incl.f;
            s_0[warp] = incl.s0;
            s_1[warp] = incl.s1;
        }
        __syncthreads();
        if (warp == 0) {
            Agg w;
            w.f = s_f[lane];
            w.s0 = s_0[lane];
            w.s1 = s_1[lane];
            w = warp_scan_agg(w, lane);
            s_f[lane] = w.f; // now inclusive over warps
            s_0[lane] = w.s0;
            s_1[lane] = w.s1;
        }
        __syncthreads();
        // exclusive prefix of this thread within the chunk = (warps before) then (lanes before)
        Agg pre = agg_identity();
        if (warp > 0) {
            pre.f = s_f[warp - 1];
            pre.s0 = s_0[warp - 1];
            pre.s1 = s_1[warp - 1];
        }
        Agg lane_ex;
        lane_ex.f = __shfl_up_sync(FULL, incl.f, 1);
        lane_ex.s0 = __shfl_up_sync(FULL, incl.s0, 1);
        lane_ex.s1 = __shfl_up_sync(FULL, incl.s1, 1);
        if (lane == 0) lane_ex = agg_identity();
        pre = agg_compose(pre, lane_ex);
        if (t < num_tiles) {
            reinterpret_cast<int2*>(tile_carry)[t] =
                make_int2((int)(P ^ pre.f), (int)(C + (P ? pre.s1 : pre.s0)));
        }
        const unsigned tf = s_f[31], t0 = s_0[31], t1 = s_1[31];
        C += P ? t1 : t0;
        P ^= tf;
        __syncthreads(); // s_* are rewritten by the next chunk
    }
}

extern "C" __global__ void tile_downsweep(const int* x, long long n, const int* tile_carry, int* y)
{
    __shared__ unsigned s_f[WARPS], s_0[WARPS], s_1[WARPS];
    const long long tile = blockIdx.x;
    const long long tile_start = tile * TILE;
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const bool vec = tile_start + TILE <= n && ((unsigned long long)x & 15ull) == 0ull &&
                     ((unsigned long long)y & 15ull) == 0ull;
    const long long seg = tile_start + (long long)warp * WARP_SEG;

    int4 v[CHUNKS];
    load_segment(x, n, seg, vec, lane, v);
    const Agg g = warp_segment_aggregate(v, lane);
    if (lane == 0) {
        s_f[warp] = g.f;
        s_0[warp] = g.s0;
        s_1[warp] = g.s1;
    }
    __syncthreads();

    // state before this warp's segment: tile carry, then the earlier warps of the tile
    const int2 carry = reinterpret_cast<const int2*>(tile_carry)[tile];
    unsigned P = (unsigned)carry.x & 1u, C = (unsigned)carry.y;
    for (int w = 0; w < warp; ++w) {
        C += P ? s_1[w] : s_0[w];
        P ^= s_f[w];
    }

    const unsigned lt = (1u << lane) - 1u;
#pragma unroll
    for (int k = 0; k < CHUNKS; ++k) {
        const unsigned f = pos(v[k].x) ^ pos(v[k].y) ^ pos(v[k].z) ^ pos(v[k].w);
        const unsigned bal = __ballot_sync(FULL, f != 0u);
        unsigned e = P ^ (__popc(bal & lt) & 1u);
        const unsigned c0 = e ? (unsigned)v[k].x : 0u;
        e ^= pos(v[k].x);
        const unsigned c1 = e ? (unsigned)v[k].y : 0u;
        e ^= pos(v[k].y);
        const unsigned c2 = e ? (unsigned)v[k].z : 0u;
        e ^= pos(v[k].z);
        const unsigned c3 = e ? (unsigned)v[k].w : 0u;
        const unsigned lsum = c0 + c1 + c2 + c3;
        unsigned incl = lsum;
#pragma unroll
        for (int d = 1; d < 32; d <<= 1) {
            const unsigned u = __shfl_up_sync(FULL, incl, d);
            if (lane >= d) incl += u;
        }
        int4 o;
        const unsigned y0 = C + (incl - lsum) + c0;
        o.x = (int)y0;
        o.y = (int)(y0 + c1);
        o.z = (int)(y0 + c1 + c2);
        o.w = (int)(y0 + c1 + c2 + c3);
        const long long e0 = seg + k * 128 + lane * 4;
        if (vec) {
            reinterpret_cast<int4*>(y + seg)[k * 32 + lane] = o;
        } else {
            if (e0 < n) y[e0] = o.x;
            if (e0 + 1 < n) y[e0 + 1] = o.y;
            if (e0 + 2 < n) y[e0 + 2] = o.z;
            if (e0 + 3 < n) y[e0 + 3] = o.w;
        }
        C += __shfl_sync(FULL, incl, 31);
        P ^= __popc(bal) & 1u;
    }
}
