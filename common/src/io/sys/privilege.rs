//! Dropping privileges after start-up: become an unprivileged user and keep only the
//! capabilities the workers still need.
//!
//! What l2san needs after its images are open:
//! - `CAP_NET_RAW`: to open packet sockets again after an interface vanishes or fails;
//! - `CAP_NET_ADMIN`: for `SO_SNDBUFFORCE`, the fanout group and promiscuous mode (FCoE) on
//!   those new sockets.
//!
//! Nothing else: images stay open (and writable) through their descriptors, which survive the
//! change of user. Capabilities are per thread, so this must run before any worker starts;
//! threads started afterwards inherit the reduced sets.

use std::ffi::CString;
use std::io;

const CAP_NET_ADMIN: u32 = 12;
const CAP_NET_RAW: u32 = 13;
const LINUX_CAPABILITY_VERSION_3: u32 = 0x2008_0522;

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: libc::c_int,
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

/// A user to become: its ids, looked up by name or given as a number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct User {
    pub uid: libc::uid_t,
    pub gid: libc::gid_t,
}

impl User {
    /// Look `name` up in the user database (or take it as a numeric uid, with gid = uid).
    pub fn lookup(name: &str) -> Result<User, String> {
        if let Ok(uid) = name.parse::<libc::uid_t>() {
            return Ok(User { uid, gid: uid });
        }
        let cname = CString::new(name).map_err(|_| format!("bad user name '{name}'"))?;
        // SAFETY: getpwnam reads a NUL-terminated string we own and returns a pointer into
        // static storage (or null), which we read at once, before any other getpw* call; l2san
        // calls this from the main thread before starting workers.
        let pw = unsafe { libc::getpwnam(cname.as_ptr()) };
        if pw.is_null() {
            return Err(format!(
                "no user named '{name}'; create it (useradd --system l2san) or give a uid"
            ));
        }
        // SAFETY: `pw` is non-null and points at a valid passwd record (see above).
        let (uid, gid) = unsafe { ((*pw).pw_uid, (*pw).pw_gid) };
        Ok(User { uid, gid })
    }
}

/// [`cvt`](super::cvt), with the name of the call in the error.
fn check(ret: libc::c_int, what: &str) -> io::Result<()> {
    super::cvt(ret)
        .map(drop)
        .map_err(|e| io::Error::new(e.kind(), format!("{what}: {e}")))
}

/// Become `user` and keep only CAP_NET_RAW and CAP_NET_ADMIN (effective and permitted).
/// Call from the only thread of the process that will ever exist with full privileges,
/// before workers start.
pub fn drop_to(user: User) -> io::Result<()> {
    // SAFETY: prctl with integer arguments; PR_SET_KEEPCAPS keeps the permitted set across
    // the setuid below (for this thread, the only one running).
    let rc = unsafe { libc::prctl(libc::PR_SET_KEEPCAPS, 1, 0, 0, 0) };
    check(rc, "prctl(PR_SET_KEEPCAPS)")?;
    // SAFETY: setgroups with an empty list (count 0; a null pointer is allowed for 0).
    let rc = unsafe { libc::setgroups(0, std::ptr::null()) };
    check(rc, "setgroups")?;
    // SAFETY: an id-changing syscall with integer arguments.
    let rc = unsafe { libc::setresgid(user.gid, user.gid, user.gid) };
    check(rc, "setresgid")?;
    // SAFETY: an id-changing syscall with integer arguments.
    let rc = unsafe { libc::setresuid(user.uid, user.uid, user.uid) };
    check(rc, "setresuid")?;
    let keep = (1 << CAP_NET_RAW) | (1 << CAP_NET_ADMIN);
    let header = CapHeader {
        version: LINUX_CAPABILITY_VERSION_3,
        pid: 0,
    };
    let data = [
        CapData {
            effective: keep,
            permitted: keep,
            inheritable: 0,
        },
        CapData::default(),
    ];
    // SAFETY: capset reads one header and, for version 3, two data structs, which we pass as
    // live, correctly laid out #[repr(C)] values.
    let rc = unsafe {
        libc::syscall(libc::SYS_capset, &header as *const CapHeader, data.as_ptr()) as libc::c_int
    };
    check(rc, "capset")?;
    // SAFETY: prctl with integer arguments: no exec may ever gain privileges again.
    let rc = unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) };
    check(rc, "prctl(PR_SET_NO_NEW_PRIVS)")?;
    Ok(())
}
