// rdbench-prelude: kernels/harness/ops_generate.cu
// rdbench ops-attention: the scorer's trusted kernels (never timed). The input generator and the
// bf16 conversions (ops_generate_bf16, ops_bf16_to_f32, ops_f32_to_bf16) are
// kernels/harness/ops_generate.cu, prepended by the Rust crate.
//
// Task: causal self-attention forward, head dimension 64, bf16 (unsigned short bits): q, k, v, o
// are [bh][s][64] row-major (bh = batch x heads), o[h][i] = sum_{j <= i} p_ij v[h][j] with
// p_ij = softmax_j (q[h][i] . k[h][j] / 8) over j <= i.
//
//   ops_attention_expected(const unsigned short* q, const unsigned short* k, const unsigned short* v,
//                          unsigned short* o, long long bh, long long s)
//       grid-stride over the bh * s query rows, block 256, one thread per row: the maximum score,
//       then the exponentials, their sum and the weighted sum of v, all in double (two passes
//       over the keys); each output rounded to f32, then to bf16 (a double rounding: at most one
//       bf16 ulp off, inside the tolerance).

#define OPS_ATTENTION_D 64

__device__ double ops_attention_score(const unsigned short* qi, const unsigned short* kj)
{
    double dot = 0.0;
    for (int d = 0; d < OPS_ATTENTION_D; ++d) dot += (double)ops_bf16_to_f32(qi[d]) * (double)ops_bf16_to_f32(kj[d]);
    return dot * 0.125; // 1 / sqrt(64)
}

extern "C" __global__ void ops_attention_expected(const unsigned short* q, const unsigned short* k,
                                                  const unsigned short* v, unsigned short* o, long long bh,
                                                  long long s)
{
    const long long rows = bh * s;
    const long long stride = (long long)gridDim.x * blockDim.x;
    for (long long r = (long long)blockIdx.x * blockDim.x + threadIdx.x; r < rows; r += stride) {
        const long long head = r / s, i = r % s;
        const long long base = head * s * OPS_ATTENTION_D;
        const unsigned short* qi = q + base + i * OPS_ATTENTION_D;
        double mx = -1e300;
        for (long long j = 0; j <= i; ++j) mx = fmax(mx, ops_attention_score(qi, k + base + j * OPS_ATTENTION_D));
        double acc[OPS_ATTENTION_D];
        for (int d = 0; d < OPS_ATTENTION_D; ++d) acc[d] = 0.0;
        double sum = 0.0;
        for (long long j = 0; j <= i; ++j) {
            const double p = exp(ops_attention_score(qi, k + base + j * OPS_ATTENTION_D) - mx);
            sum += p;
            const unsigned short* vj = v + base + j * OPS_ATTENTION_D;
            for (int d = 0; d < OPS_ATTENTION_D; ++d) acc[d] += p * (double)ops_bf16_to_f32(vj[d]);
        }
        for (int d = 0; d < OPS_ATTENTION_D; ++d)
            o[base + i * OPS_ATTENTION_D + d] = ops_f32_to_bf16((float)(acc[d] / sum));
    }
}
