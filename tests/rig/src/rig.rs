//! Namespaces, taps, child processes, targets and iPXE boots.
//!
//! Every frame the rig causes stays on a tap inside a network namespace it created
//! ([`Netns::new`]); dropping the [`Netns`] deletes the namespace and the tap with it. Every process
//! it starts runs in its own process group ([`Child`]); dropping the `Child` kills that group. Drop
//! order matters: declare the `Netns` before the children so that they die first.

use std::ffi::OsStr;
use std::fmt;
use std::fs::{self, File, OpenOptions, TryLockError};
use std::io::Write;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use l2san_common::io::sys::process;

use crate::skip::{self, Reason};

/// Prefix of every namespace the rig creates: `l2st-<pid>-<n>`.
const NETNS_PREFIX: &str = "l2st-";

/// Polls `cond` until it returns true or `timeout` passes; returns whether it became true.
///
/// Polls every 10 ms at first, backing off to every 100 ms. Use this instead of a bare sleep.
pub fn wait_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    let mut pause = Duration::from_millis(10);
    loop {
        if cond() {
            return true;
        }
        let now = Instant::now();
        if now >= deadline {
            return false;
        }
        std::thread::sleep(pause.min(deadline - now));
        pause = (pause * 2).min(Duration::from_millis(100));
    }
}

/// Prints a line straight to stderr, past the test harness's output capture, so that results
/// (timings, MB/s) show in plain `cargo test` output.
pub fn report(line: impl fmt::Display) {
    let _ = writeln!(std::io::stderr().lock(), "{line}");
}

/// The Cargo workspace this crate lives in (it is `tests/rig/` of it).
pub fn workspace_dir() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest
        .ancestors()
        .nth(2)
        .unwrap_or(manifest)
        .to_path_buf()
}

/// Where the rig keeps its caches (kernel), locks and per-test run directories:
/// `$L2SAN_RIG_DIR`, else `$CARGO_TARGET_DIR/l2san-rig`, else `<workspace>/target/l2san-rig`.
pub fn rig_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("L2SAN_RIG_DIR") {
        return PathBuf::from(dir);
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_dir().join("target"));
    target.join("l2san-rig")
}

/// Why end-to-end tests cannot run here (not root, no `/dev/net/tun`), or `None` if they can.
/// Tests do not call this: [`e2e`] asks [`skip::e2e_environment`], which does.
pub fn missing_privileges() -> Option<String> {
    let status = fs::read_to_string("/proc/self/status").unwrap_or_default();
    let euid = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .unwrap_or("?");
    if euid != "0" {
        return Some(format!("not running as root (euid {euid})"));
    }
    if !Path::new("/dev/net/tun").exists() {
        return Some("/dev/net/tun is missing".into());
    }
    None
}

/// Runs `cmd` to completion; fails with its stderr unless it exits 0. Returns its stdout.
pub fn run_cmd(cmd: &mut Command) -> Result<String> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("cannot run {cmd:?}"))?;
    if !out.status.success() {
        bail!(
            "{cmd:?} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// An exclusive lock on a file (`flock`, through [`File::lock`]), released on drop.
#[derive(Debug)]
pub struct FileLock {
    _file: File,
}

impl FileLock {
    /// Blocks until the lock on `path` (created if needed) is ours; says so if it has to wait.
    pub fn acquire(path: &Path) -> Result<FileLock> {
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).with_context(|| format!("cannot create {parent:?}"))?;
        }
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)
            .with_context(|| format!("cannot open lock file {path:?}"))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                eprintln!("rig: waiting for lock {path:?} (another end-to-end test is running)");
                file.lock()
                    .with_context(|| format!("cannot lock {path:?}"))?;
            }
            Err(TryLockError::Error(e)) => {
                return Err(e).with_context(|| format!("cannot lock {path:?}"));
            }
        }
        Ok(FileLock { _file: file })
    }
}

/// A process started in its own process group; dropping it kills the whole group.
#[derive(Debug)]
pub struct Child {
    name: String,
    child: std::process::Child,
    status: Option<ExitStatus>,
}

impl Child {
    /// Spawns `cmd` (stdin from /dev/null) as the leader of a new process group.
    ///
    /// A process group of its own keeps a terminal's Ctrl-C from reaching it, so the child also
    /// gets SIGKILL when the thread that spawned it dies (`PR_SET_PDEATHSIG`): a test killed
    /// before its `Drop`s run leaves no QEMU or target behind. Keep the spawning thread alive
    /// as long as the child should live.
    pub fn spawn(name: &str, cmd: &mut Command) -> Result<Child> {
        process::kill_with_parent_thread(cmd);
        let child = cmd
            .process_group(0)
            .stdin(Stdio::null())
            .spawn()
            .with_context(|| format!("cannot start {name}: {cmd:?}"))?;
        Ok(Child {
            name: name.to_string(),
            child,
            status: None,
        })
    }

