//! Gives back the pages of code and read-only data that only starting used.
//!
//! A process runs much more code while it starts (settings, the database pool and its
//! migrations check, the Kafka client and the TLS library setting up) than it runs afterwards:
//! an idle worker role kept 4.6 MiB of the binary's code and 1.7 MiB of OpenSSL resident, most
//! of it run once (bench/RESULTS.md, "Start-up pages given back"). Those pages are clean
//! copies of files. Once the roles are ready, each read-only mapping of a file loaded with the
//! program (the binary's code and read-only data, and its libraries') that holds no written
//! page leaves the process's resident set through `madvise(MADV_DONTNEED)`. The kernel keeps
//! the pages in its page cache, shared with every process that maps them; a page that runs
//! again comes back with a minor fault, without a disk read while it is cached.
//!
//! Never touched: writable mappings, anonymous memory, a read-only mapping that holds a page
//! the process wrote (the loader's relocations, `.data.rel.ro`), and files mapped after the
//! program started (a library opened later could be closed, and its addresses reused, between
//! reading the list of mappings and the call).

use std::{collections::HashSet, sync::OnceLock};

/// The files mapped as the program started: the binary, the loader and the libraries it was
/// linked with. They stay mapped for the life of the process.
static AT_START: OnceLock<HashSet<String>> = OnceLock::new();

/// Notes the files mapped now; call first thing in `main`, before anything can open a library.
pub fn note_start() {
    let files = std::fs::read_to_string("/proc/self/maps")
        .map(|maps| {
            mappings(&maps)
                .filter_map(|m| m.file)
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default();
    let _ = AT_START.set(files);
}

/// What [`release_startup_pages`] gave back.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Released {
    /// Mappings whose pages left the resident set.
    pub mappings: usize,
    /// Their resident KiB before.
    pub kib: u64,
}

/// Drops the resident pages of every read-only, unwritten mapping of a file that was mapped
/// as the program started (see the module's documentation).
pub fn release_startup_pages() -> std::io::Result<Released> {
    let at_start = AT_START.get().cloned().unwrap_or_default();
    let smaps = std::fs::read_to_string("/proc/self/smaps")?;
    let mut released = Released::default();
    for m in mappings(&smaps) {
        let from_start = m.file.is_some_and(|f| at_start.contains(f));
        if !(from_start && m.clean_read_only() && m.rss_kib > 0) {
            continue;
        }
        if drop_pages(m.start, m.end - m.start) {
            released.mappings += 1;
            released.kib += m.rss_kib;
        }
    }
    Ok(released)
}

/// Drops the pages of `[start, start + len)` from the resident set.
#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
fn drop_pages(start: usize, len: usize) -> bool {
    // SAFETY: the range is one whole private, read-only mapping of a file this process mapped
    // as it started and keeps mapped until it exits (its libraries cannot be unloaded), and it
    // holds no anonymous (written) page. MADV_DONTNEED on such a mapping only unmaps pages:
    // the next read faults each in again from the unchanged file, with the same contents.
    // No Rust reference is invalidated, since no byte of the range changes.
    let rc = unsafe { libc::madvise(start as *mut libc::c_void, len, libc::MADV_DONTNEED) };
    rc == 0
}

#[cfg(not(target_os = "linux"))]
fn drop_pages(_start: usize, _len: usize) -> bool {
    false
}

/// A mapping of `/proc/self/maps` or `/proc/self/smaps`.
#[derive(Debug, Default, PartialEq, Eq)]
struct Mapping<'a> {
    start: usize,
    end: usize,
    perms: &'a str,
    /// The file's path; `None` for anonymous memory and the kernel's own (`[stack]`, `[vdso]`).
    file: Option<&'a str>,
    rss_kib: u64,
    anonymous_kib: u64,
    locked_kib: u64,
}

impl Mapping<'_> {
    /// Private, read-only (code or data), with no written page, not locked.
    fn clean_read_only(&self) -> bool {
        matches!(self.perms, "r--p" | "r-xp") && self.anonymous_kib == 0 && self.locked_kib == 0
    }
}

