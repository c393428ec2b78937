//! Linux raw-socket backends and the few other system calls the workers need. The only socket
//! and signal `unsafe` in l2san lives below this module.

pub mod packet;
pub mod privilege;
pub mod signal;
pub mod xdp;

pub use packet::{PacketRx, PacketSocket, PacketTx, RingStats};
