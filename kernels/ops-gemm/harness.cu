// rdbench-prelude: kernels/harness/ops_generate.cu
// rdbench ops-gemm: the scorer's trusted kernels (never timed). The input generator and the bf16
// conversions (ops_generate_bf16, ops_bf16_to_f32, ops_f32_to_bf16) are kernels/harness/ops_generate.cu,
// prepended by the Rust crate.
//
// Task: C = A x B, bf16 in and out (unsigned short bits), row-major: A m x k, B k x n, C m x n,
// c[i][j] = sum_p a[i][p] * b[p][j].
//
//   ops_gemm_expected(const unsigned short* a, const unsigned short* b, unsigned short* c,
//                     long long m, long long n, long long k)
//       grid-stride over the m * n outputs, block 256 (j fastest: B loads coalesce, A broadcasts);
//       each dot product in double (every product of two bf16 is exact there), rounded to f32 and
//       then to bf16 (a double rounding: at most one bf16 ulp off, inside the tolerance).

extern "C" __global__ void ops_gemm_expected(const unsigned short* a, const unsigned short* b, unsigned short* c,
                                             long long m, long long n, long long k)
{
    const long long total = m * n;
    const long long stride = (long long)gridDim.x * blockDim.x;
    for (long long t = (long long)blockIdx.x * blockDim.x + threadIdx.x; t < total; t += stride) {
        const long long i = t / n, j = t % n;
        double acc = 0.0;
        for (long long p = 0; p < k; ++p)
            acc += (double)ops_bf16_to_f32(a[i * k + p]) * (double)ops_bf16_to_f32(b[p * n + j]);
        c[t] = ops_f32_to_bf16((float)acc);
    }
}
