//! The probe's listing as one JSON object (`probe --json`).

use std::fmt::Write as _;

use super::report::Report;

fn json_str(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The listing as one JSON object.
pub fn render_json(report: &Report, iface: &str) -> String {
    let mut s = String::new();
    let _ = write!(s, "{{\"interface\":{},\"aoe\":[", json_str(iface));
    for (i, a) in report.aoe.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        let _ = write!(
            s,
            "{{\"target\":\"e{}.{}\",\"shelf\":{},\"slot\":{},\"mac\":\"{}\",",
            a.shelf, a.slot, a.shelf, a.slot, a.mac
        );
        match &a.identify {
            Ok(id) => {
                let _ = write!(
                    s,
                    "\"sectors\":{},\"bytes\":{},\"lba48\":{},\"model\":{},\"serial\":{},\
                     \"ata_firmware\":{},\"identify_error\":null,",
                    id.sectors,
                    id.sectors * 512,
                    id.lba48,
                    json_str(&id.model),
                    json_str(&id.serial),
                    json_str(&id.firmware)
                );
            }
            Err(e) => {
                let _ = write!(
                    s,
                    "\"sectors\":null,\"bytes\":null,\"lba48\":null,\"model\":null,\
                     \"serial\":null,\"ata_firmware\":null,\"identify_error\":{},",
                    json_str(e)
                );
            }
        }
        let _ = write!(
            s,
            "\"sectors_per_frame\":{},\"buffer_count\":{},\"firmware_version\":\"0x{:04x}\",\
             \"config\":{},\"duplicate\":{}}}",
            a.sectors_per_frame,
            a.buffer_count,
            a.firmware_version,
            json_str(&String::from_utf8_lossy(&a.config)),
            a.duplicate
        );
    }
    s.push_str("],\"fcoe\":[");
    for (i, v) in report.fcoe.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        let heard: Vec<String> = v.heard.iter().map(|h| json_str(h)).collect();
        let _ = write!(
            s,
            "{{\"wwpn\":\"{}\",\"wwnn\":\"{}\",\"port_id\":\"0x{:06x}\",\"mac\":\"{}\",\
             \"enode_mac\":\"{}\",\"role\":{},\"max_fcoe_size\":{},\"heard\":[{}],\
             \"duplicate_port_id\":{},\"duplicate_wwpn\":{}}}",
            v.wwpn,
            v.wwnn,
            v.port_id.get(),
            v.vn_mac,
            v.enode_mac,
            json_str(v.role()),
            v.max_fcoe_size
                .map_or_else(|| "null".to_string(), |n| n.to_string()),
            heard.join(","),
            v.duplicate_port_id,
            v.duplicate_wwpn
        );
    }
    s.push_str("],\"warnings\":[");
    let warnings: Vec<String> = report.warnings.iter().map(|w| json_str(w)).collect();
    s.push_str(&warnings.join(","));
    let _ = writeln!(s, "],\"duplicates\":{}}}", report.has_duplicates());
    s
}
