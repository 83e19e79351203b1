// rdbench-prelude: kernels/harness/ops_generate.cu
// rdbench ops-softmax: the scorer's trusted kernels (never timed). The input generator,
// ops_generate, and ops_warp_sum are kernels/harness/ops_generate.cu, prepended by the Rust crate.
//
// Task: y[r][j] = exp(x[r][j] - max_j' x[r][j']) / sum_j'' exp(x[r][j''] - max_j' x[r][j']), for an
// m x n row-major f32 matrix x.
//
//   ops_softmax_expected(const float* x, float* y, long long m, long long n)
//       grid m, block exactly 32 (one warp per row; traps otherwise). The max in f32 (exact), the
//       exponentials and their sum in double, each output rounded once to f32.

extern "C" __global__ void ops_softmax_expected(const float* x, float* y, long long m, long long n)
{
    if (blockDim.x != 32) __trap();
    const long long row = blockIdx.x;
    if (row >= m) return;
    const float* xr = x + row * n;
    float* yr = y + row * n;
    const int lane = (int)threadIdx.x;
    float mx = xr[0];
    for (long long j = lane; j < n; j += 32) mx = fmaxf(mx, xr[j]);
    for (int d = 16; d > 0; d >>= 1) mx = fmaxf(mx, __shfl_down_sync(OPS_FULL_MASK, mx, d));
    mx = __shfl_sync(OPS_FULL_MASK, mx, 0);
    double s = 0.0;
    for (long long j = lane; j < n; j += 32) s += exp((double)xr[j] - (double)mx);
    s = ops_warp_sum(s);
    for (long long j = lane; j < n; j += 32) yr[j] = (float)(exp((double)xr[j] - (double)mx) / s);
}
