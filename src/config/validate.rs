//! The checks shared by the flags and the file: what a plan must hold, each problem located at
//! the key it is about and naming the other item it clashes with.

use std::collections::HashMap;
use std::path::PathBuf;

use l2san_fcoe::FcoeAllow;

use super::{durability_name, image_key, ExportPlan, OverlayPlan, Plan, Problem};

/// Longest AoE config string (AoE r11 §3.2).
const MAX_CONFIG_STRING: usize = 1024;

/// The checks shared by the flags and the file. Every problem, in the order found: the global
/// settings, then each interface, then each export.
pub fn validate(plan: &Plan) -> Vec<Problem> {
    let mut out = Vec::new();
    // After keys that could not be read, what looks missing may only be unread.
    let complete = !plan.incomplete;
    globals(plan, complete, &mut out);
    for i in 0..plan.interfaces.len() {
        interface(plan, i, complete, &mut out);
    }
    // By image: the first export of each, for the options check.
    let mut images: HashMap<PathBuf, &ExportPlan> = HashMap::new();
    for (i, e) in plan.exports.iter().enumerate() {
        let earlier = &plan.exports[..i];
        if e.aoe.is_none() && e.lun.is_none() && complete {
            out.push(e.origin.problem(
                "name",
                "exported neither over AoE nor over FCoE; add aoe = \"<shelf>.<slot>\" and/or fcoe-lun = <0-63>",
            ));
        }
        if let Some((shelf, slot)) = e.aoe {
            aoe_address(e, shelf, slot, earlier, &mut out);
            aoe_options(e, &mut out);
        }
        if let Some(lun) = e.lun {
            fcoe_lun(plan, e, lun, earlier, &mut out);
        }
        if let Some(o) = &e.overlay {
            overlay_dir(e, o, earlier, &mut out);
        }
        shared_image(e, &mut images, &mut out);
    }
    out
}

/// Something to serve on and to serve, and the global settings in range.
fn globals(plan: &Plan, complete: bool, out: &mut Vec<Problem>) {
    if plan.interfaces.is_empty() && complete {
        out.push(plan.origin.problem(
            "",
            "no interface to serve on; add [[interface]] with name = \"<iface>\"",
        ));
    }
    if plan.exports.is_empty() && complete {
        out.push(plan.origin.problem(
            "",
            "nothing to serve; add [[export]] with name, image and aoe = \"<shelf>.<slot>\" or fcoe-lun",
        ));
    }
    if let Some(w) = plan.workers {
        if !(1..=256).contains(&w) {
            out.push(
                plan.origin
                    .problem("workers", format!("workers {w} must be from 1 to 256")),
            );
        }
    }
    if plan.busy_poll_us > 100_000 {
        out.push(plan.origin.problem(
            "busy-poll-us",
            format!(
                "busy-poll-us {} must be from 0 to 100000 microseconds",
                plan.busy_poll_us
            ),
        ));
    }
    if !(1..=3600).contains(&plan.flush_interval) {
        out.push(plan.origin.problem(
            "flush-interval",
            format!(
                "flush-interval {} must be from 1 to 3600 seconds",
                plan.flush_interval
            ),
        ));
    }
}

/// Interface `i`: listed once, FCoE names of its own, and something served on it.
fn interface(plan: &Plan, i: usize, complete: bool, out: &mut Vec<Problem>) {
    let iface = &plan.interfaces[i];
    let earlier = &plan.interfaces[..i];
    if let Some(first) = earlier.iter().find(|o| o.name == iface.name) {
        out.push(iface.origin.problem(
            "name",
            format!(
                "listed twice{}; list each interface once",
                first.origin.line_of("name")
            ),
        ));
        return;
    }
    for (key, wwn) in [("wwpn", iface.wwpn), ("wwnn", iface.wwnn)] {
        let Some(wwn) = wwn else { continue };
        let clash = earlier
            .iter()
            .find(|o| o.wwpn == Some(wwn) || o.wwnn == Some(wwn));
        if let Some(other) = clash {
            out.push(iface.origin.problem(
                key,
                format!(
                    "{key} {wwn} is also {}'s{}; every FCoE port needs its own names \
                     (leave them out to derive them from each interface's MAC)",
                    other.name,
                    other.origin.line_of(key)
                ),
            ));
        }
    }
    if plan.exports_on(i).next().is_none() && !plan.exports.is_empty() && complete {
        out.push(iface.origin.problem(
            "name",
            format!(
                "no export is served on {}; name it in an export's interfaces, or remove it",
                iface.name
            ),
        ));
    }
}

/// An AoE address: not a broadcast one, and no other export's.
fn aoe_address(
    e: &ExportPlan,
    shelf: u16,
    slot: u8,
    earlier: &[ExportPlan],
    out: &mut Vec<Problem>,
) {
    if shelf == 0xffff {
        out.push(
            e.origin
                .problem("aoe", "shelf 65535 is the broadcast address; use 0-65534"),
        );
    }
    if slot == 0xff {
        out.push(
            e.origin
                .problem("aoe", "slot 255 is the broadcast address; use 0-254"),
        );
    }
    // An AoE address names one disk on the segment, whatever the interface: Linux
    // takes the same address seen on two NICs as two paths to one disk.
    if let Some(other) = earlier.iter().find(|o| o.aoe == e.aoe) {
        out.push(e.origin.problem(
            "aoe",
            format!(
                "e{shelf}.{slot} is already {}{}; give each export its own shelf.slot \
                 (one export may list several interfaces)",
                other.origin.label,
                other.origin.line_of("aoe")
            ),
        ));
    }
}

