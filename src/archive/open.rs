//! Opening the files of an archive as files (issue 17). Whoever can write `backup.directory`
//! on a shared disk, or a file:// target's folder, can put a symbolic link, a named pipe or a
//! device where a data file should be. Following the link would read any file the server's
//! OS user can read (the age identity file, the data directory) and hand its checksum, size,
//! line count or rows to the caller; opening a pipe blocks in open(2) where no cancel reaches.
//!
//! So every file of an archive is opened relative to the archive's directory descriptor, one
//! path component at a time, with `O_NOFOLLOW` (a symlinked folder is refused too), the file
//! itself with `O_NONBLOCK` (a pipe opens at once instead of waiting for a writer), and only a
//! regular file (`fstat` on the descriptor we read) is read; `O_NONBLOCK` is cleared before
//! reading. Listings use `fstatat(AT_SYMLINK_NOFOLLOW)` and never descend through a link.
//! Plain Rust: used from the backend and from helper threads alike.

use std::ffi::CString;
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// The error of a path component that is a symbolic link or a file that is not a regular
/// file; `is_not_a_file` recognises it.
fn not_a_file(what: &str, name: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        format!(
            "\"{}\" is {what}, not a regular file; refused",
            name.escape_default()
        ),
    )
}

/// Whether `e` is a refusal of a link, pipe, device or socket (not a missing file).
pub fn is_not_a_file(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::InvalidInput
}

fn cstr(s: &[u8]) -> io::Result<CString> {
    CString::new(s).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in a path"))
}

fn last_os_error_for(name: &str, dir: bool) -> io::Error {
    let e = io::Error::last_os_error();
    match e.raw_os_error() {
        // O_NOFOLLOW on a symbolic link.
        Some(libc::ELOOP) => not_a_file("a symbolic link", name),
        // O_DIRECTORY on something else.
        Some(libc::ENOTDIR) if dir => not_a_file("not a directory", name),
        _ => e,
    }
}

