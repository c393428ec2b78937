//! End-to-end test rigs.
