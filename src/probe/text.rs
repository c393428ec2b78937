//! The probe's listing as a table, one line per target or port, then the warnings.

use std::fmt::Write as _;

use super::report::Report;

/// `64 MiB`, `1.5 GiB`, `512 B`.
pub fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut unit = 0;
    while unit + 1 < UNITS.len() && bytes >= 1u64 << (10 * (unit + 1)) {
        unit += 1;
    }
    let div = 1u64 << (10 * unit);
    if bytes.is_multiple_of(div) {
        format!("{} {}", bytes / div, UNITS[unit])
    } else {
        format!("{:.1} {}", bytes as f64 / div as f64, UNITS[unit])
    }
}

fn quoted(bytes: &[u8]) -> String {
    format!("\"{}\"", bytes.escape_ascii())
}

/// The human-readable listing.
pub fn render_text(report: &Report, iface: &str) -> String {
    let mut s = String::new();
    if report.aoe.is_empty() {
        let _ = writeln!(s, "no AoE targets answered on {iface}");
    }
    for a in &report.aoe {
        let size = match &a.identify {
            Ok(id) => format!("{} ({} sectors)", human_size(id.sectors * 512), id.sectors),
            Err(e) => format!("size unknown ({e})"),
        };
        let _ = write!(
            s,
            "AoE   e{}.{}  {}  {}  sectors/frame {}  buffers {}  fw 0x{:04x}  config {}",
            a.shelf,
            a.slot,
            a.mac,
            size,
            a.sectors_per_frame,
            a.buffer_count,
            a.firmware_version,
            quoted(&a.config),
        );
        if let Ok(id) = &a.identify {
            let _ = write!(
                s,
                "  model {}  serial {}",
                quoted(id.model.as_bytes()),
                quoted(id.serial.as_bytes())
            );
        }
        if a.duplicate {
            s.push_str("  DUPLICATE");
        }
        s.push('\n');
    }
    if report.fcoe.is_empty() {
        let _ = writeln!(s, "no FCoE VN2VN ports answered on {iface}");
    }
    for v in &report.fcoe {
        let heard: Vec<&str> = v.heard.iter().copied().collect();
        let _ = write!(
            s,
            "FCoE  WWPN {}  WWNN {}  port ID 0x{:06x}  MAC {}  ENode {}  {}  (heard: {})",
            v.wwpn,
            v.wwnn,
            v.port_id.get(),
            v.vn_mac,
            v.enode_mac,
            v.role(),
            heard.join(", ")
        );
        if v.duplicate_port_id {
            s.push_str("  DUPLICATE port ID");
        }
        if v.duplicate_wwpn {
            s.push_str("  DUPLICATE WWPN");
        }
        s.push('\n');
    }
    for w in &report.warnings {
        let _ = writeln!(s, "warning: {w}");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        // The IDENTIFY block is read by l2san_aoe::ata::identify::parse, tested there.
        assert_eq!(human_size(64 << 20), "64 MiB");
        assert_eq!(human_size(512), "512 B");
        assert_eq!(human_size(3 << 29), "1.5 GiB");
    }
}
