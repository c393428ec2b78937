//! Benches and the load generator (`l2san-load`, see [`load`]).

pub mod load;
