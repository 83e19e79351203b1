//! prefix-sum
