//! Per-LUN allow-lists: which LUNs a login may see.
//!
//! Each LUN may carry an allow-list of initiator WWPNs and/or MACs; an empty list lets every
//! initiator in. A session's initiator (the WWPN of its FLOGI/PLOGI and its ENode MAC: the
//! Ethernet source of the FIP FLOGI for VN2VN, of its login frames for point-to-point) sees
//! only the LUNs that allow it: REPORT LUNS lists only those, and a command to any other LUN
//! is answered exactly as for an absent LUN (05/25/00; peripheral qualifier 011b for
//! INQUIRY). A login from an initiator that no LUN allows is refused with LS_RJT, so it
//! learns nothing beyond the rejection. (Our VN2VN claims and beacons are multicast and
//! cannot be hidden: every host on the segment sees that a target is there.)

use std::fmt;
use std::str::FromStr;

use l2san_common::ether::MacAddr;

use crate::scsi::MAX_LUNS;
use crate::wire::Wwn;

/// One entry of a LUN's allow-list: an initiator's port name or its ENode MAC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FcoeAllow {
    Wwpn(Wwn),
    Mac(MacAddr),
}

impl fmt::Display for FcoeAllow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FcoeAllow::Wwpn(w) => w.fmt(f),
            FcoeAllow::Mac(m) => m.fmt(f),
        }
    }
}

/// Why an allow-list entry did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("'{0}' is neither a WWPN (8 octets, 20:00:52:54:00:12:34:56) nor a MAC address (6 octets, 52:54:00:12:34:56)")]
pub struct BadAllow(pub String);

impl FromStr for FcoeAllow {
    type Err = BadAllow;
    /// A WWPN has 8 octets, a MAC 6 (`:` or `-` between them); 16 hex digits are a WWPN.
    fn from_str(s: &str) -> Result<FcoeAllow, BadAllow> {
        let octets = s.split([':', '-']).count();
        let parsed = if octets == 6 {
            s.parse().ok().map(FcoeAllow::Mac)
        } else {
            s.parse().ok().map(FcoeAllow::Wwpn)
        };
        parsed.ok_or_else(|| BadAllow(s.to_string()))
    }
}

/// The allow-lists of a port's LUNs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Access {
    /// Bit n set when LUN n lets everyone in (no allow-list).
    open: u64,
    /// The LUNs with an allow-list, and the list.
    lists: Vec<(u64, Vec<FcoeAllow>)>,
}

/// Bit of LUN `lun` in a visibility mask (none past [`MAX_LUNS`]).
fn bit(lun: u64) -> u64 {
    if lun < MAX_LUNS as u64 {
        1 << lun
    } else {
        0
    }
}

impl Access {
    /// From each LUN's number and allow-list (empty: everyone).
    pub fn new(luns: impl IntoIterator<Item = (u64, Vec<FcoeAllow>)>) -> Access {
        let mut a = Access::default();
        for (lun, list) in luns {
            if list.is_empty() {
                a.open |= bit(lun);
            } else {
                a.lists.push((lun, list));
            }
        }
        a
    }

    /// LUN `lun`'s allow-list (empty: everyone).
    pub fn list(&self, lun: u64) -> &[FcoeAllow] {
        self.lists
            .iter()
            .find(|(l, _)| *l == lun)
            .map_or(&[], |(_, list)| list)
    }

    /// No LUN has an allow-list: every initiator sees everything.
    pub fn unrestricted(&self) -> bool {
        self.lists.is_empty()
    }

    /// The LUNs the initiator `wwpn` at `mac` may see, as a mask over LUN numbers; `None`
    /// when it may see none and must not log in. Without any allow-list, every bit is set.
    pub fn visible(&self, wwpn: Wwn, mac: MacAddr) -> Option<u64> {
        if self.unrestricted() {
            return Some(u64::MAX);
        }
        let mut mask = self.open;
        for (lun, list) in &self.lists {
            if list
                .iter()
                .any(|a| *a == FcoeAllow::Wwpn(wwpn) || *a == FcoeAllow::Mac(mac))
            {
                mask |= bit(*lun);
            }
        }
        (mask != 0).then_some(mask)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_wwpns_and_macs() {
        assert_eq!(
            "20:00:52:54:00:12:34:56".parse(),
            Ok(FcoeAllow::Wwpn(Wwn(0x2000_5254_0012_3456)))
        );
        assert_eq!(
            "52:54:00:12:34:56".parse(),
            Ok(FcoeAllow::Mac(MacAddr([0x52, 0x54, 0, 0x12, 0x34, 0x56])))
        );
        assert_eq!(
            "2000525400123456".parse(),
            Ok(FcoeAllow::Wwpn(Wwn(0x2000_5254_0012_3456)))
        );
        for bad in ["", "nope", "52:54:00:12:34", "20:00:52:54:00:12:34:zz"] {
            assert!(bad.parse::<FcoeAllow>().is_err(), "{bad}");
        }
    }

    #[test]
    fn masks() {
        let w = Wwn(0x2000_0000_0000_0001);
        let m = MacAddr([2, 0, 0, 0, 0, 1]);
        let a = Access::new([(0, vec![]), (1, vec![])]);
        assert_eq!(a.visible(w, m), Some(u64::MAX));
        let a = Access::new([(0, vec![FcoeAllow::Mac(m)]), (1, vec![FcoeAllow::Wwpn(w)])]);
        assert_eq!(a.visible(w, MacAddr([2; 6])), Some(0b10));
        assert_eq!(a.visible(Wwn(5), m), Some(0b01));
        assert_eq!(a.visible(Wwn(5), MacAddr([2; 6])), None);
        let a = Access::new([(0, vec![]), (3, vec![FcoeAllow::Wwpn(w)])]);
        assert_eq!(a.visible(Wwn(5), m), Some(0b0001));
        assert_eq!(a.visible(w, m), Some(0b1001));
    }
}
