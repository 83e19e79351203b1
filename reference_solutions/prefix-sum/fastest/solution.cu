// prefix-sum: fastest known solution, single-pass scan with decoupled look-back
// (Merrill & Garland, "Single-pass Parallel Prefix Scan with Decoupled Look-back", 2016).
//
// y[i] = sum_{j<=i} x[j] * p_j, p_j = 1 iff an odd number of x[0..j) are positive.
//
// Aggregate of a segment: g = (f, s0, s1), f = parity of its positives, s_q = sum of x[j]*p_j
// over it when the parity coming in is q. (A then B) = (A.f ^ B.f, A.s0 + (A.f ? B.s1 : B.s0),
// A.s1 + (A.f ? B.s0 : B.s1)); a state (P, C) after g is (P ^ g.f, C + (P ? g.s1 : g.s0)).
//
// One launch, grid = tiles of TILE = 8192, block 256. Each block:
//   1. takes the next tile id from an atomic counter (zeroed scratch), so tile t is only ever
//      waited on by tiles that started later: no deadlock whatever the block scheduling order;
//   2. loads its tile into registers (8 int4 per thread, coalesced), computes per-warp aggregates
//      and the tile aggregate;
//   3. publishes its tile status word: AGGREGATE(f, s0, s1), or for tile 0 directly PREFIX;
//   4. warp 0 looks back over windows of 32 predecessors (volatile 64-bit loads, spinning while
//      any is still INVALID), composes aggregates up to the nearest PREFIX, then publishes
//      PREFIX(parity, sum) of its own inclusive state;
//   5. all warps rescan their segment from the tile's incoming state and store y (int4).
// Memory traffic: x read once, y written once (800 MB at n = 1e8) plus ~0.1 MB of status words.
//
// Status word (u64, one per tile, zero = INVALID):
//   bits 63..62 status: 0 invalid, 1 aggregate, 2 prefix
//   aggregate: bit 0 f, bits 1..21 s0 (21-bit two's complement), bits 22..42 s1 (21-bit)
//   prefix:    bit 0 parity, bits 1..32 sum (32-bit, wraps like int32)
// The 21-bit fields hold any tile sum since |x| <= 10 in this task: |s| <= 10 * 8192 < 2^20.
// Published with one 64-bit atomicExch after __threadfence, so a reader sees a whole word.
// Must match launch.toml: BLOCK = 256, TILE = 8192; scratch tile_status (u64, tiles, zero) and
// tile_counter (u32, 1, zero).

#define BLOCK 256
#define WARPS (BLOCK / 32)
#define CHUNKS 8
#define WARP_SEG (CHUNKS * 128)
#define TILE (WARPS * WARP_SEG) /* 8192 */
#define FULL 0xffffffffu

#define ST_INVALID 0ull
#define ST_AGGREGATE 1ull
#define ST_PREFIX 2ull

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

__device__ __forceinline__ unsigned long long pack_aggregate(const Agg& g)
{
    return (ST_AGGREGATE << 62) | ((unsigned long long)(g.s1 & 0x1FFFFFu) << 22) |
           ((unsigned long long)(g.s0 & 0x1FFFFFu) << 1) | (unsigned long long)(g.f & 1u);
}

__device__ __forceinline__ unsigned long long pack_prefix(unsigned parity, unsigned sum)
{
    return (ST_PREFIX << 62) | ((unsigned long long)sum << 1) | (unsigned long long)(parity & 1u);
}

__device__ __forceinline__ unsigned sext21(unsigned u) { return (u ^ 0x100000u) - 0x100000u; }

// A status word as an aggregate. A PREFIX (P, C) becomes (P, C, C): placed first in a composition
// and read back through .f and .s0 (incoming parity 0 at the start of the array) it is exact.
__device__ __forceinline__ Agg unpack(unsigned long long w)
{
    Agg g;
    g.f = (unsigned)(w & 1ull);
    if ((w >> 62) == ST_PREFIX) {
        g.s0 = (unsigned)(w >> 1);
        g.s1 = g.s0;
    } else {
        g.s0 = sext21((unsigned)(w >> 1) & 0x1FFFFFu);
        g.s1 = sext21((unsigned)(w >> 22) & 0x1FFFFFu);
    }
    return g;
}

__device__ __forceinline__ void publish(unsigned long long* tile_status, unsigned tile,
                                        unsigned long long w)
{
    __threadfence();
    atomicExch(tile_status + tile, w);
}

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

