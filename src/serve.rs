//! `l2san serve`: turn the flags or the config file into a [`Plan`], open the images and the
//! interfaces, start each interface's workers, flush on the way out.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use l2san_aoe::{AoeExport, AoeTarget};
use l2san_common::io::sys::{privilege, signal};
use l2san_common::store::{Backing, OverlayOptions, OverlayPolicy, OverlaySet};
use l2san_common::worker::{self, FrameHandler, WorkerRole, WorkerStats};
use l2san_common::{Durability, Image, ImageOptions, Interface, MacAddr};
use l2san_fcoe::wire::Wwn;
use l2san_fcoe::{FcoeAllow, FcoeConfig, FcoeTarget};

use crate::cli::ServeArgs;
use crate::config::{self, ExportPlan, Origin, Plan};
use crate::metrics::{FlushStats, IfaceSources, Sources};
use crate::Error;
use crate::{ctl, metrics, state};

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "l2san".to_string())
}

/// Opens every image once, however many exports name it, so that AoE and FCoE exports of one
/// image, on any interface, share one map and see the same bytes. ([`config::validate`] has
/// made sure that every export of one image has the same options.)
/// Overlay exports get their base opened read-only, and one [`OverlaySet`] per overlay
/// directory, shared by every interface the export is on.
#[derive(Default)]
struct Images {
    by_path: HashMap<PathBuf, Arc<Image>>,
    /// By overlay directory: the export's name and its overlays.
    overlays: HashMap<PathBuf, (String, Arc<OverlaySet>)>,
}

impl Images {
    /// What `export` serves: its image, or its base with the clients' overlays.
    fn backing(&mut self, export: &ExportPlan, reset_after: Duration) -> Result<Backing, Error> {
        let image = self.open(export)?;
        let Some(o) = &export.overlay else {
            return Ok(Backing::Image(image));
        };
        let opts = OverlayOptions {
            policy: o.policy,
            durability: export.image.durability,
            reset_after,
        };
        let key = config::image_key(&o.dir);
        if let Some((_, set)) = self.overlays.get(&key) {
            if Arc::ptr_eq(set.base(), &image) && set.options() == opts {
                return Ok(Backing::Overlays(set.clone()));
            }
        }
        let set = OverlaySet::open(image, &o.dir, opts)
            .map_err(|e| Error::Usage(located(&export.origin, "overlay-dir", e)))?;
        let set = Arc::new(set);
        self.overlays
            .insert(key, (export.name.clone(), set.clone()));
        Ok(Backing::Overlays(set))
    }

    fn open(&mut self, export: &ExportPlan) -> Result<Arc<Image>, Error> {
        let spec = &export.image;
        // The base of overlays is never written.
        let read_only = spec.read_only || export.overlay.is_some();
        let key = config::image_key(&spec.image);
        if let Some(image) = self.by_path.get(&key) {
            if image.read_only() == read_only && image.durability() == spec.durability {
                return Ok(image.clone());
            }
        }
        let opts = ImageOptions {
            read_only,
            durability: spec.durability,
        };
        let image = Image::open(&spec.image, opts)
            .map_err(|e| Error::Usage(located(&export.origin, "image", e)))?;
        let image = Arc::new(image);
        self.by_path.insert(key, image.clone());
        Ok(image)
    }

    /// Everything there is to flush: the images, and the overlay sets.
    fn all(&self) -> Vec<Backing> {
        let images = self.by_path.values().cloned().map(Backing::Image);
        let sets = self
            .overlays
            .values()
            .map(|(_, set)| Backing::Overlays(set.clone()));
        images.chain(sets).collect()
    }

    /// The overlay exports by name.
    fn overlay_sets(&self) -> Vec<(String, Arc<OverlaySet>)> {
        let mut v: Vec<_> = self.overlays.values().cloned().collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }

    /// For a reload: the images that can go on as they are (same options, same size on
    /// disk); [`open`](Self::open) opens the others anew (a grown or shrunk file gets a new
    /// map of its new size).
    fn reopened(&self) -> Images {
        Images {
            by_path: self
                .by_path
                .iter()
                .filter(|(path, image)| file_len(path).ok() == Some(image.len_bytes()))
                .map(|(p, i)| (p.clone(), i.clone()))
                .collect(),
            // Kept only where [`backing`](Self::backing) finds the same base and options.
            overlays: self.overlays.clone(),
        }
    }
}

