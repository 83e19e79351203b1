// rdbench-prelude: kernels/harness/splitmix64.cu
// rdbench ops family: the trusted device code every op's harness shares (never timed): the input
// generator, bfloat16 conversions and a warp sum. Every op's harness.cu names this file as its
// prelude and the Rust crate (crates/tasks/ops) prepends it, so one generator serves all ops.
//
//   ops_generate(float* x, long long count, long long row_len, unsigned long long seed,
//                unsigned long long salt, int dist)
//   ops_generate_bf16(unsigned short* x, ...same...)
//       the same values rounded to bfloat16 (to nearest, ties to even), stored as their bits.
//
// x[i] for i < count is a pure function of (seed, salt, i, dist, row_len) that the CPU oracle
// reproduces bit for bit (crates/tasks/ops/src/common.rs):
//   key = seed ^ (salt * 0x9E3779B97F4A7C15)        (salt tells the buffers of one op apart)
//   h   = rdbench_splitmix64_at(key, i) = splitmix64(key ^ (i * 0xD1B54A32D192ED03));
//   s   = (long long)(h >> 40) - 2^23, in [-2^23, 2^23)
//   dist 0 uniform:      (float)s * 2^-23                       uniform in [-1, 1) (exact)
//   dist 1 large:        (float)s * (25 * 2^-21)                uniform in [-100, 100) (one rounded
//                        multiply, the same on every IEEE device; exp overflows f32 above 88.7)
//   dist 2 constant-row: as dist 0, except that row r = (splitmix64(key ^ 0xC0A57A27) >> 32) % rows
//                        (rows = max(count / row_len, 1)) holds the value of its first element everywhere
//   dist 3 positive:     ((float)s + 2^23) * 2^-24                uniform in [0, 1) (exact)
//   other: 0
// splitmix64 and rdbench_splitmix64_at are this file's prelude's, kernels/harness/splitmix64.cu.
// Launch: grid-stride, block 256.
//
// bfloat16 is handled as `unsigned short` bits (the pip NVRTC has no cuda_bf16.h, and the CPU
// emulator has none either): ops_bf16_to_f32 widens exactly, ops_f32_to_bf16 rounds to nearest
// even (finite inputs; the generator and the expected kernels never produce NaN).
//
// ops_warp_sum(v): v summed over the 32 lanes of a full warp, in every lane, in one fixed order
// (the one-warp-per-row expected kernels share it).

#define OPS_FULL_MASK 0xffffffffu

__device__ __forceinline__ float ops_bf16_to_f32(unsigned short b) { return __uint_as_float((unsigned int)b << 16); }

__device__ __forceinline__ unsigned short ops_f32_to_bf16(float f)
{
    const unsigned int u = __float_as_uint(f);
    return (unsigned short)((u + 0x7FFFu + ((u >> 16) & 1u)) >> 16);
}

__device__ __forceinline__ double ops_warp_sum(double v)
{
    for (int d = 16; d > 0; d >>= 1) v += __shfl_down_sync(OPS_FULL_MASK, v, d);
    return __shfl_sync(OPS_FULL_MASK, v, 0);
}

__device__ __forceinline__ float ops_unit(unsigned long long key, unsigned long long i)
{
    const unsigned long long h = rdbench_splitmix64_at(key, i);
    const long long s = (long long)(h >> 40) - (1ll << 23);
    return (float)s;
}

// Element i of one buffer (see the header); `const_row` is the constant row of dist 2.
__device__ __forceinline__ float ops_value(unsigned long long key, long long i, long long row_len,
                                           long long const_row, int dist)
{
    switch (dist) {
    case 0: return ops_unit(key, (unsigned long long)i) * 1.1920928955078125e-07f;
    case 1: return ops_unit(key, (unsigned long long)i) * 1.1920928955078125e-05f;
    case 2: {
        const long long row = i / row_len;
        const long long at = row == const_row ? row * row_len : i;
        return ops_unit(key, (unsigned long long)at) * 1.1920928955078125e-07f;
    }
    case 3: return (ops_unit(key, (unsigned long long)i) + 8388608.0f) * 5.9604644775390625e-08f;
    default: return 0.0f;
    }
}

__device__ __forceinline__ long long ops_const_row(unsigned long long key, long long count, long long row_len)
{
    const long long rows = count / row_len > 0 ? count / row_len : 1;
    return (long long)((rdbench_splitmix64(key ^ 0xC0A57A27ull) >> 32) % (unsigned long long)rows);
}

extern "C" __global__ void ops_generate(float* x, long long count, long long row_len,
                                        unsigned long long seed, unsigned long long salt, int dist)
{
    const unsigned long long key = seed ^ (salt * 0x9E3779B97F4A7C15ull);
    const long long const_row = ops_const_row(key, count, row_len);
    const long long stride = (long long)gridDim.x * blockDim.x;
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < count; i += stride)
        x[i] = ops_value(key, i, row_len, const_row, dist);
}

extern "C" __global__ void ops_generate_bf16(unsigned short* x, long long count, long long row_len,
                                             unsigned long long seed, unsigned long long salt, int dist)
{
    const unsigned long long key = seed ^ (salt * 0x9E3779B97F4A7C15ull);
    const long long const_row = ops_const_row(key, count, row_len);
    const long long stride = (long long)gridDim.x * blockDim.x;
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < count; i += stride)
        x[i] = ops_f32_to_bf16(ops_value(key, i, row_len, const_row, dist));
}
