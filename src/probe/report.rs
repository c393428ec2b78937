//! What the probe found: the AoE targets and VN2VN ports, with their conflicts flagged.

use std::collections::BTreeSet;

use l2san_common::MacAddr;
use l2san_fcoe::wire::fip::Fc4Features;
use l2san_fcoe::wire::{FcId, Wwn};

/// One (MAC, shelf.slot) that answered a Query Config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AoeFound {
    pub shelf: u16,
    pub slot: u8,
    pub mac: MacAddr,
    pub buffer_count: u16,
    pub firmware_version: u16,
    /// Sectors per frame (the config response's Sector Count).
    pub sectors_per_frame: u8,
    pub config: Vec<u8>,
    pub identify: Result<Identity, String>,
    /// Another MAC answered for the same shelf.slot.
    pub duplicate: bool,
}

/// What IDENTIFY DEVICE told.
pub use l2san_aoe::initiator::IdentifyInfo as Identity;

/// One VN2VN port heard on the segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VnFound {
    pub wwpn: Wwn,
    pub wwnn: Wwn,
    pub port_id: FcId,
    pub vn_mac: MacAddr,
    pub enode_mac: MacAddr,
    /// From a claim or claim response (beacons carry none).
    pub fc4: Option<Fc4Features>,
    pub max_fcoe_size: Option<u16>,
    /// What it was heard in: "claim response", "beacon", "claim", "probe reply".
    pub heard: BTreeSet<&'static str>,
    pub duplicate_port_id: bool,
    pub duplicate_wwpn: bool,
}

impl VnFound {
    /// "FCP target", "FCP initiator", "FCP target+initiator", "no FCP", or "?" (beacon only).
    pub fn role(&self) -> &'static str {
        let Some(f) = &self.fc4 else { return "?" };
        if !f.has_type(Fc4Features::TYPE_FCP) {
            return "no FCP";
        }
        let bits = f.features_of(Fc4Features::TYPE_FCP);
        match (
            bits & Fc4Features::FCP_TARGET != 0,
            bits & Fc4Features::FCP_INITIATOR != 0,
        ) {
            (true, true) => "FCP target+initiator",
            (true, false) => "FCP target",
            (false, true) => "FCP initiator",
            (false, false) => "FCP",
        }
    }
}

/// Everything the probe found.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// Sorted by shelf.slot, then MAC.
    pub aoe: Vec<AoeFound>,
    /// Sorted by port ID, then WWPN.
    pub fcoe: Vec<VnFound>,
    /// One line per conflict.
    pub warnings: Vec<String>,
}

impl Report {
    pub fn has_duplicates(&self) -> bool {
        self.aoe.iter().any(|a| a.duplicate)
            || self
                .fcoe
                .iter()
                .any(|v| v.duplicate_port_id || v.duplicate_wwpn)
    }
}
