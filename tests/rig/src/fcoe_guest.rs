//! A Linux guest as FCoE VN2VN initiator (open-fcoe: `fcoe`, `libfcoe`, `libfc`), the same Debian
//! kernel and busybox initramfs as [`crate::linux`], and the tools to check what went over the
//! wire: a tcpdump capture of the segment ([`Capture`]), a frame checker that reads the capture
//! itself ([`analyze`], fast enough for whole captures) and a tshark pass over a reduced capture
//! ([`tshark_check`]).
//!
//! The guest's MAC is set on QEMU's NIC, so its WWPN (`20:00:<mac>`, [`wwpn_from_mac`]) and its
//! VN2VN port id (the MAC's low 16 bits, [`port_id_from_mac`]) are known in advance; a target's
//! default WWPN is `20:00:<its MAC>`, so choosing both MACs decides who has the higher WWPN, and
//! with it who sends the PLOGI (libfc: the port with the higher WWPN).
//!
//! The scenario ([`run_fcoe`]) reports lines `L2SAN-LINUX <KEY> <value>` on the serial console:
//! 1. `MTU`, `MAC`: eth0 (MTU from the `l2san.mtu=` kernel parameter; default qdisc `pfifo_fast`
//!    set before eth0 comes up, because fq_codel drops frames and FCoE never retransmits);
//! 2. creates the VN2VN controller through `/sys/bus/fcoe` and waits for `port_state` Online:
//!    `LPORT <port_name> <port_id>`;
//! 3. [`FcoeMode::Probe`] stops here (after a few seconds of beacons). Otherwise it waits for a
//!    remote port with the target role, `RPORT <port_name> <port_id> <roles>`, and a SCSI disk:
//!    `DEVICE /dev/sdX <bytes>`, `SCSI <h:c:t:l> <vendor> <model>`, `DISK-RO <0|1>`;
//! 4. `READ-RATE` (O_DIRECT, 1 MiB blocks, whole disk), `READ-MD5` (whole disk);
//! 5. [`FcoeMode::ReadWrite`]: writes [`linux::aoe_pattern`] at [`FCOE_PATTERN_LBA`] with O_DIRECT
//!    and fsync, `READBACK-MD5` (O_DIRECT re-read), `WRITE-RATE` (zeros over the last `write_mib`
//!    MiB). [`FcoeMode::ReadOnly`]: the same pattern write must fail, `WRITE-REFUSED <dd's error>`
//!    (Linux refuses to open a write-protected disk for writing), so one WRITE(10) goes through
//!    `/dev/sgN` instead ([`sg_write_request`]; its status is read off the wire, not in the guest):
//!    `SG-WRITE-SENT`; then `RO-READBACK-MD5` of the sectors both tried to write;
//! 6. `IO-ERRORS`: the count of those dmesg lines;
//! 7. destroys the controller (`ctlr_destroy`, which sends FIP LOGOs): `DESTROYED`, then `DONE`
//!    and `poweroff -f`. Any failure prints `FAIL <reason>` and the tail of dmesg.

use std::collections::BTreeMap;
use std::fmt;
use std::fs;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{bail, ensure, Context, Result};

use crate::linux::{self, Kernel, LinuxOutcome};
use crate::rig::{run_cmd, wait_until, Child, Netns, Qemu, Tap};

/// Modules for the FCoE initiator and a SCSI disk on it. `crc64_rocksoft_generic` is what
/// `crc64-rocksoft` (for `t10-pi`, for `sd_mod`) asks the crypto API for: no module loader runs
/// in the guest, so it is loaded up front.
/// `sg` is for the read-only scenario's raw WRITE.
pub const FCOE_MODULES: &[&str] = &["crc64_rocksoft_generic", "fcoe", "sd_mod", "sg"];

/// First sector the scenario writes [`linux::aoe_pattern`] at (odd on purpose).
pub const FCOE_PATTERN_LBA: u64 = 20001;

/// The tcpdump filter for FCoE and FIP frames.
pub const FCOE_FILTER: &str = "ether proto 0x8906 or ether proto 0x8914";

/// The FC-MAP of VN2VN MACs: a VN_Port's MAC is `0e:fd:00:<port id>`.
pub const VN2VN_FC_MAP: [u8; 3] = [0x0e, 0xfd, 0x00];

/// The All-VN2VN multicast MAC that probes, claims and beacons go to.
pub const ALL_VN2VN: [u8; 6] = [0x01, 0x10, 0x18, 0x01, 0x00, 0x04];

pub use crate::fixture::{fmt_mac, parse_mac, Mac};

/// The WWPN Linux (`fcoe_wwn_from_mac`, scheme 2, port 0) and l2san derive from a MAC:
/// `20:00:<mac>`.
pub fn wwpn_from_mac(mac: &Mac) -> u64 {
    mac.iter().fold(0x2000, |acc, &b| (acc << 8) | u64::from(b))
}

/// The WWNN for a MAC: `10:00:<mac>`.
pub fn wwnn_from_mac(mac: &Mac) -> u64 {
    mac.iter().fold(0x1000, |acc, &b| (acc << 8) | u64::from(b))
}

/// The VN2VN port id Linux first proposes for a MAC: the WWPN's low 16 bits, or 1 if those are 0
/// or 0xffff.
pub fn port_id_from_mac(mac: &Mac) -> u32 {
    match u32::from(mac[4]) << 8 | u32::from(mac[5]) {
        0 | 0xffff => 1,
        id => id,
    }
}

/// The VN2VN MAC of a port id: `0e:fd:00:<id>`.
pub fn vn_mac(port_id: u32) -> Mac {
    let id = port_id.to_be_bytes();
    [
        VN2VN_FC_MAP[0],
        VN2VN_FC_MAP[1],
        VN2VN_FC_MAP[2],
        id[1],
        id[2],
        id[3],
    ]
}

/// `20:00:aa:bb:cc:dd:ee:ff` as l2san's `--wwpn` takes it.
pub fn fmt_wwn(wwn: u64) -> String {
    wwn.to_be_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// One image exported over FCoE as a SCSI LUN.
#[derive(Debug, Clone)]
pub struct FcoeExport {
    /// The LUN.
    pub lun: u64,
    /// Image file.
    pub image: PathBuf,
    /// Refuse writes.
    pub read_only: bool,
    /// Write through (fdatasync per write).
    pub sync: bool,
}

impl FcoeExport {
    /// A writable, non-sync export of `image` as `lun`.
    pub fn new(lun: u64, image: impl Into<PathBuf>) -> FcoeExport {
        FcoeExport {
            lun,
            image: image.into(),
            read_only: false,
            sync: false,
        }
    }

    /// The same export, read-only.
    pub fn read_only(mut self) -> FcoeExport {
        self.read_only = true;
        self
    }

    /// l2san's `--fcoe` argument: `<lun>=<image>[,ro][,sync]`.
    pub fn l2san_arg(&self) -> String {
        let mut arg = format!("{}={}", self.lun, self.image.display());
        if self.read_only {
            arg.push_str(",ro");
        }
        if self.sync {
            arg.push_str(",sync");
        }
        arg
    }
}

/// What the guest does once its VN_Port is up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FcoeMode {
    /// Nothing: no target is expected. Probes, claims, a few beacons, then the controller is
    /// destroyed.
    Probe,
    /// Log in, read, write, read back.
    ReadWrite,
    /// Log in, read; writes must fail.
    ReadOnly,
    /// Log in, print `SIZE1`, then wait for a live resize of the disk (the capacity unit
    /// attention, then a rescan of the device) and for a second LUN (a rescan of the host):
    /// the host reloads l2san once it reads `SIZE1`.
    Reload,
}

