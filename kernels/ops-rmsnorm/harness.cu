// rdbench-prelude: kernels/harness/ops_generate.cu
// rdbench ops-rmsnorm: the scorer's trusted kernels (never timed). The input generator, the
// bf16 conversions (ops_generate_bf16, ops_bf16_to_f32, ops_f32_to_bf16) and ops_warp_sum are
// kernels/harness/ops_generate.cu, prepended by the Rust crate.
//
// Task: y[r][j] = x[r][j] / sqrt(mean_j' x[r][j']^2 + 1e-6) * w[j], x m x n row-major bf16, w n
// bf16, y m x n bf16 (bf16 as unsigned short bits).
//
//   ops_rmsnorm_expected(const unsigned short* x, const unsigned short* w, unsigned short* y,
//                        long long m, long long n)
//       grid m, block exactly 32 (one warp per row; traps otherwise). Everything in double; each
//       output rounded to f32, then to bf16 (a double rounding: at most one bf16 ulp from the
//       correctly rounded value, inside the tolerance).

extern "C" __global__ void ops_rmsnorm_expected(const unsigned short* x, const unsigned short* w, unsigned short* y,
                                                long long m, long long n)
{
    if (blockDim.x != 32) __trap();
    const long long row = blockIdx.x;
    if (row >= m) return;
    const unsigned short* xr = x + row * n;
    unsigned short* yr = y + row * n;
    const int lane = (int)threadIdx.x;
    double ss = 0.0;
    for (long long j = lane; j < n; j += 32) {
        const double v = ops_bf16_to_f32(xr[j]);
        ss += v * v;
    }
    const double scale = 1.0 / sqrt(ops_warp_sum(ss) / (double)n + 1e-6);
    for (long long j = lane; j < n; j += 32)
        yr[j] = ops_f32_to_bf16((float)((double)ops_bf16_to_f32(xr[j]) * scale * (double)ops_bf16_to_f32(w[j])));
}