    /// Like [`Child::spawn`], with stdout and stderr appended to `log`.
    pub fn spawn_logged(name: &str, cmd: &mut Command, log: &Path) -> Result<Child> {
        let out = OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .with_context(|| format!("cannot open {log:?}"))?;
        let err = out.try_clone()?;
        Child::spawn(name, cmd.stdout(out).stderr(err))
    }

    /// The leader's pid, which is also the process group id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The exit status if the leader has exited (reaping it), `None` while it runs.
    pub fn exited(&mut self) -> Result<Option<ExitStatus>> {
        if self.status.is_none() {
            self.status = self
                .child
                .try_wait()
                .with_context(|| format!("cannot wait for {}", self.name))?;
        }
        Ok(self.status)
    }

    /// Waits up to `timeout` for the leader to exit.
    pub fn wait_exit(&mut self, timeout: Duration) -> Result<Option<ExitStatus>> {
        let mut err = None;
        wait_until(timeout, || match self.exited() {
            Ok(status) => status.is_some(),
            Err(e) => {
                err = Some(e);
                true
            }
        });
        match err {
            Some(e) => Err(e),
            None => Ok(self.status),
        }
    }

    /// Sends `signal` to the process group. Does nothing once the leader has been reaped: the
    /// group id could then belong to someone else.
    pub fn signal(&mut self, signal: i32) {
        if self.status.is_some() {
            return;
        }
        // The leader is not reaped yet (checked above), so the group id is still the one we
        // created. An error means the group is gone already: nothing left to signal.
        let _ = process::signal_process_group(self.child.id(), signal);
    }

    /// SIGTERM to the group, then up to `timeout` for the leader to exit, then SIGKILL.
    pub fn stop(&mut self, timeout: Duration) -> Result<ExitStatus> {
        self.signal(libc::SIGTERM);
        if let Some(status) = self.wait_exit(timeout)? {
            return Ok(status);
        }
        self.signal(libc::SIGKILL);
        let status = self
            .child
            .wait()
            .with_context(|| format!("cannot wait for {}", self.name))?;
        self.status = Some(status);
        bail!(
            "{} did not exit within {timeout:?} of SIGTERM and was killed",
            self.name
        )
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        if self.status.is_none() {
            self.signal(libc::SIGKILL);
            if let Ok(status) = self.child.wait() {
                self.status = Some(status);
            }
        }
    }
}

/// A network namespace named `l2st-<pid>-<n>`, deleted on drop.
#[derive(Debug)]
pub struct Netns {
    name: String,
}