impl FcoeMode {
    fn param(self) -> &'static str {
        match self {
            FcoeMode::Probe => "probe",
            FcoeMode::ReadWrite => "rw",
            FcoeMode::ReadOnly => "ro",
            FcoeMode::Reload => "reload",
        }
    }
}

/// Options for [`run_fcoe`].
#[derive(Debug, Clone)]
pub struct FcoeScenario {
    /// What to do once up.
    pub mode: FcoeMode,
    /// The guest NIC's MAC, which decides its WWPN and port id.
    pub guest_mac: Mac,
    /// The guest's eth0 MTU (make the tap's at least this).
    pub mtu: u32,
    /// MiB the write-rate step overwrites with zeros at the end of the disk.
    pub write_mib: u64,
    /// Seconds the guest waits for a remote target port, then for its disk.
    pub login_wait_s: u32,
    /// How long the whole guest run may take.
    pub timeout: Duration,
    /// Guest memory.
    pub memory_mb: u32,
}

impl Default for FcoeScenario {
    fn default() -> Self {
        FcoeScenario {
            mode: FcoeMode::ReadWrite,
            guest_mac: [0x02, 0x4c, 0x32, 0x00, 0x10, 0x10],
            mtu: 1500,
            write_mib: 16,
            login_wait_s: 40,
            timeout: Duration::from_secs(110),
            memory_mb: 384,
        }
    }
}

/// Shell functions of the FCoE guests (after [`linux::init_script`]'s prelude):
/// - `interesting [n]`: the last `n` (40) kernel messages of FCoE, SCSI and I/O errors as
///   `dmesg:` lines;
/// - `diagnose` (what `fail` prints): those, 60 of them, then the last 20 of all as `dmesg-tail:`
///   lines;
/// - `vn2vn_create`: a VN2VN FCoE controller on eth0, enabled: `$C`;
/// - `wait_fc_host`: waits up to 20 s for a local port Online: `$H`;
/// - `wait_scsi_disk <seconds>`: waits for a SCSI disk with a size: its name `$B` (`sdX`) and
///   `$S`, its `/sys/class/scsi_disk/<h:c:t:l>`.
pub const FCOE_FUNCTIONS: &str = r#"interesting() {
    dmesg | grep -iE 'fcoe|host[0-9]|rport|sd [0-9]|scsi|I/O error|Sense|abort|reset|blk_update' \
        | tail -n ${1:-40} | sed 's/^/@PREFIX@ dmesg: /'
}
diagnose() {
    interesting 60
    dmesg | tail -n 20 | sed 's/^/@PREFIX@ dmesg-tail: /'
}
vn2vn_create() {
    echo eth0 > /sys/bus/fcoe/ctlr_create || fail "ctlr_create"
    C=
    for c in /sys/bus/fcoe/devices/ctlr_*; do [ -e "$c/mode" ] && C=$c; done
    [ -n "$C" ] || fail "no ctlr_* after ctlr_create"
    echo vn2vn > $C/mode || fail "cannot set $C/mode to vn2vn"
    echo 1 > $C/enabled || fail "cannot enable $C"
}
wait_fc_host() {
    H=
    n=0
    while [ -z "$H" ]; do
        for h in /sys/class/fc_host/host*; do
            [ "$(cat $h/port_state 2>/dev/null)" = Online ] && H=$h
        done
        [ -n "$H" ] && break
        n=$((n + 1)); [ $n -gt 200 ] && fail "no fc_host Online after 20 s"
        usleep 100000
    done
}
wait_scsi_disk() {
    B=
    n=0
    while [ -z "$B" ]; do
        for b in /sys/class/scsi_disk/*/device/block/*; do
            [ -e "$b" ] && B=${b##*/} && S=${b%/device/block/*}
        done
        [ -n "$B" ] && [ -b /dev/$B ] && [ "$(blockdev --getsize64 /dev/$B 2>/dev/null)" -gt 0 ] && break
        B=
        n=$((n + 1)); [ $n -gt $(($1 * 10)) ] && fail "no SCSI disk after $1 s"
        usleep 100000
    done
}
"#;

/// The FCoE scenario's steps (after [`linux::init_script`]'s prelude and [`FCOE_FUNCTIONS`]).
const FCOE_STEPS: &str = r#"MTU=1500
MODE=rw
WMIB=16
LOGIN=40
for a in $(cat /proc/cmdline); do
    case "$a" in
    l2san.mtu=*) MTU=${a#*=} ;;
    l2san.mode=*) MODE=${a#*=} ;;
    l2san.wmib=*) WMIB=${a#*=} ;;
    l2san.login=*) LOGIN=${a#*=} ;;
    esac
done
# fq_codel (Debian's default) drops frames that wait over 5 ms and FCoE never retransmits.
echo pfifo_fast > /proc/sys/net/core/default_qdisc || fail "cannot set the default qdisc"
load_modules net
eth0_up $MTU
say MTU $(cat /sys/class/net/eth0/mtu)
say MAC $(cat /sys/class/net/eth0/address)
load_modules fcoe
T0=$(ms)
vn2vn_create
wait_fc_host
say LPORT $(cat $H/port_name) $(cat $H/port_id)
say ONLINE-MS $(($(ms) - T0))
if [ $MODE = probe ]; then
    # The first beacon follows the claim by 400 ms; stay for a couple more.
    sleep 3
else
    R=
    n=0
    while [ -z "$R" ]; do
        for r in /sys/class/fc_remote_ports/rport-*; do
            [ "$(cat $r/port_state 2>/dev/null)" = Online ] || continue
            case "$(cat $r/roles 2>/dev/null)" in *Target*) R=$r ;; esac
        done
        [ -n "$R" ] && break
        n=$((n + 1)); [ $n -gt $((LOGIN * 10)) ] && fail "no remote FCP target port after $LOGIN s"
        usleep 100000
    done
    say RPORT $(cat $R/port_name) $(cat $R/port_id) $(cat $R/roles)
    say RPORT-MS $(($(ms) - T0))
    wait_scsi_disk $LOGIN
    D=/dev/$B
    SIZE=$(blockdev --getsize64 $D) || fail "blockdev $D"
    say DEVICE $D $SIZE
    say DISK-MS $(($(ms) - T0))
    say SCSI ${S##*/} $(cat $S/device/vendor) $(cat $S/device/model)
    say DISK-RO $(cat /sys/block/$B/ro)
    say CACHE $(cat $S/cache_type 2>/dev/null)
    T1=$(ms)
    dd if=$D of=/dev/null bs=1M iflag=direct 2>/tmp/err || fail "direct read: $(cat /tmp/err)"
    say READ-RATE $SIZE bytes $(($(ms) - T1)) ms
    M=$(md5sum $D) || fail "md5sum $D"
    set -- $M; say READ-MD5 $1
    if [ $MODE = ro ]; then
        # The kernel refuses to open a write-protected disk for writing (EROFS) ...
        if dd if=/pattern.bin of=$D bs=512 seek=@PLBA@ oflag=direct conv=notrunc,fsync 2>/tmp/err; then
            fail "writing a read-only LUN succeeded"
        fi
        say WRITE-REFUSED $(cat /tmp/err | tr '\n' ' ')
        # ... so send one WRITE(10) through the sg driver's v2 write() interface, which the
        # kernel passes through: the target must answer CHECK CONDITION, DATA PROTECT (the test
        # reads that off the wire). The reply would come back only to the process that opened
        # the device (sg checks the opener's credentials), which busybox cannot do with one
        # file descriptor for both, so it is not read here.
        G=$(ls $S/device/scsi_generic 2>/dev/null)
        [ -c /dev/$G ] || fail "no sg device for ${S##*/} ($G)"
        dd if=/sgwrite.bin of=/dev/$G bs=@SGLEN@ count=1 2>/tmp/err || fail "sg write: $(cat /tmp/err)"
        usleep 500000
        say SG-WRITE-SENT /dev/$G
        say SG-WRITE $(od -An -tx1 -v /tmp/sgreply | tr -d '\n')
        dd if=$D of=/tmp/back bs=512 skip=@PLBA@ count=@PSECTORS@ iflag=direct 2>/tmp/err \
            || fail "read-back: $(cat /tmp/err)"
        M=$(md5sum /tmp/back); set -- $M; say RO-READBACK-MD5 $1
    elif [ $MODE = reload ]; then
        say SIZE1 $SIZE
        # Each read picks up a pending unit attention; the capacity one asks for a rescan.
        n=0
        while [ "$(blockdev --getsize64 $D)" = "$SIZE" ]; do
            n=$((n + 1)); [ $n -gt 120 ] && fail "size of $D still $SIZE after 60 s"
            dd if=$D of=/dev/null bs=512 count=1 iflag=direct 2>/dev/null
            dmesg | grep -q "Capacity data has changed" && echo 1 > /sys/block/$B/device/rescan
            usleep 500000
        done
        say SIZE2 $(blockdev --getsize64 $D)
        say CAPACITY-UA $(dmesg | grep -c "Capacity data has changed")
        say LUNS-UA $(dmesg | grep -c "LUN assignments on this target have changed")
        echo "- - -" > /sys/class/scsi_host/${H##*/}/scan || fail "cannot rescan ${H##*/}"
        B2=
        n=0
        while [ -z "$B2" ]; do
            for b in /sys/class/scsi_disk/*/device/block/*; do
                [ -e "$b" ] && [ "${b##*/}" != "$B" ] && B2=${b##*/}
            done
            [ -n "$B2" ] && [ "$(blockdev --getsize64 /dev/$B2 2>/dev/null)" -gt 0 ] && break
            B2=
            n=$((n + 1)); [ $n -gt 200 ] && fail "no second LUN 20 s after the rescan"
            usleep 100000
        done
        say NEW-LUN /dev/$B2 $(blockdev --getsize64 /dev/$B2)
        M=$(md5sum /dev/$B2) || fail "md5sum /dev/$B2"
        set -- $M; say NEW-MD5 $1
    else
        dd if=/pattern.bin of=$D bs=512 seek=@PLBA@ oflag=direct conv=notrunc,fsync 2>/tmp/err \
            || fail "pattern write: $(cat /tmp/err)"
        dd if=$D of=/tmp/back bs=512 skip=@PLBA@ count=@PSECTORS@ iflag=direct 2>/tmp/err \
            || fail "pattern read-back: $(cat /tmp/err)"
        M=$(md5sum /tmp/back); set -- $M; say READBACK-MD5 $1
        T1=$(ms)
        dd if=/dev/zero of=$D bs=1M seek=$((SIZE / 1048576 - WMIB)) count=$WMIB oflag=direct \
            conv=notrunc,fsync 2>/tmp/err || fail "direct write: $(cat /tmp/err)"
        say WRITE-RATE $((WMIB * 1048576)) bytes $(($(ms) - T1)) ms
    fi
    say IO-ERRORS $(dmesg | grep -c 'I/O error')
