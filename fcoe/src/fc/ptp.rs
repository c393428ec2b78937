//! Addressing of the non-FIP point-to-point N_Port, the personality iPXE talks to.
//!
//! iPXE gives up on FIP after a few seconds and sends a plain FCoE FLOGI to
//! `0E:FC:00:FF:FF:FE` (S_ID 0, D_ID FF.FF.FE): the default FC-MAP (FC-BB-6) followed by the
//! fabric F_Port's well-known address (FC-FS-3). We answer as an N_Port (F_PORT clear), so both
//! ends are in a point-to-point topology (FC-LS-3, FLOGI) and take their N_Port IDs by comparing
//! port names: the higher WWPN is `01.01.02`, the lower `01.01.01` (iPXE `fc_port_login`). Every
//! booting iPXE computes the same pair, so sessions are keyed by the client's MAC, never by its
//! port ID.
//!
//! iPXE's FIP VLAN requests and discovery solicitations are deliberately not answered: we are no
//! FCF (FC-BB-6, FIP), and the non-FIP fallback is what we serve.

use l2san_common::ether::MacAddr;

use crate::wire::{FcId, Wwn};

/// The destination of a non-FIP FLOGI: FC-MAP `0E:FC:00` ‖ `FF.FF.FE`.
pub const FLOGI_MAC: MacAddr = MacAddr([0x0e, 0xfc, 0x00, 0xff, 0xff, 0xfe]);
/// Point-to-point ID of the port with the higher WWPN.
pub const PTP_HIGH: FcId = FcId::new(0x01_0102);
/// Point-to-point ID of the port with the lower WWPN.
pub const PTP_LOW: FcId = FcId::new(0x01_0101);

/// `(our ID, their ID)` on a point-to-point link.
pub fn ptp_ids(ours: Wwn, theirs: Wwn) -> (FcId, FcId) {
    if ours > theirs {
        (PTP_HIGH, PTP_LOW)
    } else {
        (PTP_LOW, PTP_HIGH)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::fip::{fpma, DEFAULT_FC_MAP};

    #[test]
    fn ids_follow_ipxe() {
        // ipxe-fcoe-p2p-boot.pcap: iPXE 20:00:52:54:00:12:34:56 is 01.01.02, the target
        // 20:00:00:25:b5:00:00:01 is 01.01.01.
        let target = Wwn(0x2000_0025_b500_0001);
        let ipxe = Wwn(0x2000_5254_0012_3456);
        assert_eq!(ptp_ids(target, ipxe), (PTP_LOW, PTP_HIGH));
        assert_eq!(ptp_ids(ipxe, target), (PTP_HIGH, PTP_LOW));
    }

    #[test]
    fn flogi_mac_is_the_default_fc_map_and_ff_ff_fe() {
        assert_eq!(FLOGI_MAC, fpma(DEFAULT_FC_MAP, FcId::FLOGI));
    }
}
