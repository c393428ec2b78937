//! The probe's listing as one JSON object (`probe --json`): `interface`, `aoe`, `fcoe`,
//! `warnings`, `duplicates`.
//!
//! The report types stay free of the output format: the document is a set of views borrowed
//! from the [`Report`], whose derived `Serialize` writes the keys in the order declared here.
//! Absent values (no IDENTIFY answer, no size in a beacon) are `null`, not missing keys.

use std::borrow::Cow;
use std::fmt::Display;

use l2san_common::MacAddr;
use l2san_fcoe::wire::Wwn;
use serde::{Serialize, Serializer};

use super::report::{AoeFound, Report, VnFound};

/// The listing as one JSON object, on one line.
pub fn render_json(report: &Report, iface: &str) -> serde_json::Result<String> {
    let doc = Document {
        interface: iface,
        aoe: report.aoe.iter().map(AoeJson::of).collect(),
        fcoe: report.fcoe.iter().map(VnJson::of).collect(),
        warnings: &report.warnings,
        duplicates: report.has_duplicates(),
    };
    let mut s = serde_json::to_string(&doc)?;
    s.push('\n');
    Ok(s)
}

#[derive(Serialize)]
struct Document<'a> {
    interface: &'a str,
    aoe: Vec<AoeJson<'a>>,
    fcoe: Vec<VnJson<'a>>,
    warnings: &'a [String],
    duplicates: bool,
}

/// One AoE target; the IDENTIFY fields are all `null` when `identify_error` is not.
#[derive(Serialize)]
struct AoeJson<'a> {
    /// `e<shelf>.<slot>`.
    target: String,
    shelf: u16,
    slot: u8,
    #[serde(serialize_with = "display")]
    mac: MacAddr,
    sectors: Option<u64>,
    bytes: Option<u64>,
    lba48: Option<bool>,
    model: Option<&'a str>,
    serial: Option<&'a str>,
    ata_firmware: Option<&'a str>,
    identify_error: Option<&'a str>,
    sectors_per_frame: u8,
    buffer_count: u16,
    /// `0x4c32`.
    firmware_version: String,
    /// The config string, bytes that are not UTF-8 replaced by U+FFFD.
    config: Cow<'a, str>,
    duplicate: bool,
}

impl<'a> AoeJson<'a> {
    fn of(a: &'a AoeFound) -> AoeJson<'a> {
        let id = a.identify.as_ref().ok();
        AoeJson {
            target: format!("e{}.{}", a.shelf, a.slot),
            shelf: a.shelf,
            slot: a.slot,
            mac: a.mac,
            sectors: id.map(|id| id.sectors),
            bytes: id.map(|id| id.sectors * 512),
            lba48: id.map(|id| id.lba48),
            model: id.map(|id| id.model.as_str()),
            serial: id.map(|id| id.serial.as_str()),
            ata_firmware: id.map(|id| id.firmware.as_str()),
            identify_error: a.identify.as_ref().err().map(String::as_str),
            sectors_per_frame: a.sectors_per_frame,
            buffer_count: a.buffer_count,
            firmware_version: format!("0x{:04x}", a.firmware_version),
            config: String::from_utf8_lossy(&a.config),
            duplicate: a.duplicate,
        }
    }
}

/// One VN2VN port.
#[derive(Serialize)]
struct VnJson<'a> {
    #[serde(serialize_with = "display")]
    wwpn: Wwn,
    #[serde(serialize_with = "display")]
    wwnn: Wwn,
    /// `0x0000a8`.
    port_id: String,
    /// The VN_Port's MAC.
    #[serde(serialize_with = "display")]
    mac: MacAddr,
    #[serde(serialize_with = "display")]
    enode_mac: MacAddr,
    role: &'static str,
    max_fcoe_size: Option<u16>,
    heard: Vec<&'a str>,
    duplicate_port_id: bool,
    duplicate_wwpn: bool,
}

