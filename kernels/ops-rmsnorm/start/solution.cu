// ops-rmsnorm: starting solution. RMSNorm of every row of an m x n row-major bf16 matrix:
// y = x / sqrt(mean(x^2) + 1e-6) * weight, bf16 in and out (as unsigned short bits), f32 inside.
//
// One thread per row, two serial passes over its row: the sum of squares, then the outputs.
// Correct and slow: neighbouring threads read addresses n elements apart, so no load is
// coalesced, and a 2-byte load per element wastes most of each memory transaction.
// Must match launch.toml: BLOCK = 256.

// bf16 <-> f32: bf16 is the top half of an f32; rounding to nearest even (finite values).
__device__ __forceinline__ float bf16_to_f32(unsigned short b) { return __uint_as_float((unsigned int)b << 16); }
__device__ __forceinline__ unsigned short f32_to_bf16(float f)
{
    const unsigned int u = __float_as_uint(f);
    return (unsigned short)((u + 0x7FFFu + ((u >> 16) & 1u)) >> 16);
}

extern "C" __global__ void rmsnorm_rows(const unsigned short* input, const unsigned short* weight,
                                        unsigned short* output, long long m, long long n)
{
    const long long row = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (row >= m) return;
    const unsigned short* x = input + row * n;
    unsigned short* y = output + row * n;
    float ss = 0.0f;
    for (long long j = 0; j < n; ++j) {
        const float v = bf16_to_f32(x[j]);
        ss += v * v;
    }
    const float scale = rsqrtf(ss / (float)n + 1e-6f);
    for (long long j = 0; j < n; ++j) y[j] = f32_to_bf16(bf16_to_f32(x[j]) * scale * bf16_to_f32(weight[j]));
}
