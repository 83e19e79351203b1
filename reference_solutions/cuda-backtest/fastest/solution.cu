// cuda-backtest: the fastest version we could write (not yet timed on a GPU: the expectation
// that it beats the reference is by instruction count, not by measurement).
//
// The reference's layout (a block per asset and group of parameter sets, bars staged through
// shared memory, closes in a ring) with less arithmetic on the path every bar takes:
// - the signal keeps one 64-bit difference D = F * slow - S * fast, updated from the closes
//   entering and leaving the windows with 32 x 32 -> 64-bit multiplies, instead of two
//   window sums and two 64 x 32-bit products;
// - on a bar without a fill the equity changes by pos * (close - previous close), a 32-bit
//   value, so its square is one widening multiply; the general 64-bit update runs only on the
//   (rare) bars with a fill;
// - tiles of 512 bars, half the reference's barriers.
// Must match launch.toml: BLOCK = 128.

#define BLOCK 128
#define TILE 512
#define HIST 512
#define RING 1024 /* a power of two >= HIST + TILE */

struct Logger {
    int* row; // this pair's fill-log row, or null
    long long cap, used;
    __device__ void add(int bar, int delta, int price)
    {
        if (row && used < cap) {
            row[3 * used + 0] = bar;
            row[3 * used + 1] = delta;
            row[3 * used + 2] = price;
            ++used;
        }
    }
};

extern "C" __global__ void __launch_bounds__(BLOCK)
backtest_fast(const int* __restrict__ open, const int* __restrict__ high, const int* __restrict__ low,
               const int* __restrict__ close, const int* __restrict__ params, const int* __restrict__ costs,
               const int* __restrict__ log_pairs, long long assets, long long bars, long long n_params,
               long long n_log, long long log_cap, long long* pnl, int* fills, long long* max_drawdown,
               long long* pnl_sum, long long* pnl_sq_sum, int* fill_log)
{
    __shared__ int s_open[TILE], s_high[TILE], s_low[TILE];
    __shared__ int s_close[RING];

    const long long groups = (n_params + BLOCK - 1) / BLOCK;
    const long long a = blockIdx.x / groups;
    const long long p = (blockIdx.x % groups) * BLOCK + threadIdx.x;
    const bool active = p < n_params;
    const long long pair = a * n_params + p;

    int fast = 1, slow = 1, stop = 0, take = 0;
    if (active) {
        fast = params[4 * p];
        slow = params[4 * p + 1];
        stop = params[4 * p + 2];
        take = params[4 * p + 3];
    }
    const int slip = costs[2 * a], comm = costs[2 * a + 1];
    Logger log{0, log_cap, 0};
    if (active)
        for (long long j = 0; j < n_log; ++j)
            if (log_pairs[j] == pair) log.row = fill_log + j * log_cap * 3;

    int pos = 0, entry = 0, regime = 0, pending = 0, n_fills = 0, prev_close = 0;
    long long cash = 0, diff = 0, eq = 0, peak = 0, mdd = 0, sum = 0, sq = 0;
    const long long base = a * bars;
    for (long long t0 = 0; t0 < bars; t0 += TILE) {
        const int len = (int)min((long long)TILE, bars - t0);
        __syncthreads(); // everyone is done with the previous tile
        for (int i = threadIdx.x; i < len; i += BLOCK) {
            s_open[i] = open[base + t0 + i];
            s_high[i] = high[base + t0 + i];
            s_low[i] = low[base + t0 + i];
            s_close[(t0 + i) & (RING - 1)] = close[base + t0 + i];
        }
        __syncthreads();
        if (!active) continue;
        for (int i = 0; i < len; ++i) {
            const long long t = t0 + i;
            const int o = s_open[i], h = s_high[i], l = s_low[i], c = s_close[t & (RING - 1)];
            const int fast_out = t >= fast ? s_close[(t - fast) & (RING - 1)] : 0;
            const int slow_out = t >= slow ? s_close[(t - slow) & (RING - 1)] : 0;
            bool filled = false;
            if (pending != 0) {
                filled = true;
                const int delta = pending - pos;
                const int price = delta > 0 ? o + slip : o - slip;
                cash -= (long long)delta * price + (long long)comm * (delta < 0 ? -delta : delta);
                ++n_fills;
                log.add((int)t, delta, price);
                pos = pending;
                entry = price;
                pending = 0;
            }
            int exit_price = 0;
            bool exits = false;
            if (pos == 1) {
                if (l <= entry - stop) {
                    exits = true;
                    exit_price = min(o, entry - stop) - slip;
                } else if (h >= entry + take) {
                    exits = true;
                    exit_price = max(o, entry + take) - slip;
                }
            } else if (pos == -1) {
                if (h >= entry + stop) {
                    exits = true;
                    exit_price = max(o, entry + stop) + slip;
                } else if (l <= entry - take) {
                    exits = true;
                    exit_price = min(o, entry - take) + slip;
                }
            }
            if (exits) {
                filled = true;
                cash -= (long long)(-pos) * exit_price + comm;
                ++n_fills;
                log.add((int)t, -pos, exit_price);
                pos = 0;
            }
            // Closes are positive ints, so each difference fits in 32 bits.
            diff += (long long)slow * (c - fast_out) - (long long)fast * (c - slow_out);
            if (t + 1 >= slow) {
                const int side = diff > 0 ? 1 : (diff < 0 ? -1 : 0);
                if (side != 0 && side != regime) {
                    regime = side;
                    pending = side;
                }
            }
            if (!filled) {
                // Same cash, same position: the equity moves with the close alone.
                const int d = pos * (c - prev_close);
                sum += d;
                sq += (long long)d * d;
                eq += d;
            } else {
                const long long now = cash + (long long)pos * c;
                const long long d = now - eq;
                sum += d;
                sq += d * d;
                eq = now;
            }
            prev_close = c;
            peak = max(peak, eq);
            mdd = max(mdd, peak - eq);
        }
    }
    if (!active) return;
    if (log.row)
        for (long long k = 3 * log.used; k < 3 * log_cap; ++k) log.row[k] = 0;
    pnl[pair] = eq;
    fills[pair] = n_fills;
    max_drawdown[pair] = mdd;
    pnl_sum[pair] = sum;
    pnl_sq_sum[pair] = sq;
}
