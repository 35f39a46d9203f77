//! Gate state in a local JSON file, replaced atomically (write a temporary file beside it,
//! fsync, rename, fsync the directory) so a crash leaves either the old or the new state, never
//! half of one. One load tester process owns the file.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};
use tokio::io::AsyncWriteExt;
use tokio::sync::Mutex;

use super::{GateStore, GateStoreError};

#[derive(Debug, Default, Serialize, Deserialize)]
struct FileState {
    /// Keys of the open gates and rollback switches.
    open: BTreeSet<String>,
}

/// A [`GateStore`] backed by a JSON file: `{"open": ["podinfo.test", ...]}`.
#[derive(Debug)]
pub struct FileGateStore {
    path: PathBuf,
    /// The file's content; the lock also serialises writers.
    state: Mutex<BTreeSet<String>>,
}

impl FileGateStore {
    /// Loads `path` (a missing file is an empty store) and writes it back at once, so that an
    /// unwritable location fails at startup rather than at the first `/gate/open`.
    pub async fn open(path: impl Into<PathBuf>) -> Result<Self, GateStoreError> {
        let path = path.into();
        let open = match tokio::fs::read(&path).await {
            Ok(bytes) => {
                let state: FileState = serde_json::from_slice(&bytes).map_err(|source| {
                    GateStoreError::FileCorrupt { path: path.display().to_string(), source }
                })?;
                state.open
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeSet::new(),
            Err(source) => return Err(io_err(&path, "reading", source)),
        };
        write_atomically(&path, &open).await?;
        Ok(Self { path, state: Mutex::new(open) })
    }

    /// The file this store writes.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

fn io_err(path: &Path, action: &'static str, source: std::io::Error) -> GateStoreError {
    GateStoreError::FileIo { path: path.display().to_string(), action, source }
}

async fn write_atomically(path: &Path, open: &BTreeSet<String>) -> Result<(), GateStoreError> {
    let mut json = serde_json::to_vec_pretty(&FileState { open: open.clone() })
        .expect("a set of strings always serialises");
    json.push(b'\n');
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let file_name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = dir.join(format!(".{file_name}.tmp-{}", std::process::id()));
    let mut f = tokio::fs::File::create(&tmp).await.map_err(|e| io_err(&tmp, "creating", e))?;
    f.write_all(&json).await.map_err(|e| io_err(&tmp, "writing", e))?;
    f.sync_all().await.map_err(|e| io_err(&tmp, "syncing", e))?;
    drop(f);
    if let Err(e) = tokio::fs::rename(&tmp, path).await {
        let _ = tokio::fs::remove_file(&tmp).await;
        return Err(io_err(path, "replacing", e));
    }
    // The rename is durable only once the directory entry is on disk.
    let d = tokio::fs::File::open(&dir).await.map_err(|e| io_err(&dir, "opening directory", e))?;
    d.sync_all().await.map_err(|e| io_err(&dir, "syncing directory", e))?;
    Ok(())
}

impl GateStore for FileGateStore {
    fn is_open<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<bool, GateStoreError>> {
        Box::pin(async move { Ok(self.state.lock().await.contains(key)) })
    }

    fn set<'a>(&'a self, key: &'a str, open: bool) -> BoxFuture<'a, Result<(), GateStoreError>> {
        Box::pin(async move {
            let mut state = self.state.lock().await;
            if state.contains(key) == open {
                return Ok(());
            }
            let mut next = state.clone();
            if open {
                next.insert(key.to_owned());
            } else {
                next.remove(key);
            }
            // Memory changes only after the file did, so what is served is always what is stored.
            write_atomically(&self.path, &next).await?;
            *state = next;
            Ok(())
        })
    }

    fn open_keys(&self) -> BoxFuture<'_, Result<BTreeSet<String>, GateStoreError>> {
        Box::pin(async move { Ok(self.state.lock().await.clone()) })
    }

    fn describe(&self) -> String {
        format!("file {}", self.path.display())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::loadtester::gates::tests::store_contract;

    #[tokio::test]
    async fn file_store_contract() {
        let dir = tempfile::tempdir().unwrap();
        store_contract(&FileGateStore::open(dir.path().join("gates.json")).await.unwrap()).await;
    }

    #[tokio::test]
    async fn state_survives_reopening_and_no_temporary_files_remain() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("gates.json");
        let store = FileGateStore::open(&path).await.unwrap();
        store.set("podinfo.test", true).await.unwrap();
        store.set("rollback.other.prod", true).await.unwrap();
        store.set("rollback.other.prod", false).await.unwrap();
        drop(store);
        let reopened = FileGateStore::open(&path).await.unwrap();
        assert!(reopened.is_open("podinfo.test").await.unwrap());
        assert!(!reopened.is_open("rollback.other.prod").await.unwrap());
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names, ["gates.json"]);
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&text).unwrap(),
            serde_json::json!({"open": ["podinfo.test"]})
        );
    }

    #[tokio::test]
    async fn a_corrupt_file_is_an_error_not_an_empty_store() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("gates.json");
        std::fs::write(&path, "{not json").unwrap();
        let e = FileGateStore::open(&path).await.unwrap_err();
        assert!(matches!(e, GateStoreError::FileCorrupt { .. }), "{e}");
        assert!(e.to_string().contains("fix it or move it away"), "{e}");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "{not json", "the file must be left alone");
    }

    #[tokio::test]
    async fn an_unwritable_location_fails_at_open() {
        let dir = tempfile::tempdir().unwrap();
        let e = FileGateStore::open(dir.path().join("missing-dir/gates.json")).await.unwrap_err();
        assert!(matches!(e, GateStoreError::FileIo { .. }), "{e}");
        assert!(e.to_string().contains("writable"), "{e}");
    }
}