impl Netns {
    /// Creates a fresh namespace, after deleting any `l2st-<pid>-*` left by a dead process.
    pub fn new() -> Result<Netns> {
        static SEQ: AtomicU32 = AtomicU32::new(0);
        sweep_stale_netns();
        let name = format!(
            "{NETNS_PREFIX}{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        );
        run_cmd(Command::new("ip").args(["netns", "add", &name]))
            .context("cannot create a network namespace (is iproute2 installed?)")?;
        let ns = Netns { name };
        // Keep the segment quiet: no IPv6 (MLD, neighbour discovery) on anything created here.
        // Best effort, the kernel may lack IPv6.
        let _ = ns.run(
            "sh",
            [
                "-c",
                "echo 1 > /proc/sys/net/ipv6/conf/default/disable_ipv6; \
                 echo 1 > /proc/sys/net/ipv6/conf/all/disable_ipv6",
            ],
        );
        Ok(ns)
    }

    /// The namespace's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The namespace's file, `/var/run/netns/<name>`: what
    /// [`in_netns`](l2san_common::io::sys::netns::in_netns) joins.
    pub fn path(&self) -> PathBuf {
        Path::new("/var/run/netns").join(&self.name)
    }

    /// A command that runs `program` inside the namespace (`ip netns exec NAME program`).
    pub fn command(&self, program: impl AsRef<OsStr>) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.name]).arg(program);
        cmd
    }

    /// Runs `program args` inside the namespace to completion and returns its stdout.
    pub fn run<I, S>(&self, program: &str, args: I) -> Result<String>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        run_cmd(self.command(program).args(args))
    }

    /// Creates a tap device in the namespace with `mtu` and txqueuelen 10000, IPv6 disabled, and
    /// sets it up. The MTU is set here, before any target starts, because targets read it at start.
    pub fn tap(&self, name: &str, mtu: u32) -> Result<Tap> {
        let mtu_s = mtu.to_string();
        self.run("ip", ["tuntap", "add", "dev", name, "mode", "tap"])
            .with_context(|| format!("cannot create tap {name} in {}", self.name))?;
        self.run(
            "ip",
            [
                "link",
                "set",
                "dev",
                name,
                "mtu",
                &mtu_s,
                "txqueuelen",
                "10000",
            ],
        )
        .with_context(|| format!("cannot set MTU {mtu} on {name}"))?;
        self.link_up(name)?;
        self.link(name, mtu)
    }

    /// Disables IPv6 on `dev` (best effort: no router solicitations or DAD on the segment) and
    /// sets it up.
    pub fn link_up(&self, dev: &str) -> Result<()> {
        let _ = self.run(
            "sh",
            [
                "-c",
                &format!("echo 1 > /proc/sys/net/ipv6/conf/{dev}/disable_ipv6"),
            ],
        );
        self.run("ip", ["link", "set", "dev", dev, "up"])?;
        Ok(())
    }

    /// The interface `name` of the namespace as a [`Tap`] of `mtu` (a target needs only its
    /// name and index, which a veth end has too).
    pub fn link(&self, name: &str, mtu: u32) -> Result<Tap> {
        let ifindex = self
            .run("cat", [format!("/sys/class/net/{name}/ifindex")])?
            .trim()
            .parse()
            .context("bad ifindex")?;
        Ok(Tap {
            name: name.to_string(),
            mtu,
            ifindex,
        })
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        if let Err(e) = run_cmd(Command::new("ip").args(["netns", "del", &self.name])) {
            eprintln!("rig: {e:#}");
        }
    }
}

/// Deletes namespaces named `l2st-<pid>-*` whose process no longer exists.
fn sweep_stale_netns() {
    let Ok(list) = run_cmd(Command::new("ip").args(["netns", "list"])) else {
        return;
    };
    for line in list.lines() {
        let Some(name) = line.split_whitespace().next() else {
            continue;
        };
        let Some(pid) = name
            .strip_prefix(NETNS_PREFIX)
            .and_then(|rest| rest.split('-').next())
            .and_then(|pid| pid.parse::<u32>().ok())
        else {
            continue;
        };
        if !Path::new(&format!("/proc/{pid}")).exists() {
            eprintln!("rig: deleting stale namespace {name}");
            let _ = run_cmd(Command::new("ip").args(["netns", "del", name]));
        }
    }
}

/// A tap device inside a [`Netns`]; it goes away with the namespace.
#[derive(Debug, Clone)]
pub struct Tap {
    /// Interface name inside the namespace.
    pub name: String,
    /// The MTU it was created with.
    pub mtu: u32,
    /// Interface index inside the namespace.
    pub ifindex: u32,
}

/// Which program serves the images.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TargetKind {
    /// The l2san binary under test.
    L2san,
    /// vblade, the reference AoE target (`/usr/sbin/vblade`).
    Vblade,
}

impl TargetKind {
    /// `$L2SAN_E2E_TARGET` (`l2san` or `vblade`), l2san when unset.
    pub fn from_env() -> Result<TargetKind> {
        match std::env::var("L2SAN_E2E_TARGET").as_deref() {
            Err(_) | Ok("") | Ok("l2san") => Ok(TargetKind::L2san),
            Ok("vblade") => Ok(TargetKind::Vblade),
            Ok(other) => bail!("L2SAN_E2E_TARGET={other:?}: expected \"l2san\" or \"vblade\""),
        }
    }
}

impl fmt::Display for TargetKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TargetKind::L2san => "l2san",
            TargetKind::Vblade => "vblade",
        })
    }
}

/// One image exported over AoE.
#[derive(Debug, Clone)]
pub struct AoeExport {
    /// AoE major (shelf) address.
    pub shelf: u16,
    /// AoE minor (slot) address.
    pub slot: u8,
    /// Image file.
    pub image: PathBuf,
    /// Refuse writes.
    pub read_only: bool,
    /// Write through to the file before acknowledging (l2san `,sync`, vblade `-s`).
    pub sync: bool,
}

