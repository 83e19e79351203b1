// ops-matmul reference: 32 x 32 output tiles through shared memory.
//
// A 1-D block of 256 threads owns one 32 x 32 tile of C (blocks numbered row-major over the
// tiles) and walks k in steps of 32: it stages a 32 x 32 tile of A and of B in static shared
// memory (each thread loads 4 elements of each, coalesced, zero past the edges), then each thread
// accumulates 4 outputs (rows ty, ty + 8, ty + 16, ty + 24 of column tx). Each loaded element is
// reused 32 times. Must match launch.toml: BLOCK = 256, TILE = 32.

#define TILE 32
#define BLOCK 256
#define ROWS_PER_THREAD (TILE * TILE / BLOCK) // 4

extern "C" __global__ void __launch_bounds__(BLOCK)
matmul_tiled(const float* __restrict__ a, const float* __restrict__ b, float* __restrict__ c,
             long long m, long long n, long long k)
{
    __shared__ float as[TILE][TILE];
    __shared__ float bs[TILE][TILE + 1];
    const long long tiles_n = (n + TILE - 1) / TILE;
    const long long row0 = (long long)(blockIdx.x / tiles_n) * TILE;
    const long long col0 = (long long)(blockIdx.x % tiles_n) * TILE;
    if (row0 >= m) return; // whole block
    const int tx = (int)threadIdx.x % TILE, ty = (int)threadIdx.x / TILE; // ty in [0, 8)
    float acc[ROWS_PER_THREAD] = {0.0f, 0.0f, 0.0f, 0.0f};
    for (long long p0 = 0; p0 < k; p0 += TILE) {
        for (int r = 0; r < ROWS_PER_THREAD; ++r) {
            const int y = ty + r * (TILE / ROWS_PER_THREAD);
            const long long ai = row0 + y, ap = p0 + tx;
            as[y][tx] = (ai < m && ap < k) ? a[ai * k + ap] : 0.0f;
            const long long bp = p0 + y, bj = col0 + tx;
            bs[y][tx] = (bp < k && bj < n) ? b[bp * n + bj] : 0.0f;
        }
        __syncthreads();
        for (int q = 0; q < TILE; ++q) {
            const float bv = bs[q][tx];
            for (int r = 0; r < ROWS_PER_THREAD; ++r)
                acc[r] += as[ty + r * (TILE / ROWS_PER_THREAD)][q] * bv;
        }
        __syncthreads();
    }
    for (int r = 0; r < ROWS_PER_THREAD; ++r) {
        const long long i = row0 + ty + r * (TILE / ROWS_PER_THREAD), j = col0 + tx;
        if (i < m && j < n) c[i * n + j] = acc[r];
    }
}
