// rdbench ops family: the trusted input generator every op shares (never timed). The Rust crate
// (crates/tasks/ops) prepends this file to each op's harness.cu, so one generator serves all ops;
// it also compiles on its own.
//
//   ops_generate(float* x, long long count, long long row_len, unsigned long long seed,
//                unsigned long long salt, int dist)
//
// x[i] for i < count is a pure function of (seed, salt, i, dist, row_len) that the CPU oracle
// reproduces bit for bit (crates/tasks/ops/src/common.rs):
//   key = seed ^ (salt * 0x9E3779B97F4A7C15)        (salt tells the buffers of one op apart)
//   h   = splitmix64(key ^ (i * 0xD1B54A32D192ED03)); s = (long long)(h >> 40) - 2^23, in [-2^23, 2^23)
//   dist 0 uniform:      (float)s * 2^-23                       uniform in [-1, 1) (exact)
//   dist 1 large:        (float)s * (25 * 2^-21)                uniform in [-100, 100) (one rounded
//                        multiply, the same on every IEEE device; exp overflows f32 above 88.7)
//   dist 2 constant-row: as dist 0, except that row r = (splitmix64(key ^ 0xC0A57A27) >> 32) % rows
//                        (rows = count / row_len) holds the value of its first element everywhere
//   other: 0
// splitmix64(z): z += 0x9E3779B97F4A7C15; z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9;
//                z = (z ^ (z >> 27)) * 0x94D049BB133111EB; return z ^ (z >> 31)   (u64 wrapping)
// Launch: grid-stride, block 256.

#define OPS_FULL_MASK 0xffffffffu

__device__ __forceinline__ unsigned long long ops_splitmix64(unsigned long long z)
{
    z += 0x9E3779B97F4A7C15ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

__device__ __forceinline__ float ops_unit(unsigned long long key, unsigned long long i)
{
    const unsigned long long h = ops_splitmix64(key ^ (i * 0xD1B54A32D192ED03ull));
    const long long s = (long long)(h >> 40) - (1ll << 23);
    return (float)s;
}

extern "C" __global__ void ops_generate(float* x, long long count, long long row_len,
                                        unsigned long long seed, unsigned long long salt, int dist)
{
    const unsigned long long key = seed ^ (salt * 0x9E3779B97F4A7C15ull);
    const long long rows = count / row_len;
    const long long const_row =
        (long long)((ops_splitmix64(key ^ 0xC0A57A27ull) >> 32) % (unsigned long long)rows);
    const long long stride = (long long)gridDim.x * blockDim.x;
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < count; i += stride) {
        float v;
        switch (dist) {
        case 0: v = ops_unit(key, (unsigned long long)i) * 1.1920928955078125e-07f; break;
        case 1: v = ops_unit(key, (unsigned long long)i) * 1.1920928955078125e-05f; break;
        case 2: {
            const long long row = i / row_len;
            const long long at = row == const_row ? row * row_len : i;
            v = ops_unit(key, (unsigned long long)at) * 1.1920928955078125e-07f;
            break;
        }
        default: v = 0.0f;
        }
        x[i] = v;
    }
}
