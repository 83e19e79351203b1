// rdbench harness kernel: holds the scorer's stream while a timed sample is enqueued.
//
// extern "C" __global__ void rdbench_block_stream(unsigned long long flag, unsigned long long timeout_ns)
//
// `flag` is the device address of a 32-bit word in pinned, device-mapped host memory. The
// kernel (one thread) spins until the host writes a nonzero value there. The timed work and
// its start and stop events queue up behind it; once the host has enqueued them all it writes
// 1, and the GPU runs them back to back, so host launch latency is not inside the timed window
// (nvbench's blocking kernel). If the host does not release it within `timeout_ns` (its launch
// queue filled up first) the kernel writes 2 and returns, and the sample is flagged.
// Launch: grid 1, block 1, shared 0. Never part of a submission.

extern "C" __global__ void rdbench_block_stream(unsigned long long flag, unsigned long long timeout_ns)
{
    volatile unsigned int* f = (volatile unsigned int*)flag;
    unsigned long long start, now;
    asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(start));
    while (*f == 0u) {
        asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(now));
        if (now - start > timeout_ns) {
            *f = 2u;
            break;
        }
    }
    __threadfence_system();
}
