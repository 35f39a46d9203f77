//! Flagger's compatibility corpus: the manifests of `<root>/valid` and `<root>/invalid`, where the
//! root is `$VEER_COMPAT_DIR`, or `../shared/compat/flagger` beside the repository when it is unset.
//! File names are `<Kind>--<source>-<n>.yaml` (see the corpus's README).
//!
//! The offline corpus tests include this file alone (`#[path = "common/corpus.rs"] mod corpus;`),
//! without the rest of `common`; the e2e tests reach it as `common::corpus`.

// Each test binary uses a different subset of it.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde_json::Value;

/// The environment variable that points at another copy of the corpus.
pub const ENV: &str = "VEER_COMPAT_DIR";

/// Where the corpus is when `VEER_COMPAT_DIR` is unset: `../shared/compat/flagger` beside the
/// repository.
pub fn default_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join("shared").join("compat").join("flagger")
}

/// The corpus directory `which` (`"valid"` or `"invalid"`); panics, naming `VEER_COMPAT_DIR` and the
/// default path, when it is not a directory.
pub fn dir(which: &str) -> PathBuf {
    let (root, from) = match std::env::var_os(ENV) {
        Some(v) if !v.is_empty() => (PathBuf::from(v), format!("from {ENV}")),
        _ => (default_root(), format!("the default, {ENV} is unset")),
    };
    let dir = root.join(which);
    assert!(
        dir.is_dir(),
        "the Flagger compatibility corpus is missing: {} is not a directory ({from}). The corpus tests \
         read it from ${ENV}, or from {} when that is unset: put the shared directory beside the \
         checkout, or set {ENV}=/path/to/compat/flagger (the directory holding valid/ and invalid/).",
        dir.display(),
        default_root().display(),
    );
    dir
}

/// Every YAML document of every `.yaml`/`.yml` file of the corpus directory `which`, sorted by file
/// name, each with its file name (`<file>#<i>` when a file holds several documents).
pub fn documents(which: &str) -> Vec<(String, Value)> {
    let dir = dir(which);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
        .map(|entry| entry.expect("a directory entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml" || e == "yml"))
        .collect();
    files.sort();
    let mut docs = Vec::new();
    for path in files {
        let name = path.file_name().expect("a file name").to_string_lossy().into_owned();
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {name}: {e}"));
        let parsed: Vec<Value> =
            serde_saphyr::from_multiple(&text).unwrap_or_else(|e| panic!("{name} is not YAML: {e}"));
        assert!(!parsed.is_empty(), "{name} has no YAML document");
        let many = parsed.len() > 1;
        for (i, doc) in parsed.into_iter().enumerate() {
            docs.push((if many { format!("{name}#{i}") } else { name.clone() }, doc));
        }
    }
    assert!(!docs.is_empty(), "no manifests in {}", dir.display());
    docs
}

/// The documents of kind `kind` (files named `<kind>--…`) of the corpus directory `which`, decoded.
pub fn of_kind<T: DeserializeOwned>(which: &str, kind: &str) -> Vec<(String, T)> {
    let prefix = format!("{kind}--");
    documents(which)
        .into_iter()
        .filter(|(name, _)| name.starts_with(&prefix))
        .map(|(name, doc)| {
            assert_eq!(doc["kind"].as_str(), Some(kind), "{name}: the kind its name says");
            let decoded =
                serde_json::from_value(doc).unwrap_or_else(|e| panic!("{name} is not a {kind}: {e}"));
            (name, decoded)
        })
        .collect()
}
