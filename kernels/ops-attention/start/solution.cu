// ops-attention: starting solution. Causal self-attention forward, head dimension 64, bf16 in and
// out (as unsigned short bits), f32 inside: q, k, v, o are [bh][s][64] row-major and
// o[h][i] = sum over j <= i of softmax_j(q[h][i] . k[h][j] / 8) * v[h][j].
//
// One thread per query row, the full softmax naively: one pass over its keys for the maximum
// score, a second for the exponentials, their sum and the weighted sum of v (64 accumulators in
// registers). Correct and slow: every thread streams all of its keys and values from global
// memory on its own (no reuse through shared memory), and neighbouring threads read addresses
// 128 bytes apart. Must match launch.toml: BLOCK = 128.

#define D 64

// bf16 <-> f32: bf16 is the top half of an f32; rounding to nearest even (finite values).
__device__ __forceinline__ float bf16_to_f32(unsigned short b) { return __uint_as_float((unsigned int)b << 16); }
__device__ __forceinline__ unsigned short f32_to_bf16(float f)
{
    const unsigned int u = __float_as_uint(f);
    return (unsigned short)((u + 0x7FFFu + ((u >> 16) & 1u)) >> 16);
}

extern "C" __global__ void attention_rows(const unsigned short* q, const unsigned short* k, const unsigned short* v,
                                          unsigned short* o, long long bh, long long s)
{
    const long long r = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (r >= bh * s) return;
    const long long head = r / s, i = r % s;
    const long long base = head * s * D;
    float qs[D]; // q scaled by 1 / sqrt(64) = 1 / 8 (exact)
    for (int d = 0; d < D; ++d) qs[d] = bf16_to_f32(q[base + i * D + d]) * 0.125f;
    float mx = -3.402823466e+38f;
    for (long long j = 0; j <= i; ++j) {
        float dot = 0.0f;
        for (int d = 0; d < D; ++d) dot += qs[d] * bf16_to_f32(k[base + j * D + d]);
        mx = fmaxf(mx, dot);
    }
    float acc[D];
    for (int d = 0; d < D; ++d) acc[d] = 0.0f;
    float sum = 0.0f;
    for (long long j = 0; j <= i; ++j) {
        float dot = 0.0f;
        for (int d = 0; d < D; ++d) dot += qs[d] * bf16_to_f32(k[base + j * D + d]);
        const float p = expf(dot - mx);
        sum += p;
        for (int d = 0; d < D; ++d) acc[d] += p * bf16_to_f32(v[base + j * D + d]);
    }
    for (int d = 0; d < D; ++d) o[base + i * D + d] = f32_to_bf16(acc[d] / sum);
}
