//! The configuration file (`l2san serve --config FILE`, `l2san check-config FILE`) and the
//! [`Plan`] that `serve` carries out.
//!
//! Both the command-line flags and the file become one `Plan`, and both go through the same
//! [`validate`]: duplicate AoE addresses, duplicate LUNs, one image with two sets of options,
//! broadcast shelf or slot, LUN range, buffer count... Each plan item keeps its [`Origin`]: the
//! file and line of every key it came from, so that every problem of a file is reported with
//! its line, all at once (a derived `Deserialize` would stop at the first).
//!
//! ```toml
//! state-file = "/var/lib/l2san/state"
//!
//! [[interface]]
//! name = "eth1"
//!
//! [[export]]
//! name = "golden"
//! image = "/srv/golden.img"
//! read-only = true
//! aoe = "1.0"
//! fcoe-lun = 0
//! ```
//!
//! Merge rule with the flags of `serve`: `--config` may not be combined with the flags that
//! name interfaces or exports (`-i`, `--aoe`, `--fcoe`, `--wwpn`, `--wwnn`, `--buffer-count`);
//! the global flags (`--state-file`, `--user`, `--backend`, `--workers`, `--flush-interval`,
//! `--busy-poll-us`, `--metrics`, `--ctl-socket`) override the file's keys of the same name.

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use l2san_common::store::overlay::{OverlayPolicy, DEFAULT_RESET_AFTER};
use l2san_common::worker::Backend;
use l2san_common::{Durability, Image, ImageOptions, Interface, MacAddr};
use l2san_fcoe::wire::Wwn;
use l2san_fcoe::FcoeAllow;
use toml::de::{DeTable, DeValue};
use toml::Spanned;

use crate::cli::{CheckConfigArgs, ImageSpec, ServeArgs};
use crate::Error;

/// Defaults shared by the flags and the file.
pub const DEFAULT_BUFFER_COUNT: u16 = 64;
pub const DEFAULT_FLUSH_INTERVAL: u64 = 5;
/// Where `serve` listens for `l2san ctl` unless told otherwise.
pub const DEFAULT_CTL_SOCKET: &str = "/run/l2san.sock";
/// Longest AoE config string (AoE r11 §3.2).
const MAX_CONFIG_STRING: usize = 1024;

/// What `serve` does: the interfaces, the exports on them, and the global settings.
#[derive(Debug, Clone)]
pub struct Plan {
    pub interfaces: Vec<IfacePlan>,
    pub exports: Vec<ExportPlan>,
    pub state_file: Option<PathBuf>,
    pub user: Option<String>,
    pub backend: Backend,
    /// Worker threads per interface (default: one per core; one on two cores or fewer).
    pub workers: Option<u16>,
    pub flush_interval: u64,
    /// Latency mode: how long a worker spins for the next frame (0: off).
    pub busy_poll_us: u64,
    /// Silence after which a boot start discards a `reset` overlay.
    pub overlay_reset_after: Duration,
    /// Where to serve Prometheus metrics over HTTP (off: None).
    pub metrics: Option<SocketAddr>,
    /// The control socket's path; empty: no control socket.
    pub ctl_socket: PathBuf,
    /// Where the global keys came from.
    pub origin: Origin,
    /// Some keys of the file could not be read: [`validate`] then skips its checks for
    /// missing things (an export without AoE or FCoE, an interface without exports), which
    /// would only repeat those problems.
    pub incomplete: bool,
}

/// One interface to serve on.
#[derive(Debug, Clone)]
pub struct IfacePlan {
    pub name: String,
    /// FCoE port and node names (default `20:00:<mac>`, `10:00:<mac>`).
    pub wwpn: Option<Wwn>,
    pub wwnn: Option<Wwn>,
    pub origin: Origin,
}

/// One image exported over AoE, FCoE or both, on some of the interfaces.
#[derive(Debug, Clone)]
pub struct ExportPlan {
    /// The `name` of its `[[export]]`; for the flags, the flag (`--aoe 0.0`).
    pub name: String,
    /// The image, `ro`, durability and the AoE allow-list.
    pub image: ImageSpec,
    /// AoE shelf and slot.
    pub aoe: Option<(u16, u8)>,
    /// FCoE LUN.
    pub lun: Option<u16>,
    /// The FCoE allow-list: initiator WWPNs and ENode MACs that may see the LUN (empty:
    /// every initiator). The others find no such LUN, and an initiator that no LUN of the
    /// interface allows cannot log in.
    pub fcoe_allow: Vec<FcoeAllow>,
    pub buffer_count: u16,
    /// Initial AoE config string (a state file, if any, has the last word).
    pub config_string: Vec<u8>,
    /// Per-client copy-on-write overlays over the image (opened read-only then).
    pub overlay: Option<OverlayPlan>,
    /// Indexes into [`Plan::interfaces`].
    pub on: Vec<usize>,
    pub origin: Origin,
}

/// An export's overlays: the policy and the directory of their files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OverlayPlan {
    pub policy: OverlayPolicy,
    pub dir: PathBuf,
}

impl Plan {
    /// The exports served on interface `i`.
    pub fn exports_on(&self, i: usize) -> impl Iterator<Item = &ExportPlan> {
        self.exports.iter().filter(move |e| e.on.contains(&i))
    }

    /// The plan for `l2san serve`: from `--config`, or from the flags. Every problem found is
    /// in the error (exit code 2).
    pub fn for_serve(args: &ServeArgs) -> Result<Plan, Error> {
        let Some(path) = &args.config else {
            return Plan::from_flags(args).map_err(|p| problems_error(None, &p));
        };
        let clash: Vec<&str> = [
            (args.interface.is_some(), "-i/--interface"),
            (!args.aoe.is_empty(), "--aoe"),
            (!args.fcoe.is_empty(), "--fcoe"),
            (args.wwpn.is_some(), "--wwpn"),
            (args.wwnn.is_some(), "--wwnn"),
            (args.buffer_count.is_some(), "--buffer-count"),
        ]
        .into_iter()
        .filter_map(|(given, flag)| given.then_some(flag))
        .collect();
        if !clash.is_empty() {
            return Err(Error::Usage(format!(
                "{} cannot be combined with --config: the file names the interfaces and exports; \
                 put them in {} (or serve without --config)",
                clash.join(", "),
                path.display()
            )));
        }
        let text = read_config(path)?;
        let (plan, mut problems) = parse(&path.display().to_string(), &text);
        if let Some(mut plan) = plan {
            plan.apply_global_flags(args);
            problems.extend(validate(&plan));
            if problems.is_empty() {
                return Ok(plan);
            }
        }
        sort_by_line(&mut problems);
        Err(problems_error(Some(path), &problems))
    }