fi
interesting 40
echo eth0 > /sys/bus/fcoe/ctlr_destroy || fail "ctlr_destroy"
say DESTROYED
# Give the LOGOs a moment on the wire.
usleep 500000
say DONE
poweroff -f
sleep 10
"#;

/// Builds the FCoE scenario's initramfs (uncompressed newc cpio) for `kernel`.
pub fn fcoe_initramfs(kernel: &Kernel) -> Result<Vec<u8>> {
    let mut w = linux::base_initramfs(kernel, FCOE_MODULES, "fcoe")?;
    w.file("pattern.bin", 0o644, &linux::aoe_pattern());
    let sg = sg_write_request(FCOE_PATTERN_LBA, &linux::aoe_pattern()[..512]);
    w.file("sgwrite.bin", 0o644, &sg);
    w.file("init", 0o755, fcoe_init(sg.len()).as_bytes());
    Ok(w.finish())
}

/// The FCoE scenario's `/init`, for an sg request of `sg_len` bytes.
fn fcoe_init(sg_len: usize) -> String {
    linux::init_script("L2SAN-LINUX", &[FCOE_FUNCTIONS, FCOE_STEPS])
        .replace("@SGLEN@", &sg_len.to_string())
        .replace("@PLBA@", &FCOE_PATTERN_LBA.to_string())
        .replace("@PSECTORS@", &linux::AOE_PATTERN_SECTORS.to_string())
}

/// The LIO guest's `/init`.
fn lio_init() -> String {
    linux::init_script("L2SAN-LIO", &[FCOE_FUNCTIONS, LIO_STEPS])
}

/// A request for the sg driver's v2 interface (`struct sg_header`, 36 bytes: `reply_len` 36, no
/// data in) with a WRITE(10) of `data` (whole 512-byte sectors) at `lba`, for one `write()` to
/// `/dev/sgN`.
pub fn sg_write_request(lba: u64, data: &[u8]) -> Vec<u8> {
    let mut req = Vec::new();
    for v in [0i32, 36, 1, 0, 0] {
        req.extend_from_slice(&v.to_le_bytes());
    }
    req.extend_from_slice(&[0; 16]);
    let blocks = u16::try_from(data.len() / 512).expect("short write");
    req.push(0x2a);
    req.push(0);
    req.extend_from_slice(&u32::try_from(lba).expect("LBA < 2^32").to_be_bytes());
    req.push(0);
    req.extend_from_slice(&blocks.to_be_bytes());
    req.push(0);
    req.extend_from_slice(data);
    req
}

/// Boots `kernel` in QEMU on `tap` (NIC MAC `scenario.guest_mac`) with the FCoE scenario and waits
/// for it to finish. Files go in `dir`. A scenario failure is not an error here: see
/// [`LinuxOutcome::check_done`].
pub fn run_fcoe(
    ns: &Netns,
    tap: &Tap,
    kernel: &Kernel,
    scenario: &FcoeScenario,
    dir: &Path,
) -> Result<LinuxOutcome> {
    linux::ensure_tap_fits(tap, scenario.mtu)?;
    let initramfs = dir.join("initramfs-fcoe.cpio");
    fs::write(&initramfs, fcoe_initramfs(kernel)?)?;
    let params = format!(
        "l2san.mtu={} l2san.mode={} l2san.wmib={} l2san.login={}",
        scenario.mtu,
        scenario.mode.param(),
        scenario.write_mib,
        scenario.login_wait_s
    );
    let guest = linux::Guest {
        name: "linux-fcoe",
        kernel,
        initramfs: &initramfs,
        params: &params,
        mac: Some(scenario.guest_mac),
        memory_mb: scenario.memory_mb,
    };
    linux::boot_guest(ns, tap, &guest, scenario.timeout, dir)
}

