// ops-matmul: starting solution. C = A x B, f32, row-major (A m x k, B k x n, C m x n).
//
// One thread per output element, a plain k-long loop: every operand comes from global memory
// (B's loads coalesce across a warp, A's are broadcasts), nothing is reused through shared memory
// or registers. Correct and slow. Must match launch.toml: BLOCK = 256.

extern "C" __global__ void matmul_naive(const float* a, const float* b, float* c, long long m,
                                        long long n, long long k)
{
    const long long t = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (t >= m * n) return;
    const long long i = t / n, j = t % n;
    float acc = 0.0f;
    for (long long p = 0; p < k; ++p) acc += a[i * k + p] * b[p * n + j];
    c[t] = acc;
}