    /// The plan of the flags: one interface, `--aoe` and `--fcoe` exports on it.
    pub fn from_flags(args: &ServeArgs) -> Result<Plan, Vec<Problem>> {
        let Some(name) = &args.interface else {
            return Err(vec![Problem::new(
                None,
                "no interface: give -i <iface> (or --config <file>)",
            )]);
        };
        let label = |what: &str, image: &ImageSpec| Origin {
            label: format!("{what}={}", image.image.display()),
            ..Origin::default()
        };
        let buffer_count = args.buffer_count.unwrap_or(DEFAULT_BUFFER_COUNT);
        let mut exports = Vec::new();
        for a in &args.aoe {
            exports.push(ExportPlan {
                name: format!("--aoe {}.{}", a.shelf, a.slot),
                image: a.image.clone(),
                aoe: Some((a.shelf, a.slot)),
                lun: None,
                fcoe_allow: Vec::new(),
                buffer_count,
                config_string: Vec::new(),
                overlay: None,
                on: vec![0],
                origin: label(&format!("--aoe {}.{}", a.shelf, a.slot), &a.image),
            });
        }
        for f in &args.fcoe {
            exports.push(ExportPlan {
                name: format!("--fcoe {}", f.lun),
                image: f.image.clone(),
                aoe: None,
                lun: Some(f.lun),
                fcoe_allow: f.allow.clone(),
                buffer_count,
                config_string: Vec::new(),
                overlay: None,
                on: vec![0],
                origin: label(&format!("--fcoe {}", f.lun), &f.image),
            });
        }
        let mut plan = Plan {
            interfaces: vec![IfacePlan {
                name: name.clone(),
                wwpn: args.wwpn,
                wwnn: args.wwnn,
                origin: Origin {
                    label: format!("interface {name}"),
                    ..Origin::default()
                },
            }],
            exports,
            state_file: None,
            user: None,
            backend: Backend::default(),
            workers: None,
            flush_interval: DEFAULT_FLUSH_INTERVAL,
            busy_poll_us: 0,
            overlay_reset_after: DEFAULT_RESET_AFTER,
            metrics: None,
            ctl_socket: PathBuf::from(DEFAULT_CTL_SOCKET),
            origin: Origin::default(),
            incomplete: false,
        };
        plan.apply_global_flags(args);
        let problems = validate(&plan);
        if problems.is_empty() {
            Ok(plan)
        } else {
            Err(problems)
        }
    }

    /// The global flags given on the command line win over the file.
    fn apply_global_flags(&mut self, args: &ServeArgs) {
        if let Some(p) = &args.state_file {
            self.state_file = Some(p.clone());
        }
        if let Some(u) = &args.user {
            self.user = Some(u.clone());
        }
        if let Some(b) = args.backend {
            self.backend = b;
        }
        if let Some(w) = args.workers {
            self.workers = Some(w);
        }
        if let Some(f) = args.flush_interval {
            self.flush_interval = f;
        }
        if let Some(b) = args.busy_poll_us {
            self.busy_poll_us = b;
        }
        if let Some(m) = args.metrics {
            self.metrics = Some(m);
        }
        if let Some(p) = &args.ctl_socket {
            self.ctl_socket = PathBuf::from(p);
        }
    }
}

fn read_config(path: &Path) -> Result<String, Error> {
    std::fs::read_to_string(path).map_err(|e| {
        Error::Usage(format!(
            "cannot read config file {}: {e}; check the path and its permissions",
            path.display()
        ))
    })
}

/// One error for a list of problems: a single problem as it is, several one per line.
fn problems_error(file: Option<&Path>, problems: &[Problem]) -> Error {
    if let [one] = problems {
        return Error::Usage(one.to_string());
    }
    let mut msg = match file {
        Some(f) => format!(
            "{} problems in {} (l2san check-config {1} lists them too):",
            problems.len(),
            f.display()
        ),
        None => format!("{} problems:", problems.len()),
    };
    for p in problems {
        msg += &format!("\n  {p}");
    }
    Error::Usage(msg)
}

/// A place in the config file: 1-based line and column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Loc {
    pub file: Arc<str>,
    pub line: usize,
    pub col: usize,
}

impl fmt::Display for Loc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.file, self.line, self.col)
    }
}

/// Where a plan item came from: its name in messages and, for the file, where each key is.
#[derive(Debug, Clone, Default)]
pub struct Origin {
    /// `export "pc1"`, `interface "eth1"`, or `--aoe 1.0=/srv/pc1.img` on the command line.
    pub label: String,
    /// The `[[export]]` or `[[interface]]` table itself.
    table: Option<Loc>,
    /// Each key of the table.
    keys: Vec<(&'static str, Loc)>,
}

impl Origin {
    /// Where `key` is, else where the table is.
    pub fn at(&self, key: &str) -> Option<Loc> {
        self.keys
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, l)| l.clone())
            .or_else(|| self.table.clone())
    }

    /// A problem with this item, located at `key`.
    pub fn problem(&self, key: &str, msg: impl fmt::Display) -> Problem {
        let message = if self.label.is_empty() {
            msg.to_string()
        } else {
            format!("{}: {msg}", self.label)
        };
        Problem {
            at: self.at(key),
            message,
        }
    }

    /// `file:line:col` of `key`, for messages about another item.
    fn line_of(&self, key: &str) -> String {
        self.at(key)
            .map(|l| format!(" (line {})", l.line))
            .unwrap_or_default()
    }
}

/// One problem: where, and what to do about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub at: Option<Loc>,
    pub message: String,
}

