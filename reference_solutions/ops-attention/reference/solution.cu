// ops-attention reference: flash-attention's schedule on the tensor cores (mma.sync m16n8k16,
// bf16 operands, f32 accumulators), with an online softmax.
//
// A block of 4 warps owns 64 consecutive query rows of one head (16 per warp); their q tile is
// staged in shared memory once and kept as MMA fragments in registers. The block walks the
// key/value tiles of 64 rows up to its diagonal, staging each in shared memory (zero past s).
// Per tile each warp computes its 16 x 64 block of scores S = q k^T / 8 with 32 MMAs, masks keys
// after the query (and past s) to -inf, folds the tile into a running row max and row sum
// (rescaling its output accumulators by exp(old max - new max) when the max grows), then turns
// the probabilities into bf16 A fragments in registers (the score accumulators' layout is the A
// operand's, so nothing goes through memory) and accumulates P v with 32 more MMAs. Rows are
// divided by their sums at the end. Each k and v element is loaded once per 64 queries.
//
// The MMA is PTX inline assembly on the GPU; the CPU emulator (no __CUDA_ARCH__) runs a model of
// it computed from the documented fragment layout, so everything but the instruction itself is
// tested on the CPU. Must match launch.toml: THREADS = 128 (4 warps x 16 rows = TILE = 64).

