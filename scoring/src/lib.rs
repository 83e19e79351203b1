//! rdbench-scoring (being built).
