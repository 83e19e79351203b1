// rdbench harness: the SplitMix64 hash every task's trusted input generator draws from (never
// timed). A file that uses it names it as its prelude on its first line and the task crate puts
// it first (kernels/README.md). It must stay bit-identical to rdbench_core::rng::splitmix64 and
// splitmix64_at, with which the CPU oracles reproduce the inputs.
//
//   rdbench_splitmix64(z): z += 0x9E3779B97F4A7C15; z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9;
//                          z = (z ^ (z >> 27)) * 0x94D049BB133111EB; return z ^ (z >> 31)
//                          (u64 wrapping); rdbench_splitmix64(0) = 0xE220A8397B1DCDAF.
//   rdbench_splitmix64_at(key, i) = rdbench_splitmix64(key ^ (i * 0xD1B54A32D192ED03)): word i
//                          of the stream keyed by `key` (the multiplier spreads i over 64 bits).

__device__ __forceinline__ unsigned long long rdbench_splitmix64(unsigned long long z)
{
    z += 0x9E3779B97F4A7C15ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

__device__ __forceinline__ unsigned long long rdbench_splitmix64_at(unsigned long long key, unsigned long long i)
{
    return rdbench_splitmix64(key ^ (i * 0xD1B54A32D192ED03ull));
}
