// ops-attention reference: a tiled attention with an online softmax (flash-attention's
// schedule, on the CUDA cores).
//
// A block of 64 threads owns 64 consecutive query rows of one head, one thread per row, with its
// scaled query and 64 f32 output accumulators in registers. It walks the key/value tiles of 64
// rows up to its diagonal: the block stages the tile of k and v in shared memory as f32
// (coalesced loads), then each thread scores the tile's keys against its query (shared-memory
// broadcasts) in chunks of 8 and folds each chunk into a running (max, sum, accumulators): when
// the max grows, what was accumulated is rescaled by exp(old max - new max). Keys past the
// diagonal (or past s) score -inf and weigh 0. Every k and v element is loaded once per 64
// queries instead of once per query. Must match launch.toml: TILE = 64 (block = TILE threads).

#define D 64
#define TILE 64
#define CHUNK 8
#define NEG_INF __uint_as_float(0xff800000u) // -infinity

__device__ __forceinline__ float bf16_to_f32(unsigned short b) { return __uint_as_float((unsigned int)b << 16); }
__device__ __forceinline__ unsigned short f32_to_bf16(float f)
{
    const unsigned int u = __float_as_uint(f);
    return (unsigned short)((u + 0x7FFFu + ((u >> 16) & 1u)) >> 16);
}

extern "C" __global__ void __launch_bounds__(TILE)
attention_tiled(const unsigned short* __restrict__ q, const unsigned short* __restrict__ k,
                const unsigned short* __restrict__ v, unsigned short* __restrict__ o, long long bh, long long s)
{
    __shared__ float ks[TILE][D];
    __shared__ float vs[TILE][D];
    const long long tiles = (s + TILE - 1) / TILE;
    const long long head = blockIdx.x / tiles;
    const long long i0 = (long long)(blockIdx.x % tiles) * TILE;
    if (head >= bh) return; // whole block
    const int tid = (int)threadIdx.x;
    const long long i = i0 + tid;
    const bool valid = i < s; // threads past s still help stage the tiles
    const long long base = head * s * D;

    float qs[D], acc[D];
    for (int d = 0; d < D; ++d) {
        qs[d] = valid ? bf16_to_f32(q[base + i * D + d]) * 0.125f : 0.0f; // 1 / sqrt(64), exact
        acc[d] = 0.0f;
    }
    float mx = NEG_INF, sum = 0.0f;

    for (long long j0 = 0; j0 <= i0; j0 += TILE) { // causal: tiles up to the diagonal one
        __syncthreads(); // the previous tile is no longer read
        for (int e = tid; e < TILE * D; e += TILE) {
            const int r = e / D, c = e % D;
            const bool in = j0 + r < s;
            ks[r][c] = in ? bf16_to_f32(k[base + (j0 + r) * D + c]) : 0.0f;
            vs[r][c] = in ? bf16_to_f32(v[base + (j0 + r) * D + c]) : 0.0f;
        }
        __syncthreads();
        if (!valid) continue;
        for (int c0 = 0; c0 < TILE; c0 += CHUNK) {
            float sc[CHUNK];
            float cmax = NEG_INF;
            for (int t = 0; t < CHUNK; ++t) {
                const long long j = j0 + c0 + t;
                float dot = 0.0f;
                for (int d = 0; d < D; ++d) dot += qs[d] * ks[c0 + t][d];
                sc[t] = (j <= i) ? dot : NEG_INF; // j <= i < s
                cmax = fmaxf(cmax, sc[t]);
            }
            if (cmax == NEG_INF) continue; // every key of the chunk masked
            const float nmx = fmaxf(mx, cmax);
            const float rescale = expf(mx - nmx); // 0 on the first chunk (mx = -inf)
            sum *= rescale;
            for (int d = 0; d < D; ++d) acc[d] *= rescale;
            for (int t = 0; t < CHUNK; ++t) {
                const float p = expf(sc[t] - nmx);
                sum += p;
                for (int d = 0; d < D; ++d) acc[d] += p * vs[c0 + t][d];
            }
            mx = nmx;
        }
    }
    if (!valid) return;
    const float inv = 1.0f / sum;
    for (int d = 0; d < D; ++d) o[base + i * D + d] = f32_to_bf16(acc[d] * inv);
}
