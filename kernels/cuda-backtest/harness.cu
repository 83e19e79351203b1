// rdbench-prelude: kernels/harness/splitmix64.cu
// rdbench cuda-backtest: the scorer's trusted kernels (never timed). The CPU twin of every
// kernel here is crates/tasks/cuda-backtest/src/oracle.rs; tests pin the two together.
//
//   kernel              launch                         writes
//   bt_generate_bars    grid-stride over assets        open, high, low, close  (assets x bars)
//   bt_generate_setup   grid-stride over max(params, assets, log_pairs)
//                                                      params (x4), costs (x2), log_pairs
//   bt_expected         grid-stride over assets*params every expected output
//
// Generation: draw(key) = rdbench_splitmix64_at(seed, key) = splitmix64(seed ^ key * 0xD1B54A32D192ED03)
// (the prelude's, kernels/harness/splitmix64.cu); pick(u, lane, n) = (((u >> 16 lane) & 0xFFFF) * n) >> 16.
// A bar's key is (asset << 32) | bar; parameters, costs, log pairs and base prices use
// (tag << 56) | index with tags 1, 2, 3, 4. Each asset's walk is sequential (the floor makes it
// so): one thread per asset.
//
// bt_expected is the definition run plainly: one thread per (asset, parameter set), rolling
// window sums updated in O(1) per bar, straight from global memory.

#define BT_FLOOR 1000

__device__ __forceinline__ int bt_pick(unsigned long long u, int lane, unsigned int n)
{
    return (int)((((u >> (16 * lane)) & 0xFFFFull) * (unsigned long long)n) >> 16);
}

extern "C" __global__ void bt_generate_bars(int* open, int* high, int* low, int* close, long long assets,
                                            long long bars, unsigned long long seed, int dist)
{
    const long long stride = (long long)gridDim.x * blockDim.x;
    for (long long a = (long long)blockIdx.x * blockDim.x + threadIdx.x; a < assets; a += stride) {
        const unsigned long long base_draw = rdbench_splitmix64_at(seed, (4ull << 56) | (unsigned long long)a);
        int prev_close = 5000 + bt_pick(base_draw, 0, 20000);
        const int wick = dist == 2 ? 2 : (dist == 3 ? 201 : 31);
        for (long long t = 0; t < bars; ++t) {
            const unsigned long long key = ((unsigned long long)a << 32) | (unsigned long long)t;
            const unsigned long long u = rdbench_splitmix64_at(seed, key);
            int gap, mv;
            if (dist == 2) {
                gap = 0;
                const int m = bt_pick(u, 1, 16);
                mv = m == 0 ? -1 : (m == 15 ? 1 : 0);
            } else {
                gap = dist == 3 ? bt_pick(u, 0, 401) - 200 : bt_pick(u, 0, 7) - 3;
                mv = bt_pick(u, 1, 81) - 40;
                if (dist == 1) mv += (a % 2 == 0) ? 3 : -3;
            }
            const int o = max(prev_close + gap, BT_FLOOR);
            const int c = max(o + mv, BT_FLOOR);
            const long long i = a * bars + t;
            open[i] = o;
            close[i] = c;
            high[i] = max(o, c) + bt_pick(u, 2, wick);
            low[i] = min(o, c) - bt_pick(u, 3, wick);
            prev_close = c;
        }
    }
}

extern "C" __global__ void bt_generate_setup(int* params, int* costs, int* log_pairs, long long assets,
                                             long long n_params, long long n_log, unsigned long long seed)
{
    const long long stride = (long long)gridDim.x * blockDim.x;
    const long long pairs = assets * n_params;
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
         i < n_params || i < assets || i < n_log; i += stride) {
        if (i < n_params) {
            const unsigned long long u = rdbench_splitmix64_at(seed, (1ull << 56) | (unsigned long long)i);
            const int fast = 2 + bt_pick(u, 0, 63);
            params[4 * i + 0] = fast;
            params[4 * i + 1] = fast + 1 + bt_pick(u, 1, 448);
            params[4 * i + 2] = 20 + bt_pick(u, 2, 381);
            params[4 * i + 3] = 20 + bt_pick(u, 3, 781);
        }
        if (i < assets) {
            const unsigned long long u = rdbench_splitmix64_at(seed, (2ull << 56) | (unsigned long long)i);
            costs[2 * i + 0] = bt_pick(u, 0, 4);
            costs[2 * i + 1] = bt_pick(u, 1, 6);
        }
        if (i < n_log) {
            // One pick in each of n_log equal strata of 0..pairs: distinct and increasing.
            const unsigned long long lo = (unsigned long long)(i * pairs / n_log);
            const unsigned long long hi = (unsigned long long)((i + 1) * pairs / n_log);
            const unsigned long long u = rdbench_splitmix64_at(seed, (3ull << 56) | (unsigned long long)i);
            log_pairs[i] = (int)(lo + (((u >> 32) * (hi - lo)) >> 32));
        }
    }
}

