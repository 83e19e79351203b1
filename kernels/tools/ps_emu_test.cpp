// Unit tests of prefix-sum kernels' internals through cuda_emu.h (no GPU needed), for paths the
// whole-pipeline runs cannot reach: the single-block tile scans past one chunk of 1024 tiles,
// the harness's one-warp carry scan over many tiles, and the fastest solution's look-back over
// every mix of AGGREGATE and PREFIX predecessors (the emulator runs blocks in order, so a real
// run only ever sees PREFIX). Whole solutions, their launch plans, the harness and the exploit
// corpus run through the Rust scorer on the emulator backend instead (`rdbench check-task`).
//   g++ -std=c++17 -O1 -DSOL_KIND=<k> -DSOL_FILE='"<file.cu>"' -I kernels/tools kernels/tools/ps_emu_test.cpp
// SOL_KIND: 1 start, 2 reference, 3 fastest, 0 harness only (kernels/tools/run_emu_tests.sh).
#include "cuda_emu.h"
#include <cinttypes>
#include <random>
#include <string>

#include "../harness/splitmix64.cu" // the harness's prelude (its first line)
#include "../prefix-sum/harness.cu"
#if SOL_KIND != 0
#include SOL_FILE
#endif

static uint64_t sm64(uint64_t z)
{
    z += 0x9E3779B97F4A7C15ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}
static int cpu_value(uint64_t seed, uint64_t i, int dist)
{
    const uint64_t u = sm64(seed ^ (i * 0xD1B54A32D192ED03ull)) >> 32;
    switch (dist) {
    case 0: return (int)((u * 20) >> 32) - 10;
    case 1: return (int)((u * 10) >> 32) + 1;
    case 2: return -(int)((u * 11) >> 32);
    case 3: return (i % 2 == 0) ? (int)((u * 10) >> 32) + 1 : -((int)((u * 10) >> 32) + 1);
    default: return 0;
    }
}
static long long cdiv(long long a, long long b) { return (a + b - 1) / b; }
static int failures = 0;
#define CHECK(c, ...)                                                                               \
    do {                                                                                           \
        if (!(c)) {                                                                                \
            fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__);                                   \
            fprintf(stderr, __VA_ARGS__);                                                          \
            fprintf(stderr, "\n");                                                                 \
            ++failures;                                                                            \
        }                                                                                          \
    } while (0)


#if SOL_KIND == 3
// Look-back paths, deterministically: pretend tiles 0..k-1 are done with a random mix of
// AGGREGATE and PREFIX status words, run only tile k (counter preset to k), check its outputs
// and the PREFIX word it publishes.
static void lookback_single(const int* x, long long n, const std::vector<int>& oracle, std::mt19937& rng)
{
    const long long T = 8192, tiles = cdiv(n, T);
    std::vector<unsigned> f(tiles), s0(tiles), s1(tiles), pe(tiles), se(tiles);
    unsigned P = 0, C = 0;
    for (long long t = 0; t < tiles; ++t) {
        unsigned a0 = 0, a1 = 0, p0 = 0, p1 = 1;
        for (long long i = t * T; i < std::min(n, (t + 1) * T); ++i) {
            if (p0) a0 += (unsigned)x[i];
            if (p1) a1 += (unsigned)x[i];
            p0 ^= x[i] > 0;
            p1 ^= x[i] > 0;
            C += P ? (unsigned)x[i] : 0u;
            P ^= x[i] > 0;
        }
        f[t] = p0; s0[t] = a0; s1[t] = a1; pe[t] = P; se[t] = C;
    }
    unsigned long long* st = emu::dev_alloc<unsigned long long>(tiles);
    unsigned* ctr = emu::dev_alloc<unsigned>(1);
    int* y = emu::dev_alloc<int>(n);
    int checked = 0;
    for (long long k = 0; k < tiles; ++k) {
        for (int mode = 0; mode < 3; ++mode) {
            for (long long j = 0; j < tiles; ++j) st[j] = 0;
            for (long long j = 0; j < k; ++j) {
                bool prefix = mode == 0 ? false : mode == 1 ? (rng() % 40) == 0 : (rng() % 3) == 0;
                st[j] = prefix ? ((2ull << 62) | ((unsigned long long)se[j] << 1) | pe[j])
                               : ((1ull << 62) | ((unsigned long long)(s1[j] & 0x1FFFFF) << 22) |
                                  ((unsigned long long)(s0[j] & 0x1FFFFF) << 1) | f[j]);
            }
            *ctr = (unsigned)k;
            for (long long i = 0; i < n; ++i) y[i] = 0x7f7f7f7f;
            emu::launch(scan_lookback, 1u, 256, x, n, st, ctr, y); // one block, takes id k
            for (long long i = k * T; i < std::min(n, (k + 1) * T); ++i)
                CHECK(y[i] == oracle[i], "lookback tile %lld mode %d: y[%lld]=%d want %d", k, mode, i, y[i], oracle[i]);
            const unsigned long long w = st[k];
            CHECK(w == ((2ull << 62) | ((unsigned long long)se[k] << 1) | pe[k]),
                  "lookback tile %lld mode %d: published %016llx", k, mode, w);
            ++checked;
        }
    }
    printf("  look-back single-tile checks: %d\n", checked);
}
#endif

