//! Linux raw-socket backends. The only socket `unsafe` in l2san lives below this module.

pub mod packet;

pub use packet::{PacketRx, PacketSocket, PacketTx};