#define D 64
#define TILE 64
#define THREADS 128
#define PAD 8
#define FULL 0xffffffffu
#define NEG_INF __uint_as_float(0xff800000u) // -infinity

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
attention_mma(const unsigned short* __restrict__ q, const unsigned short* __restrict__ k,
              const unsigned short* __restrict__ v, unsigned short* __restrict__ o, long long bh, long long s)
{
    __shared__ unsigned short qs[TILE][D + PAD];
    __shared__ unsigned short ks[TILE][D + PAD];
    __shared__ unsigned short vs[TILE][D + PAD];
    const long long tiles = (s + TILE - 1) / TILE;
    const long long head = blockIdx.x / tiles;
    const long long i0 = (long long)(blockIdx.x % tiles) * TILE;
    if (head >= bh) return; // whole block
    const int tid = (int)threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const int g = lane >> 2, t = lane & 3;
    const long long base = head * s * D;

    for (int e = tid; e < TILE * D; e += THREADS) {
        const int r = e / D, c = e % D;
        qs[r][c] = i0 + r < s ? q[base + (i0 + r) * D + c] : (unsigned short)0;
    }
    __syncthreads();
    // The warp's 16 query rows as A fragments, one per 16-wide slice of d.
    unsigned int qf[4][4];
    for (int kk = 0; kk < 4; ++kk) {
        const unsigned short* r0 = qs[warp * 16 + g] + kk * 16 + 2 * t;
        const unsigned short* r8 = qs[warp * 16 + g + 8] + kk * 16 + 2 * t;
        qf[kk][0] = pack(r0[0], r0[1]);
        qf[kk][1] = pack(r8[0], r8[1]);
        qf[kk][2] = pack(r0[8], r0[9]);
        qf[kk][3] = pack(r8[8], r8[9]);
    }
    // This lane's two rows (g and g + 8 of the warp's 16): running max, partial sum, outputs.
    const long long row[2] = {i0 + warp * 16 + g, i0 + warp * 16 + g + 8};
    float mx[2] = {NEG_INF, NEG_INF}, sum[2] = {0.0f, 0.0f};
    float acc[8][4];
    for (int dt = 0; dt < 8; ++dt)
        for (int c = 0; c < 4; ++c) acc[dt][c] = 0.0f;

    for (long long j0 = 0; j0 <= i0; j0 += TILE) { // causal: tiles up to the diagonal one
        __syncthreads(); // the previous tile is no longer read
        for (int e = tid; e < TILE * D; e += THREADS) {
            const int r = e / D, c = e % D;
            const bool in = j0 + r < s;
            ks[r][c] = in ? k[base + (j0 + r) * D + c] : (unsigned short)0;
            vs[r][c] = in ? v[base + (j0 + r) * D + c] : (unsigned short)0;
        }
        __syncthreads();
        float sc[8][4]; // scores of 8 groups of 8 keys: [key group][c], rows g (c < 2) and g + 8
        for (int nt = 0; nt < 8; ++nt) {
            for (int c = 0; c < 4; ++c) sc[nt][c] = 0.0f;
            for (int kk = 0; kk < 4; ++kk) {
                const unsigned short* kr = ks[nt * 8 + g] + kk * 16 + 2 * t;
                const unsigned int kb[2] = {pack(kr[0], kr[1]), pack(kr[8], kr[9])};
                mma_16x8x16(sc[nt], qf[kk], kb);
            }
            for (int c = 0; c < 4; ++c) {
                const long long key = j0 + nt * 8 + 2 * t + (c & 1);
                sc[nt][c] = (key <= row[c >> 1] && key < s) ? sc[nt][c] * 0.125f : NEG_INF; // 1 / sqrt(64)
            }
        }
        // Key j0 <= i0 <= row is never masked, so every row's tile max is finite.
        for (int h = 0; h < 2; ++h) {
            float m = NEG_INF;
            for (int nt = 0; nt < 8; ++nt) m = fmaxf(m, fmaxf(sc[nt][2 * h], sc[nt][2 * h + 1]));
            m = fmaxf(m, __shfl_xor_sync(FULL, m, 1)); // the 4 lanes that share the row
            m = fmaxf(m, __shfl_xor_sync(FULL, m, 2));
            const float nm = fmaxf(mx[h], m);
            const float rescale = expf(mx[h] - nm); // 0 on the first tile (mx = -inf)
            sum[h] *= rescale;
            for (int dt = 0; dt < 8; ++dt) {
                acc[dt][2 * h] *= rescale;
                acc[dt][2 * h + 1] *= rescale;
            }
            mx[h] = nm;
        }
        for (int nt = 0; nt < 8; ++nt)
            for (int c = 0; c < 4; ++c) {
                const float p = expf(sc[nt][c] - mx[c >> 1]);
                sum[c >> 1] += p;
                sc[nt][c] = p;
            }
        // P (16 x 64, bf16) times the tile of v (64 x 64), 16 keys at a time.
        for (int kb = 0; kb < 4; ++kb) {
            const float* p0 = sc[2 * kb];
            const float* p1 = sc[2 * kb + 1];
            const unsigned int pa[4] = {pack(f32_to_bf16(p0[0]), f32_to_bf16(p0[1])),
                                        pack(f32_to_bf16(p0[2]), f32_to_bf16(p0[3])),
                                        pack(f32_to_bf16(p1[0]), f32_to_bf16(p1[1])),
                                        pack(f32_to_bf16(p1[2]), f32_to_bf16(p1[3]))};
            const int key = kb * 16 + 2 * t;
            for (int dt = 0; dt < 8; ++dt) {
                const int col = dt * 8 + g;
                const unsigned int vb[2] = {pack(vs[key][col], vs[key + 1][col]),
                                            pack(vs[key + 8][col], vs[key + 9][col])};
                mma_16x8x16(acc[dt], pa, vb);
            }
        }
    }
    for (int h = 0; h < 2; ++h) { // the row sums: the 4 lanes' parts
        sum[h] += __shfl_xor_sync(FULL, sum[h], 1);
        sum[h] += __shfl_xor_sync(FULL, sum[h], 2);
    }
    for (int dt = 0; dt < 8; ++dt)
        for (int c = 0; c < 4; ++c) {
            const long long r = row[c >> 1];
            if (r < s) o[base + r * D + dt * 8 + 2 * t + (c & 1)] = f32_to_bf16(acc[dt][c] / sum[c >> 1]);
        }
}
