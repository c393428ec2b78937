//! Benches and, later, the load generator: see benches/ and DESIGN.md.