impl AoeExport {
    /// A writable, non-sync export of `image` at `shelf.slot`.
    pub fn new(shelf: u16, slot: u8, image: impl Into<PathBuf>) -> AoeExport {
        AoeExport {
            shelf,
            slot,
            image: image.into(),
            read_only: false,
            sync: false,
        }
    }

    /// The same export, read-only.
    pub fn read_only(mut self) -> AoeExport {
        self.read_only = true;
        self
    }

    /// l2san's `--aoe` argument: `<shelf>.<slot>=<image>[,ro][,sync]`.
    pub fn l2san_arg(&self) -> String {
        let mut arg = format!("{}.{}={}", self.shelf, self.slot, self.image.display());
        if self.read_only {
            arg.push_str(",ro");
        }
        if self.sync {
            arg.push_str(",sync");
        }
        arg
    }
}

/// The l2san binary: `$L2SAN_BIN` as is, else `<target>/debug/l2san` after `cargo build -p l2san`
/// (a no-op when it is fresh, and it keeps a stale binary from being tested).
pub fn l2san_bin() -> Result<PathBuf> {
    if let Some(bin) = std::env::var_os("L2SAN_BIN") {
        let bin = PathBuf::from(bin);
        if !bin.is_file() {
            bail!("L2SAN_BIN={bin:?} is not a file");
        }
        return Ok(bin);
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_dir().join("target"));
    let bin = target.join("debug").join("l2san");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let out = Command::new(cargo)
        .args(["build", "--quiet", "-p", "l2san"])
        .current_dir(workspace_dir())
        .stdin(Stdio::null())
        .output()
        .context("cannot run cargo build -p l2san")?;
    if !out.status.success() || !bin.is_file() {
        bail!(
            "cargo build -p l2san failed ({}); set L2SAN_BIN to an l2san binary, or \
             L2SAN_E2E_TARGET=vblade:\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(bin)
}

/// A running target process serving images on a tap.
#[derive(Debug)]
pub struct Target {
    kind: TargetKind,
    child: Child,
    log: PathBuf,
}

impl Target {
    /// Starts `kind` serving `export` on `tap`, logging to `log`. l2san is found by [`l2san_bin`].
    pub fn start(
        kind: TargetKind,
        ns: &Netns,
        tap: &Tap,
        export: &AoeExport,
        log: &Path,
    ) -> Result<Target> {
        match kind {
            TargetKind::L2san => {
                Target::l2san(ns, tap, &l2san_bin()?, std::slice::from_ref(export), log)
            }
            TargetKind::Vblade => Target::vblade(ns, tap, export, log),
        }
    }

    /// `vblade [-r] [-s] <shelf> <slot> <tap> <image>` inside `ns`.
    pub fn vblade(ns: &Netns, tap: &Tap, export: &AoeExport, log: &Path) -> Result<Target> {
        let mut cmd = ns.command("vblade");
        if export.read_only {
            cmd.arg("-r");
        }
        if export.sync {
            cmd.arg("-s");
        }
        cmd.arg(export.shelf.to_string())
            .arg(export.slot.to_string())
            .arg(&tap.name)
            .arg(&export.image);
        Target::spawn(TargetKind::Vblade, cmd, ns, tap, log)
    }

    /// `l2san serve -i <tap> --aoe <export>...` inside `ns`, with `RUST_LOG=info` unless set.
    pub fn l2san(
        ns: &Netns,
        tap: &Tap,
        bin: &Path,
        exports: &[AoeExport],
        log: &Path,
    ) -> Result<Target> {
        let mut cmd = ns.command(bin);
        cmd.args(["serve", "-i", &tap.name]);
        for export in exports {
            cmd.arg("--aoe").arg(export.l2san_arg());
        }
        if std::env::var_os("RUST_LOG").is_none() {
            cmd.env("RUST_LOG", "info");
        }
        Target::spawn(TargetKind::L2san, cmd, ns, tap, log)
    }

    /// `l2san serve -i <tap> <args>...` inside `ns`, with `RUST_LOG=info` unless set: for exports
    /// and options [`Target::l2san`] does not build (`--fcoe`, `--wwpn`).
    pub fn l2san_args(
        ns: &Netns,
        tap: &Tap,
        bin: &Path,
        args: &[String],
        log: &Path,
    ) -> Result<Target> {
        let mut cmd = ns.command(bin);
        cmd.args(["serve", "-i", &tap.name]).args(args);
        if std::env::var_os("RUST_LOG").is_none() {
            cmd.env("RUST_LOG", "info");
        }
        Target::spawn(TargetKind::L2san, cmd, ns, tap, log)
    }

    fn spawn(
        kind: TargetKind,
        mut cmd: Command,
        ns: &Netns,
        tap: &Tap,
        log: &Path,
    ) -> Result<Target> {
        let child = Child::spawn_logged(&kind.to_string(), &mut cmd, log)?;
        let mut target = Target {
            kind,
            child,
            log: log.to_path_buf(),
        };
        // Ready once a packet socket is bound to the tap. Initiators retry discovery, so not
        // seeing one (say, a target on AF_XDP) only costs a warning; dying is an error.
        let packet = format!("/proc/{}/net/packet", target.child.pid());
        let mut exited = None;
        let bound = wait_until(Duration::from_secs(10), || {
            if let Ok(Some(status)) = target.child.exited() {
                exited = Some(status);
                return true;
            }
            packet_socket_on(&packet, tap.ifindex)
        });
        if let Some(status) = exited {
            bail!(
                "{kind} exited at start ({status}) in {}; its log:\n{}",
                ns.name(),
                target.log_text()
            );
        }
        if !bound {
            eprintln!(
                "rig: warning: {kind} has no packet socket on {} after 10 s; going on",
                tap.name
            );
        }
        Ok(target)
    }

    /// Which program this is.
    pub fn kind(&self) -> TargetKind {
        self.kind
    }

    /// Everything the target printed so far.
    pub fn log_text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Fails if the target has exited.
    pub fn check_running(&mut self) -> Result<()> {
        if let Some(status) = self.child.exited()? {
            bail!("{} exited early ({status})", self.kind);
        }
        Ok(())
    }

    /// SIGTERM, then waits for the target to flush and exit. l2san must exit 0 within 20 s;
    /// vblade has no clean shutdown and may die of the signal (its writes are already in the file).
    pub fn stop(mut self) -> Result<()> {
        if let Some(status) = self.child.exited()? {
            bail!("{} had already exited ({status})", self.kind);
        }
        let status = self.child.stop(Duration::from_secs(20))?;
        match self.kind {
            TargetKind::L2san if !status.success() => {
                bail!("l2san exited with {status} after SIGTERM, expected 0")
            }
            TargetKind::Vblade if !(status.success() || status.signal() == Some(libc::SIGTERM)) => {
                bail!("vblade ended with {status} after SIGTERM")
            }
            _ => Ok(()),
        }
    }
}

/// Whether the `/proc/<pid>/net/packet` table lists a socket bound to `ifindex`.
pub(crate) fn packet_socket_on(table: &str, ifindex: u32) -> bool {
    // sk RefCnt Type Proto Iface R Rmem User Inode
    let Ok(text) = fs::read_to_string(table) else {
        return false;
    };
    text.lines().skip(1).any(|l| {
        l.split_whitespace()
            .nth(4)
            .and_then(|i| i.parse::<u32>().ok())
            == Some(ifindex)
    })
}

/// The QEMU process running a guest, with its serial log.
#[derive(Debug)]
pub struct Qemu {
    child: Child,
    serial: PathBuf,
}

impl Qemu {
    /// Starts `qemu-system-x86_64 -accel tcg -nodefaults -display none -no-reboot` inside `ns`
    /// with a virtio-net NIC on `tap`, COM1 to `dir/<name>.serial.log`, stderr to
    /// `dir/<name>.qemu.log`, and `extra` arguments.
    pub fn start<I, S>(
        name: &str,
        ns: &Netns,
        tap: &Tap,
        memory_mb: u32,
        dir: &Path,
        extra: I,
    ) -> Result<Qemu>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let serial = dir.join(format!("{name}.serial.log"));
        let _ = fs::remove_file(&serial);
        let mut cmd = ns.command("qemu-system-x86_64");
        cmd.args(["-accel", "tcg", "-nodefaults", "-display", "none", "-vga"])
            .args(["none", "-no-reboot", "-monitor", "none", "-m"])
            .arg(memory_mb.to_string())
            .arg("-serial")
            .arg(format!("file:{}", serial.display()))
            .arg("-netdev")
            .arg(format!(
                "tap,id=n0,ifname={},script=no,downscript=no",
                tap.name
            ))
            .args(["-device", "virtio-net-pci,netdev=n0,romfile="])
            .args(extra);
        let log = dir.join(format!("{name}.qemu.log"));
        let child = Child::spawn_logged(&format!("qemu ({name})"), &mut cmd, &log)
            .context("cannot start qemu-system-x86_64 (is qemu-system-x86 installed?)")?;
        Ok(Qemu { child, serial })
    }

    /// What the guest wrote to COM1 so far.
    pub fn serial_log(&self) -> String {
        fs::read(&self.serial)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }

    /// The QEMU process.
    pub fn child(&mut self) -> &mut Child {
        &mut self.child
    }
}

/// Options for [`ipxe_sanboot`].
#[derive(Debug, Clone)]
pub struct IpxeOpts {
    /// AoE shelf to boot from.
    pub shelf: u16,
    /// AoE slot to boot from.
    pub slot: u8,
    /// How long to wait for the boot code's verdict.
    pub timeout: Duration,
    /// Guest memory.
    pub memory_mb: u32,
}

impl Default for IpxeOpts {
    fn default() -> Self {
        IpxeOpts {
            shelf: 0,
            slot: 0,
            timeout: Duration::from_secs(60),
            memory_mb: 256,
        }
    }
}

/// The verdict of the [`crate::bootdisk`] boot code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BootResult {
    /// `L2SAN-BOOT OK`: every read and write verified (counts in sectors, reads include the
    /// read-back of written sectors).
    Ok {
        /// Sectors read.
        reads: u64,
        /// Sectors written.
        writes: u64,
    },
    /// `L2SAN-BOOT RO`: reads verified, every write refused, refused sectors unchanged.
    ReadOnly {
        /// Sectors read.
        reads: u64,
    },
    /// `L2SAN-BOOT FAIL ...`: the boot code's own failure line.
    Failed(String),
    /// No verdict line: why (timeout, QEMU exited).
    NoVerdict(String),
}