extern "C" __global__ void bt_expected(const int* open, const int* high, const int* low, const int* close,
                                       const int* params, const int* costs, const int* log_pairs, long long assets,
                                       long long bars, long long n_params, long long n_log, long long log_cap,
                                       long long* pnl, int* fills, long long* max_drawdown, long long* pnl_sum,
                                       long long* pnl_sq_sum, int* fill_log)
{
    const long long stride = (long long)gridDim.x * blockDim.x;
    for (long long pair = (long long)blockIdx.x * blockDim.x + threadIdx.x; pair < assets * n_params;
         pair += stride) {
        const long long a = pair / n_params, p = pair % n_params;
        const int* O = open + a * bars;
        const int* H = high + a * bars;
        const int* L = low + a * bars;
        const int* C = close + a * bars;
        const int fast = params[4 * p], slow = params[4 * p + 1], stop = params[4 * p + 2],
                  take = params[4 * p + 3];
        const int slip = costs[2 * a], comm = costs[2 * a + 1];
        int* log = 0;
        for (long long j = 0; j < n_log; ++j)
            if (log_pairs[j] == pair) log = fill_log + j * log_cap * 3;
        long long logged = 0;

        int pos = 0, entry = 0, regime = 0, pending = 0, n_fills = 0;
        long long cash = 0, fast_sum = 0, slow_sum = 0, prev_eq = 0, peak = 0, mdd = 0, sum = 0, sq = 0;
        for (long long t = 0; t < bars; ++t) {
            const int o = O[t], h = H[t], l = L[t], c = C[t];
            int fill_delta[2], fill_price[2], nf = 0;
            if (pending != 0) {
                const int delta = pending - pos;
                const int price = o + (delta > 0 ? slip : -slip);
                fill_delta[nf] = delta;
                fill_price[nf++] = price;
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
                fill_delta[nf] = -pos;
                fill_price[nf++] = exit_price;
                pos = 0;
            }
            for (int k = 0; k < nf; ++k) {
                const int d = fill_delta[k];
                cash -= (long long)d * fill_price[k] + (long long)comm * (d < 0 ? -d : d);
                ++n_fills;
                if (log && logged < log_cap) {
                    log[3 * logged + 0] = (int)t;
                    log[3 * logged + 1] = d;
                    log[3 * logged + 2] = fill_price[k];
                    ++logged;
                }
            }
            fast_sum += c;
            if (t >= fast) fast_sum -= C[t - fast];
            slow_sum += c;
            if (t >= slow) slow_sum -= C[t - slow];
            if (t + 1 >= slow) {
                const long long diff = fast_sum * slow - slow_sum * fast;
                const int side = diff > 0 ? 1 : (diff < 0 ? -1 : 0);
                if (side != 0 && side != regime) {
                    regime = side;
                    pending = side;
                }
            }
            const long long eq = cash + (long long)pos * c;
            const long long d = eq - prev_eq;
            sum += d;
            sq += d * d;
            prev_eq = eq;
            peak = max(peak, eq);
            mdd = max(mdd, peak - eq);
        }
        if (log)
            for (long long k = 3 * logged; k < 3 * log_cap; ++k) log[k] = 0;
        pnl[pair] = prev_eq;
        fills[pair] = n_fills;
        max_drawdown[pair] = mdd;
        pnl_sum[pair] = sum;
        pnl_sq_sum[pair] = sq;
    }
}
