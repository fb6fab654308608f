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
        // A folder expected (O_DIRECTORY|O_NOFOLLOW): a link (Linux says ENOTDIR or ELOOP)
        // or anything else.
        Some(libc::ELOOP) | Some(libc::ENOTDIR) if dir => not_a_folder(name),
        // O_NOFOLLOW on a symbolic link.
        Some(libc::ELOOP) => not_a_file("a symbolic link", name),
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
    Ok(read_raw_names(dir)?
        .into_iter()
        .filter_map(|c| c.into_string().ok())
        .collect())
}

/// Every name in directory `dir` (not `.` and `..`), as it is.
fn read_raw_names(dir: RawFd) -> io::Result<Vec<CString>> {
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
            let name = std::ffi::CStr::from_ptr((*ent).d_name.as_ptr());
            if name.to_bytes() == b"." || name.to_bytes() == b".." {
                continue;
            }
            names.push(name.to_owned());
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

// Writing (issue 20, F3): whoever can write a file:// target's folder (or backup.directory)
// can swap a folder of an archive for a link between two steps that each resolve a path
// again. So writes, like reads, go through directory descriptors: each folder is made with
// mkdirat and opened with O_NOFOLLOW from its parent's descriptor, files are created with
// O_CREAT|O_EXCL|O_NOFOLLOW, renamed with renameat, removed with unlinkat, and the folder
// fsynced through the descriptor it was written through. Whatever happens to the paths
// meanwhile, nothing is made, written, renamed or removed outside the folder first opened.

/// The refusal of a link (or a file) where a folder goes.
fn not_a_folder(name: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        format!(
            "\"{}\" is not a folder (a link?): refused",
            name.escape_default()
        ),
    )
}

/// One name in a folder: not empty, `.`, `..` nor containing a slash.
fn one_name(name: &str) -> io::Result<CString> {
    match components(name)?.as_slice() {
        [_] => cstr(name.as_bytes()),
        _ => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("\"{}\" is not a file name", name.escape_default()),
        )),
    }
}

/// The folder `name` in `dir`, made (0700) if missing; a link or a file there is refused,
/// never followed. `new`: it must not exist yet.
pub fn make_dir_in(dir: &OwnedFd, name: &str, new: bool) -> io::Result<OwnedFd> {
    let c = one_name(name)?;
    // SAFETY: mkdirat(2) relative to a descriptor we hold, of a NUL-terminated name.
    if unsafe { libc::mkdirat(dir.as_raw_fd(), c.as_ptr(), 0o700) } < 0 {
        let e = io::Error::last_os_error();
        if new || e.raw_os_error() != Some(libc::EEXIST) {
            return Err(e);
        }
    }
    openat_dir(dir.as_raw_fd(), name)
}

/// The folder `rel` (e.g. `b1/data`) under `dir`, every folder on the way made if missing
/// and opened from its parent's descriptor, never through a link. An empty `rel` is `dir`.
pub fn make_dirs_in(dir: &OwnedFd, rel: &str) -> io::Result<OwnedFd> {
    let mut cur = dir.try_clone()?;
    if rel.is_empty() {
        return Ok(cur);
    }
    for part in components(rel)? {
        cur = make_dir_in(&cur, part, false)?;
    }
    Ok(cur)
}

/// Whether `name` exists in `dir` (as anything: a link counts, and is not followed).
pub fn exists_in(dir: &OwnedFd, name: &str) -> io::Result<bool> {
    let c = one_name(name)?;
    // SAFETY: fstatat(2) into a zeroed stat, relative to a descriptor we hold, without
    // following a link.
    let r = unsafe {
        let mut st: libc::stat = std::mem::zeroed();
        libc::fstatat(
            dir.as_raw_fd(),
            c.as_ptr(),
            &mut st,
            libc::AT_SYMLINK_NOFOLLOW,
        )
    };
    if r == 0 {
        return Ok(true);
    }
    let e = io::Error::last_os_error();
    if e.kind() == io::ErrorKind::NotFound {
        Ok(false)
    } else {
        Err(e)
    }
}

