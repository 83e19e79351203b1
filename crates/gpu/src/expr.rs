//! expr (being written)