/// What an image holds after the read-write scenario ran on `original` with `write_mib`.
pub fn expected_after_fcoe(original: &[u8], write_mib: u64) -> Vec<u8> {
    linux::expected_after_pattern(original, FCOE_PATTERN_LBA, write_mib)
}

/// Modules for LIO's FCoE target (`tcm_fc`) with a file backstore. `crct10dif_generic` is what
/// `crc-t10dif` (for `target_core_mod`) asks the crypto API for.
pub const LIO_MODULES: &[&str] = &[
    "crct10dif_generic",
    "configfs",
    "fcoe",
    "tcm_fc",
    "target_core_file",
];

/// The LIO guest's steps (after [`linux::init_script`]'s prelude and [`FCOE_FUNCTIONS`]).
const LIO_STEPS: &str = r#"MTU=1500
RO=0
INIT=
for a in $(cat /proc/cmdline); do
    case "$a" in
    l2san.mtu=*) MTU=${a#*=} ;;
    l2san.ro=*) RO=${a#*=} ;;
    l2san.initiator=*) INIT=${a#*=} ;;
    esac
done
echo pfifo_fast > /proc/sys/net/core/default_qdisc || fail "cannot set the default qdisc"
load_modules net
load_modules lio
eth0_up $MTU
mount -t configfs configfs /sys/kernel/config || fail "cannot mount configfs"
vn2vn_create
wait_fc_host
W=$(cat $H/port_name | sed 's/^0x//; s/../&:/g; s/:$//')
T=/sys/kernel/config/target
B=$T/core/fileio_0/disk
mkdir -p $B || fail "mkdir $B"
echo "fd_dev_name=/disk.img,fd_dev_size=$(stat -c %s /disk.img)" > $B/control || fail "backstore control"
echo 1 > $B/enable || fail "backstore enable"
F=$T/fc/$W/tpgt_1
mkdir -p $F/lun/lun_0 || fail "mkdir $F/lun/lun_0"
ln -s $B $F/lun/lun_0/disk || fail "lun link"
mkdir -p $F/acls/$INIT/lun_0 || fail "mkdir acl $INIT"
ln -s $F/lun/lun_0 $F/acls/$INIT/lun_0/lun_0 || fail "acl lun link"
if [ $RO = 1 ]; then echo 1 > $F/acls/$INIT/lun_0/write_protect || fail "write_protect"; fi
say READY $W
while true; do sleep 60; done
"#;

/// LIO's `tcm_fc` in a second guest: the reference FCoE target, serving an image (held in the
/// guest's RAM, so changes are lost) to one initiator WWPN. For checking the rig and the tests
/// themselves against a known-good target.
#[derive(Debug)]
pub struct LioTarget {
    qemu: Qemu,
}

impl LioTarget {
    /// Boots the LIO guest on `tap` with NIC MAC `mac` (its WWPN is `20:00:<mac>`), serving
    /// `image` as LUN 0 to `initiator_wwpn` (read-only if `read_only`), and waits until it is
    /// configured. Files go in `dir` (`lio.serial.log`).
    #[allow(clippy::too_many_arguments)]
    pub fn start(
        ns: &Netns,
        tap: &Tap,
        kernel: &Kernel,
        mac: &Mac,
        image: &[u8],
        initiator_wwpn: u64,
        read_only: bool,
        dir: &Path,
    ) -> Result<LioTarget> {
        let mut w = linux::base_initramfs(kernel, LIO_MODULES, "lio")?;
        w.file("disk.img", 0o644, image);
        w.file("init", 0o755, lio_init().as_bytes());
        let initramfs = dir.join("initramfs-lio.cpio");
        fs::write(&initramfs, w.finish())?;
        let params = format!(
            "l2san.mtu={} l2san.ro={} l2san.initiator={}",
            tap.mtu,
            u8::from(read_only),
            fmt_wwn(initiator_wwpn)
        );
        let guest = linux::Guest {
            name: "lio",
            kernel,
            initramfs: &initramfs,
            params: &params,
            mac: Some(*mac),
            memory_mb: 384 + u32::try_from(image.len() >> 19).unwrap_or(u32::MAX),
        };
        let mut qemu = guest.start(ns, tap, dir)?;
        let ready = wait_until(Duration::from_secs(60), || {
            let log = qemu.serial_log();
            matches!(qemu.child().exited(), Ok(Some(_)))
                || log.contains("L2SAN-LIO READY")
                || log.contains("L2SAN-LIO FAIL")
        });
        let log = qemu.serial_log();
        ensure!(
            ready && log.contains("L2SAN-LIO READY"),
            "the LIO guest did not come up:\n{log}"
        );
        Ok(LioTarget { qemu })
    }

    /// Fails if the LIO guest has stopped.
    pub fn check_running(&mut self) -> Result<()> {
        if let Some(status) = self.qemu.child().exited()? {
            bail!("the LIO guest exited ({status})");
        }
        Ok(())
    }

    /// Ends the LIO guest.
    pub fn stop(mut self) {
        let _ = self.qemu.child().stop(Duration::from_secs(1));
    }
}

/// A tcpdump writing every FCoE and FIP frame on a tap to a file.
#[derive(Debug)]
pub struct Capture {
    child: Child,
    path: PathBuf,
    log: PathBuf,
}

/// How a [`Capture`] ended.
#[derive(Debug, Clone)]
pub struct CaptureEnd {
    /// The pcap file.
    pub path: PathBuf,
    /// tcpdump's "N packets dropped by kernel" (`None` if it said nothing).
    pub dropped: Option<u64>,
}

impl Capture {
    /// Starts `tcpdump -i <tap> -w <path> -B 65536 -Z root -U` with [`FCOE_FILTER`] inside `ns`,
    /// its messages in `log`, and waits until it listens.
    pub fn start(ns: &Netns, tap: &Tap, path: &Path, log: &Path) -> Result<Capture> {
        let _ = fs::remove_file(path);
        let mut cmd = ns.command("tcpdump");
        cmd.args(["-i", &tap.name, "-B", "65536", "-Z", "root", "-n", "-w"])
            .arg(path)
            .arg(FCOE_FILTER);
        let mut child = Child::spawn_logged("tcpdump", &mut cmd, log)
            .context("cannot start tcpdump (is tcpdump installed?)")?;
        let mut exited = None;
        let listening = wait_until(Duration::from_secs(10), || {
            if let Ok(Some(status)) = child.exited() {
                exited = Some(status);
                return true;
            }
            fs::read_to_string(log).is_ok_and(|t| t.contains("listening on"))
        });
        if let Some(status) = exited {
            bail!(
                "tcpdump exited at start ({status}): {}",
                fs::read_to_string(log).unwrap_or_default()
            );
        }
        ensure!(listening, "tcpdump is not listening after 10 s");
        Ok(Capture {
            child,
            path: path.to_path_buf(),
            log: log.to_path_buf(),
        })
    }

    /// Waits `drain` for the last frames to come through, then SIGINT (which makes tcpdump flush
    /// its file) and up to 10 s for it to exit.
    pub fn stop(mut self, drain: Duration) -> Result<CaptureEnd> {
        std::thread::sleep(drain);
        self.child.signal(libc::SIGINT);
        let status = self.child.wait_exit(Duration::from_secs(10))?;
        ensure!(
            status.is_some(),
            "tcpdump did not exit within 10 s of SIGINT"
        );
        let text = fs::read_to_string(&self.log).unwrap_or_default();
        let dropped = text.lines().find_map(|l| {
            l.strip_suffix(" packets dropped by kernel")
                .and_then(|n| n.trim().parse().ok())
        });
        Ok(CaptureEnd {
            path: self.path.clone(),
            dropped,
        })
    }
}

/// A new namespace with `tap0` of `mtu` at `tap_mac` (the target's end of the segment), and
/// tcpdump capturing it into `<dir>/segment.pcap` (its messages in `<dir>/tcpdump.log`).
pub fn captured_segment(dir: &Path, mtu: u32, tap_mac: &Mac) -> Result<(Netns, Tap, Capture)> {
    let ns = Netns::new()?;
    let tap = ns.tap("tap0", mtu)?;
    ns.run(
        "ip",
        [
            "link",
            "set",
            "dev",
            &tap.name,
            "address",
            &fmt_mac(tap_mac),
        ],
    )
    .context("cannot set the tap's MAC")?;
    let capture = Capture::start(
        &ns,
        &tap,
        &dir.join("segment.pcap"),
        &dir.join("tcpdump.log"),
    )?;
    Ok((ns, tap, capture))
}

/// Calls `each(frame number from 1, timestamp in µs, bytes, original length)` for every frame
/// of a classic pcap file (either byte order, µs or ns timestamps).
pub fn for_each_frame(path: &Path, mut each: impl FnMut(u64, u64, &[u8], usize)) -> Result<u64> {
    let file = fs::File::open(path).with_context(|| format!("cannot open {path:?}"))?;
    let mut r = BufReader::with_capacity(1 << 20, file);
    let mut header = [0u8; 24];
    r.read_exact(&mut header)
        .with_context(|| format!("{path:?} has no pcap header"))?;
    let magic = u32::from_le_bytes([header[0], header[1], header[2], header[3]]);
    let (swap, nanos) = match magic {
        0xa1b2_c3d4 => (false, false),
        0xa1b2_3c4d => (false, true),
        0xd4c3_b2a1 => (true, false),
        0x4d3c_b2a1 => (true, true),
        _ => bail!("{path:?} is not a classic pcap file (magic {magic:#010x})"),
    };
    let u32_at = |b: &[u8], at: usize| {
        let v = [b[at], b[at + 1], b[at + 2], b[at + 3]];
        if swap {
            u32::from_be_bytes(v)
        } else {
            u32::from_le_bytes(v)
        }
    };
    let linktype = u32_at(&header, 20) & 0x0fff_ffff;
    ensure!(
        linktype == 1,
        "{path:?}: link type {linktype}, expected Ethernet"
    );
    let mut n = 0;
    let mut rec = [0u8; 16];
    let mut buf = Vec::new();
    loop {
        match r.read_exact(&mut rec) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => break,
            Err(e) => return Err(e).with_context(|| format!("cannot read {path:?}")),
        }
        let secs = u64::from(u32_at(&rec, 0));
        let frac = u64::from(u32_at(&rec, 4));
        let incl = u32_at(&rec, 8) as usize;
        let orig = u32_at(&rec, 12) as usize;
        ensure!(
            incl <= 1 << 20,
            "{path:?}: frame {} claims {incl} bytes",
            n + 1
        );
        buf.resize(incl, 0);
        match r.read_exact(&mut buf) {
            Ok(()) => {}
            // tcpdump killed mid-write: the last record is cut short.
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => break,
            Err(e) => return Err(e).with_context(|| format!("cannot read {path:?}")),
        }
        n += 1;
        let us = secs * 1_000_000 + if nanos { frac / 1000 } else { frac };
        each(n, us, &buf, orig);
    }
    Ok(n)
}