/// Whether the entry `name` of `dir` is the file or folder `fd` has open (a link or
/// anything else put in its place is not).
pub fn is_entry(dir: &OwnedFd, name: &str, fd: &OwnedFd) -> io::Result<bool> {
    let c = one_name(name)?;
    // SAFETY: fstatat(2) and fstat(2) into zeroed stats, of descriptors we hold, without
    // following a link.
    unsafe {
        let mut a: libc::stat = std::mem::zeroed();
        let mut b: libc::stat = std::mem::zeroed();
        if libc::fstatat(
            dir.as_raw_fd(),
            c.as_ptr(),
            &mut a,
            libc::AT_SYMLINK_NOFOLLOW,
        ) < 0
        {
            let e = io::Error::last_os_error();
            return if e.kind() == io::ErrorKind::NotFound {
                Ok(false)
            } else {
                Err(e)
            };
        }
        if libc::fstat(fd.as_raw_fd(), &mut b) < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(a.st_dev == b.st_dev && a.st_ino == b.st_ino)
    }
}

/// Create the file `name` in `dir` for writing: new (O_EXCL), never through a link, `mode`.
pub fn create_in(dir: &OwnedFd, name: &str, mode: libc::mode_t) -> io::Result<File> {
    let c = one_name(name)?;
    // SAFETY: openat(2) relative to a descriptor we hold; the descriptor is owned below.
    let fd = unsafe {
        libc::openat(
            dir.as_raw_fd(),
            c.as_ptr(),
            libc::O_WRONLY
                | libc::O_CREAT
                | libc::O_EXCL
                | libc::O_NOFOLLOW
                | libc::O_NOCTTY
                | libc::O_CLOEXEC,
            mode as libc::c_uint,
        )
    };
    if fd < 0 {
        return Err(last_os_error_for(name, false));
    }
    // SAFETY: fd is a fresh descriptor nobody else owns; File closes it.
    Ok(unsafe { File::from_raw_fd(fd) })
}

/// Create the file `rel` (e.g. `data/00001.copy`) under the folder `dir`, whose folders
/// exist: each opened without following a link.
pub fn create_file_in(dir: &OwnedFd, rel: &str, mode: libc::mode_t) -> io::Result<File> {
    let (parent, name) = parent_of(dir, rel)?;
    create_in(parent.as_ref().unwrap_or(dir), name, mode)
}

