// ops-layernorm: starting solution. LayerNorm of every row of an m x n row-major bf16 matrix:
// y = (x - mean) / sqrt(var + 1e-5) * weight + bias, bf16 in and out (as unsigned short bits),
// statistics in f32.
//
// One thread per row, three serial passes over its row: the mean, the variance from the
// deviations (numerically safe), then the outputs. Correct and slow: neighbouring threads read
// addresses n elements apart, so no load is coalesced. Must match launch.toml: BLOCK = 256.

// bf16 <-> f32: bf16 is the top half of an f32; rounding to nearest even (finite values).
__device__ __forceinline__ float bf16_to_f32(unsigned short b) { return __uint_as_float((unsigned int)b << 16); }
__device__ __forceinline__ unsigned short f32_to_bf16(float f)
{
    const unsigned int u = __float_as_uint(f);
    return (unsigned short)((u + 0x7FFFu + ((u >> 16) & 1u)) >> 16);
}

extern "C" __global__ void layernorm_rows(const unsigned short* input, const unsigned short* weight,
                                          const unsigned short* bias, unsigned short* output, long long m,
                                          long long n)
{
    const long long row = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (row >= m) return;
    const unsigned short* x = input + row * n;
    unsigned short* y = output + row * n;
    float sum = 0.0f;
    for (long long j = 0; j < n; ++j) sum += bf16_to_f32(x[j]);
    const float mean = sum / (float)n;
    float sq = 0.0f;
    for (long long j = 0; j < n; ++j) {
        const float d = bf16_to_f32(x[j]) - mean;
        sq += d * d;
    }
    const float rstd = rsqrtf(sq / (float)n + 1e-5f);
    for (long long j = 0; j < n; ++j)
        y[j] = f32_to_bf16((bf16_to_f32(x[j]) - mean) * rstd * bf16_to_f32(weight[j]) + bf16_to_f32(bias[j]));
}
