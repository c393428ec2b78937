//! AoE target.
#![forbid(unsafe_code)]
