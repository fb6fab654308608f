//! `file:///path`: a second disk or a mounted NAS. Objects are files under the root; each is
//! written under a temporary name, fsynced and renamed, so a reader never sees half a file.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use super::store::{Failure, Object, ObjectWriter, Store, StoreError, StoreResult};
use crate::archive::open;

pub struct FileStore {
    pub root: PathBuf,
}

fn io_err(what: &str, path: &Path, e: std::io::Error) -> StoreError {
    let failure = match e.kind() {
        std::io::ErrorKind::NotFound => Failure::NotFound,
        std::io::ErrorKind::PermissionDenied => Failure::Denied,
        _ => Failure::Other,
    };
    StoreError::new(
        failure,
        format!("could not {what} \"{}\": {e}", path.display()),
    )
}

impl FileStore {
    fn path(&self, key: &str) -> PathBuf {
        self.root.join(key)
    }

    /// The root folder, or NoBucket.
    fn open_root(&self) -> StoreResult<std::os::fd::OwnedFd> {
        open::open_root(&self.root).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                StoreError::new(
                    Failure::NoBucket,
                    format!("folder \"{}\" does not exist", self.root.display()),
                )
            } else {
                io_err("open", &self.root, e)
            }
        })
    }
}

/// A file being written: created in its folder's descriptor, renamed and fsynced there, so
/// that a folder swapped for a link meanwhile changes nothing (issue 20, F3).
struct FileWriter {
    /// The folder the object goes into, opened without following a link.
    dir: OwnedFd,
    /// `.<name>.partial` and `<name>` in `dir`.
    tmp: String,
    name: String,
    /// The temporary file's path, for messages.
    shown: PathBuf,
    file: Option<File>,
    cancel: Arc<AtomicBool>,
}

impl ObjectWriter for FileWriter {
    fn write_all(&mut self, buf: &[u8]) -> StoreResult<()> {
        if self.cancel.load(Ordering::Relaxed) {
            return Err(StoreError::new(Failure::Cancelled, "cancelled"));
        }
        self.file
            .as_mut()
            .expect("open until finish")
            .write_all(buf)
            .map_err(|e| io_err("write", &self.shown, e))
    }

    fn finish(mut self: Box<Self>) -> StoreResult<()> {
        let f = self.file.take().expect("open until finish");
        f.sync_all().map_err(|e| io_err("fsync", &self.shown, e))?;
        drop(f);
        open::rename_in(&self.dir, &self.tmp, &self.dir, &self.name)
            .map_err(|e| io_err("rename", &self.shown, e))?;
        let parent = self.shown.parent().unwrap_or(Path::new("/"));
        open::fsync_fd(&self.dir).map_err(|e| io_err("fsync directory", parent, e))?;
        Ok(())
    }
}

impl Drop for FileWriter {
    fn drop(&mut self) {
        if self.file.take().is_some() {
            let _ = open::unlink_in(&self.dir, &self.tmp);
        }
    }
}

impl Store for FileStore {
    fn url(&self) -> String {
        format!("file://{}/", self.root.display())
    }

