//! The configuration file (`l2san serve --config FILE`, `l2san check-config FILE`) and the
//! [`Plan`] that `serve` carries out.
//!
//! Both the command-line flags (`flags`) and the file (`toml`) become one `Plan`, and both go
//! through the same [`validate`](fn@validate): duplicate AoE addresses, duplicate LUNs, one
//! image with two sets of options, broadcast shelf or slot, LUN range, buffer count... Each
//! plan item keeps its [`Origin`] (`problem`): the file and line of every key it came from, so
//! that every problem of a file is reported with its line, all at once (a derived
//! `Deserialize` would stop at the first). `check` is what `check-config` adds and prints.
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

mod check;
mod flags;
mod problem;
mod toml;
mod validate;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use l2san_common::store::overlay::OverlayPolicy;
use l2san_common::worker::Backend;
use l2san_common::Durability;
use l2san_fcoe::wire::Wwn;
use l2san_fcoe::FcoeAllow;

use crate::cli::{ImageSpec, ServeArgs};
use crate::Error;
use problem::{problems_error, sort_by_line};

pub use check::check;
pub use problem::{Loc, Origin, Problem};
pub use toml::parse;
pub use validate::validate;

/// Defaults shared by the flags and the file.
pub const DEFAULT_BUFFER_COUNT: u16 = 64;
pub const DEFAULT_FLUSH_INTERVAL: u64 = 5;
/// Where `serve` listens for `l2san ctl` unless told otherwise.
pub const DEFAULT_CTL_SOCKET: &str = "/run/l2san.sock";

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
    /// Some keys of the file could not be read: [`validate`](fn@validate) then skips its checks for
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
}

/// The text of the config file, or an error that names the fix.
fn read_config(path: &Path) -> Result<String, Error> {
    std::fs::read_to_string(path).map_err(|e| {
        Error::Usage(format!(
            "cannot read config file {}: {e}; check the path and its permissions",
            path.display()
        ))
    })
}

/// The canonical path of an image, so that two spellings of one file are one image.
pub fn image_key(path: &Path) -> PathBuf {
    std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf())
}

/// A durability as the file spells it.
fn durability_name(d: Durability) -> &'static str {
    match d {
        Durability::Writeback => "writeback",
        Durability::Sync => "sync",
    }
}

#[cfg(test)]
mod tests;
