// ops-gemm reference: 64 x 64 tiles of C on the tensor cores (mma.sync m16n8k16, bf16 inputs, f32
// accumulators), through shared memory.
//
// A block of 4 warps owns one 64 x 64 tile of C (blocks numbered row-major over the tiles) and
// walks k in steps of 32: it stages a 64 x 32 tile of A and a 32 x 64 tile of B in static shared
// memory (zero past every edge, so any m, n, k works; rows padded by 8 elements against bank
// conflicts). Each warp owns a 32 x 32 quarter of the tile: per 16-deep slice of k it builds the
// fragments of 2 A tiles (16 x 16) and 4 B tiles (16 x 8) from shared memory and issues 8 MMAs
// into 32 f32 accumulators per thread, so each staged element is reused 32 (A) or 64 (B) times.
// Outputs are rounded once to bf16.
//
// The MMA is PTX inline assembly on the GPU. The CPU emulator (no __CUDA_ARCH__) cannot run PTX,
// so there mma_16x8x16 computes the same warp-wide product from the documented fragment layout
// (the warp's fragments exchanged through shared memory): the tiling, staging, fragment indexing
// and edges are then tested on the CPU; only the instruction itself is not. Must match launch.toml: THREADS = 128, TILE = 64.

#define TILE 64
#define BK 32
#define THREADS 128
#define PAD 8
#define FULL 0xffffffffu

__device__ __forceinline__ float bf16_to_f32(unsigned short b) { return __uint_as_float((unsigned int)b << 16); }
__device__ __forceinline__ unsigned short f32_to_bf16(float f)
{
    const unsigned int u = __float_as_uint(f);
    return (unsigned short)((u + 0x7FFFu + ((u >> 16) & 1u)) >> 16);
}
// Two bf16 in one register: the lower k (or column) index in the low half, as PTX expects.
__device__ __forceinline__ unsigned int pack(unsigned short lo, unsigned short hi)
{
    return (unsigned int)lo | ((unsigned int)hi << 16);
}

// d += A (16 x 16, row-major fragment a[4]) x B (16 x 8, column-major fragment b[2]), f32 d[4].
// Lane l, group g = l / 4, t = l % 4 holds: a[0] = A[g][2t, 2t+1], a[1] = A[g+8][2t, 2t+1],
// a[2] = A[g][2t+8, 2t+9], a[3] = A[g+8][2t+8, 2t+9]; b[0] = B[2t, 2t+1][g], b[1] = B[2t+8, 2t+9][g];
// d[0, 1] = D[g][2t, 2t+1], d[2, 3] = D[g+8][2t, 2t+1].
__device__ __forceinline__ void mma_16x8x16(float* d, const unsigned int* a, const unsigned int* b)
{
#if defined(__CUDA_ARCH__)
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 "
                 "{%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, {%0, %1, %2, %3};\n"
                 : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
#else
    // Emulator only: the warp publishes its fragments (one warp-private slot of static shared
    // memory), then each lane rebuilds the 16 x 16 A and 16 x 8 B and computes its four outputs.
    __shared__ unsigned int published[THREADS / 32][32][6];
    const int lane = (int)threadIdx.x & 31, warp = (int)threadIdx.x >> 5;
    for (int r = 0; r < 4; ++r) published[warp][lane][r] = a[r];
    for (int r = 0; r < 2; ++r) published[warp][lane][4 + r] = b[r];
    __syncwarp();
    float A[16][16], B[16][8];
    for (int src = 0; src < 32; ++src) {
        const int sg = src >> 2, st = src & 3;
        const unsigned int* ra = published[warp][src];
        const unsigned int* rb = published[warp][src] + 4;
        for (int h = 0; h < 2; ++h) {
            A[sg][2 * st + h] = bf16_to_f32((unsigned short)(ra[0] >> (16 * h)));
            A[sg + 8][2 * st + h] = bf16_to_f32((unsigned short)(ra[1] >> (16 * h)));
            A[sg][2 * st + 8 + h] = bf16_to_f32((unsigned short)(ra[2] >> (16 * h)));
            A[sg + 8][2 * st + 8 + h] = bf16_to_f32((unsigned short)(ra[3] >> (16 * h)));
            B[2 * st + h][sg] = bf16_to_f32((unsigned short)(rb[0] >> (16 * h)));
            B[2 * st + 8 + h][sg] = bf16_to_f32((unsigned short)(rb[1] >> (16 * h)));
        }
    }
    __syncwarp(); // every lane has read the slot before the next MMA overwrites it
    const int g = lane >> 2, t = lane & 3;
    for (int q = 0; q < 4; ++q) {
        const int row = g + (q >> 1) * 8, col = 2 * t + (q & 1);
        float s = 0.0f;
        for (int p = 0; p < 16; ++p) s += A[row][p] * B[p][col];
        d[q] += s;
    }
#endif
}