/// The size of a file or block device now.
fn file_len(path: &std::path::Path) -> std::io::Result<u64> {
    use std::io::Seek;
    std::fs::File::open(path)?.seek(std::io::SeekFrom::End(0))
}

/// A message about a plan item: with its file and line when it comes from the config file,
/// as it is when it comes from the flags.
fn located(origin: &Origin, key: &str, msg: impl std::fmt::Display) -> String {
    match origin.at(key) {
        Some(at) => format!("{at}: {}: {msg}", origin.label),
        None => msg.to_string(),
    }
}

fn describe(backing: &Backing) -> String {
    let overlays = match backing.overlays() {
        Some(set) => format!(
            ", read-only base with {} overlays per client in {} ({} now)",
            match set.options().policy {
                OverlayPolicy::Persistent => "persistent",
                OverlayPolicy::Reset => "reset-on-boot",
            },
            set.dir().display(),
            set.list().len()
        ),
        None => String::new(),
    };
    format!(
        "{} ({} sectors, {}, {}{overlays})",
        backing.image().path().display(),
        backing.sectors(),
        if backing.read_only() {
            "read-only"
        } else {
            "read-write"
        },
        match backing.durability() {
            Durability::Writeback => "writeback",
            Durability::Sync => "sync",
        }
    )
}

/// The default FCoE names: `20:00:<mac>` and `10:00:<mac>`.
fn default_wwn(prefix: u16, mac: MacAddr) -> Wwn {
    let mut b = [0u8; 8];
    b[..2].copy_from_slice(&prefix.to_be_bytes());
    b[2..].copy_from_slice(&mac.0);
    Wwn::from_bytes(b)
}

/// The AoE exports of interface `i` of the plan.
fn aoe_exports(plan: &Plan, i: usize, images: &mut Images) -> Result<Vec<AoeExport>, Error> {
    let mut exports = Vec::new();
    for e in plan.exports_on(i) {
        let Some((shelf, slot)) = e.aoe else { continue };
        let image = images.backing(e, plan.overlay_reset_after)?;
        let mut export = AoeExport::new(shelf, slot, image);
        export.buffer_count = e.buffer_count;
        export.allow = e.image.allow.clone();
        export.config_string = e.config_string.clone();
        exports.push(export);
    }
    Ok(exports)
}

/// The FCoE LUNs of interface `i` of the plan, and their allow-lists.
type Luns = (Vec<(u64, Backing)>, Vec<(u64, Vec<FcoeAllow>)>);

fn fcoe_luns(plan: &Plan, i: usize, images: &mut Images) -> Result<Luns, Error> {
    let mut luns = Vec::new();
    let mut allow = Vec::new();
    for e in plan.exports_on(i) {
        let Some(lun) = e.lun else { continue };
        let image = images.backing(e, plan.overlay_reset_after)?;
        if !e.fcoe_allow.is_empty() {
            allow.push((lun as u64, e.fcoe_allow.clone()));
        }
        luns.push((lun as u64, image));
    }
    Ok((luns, allow))
}

/// The FCoE port names of interface `i`: configured, or `20:00:<mac>` and `10:00:<mac>`.
fn fcoe_names(plan: &Plan, i: usize, iface: &Interface) -> (Wwn, Wwn) {
    let names = &plan.interfaces[i];
    (
        names.wwpn.unwrap_or_else(|| default_wwn(0x2000, iface.mac)),
        names.wwnn.unwrap_or_else(|| default_wwn(0x1000, iface.mac)),
    )
}

/// One interface being served and its targets. Every interface has an AoE target, with no
/// exports if the plan gives it none, so that a reload can add some; an FCoE target exists
/// only where the plan gave LUNs at start (an FCoE port claims an address and beacons).
struct Served {
    iface: Interface,
    aoe: Arc<AoeTarget>,
    fcoe: Option<Arc<FcoeTarget>>,
}

impl Served {
    fn handlers(&self) -> Vec<Arc<dyn FrameHandler>> {
        let mut h: Vec<Arc<dyn FrameHandler>> = vec![self.aoe.clone()];
        if let Some(f) = &self.fcoe {
            h.push(f.clone());
        }
        h
    }

