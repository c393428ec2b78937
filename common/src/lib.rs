//! What l2san's targets share: the Ethernet wire format and MAC addresses, frame I/O
//! backends behind small traits, network-interface discovery, and the image store.
//!
//! Unsafe code lives only in [`io::sys`] (raw sockets and their rings) and in the store's
//! memory map and its SIGBUS guard, each behind a safe API: denied everywhere else.

#![deny(unsafe_code)]

pub mod ether;
pub mod io;
pub mod netif;
pub mod stats;
pub mod store;
pub mod sync;
#[cfg(any(test, feature = "test-utils"))]
pub mod test_utils;
pub mod worker;

pub use ether::{EtherType, EthernetFrame, MacAddr};
pub use io::{FrameRx, FrameTx, Transmit, TxBatch};
pub use netif::Interface;
pub use store::{Durability, Image, ImageOptions, StoreError};
pub use worker::{FrameHandler, WorkerRole, WorkerStats};
