//! fix-embedding (being built)
