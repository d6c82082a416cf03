//! [`Failure`]: what every command returns when it fails. Its own module so that the modules
//! the dispatcher calls (install, owner, vault commands) name it without importing the
//! dispatcher.

/// Why a command failed: a core module's typed error or the command's own words; `main`
/// prints its message as the one-line reason.
pub type Failure = Box<dyn std::error::Error + Send + Sync>;