    fn create(&self, key: &str, cancel: Arc<AtomicBool>) -> StoreResult<Box<dyn ObjectWriter>> {
        let dest = self.path(key);
        let root = self.open_root()?;
        let (folders, name) = key.rsplit_once('/').unwrap_or(("", key));
        // Whoever can write the target's folder could put a link where a folder of the
        // archive goes, before or while it is written: the folders below the root are made
        // and opened one at a time from their parent's descriptor, never through a link, and
        // everything after (create, rename, fsync) happens in the folder so opened.
        let parent = dest.parent().unwrap_or(&self.root).to_path_buf();
        let dir = open::make_dirs_in(&root, folders).map_err(|e| {
            if open::is_not_a_file(&e) {
                StoreError::new(
                    Failure::Other,
                    format!("could not create directory \"{}\": {e}", parent.display()),
                )
            } else {
                io_err("create directory", &parent, e)
            }
        })?;
        let tmp = format!(".{name}.partial");
        let shown = parent.join(&tmp);
        // A leftover (or planted) partial file goes first; a link is removed itself. The file
        // is then created new, never opened through a link.
        match open::unlink_in(&dir, &tmp) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(io_err("remove", &shown, e))
            }
            _ => {}
        }
        let file =
            open::create_in(&dir, &tmp, 0o600).map_err(|e| io_err("create file", &shown, e))?;
        Ok(Box::new(FileWriter {
            dir,
            tmp,
            name: name.to_string(),
            shown,
            file: Some(file),
            cancel,
        }))
    }

    /// Whoever can write the target's folder can put a link or a pipe where an archive file
    /// should be: nothing under the root is followed, and only a regular file is opened.
    fn get(&self, key: &str) -> StoreResult<Box<dyn Read + Send>> {
        let p = self.path(key);
        let root = self.open_root()?;
        Ok(Box::new(
            open::open_in(&root, key).map_err(|e| io_err("open", &p, e))?,
        ))
    }

    fn list(&self, prefix: &str) -> StoreResult<Vec<Object>> {
        let root = self.open_root()?;
        // Links and other non-files are listed (what reads them then refuses them), never
        // followed; names starting with a dot are files being written.
        let mut out: Vec<Object> = open::list(&root)
            .map_err(|e| io_err("list", &self.root, e))?
            .into_iter()
            .filter(|e| {
                e.rel.starts_with(prefix)
                    && !e.rel.rsplit('/').next().unwrap_or("").starts_with('.')
            })
            .map(|e| Object {
                key: e.rel,
                size: e.size,
            })
            .collect();
        out.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(out)
    }

    /// Removes the object (a link in its place is removed itself, never what it points to),
    /// then the folders left empty; nothing outside the root is ever touched.
    fn delete(&self, key: &str) -> StoreResult<()> {
        let root = self.open_root()?;
        open::remove_in(&root, key).map_err(|e| io_err("remove", &self.path(key), e))
    }

    fn check(&self) -> StoreResult<()> {
        if !self.root.is_dir() {
            return Err(StoreError::new(
                Failure::NoBucket,
                format!("folder \"{}\" does not exist", self.root.display()),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_planted_link_is_never_written_through() {
        let dir = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        let victim = outside.path().join("victim");
        std::fs::write(&victim, b"precious").unwrap();
        let store = FileStore {
            root: dir.path().to_path_buf(),
        };
        let cancel = Arc::new(AtomicBool::new(false));
        // A link where the partial file goes: removed, the victim untouched.
        std::fs::create_dir_all(dir.path().join("b1")).unwrap();
        std::os::unix::fs::symlink(&victim, dir.path().join("b1/.manifest.json.partial")).unwrap();
        let mut w = store.create("b1/manifest.json", cancel.clone()).unwrap();
        w.write_all(b"x").unwrap();
        w.finish().unwrap();
        assert_eq!(std::fs::read(&victim).unwrap(), b"precious");
        assert_eq!(store.read_all("b1/manifest.json").unwrap(), b"x");
        // A link where a folder of the archive goes: refused.
        std::os::unix::fs::symlink(outside.path(), dir.path().join("b2")).unwrap();
        assert!(store.create("b2/data/00001.copy", cancel).is_err());
        assert_eq!(std::fs::read_dir(outside.path()).unwrap().count(), 1);
    }

    /// Issue 20, F3: the folders of an object swapped for links after `create` opened them
    /// (what a writer of the target's folder races to do): the write, the rename and the
    /// fsync still happen in the folders first made, and nothing appears where the links
    /// point. Then links planted before: refused, nothing made through them.
    #[test]
    fn folders_swapped_for_links_while_writing_change_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::fs::create_dir(outside.path().join("data")).unwrap();
        let store = FileStore {
            root: dir.path().to_path_buf(),
        };
        let cancel = Arc::new(AtomicBool::new(false));
        let mut w = store.create("b1/data/00001.copy", cancel.clone()).unwrap();
        w.write_all(b"rows").unwrap();
        // data/ moved away and a link to the outside folder put in its place.
        std::fs::rename(dir.path().join("b1/data"), dir.path().join("b1/moved")).unwrap();
        std::os::unix::fs::symlink(outside.path().join("data"), dir.path().join("b1/data"))
            .unwrap();
        w.write_all(b"!").unwrap();
        w.finish().unwrap();
        assert_eq!(
            std::fs::read_dir(outside.path().join("data"))
                .unwrap()
                .count(),
            0,
            "nothing written through the link"
        );
        assert_eq!(
            std::fs::read(dir.path().join("b1/moved/00001.copy")).unwrap(),
            b"rows!"
        );
        // The archive's folder itself swapped for a link to the outside, whose data/ is a
        // real folder: the next file goes nowhere but is refused.
        let mut w = store.create("b2/data/00001.copy", cancel.clone()).unwrap();
        std::fs::rename(dir.path().join("b2"), dir.path().join("b2-moved")).unwrap();
        std::os::unix::fs::symlink(outside.path(), dir.path().join("b2")).unwrap();
        w.write_all(b"x").unwrap();
        w.finish().unwrap();
        assert!(store.create("b2/data/00002.copy", cancel.clone()).is_err());
        assert!(store.create("b2/manifest.json", cancel.clone()).is_err());
        assert_eq!(
            std::fs::read_dir(outside.path().join("data"))
                .unwrap()
                .count(),
            0
        );
        assert_eq!(std::fs::read_dir(outside.path()).unwrap().count(), 1);
        assert_eq!(
            std::fs::read(dir.path().join("b2-moved/data/00001.copy")).unwrap(),
            b"x"
        );
        // An abandoned writer removes its partial file from its own folder, not through a
        // link now in that folder's place.
        let w = store.create("b3/data/00001.copy", cancel).unwrap();
        std::fs::rename(dir.path().join("b3/data"), dir.path().join("b3/moved")).unwrap();
        std::fs::write(outside.path().join("data/.00001.copy.partial"), b"keep").unwrap();
        std::os::unix::fs::symlink(outside.path().join("data"), dir.path().join("b3/data"))
            .unwrap();
        drop(w);
        assert_eq!(
            std::fs::read(outside.path().join("data/.00001.copy.partial")).unwrap(),
            b"keep"
        );
        assert_eq!(
            std::fs::read_dir(dir.path().join("b3/moved"))
                .unwrap()
                .count(),
            0
        );
    }

    #[test]
    fn objects_appear_only_when_finished() {
        let dir = tempfile::tempdir().unwrap();
        let store = FileStore {
            root: dir.path().to_path_buf(),
        };
        let cancel = Arc::new(AtomicBool::new(false));
        let mut w = store.create("b1/data/00001.copy", cancel.clone()).unwrap();
        w.write_all(b"hello").unwrap();
        assert!(store.list("b1/").unwrap().is_empty());
        w.finish().unwrap();
        let mut w2 = store.create("b1/manifest.json", cancel).unwrap();
        w2.write_all(b"x").unwrap();
        drop(w2);
        assert_eq!(
            store.list("b1/").unwrap(),
            vec![Object {
                key: "b1/data/00001.copy".into(),
                size: 5
            }]
        );
        assert_eq!(store.read_all("b1/data/00001.copy").unwrap(), b"hello");
        store.delete("b1/data/00001.copy").unwrap();
        assert!(!dir.path().join("b1").exists());
        let missing = FileStore {
            root: dir.path().join("nope"),
        };
        assert_eq!(missing.check().unwrap_err().failure, Failure::NoBucket);
    }
}
