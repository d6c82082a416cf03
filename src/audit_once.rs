//! A command's own audit records: the log opened for one record, with the chain key from the
//! store the command selected and the rotation the user approved. The broker keeps its log open
//! instead; these are for the CLI, doctor and the dashboard's commands.

use crate::audit::{AuditLog, KeySource, Record, Rotation};
use crate::paths::Paths;
use std::io;

/// The rotation the user approved for the log of `paths` (see
/// [`crate::policy::sealed::in_force`]): an edit of `audit_max_bytes`/`audit_keep` made outside
/// keychain-auth applies only once accepted, so a hand edit cannot rotate the history away. When
/// the settings cannot be vouched for, rotation keeps at least the defaults' history (never less
/// than the file asks for).
pub(crate) fn rotation(paths: &Paths, keys: &KeySource) -> Rotation {
    crate::policy::sealed::rotation(crate::policy::sealed::in_force(paths, keys).as_ref())
}

/// Checks that a record could be appended now (the log opens, the key can be had), so a change
/// is not made that cannot then be audited.
pub(crate) fn ready(paths: &Paths) -> io::Result<()> {
    AuditLog::open(
        &paths.audit,
        crate::selection::key_source(paths),
        Rotation::default(),
    )?
    .warm_key()
}

/// Appends `record` to the log of `paths` with the key from the selected store, and closes it
/// (for one-shot CLI commands).
pub(crate) fn append_once(paths: &Paths, record: &Record) -> io::Result<()> {
    append_with(paths, crate::selection::key_source(paths), record)
}

/// Like [`append_once`], with the key from `keys`.
pub(crate) fn append_with(paths: &Paths, keys: KeySource, record: &Record) -> io::Result<()> {
    let rotation = rotation(paths, &keys);
    AuditLog::open(&paths.audit, keys, rotation)?.append(record)
}
