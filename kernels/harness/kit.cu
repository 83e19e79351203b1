// rdbench harness kernels shared by every kernel task: poisoning outputs and checking them.
// Trusted code, never timed; compiled by NVRTC for the GPU and by the host compiler against
// kernels/tools/cuda_emu.h for the CPU emulator.
//
//   rdbench_fill_u32(unsigned int* p, long long words, unsigned int value)
//       p[i] = value for i < words (the poison pattern written over every output before a run).
//   rdbench_fill_u16(unsigned short* p, long long n, unsigned int value)
//       p[i] = the low 16 bits of value for i < n (the poison of 2-byte outputs such as bf16).
//   rdbench_compare_u8 / _u32 / _u64(const T* expected, const T* got, long long n, unsigned long long* verdict)
//       exact, bitwise comparison of n elements.
//   rdbench_compare_f32(const float* expected, const float* got, long long n, float rtol, float atol,
//                       unsigned long long* verdict)
//       |got - expected| <= atol + rtol * |expected|, both finite; infinities must be equal;
//       NaN never matches anything, NaN included.
//   rdbench_compare_bf16(const unsigned short* expected, const unsigned short* got, long long n, float rtol,
//                        float atol, unsigned long long* verdict)
//       the same rule on bfloat16 bits, each widened exactly to the f32 it stands for.
//
// verdict[4] (u64): [0] a nonce the host writes and the kernels never touch, [1] elements
// checked, [2] mismatches, [3] lowest mismatching index. The host writes {nonce, 0, 0, ~0} in
// stream order after the submission's plan, and after the kernel checks that the nonce is intact
// and that exactly n elements were checked, so a plan cannot pre-set the verdict and a kernel
// that skipped elements cannot pass.
// Launch: grid-stride, block 256 (a multiple of 32: warp reductions), grid = min(ceil_div(n, 256), 65535).

#define RDB_FULL 0xffffffffu

#define RDB_CHECK_LOOP(OK_EXPR)                                                                    \
    unsigned long long i = (unsigned long long)blockIdx.x * blockDim.x + threadIdx.x;              \
    const unsigned long long stride = (unsigned long long)gridDim.x * blockDim.x;                  \
    unsigned int checked = 0, bad = 0;                                                             \
    unsigned long long first = ~0ull;                                                              \
    for (; i < (unsigned long long)n; i += stride) {                                               \
        ++checked;                                                                                 \
        if (!(OK_EXPR)) {                                                                          \
            if (bad == 0) first = i;                                                               \
            ++bad;                                                                                 \
        }                                                                                          \
    }                                                                                              \
    const unsigned int warp_checked = __reduce_add_sync(RDB_FULL, checked);                        \
    const unsigned int warp_bad = __reduce_add_sync(RDB_FULL, bad);                                \
    if (bad) atomicMin(&verdict[3], first);                                                        \
    if ((threadIdx.x & 31u) == 0u) {                                                               \
        atomicAdd(&verdict[1], (unsigned long long)warp_checked);                                  \
        if (warp_bad) atomicAdd(&verdict[2], (unsigned long long)warp_bad);                        \
    }

extern "C" __global__ void rdbench_fill_u32(unsigned int* p, long long words, unsigned int value)
{
    unsigned long long i = (unsigned long long)blockIdx.x * blockDim.x + threadIdx.x;
    const unsigned long long stride = (unsigned long long)gridDim.x * blockDim.x;
    for (; i < (unsigned long long)words; i += stride) p[i] = value;
}

extern "C" __global__ void rdbench_fill_u16(unsigned short* p, long long n, unsigned int value)
{
    unsigned long long i = (unsigned long long)blockIdx.x * blockDim.x + threadIdx.x;
    const unsigned long long stride = (unsigned long long)gridDim.x * blockDim.x;
    for (; i < (unsigned long long)n; i += stride) p[i] = (unsigned short)(value & 0xffffu);
}

extern "C" __global__ void rdbench_compare_u8(const unsigned char* expected, const unsigned char* got, long long n,
                                              unsigned long long* verdict)
{
    RDB_CHECK_LOOP(expected[i] == got[i])
}

extern "C" __global__ void rdbench_compare_u32(const unsigned int* expected, const unsigned int* got, long long n,
                                               unsigned long long* verdict)
{
    RDB_CHECK_LOOP(expected[i] == got[i])
}

extern "C" __global__ void rdbench_compare_u64(const unsigned long long* expected, const unsigned long long* got,
                                               long long n, unsigned long long* verdict)
{
    RDB_CHECK_LOOP(expected[i] == got[i])
}

__device__ __forceinline__ bool rdbench_close_f32(float e, float g, float rtol, float atol)
{
    if (isnan(e) || isnan(g)) return false;
    if (e == g) return true; // equal infinities included
    if (isinf(e) || isinf(g)) return false;
    return fabsf(g - e) <= atol + rtol * fabsf(e);
}

extern "C" __global__ void rdbench_compare_f32(const float* expected, const float* got, long long n, float rtol,
                                               float atol, unsigned long long* verdict)
{
    RDB_CHECK_LOOP(rdbench_close_f32(expected[i], got[i], rtol, atol))
}

__device__ __forceinline__ float rdbench_bf16_to_f32(unsigned short b)
{
    return __uint_as_float((unsigned int)b << 16);
}

extern "C" __global__ void rdbench_compare_bf16(const unsigned short* expected, const unsigned short* got,
                                                long long n, float rtol, float atol, unsigned long long* verdict)
{
    RDB_CHECK_LOOP(rdbench_close_f32(rdbench_bf16_to_f32(expected[i]), rdbench_bf16_to_f32(got[i]), rtol, atol))
}
