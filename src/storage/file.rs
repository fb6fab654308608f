//! `file:///path`: a second disk or a mounted NAS. Objects are files under the root; each is
//! written under a temporary name, fsynced and renamed, so a reader never sees half a file.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
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

struct FileWriter {
    tmp: PathBuf,
    dest: PathBuf,
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
            .map_err(|e| io_err("write", &self.tmp, e))
    }

    fn finish(mut self: Box<Self>) -> StoreResult<()> {
        let f = self.file.take().expect("open until finish");
        f.sync_all().map_err(|e| io_err("fsync", &self.tmp, e))?;
        drop(f);
        fs::rename(&self.tmp, &self.dest).map_err(|e| io_err("rename", &self.tmp, e))?;
        if let Some(parent) = self.dest.parent() {
            File::open(parent)
                .and_then(|d| d.sync_all())
                .map_err(|e| io_err("fsync directory", parent, e))?;
        }
        Ok(())
    }
}

impl Drop for FileWriter {
    fn drop(&mut self) {
        if self.file.take().is_some() {
            let _ = fs::remove_file(&self.tmp);
        }
    }
}

impl Store for FileStore {
    fn url(&self) -> String {
        format!("file://{}/", self.root.display())
    }

    fn create(&self, key: &str, cancel: Arc<AtomicBool>) -> StoreResult<Box<dyn ObjectWriter>> {
        let dest = self.path(key);
        let parent = dest.parent().expect("keys have a folder").to_path_buf();
        if !self.root.is_dir() {
            return Err(StoreError::new(
                Failure::NoBucket,
                format!("folder \"{}\" does not exist", self.root.display()),
            ));
        }
        // Whoever can write the target's folder could have put a link where a folder of the
        // archive goes: the folders below the root are made one at a time, and nothing is
        // made or written through a link (issue 17).
        let mut below = self.root.clone();
        for part in parent
            .strip_prefix(&self.root)
            .unwrap_or(Path::new(""))
            .components()
        {
            below.push(part);
            match fs::DirBuilder::new().mode(0o700).create(&below) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(io_err("create directory", &below, e)),
            }
            let meta = fs::symlink_metadata(&below).map_err(|e| io_err("inspect", &below, e))?;
            if !meta.is_dir() {
                return Err(StoreError::new(
                    Failure::Other,
                    format!("\"{}\" is not a folder (a link?): refused", below.display()),
                ));
            }
        }
        let name = dest
            .file_name()
            .expect("keys name a file")
            .to_string_lossy();
        let tmp = parent.join(format!(".{name}.partial"));
        // A leftover (or planted) partial file goes first; a link is removed itself. The file
        // is then created new, never opened through a link.
        match fs::remove_file(&tmp) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(io_err("remove", &tmp, e))
            }
            _ => {}
        }
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .custom_flags(libc::O_NOFOLLOW)
            .mode(0o600)
            .open(&tmp)
            .map_err(|e| io_err("create file", &tmp, e))?;
        Ok(Box::new(FileWriter {
            tmp,
            dest,
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