/// Remove the entry `name` of `dir` that is not a folder (a link is removed itself).
/// A missing entry is NotFound.
pub fn unlink_in(dir: &OwnedFd, name: &str) -> io::Result<()> {
    let c = one_name(name)?;
    // SAFETY: unlinkat(2) relative to a descriptor we hold.
    if unsafe { libc::unlinkat(dir.as_raw_fd(), c.as_ptr(), 0) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Rename `from` to `to`, both in `from_dir` / `to_dir` (a file or folder there, replaced
/// as rename(2) replaces it).
pub fn rename_in(from_dir: &OwnedFd, from: &str, to_dir: &OwnedFd, to: &str) -> io::Result<()> {
    let (a, b) = (one_name(from)?, one_name(to)?);
    // SAFETY: renameat(2) relative to descriptors we hold, of NUL-terminated names.
    if unsafe {
        libc::renameat(
            from_dir.as_raw_fd(),
            a.as_ptr(),
            to_dir.as_raw_fd(),
            b.as_ptr(),
        )
    } < 0
    {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// fsync(2) of the folder (or file) behind `fd`.
pub fn fsync_fd(fd: &OwnedFd) -> io::Result<()> {
    // SAFETY: fsync(2) of a descriptor we hold.
    if unsafe { libc::fsync(fd.as_raw_fd()) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Remove `name` in `dir` and everything under it; a link (anywhere in the tree) is removed
/// itself, never followed. A missing entry is not an error.
pub fn remove_tree_in(dir: &OwnedFd, name: &str) -> io::Result<()> {
    remove_entry(dir.as_raw_fd(), &one_name(name)?)
}

fn remove_entry(dir: RawFd, name: &std::ffi::CStr) -> io::Result<()> {
    // A file, a link, a pipe: the entry goes.
    // SAFETY: unlinkat(2) relative to a descriptor we hold.
    if unsafe { libc::unlinkat(dir, name.as_ptr(), 0) } == 0 {
        return Ok(());
    }
    let e = io::Error::last_os_error();
    match e.raw_os_error() {
        Some(libc::ENOENT) => return Ok(()),
        // A folder (Linux says EISDIR, POSIX allows EPERM).
        Some(libc::EISDIR) | Some(libc::EPERM) => {}
        _ => return Err(e),
    }
    // SAFETY: openat(2) relative to a descriptor we hold; O_NOFOLLOW: a folder swapped for a
    // link meanwhile is not entered.
    let fd = unsafe {
        libc::openat(
            dir,
            name.as_ptr(),
            libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        let e = io::Error::last_os_error();
        return match e.raw_os_error() {
            Some(libc::ENOENT) => Ok(()),
            // Swapped for a link or a file meanwhile: that entry goes, unfollowed.
            Some(libc::ELOOP) | Some(libc::ENOTDIR) => {
                // SAFETY: unlinkat(2) relative to a descriptor we hold.
                if unsafe { libc::unlinkat(dir, name.as_ptr(), 0) } == 0 {
                    Ok(())
                } else {
                    Err(io::Error::last_os_error())
                }
            }
            _ => Err(e),
        };
    }
    // SAFETY: fd is a fresh descriptor nobody else owns.
    let sub = unsafe { OwnedFd::from_raw_fd(fd) };
    for n in read_raw_names(sub.as_raw_fd())? {
        remove_entry(sub.as_raw_fd(), &n)?;
    }
    drop(sub);
    // SAFETY: unlinkat(2) of a folder relative to a descriptor we hold.
    if unsafe { libc::unlinkat(dir, name.as_ptr(), libc::AT_REMOVEDIR) } < 0 {
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::NotFound {
            return Err(e);
        }
    }
    Ok(())
}

/// Every regular file under the folder `dir` fsynced, then each folder (never through a
/// link); returns the number of entries found.
pub fn fsync_tree_in(dir: &OwnedFd) -> io::Result<usize> {
    let mut n = 0;
    for name in read_raw_names(dir.as_raw_fd())? {
        // SAFETY: fstatat(2) into a zeroed stat, relative to a descriptor we hold, without
        // following a link.
        let mode = unsafe {
            let mut st: libc::stat = std::mem::zeroed();
            if libc::fstatat(
                dir.as_raw_fd(),
                name.as_ptr(),
                &mut st,
                libc::AT_SYMLINK_NOFOLLOW,
            ) < 0
            {
                continue;
            }
            st.st_mode & libc::S_IFMT
        };
        let flags = match mode {
            libc::S_IFDIR => libc::O_RDONLY | libc::O_DIRECTORY,
            libc::S_IFREG => libc::O_RDONLY | libc::O_NONBLOCK | libc::O_NOCTTY,
            _ => {
                n += 1;
                continue;
            }
        };
        // SAFETY: openat(2) relative to a descriptor we hold, never through a link.
        let fd = unsafe {
            libc::openat(
                dir.as_raw_fd(),
                name.as_ptr(),
                flags | libc::O_NOFOLLOW | libc::O_CLOEXEC,
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: fd is a fresh descriptor nobody else owns.
        let sub = unsafe { OwnedFd::from_raw_fd(fd) };
        if mode == libc::S_IFDIR {
            n += fsync_tree_in(&sub)?;
        } else {
            fsync_fd(&sub)?;
            n += 1;
        }
    }
    fsync_fd(dir)?;
    Ok(n)
}

/// Entries under the folder `dir`, recursively, never through a link.
pub fn count_in(dir: &OwnedFd) -> io::Result<usize> {
    let mut n = 0;
    walk_count(dir.as_raw_fd(), &mut n)?;
    Ok(n)
}

fn walk_count(dir: RawFd, n: &mut usize) -> io::Result<()> {
    for name in read_raw_names(dir)? {
        // SAFETY: openat(2) relative to a descriptor we hold; fails on anything but a folder.
        let fd = unsafe {
            libc::openat(
                dir,
                name.as_ptr(),
                libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC,
            )
        };
        if fd < 0 {
            *n += 1;
            continue;
        }
        // SAFETY: fd is a fresh descriptor nobody else owns.
        let sub = unsafe { OwnedFd::from_raw_fd(fd) };
        walk_count(sub.as_raw_fd(), n)?;
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

    /// Issue 20, F3: the write primitives act in the folder first opened, whatever the
    /// path says later, and never make, create or remove anything through a link.
    #[test]
    fn writes_stay_in_the_folder_opened_whatever_the_paths_become() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path().join("root");
        let victim = t.path().join("victim");
        std::fs::create_dir_all(&root).unwrap();
        std::fs::create_dir_all(victim.join("data")).unwrap();
        let fd = open_dir(&root).unwrap();
        let data = make_dirs_in(&fd, "b1/data").unwrap();
        // The folder swapped for a link to the victim after it was opened.
        std::fs::rename(root.join("b1/data"), root.join("b1/was")).unwrap();
        symlink(victim.join("data"), root.join("b1/data")).unwrap();
        let mut f = create_in(&data, ".1.copy.partial", 0o600).unwrap();
        std::io::Write::write_all(&mut f, b"x").unwrap();
        drop(f);
        rename_in(&data, ".1.copy.partial", &data, "1.copy").unwrap();
        fsync_fd(&data).unwrap();
        assert_eq!(std::fs::read_dir(victim.join("data")).unwrap().count(), 0);
        assert_eq!(std::fs::read(root.join("b1/was/1.copy")).unwrap(), b"x");
        // Made again through the path: the link is refused, not followed.
        let e = make_dirs_in(&fd, "b1/data").unwrap_err();
        assert!(e.to_string().contains("a link?"), "{e}");
        symlink(&victim, root.join("b2")).unwrap();
        assert!(make_dirs_in(&fd, "b2/data").is_err());
        assert!(create_file_in(&fd, "b2/data/1.copy", 0o600).is_err());
        assert!(make_dir_in(&fd, "b2", false).is_err());
        // A file to create that is a link: refused, the victim untouched.
        std::fs::write(victim.join("secret"), b"keep").unwrap();
        symlink(victim.join("secret"), root.join("b1/was/2.copy")).unwrap();
        let was = open_dir(&root.join("b1/was")).unwrap();
        assert!(create_in(&was, "2.copy", 0o600).is_err());
        // Removal: links inside the tree and the tree's root as a link go themselves.
        symlink(&victim, root.join("b1/was/sub")).unwrap();
        remove_tree_in(&fd, "b2").unwrap();
        remove_tree_in(&fd, "b1").unwrap();
        assert!(!root.join("b1").exists() && !root.join("b2").exists());
        assert_eq!(std::fs::read(victim.join("secret")).unwrap(), b"keep");
        assert!(victim.join("data").is_dir());
        remove_tree_in(&fd, "none").unwrap();
        assert!(!exists_in(&fd, "b1").unwrap());
        // Names are single names.
        assert!(create_in(&fd, "../x", 0o600).is_err());
        assert!(unlink_in(&fd, "a/b").is_err());
    }
}