/// The CRC-32 FCoE uses (IEEE, reflected, complemented: zlib's), as stored little-endian in the
/// trailer.
pub fn crc32(data: &[u8]) -> u32 {
    const TABLE: [u32; 256] = {
        let mut table = [0u32; 256];
        let mut i = 0;
        while i < 256 {
            let mut c = i as u32;
            let mut k = 0;
            while k < 8 {
                c = if c & 1 != 0 {
                    0xedb8_8320 ^ (c >> 1)
                } else {
                    c >> 1
                };
                k += 1;
            }
            table[i] = c;
            i += 1;
        }
        table
    };
    !data.iter().fold(!0u32, |c, &b| {
        TABLE[((c ^ u32::from(b)) & 0xff) as usize] ^ (c >> 8)
    })
}

/// Who sent a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Side {
    /// The Linux guest (its NIC MAC or its VN MAC).
    Guest,
    /// The target (the tap's MAC, or any other `0e:fd:00` MAC).
    Target,
    /// Anything else.
    Other,
}

impl fmt::Display for Side {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(match self {
            Side::Guest => "guest",
            Side::Target => "target",
            Side::Other => "other",
        })
    }
}

/// Who is who on the segment, for [`analyze`].
#[derive(Debug, Clone)]
pub struct Segment {
    /// The guest NIC's MAC.
    pub guest_mac: Mac,
    /// The tap's MAC (the target's ENode MAC).
    pub target_mac: Mac,
    /// The segment's MTU: no frame may carry more than this after the Ethernet header.
    pub mtu: u32,
}

impl Segment {
    fn side(&self, src: &[u8]) -> Side {
        let guest_vn = vn_mac(port_id_from_mac(&self.guest_mac));
        if src == self.guest_mac || src == guest_vn {
            Side::Guest
        } else if src == self.target_mac || src[..3] == VN2VN_FC_MAP {
            Side::Target
        } else {
            Side::Other
        }
    }
}

/// Per-sender counts in a [`FrameStats`].
#[derive(Debug, Clone, Default)]
pub struct SideCounts {
    /// FCoE frames.
    pub fcoe: u64,
    /// FIP frames.
    pub fip: u64,
    /// FCP_DATA frames.
    pub data_frames: u64,
    /// FCP_DATA payload bytes.
    pub data_bytes: u64,
    /// Largest FCP_DATA payload.
    pub max_data_payload: usize,
    /// Largest frame (Ethernet header included).
    pub max_frame: usize,
}

/// What [`analyze`] found in a capture.
#[derive(Debug, Clone, Default)]
pub struct FrameStats {
    /// Frames in the file.
    pub frames: u64,
    /// Frames cut short by the snap length.
    pub truncated: u64,
    /// Counts by sender.
    pub sides: BTreeMap<Side, SideCounts>,
    /// FIP frames by sender, op and subcode.
    pub fip: BTreeMap<(Side, u16, u8), u64>,
    /// ELS requests by sender and command code (plain and FIP-encapsulated).
    pub els_requests: BTreeMap<(Side, u8), u64>,
    /// ELS replies by sender and code (2 LS_ACC, 1 LS_RJT).
    pub els_replies: BTreeMap<(Side, u8), u64>,
    /// FIP-encapsulated ELS replies by sender, FIP descriptor type (7 FLOGI, 8 FDISC, 9 LOGO)
    /// and code (2 LS_ACC, 1 LS_RJT): which request a reply answers.
    pub fip_els_replies: BTreeMap<(Side, u8, u8), u64>,
    /// FCP_CMND frames by SCSI opcode.
    pub scsi_commands: BTreeMap<u8, u64>,
    /// The target's FCP_RSPs by SCSI status and sense key (`None` without sense data).
    pub scsi_status: BTreeMap<(u8, Option<u8>), u64>,
    /// Control frames (FIP, ELS, BLS, FCP_RSP other than GOOD) in order, at most 300.
    pub events: Vec<String>,
    /// What is wrong with the target's frames (at most 40 kept).
    pub target_problems: Vec<String>,
    /// How many target problems in all.
    pub target_problem_count: u64,
    /// What the checker finds wrong with the guest's frames (a checker or capture problem, since
    /// the guest is the reference).
    pub guest_problems: Vec<String>,
}

