// prefix-sum: starting solution.
//
// y[i] = sum_{j<=i} x[j] * p_j, where p_j = 1 iff an odd number of x[0..j) are positive.
//
// A straightforward first version in two independent scans, each done the textbook way
// (per-tile totals, one block scanning the tile totals, per-tile rescan):
//
//   Scan 1, the parity p:   count_positives   -> tile_count      (positives per tile)
//                           scan_tile_parity  -> tile_parity_in  (parity before each tile)
//                           write_parity      -> par[i] = p_i    (an int per element)
//   Scan 2, masked sums:    masked_tile_sums  -> tile_sum        (sum of x*p per tile)
//                           scan_tile_sums    -> tile_carry      (sum before each tile)
//                           masked_scan_write -> y
//
// A tile is BLOCK threads x ITEMS consecutive elements per thread; the block-level scans are
// Hillis-Steele scans in shared memory. Everything is correct for any n >= 1.
// Must match launch.toml: BLOCK = 256, ITEMS = 8, SCAN_BLOCK = 1024.

#define BLOCK 256
#define ITEMS 8
#define TILE (BLOCK * ITEMS)
#define SCAN_BLOCK 1024

// Inclusive scan over the block of one value per thread (op 0: +, op 1: ^), in shared memory s
// (blockDim.x entries). Every thread of the block must call it. *total gets the block total.
__device__ unsigned block_scan(unsigned v, unsigned* s, int op, unsigned* total)
{
    const int tid = threadIdx.x;
    s[tid] = v;
    __syncthreads();
    for (int d = 1; d < (int)blockDim.x; d <<= 1) {
        const unsigned other = tid >= d ? s[tid - d] : 0u;
        __syncthreads();
        s[tid] = op == 0 ? s[tid] + other : s[tid] ^ other;
        __syncthreads();
    }
    const unsigned r = s[tid];
    *total = s[blockDim.x - 1];
    __syncthreads(); // s may be reused by the caller
    return r;
}

// Sum over the block (tree reduction); the result is valid in thread 0.
__device__ unsigned block_sum(unsigned v, unsigned* s)
{
    const int tid = threadIdx.x;
    s[tid] = v;
    __syncthreads();
    for (int half = BLOCK / 2; half > 0; half >>= 1) {
        if (tid < half) s[tid] += s[tid + half];
        __syncthreads();
    }
    return s[0];
}

extern "C" __global__ void count_positives(const int* x, long long n, int* tile_count)
{
    __shared__ unsigned s[BLOCK];
    const long long tile = blockIdx.x;
    const long long base = tile * TILE + (long long)threadIdx.x * ITEMS;
    unsigned c = 0;
    for (int k = 0; k < ITEMS; ++k) {
        const long long i = base + k;
        if (i < n && x[i] > 0) c++;
    }
    const unsigned total = block_sum(c, s);
    if (threadIdx.x == 0) tile_count[tile] = (int)total;
}

// One block of SCAN_BLOCK threads: exclusive XOR scan of the tile parities.
extern "C" __global__ void scan_tile_parity(const int* tile_count, int* tile_parity_in,
                                            long long num_tiles)
{
    __shared__ unsigned s[SCAN_BLOCK];
    unsigned carry = 0;
    for (long long base = 0; base < num_tiles; base += SCAN_BLOCK) {
        const long long t = base + threadIdx.x;
        const unsigned v = t < num_tiles ? ((unsigned)tile_count[t] & 1u) : 0u;
        unsigned total;
        const unsigned incl = block_scan(v, s, 1, &total);
        if (t < num_tiles) tile_parity_in[t] = (int)(carry ^ incl ^ v);
        carry ^= total;
    }
}

extern "C" __global__ void write_parity(const int* x, long long n, const int* tile_parity_in,
                                        int* par)
{
    __shared__ unsigned s[BLOCK];
    const long long tile = blockIdx.x;
    const long long base = tile * TILE + (long long)threadIdx.x * ITEMS;
    int v[ITEMS];
    unsigned f = 0;
    for (int k = 0; k < ITEMS; ++k) {
        const long long i = base + k;
        v[k] = i < n ? x[i] : 0;
        f ^= v[k] > 0 ? 1u : 0u;
    }
    unsigned total;
    const unsigned incl = block_scan(f, s, 1, &total);
    unsigned p = ((unsigned)tile_parity_in[tile] & 1u) ^ incl ^ f;
    for (int k = 0; k < ITEMS; ++k) {
        const long long i = base + k;
        if (i < n) par[i] = (int)p;
        p ^= v[k] > 0 ? 1u : 0u;
    }
}

extern "C" __global__ void masked_tile_sums(const int* x, const int* par, long long n,
                                            int* tile_sum)
{
    __shared__ unsigned s[BLOCK];
    const long long tile = blockIdx.x;
    const long long base = tile * TILE + (long long)threadIdx.x * ITEMS;
    unsigned sum = 0;
    for (int k = 0; k < ITEMS; ++k) {
        const long long i = base + k;
        if (i < n && par[i]) sum += (unsigned)x[i];
    }
    const unsigned total = block_sum(sum, s);
    if (threadIdx.x == 0) tile_sum[tile] = (int)total;
}

// One block of SCAN_BLOCK threads: exclusive sum scan of the tile sums.
extern "C" __global__ void scan_tile_sums(const int* tile_sum, int* tile_carry, long long num_tiles)
{
    __shared__ unsigned s[SCAN_BLOCK];
    unsigned carry = 0;
    for (long long base = 0; base < num_tiles; base += SCAN_BLOCK) {
        const long long t = base + threadIdx.x;
        const unsigned v = t < num_tiles ? (unsigned)tile_sum[t] : 0u;
        unsigned total;
        const unsigned incl = block_scan(v, s, 0, &total);
        if (t < num_tiles) tile_carry[t] = (int)(carry + incl - v);
        carry += total;
    }
}

extern "C" __global__ void masked_scan_write(const int* x, const int* par, long long n,
                                             const int* tile_carry, int* y)
{
    __shared__ unsigned s[BLOCK];
    const long long tile = blockIdx.x;
    const long long base = tile * TILE + (long long)threadIdx.x * ITEMS;
    unsigned m[ITEMS];
    unsigned sum = 0;
    for (int k = 0; k < ITEMS; ++k) {
        const long long i = base + k;
        m[k] = (i < n && par[i]) ? (unsigned)x[i] : 0u;
        sum += m[k];
    }
    unsigned total;
    const unsigned incl = block_scan(sum, s, 0, &total);
    unsigned run = (unsigned)tile_carry[tile] + incl - sum;
    for (int k = 0; k < ITEMS; ++k) {
        const long long i = base + k;
        run += m[k];
        if (i < n) y[i] = (int)run;
    }
}