/// What an iPXE boot did.
#[derive(Debug, Clone)]
pub struct BootOutcome {
    /// The boot code's verdict.
    pub result: BootResult,
    /// Everything on the guest's serial port (SeaBIOS, iPXE and the boot code).
    pub serial_log: String,
    /// From QEMU start to the verdict.
    pub elapsed: Duration,
}

/// Parses the boot code's verdict line out of a serial log (only complete lines count).
pub fn boot_verdict(serial_log: &str) -> Option<BootResult> {
    let complete = &serial_log[..serial_log.rfind('\n')? + 1];
    complete.lines().find_map(|line| {
        let line = line.trim();
        let rest = &line[line.find("L2SAN-BOOT ")? + "L2SAN-BOOT ".len()..];
        let count = |key: &str| -> Option<u64> {
            rest.split_whitespace()
                .find_map(|w| w.strip_prefix(key))
                .and_then(|v| v.parse().ok())
        };
        if rest.starts_with("OK ") {
            Some(BootResult::Ok {
                reads: count("reads=")?,
                writes: count("writes=")?,
            })
        } else if rest.starts_with("RO ") {
            Some(BootResult::ReadOnly {
                reads: count("reads=")?,
            })
        } else {
            rest.strip_prefix("FAIL ")
                .map(|r| BootResult::Failed(r.to_string()))
        }
    })
}