impl FrameStats {
    /// FIP frames `side` sent with `op`/`subcode`.
    pub fn fip_count(&self, side: Side, op: u16, subcode: u8) -> u64 {
        self.fip.get(&(side, op, subcode)).copied().unwrap_or(0)
    }

    /// ELS requests `side` sent with command `cmd`.
    pub fn els_count(&self, side: Side, cmd: u8) -> u64 {
        self.els_requests.get(&(side, cmd)).copied().unwrap_or(0)
    }

    /// Counts for `side` (zeros if it sent nothing).
    pub fn side(&self, side: Side) -> SideCounts {
        self.sides.get(&side).cloned().unwrap_or_default()
    }

    fn problem(&mut self, side: Side, n: u64, what: String) {
        let line = format!("frame {n} from the {side}: {what}");
        match side {
            Side::Target => {
                self.target_problem_count += 1;
                if self.target_problems.len() < 40 {
                    self.target_problems.push(line);
                }
            }
            _ => {
                if self.guest_problems.len() < 40 {
                    self.guest_problems.push(line);
                }
            }
        }
    }

    fn event(&mut self, us: u64, t0: u64, side: Side, what: String) {
        if self.events.len() < 300 {
            let t = us.saturating_sub(t0) as f64 / 1e6;
            self.events.push(format!("{t:9.3} s {side:6} {what}"));
        }
    }

    /// A multi-line summary: counts and the control-frame events.
    pub fn describe(&self) -> String {
        let mut out = format!("{} frames", self.frames);
        for (side, c) in &self.sides {
            out += &format!(
                "\n  {side}: {} FCoE, {} FIP, {} data frames ({} bytes, largest payload {}), \
                 largest frame {}",
                c.fcoe, c.fip, c.data_frames, c.data_bytes, c.max_data_payload, c.max_frame
            );
        }
        out += &format!("\n  SCSI commands by opcode: {:02x?}", self.scsi_commands);
        out += &format!(
            "\n  target FCP_RSP (status, sense key): {:02x?}",
            self.scsi_status
        );
        for line in &self.events {
            out += "\n  ";
            out += line;
        }
        out
    }
}

fn els_name(cmd: u8) -> String {
    match cmd {
        0x01 => "LS_RJT".into(),
        0x02 => "LS_ACC".into(),
        0x03 => "PLOGI".into(),
        0x04 => "FLOGI".into(),
        0x05 => "LOGO".into(),
        0x0e => "RTV".into(),
        0x12 => "RRQ".into(),
        0x13 => "REC".into(),
        0x20 => "PRLI".into(),
        0x21 => "PRLO".into(),
        0x52 => "ADISC".into(),
        other => format!("ELS {other:#04x}"),
    }
}

fn fip_name(op: u16, sub: u8) -> String {
    match (op, sub) {
        (1, 1) => "FIP discovery solicitation".into(),
        (1, 2) => "FIP discovery advertisement".into(),
        (2, 1) => "FIP ELS request".into(),
        (2, 2) => "FIP ELS reply".into(),
        (3, 2) => "FIP clear virtual links".into(),
        (4, _) => format!("FIP VLAN {sub}"),
        (5, 1) => "VN2VN probe request".into(),
        (5, 2) => "VN2VN probe reply".into(),
        (5, 3) => "VN2VN claim notification".into(),
        (5, 4) => "VN2VN claim response".into(),
        (5, 5) => "VN2VN beacon".into(),
        _ => format!("FIP op {op} subcode {sub}"),
    }
}

/// Reads a capture of `segment` and checks every FCoE and FIP frame: FCoE version 0 and zero
/// reserved bytes, SOF and EOF codes, the CRC, the FC payload (a multiple of 4, at most 2112),
/// the frame within the MTU, VN2VN MACs that match the FC addresses (`0e:fd:00:<D_ID>`,
/// `0e:fd:00:<S_ID>`); FIP version and descriptor lists. Counts FIP operations, ELS, SCSI commands
/// and the target's SCSI statuses.
pub fn analyze(path: &Path, segment: &Segment) -> Result<FrameStats> {
    let mut stats = FrameStats::default();
    let mut t0 = None;
    let frames = for_each_frame(path, |n, us, frame, orig| {
        let t0 = *t0.get_or_insert(us);
        if frame.len() < orig {
            stats.truncated += 1;
            return;
        }
        if frame.len() < 14 {
            return;
        }
        let side = segment.side(&frame[6..12]);
        let ethertype = u16::from_be_bytes([frame[12], frame[13]]);
        let counts = stats.sides.entry(side).or_default();
        counts.max_frame = counts.max_frame.max(frame.len());
        if frame.len() - 14 > segment.mtu as usize {
            stats.problem(
                side,
                n,
                format!(
                    "{} bytes after the Ethernet header, over the MTU {}",
                    frame.len() - 14,
                    segment.mtu
                ),
            );
        }
        match ethertype {
            0x8906 => {
                stats.sides.entry(side).or_default().fcoe += 1;
                check_fcoe(&mut stats, n, us, t0, side, frame);
            }
            0x8914 => {
                stats.sides.entry(side).or_default().fip += 1;
                check_fip(&mut stats, n, us, t0, side, frame);
            }
            _ => {}
        }
    })?;
    stats.frames = frames;
    Ok(stats)
}

