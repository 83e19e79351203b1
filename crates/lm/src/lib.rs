//! rdbench-lm (being built)
