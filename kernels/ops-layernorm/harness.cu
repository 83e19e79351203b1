// rdbench-prelude: kernels/harness/ops_generate.cu
// rdbench ops-layernorm: the scorer's trusted kernels (never timed). The input generator, the
// bf16 conversions (ops_generate_bf16, ops_bf16_to_f32, ops_f32_to_bf16) and ops_warp_sum are
// kernels/harness/ops_generate.cu, prepended by the Rust crate.
//
// Task: y[r][j] = (x[r][j] - mean_r) / sqrt(var_r + 1e-5) * w[j] + b[j], mean_r and var_r (biased)
// over row r; x, y m x n row-major bf16, w and b n bf16 (bf16 as unsigned short bits).
//
//   ops_layernorm_expected(const unsigned short* x, const unsigned short* w, const unsigned short* b,
//                          unsigned short* y, long long m, long long n)
//       grid m, block exactly 32 (one warp per row; traps otherwise). Mean, then the variance from
//       the deviations (two passes), then the outputs, all in double; each output rounded to f32,
//       then to bf16 (a double rounding: at most one bf16 ulp off, inside the tolerance).

extern "C" __global__ void ops_layernorm_expected(const unsigned short* x, const unsigned short* w,
                                                  const unsigned short* b, unsigned short* y, long long m,
                                                  long long n)
{
    if (blockDim.x != 32) __trap();
    const long long row = blockIdx.x;
    if (row >= m) return;
    const unsigned short* xr = x + row * n;
    unsigned short* yr = y + row * n;
    const int lane = (int)threadIdx.x;
    double s = 0.0;
    for (long long j = lane; j < n; j += 32) s += ops_bf16_to_f32(xr[j]);
    const double mean = ops_warp_sum(s) / (double)n;
    double q = 0.0;
    for (long long j = lane; j < n; j += 32) {
        const double d = (double)ops_bf16_to_f32(xr[j]) - mean;
        q += d * d;
    }
    const double rstd = 1.0 / sqrt(ops_warp_sum(q) / (double)n + 1e-5);
    for (long long j = lane; j < n; j += 32) {
        const double v = ((double)ops_bf16_to_f32(xr[j]) - mean) * rstd * (double)ops_bf16_to_f32(w[j]) +
                         (double)ops_bf16_to_f32(b[j]);
        yr[j] = ops_f32_to_bf16((float)v);
    }
}