// The single-block tile scans loop over chunks of 1024 tiles; whole-pipeline runs at emulator
// sizes only reach one chunk, so these feed them synthetic tile summaries directly.
static void scan_unit_tests(std::mt19937& rng)
{
    for (long long tiles : {1ll, 2ll, 1023ll, 1024ll, 1025ll, 3000ll}) {
#if SOL_KIND == 1
        int* cnt = emu::dev_alloc<int>(tiles);
        int* out = emu::dev_alloc<int>(tiles);
        for (long long t = 0; t < tiles; ++t) cnt[t] = (int)(rng() % 5000);
        emu::launch(scan_tile_parity, 1, 1024, (const int*)cnt, out, tiles);
        unsigned p = 0;
        for (long long t = 0; t < tiles; ++t) {
            CHECK((unsigned)out[t] == p, "scan_tile_parity tiles=%lld t=%lld", tiles, t);
            p ^= (unsigned)cnt[t] & 1u;
        }
        for (long long t = 0; t < tiles; ++t) cnt[t] = (int)(rng() % 200001) - 100000;
        emu::launch(scan_tile_sums, 1, 1024, (const int*)cnt, out, tiles);
        unsigned c = 0;
        for (long long t = 0; t < tiles; ++t) {
            CHECK((unsigned)out[t] == c, "scan_tile_sums tiles=%lld t=%lld", tiles, t);
            c += (unsigned)cnt[t];
        }
#elif SOL_KIND == 2
        int* agg = emu::dev_alloc<int>(4 * tiles);
        int* carry = emu::dev_alloc<int>(2 * tiles);
        for (long long t = 0; t < tiles; ++t) {
            agg[4 * t] = (int)(rng() & 1u);
            agg[4 * t + 1] = (int)(rng() % 160001) - 80000;
            agg[4 * t + 2] = (int)(rng() % 160001) - 80000;
            agg[4 * t + 3] = 0;
        }
        emu::launch(tile_scan, 1, 1024, (const int*)agg, carry, tiles);
        unsigned P = 0, C = 0;
        for (long long t = 0; t < tiles; ++t) {
            CHECK((unsigned)carry[2 * t] == P && (unsigned)carry[2 * t + 1] == C,
                  "tile_scan tiles=%lld t=%lld: (%d, %d) want (%u, %u)", tiles, t, carry[2 * t], carry[2 * t + 1], P, C);
            C += P ? (unsigned)agg[4 * t + 2] : (unsigned)agg[4 * t + 1];
            P ^= (unsigned)agg[4 * t];
        }
#else
        (void)rng;
        (void)tiles;
#endif
    }
    // harness ps_ref_carry over many tiles as well
    for (long long tiles : {1ll, 31ll, 32ll, 33ll, 1000ll}) {
        unsigned* f = emu::dev_alloc<unsigned>(tiles);
        unsigned* a0 = emu::dev_alloc<unsigned>(tiles);
        unsigned* a1 = emu::dev_alloc<unsigned>(tiles);
        unsigned* cp = emu::dev_alloc<unsigned>(tiles);
        unsigned* cs = emu::dev_alloc<unsigned>(tiles);
        for (long long t = 0; t < tiles; ++t) {
            f[t] = rng() & 1u;
            a0[t] = rng();
            a1[t] = rng();
        }
        emu::launch(ps_ref_carry, 1, 32, tiles, (const unsigned*)f, (const unsigned*)a0, (const unsigned*)a1, cp, cs);
        unsigned P = 0, C = 0;
        for (long long t = 0; t < tiles; ++t) {
            CHECK(cp[t] == P && cs[t] == C, "ps_ref_carry tiles=%lld t=%lld", tiles, t);
            C += P ? a1[t] : a0[t];
            P ^= f[t];
        }
    }
    printf("scan unit tests done (failures %d)\n", failures);
}

int main()
{
    std::mt19937 rng(12345);
    scan_unit_tests(rng);
#if SOL_KIND == 3
    for (long long n : {8193ll, 20000ll, 40000ll}) {
        const unsigned long long seed = 0x1234567ull + (unsigned long long)n * 7919ull;
        int* x = emu::dev_alloc<int>(n);
        std::vector<int> oracle(n);
        unsigned P = 0, C = 0;
        for (long long i = 0; i < n; ++i) {
            x[i] = cpu_value(seed, (uint64_t)i, 0);
            C += P ? (unsigned)x[i] : 0u;
            oracle[i] = (int)C;
            P ^= x[i] > 0;
        }
        lookback_single(x, n, oracle, rng);
    }
#endif
    printf("%s: %d failures, %llu fiber switches\n", failures ? "FAILED" : "PASSED", failures, emu::switches);
    return failures ? 1 : 0;
}