extern "C" __global__ void __launch_bounds__(THREADS)
gemm_mma(const unsigned short* __restrict__ a, const unsigned short* __restrict__ b, unsigned short* __restrict__ c,
         long long m, long long n, long long k)
{
    __shared__ unsigned short as[TILE][BK + PAD];
    __shared__ unsigned short bs[BK][TILE + PAD];
    const long long tiles_n = (n + TILE - 1) / TILE;
    const long long row0 = (long long)(blockIdx.x / tiles_n) * TILE;
    const long long col0 = (long long)(blockIdx.x % tiles_n) * TILE;
    if (row0 >= m) return; // whole block
    const int tid = (int)threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const int g = lane >> 2, t = lane & 3;
    const int wr = (warp >> 1) * 32, wc = (warp & 1) * 32; // the warp's quarter of the tile

    float acc[2][4][4];
    for (int i = 0; i < 2; ++i)
        for (int j = 0; j < 4; ++j)
            for (int q = 0; q < 4; ++q) acc[i][j][q] = 0.0f;

    for (long long p0 = 0; p0 < k; p0 += BK) {
        for (int e = tid; e < TILE * BK; e += THREADS) {
            const int r = e / BK, q = e % BK;
            const long long gi = row0 + r, gp = p0 + q;
            as[r][q] = (gi < m && gp < k) ? a[gi * k + gp] : (unsigned short)0;
        }
        for (int e = tid; e < BK * TILE; e += THREADS) {
            const int r = e / TILE, q = e % TILE;
            const long long gp = p0 + r, gj = col0 + q;
            bs[r][q] = (gp < k && gj < n) ? b[gp * n + gj] : (unsigned short)0;
        }
        __syncthreads();
        for (int kk = 0; kk < BK; kk += 16) {
            unsigned int af[2][4], bf[4][2];
            for (int i = 0; i < 2; ++i) {
                const unsigned short* r0 = as[wr + i * 16 + g] + kk + 2 * t;
                const unsigned short* r8 = as[wr + i * 16 + g + 8] + kk + 2 * t;
                af[i][0] = pack(r0[0], r0[1]);
                af[i][1] = pack(r8[0], r8[1]);
                af[i][2] = pack(r0[8], r0[9]);
                af[i][3] = pack(r8[8], r8[9]);
            }
            for (int j = 0; j < 4; ++j) {
                const int col = wc + j * 8 + g, p = kk + 2 * t;
                bf[j][0] = pack(bs[p][col], bs[p + 1][col]);
                bf[j][1] = pack(bs[p + 8][col], bs[p + 9][col]);
            }
            for (int i = 0; i < 2; ++i)
                for (int j = 0; j < 4; ++j) mma_16x8x16(acc[i][j], af[i], bf[j]);
        }
        __syncthreads();
    }
    for (int i = 0; i < 2; ++i)
        for (int j = 0; j < 4; ++j)
            for (int q = 0; q < 4; ++q) {
                const long long row = row0 + wr + i * 16 + g + (q >> 1) * 8;
                const long long col = col0 + wc + j * 8 + 2 * t + (q & 1);
                if (row < m && col < n) c[row * n + col] = f32_to_bf16(acc[i][j][q]);
            }
}
