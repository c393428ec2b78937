//! ATA over Ethernet (AoE r11) target, sans-IO.
//!
//! Three layers, each ignorant of the one above it:
//! - [`wire`]: parses and emits AoE bytes (header, ATA, config, mask, reserve arguments);
//! - [`ata`]: the ATA command set over an [`l2san_common::Image`] (IDENTIFY, READ/WRITE
//!   SECTORS (EXT), FLUSH CACHE (EXT), CHECK POWER MODE), with every failure mapped to the
//!   Status/Error registers;
//! - [`target`]: the protocol: validation, addressing, broadcast and reservation policy,
//!   config string, Mac Mask List, Reserve/Release, replies;
//! - [`initiator`]: the other side, sans-IO: request frames, tags, matching and decoding of
//!   responses, retransmission; what `l2san probe`, the load generator and the tests speak.
//!
//! The binary builds an [`AoeTarget`] from [`AoeExport`]s and feeds it received frames with
//! [`AoeTarget::handle_frame`]; replies are built in place in the caller's transmit buffers.
#![forbid(unsafe_code)]

pub mod ata;
pub mod initiator;
pub mod target;
pub mod wire;

pub use target::{
    AoeExport, AoeStats, AoeStatsSnapshot, AoeTarget, ClientStats, ClientStatsSnapshot,
    ExportState, ExportStats, ExportStatsSnapshot, Histogram, HistogramSnapshot, Reconfigured,
    DEFAULT_BUFFER_COUNT, FIRMWARE_VERSION, LATENCY_BOUNDS, MAX_CLIENTS,
};
