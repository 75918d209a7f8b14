//! What the ACME client keeps under `tls.acme.storage_dir`:
//!
//! - `account-HASH.json`: the account (its id and private key) at the CA
//!   whose directory URL hashes to HASH, so that switching CAs (staging →
//!   production) never presents one CA's account to another;
//! - `certificate.pem`: the certificate chain (leaf first) and its private
//!   key in one file, so that chain and key are replaced together.
//!
//! Every file is written atomically (a temporary file in the same directory,
//! mode 0600 from its creation, synced, then renamed over the old one) and
//! the directory is created with mode 0700: a crash leaves the old file or
//! the new one, never half of either, and no other user can read a key.

use crate::tls::pem::{self, LoadedPair};
use sha2::{Digest, Sha256};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// The stored certificate's file name.
pub const CERTIFICATE: &str = "certificate.pem";

/// Why the storage directory cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("cannot create {}: {source}", path.display())]
    Create {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{} is not writable: {source}", path.display())]
    NotWritable {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write {}: {source}", path.display())]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// The storage directory, created and checked writable.
#[derive(Debug, Clone)]
pub struct Storage {
    dir: PathBuf,
}

impl Storage {
    /// Creates `dir` (mode 0700) if missing and checks that files can be
    /// written in it.
    pub fn open(dir: &Path) -> Result<Self, StorageError> {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|source| StorageError::Create {
                path: dir.to_path_buf(),
                source,
            })?;
        let s = Storage {
            dir: dir.to_path_buf(),
        };
        let probe = s.dir.join(".write-test");
        s.write(&probe, b"")
            .and_then(|()| {
                std::fs::remove_file(&probe).map_err(|source| StorageError::Write {
                    path: probe.clone(),
                    source,
                })
            })
            .map_err(|e| match e {
                StorageError::Write { source, .. } => StorageError::NotWritable {
                    path: dir.to_path_buf(),
                    source,
                },
                other => other,
            })?;
        Ok(s)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The stored certificate and key, when there is a readable, matching
    /// pair; what is wrong with it otherwise (`Ok(None)`: none stored yet).
    pub fn load_certificate(&self) -> Result<Option<LoadedPair>, String> {
        let path = self.dir.join(CERTIFICATE);
        let text = match std::fs::read(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
        };
        let certs = pem::parse_certs(&text, &path).map_err(|e| e.to_string())?;
        let key = pem::parse_key(&text, &path).map_err(|e| e.to_string())?;
        pem::pair(certs, key, &path, &path)
            .map(Some)
            .map_err(|e| e.to_string())
    }

    /// Replaces the stored certificate: `chain` (PEM, leaf first) and `key` (PEM).
    pub fn save_certificate(&self, chain: &str, key: &str) -> Result<(), StorageError> {
        let mut text = String::with_capacity(chain.len() + key.len() + 1);
        text.push_str(chain.trim_end());
        text.push('\n');
        text.push_str(key);
        self.write(&self.dir.join(CERTIFICATE), text.as_bytes())
    }

    /// The stored account for `directory_url` (JSON), if any.
    pub fn load_account(&self, directory_url: &str) -> Result<Option<Vec<u8>>, StorageError> {
        let path = self.account_path(directory_url);
        match std::fs::read(&path) {
            Ok(t) => Ok(Some(t)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(StorageError::Read { path, source }),
        }
    }

    pub fn save_account(&self, directory_url: &str, json: &[u8]) -> Result<(), StorageError> {
        self.write(&self.account_path(directory_url), json)
    }

    fn account_path(&self, directory_url: &str) -> PathBuf {
        let hash = Sha256::digest(directory_url.as_bytes());
        let hex: String = hash[..8].iter().map(|b| format!("{b:02x}")).collect();
        self.dir.join(format!("account-{hex}.json"))
    }

    /// Writes `path` atomically, mode 0600.
    fn write(&self, path: &Path, bytes: &[u8]) -> Result<(), StorageError> {
        let err = |source| StorageError::Write {
            path: path.to_path_buf(),
            source,
        };
        let name = path
            .file_name()
            .map_or_else(|| "file".into(), |n| n.to_string_lossy().into_owned());
        let tmp = self.dir.join(format!(".{name}.{}.tmp", std::process::id()));
        let result = (|| {
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&tmp)?;
            f.write_all(bytes)?;
            f.sync_all()?;
            std::fs::rename(&tmp, path)?;
            // The rename itself survives a crash once the directory is synced.
            std::fs::File::open(&self.dir)?.sync_all()
        })();
        if result.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        result.map_err(err)
    }
}

/// For `gateway validate` and every compile: whether `dir` is (or can be
/// created) writable, without creating it.
pub fn check_dir(dir: &Path) -> Result<(), String> {
    let mut at = dir;
    loop {
        match std::fs::metadata(at) {
            Ok(m) if m.is_dir() => break,
            Ok(_) => return Err(format!("{} is not a directory", at.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => match at.parent() {
                Some(p) if !p.as_os_str().is_empty() => at = p,
                _ => {
                    at = Path::new(".");
                    break;
                }
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotADirectory => {
                return Err(format!(
                    "{}: a file is in the way (not a directory)",
                    dir.display()
                ));
            }
            Err(e) => return Err(format!("cannot read {}: {e}", at.display())),
        }
    }
    if writable(at) {
        Ok(())
    } else if at == dir {
        Err(format!(
            "{} is not writable by this user: the ACME account and certificates are stored there",
            dir.display()
        ))
    } else {
        Err(format!(
            "{} does not exist and cannot be created ({} is not writable by this user)",
            dir.display(),
            at.display()
        ))
    }
}

fn writable(dir: &Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let Ok(c) = std::ffi::CString::new(dir.as_os_str().as_bytes()) else {
        return false;
    };
    // SAFETY: `c` is a valid NUL-terminated path for the call's duration.
    unsafe { libc::access(c.as_ptr(), libc::W_OK | libc::X_OK) == 0 }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn mode(p: &Path) -> u32 {
        std::fs::metadata(p).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn a_saved_certificate_loads_back_and_files_are_private() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("acme");
        check_dir(&dir).unwrap();
        let s = Storage::open(&dir).unwrap();
        assert_eq!(mode(&dir), 0o700);
        assert!(s.load_certificate().unwrap().is_none());
        let ck = rcgen::generate_simple_self_signed(vec!["a.test".into()]).unwrap();
        s.save_certificate(&ck.cert.pem(), &ck.signing_key.serialize_pem())
            .unwrap();
        let p = s.load_certificate().unwrap().unwrap();
        assert_eq!(p.info.names, ["a.test"]);
        assert_eq!(mode(&dir.join(CERTIFICATE)), 0o600);
        // Replaced whole, never appended to; no temporary file left.
        let two = rcgen::generate_simple_self_signed(vec!["b.test".into()]).unwrap();
        s.save_certificate(&two.cert.pem(), &two.signing_key.serialize_pem())
            .unwrap();
        assert_eq!(
            s.load_certificate().unwrap().unwrap().info.names,
            ["b.test"]
        );
        let names: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(names, [CERTIFICATE]);
    }

    #[test]
    fn accounts_are_kept_per_directory_url() {
        let root = tempfile::tempdir().unwrap();
        let s = Storage::open(root.path()).unwrap();
        s.save_account("https://a.test/dir", b"{\"a\":1}").unwrap();
        assert_eq!(
            s.load_account("https://a.test/dir").unwrap().unwrap(),
            b"{\"a\":1}"
        );
        assert!(s.load_account("https://b.test/dir").unwrap().is_none());
        let f = std::fs::read_dir(root.path())
            .unwrap()
            .next()
            .unwrap()
            .unwrap();
        assert_eq!(mode(&f.path()), 0o600);
    }

    #[test]
    fn a_broken_stored_certificate_is_an_error_not_a_panic() {
        let root = tempfile::tempdir().unwrap();
        let s = Storage::open(root.path()).unwrap();
        std::fs::write(root.path().join(CERTIFICATE), "junk").unwrap();
        assert!(s.load_certificate().is_err());
    }

    #[test]
    fn an_unwritable_place_is_refused_clearly() {
        if unsafe { libc::geteuid() } == 0 {
            // root may write anywhere; a file in the way still fails.
            let root = tempfile::tempdir().unwrap();
            let f = root.path().join("file");
            std::fs::write(&f, "").unwrap();
            let e = check_dir(&f.join("acme")).unwrap_err();
            assert!(e.contains("not a directory"), "{e}");
            assert!(Storage::open(&f.join("acme")).is_err());
            return;
        }
        let e = check_dir(Path::new("/proc/acme-test")).unwrap_err();
        assert!(e.contains("cannot be created"), "{e}");
    }
}