/// Boots `/boot/ipxe.lkrn` in QEMU on `tap` with the script `ifopen net0; sanboot aoe:e<shelf>.<slot>`
/// and waits for the boot code's verdict. Files go in `dir`. A missing verdict is not an error:
/// it is [`BootResult::NoVerdict`], with the serial log for the report.
pub fn ipxe_sanboot(ns: &Netns, tap: &Tap, opts: &IpxeOpts, dir: &Path) -> Result<BootOutcome> {
    let ipxe = Path::new("/boot/ipxe.lkrn");
    if !ipxe.is_file() {
        bail!("{ipxe:?} is missing: install the ipxe package");
    }
    let script = dir.join("boot.ipxe");
    // `reboot` after a failed sanboot ends QEMU at once (-no-reboot, reboot-timeout=0).
    fs::write(
        &script,
        format!(
            "#!ipxe\nifopen net0\nsanboot aoe:e{}.{}\nreboot\n",
            opts.shelf, opts.slot
        ),
    )?;
    // SeaBIOS and iPXE copy their console to the serial port at 0x3f8 given this fw_cfg file.
    let sercon = dir.join("sercon-port");
    fs::write(&sercon, [0xf8, 0x03])?;
    let start = Instant::now();
    let mut qemu = Qemu::start(
        "ipxe",
        ns,
        tap,
        opts.memory_mb,
        dir,
        [
            OsStr::new("-boot"),
            OsStr::new("reboot-timeout=0"),
            OsStr::new("-kernel"),
            ipxe.as_os_str(),
            OsStr::new("-initrd"),
            script.as_os_str(),
            OsStr::new("-fw_cfg"),
            OsStr::new(&format!("name=etc/sercon-port,file={}", sercon.display())),
            OsStr::new("-device"),
            OsStr::new("isa-debug-exit,iobase=0xf4,iosize=0x01"),
        ],
    )?;
    let mut exited = None;
    wait_until(opts.timeout, || {
        if let Ok(Some(status)) = qemu.child().exited() {
            exited = Some(status);
            return true;
        }
        boot_verdict(&qemu.serial_log()).is_some()
    });
    let elapsed = start.elapsed();
    // The boot code ends QEMU through isa-debug-exit; give it a moment, then kill it.
    qemu.child().wait_exit(Duration::from_secs(5))?;
    // Killing a QEMU that did not exit is part of the plan, not an error.
    let _ = qemu.child().stop(Duration::from_secs(2));
    let serial_log = qemu.serial_log();
    let result = boot_verdict(&serial_log).unwrap_or_else(|| {
        BootResult::NoVerdict(match exited {
            Some(status) => format!("QEMU exited ({status}) without a verdict line"),
            None => format!("no verdict line within {:?}", opts.timeout),
        })
    });
    Ok(BootOutcome {
        result,
        serial_log,
        elapsed,
    })
}