// Aggregate of the warp's segment (incoming parity 0), in every lane. All 32 lanes must call it.
__device__ __forceinline__ Agg warp_segment_aggregate(const int4 (&v)[CHUNKS], int lane)
{
    const unsigned lt = (1u << lane) - 1u;
    unsigned P = 0u, accA = 0u, accX = 0u;
#pragma unroll
    for (int k = 0; k < CHUNKS; ++k) {
        unsigned f = pos(v[k].x);
        unsigned a = f ? (unsigned)v[k].y : 0u;
        f ^= pos(v[k].y);
        a += f ? (unsigned)v[k].z : 0u;
        f ^= pos(v[k].z);
        a += f ? (unsigned)v[k].w : 0u;
        f ^= pos(v[k].w);
        const unsigned t = (unsigned)v[k].x + (unsigned)v[k].y + (unsigned)v[k].z + (unsigned)v[k].w;
        const unsigned bal = __ballot_sync(FULL, f != 0u);
        const unsigned e = P ^ (__popc(bal & lt) & 1u);
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

extern "C" __global__ void scan_lookback(const int* x, long long n, unsigned long long* tile_status,
                                         unsigned int* tile_counter, int* y)
{
    __shared__ unsigned s_tile;
    __shared__ unsigned s_f[WARPS], s_0[WARPS], s_1[WARPS];
    __shared__ unsigned s_inP, s_inC;
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;

    if (threadIdx.x == 0) s_tile = atomicAdd(tile_counter, 1u);
    __syncthreads();
    const unsigned tile = s_tile; // 0 .. gridDim.x-1, in the order blocks started
    const long long tile_start = (long long)tile * TILE;
    const bool vec = tile_start + TILE <= n && ((unsigned long long)x & 15ull) == 0ull &&
                     ((unsigned long long)y & 15ull) == 0ull;
    const long long seg = tile_start + (long long)warp * WARP_SEG;

    int4 v[CHUNKS];
    load_segment(x, n, seg, vec, lane, v);
    {
        const Agg g = warp_segment_aggregate(v, lane);
        if (lane == 0) {
            s_f[warp] = g.f;
            s_0[warp] = g.s0;
            s_1[warp] = g.s1;
        }
    }
    __syncthreads();

    if (warp == 0) {
        Agg G = agg_identity(); // tile aggregate (same in every lane)
        for (int w = 0; w < WARPS; ++w) {
            Agg b;
            b.f = s_f[w];
            b.s0 = s_0[w];
            b.s1 = s_1[w];
            G = agg_compose(G, b);
        }
        unsigned inP = 0u, inC = 0u;
        if (tile == 0u) {
            if (lane == 0) publish(tile_status, tile, pack_prefix(G.f, G.s0));
        } else {
            if (lane == 0) publish(tile_status, tile, pack_aggregate(G));
            // Look back: lane l examines tile pred - l. acc = composition of the tiles between
            // the current window and this tile. Indices < 0 read as PREFIX(0, 0), the state
            // before tile 0 (never reached in practice: tile 0 only ever publishes PREFIX).
            Agg acc = agg_identity();
            long long pred = (long long)tile - 1;
            while (true) {
                const long long j = pred - lane;
                unsigned long long w;
                do {
                    w = j >= 0 ? *((volatile unsigned long long*)(tile_status + j))
                               : (ST_PREFIX << 62);
                } while (__any_sync(FULL, (w >> 62) == ST_INVALID));
                const unsigned is_prefix = __ballot_sync(FULL, (w >> 62) == ST_PREFIX);
                const int last = is_prefix ? __ffs(is_prefix) - 1 : 31; // nearest prefix
                Agg a = lane <= last ? unpack(w) : agg_identity();
                // Reduce in sequence order: a higher lane is an earlier tile. After the step
                // with distance d, lane l holds the composition of lanes l+2d-1 .. l.
#pragma unroll
                for (int d = 1; d < 32; d <<= 1) {
                    Agg o;
                    o.f = __shfl_down_sync(FULL, a.f, d);
                    o.s0 = __shfl_down_sync(FULL, a.s0, d);
                    o.s1 = __shfl_down_sync(FULL, a.s1, d);
                    if (lane + d < 32) a = agg_compose(o, a);
                }
                Agg window;
                window.f = __shfl_sync(FULL, a.f, 0);
                window.s0 = __shfl_sync(FULL, a.s0, 0);
                window.s1 = __shfl_sync(FULL, a.s1, 0);
                acc = agg_compose(window, acc);
                if (is_prefix) break;
                pred -= 32;
            }
            inP = acc.f;
            inC = acc.s0;
            if (lane == 0)
                publish(tile_status, tile, pack_prefix(inP ^ G.f, inC + (inP ? G.s1 : G.s0)));
        }
        if (lane == 0) {
            s_inP = inP;
            s_inC = inC;
        }
    }
    __syncthreads();

    // state before this warp's segment: the tile's incoming state, then the earlier warps
    unsigned P = s_inP, C = s_inC;
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
