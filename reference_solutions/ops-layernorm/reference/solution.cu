// ops-layernorm reference: one block of 256 threads per row.
//
// Pass 1: the block accumulates, in f32, the sum and the sum of squares of the row's deviations
// from its first element (a shift: the two sums then cancel only as much as the row's spread,
// not its offset, so var = E[d^2] - E[d]^2 stays accurate), combined by warp shuffles and then
// across the 8 warps in shared memory. Pass 2 re-reads the row (now in L1/L2) with weight and
// bias and writes the outputs. When n is a multiple of 8 every row starts 16-byte aligned and
// both passes move 8 bf16 per 16-byte load/store (int4); otherwise one element at a time.
// Must match launch.toml: BLOCK = 256.

#define BLOCK 256
#define WARPS (BLOCK / 32)
#define FULL 0xffffffffu
#define EPS 1e-5f

__device__ __forceinline__ float bf16_to_f32(unsigned short b) { return __uint_as_float((unsigned int)b << 16); }
__device__ __forceinline__ unsigned short f32_to_bf16(float f)
{
    const unsigned int u = __float_as_uint(f);
    return (unsigned short)((u + 0x7FFFu + ((u >> 16) & 1u)) >> 16);
}
// Element k (0..7) of 8 packed bf16 (little endian: the lower address in the low half).
__device__ __forceinline__ float unpack(const int4& q, int k)
{
    const unsigned int w = (unsigned int)(k < 4 ? (k < 2 ? q.x : q.y) : (k < 6 ? q.z : q.w));
    return (k & 1) ? __uint_as_float(w & 0xFFFF0000u) : __uint_as_float(w << 16);
}

// The sums of a and b over the block, returned to every thread.
__device__ __forceinline__ void block_sum2(float& a, float& b, float* sa, float* sb)
{
    for (int d = 16; d > 0; d >>= 1) {
        a += __shfl_down_sync(FULL, a, d);
        b += __shfl_down_sync(FULL, b, d);
    }
    const int lane = (int)threadIdx.x & 31, warp = (int)threadIdx.x >> 5;
    if (lane == 0) {
        sa[warp] = a;
        sb[warp] = b;
    }
    __syncthreads();
    if (warp == 0) {
        a = lane < WARPS ? sa[lane] : 0.0f;
        b = lane < WARPS ? sb[lane] : 0.0f;
        for (int d = WARPS / 2; d > 0; d >>= 1) {
            a += __shfl_down_sync(FULL, a, d);
            b += __shfl_down_sync(FULL, b, d);
        }
        if (lane == 0) {
            sa[0] = a;
            sb[0] = b;
        }
    }
    __syncthreads();
    a = sa[0];
    b = sb[0];
}

extern "C" __global__ void __launch_bounds__(BLOCK)
layernorm_block(const unsigned short* __restrict__ input, const unsigned short* __restrict__ weight,
                const unsigned short* __restrict__ bias, unsigned short* __restrict__ output, long long m,
                long long n)
{
    __shared__ float s_sum[WARPS];
    __shared__ float s_sq[WARPS];
    const long long row = blockIdx.x;
    if (row >= m) return; // whole block
    const unsigned short* x = input + row * n;
    unsigned short* y = output + row * n;
    const int tid = (int)threadIdx.x;
    const bool vec = (n & 7) == 0;
    const float shift = bf16_to_f32(x[0]);

    float sum = 0.0f, sq = 0.0f;
    if (vec) {
        const int4* x8 = reinterpret_cast<const int4*>(x);
        for (long long c = tid; c < n / 8; c += BLOCK) {
            const int4 q = x8[c];
            for (int k = 0; k < 8; ++k) {
                const float d = unpack(q, k) - shift;
                sum += d;
                sq += d * d;
            }
        }
    } else {
        for (long long j = tid; j < n; j += BLOCK) {
            const float d = bf16_to_f32(x[j]) - shift;
            sum += d;
            sq += d * d;
        }
    }
    block_sum2(sum, sq, s_sum, s_sq);
    const float mean_d = sum / (float)n;
    const float mean = shift + mean_d;
    const float rstd = rsqrtf(fmaxf(sq / (float)n - mean_d * mean_d, 0.0f) + EPS);

    if (vec) {
        const int4* x8 = reinterpret_cast<const int4*>(x);
        const int4* w8 = reinterpret_cast<const int4*>(weight);
        const int4* b8 = reinterpret_cast<const int4*>(bias);
        int4* y8 = reinterpret_cast<int4*>(y);
        for (long long c = tid; c < n / 8; c += BLOCK) {
            const int4 q = x8[c], g = w8[c], h = b8[c];
            unsigned int out[4];
            for (int k = 0; k < 4; ++k) {
                const float lo = (unpack(q, 2 * k) - mean) * rstd * unpack(g, 2 * k) + unpack(h, 2 * k);
                const float hi = (unpack(q, 2 * k + 1) - mean) * rstd * unpack(g, 2 * k + 1) + unpack(h, 2 * k + 1);
                out[k] = (unsigned int)f32_to_bf16(lo) | ((unsigned int)f32_to_bf16(hi) << 16);
            }
            y8[c] = make_int4((int)out[0], (int)out[1], (int)out[2], (int)out[3]);
        }
    } else {
        for (long long j = tid; j < n; j += BLOCK)
            y[j] = f32_to_bf16((bf16_to_f32(x[j]) - mean) * rstd * bf16_to_f32(weight[j]) + bf16_to_f32(bias[j]));
    }
}