/// md5 of a file, by coreutils `md5sum`, as lower-case hex.
pub fn md5_file(path: &Path) -> Result<String> {
    let out = run_cmd(Command::new("md5sum").arg(path))?;
    out.split_whitespace()
        .next()
        .map(str::to_string)
        .ok_or_else(|| anyhow!("md5sum printed nothing for {path:?}"))
}

/// One end-to-end test's context: an exclusive lock (QEMU under TCG needs the CPUs, and timings
/// should not be shared) and a run directory `<rig_dir>/runs/<name>` for images and logs.
#[derive(Debug)]
pub struct Run {
    name: String,
    dir: PathBuf,
    target: TargetKind,
    _lock: FileLock,
}

impl Run {
    /// The run directory (emptied at start).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// A path inside the run directory.
    pub fn path(&self, file: &str) -> PathBuf {
        self.dir.join(file)
    }

    /// The target the test should use ([`TargetKind::from_env`]).
    pub fn target_kind(&self) -> TargetKind {
        self.target
    }

    /// The test's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Starts the configured target serving `export` on `tap`, logging to `target.log`.
    pub fn start_target(&self, ns: &Netns, tap: &Tap, export: &AoeExport) -> Result<Target> {
        Target::start(self.target, ns, tap, export, &self.path("target.log"))
    }

    fn print_logs(&self) {
        let Ok(entries) = fs::read_dir(&self.dir) else {
            return;
        };
        let mut logs: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension() == Some(OsStr::new("log")))
            .collect();
        logs.sort();
        let mut err = std::io::stderr().lock();
        for log in logs {
            let text = fs::read(&log).unwrap_or_default();
            let _ = writeln!(err, "===== {} =====", log.display());
            let _ = err.write_all(&text);
            let _ = writeln!(err, "\n===== end of {} =====", log.display());
        }
    }
}

/// Which targets an end-to-end test applies to.
#[derive(Debug, Clone, Copy)]
enum Applies<'a> {
    /// The one `L2SAN_E2E_TARGET` chose (l2san unless it says vblade).
    ChosenTarget,
    /// l2san only, for the reason given ("vblade has no FCoE").
    L2sanOnly(&'a str),
}

/// Runs an end-to-end test body against the target `L2SAN_E2E_TARGET` chose
/// ([`TargetKind::from_env`]).
///
/// Where end-to-end tests cannot run (not root, no `/dev/net/tun`) it reports the skip through
/// [`skip::skip`], which fails the test instead under `L2SAN_REQUIRE_E2E=1`. Otherwise it takes
/// the rig lock, gives the body a fresh [`Run`] directory, and on failure prints every `*.log`
/// in it (serial consoles, QEMU, target) and panics. The directory is removed after a success
/// unless `L2SAN_E2E_KEEP` is set.
pub fn e2e(name: &str, body: impl FnOnce(&Run) -> Result<()>) {
    run_e2e(name, Applies::ChosenTarget, body)
}

/// [`e2e`] for a test of l2san's own features, which has nothing to check on another target
/// (`why`: "vblade has no FCoE"). When `L2SAN_E2E_TARGET` chose another target it reports
/// the skip and passes, under `L2SAN_REQUIRE_E2E=1` too: an explicit choice of target is not a
/// missing environment. Its [`Run::target_kind`] is l2san.
pub fn e2e_l2san(name: &str, why: &str, body: impl FnOnce(&Run) -> Result<()>) {
    run_e2e(name, Applies::L2sanOnly(why), body)
}