/// Open directory `path` itself: its last component must be a real directory, not a link
/// (the components above it are the configuration's: `backup.directory`, a target's root).
pub fn open_dir(path: &Path) -> io::Result<OwnedFd> {
    let c = cstr(path.as_os_str().as_bytes())?;
    // SAFETY: a plain open(2) of a NUL-terminated path; the descriptor is owned below.
    let fd = unsafe {
        libc::open(
            c.as_ptr(),
            libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        return Err(last_os_error_for(&path.display().to_string(), true));
    }
    // SAFETY: fd is a fresh descriptor nobody else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Open the root folder of a storage target: configured by a superuser, so it may be (or
/// pass through) a link; nothing below it is followed.
pub fn open_root(path: &Path) -> io::Result<OwnedFd> {
    let c = cstr(path.as_os_str().as_bytes())?;
    // SAFETY: a plain open(2) of a NUL-terminated path; the descriptor is owned below.
    let fd = unsafe {
        libc::open(
            c.as_ptr(),
            libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd is a fresh descriptor nobody else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// The components of a relative archive path; `..`, `.`, empty and absolute are refused.
fn components(rel: &str) -> io::Result<Vec<&str>> {
    let parts: Vec<&str> = rel.split('/').collect();
    if rel.is_empty()
        || parts
            .iter()
            .any(|p| p.is_empty() || *p == "." || *p == "..")
    {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "\"{}\" is not a path inside an archive",
                rel.escape_default()
            ),
        ));
    }
    Ok(parts)
}

fn openat_dir(dir: RawFd, name: &str) -> io::Result<OwnedFd> {
    let c = cstr(name.as_bytes())?;
    // SAFETY: openat(2) relative to a descriptor we hold, of a NUL-terminated name.
    let fd = unsafe {
        libc::openat(
            dir,
            c.as_ptr(),
            libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        return Err(last_os_error_for(name, true));
    }
    // SAFETY: fd is a fresh descriptor nobody else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// The directory that holds `rel` (opened component by component) and `rel`'s last name.
fn parent_of<'a>(dir: &OwnedFd, rel: &'a str) -> io::Result<(Option<OwnedFd>, &'a str)> {
    let parts = components(rel)?;
    let (name, folders) = parts.split_last().expect("at least one component");
    let mut cur: Option<OwnedFd> = None;
    for f in folders {
        let at = cur.as_ref().map_or(dir.as_raw_fd(), |d| d.as_raw_fd());
        cur = Some(openat_dir(at, f)?);
    }
    Ok((cur, name))
}

/// Open `rel` (e.g. `data/00001.copy.zst`) under the directory `dir` for reading: no link
/// followed on the way, and only a regular file.
pub fn open_in(dir: &OwnedFd, rel: &str) -> io::Result<File> {
    let (parent, name) = parent_of(dir, rel)?;
    let at = parent.as_ref().map_or(dir.as_raw_fd(), |d| d.as_raw_fd());
    let c = cstr(name.as_bytes())?;
    // SAFETY: openat(2) relative to a descriptor we hold. O_NONBLOCK: a FIFO opens at once
    // (it would otherwise wait for a writer, where no cancel reaches); O_NOCTTY: a terminal
    // never becomes ours.
    let fd = unsafe {
        libc::openat(
            at,
            c.as_ptr(),
            libc::O_RDONLY | libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_NOCTTY | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        return Err(last_os_error_for(rel, false));
    }
    // SAFETY: fd is a fresh descriptor nobody else owns; File closes it.
    let file = unsafe { File::from_raw_fd(fd) };
    let meta = file.metadata()?;
    if !meta.file_type().is_file() {
        return Err(not_a_file(describe(&meta.file_type()), rel));
    }
    // A regular file: reads never block on O_NONBLOCK's account, but clear it so that the
    // descriptor behaves like any other.
    // SAFETY: fcntl(2) on a descriptor we own.
    unsafe {
        let flags = libc::fcntl(fd, libc::F_GETFL);
        if flags < 0 || libc::fcntl(fd, libc::F_SETFL, flags & !libc::O_NONBLOCK) < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(file)
}

fn describe(t: &std::fs::FileType) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    if t.is_symlink() {
        "a symbolic link"
    } else if t.is_dir() {
        "a directory"
    } else if t.is_fifo() {
        "a named pipe"
    } else if t.is_socket() {
        "a socket"
    } else if t.is_block_device() || t.is_char_device() {
        "a device"
    } else {
        "not a regular file"
    }
}

/// Open `rel` under the archive folder `base` (whose last component must not be a link).
pub fn open_file(base: &Path, rel: &str) -> io::Result<File> {
    open_in(&open_dir(base)?, rel)
}

/// Whether `rel` under `base` is a regular file reached without a link.
pub fn is_file(base: &Path, rel: &str) -> bool {
    open_file(base, rel).is_ok()
}

/// One entry of a listing: its path relative to the listed folder, what it is, its size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub rel: String,
    pub regular: bool,
    pub size: u64,
}

/// Every entry under the directory `dir`, recursively, never through a link: folders are
/// descended into, everything else (files, links, pipes ...) is listed with what it is.
pub fn list(dir: &OwnedFd) -> io::Result<Vec<Entry>> {
    let mut out = Vec::new();
    walk(dir.as_raw_fd(), "", &mut out)?;
    out.sort_by(|a, b| a.rel.cmp(&b.rel));
    Ok(out)
}

fn walk(dir: RawFd, prefix: &str, out: &mut Vec<Entry>) -> io::Result<()> {
    for name in read_names(dir)? {
        let rel = format!("{prefix}{name}");
        let c = cstr(name.as_bytes())?;
        // SAFETY: fstatat(2) into a zeroed stat, relative to a descriptor we hold, without
        // following a link.
        let st = unsafe {
            let mut st: libc::stat = std::mem::zeroed();
            if libc::fstatat(dir, c.as_ptr(), &mut st, libc::AT_SYMLINK_NOFOLLOW) < 0 {
                // Gone meanwhile: not listed.
                continue;
            }
            st
        };
        match st.st_mode & libc::S_IFMT {
            libc::S_IFDIR => {
                if let Ok(sub) = openat_dir(dir, &name) {
                    walk(sub.as_raw_fd(), &format!("{rel}/"), out)?;
                }
            }
            mode => out.push(Entry {
                rel,
                regular: mode == libc::S_IFREG,
                size: st.st_size.max(0) as u64,
            }),
        }
    }
    Ok(())
}

/// The names in directory `dir` (not `.` and `..`). Names that are not UTF-8 are skipped:
/// pg_backup never writes one, and they cannot name an archive file.
fn read_names(dir: RawFd) -> io::Result<Vec<String>> {
    // SAFETY: dup(2) gives fdopendir its own descriptor, which closedir closes; readdir's
    // entries are read before the next call.
    unsafe {
        let own = libc::fcntl(dir, libc::F_DUPFD_CLOEXEC, 0);
        if own < 0 {
            return Err(io::Error::last_os_error());
        }
        let d = libc::fdopendir(own);
        if d.is_null() {
            let e = io::Error::last_os_error();
            libc::close(own);
            return Err(e);
        }
        libc::rewinddir(d);
        let mut names = Vec::new();
        loop {
            let ent = libc::readdir(d);
            if ent.is_null() {
                break;
            }
            let name = std::ffi::CStr::from_ptr((*ent).d_name.as_ptr()).to_bytes();
            if name == b"." || name == b".." {
                continue;
            }
            if let Ok(s) = std::str::from_utf8(name) {
                names.push(s.to_string());
            }
        }
        libc::closedir(d);
        Ok(names)
    }
}

/// Remove the file `rel` under `dir` (never through a link: a link is removed itself, as
/// unlink(2) does), then the folders on its way that are left empty.
pub fn remove_in(dir: &OwnedFd, rel: &str) -> io::Result<()> {
    let parts = components(rel)?;
    // Open every folder on the way, without following links.
    let mut chain: Vec<OwnedFd> = Vec::new();
    for f in &parts[..parts.len() - 1] {
        let at = chain.last().map_or(dir.as_raw_fd(), |d| d.as_raw_fd());
        match openat_dir(at, f) {
            Ok(d) => chain.push(d),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            // A link (or a file) where a folder should be: it goes itself, never what it
            // points to.
            Err(e) if is_not_a_file(&e) => {
                let c = cstr(f.as_bytes())?;
                // SAFETY: unlinkat(2) relative to a descriptor we hold; removes the entry.
                if unsafe { libc::unlinkat(at, c.as_ptr(), 0) } < 0 {
                    return Err(io::Error::last_os_error());
                }
                return Ok(());
            }
            Err(e) => return Err(e),
        }
    }
    let at = chain.last().map_or(dir.as_raw_fd(), |d| d.as_raw_fd());
    let c = cstr(parts[parts.len() - 1].as_bytes())?;
    // SAFETY: unlinkat(2) relative to a descriptor we hold.
    if unsafe { libc::unlinkat(at, c.as_ptr(), 0) } < 0 {
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::NotFound {
            return Err(e);
        }
    }
    // Folders left empty, innermost first; the first that is not empty stops it.
    for i in (0..chain.len()).rev() {
        let at = if i == 0 {
            dir.as_raw_fd()
        } else {
            chain[i - 1].as_raw_fd()
        };
        let c = cstr(parts[i].as_bytes())?;
        // SAFETY: unlinkat(2) of a folder relative to a descriptor we hold.
        if unsafe { libc::unlinkat(at, c.as_ptr(), libc::AT_REMOVEDIR) } < 0 {
            break;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::os::unix::fs::symlink;

    fn read(base: &Path, rel: &str) -> io::Result<String> {
        let mut s = String::new();
        open_file(base, rel)?.read_to_string(&mut s)?;
        Ok(s)
    }

    #[test]
    fn regular_files_open_and_links_do_not() {
        let t = tempfile::tempdir().unwrap();
        let a = t.path().join("a");
        std::fs::create_dir_all(a.join("data")).unwrap();
        std::fs::write(a.join("data/1.copy"), b"rows").unwrap();
        std::fs::write(t.path().join("secret"), b"key").unwrap();
        assert_eq!(read(&a, "data/1.copy").unwrap(), "rows");
        // A file replaced by a link.
        symlink(t.path().join("secret"), a.join("data/2.copy")).unwrap();
        let e = read(&a, "data/2.copy").unwrap_err();
        assert!(is_not_a_file(&e), "{e}");
        assert!(e.to_string().contains("symbolic link"), "{e}");
        // A folder replaced by a link.
        std::fs::create_dir(t.path().join("elsewhere")).unwrap();
        std::fs::write(t.path().join("elsewhere/1.copy"), b"other").unwrap();
        symlink(t.path().join("elsewhere"), a.join("linked")).unwrap();
        assert!(is_not_a_file(&read(&a, "linked/1.copy").unwrap_err()));
        // The archive folder itself a link.
        symlink(&a, t.path().join("b")).unwrap();
        assert!(is_not_a_file(
            &read(&t.path().join("b"), "data/1.copy").unwrap_err()
        ));
        // Escapes are not paths of an archive.
        assert!(read(&a, "../secret").is_err());
        assert!(read(&a, "/etc/passwd").is_err());
        assert_eq!(
            read(&a, "data/none").unwrap_err().kind(),
            io::ErrorKind::NotFound
        );
    }

    #[test]
    fn a_named_pipe_is_refused_at_once() {
        let t = tempfile::tempdir().unwrap();
        let fifo = CString::new(t.path().join("p").as_os_str().as_bytes()).unwrap();
        // SAFETY: mkfifo(3) of a NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o600) }, 0);
        let started = std::time::Instant::now();
        let e = read(t.path(), "p").unwrap_err();
        assert!(e.to_string().contains("named pipe"), "{e}");
        assert!(started.elapsed() < std::time::Duration::from_secs(2));
    }

    #[test]
    fn listings_never_descend_through_links() {
        let t = tempfile::tempdir().unwrap();
        let a = t.path().join("a");
        std::fs::create_dir_all(a.join("data")).unwrap();
        std::fs::write(a.join("data/1.copy"), b"12345").unwrap();
        std::fs::create_dir(t.path().join("elsewhere")).unwrap();
        std::fs::write(t.path().join("elsewhere/secret"), b"x").unwrap();
        symlink(t.path().join("elsewhere"), a.join("linked")).unwrap();
        let l = list(&open_dir(&a).unwrap()).unwrap();
        assert_eq!(
            l,
            vec![
                Entry {
                    rel: "data/1.copy".into(),
                    regular: true,
                    size: 5
                },
                Entry {
                    rel: "linked".into(),
                    regular: false,
                    size: l[1].size
                },
            ]
        );
    }

    #[test]
    fn removal_stays_inside() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path().join("root");
        std::fs::create_dir_all(root.join("b1/data")).unwrap();
        std::fs::write(root.join("b1/data/1.copy"), b"x").unwrap();
        std::fs::create_dir_all(t.path().join("victim/data")).unwrap();
        std::fs::write(t.path().join("victim/data/1.copy"), b"keep").unwrap();
        symlink(t.path().join("victim"), root.join("b2")).unwrap();
        let fd = open_dir(&root).unwrap();
        remove_in(&fd, "b2/data/1.copy").unwrap();
        assert!(t.path().join("victim/data/1.copy").exists());
        assert!(
            std::fs::symlink_metadata(root.join("b2")).is_err(),
            "the link went"
        );
        remove_in(&fd, "b1/data/1.copy").unwrap();
        assert!(!root.join("b1").exists());
        assert!(root.exists());
    }
}