    /// Log what is served, one line per export.
    fn log(&self) {
        let name = &self.iface.name;
        for (shelf, slot, image) in self.aoe.images() {
            tracing::info!(
                "AoE export e{shelf}.{slot} on {name} ({}): {}",
                self.iface.mac,
                describe(&image)
            );
        }
        if let Some(f) = &self.fcoe {
            for (lun, image) in f.images() {
                tracing::info!("FCoE LUN {lun} on {name}: {}", describe(&image));
            }
        }
    }
}

/// Open interface `i` of the plan and build its targets.
fn serve_interface(plan: &Plan, i: usize, images: &mut Images) -> Result<Served, Error> {
    let planned = &plan.interfaces[i];
    let iface = Interface::by_name(&planned.name)
        .map_err(|e| Error::Usage(located(&planned.origin, "name", e)))?;
    let mtu = iface.mtu().unwrap_or(1500);
    let aoe = AoeTarget::new(iface.mac, mtu, &hostname(), aoe_exports(plan, i, images)?);
    let (luns, allow) = fcoe_luns(plan, i, images)?;
    let fcoe = if luns.is_empty() {
        None
    } else {
        let (wwpn, wwnn) = fcoe_names(plan, i, &iface);
        tracing::info!("FCoE port on {} (WWPN {wwpn})", iface.name);
        Some(Arc::new(FcoeTarget::new(FcoeConfig {
            mac: iface.mac,
            mtu,
            wwpn,
            wwnn,
            luns,
            allow,
        })))
    };
    let served = Served {
        iface,
        aoe: Arc::new(aoe),
        fcoe,
    };
    served.log();
    Ok(served)
}

pub fn run(args: ServeArgs) -> Result<ExitCode, Error> {
    let plan = Plan::for_serve(&args)?;
    execute(&args, plan)
}

