// ops-gemm: starting solution. C = A x B with bf16 inputs and output (as unsigned short bits),
// f32 accumulation, row-major (A m x k, B k x n, C m x n).
//
// One thread per output element, a plain k-long loop in f32 on the CUDA cores: every operand
// comes from global memory (B's loads coalesce across a warp, A's are broadcasts), nothing is
// reused through shared memory or registers, and no tensor core is used. Correct and slow.
// Must match launch.toml: BLOCK = 256.

// bf16 <-> f32: bf16 is the top half of an f32; rounding to nearest even (finite values).
__device__ __forceinline__ float bf16_to_f32(unsigned short b) { return __uint_as_float((unsigned int)b << 16); }
__device__ __forceinline__ unsigned short f32_to_bf16(float f)
{
    const unsigned int u = __float_as_uint(f);
    return (unsigned short)((u + 0x7FFFu + ((u >> 16) & 1u)) >> 16);
}

extern "C" __global__ void gemm_naive(const unsigned short* a, const unsigned short* b, unsigned short* c,
                                      long long m, long long n, long long k)
{
    const long long t = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (t >= m * n) return;
    const long long i = t / n, j = t % n;
    float acc = 0.0f;
    for (long long p = 0; p < k; ++p) acc += bf16_to_f32(a[i * k + p]) * bf16_to_f32(b[p * n + j]);
    c[t] = f32_to_bf16(acc);
}
