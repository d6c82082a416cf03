//! The audit log: one JSON object per line, appended with a single `write` per record to a 0600
//! file opened with `O_APPEND` (SPEC §7).
//!
//! Every request (granted, denied, error), every refused connection and every policy change is
//! recorded. Target names and counts are logged; secret values never are — [`Record`] has no field
//! that could hold one.

use crate::fsutil;
use serde::{Deserialize, Serialize};
use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// Most target names written into one record; the count is always exact.
pub const MAX_LOGGED_TARGETS: usize = 100;

/// One audit record. Optional fields are omitted when empty.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// RFC 3339 timestamp (UTC, milliseconds).
    pub ts: String,
    /// `request`, `connection_refused`, `policy_change`, `daemon`.
    pub event: String,
    /// Who caused it: `daemon`, `cli`, `dashboard`.
    pub source: String,
    /// Caller pid.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<i32>,
    /// Caller uid (on refused connections).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<u32>,
    /// Executable path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// Executable hash.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hash: Option<String>,
    /// The request id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// read, write, delete, search; or for policy changes: approve, register, upgrade, grant,
    /// revoke, unregister, dismiss.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<String>,
    /// Service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    /// exact / prefix.
    #[serde(rename = "match", default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
    /// Target names (requested, or returned by search and prefix operations).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub targets: Vec<String>,
    /// How many targets, exact even when `targets` is shortened.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<usize>,
    /// success / denied / error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    /// Reason code when not success.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Human explanation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Previous hash (upgrade).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub old_hash: Option<String>,
    /// Services granted or revoked for reading (policy changes).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub read: Vec<String>,
    /// Services granted or revoked for writing (policy changes).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub write: Vec<String>,
    /// Search flag granted or revoked (policy changes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub search: Option<bool>,
    /// Injection variables allowed or disallowed by a policy change.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allow_env: Vec<String>,
    /// The caller chain: the caller first, then who launched it (SPEC §10).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub chain: Vec<crate::identity::Link>,
    /// For an interpreter running a script: the script's path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub script: Option<String>,
    /// The script's hash.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub script_hash: Option<String>,
    /// Launch rules added or removed by a policy change.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub via: Vec<String>,
    /// Live approval (SPEC §11): the decision an approver gave (`once`, `time`, `always`,
    /// `deny`, `forget`), or `timeout` / `withdrawn` / `no_answer`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decision: Option<String>,
    /// Who answered (`dashboard`, `dashboard pid N`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub answered_by: Option<String>,
    /// The prompt a record belongs to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt: Option<String>,
}

impl Record {
    /// A record of `event` from `source`, stamped now.
    pub fn new(event: &str, source: &str) -> Record {
        Record {
            ts: now(),
            event: event.into(),
            source: source.into(),
            ..Record::default()
        }
    }

    /// Sets the target names (shortened to [`MAX_LOGGED_TARGETS`]) and their exact count.
    pub fn with_targets<'a>(
        mut self,
        targets: impl ExactSizeIterator<Item = &'a String>,
    ) -> Record {
        self.count = Some(targets.len());
        self.targets = targets.take(MAX_LOGGED_TARGETS).cloned().collect();
        self
    }

    /// The line to append, newline included.
    pub fn to_line(&self) -> Vec<u8> {
        let mut line = serde_json::to_vec(self)
            .unwrap_or_else(|_| br#"{"event":"audit_encoding_failed"}"#.to_vec());
        line.push(b'\n');
        line
    }
}

/// The current time as the log writes it.
pub fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// An open audit log. If the file is removed or rotated away while open, the next append
/// reopens it at its path, so records never go to an unlinked file.
#[derive(Debug)]
pub struct AuditLog {
    path: PathBuf,
    file: std::sync::Mutex<File>,
}

impl AuditLog {
    /// Opens (creating 0600 in a 0700 directory) the log at `path` for appending.
    pub fn open(path: &Path) -> io::Result<AuditLog> {
        Ok(AuditLog {
            path: path.to_path_buf(),
            file: std::sync::Mutex::new(open_append(path)?),
        })
    }

    /// Where it writes.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends one record with a single write. An error means the record is not in the log and
    /// the caller must not grant what it describes.
    pub fn append(&self, record: &Record) -> io::Result<()> {
        use std::os::unix::fs::MetadataExt;
        let line = record.to_line();
        let mut file = self.file.lock().unwrap_or_else(|p| p.into_inner());
        if file.metadata()?.nlink() == 0 {
            *file = open_append(&self.path)?;
        }
        let written = file.write(&line)?;
        if written != line.len() {
            return Err(io::Error::new(
                io::ErrorKind::WriteZero,
                "short write to the audit log",
            ));
        }
        Ok(())
    }
}

/// Opens through [`fsutil::open_state`]: never through a link, never blocking on a FIFO, and only
/// a regular 0600 file of ours.
fn open_append(path: &Path) -> io::Result<File> {
    if let Some(dir) = path.parent() {
        fsutil::ensure_private_dir(dir)?;
    }
    fsutil::open_state(path, fsutil::Access::Append)?
        .ok_or_else(|| io::Error::other("the audit log could not be created"))
}

/// Opens the log at `path`, appends `record` and closes it (for one-shot CLI commands).
pub fn append_once(path: &Path, record: &Record) -> io::Result<()> {
    AuditLog::open(path)?.append(record)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn appends_lines_with_private_mode() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("data/audit.log");
        let log = AuditLog::open(&p).unwrap();
        let targets: Vec<String> = (0..150).map(|i| format!("t{i}")).collect();
        log.append(&Record::new("request", "daemon").with_targets(targets.iter()))
            .unwrap();
        append_once(&p, &Record::new("policy_change", "cli")).unwrap();
        let text = std::fs::read_to_string(&p).unwrap();
        let lines: Vec<Record> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0].count, Some(150));
        assert_eq!(lines[0].targets.len(), MAX_LOGGED_TARGETS);
        assert_eq!(lines[1].source, "cli");
        // removed while open: the next append recreates it
        std::fs::remove_file(&p).unwrap();
        log.append(&Record::new("daemon", "daemon")).unwrap();
        assert_eq!(std::fs::read_to_string(&p).unwrap().lines().count(), 1);
        assert_eq!(
            std::fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }
}
