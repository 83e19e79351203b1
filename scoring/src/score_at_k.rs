//! score@k: the expected best score of k attempts drawn from an agent's n attempts at a task,
//! in closed form over order statistics (no sampling).
//!
//! With the n scores sorted ascending, `x(1) <= ... <= x(n)`:
//!
//! - **k <= n, without replacement** (RE-Bench): the best of a random k-subset is `x(i)` with
//!   probability `C(i-1, k-1) / C(n, k)`. At k = 1 this is the mean, at k = n the maximum, and it
//!   never decreases with k.
//! - **k > n, with replacement**: the best of k independent draws is at most `x(i)` with
//!   probability `(i/n)^k`, so `P(best = x(i)) = (i/n)^k - ((i-1)/n)^k`. It never decreases with k
//!   either, but it stays below the maximum, so moving from k = n (the maximum) to k = n + 1 can
//!   lower the estimate: more attempts would be needed to say more. Reports say which case each
//!   task used.
//! - **Hidden-score tasks** (the agent cannot see its score, RE-Bench's scaling-law task): the
//!   agent cannot pick its best attempt, so score@k is the mean for every k.

use serde::Serialize;

/// How score@k was computed for one task.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Method {
    /// Expected best of k distinct attempts (k <= n).
    WithoutReplacement,
    /// Expected best of k attempts drawn with replacement (k > n).
    WithReplacement,
    /// The mean attempt (hidden-score task).
    Mean,
}

/// Which method applies to `n` attempts, `k` draws, and a task that does or does not hide its
/// score.
pub fn method_for(n: usize, k: usize, hidden: bool) -> Method {
    if hidden {
        Method::Mean
    } else if k <= n {
        Method::WithoutReplacement
    } else {
        Method::WithReplacement
    }
}

/// score@k of unsorted scores. Panics if `scores` is empty or `k` is 0.
pub fn score_at_k(scores: &[f64], k: usize, hidden: bool) -> (f64, Method) {
    let mut sorted = scores.to_vec();
    sorted.sort_by(f64::total_cmp);
    let method = method_for(sorted.len(), k, hidden);
    (score_at_k_sorted(&sorted, k, method), method)
}

/// score@k of scores sorted ascending, by the given method. Panics if `sorted` is empty or `k`
/// is 0.
pub fn score_at_k_sorted(sorted: &[f64], k: usize, method: Method) -> f64 {
    let n = sorted.len();
    assert!(
        n > 0 && k > 0,
        "score@k needs at least one score and k >= 1"
    );
    match method {
        Method::Mean => sorted.iter().sum::<f64>() / n as f64,
        Method::WithoutReplacement => {
            assert!(k <= n, "without replacement needs k <= n");
            // Weight of the i-th smallest (1-based): C(i-1, k-1) / C(n, k). Start from the top,
            // w(n) = k / n, and step down with w(i-1) = w(i) * (i - k) / (i - 1).
            let mut w = k as f64 / n as f64;
            let mut total = 0.0;
            for i in (k..=n).rev() {
                total += w * sorted[i - 1];
                if i > 1 {
                    w *= (i - k) as f64 / (i - 1) as f64;
                }
            }
            total
        }
        Method::WithReplacement => {
            let nf = n as f64;
            let kk = k as i32;
            let mut prev = 0.0;
            let mut total = 0.0;
            for (i, x) in sorted.iter().enumerate() {
                let cdf = ((i + 1) as f64 / nf).powi(kk);
                total += (cdf - prev) * x;
                prev = cdf;
            }
            total
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn closed_form_small_cases() {
        // Best of 2 from {0, 1, 2}: pairs (0,1) (0,2) (1,2) -> 1, 2, 2 -> 5/3.
        let (v, m) = score_at_k(&[2.0, 0.0, 1.0], 2, false);
        assert_eq!(m, Method::WithoutReplacement);
        assert!((v - 5.0 / 3.0).abs() < 1e-12);
        // Best of 2 with replacement from {0, 1}: 0 w.p. 1/4 -> 3/4; here k = 2 <= n, so
        // ask for k = 3 from {0, 1}: 1 - 1/8.
        let (v, m) = score_at_k(&[0.0, 1.0], 3, false);
        assert_eq!(m, Method::WithReplacement);
        assert!((v - 7.0 / 8.0).abs() < 1e-12);
        // Hidden score: the mean.
        let (v, m) = score_at_k(&[0.0, 1.0, 0.5], 3, true);
        assert_eq!(m, Method::Mean);
        assert!((v - 0.5).abs() < 1e-12);
    }
}
