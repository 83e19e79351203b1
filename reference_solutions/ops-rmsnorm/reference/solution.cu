// ops-rmsnorm reference: one block of 256 threads per row.
//
// Pass 1: the block sums the squares of its row in f32 (each thread a strided part, then warp
// shuffles, then the 8 warp sums through shared memory). Pass 2 re-reads the row (now in L1/L2)
// with the weight and writes the outputs. When n is a multiple of 8 every row starts 16-byte
// aligned, so both passes move 8 bf16 per 16-byte load/store (int4); otherwise one element at a
// time. Must match launch.toml: BLOCK = 256.

#define BLOCK 256
#define WARPS (BLOCK / 32)
#define FULL 0xffffffffu
#define EPS 1e-6f

__device__ __forceinline__ float bf16_to_f32(unsigned short b) { return __uint_as_float((unsigned int)b << 16); }
__device__ __forceinline__ unsigned short f32_to_bf16(float f)
{
    const unsigned int u = __float_as_uint(f);
    return (unsigned short)((u + 0x7FFFu + ((u >> 16) & 1u)) >> 16);
}
// The two bf16 of a 32-bit word (little endian: the lower address in the low half).
__device__ __forceinline__ float lo_f32(unsigned int w) { return __uint_as_float(w << 16); }
__device__ __forceinline__ float hi_f32(unsigned int w) { return __uint_as_float(w & 0xFFFF0000u); }
__device__ __forceinline__ unsigned int pack(float lo, float hi)
{
    return (unsigned int)f32_to_bf16(lo) | ((unsigned int)f32_to_bf16(hi) << 16);
}

// The sum of v over the block, returned to every thread.
__device__ __forceinline__ float block_sum(float v, float* shared)
{
    for (int d = 16; d > 0; d >>= 1) v += __shfl_down_sync(FULL, v, d);
    const int lane = (int)threadIdx.x & 31, warp = (int)threadIdx.x >> 5;
    if (lane == 0) shared[warp] = v;
    __syncthreads();
    if (warp == 0) {
        v = lane < WARPS ? shared[lane] : 0.0f;
        for (int d = WARPS / 2; d > 0; d >>= 1) v += __shfl_down_sync(FULL, v, d);
        if (lane == 0) shared[0] = v;
    }
    __syncthreads();
    return shared[0];
}

extern "C" __global__ void __launch_bounds__(BLOCK)
rmsnorm_block(const unsigned short* __restrict__ input, const unsigned short* __restrict__ weight,
              unsigned short* __restrict__ output, long long m, long long n)
{
    __shared__ float partial[WARPS];
    const long long row = blockIdx.x;
    if (row >= m) return; // whole block
    const unsigned short* x = input + row * n;
    unsigned short* y = output + row * n;
    const int tid = (int)threadIdx.x;
    const bool vec = (n & 7) == 0;

    float ss = 0.0f;
    if (vec) {
        const int4* x8 = reinterpret_cast<const int4*>(x);
        for (long long c = tid; c < n / 8; c += BLOCK) {
            const int4 q = x8[c];
            const unsigned int w[4] = {(unsigned)q.x, (unsigned)q.y, (unsigned)q.z, (unsigned)q.w};
            for (int k = 0; k < 4; ++k) {
                const float a = lo_f32(w[k]), b = hi_f32(w[k]);
                ss += a * a + b * b;
            }
        }
    } else {
        for (long long j = tid; j < n; j += BLOCK) {
            const float v = bf16_to_f32(x[j]);
            ss += v * v;
        }
    }
    const float scale = rsqrtf(block_sum(ss, partial) / (float)n + EPS);

    if (vec) {
        const int4* x8 = reinterpret_cast<const int4*>(x);
        const int4* w8 = reinterpret_cast<const int4*>(weight);
        int4* y8 = reinterpret_cast<int4*>(y);
        for (long long c = tid; c < n / 8; c += BLOCK) {
            const int4 q = x8[c], g = w8[c];
            const unsigned int xs[4] = {(unsigned)q.x, (unsigned)q.y, (unsigned)q.z, (unsigned)q.w};
            const unsigned int ws[4] = {(unsigned)g.x, (unsigned)g.y, (unsigned)g.z, (unsigned)g.w};
            unsigned int out[4];
            for (int k = 0; k < 4; ++k)
                out[k] = pack(lo_f32(xs[k]) * scale * lo_f32(ws[k]), hi_f32(xs[k]) * scale * hi_f32(ws[k]));
            y8[c] = make_int4((int)out[0], (int)out[1], (int)out[2], (int)out[3]);
        }
    } else {
        for (long long j = tid; j < n; j += BLOCK) y[j] = f32_to_bf16(bf16_to_f32(x[j]) * scale * bf16_to_f32(weight[j]));
    }
}