/// What an AoE export advertises and whom it allows.
fn aoe_options(e: &ExportPlan, out: &mut Vec<Problem>) {
    if e.buffer_count < 2 {
        out.push(e.origin.problem(
            "buffer-count",
            format!(
                "buffer-count {} is too small; use 2 or more (default 64)",
                e.buffer_count
            ),
        ));
    }
    if e.config_string.len() > MAX_CONFIG_STRING {
        out.push(e.origin.problem(
            "config-string",
            format!(
                "config-string is {} bytes; AoE allows at most {MAX_CONFIG_STRING}",
                e.config_string.len()
            ),
        ));
    }
    for mac in &e.image.allow {
        if mac.0[0] & 1 != 0 {
            out.push(e.origin.problem(
                "allow",
                format!("allow {mac} is a multicast or broadcast address, which no host sends from; list the initiators' own MACs"),
            ));
        }
    }
}

/// An FCoE LUN: in range, an allow-list of hosts, and no other export's on a shared interface.
fn fcoe_lun(plan: &Plan, e: &ExportPlan, lun: u16, earlier: &[ExportPlan], out: &mut Vec<Problem>) {
    let max = l2san_fcoe::scsi::MAX_LUNS;
    if lun as usize >= max {
        out.push(e.origin.problem(
            "fcoe-lun",
            format!("LUN {lun} is out of range; use 0-{}", max - 1),
        ));
    }
    for a in &e.fcoe_allow {
        if let FcoeAllow::Mac(mac) = a {
            if mac.0[0] & 1 != 0 {
                out.push(e.origin.problem(
                    "fcoe-allow",
                    format!("fcoe-allow {mac} is a multicast or broadcast address, which no host sends from; list the initiators' own MACs or WWPNs"),
                ));
            }
        }
    }
    // A LUN is per FCoE port, and each interface is a port of its own.
    let clash = earlier.iter().filter(|o| o.lun == Some(lun)).find_map(|o| {
        let shared = e.on.iter().find(|i| o.on.contains(i))?;
        Some((o, *shared))
    });
    if let Some((other, i)) = clash {
        out.push(e.origin.problem(
            "fcoe-lun",
            format!(
                "FCoE LUN {lun} on {} is already {}{}; give each LUN of an interface its own number",
                plan.interfaces.get(i).map_or("?", |f| f.name.as_str()),
                other.origin.label,
                other.origin.line_of("fcoe-lun")
            ),
        ));
    }
}

/// An overlay directory of its own.
fn overlay_dir(e: &ExportPlan, o: &OverlayPlan, earlier: &[ExportPlan], out: &mut Vec<Problem>) {
    if let Some(other) = earlier.iter().find(|x| {
        x.overlay
            .as_ref()
            .is_some_and(|p| image_key(&p.dir) == image_key(&o.dir))
    }) {
        out.push(e.origin.problem(
            "overlay-dir",
            format!(
                "overlay-dir {} is already {}'s{}; give each overlay export a directory of its own",
                o.dir.display(),
                other.origin.label,
                other.origin.line_of("overlay-dir")
            ),
        ));
    }
}

/// An image exported twice: one set of options, and a base of overlays never written.
/// `images` holds the first export of each image.
fn shared_image<'p>(
    e: &'p ExportPlan,
    images: &mut HashMap<PathBuf, &'p ExportPlan>,
    out: &mut Vec<Problem>,
) {
    let key = image_key(&e.image.image);
    match images.get(&key) {
        None => {
            images.insert(key, e);
        }
        Some(first) if first.overlay.is_some() != e.overlay.is_some() => {
            // A base is opened read-only and must never change under its overlays.
            let (base, other) = if e.overlay.is_some() {
                (e, *first)
            } else {
                (*first, e)
            };
            if !other.image.read_only {
                out.push(e.origin.problem(
                    "image",
                    format!(
                        "image {} is the base of {}'s overlays and written by {}; a base must never change: export it read-only there, or copy it",
                        e.image.image.display(),
                        base.origin.label,
                        other.origin.label
                    ),
                ));
            }
        }
        Some(first) => {
            let (a, b) = (&first.image, &e.image);
            let access = |read_only| if read_only { "read-only" } else { "read-write" };
            for (key, here, there) in [
                ("read-only", access(b.read_only), access(a.read_only)),
                (
                    "durability",
                    durability_name(b.durability),
                    durability_name(a.durability),
                ),
            ] {
                if here != there {
                    out.push(e.origin.problem(
                        key,
                        format!(
                            "image {} is {here} here but {there} in {}{}; give every export of one image the same {key}",
                            b.image.display(),
                            first.origin.label,
                            first.origin.line_of(key)
                        ),
                    ));
                }
            }
        }
    }
}