/// Serve `plan`: open the interfaces and images, start the workers of every interface, flush,
/// save state and reload (SIGHUP, `l2san ctl reload`) until asked to stop.
fn execute(args: &ServeArgs, plan: Plan) -> Result<ExitCode, Error> {
    let mut images = Images::default();
    let mut served = Vec::new();
    let count = plan.workers.map_or_else(
        || worker::default_count(std::thread::available_parallelism().map_or(1, |n| n.get())),
        |n| n as usize,
    );
    for i in 0..plan.interfaces.len() {
        served.push(serve_interface(&plan, i, &mut images)?);
    }
    let sources: Vec<IfaceSources> = served
        .iter()
        .map(|s| IfaceSources {
            name: s.iface.name.clone(),
            workers: (0..count).map(|_| Arc::default()).collect(),
            aoe: Some(s.aoe.clone()),
            fcoe: s.fcoe.clone(),
        })
        .collect();
    let aoe_targets: Vec<Arc<AoeTarget>> = served.iter().map(|s| s.aoe.clone()).collect();
    let mut saver = match &plan.state_file {
        Some(path) => Some(state::Saver::load(path, aoe_targets)?),
        None => None,
    };
    let sources = Arc::new(Sources {
        interfaces: sources,
        flush: FlushStats::default(),
        overlays: std::sync::RwLock::new(images.overlay_sets()),
    });
    // Bound before privileges are dropped (a port below 1024, a socket in /run), served after.
    let metrics_listener = match plan.metrics {
        Some(addr) => Some(metrics::bind(addr).map_err(|e| {
            Error::Usage(located(
                &plan.origin,
                "metrics",
                format!(
                    "cannot listen for metrics on {addr}: {e}; pick another --metrics address:port"
                ),
            ))
        })?),
        None => None,
    };
    let ctl_socket = ctl::bind(&plan.ctl_socket);

    if let Some(name) = &plan.user {
        let user = privilege::User::lookup(name).map_err(Error::Usage)?;
        privilege::drop_to(user).with_context(|| format!("dropping privileges to {name}"))?;
        tracing::info!(
            "running as {name} (uid {}), with CAP_NET_RAW and CAP_NET_ADMIN only",
            user.uid
        );
    }
    signal::install_stop_handler().context("installing the SIGINT/SIGTERM handler")?;
    if let Some(listener) = metrics_listener {
        let addr = listener
            .local_addr()
            .context("the metrics listener's address")?;
        metrics::spawn(listener, sources.clone()).context("starting the metrics thread")?;
        tracing::info!("metrics at http://{addr}/metrics");
    }
    let (reload_tx, reload_rx) = std::sync::mpsc::channel::<ctl::ReloadRequest>();
    if let Some(socket) = &ctl_socket {
        ctl::spawn(socket, sources.clone(), reload_tx)
            .context("starting the control socket thread")?;
    }
    // Each interface has its own workers and its own fanout group.
    let mut workers = Vec::new();
    for (s, source) in served.iter().zip(&sources.interfaces) {
        let group = worker::fanout_group(s.iface.index);
        for index in 0..count {
            let role = WorkerRole {
                index,
                count,
                fanout_group: group,
                busy_poll: Duration::from_micros(plan.busy_poll_us),
            };
            let iface = s.iface.clone();
            let handlers = s.handlers();
            let stats: Arc<WorkerStats> = source.workers[index].clone();
            let backend = plan.backend;
            workers.push(
                std::thread::Builder::new()
                    .name(format!("l2san-{}-{index}", iface.name))
                    .spawn(move || worker::run(&iface, &handlers, &stats, role, backend))
                    .context("starting a worker thread")?,
            );
        }
    }

    let mut running = Running {
        plan,
        images,
        served,
    };
    // The periodic flusher bounds what a power loss can take from writeback exports.
    let mut last_flush = Instant::now();
    while !signal::stop_requested() && !workers.iter().any(|w| w.is_finished()) {
        std::thread::sleep(Duration::from_millis(100));
        if signal::take_hangup() {
            log_reload(&running.reload(args, &sources));
        }
        while let Ok(request) = reload_rx.try_recv() {
            let outcome = running.reload(args, &sources);
            log_reload(&outcome);
            let _ = request.reply.send(outcome);
        }
        if last_flush.elapsed() >= Duration::from_secs(running.plan.flush_interval) {
            last_flush = Instant::now();
            flush_all(&running.images.all(), false, &sources.flush);
        }
        if let Some(saver) = &mut saver {
            saver.save_if_changed();
        }
    }
    if let Some(saver) = &mut saver {
        saver.save_if_changed();
    }
    signal::request_stop();
    for w in workers {
        let _ = w.join();
    }
    let ok = flush_all(&running.images.all(), true, &sources.flush);
    drop(ctl_socket);
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn log_reload(outcome: &Result<String, String>) {
    match outcome {
        Ok(done) => tracing::info!("reloaded: {}", done.trim_end().replace('\n', "; ")),
        Err(e) => tracing::error!("reload refused, still serving the previous configuration: {e}"),
    }
}

/// What `serve` runs now: the plan, its open images and its interfaces.
struct Running {
    plan: Plan,
    images: Images,
    served: Vec<Served>,
}

impl Running {
    /// Read the configuration again (the same flags, the same `--config` file) and serve it:
    /// add, remove, resize and change exports and allow-lists, without stopping the others.
    /// Refused whole, with nothing changed, when the new plan has problems, an image does not
    /// open, or it changes what only a restart can (interfaces, FCoE names, workers...).
    /// Returns what changed, one line each.
    fn reload(&mut self, args: &ServeArgs, sources: &Sources) -> Result<String, String> {
        let plan = Plan::for_serve(args).map_err(|e| e.to_string())?;
        let restart = restart_only_changes(&self.plan, &plan);
        if !restart.is_empty() {
            return Err(format!(
                "{} cannot change while serving; restart l2san for that (nothing was changed)",
                restart.join(", ")
            ));
        }
        for (i, s) in self.served.iter().enumerate() {
            if s.fcoe.is_none() && plan.exports_on(i).any(|e| e.lun.is_some()) {
                return Err(format!(
                    "{} had no FCoE LUN at start: starting an FCoE port needs a restart (nothing was changed)",
                    s.iface.name
                ));
            }
        }
        // Open everything first: a failure leaves the running configuration as it is.
        let mut images = self.images.reopened();
        let mut new = Vec::new();
        for i in 0..self.served.len() {
            let aoe = aoe_exports(&plan, i, &mut images).map_err(|e| e.to_string())?;
            let fcoe = fcoe_luns(&plan, i, &mut images).map_err(|e| e.to_string())?;
            new.push((aoe, fcoe));
        }
        let new_backings: Vec<Backing> = new
            .iter()
            .flat_map(|(aoe, (luns, _))| {
                let a = aoe.iter().map(|e| e.image.clone());
                a.chain(luns.iter().map(|(_, b)| b.clone()))
            })
            .collect();
        let mut report = Vec::new();
        for (s, (aoe, (luns, allow))) in self.served.iter().zip(new) {
            let name = &s.iface.name;
            let done = s.aoe.reconfigure(aoe);
            let e = |v: &[(u16, u8)]| -> String {
                let v: Vec<String> = v.iter().map(|(a, b)| format!("e{a}.{b}")).collect();
                v.join(" ")
            };
            for (what, list) in [
                ("added", &done.added),
                ("changed", &done.changed),
                ("removed", &done.removed),
            ] {
                if !list.is_empty() {
                    report.push(format!("{name}: AoE {what} {}", e(list)));
                }
            }
            if let Some(f) = &s.fcoe {
                let done = f.reconfigure(luns, allow);
                let l = |v: &[u16]| -> String {
                    let v: Vec<String> = v.iter().map(|n| n.to_string()).collect();
                    v.join(" ")
                };
                for (what, list) in [
                    ("added", &done.added),
                    ("resized", &done.resized),
                    ("removed", &done.removed),
                ] {
                    if !list.is_empty() {
                        report.push(format!("{name}: FCoE LUN {what} {}", l(list)));
                    }
                }
                if done.access_changed {
                    report.push(format!("{name}: FCoE allow-lists changed"));
                }
            }
        }
        // Images no longer served: flushed once more, then let go (a frame still being
        // handled holds its own reference).
        images.overlays.retain(|_, (_, set)| {
            let used = |b: &Backing| b.overlays().is_some_and(|s| Arc::ptr_eq(s, set));
            new_backings.iter().any(used)
        });
        let kept = images.all();
        let gone: Vec<Backing> = self
            .images
            .all()
            .into_iter()
            .filter(|old| !kept.iter().any(|k| k.same_as(old)))
            .collect();
        flush_all(&gone, true, &sources.flush);
        self.images = images;
        *sources.overlays.write().unwrap_or_else(|e| e.into_inner()) = self.images.overlay_sets();
        if plan.flush_interval != self.plan.flush_interval {
            report.push(format!("flush interval {} s", plan.flush_interval));
        }
        self.plan = plan;
        for s in &self.served {
            s.log();
        }
        if report.is_empty() {
            report.push("no change".into());
        }
        Ok(report.join("\n") + "\n")
    }
}

/// The settings of `new` that differ from `old` and that only a restart applies.
fn restart_only_changes(old: &Plan, new: &Plan) -> Vec<String> {
    let mut out = Vec::new();
    let names = |p: &Plan| -> Vec<(String, Option<Wwn>, Option<Wwn>)> {
        p.interfaces
            .iter()
            .map(|i| (i.name.clone(), i.wwpn, i.wwnn))
            .collect()
    };
    if names(old) != names(new) {
        out.push("the interfaces (names, order, FCoE WWPN/WWNN)".to_string());
    }
    let mut differs = |what: &str, changed: bool| {
        if changed {
            out.push(what.to_string());
        }
    };
    differs("state-file", old.state_file != new.state_file);
    differs("user", old.user != new.user);
    differs("backend", old.backend != new.backend);
    differs("workers", old.workers != new.workers);
    differs("busy-poll", old.busy_poll_us != new.busy_poll_us);
    differs("metrics", old.metrics != new.metrics);
    differs("ctl-socket", old.ctl_socket != new.ctl_socket);
    out
}

/// Flush every writable image (`all`) or those written since the last flush. Errors are
/// logged; they do not stop the service.
fn flush_all(images: &[Backing], all: bool, stats: &FlushStats) -> bool {
    let mut ok = true;
    for image in images.iter().filter(|i| !i.read_only()) {
        let r = if all {
            image.flush().map(|_| true)
        } else {
            image.flush_if_dirty()
        };
        match r {
            Ok(true) => {
                stats.flushes.fetch_add(1, Ordering::Relaxed);
            }
            Ok(false) => {}
            Err(_) => {
                stats.errors.fetch_add(1, Ordering::Relaxed);
            }
        }
        if let Err(e) = r {
            ok = false;
            tracing::warn!(
                "flushing {} failed: {e}; data written since the last flush may not be on stable storage",
                image.image().path().display()
            );
        }
    }
    ok
}