/// The mappings listed in `text` (the format of `/proc/PID/maps`, with the per-mapping sizes
/// of `/proc/PID/smaps` where present).
fn mappings(text: &str) -> impl Iterator<Item = Mapping<'_>> {
    let mut lines = text.lines().peekable();
    std::iter::from_fn(move || {
        let header = lines.next()?;
        let mut fields = header.split_whitespace();
        let (range, perms) = (fields.next()?, fields.next()?);
        let (start, end) = range.split_once('-')?;
        // offset, device, inode, then the path (which may hold spaces).
        let inode = fields.nth(2)?;
        let path = header
            .splitn(6, char::is_whitespace)
            .nth(5)
            .map(str::trim)
            .filter(|p| !p.is_empty());
        let mut m = Mapping {
            start: usize::from_str_radix(start, 16).ok()?,
            end: usize::from_str_radix(end, 16).ok()?,
            perms,
            file: path.filter(|p| inode != "0" && p.starts_with('/')),
            ..Mapping::default()
        };
        // The sizes that follow in smaps: `Name:  123 kB`; the next header has no colon
        // in its first word.
        while let Some(line) = lines.next_if(|l| {
            l.split_whitespace()
                .next()
                .is_some_and(|w| w.ends_with(':'))
        }) {
            let mut parts = line.split_whitespace();
            let (name, value) = (
                parts.next().unwrap_or_default(),
                parts.next().unwrap_or_default(),
            );
            let kib = value.parse().unwrap_or(0);
            match name {
                "Rss:" => m.rss_kib = kib,
                "Anonymous:" => m.anonymous_kib = kib,
                "Locked:" => m.locked_kib = kib,
                _ => {}
            }
        }
        Some(m)
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const SMAPS: &str = "\
55d0c0a00000-55d0c0b00000 r--p 00000000 08:01 1234                       /usr/bin/taskflow
Size:               1024 kB
Rss:                 300 kB
Anonymous:             0 kB
Locked:                0 kB
VmFlags: rd mr mw me
55d0c0b00000-55d0c0f00000 r-xp 00100000 08:01 1234                       /usr/bin/taskflow
Rss:                2000 kB
Anonymous:             0 kB
55d0c0f00000-55d0c1000000 r--p 00500000 08:01 1234                       /usr/bin/taskflow
Rss:                1024 kB
Anonymous:          1024 kB
55d0c1000000-55d0c1010000 rw-p 00600000 08:01 1234                       /usr/bin/taskflow
Rss:                  64 kB
Anonymous:            64 kB
7f0000000000-7f0000100000 rw-p 00000000 00:00 0 
Rss:                 512 kB
Anonymous:           512 kB
7f0000200000-7f0000300000 r-xp 00000000 08:01 99                         /opt/my lib/libx.so
Rss:                  40 kB
Anonymous:             0 kB
7ffd00000000-7ffd00002000 r-xp 00000000 00:00 0                          [vdso]
Rss:                   8 kB
Anonymous:             0 kB
";

    #[test]
    fn smaps_is_read_mapping_by_mapping() {
        let all: Vec<Mapping> = mappings(SMAPS).collect();
        assert_eq!(all.len(), 7);
        assert_eq!(all[1].start, 0x55d0_c0b0_0000);
        assert_eq!(all[1].end, 0x55d0_c0f0_0000);
        assert_eq!(all[1].perms, "r-xp");
        assert_eq!(all[1].file, Some("/usr/bin/taskflow"));
        assert_eq!(all[1].rss_kib, 2000);
        assert_eq!(all[4].file, None, "anonymous memory");
        assert_eq!(
            all[5].file,
            Some("/opt/my lib/libx.so"),
            "a path with a space"
        );
        assert_eq!(all[6].file, None, "the kernel's vdso is no file");
    }

    #[test]
    fn only_clean_read_only_mappings_are_candidates() {
        let clean: Vec<bool> = mappings(SMAPS).map(|m| m.clean_read_only()).collect();
        // Code and read-only data are; the relocated (written) read-only data, writable data
        // and anonymous memory are not.
        assert_eq!(clean, [true, true, false, false, false, true, true]);
    }

    #[test]
    fn a_plain_maps_listing_is_read_too() {
        let maps = "00400000-00452000 r-xp 00000000 08:02 173521      /usr/bin/dbus-daemon\n\
                    00e03000-00e24000 rw-p 00000000 00:00 0           [heap]\n";
        let files: Vec<Option<&str>> = mappings(maps).map(|m| m.file).collect();
        assert_eq!(files, [Some("/usr/bin/dbus-daemon"), None]);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn the_pages_leave_the_resident_set_and_the_code_still_runs() {
        let resident = || {
            let smaps = std::fs::read_to_string("/proc/self/smaps").unwrap();
            mappings(&smaps)
                .filter(|m| m.file.is_some() && m.clean_read_only())
                .map(|m| m.rss_kib)
                .sum::<u64>()
        };
        note_start();
        let before = resident();
        let released = release_startup_pages().unwrap();
        // Reading smaps again runs code and reads data that was given back: it faults in.
        let after = resident();
        assert!(released.mappings > 0, "{released:?}");
        assert!(released.kib >= before / 2, "{released:?} of {before} KiB");
        assert!(
            after < before / 2,
            "resident KiB of clean mappings: {before} -> {after}"
        );
    }
}
