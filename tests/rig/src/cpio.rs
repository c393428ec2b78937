//! A writer for the "newc" cpio format (`070701`), the format Linux unpacks as an initramfs.
//!
//! Each entry is a 110-byte ASCII header (magic and 13 eight-digit hex fields: ino, mode, uid, gid,
//! nlink, mtime, filesize, devmajor, devminor, rdevmajor, rdevminor, namesize including the NUL,
//! check), the NUL-terminated name padded to a multiple of 4, then the data padded likewise. The
//! archive ends with an entry named `TRAILER!!!`. Linux needs no compression: an uncompressed
//! archive works as `-initrd`. Parent directories must come before their entries.

use std::collections::BTreeSet;

const S_IFDIR: u32 = 0o040000;
const S_IFREG: u32 = 0o100000;
const S_IFLNK: u32 = 0o120000;
const S_IFCHR: u32 = 0o020000;

/// Builds a newc archive in memory. Entries are owned by root, with mtime 0.
#[derive(Debug, Default)]
pub struct Writer {
    out: Vec<u8>,
    ino: u32,
    dirs: BTreeSet<String>,
}

impl Writer {
    /// An empty archive.
    pub fn new() -> Writer {
        Writer::default()
    }

    fn entry(&mut self, name: &str, mode: u32, rdev: (u32, u32), data: &[u8]) {
        let name = name.trim_start_matches('/');
        assert!(!name.is_empty() && !name.contains('\0'), "bad cpio name");
        self.ino += 1;
        let nlink = if mode & S_IFDIR != 0 { 2 } else { 1 };
        let fields = [
            self.ino,
            mode,
            0,
            0,
            nlink,
            0,
            u32::try_from(data.len()).expect("cpio entries are under 4 GiB"),
            0,
            0,
            rdev.0,
            rdev.1,
            u32::try_from(name.len() + 1).expect("short name"),
            0,
        ];
        self.out.extend_from_slice(b"070701");
        for field in fields {
            self.out
                .extend_from_slice(format!("{field:08x}").as_bytes());
        }
        self.out.extend_from_slice(name.as_bytes());
        self.out.push(0);
        self.pad();
        self.out.extend_from_slice(data);
        self.pad();
    }

    fn pad(&mut self) {
        while !self.out.len().is_multiple_of(4) {
            self.out.push(0);
        }
    }

    /// Adds the missing parent directories of `path` (mode 0755).
    fn parents(&mut self, path: &str) {
        let path = path.trim_start_matches('/');
        let mut at = 0;
        while let Some(slash) = path[at..].find('/') {
            let dir = &path[..at + slash];
            at += slash + 1;
            if self.dirs.insert(dir.to_string()) {
                self.entry(dir, S_IFDIR | 0o755, (0, 0), &[]);
            }
        }
    }

    /// Adds a directory (and its parents).
    pub fn dir(&mut self, path: &str, perm: u32) -> &mut Writer {
        self.parents(path);
        let trimmed = path.trim_start_matches('/').trim_end_matches('/');
        if self.dirs.insert(trimmed.to_string()) {
            self.entry(trimmed, S_IFDIR | (perm & 0o7777), (0, 0), &[]);
        }
        self
    }

    /// Adds a regular file (and its parent directories).
    pub fn file(&mut self, path: &str, perm: u32, data: &[u8]) -> &mut Writer {
        self.parents(path);
        self.entry(path, S_IFREG | (perm & 0o7777), (0, 0), data);
        self
    }

    /// Adds a symbolic link `path` pointing at `target`.
    pub fn symlink(&mut self, path: &str, target: &str) -> &mut Writer {
        self.parents(path);
        self.entry(path, S_IFLNK | 0o777, (0, 0), target.as_bytes());
        self
    }

    /// Adds a character device node.
    pub fn char_device(&mut self, path: &str, perm: u32, major: u32, minor: u32) -> &mut Writer {
        self.parents(path);
        self.entry(path, S_IFCHR | (perm & 0o7777), (major, minor), &[]);
        self
    }

    /// Appends the trailer and returns the archive.
    pub fn finish(mut self) -> Vec<u8> {
        self.entry("TRAILER!!!", 0, (0, 0), &[]);
        self.out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::skip;
    use std::process::{Command, Stdio};

    #[test]
    fn header_layout() {
        let mut w = Writer::new();
        w.file("a", 0o644, b"xyz");
        let out = w.finish();
        let header = std::str::from_utf8(&out[..110]).unwrap();
        assert!(header.starts_with("070701"));
        // filesize field (7th) is 3, namesize (12th) is 2.
        assert_eq!(&header[6 + 6 * 8..6 + 7 * 8], "00000003");
        assert_eq!(&header[6 + 11 * 8..6 + 12 * 8], "00000002");
        assert_eq!(&out[110..112], b"a\0");
        assert_eq!(&out[112..115], b"xyz");
        assert_eq!(out.len() % 4, 0);
    }

    /// Lists the archive with busybox cpio (the initramfs guests carry busybox; the kernel's own
    /// unpacker reads the archive at every guest boot).
    #[test]
    fn busybox_reads_it() {
        if let Err(reason) = skip::tool("busybox", "busybox-static") {
            return skip::skip("busybox_reads_it", reason);
        }
        let mut w = Writer::new();
        w.file("bin/tool", 0o755, b"#!/bin/sh\n")
            .symlink("bin/sh", "busybox")
            .dir("proc", 0o555)
            .char_device("dev/console", 0o600, 5, 1)
            .file("deep/er/file", 0o644, &[7; 1001]);
        let archive = w.finish();
        let mut child = Command::new("busybox")
            .args(["cpio", "-t"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("cannot run busybox");
        use std::io::Write;
        child.stdin.take().unwrap().write_all(&archive).unwrap();
        let out = child.wait_with_output().unwrap();
        let listing = String::from_utf8(out.stdout).unwrap();
        let names: Vec<&str> = listing.lines().collect();
        assert_eq!(
            names,
            [
                "bin",
                "bin/tool",
                "bin/sh",
                "proc",
                "dev",
                "dev/console",
                "deep",
                "deep/er",
                "deep/er/file"
            ]
        );
    }
}