impl Problem {
    pub fn new(at: Option<Loc>, message: impl Into<String>) -> Problem {
        Problem {
            at,
            message: message.into(),
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.at {
            Some(at) => write!(f, "{at}: {}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

/// The canonical path of an image, so that two spellings of one file are one image.
pub fn image_key(path: &Path) -> PathBuf {
    std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf())
}

fn durability_name(d: Durability) -> &'static str {
    match d {
        Durability::Writeback => "writeback",
        Durability::Sync => "sync",
    }
}

/// The checks shared by the flags and the file. Every problem, in the order found.
pub fn validate(plan: &Plan) -> Vec<Problem> {
    let mut out = Vec::new();
    let complete = !plan.incomplete;
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

    for (i, iface) in plan.interfaces.iter().enumerate() {
        if let Some(first) = plan.interfaces[..i].iter().find(|o| o.name == iface.name) {
            out.push(iface.origin.problem(
                "name",
                format!(
                    "listed twice{}; list each interface once",
                    first.origin.line_of("name")
                ),
            ));
            continue;
        }
        for (key, wwn) in [("wwpn", iface.wwpn), ("wwnn", iface.wwnn)] {
            let Some(wwn) = wwn else { continue };
            let clash = plan.interfaces[..i]
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
        if let Some(lun) = e.lun {
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
        if let Some(o) = &e.overlay {
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
                if a.read_only != b.read_only {
                    out.push(e.origin.problem(
                        "read-only",
                        format!(
                            "image {} is read-{} here but read-{} in {}{}; give every export of one image the same read-only",
                            b.image.display(),
                            if b.read_only { "only" } else { "write" },
                            if a.read_only { "only" } else { "write" },
                            first.origin.label,
                            first.origin.line_of("read-only")
                        ),
                    ));
                }
                if a.durability != b.durability {
                    out.push(e.origin.problem(
                        "durability",
                        format!(
                            "image {} is {} here but {} in {}{}; give every export of one image the same durability",
                            b.image.display(),
                            durability_name(b.durability),
                            durability_name(a.durability),
                            first.origin.label,
                            first.origin.line_of("durability")
                        ),
                    ));
                }
            }
        }
    }
    out
}

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

/// Problems in file order (those with no line keep their place at the end).
fn sort_by_line(problems: &mut [Problem]) {
    problems.sort_by_key(|p| p.at.as_ref().map_or((usize::MAX, 0), |l| (l.line, l.col)));
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

// ---------------------------------------------------------------------------------------------
// The file.

const GLOBAL_KEYS: &[&str] = &[
    "overlay-reset-after",
    "state-file",
    "user",
    "backend",
    "workers",
    "flush-interval",
    "busy-poll-us",
    "metrics",
    "ctl-socket",
    "interface",
    "export",
];
const INTERFACE_KEYS: &[&str] = &["name", "wwpn", "wwnn"];
const EXPORT_KEYS: &[&str] = &[
    "name",
    "image",
    "read-only",
    "durability",
    "aoe",
    "fcoe-lun",
    "fcoe-allow",
    "interfaces",
    "allow",
    "buffer-count",
    "config-string",
    "overlay",
    "overlay-dir",
];

/// Parse a config file into a plan, not yet [`validate`]d, and every problem found with its
/// line. `file` names it in messages. No plan after a syntax error; after other problems, the
/// plan holds what could be read (see [`Plan::incomplete`]).
pub fn parse(file: &str, text: &str) -> (Option<Plan>, Vec<Problem>) {
    let mut p = Parser {
        file: Arc::from(file),
        line_starts: std::iter::once(0)
            .chain(text.match_indices('\n').map(|(i, _)| i + 1))
            .collect(),
        text,
        problems: Vec::new(),
    };
    let (doc, errors) = DeTable::parse_recoverable(text);
    if !errors.is_empty() {
        // What follows a syntax error is a guess; report the syntax only.
        for e in errors {
            let at = e.span().map(|s| p.loc(&s));
            let msg = e.message().trim().replace('\n', "; ");
            p.problems
                .push(Problem::new(at, format!("TOML syntax: {msg}")));
        }
        return (None, p.problems);
    }
    let mut plan = p.document(doc.get_ref());
    plan.incomplete = !p.problems.is_empty();
    (Some(plan), p.problems)
}

type Value<'i> = Spanned<DeValue<'i>>;

struct Parser<'t> {
    file: Arc<str>,
    text: &'t str,
    line_starts: Vec<usize>,
    problems: Vec<Problem>,
}

/// The keys of one table, looked up by name; reports the keys nobody asked for.
struct Table<'a, 'i> {
    entries: Vec<(&'a Spanned<std::borrow::Cow<'i, str>>, &'a Value<'i>)>,
    origin: Origin,
}

impl<'a, 'i> Table<'a, 'i> {
    fn get(&self, key: &str) -> Option<&'a Value<'i>> {
        self.entries
            .iter()
            .find(|(k, _)| k.get_ref() == key)
            .map(|(_, v)| *v)
    }
}

impl Parser<'_> {
    fn loc(&self, span: &Range<usize>) -> Loc {
        let line = self.line_starts.partition_point(|&s| s <= span.start);
        let start = self.line_starts[line - 1];
        let col = self
            .text
            .get(start..span.start)
            .map_or(1, |s| s.chars().count() + 1);
        Loc {
            file: self.file.clone(),
            line,
            col,
        }
    }

    /// A table's keys, with `known` noted in its origin and the others reported.
    fn table<'a, 'i>(
        &mut self,
        t: &'a DeTable<'i>,
        span: &Range<usize>,
        label: String,
        known: &'static [&'static str],
        what: &str,
    ) -> Table<'a, 'i> {
        let mut origin = Origin {
            label,
            table: Some(self.loc(span)),
            keys: Vec::new(),
        };
        let mut entries = Vec::new();
        for (k, v) in t.iter() {
            let at = self.loc(&k.span());
            match known.iter().find(|&&n| n == k.get_ref()) {
                Some(&name) => {
                    origin.keys.push((name, at));
                    entries.push((k, v));
                }
                None => {
                    let key = k.get_ref();
                    let msg = format!("unknown key \"{key}\"; {what} takes {}", known.join(", "));
                    let problem = Problem::new(Some(at), prefix(&origin.label, msg));
                    self.problems.push(problem);
                }
            }
        }
        Table { entries, origin }
    }

    fn bad(&mut self, t: &Table, key: &str, msg: impl fmt::Display) {
        let p = t.origin.problem(key, msg);
        self.problems.push(p);
    }

    fn bad_type(&mut self, t: &Table, key: &str, v: &Value, want: &str) {
        let got = v.get_ref().type_str();
        self.bad(t, key, format!("{key} must be {want}, not {got}"));
    }

    fn string(&mut self, t: &Table, key: &str) -> Option<String> {
        let v = t.get(key)?;
        match v.get_ref().as_str() {
            Some(s) => Some(s.to_string()),
            None => {
                self.bad_type(t, key, v, "a string");
                None
            }
        }
    }

    fn bool(&mut self, t: &Table, key: &str) -> Option<bool> {
        let v = t.get(key)?;
        let b = v.get_ref().as_bool();
        if b.is_none() {
            self.bad_type(t, key, v, "true or false");
        }
        b
    }

    /// An integer that fits `T`; `range` is for the message.
    fn int<T: TryFrom<i128>>(&mut self, t: &Table, key: &str, range: &str) -> Option<T> {
        let v = t.get(key)?;
        let Some(i) = v.get_ref().as_integer() else {
            self.bad_type(t, key, v, &format!("a number ({range})"));
            return None;
        };
        let n = i128::from_str_radix(&i.as_str().replace('_', ""), i.radix()).ok();
        let out = n.and_then(|n| T::try_from(n).ok());
        if out.is_none() {
            self.bad(
                t,
                key,
                format!("{key} {} is out of range; use {range}", i.as_str()),
            );
        }
        out
    }

    /// An array of strings: each with its own place, for messages about one element.
    fn strings(&mut self, t: &Table, key: &str) -> Option<Vec<(String, Loc)>> {
        let v = t.get(key)?;
        let Some(items) = v.get_ref().as_array() else {
            self.bad_type(t, key, v, "an array of strings");
            return None;
        };
        let mut out = Vec::new();
        for item in items.iter() {
            match item.get_ref().as_str() {
                Some(s) => out.push((s.to_string(), self.loc(&item.span()))),
                None => {
                    let p = Problem::new(
                        Some(self.loc(&item.span())),
                        prefix(
                            &t.origin.label,
                            format!("{key} must hold strings, not {}", item.get_ref().type_str()),
                        ),
                    );
                    self.problems.push(p);
                }
            }
        }
        Some(out)
    }

    /// An array of tables (`[[interface]]`), or a problem.
    fn tables<'a, 'i>(
        &mut self,
        top: &Table<'a, 'i>,
        key: &str,
    ) -> Vec<(&'a DeTable<'i>, Range<usize>)> {
        let Some(v) = top.get(key) else {
            return Vec::new();
        };
        let Some(items) = v.get_ref().as_array() else {
            self.bad(
                top,
                key,
                format!("{key} must be written as [[{key}]] tables, one per {key}"),
            );
            return Vec::new();
        };
        let mut out = Vec::new();
        for item in items.iter() {
            match item.get_ref().as_table() {
                Some(t) => out.push((t, item.span())),
                None => {
                    let at = self.loc(&item.span());
                    self.problems.push(Problem::new(
                        Some(at),
                        format!("{key} must be written as [[{key}]] tables, one per {key}"),
                    ));
                }
            }
        }
        out
    }

    fn document(&mut self, doc: &DeTable) -> Plan {
        let top = self.table(doc, &(0..0), String::new(), GLOBAL_KEYS, "the top level");
        let mut plan = Plan {
            interfaces: Vec::new(),
            exports: Vec::new(),
            state_file: self.string(&top, "state-file").map(PathBuf::from),
            user: self.string(&top, "user"),
            backend: Backend::default(),
            workers: self.int(&top, "workers", "1-256"),
            flush_interval: self
                .int(&top, "flush-interval", "1-3600 seconds")
                .unwrap_or(DEFAULT_FLUSH_INTERVAL),
            busy_poll_us: self
                .int(&top, "busy-poll-us", "0-100000 microseconds")
                .unwrap_or(0),
            overlay_reset_after: self
                .int::<u32>(&top, "overlay-reset-after", "1-86400 seconds")
                .map_or(DEFAULT_RESET_AFTER, |s| Duration::from_secs(u64::from(s))),
            metrics: None,
            ctl_socket: self
                .string(&top, "ctl-socket")
                .map_or_else(|| PathBuf::from(DEFAULT_CTL_SOCKET), PathBuf::from),
            origin: top.origin.clone(),
            incomplete: false,
        };
        if let Some(m) = self.string(&top, "metrics") {
            match m.parse() {
                Ok(a) => plan.metrics = Some(a),
                Err(_) => self.bad(
                    &top,
                    "metrics",
                    format!("metrics \"{m}\" is not an address:port, e.g. \"127.0.0.1:9560\""),
                ),
            }
        }
        if let Some(b) = self.string(&top, "backend") {
            match b.parse() {
                Ok(b) => plan.backend = b,
                Err(e) => self.bad(&top, "backend", e),
            }
        }
        for (t, span) in self.tables(&top, "interface") {
            if let Some(iface) = self.interface(t, &span, plan.interfaces.len()) {
                plan.interfaces.push(iface);
            }
        }
        let mut names: Vec<(String, Origin)> = Vec::new();
        for (t, span) in self.tables(&top, "export") {
            if let Some(e) = self.export(t, &span, plan.exports.len(), &plan.interfaces) {
                let name = e.origin.label.clone();
                if let Some((_, first)) = names.iter().find(|(n, _)| *n == name) {
                    let p = e.origin.problem(
                        "name",
                        format!(
                            "the name is already taken{}; give each export its own name",
                            first.line_of("name")
                        ),
                    );
                    self.problems.push(p);
                }
                names.push((name, e.origin.clone()));
                plan.exports.push(e);
            }
        }
        plan
    }

    fn interface(&mut self, t: &DeTable, span: &Range<usize>, n: usize) -> Option<IfacePlan> {
        let name = t
            .get("name")
            .and_then(|v| v.get_ref().as_str())
            .map(str::to_string);
        let label = match &name {
            Some(name) => format!("interface \"{name}\""),
            None => format!("interface #{}", n + 1),
        };
        let t = self.table(t, span, label, INTERFACE_KEYS, "an interface");
        let name = self.string(&t, "name");
        if name.is_none() && t.get("name").is_none() {
            self.bad(
                &t,
                "",
                "has no name; add name = \"<iface>\" (ip link lists them)",
            );
        }
        let mut wwn = |key: &str| {
            let s = self.string(&t, key)?;
            s.parse::<Wwn>().map_err(|e| self.bad(&t, key, e)).ok()
        };
        let (wwpn, wwnn) = (wwn("wwpn"), wwn("wwnn"));
        Some(IfacePlan {
            name: name?,
            wwpn,
            wwnn,
            origin: t.origin,
        })
    }

    fn export(
        &mut self,
        t: &DeTable,
        span: &Range<usize>,
        n: usize,
        interfaces: &[IfacePlan],
    ) -> Option<ExportPlan> {
        let name = t
            .get("name")
            .and_then(|v| v.get_ref().as_str())
            .map(str::to_string);
        let label = match &name {
            Some(name) => format!("export \"{name}\""),
            None => format!("export #{}", n + 1),
        };
        let name = name.unwrap_or_else(|| format!("#{}", n + 1));
        let t = self.table(t, span, label, EXPORT_KEYS, "an export");
        // A name of the wrong type is reported by string().
        if self.string(&t, "name").is_none() && t.get("name").is_none() {
            self.bad(
                &t,
                "",
                "has no name; add name = \"...\" (it names the export in messages and logs)",
            );
        }
        let image = self.string(&t, "image");
        if image.is_none() && t.get("image").is_none() {
            self.bad(&t, "", "has no image; add image = \"/path/to/disk.img\"");
        }
        if image.as_deref() == Some("") {
            self.bad(
                &t,
                "image",
                "image is empty; give the path of a file or block device",
            );
        }
        let read_only = self.bool(&t, "read-only").unwrap_or(false);
        let durability = match self.string(&t, "durability").as_deref() {
            None | Some("writeback") => Durability::Writeback,
            Some("sync") => Durability::Sync,
            Some(other) => {
                self.bad(
                    &t,
                    "durability",
                    format!("durability \"{other}\" is not writeback or sync"),
                );
                Durability::Writeback
            }
        };
        let aoe = self.string(&t, "aoe").and_then(|s| match aoe_address(&s) {
            Ok(a) => Some(a),
            Err(e) => {
                self.bad(&t, "aoe", e);
                None
            }
        });
        let lun = self.int::<u16>(&t, "fcoe-lun", "0-63");
        let mut allow = Vec::new();
        for (s, at) in self.strings(&t, "allow").unwrap_or_default() {
            match s.parse::<MacAddr>() {
                Ok(m) => allow.push(m),
                Err(e) => self.problems.push(Problem::new(
                    Some(at),
                    prefix(&t.origin.label, format!("allow: {e}")),
                )),
            }
        }
        let mut fcoe_allow = Vec::new();
        for (s, at) in self.strings(&t, "fcoe-allow").unwrap_or_default() {
            match s.parse::<FcoeAllow>() {
                Ok(a) => fcoe_allow.push(a),
                Err(e) => self.problems.push(Problem::new(
                    Some(at),
                    prefix(&t.origin.label, format!("fcoe-allow: {e}")),
                )),
            }
        }
        if lun.is_none() && t.get("fcoe-lun").is_none() && t.get("fcoe-allow").is_some() {
            self.bad(
                &t,
                "fcoe-allow",
                "fcoe-allow is for FCoE, and this export has no fcoe-lun; add one or remove fcoe-allow",
            );
        }
        let buffer_count = self
            .int::<u16>(&t, "buffer-count", "2-65535")
            .unwrap_or(DEFAULT_BUFFER_COUNT);
        let config_string = self
            .string(&t, "config-string")
            .map(String::into_bytes)
            .unwrap_or_default();
        let policy = self.string(&t, "overlay").and_then(|p| {
            p.parse::<OverlayPolicy>()
                .map_err(|e| self.bad(&t, "overlay", e))
                .ok()
        });
        let overlay_dir = self.string(&t, "overlay-dir");
        let overlay = match (policy, overlay_dir) {
            (Some(policy), Some(dir)) => Some(OverlayPlan {
                policy,
                dir: PathBuf::from(dir),
            }),
            (Some(_), None) => {
                if t.get("overlay-dir").is_none() {
                    self.bad(
                        &t,
                        "overlay",
                        "overlay needs overlay-dir = \"/var/lib/l2san/overlays/<export>\": where the clients' overlay files go",
                    );
                }
                None
            }
            (None, Some(_)) => {
                if t.get("overlay").is_none() {
                    self.bad(
                        &t,
                        "overlay-dir",
                        "overlay-dir without overlay; add overlay = \"persistent\" or \"reset\", or remove overlay-dir",
                    );
                }
                None
            }
            (None, None) => None,
        };
        if overlay.is_some() && read_only {
            self.bad(
                &t,
                "read-only",
                "read-only and overlay contradict each other: with overlay the image is a read-only base and each client writes to its own overlay; remove read-only",
            );
        }
        if aoe.is_none() && t.get("aoe").is_none() {
            for key in ["allow", "buffer-count", "config-string"] {
                if t.get(key).is_some() {
                    self.bad(
                        &t,
                        key,
                        format!(
                            "{key} is for AoE, and this export has no aoe = \"<shelf>.<slot>\"; add one or remove {key}{}",
                            if key == "allow" { " (an FCoE LUN's is fcoe-allow)" } else { "" }
                        ),
                    );
                }
            }
        }
        let on = match self.strings(&t, "interfaces") {
            None => (0..interfaces.len()).collect(),
            Some(names) => {
                if names.is_empty() && t.get("interfaces").is_some() {
                    self.bad(
                        &t,
                        "interfaces",
                        "interfaces is empty; name at least one, or leave the key out to serve on all",
                    );
                }
                let mut on = Vec::new();
                for (name, at) in names {
                    match interfaces.iter().position(|i| i.name == name) {
                        Some(i) if !on.contains(&i) => on.push(i),
                        Some(_) => {}
                        None => {
                            let mut known: Vec<&str> =
                                interfaces.iter().map(|i| i.name.as_str()).collect();
                            known.dedup();
                            self.problems.push(Problem::new(
                                Some(at),
                                prefix(
                                    &t.origin.label,
                                    format!(
                                        "interface \"{name}\" is not configured; add an [[interface]] with name = \"{name}\" (configured: {})",
                                        if known.is_empty() { "none".to_string() } else { known.join(", ") }
                                    ),
                                ),
                            ));
                        }
                    }
                }
                on
            }
        };
        Some(ExportPlan {
            name,
            image: ImageSpec {
                image: PathBuf::from(image?),
                read_only,
                durability,
                allow,
            },
            aoe,
            lun,
            fcoe_allow,
            buffer_count,
            overlay,
            config_string,
            on,
            origin: t.origin,
        })
    }
}

fn prefix(label: &str, msg: impl fmt::Display) -> String {
    if label.is_empty() {
        msg.to_string()
    } else {
        format!("{label}: {msg}")
    }
}

/// `"1.0"` or `"e1.0"`: shelf and slot as numbers (broadcast values are left to [`validate`]).
fn aoe_address(s: &str) -> Result<(u16, u8), String> {
    let usage = "write it as \"<shelf>.<slot>\", e.g. aoe = \"1.0\"";
    let (shelf, slot) = s
        .strip_prefix('e')
        .unwrap_or(s)
        .split_once('.')
        .ok_or_else(|| format!("aoe \"{s}\" is not <shelf>.<slot>; {usage}"))?;
    let shelf = shelf
        .parse::<u16>()
        .map_err(|_| format!("shelf \"{shelf}\" must be a number from 0 to 65534; {usage}"))?;
    let slot = slot
        .parse::<u8>()
        .map_err(|_| format!("slot \"{slot}\" must be a number from 0 to 254; {usage}"))?;
    Ok((shelf, slot))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser as _;

    /// Parse and validate `text` as `t.toml`: the plan, or every problem as printed.
    fn load(text: &str) -> Result<Plan, Vec<String>> {
        let (plan, mut problems) = parse("t.toml", text);
        if let Some(plan) = &plan {
            problems.extend(validate(plan));
        }
        sort_by_line(&mut problems);
        match plan {
            Some(plan) if problems.is_empty() => Ok(plan),
            _ => Err(problems.iter().map(|p| p.to_string()).collect()),
        }
    }

    /// `text` has a problem at `line` whose message holds `says`.
    #[track_caller]
    fn has_problem(text: &str, line: usize, says: &str) {
        let problems = load(text).err().unwrap_or_default();
        let at = format!("t.toml:{line}:");
        assert!(
            problems
                .iter()
                .any(|p| p.starts_with(&at) && p.contains(says)),
            "expected a problem at line {line} saying {says:?}; got {problems:#?}"
        );
    }

    const IFACE: &str = "[[interface]]\nname = \"eth1\"\n";

    fn serve_args(args: &[&str]) -> ServeArgs {
        let cli =
            crate::cli::Cli::try_parse_from(["l2san", "serve"].iter().chain(args.iter()).copied())
                .unwrap();
        match cli.command {
            crate::cli::Command::Serve(s) => s,
            _ => unreachable!(),
        }
    }

    #[test]
    fn the_sample_config_parses() {
        let plan = load(include_str!("../packaging/l2san.toml")).unwrap();
        let names: Vec<&str> = plan.interfaces.iter().map(|i| i.name.as_str()).collect();
        assert_eq!(names, ["eth1", "eth2"]);
        assert_eq!(
            plan.state_file,
            Some(PathBuf::from("/var/lib/l2san/aoe-state"))
        );
        assert_eq!(plan.user.as_deref(), Some("l2san"));
        assert_eq!((plan.workers, plan.flush_interval), (Some(2), 5));
        let golden = &plan.exports[0];
        assert_eq!(golden.origin.label, "export \"golden\"");
        assert_eq!((golden.aoe, golden.lun), (Some((1, 0)), Some(0)));
        assert!(golden.image.read_only);
        assert_eq!(golden.on, [0, 1]);
        let pc1 = &plan.exports[1];
        assert_eq!(
            (pc1.aoe, pc1.lun, &pc1.on[..]),
            (Some((2, 1)), None, &[0][..])
        );
        assert_eq!(pc1.image.durability, Durability::Sync);
        assert_eq!(pc1.image.allow, ["52:54:00:00:01:01".parse().unwrap()]);
        assert_eq!(plan.exports[3].on, [1]);
        assert_eq!(plan.exports[3].image.allow.len(), 2);
        assert_eq!(plan.exports_on(1).count(), 2);
    }

    #[test]
    fn an_empty_ctl_socket_turns_it_off() {
        let args = serve_args(&["-i", "eth0", "--aoe", "0.0=/a.img", "--ctl-socket", ""]);
        let mut plan = Plan::from_flags(&args).unwrap();
        plan.apply_global_flags(&args);
        assert_eq!(plan.ctl_socket, Path::new(""));
        let args = serve_args(&["-i", "eth0", "--aoe", "0.0=/a.img"]);
        let plan = Plan::from_flags(&args).unwrap();
        assert_eq!(plan.ctl_socket, Path::new(DEFAULT_CTL_SOCKET));
    }

    #[test]
    fn every_key_is_read() {
        let plan = load(&format!(
            "backend = \"auto\"\nbusy-poll-us = 50\nflush-interval = 30\n\
             metrics = \"127.0.0.1:9560\"\nctl-socket = \"/run/l2san-a.sock\"\n{IFACE}\
             wwpn = \"20:00:00:25:b5:00:00:01\"\nwwnn = \"10:00:00:25:b5:00:00:01\"\n\
             [[export]]\nname = \"a\"\nimage = \"/a.img\"\naoe = \"e3.4\"\nbuffer-count = 16\n\
             config-string = \"cluster\"\ndurability = \"writeback\"\nread-only = false\n"
        ))
        .unwrap();
        assert_eq!(plan.backend, Backend::Auto);
        assert_eq!((plan.busy_poll_us, plan.flush_interval), (50, 30));
        assert_eq!(plan.metrics, Some("127.0.0.1:9560".parse().unwrap()));
        assert_eq!(plan.ctl_socket, Path::new("/run/l2san-a.sock"));
        assert_eq!(
            plan.interfaces[0].wwpn,
            Some("20:00:00:25:b5:00:00:01".parse().unwrap())
        );
        assert!(plan.interfaces[0].wwnn.is_some());
        let a = &plan.exports[0];
        assert_eq!((a.aoe, a.buffer_count), (Some((3, 4)), 16));
        assert_eq!(a.config_string, b"cluster");
        // Defaults.
        let plan = load(&format!(
            "{IFACE}[[export]]\nname = \"a\"\nimage = \"/a\"\nfcoe-lun = 7\n"
        ))
        .unwrap();
        assert_eq!(
            (plan.backend, plan.workers, plan.flush_interval),
            (Backend::Packet, None, 5)
        );
        assert_eq!(plan.exports[0].buffer_count, 64);
        assert_eq!(plan.exports[0].lun, Some(7));
        assert!(!plan.exports[0].image.read_only);
        assert!(plan.exports[0].fcoe_allow.is_empty());
        // fcoe-allow: WWPNs and MACs.
        let plan = load(&format!(
            "{IFACE}[[export]]\nname = \"a\"\nimage = \"/a\"\nfcoe-lun = 1\n\
             fcoe-allow = [\"20:00:52:54:00:12:34:56\", \"52:54:00:12:34:57\"]\n"
        ))
        .unwrap();
        assert_eq!(
            plan.exports[0].fcoe_allow,
            [
                FcoeAllow::Wwpn(Wwn(0x2000_5254_0012_3456)),
                FcoeAllow::Mac("52:54:00:12:34:57".parse().unwrap())
            ]
        );
    }

    #[test]
    fn export_problems_name_their_line() {
        let export = |body: &str| {
            format!("{IFACE}\n[[export]]\nname = \"pc1\"\nimage = \"/pc1.img\"\n{body}")
        };
        // The body starts at line 7.
        for (body, says) in [
            (
                "aoe = \"65535.0\"",
                "export \"pc1\": shelf 65535 is the broadcast address; use 0-65534",
            ),
            (
                "aoe = \"1.255\"",
                "export \"pc1\": slot 255 is the broadcast address; use 0-254",
            ),
            (
                "aoe = \"70000.0\"",
                "shelf \"70000\" must be a number from 0 to 65534",
            ),
            (
                "aoe = \"1.256\"",
                "slot \"256\" must be a number from 0 to 254",
            ),
            ("aoe = \"1\"", "aoe \"1\" is not <shelf>.<slot>"),
            ("aoe = 1", "aoe must be a string, not integer"),
            ("fcoe-lun = 64", "LUN 64 is out of range; use 0-63"),
            ("fcoe-lun = -1", "fcoe-lun -1 is out of range; use 0-63"),
            (
                "fcoe-lun = \"0\"",
                "fcoe-lun must be a number (0-63), not string",
            ),
            (
                "read-only = \"yes\"",
                "read-only must be true or false, not string",
            ),
            (
                "durability = \"fast\"",
                "durability \"fast\" is not writeback or sync",
            ),
            (
                "aoe = \"1.0\"\nbuffer-count = 1",
                "buffer-count 1 is too small",
            ),
            (
                "aoe = \"1.0\"\nbuffer-count = 70000",
                "buffer-count 70000 is out of range",
            ),
            (
                "aoe = \"1.0\"\nallow = \"52:54:00:00:00:01\"",
                "allow must be an array of strings",
            ),
            (
                "aoe = \"1.0\"\nallow = [\"nope\"]",
                "allow: 'nope' is not a MAC address",
            ),
            (
                "aoe = \"1.0\"\nallow = [\"ff:ff:ff:ff:ff:ff\"]",
                "multicast or broadcast",
            ),
            (
                "aoe = \"1.0\"\ninterfaces = [\"eth9\"]",
                "interface \"eth9\" is not configured",
            ),
            ("aoe = \"1.0\"\ninterfaces = []", "interfaces is empty"),
            (
                "fcoe-lun = 0\nallow = [\"52:54:00:00:00:01\"]",
                "allow is for AoE",
            ),
            (
                "fcoe-lun = 0\nconfig-string = \"x\"",
                "config-string is for AoE",
            ),
            (
                "aoe = \"1.0\"\nfcoe-allow = [\"52:54:00:00:00:01\"]",
                "fcoe-allow is for FCoE",
            ),
            (
                "fcoe-lun = 0\nfcoe-allow = [\"20:00:52:54:00:12:34\"]",
                "export \"pc1\": fcoe-allow: '20:00:52:54:00:12:34' is neither a WWPN (8 octets",
            ),
            (
                "fcoe-lun = 0\nfcoe-allow = \"52:54:00:00:00:01\"",
                "fcoe-allow must be an array of strings",
            ),
            (
                "fcoe-lun = 0\nfcoe-allow = [\"01:00:5e:00:00:01\"]",
                "fcoe-allow 01:00:5e:00:00:01 is a multicast",
            ),
            (
                "aoe = \"1.0\"\noverlay = \"/var/cow\"",
                "'/var/cow' is not an overlay policy: write \"persistent\" or \"reset\"",
            ),
            (
                "aoe = \"1.0\"\noverlay = \"reset\"",
                "overlay needs overlay-dir",
            ),
            (
                "aoe = \"1.0\"\noverlay-dir = \"/var/cow\"",
                "overlay-dir without overlay",
            ),
            (
                "aoe = \"1.0\"\noverlay-dir = \"/c\"\noverlay = \"reset\"\nread-only = true",
                "read-only and overlay contradict each other",
            ),
            (
                "aoe = \"1.0\"\nsise = 3",
                "unknown key \"sise\"; an export takes name, image",
            ),
        ] {
            let line = 7 + body.lines().count() - 1;
            has_problem(&export(body), line, says);
        }
        let long = format!("aoe = \"1.0\"\nconfig-string = \"{}\"", "x".repeat(1025));
        has_problem(
            &export(&long),
            8,
            "config-string is 1025 bytes; AoE allows at most 1024",
        );
        // Missing things point at the name, or at the table.
        has_problem(
            &export("read-only = true"),
            5,
            "export \"pc1\": exported neither over AoE nor over FCoE",
        );
        has_problem(
            &format!("{IFACE}[[export]]\nimage = \"/a\"\naoe = \"1.0\"\n"),
            3,
            "export #1: has no name",
        );
        has_problem(
            &format!("{IFACE}[[export]]\nname = \"a\"\naoe = \"1.0\"\n"),
            3,
            "export \"a\": has no image",
        );
    }

    #[test]
    fn problems_between_exports_name_both_lines() {
        let two = |a: &str, b: &str| {
            format!("{IFACE}[[interface]]\nname = \"eth2\"\n[[export]]\nname = \"a\"\n{a}\n[[export]]\nname = \"b\"\n{b}\n")
        };
        // a's body is line 7-8, b's body line 11-12.
        has_problem(
            &two("image = \"/a\"\naoe = \"1.0\"", "image = \"/b\"\naoe = \"1.0\""),
            12,
            "export \"b\": e1.0 is already export \"a\" (line 8); give each export its own shelf.slot",
        );
        // On different interfaces still: one address, one disk.
        has_problem(
            &two(
                "image = \"/a\"\naoe = \"1.0\"\ninterfaces = [\"eth1\"]",
                "image = \"/b\"\naoe = \"1.0\"\ninterfaces = [\"eth2\"]",
            ),
            13,
            "e1.0 is already export \"a\"",
        );
        has_problem(
            &two(
                "image = \"/a\"\nfcoe-lun = 3",
                "image = \"/b\"\nfcoe-lun = 3",
            ),
            12,
            "export \"b\": FCoE LUN 3 on eth1 is already export \"a\" (line 8)",
        );
        // A base of overlays written by another export; two overlay exports in one directory.
        has_problem(
            &two(
                "image = \"/a\"\naoe = \"1.0\"\noverlay = \"reset\"\noverlay-dir = \"/c\"",
                "image = \"/a\"\naoe = \"1.1\"",
            ),
            13,
            "image /a is the base of export \"a\"'s overlays and written by export \"b\"",
        );
        load(&two(
            "image = \"/a\"\naoe = \"1.0\"\noverlay = \"reset\"\noverlay-dir = \"/c\"",
            "image = \"/a\"\naoe = \"1.1\"\nread-only = true",
        ))
        .unwrap();
        has_problem(
            &two(
                "image = \"/a\"\naoe = \"1.0\"\noverlay = \"reset\"\noverlay-dir = \"/c\"",
                "image = \"/b\"\naoe = \"1.1\"\noverlay = \"reset\"\noverlay-dir = \"/c\"",
            ),
            16,
            "overlay-dir /c is already export \"a\"'s (line 10)",
        );
        // Each interface is its own FCoE port: LUN 3 on each is fine.
        load(&two(
            "image = \"/a\"\nfcoe-lun = 3\ninterfaces = [\"eth1\"]",
            "image = \"/b\"\nfcoe-lun = 3\ninterfaces = [\"eth2\"]",
        ))
        .unwrap();
        has_problem(
            &two(
                "image = \"/a\"\naoe = \"1.0\"",
                "image = \"/a\"\naoe = \"1.1\"\nread-only = true",
            ),
            13,
            "image /a is read-only here but read-write in export \"a\"",
        );
        has_problem(
            &two(
                "image = \"/a\"\naoe = \"1.0\"",
                "image = \"/a\"\nfcoe-lun = 0\ndurability = \"sync\"",
            ),
            13,
            "image /a is sync here but writeback in export \"a\"",
        );
        has_problem(
            &two(
                "image = \"/a\"\naoe = \"1.0\"",
                "image = \"/b\"\naoe = \"1.1\"\nname = \"c\"",
            ),
            13,
            "duplicate key",
        );
        has_problem(
            &format!("{IFACE}[[export]]\nname = \"a\"\nimage = \"/a\"\naoe = \"1.0\"\n[[export]]\nname = \"a\"\nimage = \"/b\"\naoe = \"1.1\"\n"),
            8,
            "the name is already taken (line 4)",
        );
        // The same image twice with the same options is one image, shared.
        load(&two(
            "image = \"/a\"\naoe = \"1.0\"",
            "image = \"/a\"\nfcoe-lun = 0",
        ))
        .unwrap();
    }

    #[test]
    fn interface_and_global_problems_name_their_line() {
        let export = "[[export]]\nname = \"a\"\nimage = \"/a\"\naoe = \"1.0\"\n";
        for (text, line, says) in [
            (format!("workers = 0\n{IFACE}{export}"), 1, "workers 0 must be from 1 to 256"),
            (format!("\nworkers = \"2\"\n{IFACE}{export}"), 2, "workers must be a number"),
            (format!("flush-interval = 0\n{IFACE}{export}"), 1, "flush-interval 0 must be from 1 to 3600"),
            (format!("busy-poll-us = 200000\n{IFACE}{export}"), 1, "busy-poll-us 200000 must be from 0 to 100000"),
            (format!("backend = \"dpdk\"\n{IFACE}{export}"), 1, "unknown backend 'dpdk': use auto, xdp or packet"),
            (format!("metrics = \"9560\"\n{IFACE}{export}"), 1, "metrics \"9560\" is not an address:port"),
            (format!("colour = 1\n{IFACE}{export}"), 1, "unknown key \"colour\"; the top level takes"),
            (format!("[interface]\nname = \"eth1\"\n{export}"), 1, "interface must be written as [[interface]] tables"),
            (format!("{IFACE}wwpn = \"nope\"\n{export}"), 3, "interface \"eth1\": 'nope' is not a WWN"),
            (format!("{IFACE}mtu = 9000\n{export}"), 3, "unknown key \"mtu\"; an interface takes name, wwpn, wwnn"),
            (format!("[[interface]]\nwwpn = \"20:00:00:25:b5:00:00:01\"\n{IFACE}{export}"), 1, "interface #1: has no name"),
            (format!("{IFACE}{IFACE}{export}"), 4, "interface \"eth1\": listed twice (line 2)"),
            (
                format!("{IFACE}wwpn = \"20:00:00:25:b5:00:00:01\"\n[[interface]]\nname = \"eth2\"\nwwpn = \"20:00:00:25:b5:00:00:01\"\n{export}"),
                6,
                "wwpn 20:00:00:25:b5:00:00:01 is also eth1's (line 3)",
            ),
            (
                format!("{IFACE}[[interface]]\nname = \"eth2\"\n{export}interfaces = [\"eth1\"]\n"),
                4,
                "interface \"eth2\": no export is served on eth2",
            ),
            (export.to_string(), 1, "no interface to serve on"),
            (IFACE.to_string(), 1, "nothing to serve"),
            ("workers = \n".to_string(), 1, "TOML syntax"),
        ] {
            has_problem(&text, line, says);
        }
    }

    #[test]
    fn all_problems_are_reported_at_once() {
        let text = format!(
            "workers = 0\n{IFACE}[[export]]\nname = \"a\"\nimage = \"/a\"\naoe = \"65535.0\"\n\
             sise = 1\n[[export]]\nname = \"b\"\nimage = \"/b\"\nfcoe-lun = 99\n"
        );
        let problems = load(&text).unwrap_err();
        assert_eq!(problems.len(), 4, "{problems:#?}");
        for (p, line) in problems.iter().zip([1, 7, 8, 12]) {
            assert!(p.starts_with(&format!("t.toml:{line}:")), "{p}");
        }
        // Columns count characters.
        let problems = load(&format!(
            "{IFACE}[[export]]\nname = \"a\"\nimage = \"/a\"\naoe = \"1.0\"\nallow = [\"é\", \"x\"]\n"
        ))
        .unwrap_err();
        assert!(problems[1].starts_with("t.toml:7:15:"), "{problems:?}");
    }

    #[test]
    fn flags_share_the_checks() {
        let plan = Plan::from_flags(&serve_args(&[
            "-i",
            "eth1",
            "--aoe",
            "1.0=/a.img,ro",
            "--fcoe",
            "0=/a.img,ro",
            "--buffer-count",
            "8",
        ]))
        .unwrap();
        assert_eq!(plan.interfaces.len(), 1);
        assert_eq!(plan.exports.len(), 2);
        assert_eq!(plan.exports[0].buffer_count, 8);
        assert_eq!((plan.backend, plan.flush_interval), (Backend::Packet, 5));
        let plan = Plan::from_flags(&serve_args(&[
            "-i",
            "eth1",
            "--fcoe",
            "0=/a.img,allow=20:00:52:54:00:12:34:56",
        ]))
        .unwrap();
        assert_eq!(
            plan.exports[0].fcoe_allow,
            [FcoeAllow::Wwpn(Wwn(0x2000_5254_0012_3456))]
        );
        for (args, says) in [
            (&["--aoe", "1.0=/a.img", "--aoe", "1.0=/b.img"][..], "--aoe 1.0=/b.img: e1.0 is already --aoe 1.0=/a.img; give each export its own shelf.slot"),
            (&["--fcoe", "2=/a.img", "--fcoe", "2=/b.img"][..], "FCoE LUN 2 on eth1 is already --fcoe 2=/a.img"),
            (&["--aoe", "1.0=/a.img", "--fcoe", "0=/a.img,ro"][..], "image /a.img is read-only here but read-write in --aoe 1.0=/a.img"),
            (&["--aoe", "1.0=/a.img", "--aoe", "1.1=/a.img,sync"][..], "image /a.img is sync here but writeback"),
            (&["--aoe", "1.0=/a.img,allow=01:00:5e:00:00:01"][..], "multicast or broadcast"),
        ] {
            let mut all = vec!["-i", "eth1"];
            all.extend_from_slice(args);
            let problems = Plan::from_flags(&serve_args(&all)).unwrap_err();
            assert!(problems.iter().any(|p| p.at.is_none() && p.message.contains(says)), "{args:?}: {problems:?}");
        }
    }

    #[test]
    fn config_excludes_export_flags_and_global_flags_override_it() {
        let path =
            std::env::temp_dir().join(format!("l2san-config-test-{}.toml", std::process::id()));
        std::fs::write(
            &path,
            format!("workers = 2\nflush-interval = 9\nstate-file = \"/s\"\n{IFACE}[[export]]\nname = \"a\"\nimage = \"/a\"\naoe = \"1.0\"\n"),
        )
        .unwrap();
        let p = path.to_str().unwrap();
        let plan = Plan::for_serve(&serve_args(&["--config", p])).unwrap();
        assert_eq!((plan.workers, plan.flush_interval), (Some(2), 9));
        let plan = Plan::for_serve(&serve_args(&[
            "--config",
            p,
            "--workers",
            "1",
            "--state-file",
            "/t",
            "--backend",
            "xdp",
            "--busy-poll-us",
            "10",
        ]))
        .unwrap();
        assert_eq!(
            (plan.workers, plan.flush_interval, plan.busy_poll_us),
            (Some(1), 9, 10)
        );
        assert_eq!(
            (plan.state_file.as_deref(), plan.backend),
            (Some(Path::new("/t")), Backend::Xdp)
        );
        for flags in [
            &["-i", "eth1"][..],
            &["--aoe", "2.0=/b"],
            &["--fcoe", "1=/b"],
            &["--wwpn", "20:00:00:25:b5:00:00:01"],
            &["--buffer-count", "8"],
        ] {
            let mut args = vec!["--config", p];
            args.extend_from_slice(flags);
            let e = Plan::for_serve(&serve_args(&args)).unwrap_err().to_string();
            assert!(
                e.contains("cannot be combined with --config"),
                "{flags:?}: {e}"
            );
            assert!(
                e.contains(flags[0].trim_start_matches('-')),
                "{flags:?}: {e}"
            );
        }
        // A bad file: every problem, with its line, in one error.
        std::fs::write(
            &path,
            format!(
                "workers = 0\n{IFACE}[[export]]\nname = \"a\"\nimage = \"/a\"\naoe = \"1.255\"\n"
            ),
        )
        .unwrap();
        let e = Plan::for_serve(&serve_args(&["--config", p])).unwrap_err();
        let _ = std::fs::remove_file(&path);
        let msg = e.to_string();
        assert!(msg.starts_with("2 problems in"), "{msg}");
        assert!(msg.contains(&format!("{p}:1:1: workers 0")), "{msg}");
        assert!(
            msg.contains(&format!("{p}:7:1: export \"a\": slot 255 is the broadcast")),
            "{msg}"
        );
        let missing =
            Plan::for_serve(&serve_args(&["--config", "/nonexistent/l2san.toml"])).unwrap_err();
        assert!(
            missing.to_string().contains("cannot read config file"),
            "{missing}"
        );
    }

    #[test]
    fn environment_problems_name_the_fix() {
        let dir = std::env::temp_dir().join(format!("l2san-config-env-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let odd = dir.join("odd.img");
        std::fs::write(&odd, [0u8; 1000]).unwrap();
        let good = dir.join("good.img");
        std::fs::write(&good, [0u8; 1024]).unwrap();
        let text = format!(
            "[[interface]]\nname = \"no-such-if0\"\n[[export]]\nname = \"odd\"\nimage = \"{}\"\naoe = \"1.0\"\n\
             [[export]]\nname = \"gone\"\nimage = \"{}\"\naoe = \"1.1\"\n\
             [[export]]\nname = \"good\"\nimage = \"{}\"\naoe = \"1.2\"\n",
            odd.display(),
            dir.join("gone.img").display(),
            good.display()
        );
        let plan = load(&text).unwrap();
        let problems: Vec<String> = check_environment(&plan)
            .iter()
            .map(|p| p.to_string())
            .collect();
        let _ = std::fs::remove_dir_all(&dir);
        assert_eq!(problems.len(), 3, "{problems:#?}");
        assert!(
            problems[0].starts_with(
                "t.toml:2:1: interface \"no-such-if0\": no network interface named 'no-such-if0'"
            ),
            "{problems:?}"
        );
        assert!(
            problems[1].starts_with("t.toml:5:1: export \"odd\": image")
                && problems[1].contains("truncate -s"),
            "{problems:?}"
        );
        assert!(
            problems[2].starts_with("t.toml:9:1: export \"gone\": cannot open image"),
            "{problems:?}"
        );
    }
}
