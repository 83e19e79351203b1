//! The two budgets (per attempt, in the ledger; per scoring run, in memory) and the run's
//! usage summary.
//!
//! A request reserves an upper bound on its cost under one lock before it is forwarded, so
//! concurrent requests can never together be promised more than either budget holds; the
//! reply settles the reservation with the upstream's own count.

use serde::Serialize;

use crate::ledger::Ledger;
use crate::ProxyError;

/// What a scoring run used, for the score report.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Usage {
    /// Every call received, refused or not.
    pub requests: u64,
    /// Calls the proxy refused by its rules (never forwarded).
    pub refused: u64,
    /// Calls forwarded whose upstream failed (502/504).
    pub upstream_errors: u64,
    /// As the upstream counted them, over the calls that reported usage.
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    /// Tokens charged to this run's budget (reservations still open included).
    pub total: u64,
    /// Tokens charged to the attempt, earlier runs included (the ledger's total).
    pub attempt_total: u64,
}

/// A refused reservation: which budget and what is left of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OverBudget {
    pub scope: &'static str,
    pub needed: u64,
    pub left: u64,
}

/// A granted reservation; settle it exactly once.
#[derive(Debug)]
pub struct Reservation {
    id: u64,
    pub tokens: u64,
}

/// The budgets and counters, behind one lock of the server's.
#[derive(Debug)]
pub struct Accounts {
    ledger: Option<Ledger>,
    attempt_budget: Option<u64>,
    run_budget: Option<u64>,
    /// This run's charges, reservations still open included.
    run_spent: u64,
    /// Ids for reservations when there is no ledger.
    next_id: u64,
    usage: Usage,
}

impl Accounts {
    pub fn new(
        ledger: Option<Ledger>,
        attempt_budget: Option<u64>,
        run_budget: Option<u64>,
    ) -> Self {
        Accounts {
            ledger,
            attempt_budget,
            run_budget,
            run_spent: 0,
            next_id: 0,
            usage: Usage::default(),
        }
    }

    fn attempt_spent(&self) -> u64 {
        self.ledger.as_ref().map_or(self.run_spent, Ledger::spent)
    }

    /// Reserves `tokens` if both budgets hold them; the ledger's record is durable before this
    /// returns, so a crash after forwarding still charges it.
    pub fn reserve(&mut self, tokens: u64) -> Result<Result<Reservation, OverBudget>, ProxyError> {
        let checks = [
            ("attempt", self.attempt_budget, self.attempt_spent()),
            ("scoring run", self.run_budget, self.run_spent),
        ];
        for (scope, budget, spent) in checks {
            if let Some(budget) = budget {
                let left = budget.saturating_sub(spent);
                if tokens > left {
                    return Ok(Err(OverBudget {
                        scope,
                        needed: tokens,
                        left,
                    }));
                }
            }
        }
        let id = match &mut self.ledger {
            Some(ledger) => ledger.reserve(tokens)?,
            None => {
                self.next_id += 1;
                self.next_id
            }
        };
        self.run_spent = self.run_spent.saturating_add(tokens);
        Ok(Ok(Reservation { id, tokens }))
    }

    /// Charges `tokens` for a reservation instead of its bound. A failed ledger write is
    /// returned after the charge is made in memory (the file then keeps the full reservation).
    pub fn settle(&mut self, reservation: Reservation, tokens: u64) -> Result<(), ProxyError> {
        self.run_spent = self
            .run_spent
            .saturating_sub(reservation.tokens)
            .saturating_add(tokens);
        match &mut self.ledger {
            Some(ledger) => ledger.settle(reservation.id, tokens),
            None => Ok(()),
        }
    }

    pub fn usage_mut(&mut self) -> &mut Usage {
        &mut self.usage
    }

    /// The summary, with the current totals.
    pub fn usage(&self) -> Usage {
        Usage {
            total: self.run_spent,
            attempt_total: self.attempt_spent(),
            ..self.usage
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reservations_count_until_settled_and_both_budgets_bind() {
        let mut accounts = Accounts::new(None, None, Some(100));
        let a = accounts.reserve(60).unwrap().unwrap();
        let refused = accounts.reserve(50).unwrap().unwrap_err();
        assert_eq!((refused.scope, refused.left), ("scoring run", 40));
        accounts.settle(a, 10).unwrap();
        let b = accounts.reserve(90).unwrap().unwrap();
        assert_eq!(accounts.usage().total, 100);
        accounts.settle(b, 90).unwrap();
        assert!(accounts.reserve(1).unwrap().is_err());
    }
}