fn check_fcoe(stats: &mut FrameStats, n: u64, us: u64, t0: u64, side: Side, frame: &[u8]) {
    const SOFS: [u8; 6] = [0x2e, 0x36, 0x28, 0x2d, 0x35, 0x29];
    const EOFS: [u8; 4] = [0x41, 0x42, 0x49, 0x50];
    if frame.len() < 14 + 14 + 24 + 8 {
        stats.problem(side, n, format!("FCoE frame of {} bytes", frame.len()));
        return;
    }
    let end = frame.len() - 8;
    let (hdr, fc, trailer) = (&frame[14..28], &frame[28..end], &frame[end..]);
    let mut bad = Vec::new();
    if hdr[0] >> 4 != 0 {
        bad.push(format!("FCoE version {}", hdr[0] >> 4));
    }
    if hdr[..13].iter().any(|&b| b != 0) {
        bad.push("non-zero reserved bytes in the FCoE header".to_string());
    }
    if !SOFS.contains(&hdr[13]) {
        bad.push(format!("SOF {:#04x}", hdr[13]));
    }
    let crc = u32::from_le_bytes([trailer[0], trailer[1], trailer[2], trailer[3]]);
    if crc32(fc) != crc {
        bad.push(format!("CRC {crc:#010x}, computed {:#010x}", crc32(fc)));
    }
    if !EOFS.contains(&trailer[4]) {
        bad.push(format!("EOF {:#04x}", trailer[4]));
    }
    let payload = &fc[24..];
    if payload.len() % 4 != 0 || payload.len() > 2112 {
        bad.push(format!("FC payload of {} bytes", payload.len()));
    }
    let d_id = &fc[1..4];
    let s_id = &fc[5..8];
    if frame[..3] == VN2VN_FC_MAP && frame[3..6] != *d_id {
        bad.push(format!(
            "destination MAC {} for D_ID {:02x?}",
            fmt_mac(&frame[..6].try_into().unwrap_or_default()),
            d_id
        ));
    }
    if frame[6..9] == VN2VN_FC_MAP && frame[9..12] != *s_id {
        bad.push(format!(
            "source MAC {} for S_ID {:02x?}",
            fmt_mac(&frame[6..12].try_into().unwrap_or_default()),
            s_id
        ));
    }
    if frame[..3] != VN2VN_FC_MAP {
        bad.push(format!(
            "destination MAC {} is not a VN2VN MAC",
            fmt_mac(&frame[..6].try_into().unwrap_or_default())
        ));
    }
    for what in bad {
        stats.problem(side, n, what);
    }
    let (r_ctl, fc_type) = (fc[0], fc[8]);
    let ox_id = u16::from_be_bytes([fc[16], fc[17]]);
    let rx_id = u16::from_be_bytes([fc[18], fc[19]]);
    let ids = format!(
        "{:02x?}->{:02x?} ox {ox_id:#06x} rx {rx_id:#06x}",
        s_id, d_id
    );
    match (fc_type, r_ctl) {
        (0x08, 0x01) => {
            let c = stats.sides.entry(side).or_default();
            c.data_frames += 1;
            c.data_bytes += payload.len() as u64;
            c.max_data_payload = c.max_data_payload.max(payload.len());
        }
        (0x08, 0x06) if payload.len() >= 32 => {
            *stats.scsi_commands.entry(payload[12]).or_default() += 1;
        }
        (0x08, 0x07) if payload.len() >= 24 && side == Side::Target => {
            let (flags, status) = (payload[10], payload[11]);
            let mut key = None;
            if flags & 0x02 != 0 {
                let rsp_len = if flags & 0x01 != 0 {
                    u32::from_be_bytes([payload[20], payload[21], payload[22], payload[23]])
                        as usize
                } else {
                    0
                };
                let sense = payload.get(24 + rsp_len..).unwrap_or_default();
                key = match sense.first().map(|b| b & 0x7f) {
                    Some(0x70 | 0x71) => sense.get(2).map(|b| b & 0x0f),
                    Some(0x72 | 0x73) => sense.get(1).map(|b| b & 0x0f),
                    _ => None,
                };
            }
            *stats.scsi_status.entry((status, key)).or_default() += 1;
            if status != 0 {
                stats.event(
                    us,
                    t0,
                    side,
                    format!("FCP_RSP status {status:#04x} sense key {key:02x?} {ids}"),
                );
            }
        }
        (0x01, 0x22) if !payload.is_empty() => {
            *stats.els_requests.entry((side, payload[0])).or_default() += 1;
            stats.event(us, t0, side, format!("{} {ids}", els_name(payload[0])));
        }
        (0x01, 0x23) if !payload.is_empty() => {
            *stats.els_replies.entry((side, payload[0])).or_default() += 1;
            stats.event(us, t0, side, format!("{} {ids}", els_name(payload[0])));
        }
        (0x00, 0x81) => stats.event(us, t0, side, format!("ABTS {ids}")),
        (0x00, 0x84) => stats.event(us, t0, side, format!("BA_ACC {ids}")),
        (0x00, 0x85) => stats.event(us, t0, side, format!("BA_RJT {ids}")),
        (0x08, 0x05..=0x07) => {}
        _ => stats.event(
            us,
            t0,
            side,
            format!("FC R_CTL {r_ctl:#04x} TYPE {fc_type:#04x} {ids}"),
        ),
    }
}

fn check_fip(stats: &mut FrameStats, n: u64, us: u64, t0: u64, side: Side, frame: &[u8]) {
    let fip = &frame[14..];
    if fip.len() < 10 {
        stats.problem(side, n, format!("FIP frame of {} bytes", frame.len()));
        return;
    }
    if fip[0] != 0x10 {
        stats.problem(side, n, format!("FIP version byte {:#04x}", fip[0]));
    }
    let op = u16::from_be_bytes([fip[2], fip[3]]);
    let sub = fip[5];
    let words = usize::from(u16::from_be_bytes([fip[6], fip[7]]));
    *stats.fip.entry((side, op, sub)).or_default() += 1;
    let Some(descs) = fip.get(10..10 + words * 4) else {
        stats.problem(
            side,
            n,
            format!(
                "FIP descriptor list of {words} words in {} bytes",
                fip.len()
            ),
        );
        return;
    };
    let mut at = 0;
    let mut types = Vec::new();
    let mut els = None;
    while at < descs.len() {
        let (dtype, dlen) = (descs[at], usize::from(*descs.get(at + 1).unwrap_or(&0)) * 4);
        if dlen == 0 || at + dlen > descs.len() {
            stats.problem(
                side,
                n,
                format!("FIP descriptor type {dtype} of {dlen} bytes at {at}"),
            );
            return;
        }
        if types.is_empty() && (7..=10).contains(&dtype) && dlen >= 4 + 24 + 4 {
            let d = &descs[at..at + dlen];
            els = Some((dtype, d[4], d[28]));
        }
        types.push(dtype);
        at += dlen;
    }
    let mut what = format!(
        "{} to {} descriptors {types:?}",
        fip_name(op, sub),
        fmt_mac(&frame[..6].try_into().unwrap_or_default())
    );
    if let Some((dtype, r_ctl, cmd)) = els {
        what += &format!(" carrying {}", els_name(cmd));
        match r_ctl {
            0x22 => *stats.els_requests.entry((side, cmd)).or_default() += 1,
            0x23 => {
                *stats.els_replies.entry((side, cmd)).or_default() += 1;
                *stats.fip_els_replies.entry((side, dtype, cmd)).or_default() += 1;
            }
            _ => {}
        }
    }
    stats.event(us, t0, side, what);
}

/// What [`tshark_check`] found.
#[derive(Debug, Clone)]
pub struct TsharkOutcome {
    /// Frames tshark decoded.
    pub frames: u64,
    /// tshark's summary lines of frames flagged malformed or with an expert error.
    pub flagged: Vec<String>,
}

/// The display filter for frames Wireshark finds broken.
pub const TSHARK_BROKEN: &str = "_ws.malformed || _ws.expert.severity >= error";

