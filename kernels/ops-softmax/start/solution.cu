// ops-softmax: starting solution. Row-wise softmax of an m x n row-major f32 matrix.
//
// One thread per row, three serial passes over its row: the max, the sum of exp(x - max), then
// the outputs. Correct (numerically stable: the row max is subtracted before exp) and slow:
// neighbouring threads read addresses n floats apart, so no load is coalesced.
// Must match launch.toml: BLOCK = 256.

extern "C" __global__ void softmax_rows(const float* input, float* output, long long m, long long n)
{
    const long long row = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (row >= m) return;
    const float* x = input + row * n;
    float* y = output + row * n;
    float mx = x[0];
    for (long long j = 1; j < n; ++j) mx = fmaxf(mx, x[j]);
    float sum = 0.0f;
    for (long long j = 0; j < n; ++j) sum += expf(x[j] - mx);
    for (long long j = 0; j < n; ++j) y[j] = expf(x[j] - mx) / sum;
}