fn run_e2e(name: &str, applies: Applies<'_>, body: impl FnOnce(&Run) -> Result<()>) {
    let chosen = TargetKind::from_env().unwrap_or_else(|e| panic!("{name}: {e:#}"));
    // Read here too, so that a mistyped value fails every test, not only one that cannot run.
    skip::required();
    let target = match applies {
        Applies::ChosenTarget => chosen,
        Applies::L2sanOnly(_) if chosen == TargetKind::L2san => chosen,
        Applies::L2sanOnly(why) => {
            let why = why.to_string();
            return skip::skip(
                name,
                Reason::OtherTarget {
                    target: chosen,
                    why,
                },
            );
        }
    };
    if let Some(reason) = skip::e2e_environment() {
        return skip::skip(name, reason);
    }
    let run = (|| -> Result<Run> {
        let lock = FileLock::acquire(&rig_dir().join("e2e.lock"))?;
        let dir = rig_dir().join("runs").join(name);
        if dir.exists() {
            fs::remove_dir_all(&dir).with_context(|| format!("cannot empty {dir:?}"))?;
        }
        fs::create_dir_all(&dir).with_context(|| format!("cannot create {dir:?}"))?;
        Ok(Run {
            name: name.to_string(),
            dir,
            target,
            _lock: lock,
        })
    })();
    let run = match run {
        Ok(run) => run,
        Err(e) => panic!("{name}: cannot set up: {e:#}"),
    };
    eprintln!("{name}: target {}, files in {:?}", run.target, run.dir);
    let start = Instant::now();
    let result = match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| body(&run))) {
        Ok(result) => result,
        Err(panic) => {
            run.print_logs();
            std::panic::resume_unwind(panic);
        }
    };
    match result {
        Ok(()) => {
            report(format_args!(
                "{name}: passed in {:.1} s against {}",
                start.elapsed().as_secs_f64(),
                run.target
            ));
            if std::env::var_os("L2SAN_E2E_KEEP").is_none() {
                let _ = fs::remove_dir_all(&run.dir);
            }
        }
        Err(e) => {
            run.print_logs();
            panic!(
                "{name} failed after {:.1} s against {}: {e:#}\n(files kept in {:?})",
                start.elapsed().as_secs_f64(),
                run.target,
                run.dir
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verdicts_parse() {
        let log = "iPXE\r\nL2SAN-BOOT START\r\n\r\nL2SAN-BOOT OK reads=1192 writes=67\r\n";
        assert_eq!(
            boot_verdict(log),
            Some(BootResult::Ok {
                reads: 1192,
                writes: 67
            })
        );
        assert_eq!(
            boot_verdict("L2SAN-BOOT RO reads=5 writes=0\n"),
            Some(BootResult::ReadOnly { reads: 5 })
        );
        assert_eq!(
            boot_verdict("x\nL2SAN-BOOT FAIL read-mismatch0 lba=7\r\n"),
            Some(BootResult::Failed("read-mismatch0 lba=7".into()))
        );
        // An incomplete line is not a verdict yet.
        assert_eq!(boot_verdict("L2SAN-BOOT OK reads=11"), None);
        assert_eq!(boot_verdict("L2SAN-BOOT START\r\n"), None);
    }

    #[test]
    fn wait_until_times_out_and_succeeds() {
        assert!(!wait_until(Duration::from_millis(30), || false));
        let mut n = 0;
        assert!(wait_until(Duration::from_secs(5), || {
            n += 1;
            n > 3
        }));
    }

    #[test]
    fn l2san_export_arg() {
        let e = AoeExport::new(1, 2, "/x/disk.img");
        assert_eq!(e.l2san_arg(), "1.2=/x/disk.img");
        assert_eq!(e.read_only().l2san_arg(), "1.2=/x/disk.img,ro");
    }

    #[test]
    fn packet_table_parse() {
        let dir = std::env::temp_dir().join(format!("l2st-pkt-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let f = dir.join("packet");
        fs::write(
            &f,
            "sk               RefCnt Type Proto  Iface R Rmem   User   Inode\n\
             ffff8881 3      3    88a2   7     1 0      0      12345\n",
        )
        .unwrap();
        assert!(packet_socket_on(f.to_str().unwrap(), 7));
        assert!(!packet_socket_on(f.to_str().unwrap(), 2));
        fs::remove_dir_all(&dir).unwrap();
    }
}