impl<'a> VnJson<'a> {
    fn of(v: &'a VnFound) -> VnJson<'a> {
        VnJson {
            wwpn: v.wwpn,
            wwnn: v.wwnn,
            port_id: format!("0x{:06x}", v.port_id.get()),
            mac: v.vn_mac,
            enode_mac: v.enode_mac,
            role: v.role(),
            max_fcoe_size: v.max_fcoe_size,
            heard: v.heard.iter().copied().collect(),
            duplicate_port_id: v.duplicate_port_id,
            duplicate_wwpn: v.duplicate_wwpn,
        }
    }
}

/// A MAC or a WWN as the table shows it (`52:54:00:aa:bb:01`), as a JSON string.
fn display<T: Display, S: Serializer>(v: &T, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::probe::report::{AoeFound, Identity, VnFound};
    use l2san_fcoe::wire::fip::Fc4Features;
    use l2san_fcoe::wire::FcId;
    use serde_json::{json, Value};

    /// A report with every kind of entry: an identified and an unidentified AoE target, a
    /// VN2VN port heard in a claim response and one heard only in a beacon, and strings that
    /// need escaping.
    fn sample() -> Report {
        let mac = |last| MacAddr([0x52, 0x54, 0x00, 0xaa, 0xbb, last]);
        Report {
            aoe: vec![
                AoeFound {
                    shelf: 1,
                    slot: 2,
                    mac: mac(1),
                    buffer_count: 64,
                    firmware_version: 0x4c32,
                    sectors_per_frame: 2,
                    config: b"say \"hi\"\\\n\t\x01\xff".to_vec(),
                    identify: Ok(Identity {
                        sectors: 131072,
                        lba48: true,
                        model: "l2san".into(),
                        serial: "e1.2:\"vm\"".into(),
                        firmware: "0.1\u{7f}é".into(),
                    }),
                    duplicate: true,
                },
                AoeFound {
                    shelf: 65534,
                    slot: 255,
                    mac: mac(2),
                    buffer_count: 16,
                    firmware_version: 0x19,
                    sectors_per_frame: 17,
                    config: Vec::new(),
                    identify: Err("no answer to IDENTIFY".into()),
                    duplicate: false,
                },
            ],
            fcoe: vec![
                VnFound {
                    wwpn: Wwn(0x2000_5254_00aa_bb03),
                    wwnn: Wwn(0x1000_5254_00aa_bb03),
                    port_id: FcId::new(0x00bb03),
                    vn_mac: MacAddr([0x0e, 0xfd, 0x00, 0x00, 0xbb, 0x03]),
                    enode_mac: mac(3),
                    fc4: Some(Fc4Features::fcp(Fc4Features::FCP_TARGET)),
                    max_fcoe_size: Some(2158),
                    heard: ["claim response", "beacon"].into_iter().collect(),
                    duplicate_port_id: false,
                    duplicate_wwpn: true,
                },
                VnFound {
                    wwpn: Wwn(5),
                    wwnn: Wwn(6),
                    port_id: FcId::new(0xfffffe),
                    vn_mac: MacAddr([0x0e, 0xfd, 0x00, 0xff, 0xff, 0xfe]),
                    enode_mac: mac(4),
                    fc4: None,
                    max_fcoe_size: None,
                    heard: ["beacon"].into_iter().collect(),
                    duplicate_port_id: true,
                    duplicate_wwpn: false,
                },
            ],
            warnings: vec!["DUPLICATE e1.2: \"quoted\"\nsecond line".into()],
        }
    }

    const AOE_KEYS: [&str; 16] = [
        "target",
        "shelf",
        "slot",
        "mac",
        "sectors",
        "bytes",
        "lba48",
        "model",
        "serial",
        "ata_firmware",
        "identify_error",
        "sectors_per_frame",
        "buffer_count",
        "firmware_version",
        "config",
        "duplicate",
    ];
    const FCOE_KEYS: [&str; 10] = [
        "wwpn",
        "wwnn",
        "port_id",
        "mac",
        "enode_mac",
        "role",
        "max_fcoe_size",
        "heard",
        "duplicate_port_id",
        "duplicate_wwpn",
    ];
    const TOP_KEYS: [&str; 5] = ["interface", "aoe", "fcoe", "warnings", "duplicates"];

    fn keys(v: &Value) -> Vec<&str> {
        let mut k: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
        k.sort_unstable();
        k
    }

    fn sorted<const N: usize>(mut k: [&'static str; N]) -> Vec<&'static str> {
        k.sort_unstable();
        k.to_vec()
    }

    /// The output parses back as one object with every key, each value of its type.
    #[test]
    fn parses_back_with_every_key() {
        let text = render_json(&sample(), "eth\"0").unwrap();
        assert!(text.ends_with("}\n") && text.lines().count() == 1, "{text}");
        let doc: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(keys(&doc), sorted(TOP_KEYS));
        assert_eq!(doc["interface"], "eth\"0");
        assert_eq!(doc["duplicates"], true);
        assert_eq!(
            doc["warnings"],
            json!(["DUPLICATE e1.2: \"quoted\"\nsecond line"])
        );

        let aoe = doc["aoe"].as_array().unwrap();
        assert_eq!(aoe.len(), 2);
        for a in aoe {
            assert_eq!(keys(a), sorted(AOE_KEYS));
        }
        assert_eq!(
            aoe[0],
            json!({
                "target": "e1.2", "shelf": 1, "slot": 2, "mac": "52:54:00:aa:bb:01",
                "sectors": 131072, "bytes": 67108864, "lba48": true, "model": "l2san",
                "serial": "e1.2:\"vm\"", "ata_firmware": "0.1\u{7f}é", "identify_error": null,
                "sectors_per_frame": 2, "buffer_count": 64, "firmware_version": "0x4c32",
                "config": "say \"hi\"\\\n\t\u{1}\u{fffd}", "duplicate": true
            })
        );
        // No IDENTIFY answer: its fields are null, not missing.
        assert_eq!(
            aoe[1],
            json!({
                "target": "e65534.255", "shelf": 65534, "slot": 255,
                "mac": "52:54:00:aa:bb:02", "sectors": null, "bytes": null, "lba48": null,
                "model": null, "serial": null, "ata_firmware": null,
                "identify_error": "no answer to IDENTIFY", "sectors_per_frame": 17,
                "buffer_count": 16, "firmware_version": "0x0019", "config": "",
                "duplicate": false
            })
        );

        let fcoe = doc["fcoe"].as_array().unwrap();
        assert_eq!(fcoe.len(), 2);
        for v in fcoe {
            assert_eq!(keys(v), sorted(FCOE_KEYS));
        }
        assert_eq!(
            fcoe[0],
            json!({
                "wwpn": "20:00:52:54:00:aa:bb:03", "wwnn": "10:00:52:54:00:aa:bb:03",
                "port_id": "0x00bb03", "mac": "0e:fd:00:00:bb:03",
                "enode_mac": "52:54:00:aa:bb:03", "role": "FCP target", "max_fcoe_size": 2158,
                "heard": ["beacon", "claim response"], "duplicate_port_id": false,
                "duplicate_wwpn": true
            })
        );
        assert_eq!(
            fcoe[1],
            json!({
                "wwpn": "00:00:00:00:00:00:00:05", "wwnn": "00:00:00:00:00:00:00:06",
                "port_id": "0xfffffe", "mac": "0e:fd:00:ff:ff:fe",
                "enode_mac": "52:54:00:aa:bb:04", "role": "?", "max_fcoe_size": null,
                "heard": ["beacon"], "duplicate_port_id": true, "duplicate_wwpn": false
            })
        );
    }

    /// Nothing found: empty lists, no conflict.
    #[test]
    fn empty_report() {
        let doc: Value =
            serde_json::from_str(&render_json(&Report::default(), "eth0").unwrap()).unwrap();
        assert_eq!(
            doc,
            json!({"interface": "eth0", "aoe": [], "fcoe": [], "warnings": [], "duplicates": false})
        );
    }

    /// Compact, keys in the order they always had (scripts may read the text as it comes).
    #[test]
    fn compact_and_in_order() {
        let text = render_json(&sample(), "eth0").unwrap();
        assert!(
            !text.contains("\": ")
                && !text.contains(", \"")
                && text.contains("\"duplicates\":true"),
            "{text}"
        );
        let in_order = |object: &str, keys: &[&str]| {
            let at: Vec<usize> = keys
                .iter()
                .map(|k| object.find(&format!("\"{k}\":")).unwrap())
                .collect();
            assert!(at.is_sorted(), "{keys:?} out of order in {object}");
        };
        in_order(&text, &TOP_KEYS);
        let aoe = &text[text.find("\"aoe\":[{").unwrap()..];
        in_order(&aoe[..aoe.find('}').unwrap()], &AOE_KEYS);
        let fcoe = &text[text.find("\"fcoe\":[{").unwrap()..];
        in_order(&fcoe[..fcoe.find('}').unwrap()], &FCOE_KEYS);
    }
}
