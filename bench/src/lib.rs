//! Benches and the load generator (`l2san-load`, see [`load`]).
#![forbid(unsafe_code)]

pub mod load;
