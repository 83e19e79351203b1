// rdbench harness kernel: L2 flush.
//
// extern "C" __global__ void rdbench_l2_flush(unsigned int* buf, unsigned long long n_words)
//
// Read-modify-write of every 32-bit word of `buf` (buf[i] += 1), grid-stride, so that after it
// runs the L2 holds this buffer's (dirty) lines and none of the submission's data. Size `buf` at
// least 2x the device's L2 (cudaDevAttrL2CacheSize) and reset persisting L2 lines before.
//
// Launch: block = 256 (any size works), grid = any >= 1; recommended
// grid = min(ceil_div(n_words, 256), 32 * number_of_SMs), shared 0.
// Never timed as part of a submission; correct for any n_words (0 included).

extern "C" __global__ void rdbench_l2_flush(unsigned int* buf, unsigned long long n_words)
{
    unsigned long long i = (unsigned long long)blockIdx.x * blockDim.x + threadIdx.x;
    const unsigned long long stride = (unsigned long long)gridDim.x * blockDim.x;
    for (; i < n_words; i += stride) {
        buf[i] += 1u;
    }
}