/// Runs tshark over a reduced copy of `capture` (whole captures take tshark far too long): every
/// FIP frame and every FCoE frame other than FCP_DATA, plus the first `head` frames of any kind.
/// Reduced captures go in `dir`.
pub fn tshark_check(capture: &Path, dir: &Path, head: u32) -> Result<TsharkOutcome> {
    let control = dir.join("control.pcap");
    let first = dir.join("head.pcap");
    run_cmd(
        Command::new("tcpdump")
            .args(["-Z", "root", "-r"])
            .arg(capture)
            .arg("-w")
            .arg(&control)
            .arg("ether proto 0x8914 or (ether proto 0x8906 and ether[28] != 0x01)"),
    )?;
    run_cmd(
        Command::new("tcpdump")
            .args(["-Z", "root", "-r"])
            .arg(capture)
            .args(["-c", &head.to_string(), "-w"])
            .arg(&first),
    )?;
    let mut outcome = TsharkOutcome {
        frames: 0,
        flagged: Vec::new(),
    };
    for file in [&control, &first] {
        outcome.frames += for_each_frame(file, |_, _, _, _| {})?;
        let out = run_cmd(
            Command::new("tshark")
                .args(["-n", "-r"])
                .arg(file)
                .args(["-Y", TSHARK_BROKEN]),
        )
        .context("tshark failed (is tshark installed?)")?;
        let name = file.file_name().and_then(|f| f.to_str()).unwrap_or("?");
        outcome.flagged.extend(
            out.lines()
                .filter(|l| !l.trim().is_empty())
                .map(|l| format!("{name}: {}", l.trim())),
        );
    }
    Ok(outcome)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inits_parse() {
        for init in [fcoe_init(558), lio_init()] {
            assert!(init.starts_with("#!/bin/sh\n") && !init.contains('@'));
            linux::assert_sh_parses(&init);
        }
    }

    #[test]
    fn names_from_macs() {
        let mac = parse_mac("02:4c:32:00:10:10").unwrap();
        assert_eq!(fmt_mac(&mac), "02:4c:32:00:10:10");
        assert_eq!(wwpn_from_mac(&mac), 0x2000_024c_3200_1010);
        assert_eq!(wwnn_from_mac(&mac), 0x1000_024c_3200_1010);
        assert_eq!(fmt_wwn(wwpn_from_mac(&mac)), "20:00:02:4c:32:00:10:10");
        assert_eq!(port_id_from_mac(&mac), 0x1010);
        assert_eq!(port_id_from_mac(&[0, 0, 0, 0, 0xff, 0xff]), 1);
        assert_eq!(vn_mac(0x1010), [0x0e, 0xfd, 0, 0, 0x10, 0x10]);
        assert!(parse_mac("02:4c:32:00:10").is_err());
        assert_eq!(
            FcoeExport::new(0, "/x/d.img").read_only().l2san_arg(),
            "0=/x/d.img,ro"
        );
    }

    #[test]
    fn crc32_matches_zlib() {
        assert_eq!(crc32(b"123456789"), 0xcbf4_3926);
        assert_eq!(crc32(b""), 0);
    }

    fn pcap(frames: &[Vec<u8>]) -> Vec<u8> {
        let mut h = Vec::new();
        h.extend_from_slice(&0xa1b2_c3d4u32.to_le_bytes());
        h.extend_from_slice(&2u16.to_le_bytes());
        h.extend_from_slice(&4u16.to_le_bytes());
        h.extend_from_slice(&0i32.to_le_bytes());
        h.extend_from_slice(&0u32.to_le_bytes());
        h.extend_from_slice(&262_144u32.to_le_bytes());
        h.extend_from_slice(&1u32.to_le_bytes());
        for (i, f) in frames.iter().enumerate() {
            for v in [10 + i as u32, 0, f.len() as u32, f.len() as u32] {
                h.extend_from_slice(&v.to_le_bytes());
            }
            h.extend_from_slice(f);
        }
        h
    }

    fn fcoe_frame(src: Mac, dst: Mac, r_ctl: u8, fc_type: u8, payload: &[u8]) -> Vec<u8> {
        let mut f = Vec::new();
        f.extend_from_slice(&dst);
        f.extend_from_slice(&src);
        f.extend_from_slice(&[0x89, 0x06]);
        f.extend_from_slice(&[0; 13]);
        f.push(0x2e);
        let mut fc = vec![
            r_ctl, dst[3], dst[4], dst[5], 0, src[3], src[4], src[5], fc_type,
        ];
        fc.extend_from_slice(&[0x98, 0, 0, 0, 0, 0, 0, 0x12, 0x34, 0xff, 0xff, 0, 0, 0, 0]);
        fc.extend_from_slice(payload);
        let crc = crc32(&fc);
        f.extend_from_slice(&fc);
        f.extend_from_slice(&crc.to_le_bytes());
        f.extend_from_slice(&[0x42, 0, 0, 0]);
        f
    }

    #[test]
    fn analyze_checks_frames() {
        let guest_mac = [0x02, 0x4c, 0x32, 0, 0x10, 0x10];
        let target_mac = [0x02, 0x4c, 0x32, 0, 0x80, 0x80];
        let (g, t) = (vn_mac(0x1010), vn_mac(0x8080));
        // A probe request from the guest: MAC, NAME and VN_ID descriptors (2 + 3 + 5 words).
        let mut probe = Vec::new();
        probe.extend_from_slice(&ALL_VN2VN);
        probe.extend_from_slice(&guest_mac);
        probe.extend_from_slice(&[0x89, 0x14, 0x10, 0, 0, 5, 0, 1, 0, 10, 0, 0]);
        probe.extend_from_slice(&[2, 2, 0, 0, 0, 0, 0, 0]);
        probe.extend_from_slice(&[4, 3, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        probe.extend_from_slice(&[11, 5]);
        probe.extend_from_slice(&[0; 18]);
        let plogi = fcoe_frame(g, t, 0x22, 0x01, &[0x03, 0, 0, 0]);
        let mut rsp = vec![0u8; 24 + 20];
        rsp[10] = 0x02;
        rsp[11] = 0x02;
        rsp[19] = 18;
        rsp[24] = 0x70;
        rsp[26] = 0x07;
        let rsp = fcoe_frame(t, g, 0x07, 0x08, &rsp);
        let data = fcoe_frame(t, g, 0x01, 0x08, &[0xaa; 2112]);
        let mut bad = fcoe_frame(t, g, 0x01, 0x08, &[0xaa; 64]);
        let last = bad.len() - 9;
        bad[last] ^= 1; // payload byte: the CRC no longer matches
        let dir = std::env::temp_dir().join(format!("l2st-fcoe-pcap-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let file = dir.join("t.pcap");
        fs::write(&file, pcap(&[probe, plogi, rsp, data, bad])).unwrap();
        let seg = Segment {
            guest_mac,
            target_mac,
            mtu: 1500,
        };
        let stats = analyze(&file, &seg).unwrap();
        fs::remove_dir_all(&dir).unwrap();
        assert_eq!(stats.frames, 5);
        assert_eq!(stats.fip_count(Side::Guest, 5, 1), 1);
        assert_eq!(stats.els_count(Side::Guest, 0x03), 1);
        assert_eq!(stats.scsi_status.get(&(0x02, Some(0x07))), Some(&1));
        assert_eq!(stats.side(Side::Target).data_frames, 2);
        assert_eq!(stats.side(Side::Target).max_data_payload, 2112);
        assert!(
            stats.guest_problems.is_empty(),
            "{:?}",
            stats.guest_problems
        );
        // The 2112-byte frame is over MTU 1500, and the last one has a bad CRC.
        assert_eq!(stats.target_problem_count, 2, "{:?}", stats.target_problems);
        assert!(stats.target_problems[0].contains("over the MTU"));
        assert!(stats.target_problems[1].contains("CRC"));
    }

    #[test]
    fn sg_request_and_reply() {
        let req = sg_write_request(20001, &[0xab; 512]);
        assert_eq!(req.len(), 36 + 10 + 512);
        assert_eq!(req[4], 36);
        assert_eq!(req[36..46], [0x2a, 0, 0, 0, 0x4e, 0x21, 0, 0, 1, 0]);
    }

    #[test]
    fn fcoe_expected_image() {
        let original = vec![0xa5u8; 32 << 20];
        let after = expected_after_fcoe(&original, 16);
        let at = FCOE_PATTERN_LBA as usize * 512;
        assert_eq!(after[..at], original[..at]);
        assert!(after[at..].starts_with(b"L2SAN-LINUX pattern sector 00\n"));
        assert!(after[16 << 20..].iter().all(|&b| b == 0));
        assert_eq!(after[(16 << 20) - 1], 0xa5);
    }
}
