// rdbench-prelude: kernels/harness/ops_generate.cu
// rdbench ops-matmul: the scorer's trusted kernels (never timed). The input generator,
// ops_generate, is kernels/harness/ops_generate.cu, prepended by the Rust crate.
//
// Task: C = A x B, f32, row-major: A m x k, B k x n, C m x n, c[i][j] = sum_p a[i][p] * b[p][j].
//
//   ops_matmul_expected(const float* a, const float* b, float* c, long long m, long long n, long long k)
//       grid-stride over the m * n outputs, block 256 (j fastest: B loads coalesce, A broadcasts);
//       each dot product in double, rounded once to f32.

extern "C" __global__ void ops_matmul_expected(const float* a, const float* b, float* c, long long m,
                                               long long n, long long k)
{
    const long long total = m * n;
    const long long stride = (long long)gridDim.x * blockDim.x;
    for (long long t = (long long)blockIdx.x * blockDim.x + threadIdx.x; t < total; t += stride) {
        const long long i = t / n, j = t % n;
        double acc = 0.0;
        for (long long p = 0; p < k; ++p) acc += (double)a[i * k + p] * (double)b[p * n + j];
        c[t] = (float)acc;
    }
}
