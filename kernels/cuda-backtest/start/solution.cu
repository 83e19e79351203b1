// cuda-backtest: starting solution, a literal port of a per-bar backtesting loop.
//
// What a first port of a Python backtester looks like: the bars are packed into rows of
// (open, high, low, close) like a data frame's records; then one thread runs one
// (asset, parameter set) pair through every bar, keeps the pair's state in an array of
// structs in global memory, and recomputes both moving-average windows from scratch at every
// bar. Correct (it follows the definition in INSTRUCTIONS.md step by step) and slow.
// Must match launch.toml: BLOCK = 128.

#define BLOCK 128

struct Row {
    int open, high, low, close;
};

// One pair's state between bars.
struct PairState {
    long long cash, prev_equity, peak, max_drawdown, pnl_sum, pnl_sq_sum;
    int pos, entry, regime, pending, fills, logged;
};

extern "C" __global__ void pack_rows(const int* open, const int* high, const int* low, const int* close,
                                     int* rows, long long n)
{
    const long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    Row* r = (Row*)rows;
    r[i].open = open[i];
    r[i].high = high[i];
    r[i].low = low[i];
    r[i].close = close[i];
}

// Sum of the closes of bars t-w+1 .. t.
__device__ long long window_sum(const Row* rows, long long t, int w)
{
    long long s = 0;
    for (int k = 0; k < w; ++k) s += rows[t - k].close;
    return s;
}

__device__ void record_fill(PairState* st, int* log, long long log_cap, long long bar, int delta, int price,
                            int commission)
{
    st->cash -= (long long)delta * price + (long long)commission * (delta < 0 ? -delta : delta);
    st->fills += 1;
    if (log && st->logged < log_cap) {
        log[3 * st->logged + 0] = (int)bar;
        log[3 * st->logged + 1] = delta;
        log[3 * st->logged + 2] = price;
        st->logged += 1;
    }
}

extern "C" __global__ void backtest_pairs(const int* rows_raw, const int* params, const int* costs,
                                          const int* log_pairs, long long* states_raw, long long assets,
                                          long long bars, long long n_params, long long n_log, long long log_cap,
                                          long long* pnl, int* fills, long long* max_drawdown, long long* pnl_sum,
                                          long long* pnl_sq_sum, int* fill_log)
{
    const long long pair = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (pair >= assets * n_params) return;
    const long long a = pair / n_params, p = pair % n_params;
    const Row* rows = (const Row*)rows_raw + a * bars;
    PairState* st = (PairState*)states_raw + pair;
    const int fast = params[4 * p], slow = params[4 * p + 1], stop = params[4 * p + 2], take = params[4 * p + 3];
    const int slip = costs[2 * a], comm = costs[2 * a + 1];
    int* log = 0;
    for (long long j = 0; j < n_log; ++j)
        if (log_pairs[j] == pair) log = fill_log + j * log_cap * 3;

    *st = PairState{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0};
    for (long long t = 0; t < bars; ++t) {
        const Row bar = rows[t];
        // 1. the order placed at the previous close fills at this open
        if (st->pending != 0) {
            const int delta = st->pending - st->pos;
            const int price = delta > 0 ? bar.open + slip : bar.open - slip;
            record_fill(st, log, log_cap, t, delta, price, comm);
            st->pos = st->pending;
            st->entry = price;
            st->pending = 0;
        }
        // 2. stop-loss, then take-profit
        if (st->pos == 1) {
            if (bar.low <= st->entry - stop) {
                record_fill(st, log, log_cap, t, -1, min(bar.open, st->entry - stop) - slip, comm);
                st->pos = 0;
            } else if (bar.high >= st->entry + take) {
                record_fill(st, log, log_cap, t, -1, max(bar.open, st->entry + take) - slip, comm);
                st->pos = 0;
            }
        } else if (st->pos == -1) {
            if (bar.high >= st->entry + stop) {
                record_fill(st, log, log_cap, t, 1, max(bar.open, st->entry + stop) + slip, comm);
                st->pos = 0;
            } else if (bar.low <= st->entry - take) {
                record_fill(st, log, log_cap, t, 1, min(bar.open, st->entry - take) + slip, comm);
                st->pos = 0;
            }
        }
        // 3. the crossover signal at this close
        if (t + 1 >= slow) {
            const long long lhs = window_sum(rows, t, fast) * slow;
            const long long rhs = window_sum(rows, t, slow) * fast;
            const int side = lhs > rhs ? 1 : (lhs < rhs ? -1 : 0);
            if (side != 0 && side != st->regime) {
                st->regime = side;
                st->pending = side;
            }
        }
        // 4. mark to market
        const long long equity = st->cash + (long long)st->pos * bar.close;
        const long long d = equity - st->prev_equity;
        st->pnl_sum += d;
        st->pnl_sq_sum += d * d;
        st->prev_equity = equity;
        if (equity > st->peak) st->peak = equity;
        if (st->peak - equity > st->max_drawdown) st->max_drawdown = st->peak - equity;
    }
    if (log)
        for (long long k = 3 * (long long)st->logged; k < 3 * log_cap; ++k) log[k] = 0;
    pnl[pair] = st->prev_equity;
    fills[pair] = st->fills;
    max_drawdown[pair] = st->max_drawdown;
    pnl_sum[pair] = st->pnl_sum;
    pnl_sq_sum[pair] = st->pnl_sq_sum;
}
