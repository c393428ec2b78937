//! `l2san check-config FILE`: the file's problems, then the machine's (interfaces, images),
//! or a summary of what a clean file serves.

use std::process::ExitCode;

use l2san_common::{Durability, Image, ImageOptions, Interface};

use super::problem::sort_by_line;
use super::{durability_name, image_key, parse, read_config, validate, Plan, Problem};
use crate::cli::CheckConfigArgs;
use crate::Error;

/// What `check-config` checks beyond the file itself: that every interface exists and every
/// image opens (exists, readable, writable unless read-only, a whole number of sectors).
pub fn check_environment(plan: &Plan) -> Vec<Problem> {
    let mut out = Vec::new();
    for iface in &plan.interfaces {
        if let Err(e) = Interface::by_name(&iface.name) {
            out.push(iface.origin.problem("name", e));
        }
    }
    let mut seen = Vec::new();
    for e in &plan.exports {
        let key = image_key(&e.image.image);
        if seen.contains(&key) {
            continue;
        }
        seen.push(key);
        // Writeback, so that a sync export is not opened O_DSYNC for nothing; nothing is
        // written.
        let opts = ImageOptions {
            read_only: e.image.read_only,
            durability: Durability::Writeback,
        };
        if let Err(err) = Image::open(&e.image.image, opts) {
            out.push(e.origin.problem("image", err));
        }
    }
    out
}

/// `l2san check-config FILE`: every problem with its line; exit 0 when clean, 2 when not.
pub fn check(args: CheckConfigArgs) -> Result<ExitCode, Error> {
    let path = &args.file;
    let text = read_config(path)?;
    let name = path.display().to_string();
    let (plan, mut problems) = parse(&name, &text);
    if let Some(plan) = plan {
        problems.extend(validate(&plan));
        problems.extend(check_environment(&plan));
        if problems.is_empty() {
            print!("{}", summary(&name, &plan));
            return Ok(ExitCode::SUCCESS);
        }
    }
    sort_by_line(&mut problems);
    for p in &problems {
        println!("{p}");
    }
    println!(
        "{name}: {} problem{}",
        problems.len(),
        if problems.len() == 1 { "" } else { "s" }
    );
    Ok(ExitCode::from(2))
}

/// What a clean file serves, for `check-config`.
fn summary(name: &str, plan: &Plan) -> String {
    let mut s = format!(
        "{name}: OK: {} interface{}, {} export{}\n",
        plan.interfaces.len(),
        if plan.interfaces.len() == 1 { "" } else { "s" },
        plan.exports.len(),
        if plan.exports.len() == 1 { "" } else { "s" },
    );
    for (i, iface) in plan.interfaces.iter().enumerate() {
        let mac = Interface::by_name(&iface.name).map(|f| f.mac).ok();
        s += &format!("interface {}", iface.name);
        if let Some(mac) = mac {
            s += &format!(" ({mac})");
        }
        let names: Vec<String> = plan.exports_on(i).map(|e| e.origin.label.clone()).collect();
        s += &format!(": {}\n", names.join(", "));
    }
    for e in &plan.exports {
        let mut what = Vec::new();
        if let Some((shelf, slot)) = e.aoe {
            what.push(format!("AoE e{shelf}.{slot}"));
        }
        if let Some(lun) = e.lun {
            what.push(format!("FCoE LUN {lun}"));
        }
        s += &format!(
            "{}: {} ({}, {}), {}",
            e.origin.label,
            e.image.image.display(),
            if e.image.read_only {
                "read-only"
            } else {
                "read-write"
            },
            durability_name(e.image.durability),
            what.join(" and "),
        );
        if !e.image.allow.is_empty() {
            let macs: Vec<String> = e.image.allow.iter().map(|m| m.to_string()).collect();
            s += &format!(", AoE allowed to {}", macs.join(" "));
        }
        if !e.fcoe_allow.is_empty() {
            let who: Vec<String> = e.fcoe_allow.iter().map(|a| a.to_string()).collect();
            s += &format!(", FCoE allowed to {}", who.join(" "));
        }
        s += "\n";
    }
    s
}
