// ops-softmax reference: one block of 256 threads per row.
//
// Pass 1: each thread walks the row with stride 256 (coalesced loads) keeping an online
// (max, sum of exp(x - max)) pair; the pairs are combined by warp shuffles, then across the 8
// warps in shared memory. Pass 2 re-reads the row (mostly from L2) and writes exp(x - max) / sum.
// Must match launch.toml: BLOCK = 256.

#define BLOCK 256
#define WARPS (BLOCK / 32)
#define FULL 0xffffffffu
#define NO_MAX (-3.402823466e+38f) // -FLT_MAX: "no element yet" (its sum is 0)

// Combines (m, s) with (m2, s2): both are (max, sum of exp(x - max)) of disjoint parts.
__device__ __forceinline__ void combine(float& m, float& s, float m2, float s2)
{
    const float mx = fmaxf(m, m2);
    s = s * expf(m - mx) + s2 * expf(m2 - mx);
    m = mx;
}

extern "C" __global__ void __launch_bounds__(BLOCK)
softmax_block(const float* __restrict__ input, float* __restrict__ output, long long m, long long n)
{
    __shared__ float s_max[WARPS];
    __shared__ float s_sum[WARPS];
    const long long row = blockIdx.x;
    if (row >= m) return; // whole block
    const float* x = input + row * n;
    float* y = output + row * n;
    const int tid = (int)threadIdx.x, lane = tid & 31, warp = tid >> 5;

    float mx = NO_MAX, sum = 0.0f;
    for (long long j = tid; j < n; j += BLOCK) {
        const float v = x[j];
        if (v > mx) {
            sum = sum * expf(mx - v) + 1.0f;
            mx = v;
        } else {
            sum += expf(v - mx);
        }
    }
    for (int d = 16; d > 0; d >>= 1) {
        const float m2 = __shfl_down_sync(FULL, mx, d);
        const float s2 = __shfl_down_sync(FULL, sum, d);
        combine(mx, sum, m2, s2);
    }
    if (lane == 0) {
        s_max[warp] = mx;
        s_sum[warp] = sum;
    }
    __syncthreads();
    if (tid == 0) {
        for (int w = 1; w < WARPS; ++w) combine(mx, sum, s_max[w], s_sum[w]);
        s_max[0] = mx;
        s_sum[0] = sum;
    }
    __syncthreads();
    mx = s_max[0];
    const float inv = 1.0f / s_sum[0];
    for (long long j = tid; j < n; j += BLOCK) y[j] = expf(x[j] - mx) * inv;
}
