//! First start: the admin API key and a gateway token, each written to a
//! 0600 file in the data dir (only hashes are stored).

use std::fs;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use crate::store::{Store, StoreError};

/// Creates what is missing; returns the files it wrote.
pub fn ensure_key_files(store: &Store, data_dir: &Path) -> Result<Vec<PathBuf>, StoreError> {
    let mut written = Vec::new();
    // A missing file means a new key: also after a crash between storing a
    // key's hash and writing the file, which would otherwise lock the admin out.
    let key_file = data_dir.join("api-key");
    if store.api_key_count()? == 0 || !key_file.exists() {
        let (_, key) = store.create_api_key("admin", None)?;
        written.push(write_private(&key_file, &key)?);
    }
    let token_file = data_dir.join("gateway-token");
    if !token_file.exists() {
        let token = store.create_gateway_token("gateway")?;
        written.push(write_private(&token_file, &token)?);
    }
    Ok(written)
}

fn write_private(path: &Path, value: &str) -> Result<PathBuf, StoreError> {
    let fail = |e: std::io::Error| StoreError::Db(format!("{}: {e}", path.display()));
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(fail)?;
    file.write_all(format!("{value}\n").as_bytes())
        .map_err(fail)?;
    file.sync_all().map_err(fail)?;
    Ok(path.to_owned())
}
