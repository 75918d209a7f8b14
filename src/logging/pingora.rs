//! The bridge from the `log` crate (Pingora, rustls) into `tracing`.
//!
//! Every record becomes an event of target [`TARGET`] (`pingora`, or `log`
//! for other crates) with the record's own target in a `module` field and
//! no source file or line (they were cargo-registry paths). Pingora's DEBUG
//! and TRACE records are dropped here, whatever the level: they dump request
//! heads, tokens included.
//!
//! Levels follow one rule: ERROR means an operator must act. Pingora lines
//! that are normal operation are moved down by [`relevel`]:
//!
//! | Pingora's line | Pingora | here | why |
//! |---|---|---|---|
//! | `No incoming socket transfer, sleep 1s and try again` | ERROR | INFO | a graceful-upgrade successor waiting for the old process's sockets |
//! | `failed to acquire reusable stream` | ERROR | DEBUG | a pooled upstream connection that had closed; a new one is opened |
//! | `service '…' exited.` | INFO | DEBUG | background services that end by design (or at stop) |
//! | [`ROUTINE`]: `Starting service: …`, `Bootstrap done`, `Broadcasting graceful shutdown`, … | INFO | DEBUG | a dozen lines per start and stop that say nothing the gateway's own INFO lines do not |

/// The target of bridged Pingora records (also what the secret filter lets
/// through: it is vetted here).
pub const TARGET: &str = "pingora";
/// The target of bridged records of any other crate.
pub const OTHER_TARGET: &str = "log";

/// Pingora INFO lines (by prefix) written at DEBUG: the steps of every
/// start and stop. Kept at INFO: signals, listeners shut down, sockets sent
/// or received on an upgrade, the grace period.
pub const ROUTINE: &[&str] = &[
    "Bootstrap starting",
    "Bootstrap done",
    "Server starting",
    "Starting services in dependency order",
    "Starting service: ",
    "Service '",
    "Broadcasting graceful shutdown",
    "Graceful shutdown started!",
    "Broadcast graceful shutdown complete",
    "Waiting for runtimes to exit!",
    "Waiting for service runtime",
    "Service runtime ",
];

/// The `log::Log` installed by [`super::init`].
pub struct Bridge;

/// The level a Pingora line is written at, or `None` to drop it.
pub fn relevel(level: log::Level, msg: &str) -> Option<tracing::Level> {
    use tracing::Level as L;
    let mapped = match level {
        log::Level::Error => L::ERROR,
        log::Level::Warn => L::WARN,
        log::Level::Info => L::INFO,
        // Request and response heads: never written.
        log::Level::Debug | log::Level::Trace => return None,
    };
    if msg.starts_with("No incoming socket transfer") {
        return Some(L::INFO);
    }
    if msg.starts_with("failed to acquire reusable stream")
        || (msg.starts_with("service '") && msg.ends_with("exited."))
        || (mapped == L::INFO && ROUTINE.iter().any(|p| msg.starts_with(p)))
    {
        return Some(L::DEBUG);
    }
    Some(mapped)
}

fn other_level(level: log::Level) -> tracing::Level {
    match level {
        log::Level::Error => tracing::Level::ERROR,
        log::Level::Warn => tracing::Level::WARN,
        log::Level::Info => tracing::Level::INFO,
        log::Level::Debug => tracing::Level::DEBUG,
        log::Level::Trace => tracing::Level::TRACE,
    }
}

macro_rules! emit {
    ($target:expr, $level:expr, $module:expr, $msg:expr) => {
        match $level {
            tracing::Level::ERROR => {
                tracing::error!(target: $target, module = $module, "{}", $msg)
            }
            tracing::Level::WARN => tracing::warn!(target: $target, module = $module, "{}", $msg),
            tracing::Level::INFO => tracing::info!(target: $target, module = $module, "{}", $msg),
            tracing::Level::DEBUG => {
                tracing::debug!(target: $target, module = $module, "{}", $msg)
            }
            _ => tracing::trace!(target: $target, module = $module, "{}", $msg),
        }
    };
}

fn is_pingora(target: &str) -> bool {
    target.starts_with("pingora")
}

impl log::Log for Bridge {
    fn enabled(&self, m: &log::Metadata<'_>) -> bool {
        !(is_pingora(m.target()) && m.level() > log::Level::Info)
    }

    fn log(&self, r: &log::Record<'_>) {
        let module = r.target();
        if is_pingora(module) {
            if r.level() > log::Level::Info {
                return;
            }
            let msg = match r.args().as_str() {
                Some(s) => std::borrow::Cow::Borrowed(s),
                None => std::borrow::Cow::Owned(r.args().to_string()),
            };
            if let Some(level) = relevel(r.level(), &msg) {
                emit!(TARGET, level, module, msg);
            }
        } else {
            emit!(OTHER_TARGET, other_level(r.level()), module, r.args());
        }
    }

    fn flush(&self) {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use tracing::Level as L;

    #[test]
    fn normal_operation_is_not_an_error() {
        let e = log::Level::Error;
        assert_eq!(
            relevel(e, "No incoming socket transfer, sleep 1s and try again"),
            Some(L::INFO)
        );
        assert_eq!(
            relevel(e, "failed to acquire reusable stream"),
            Some(L::DEBUG)
        );
        assert_eq!(
            relevel(log::Level::Info, "service 'BG log flusher' exited."),
            Some(L::DEBUG)
        );
        assert_eq!(
            relevel(e, "Unable to send listener sockets to new process: x"),
            Some(L::ERROR)
        );
        assert_eq!(relevel(log::Level::Debug, "Authorization: x"), None);
        let info = log::Level::Info;
        assert_eq!(relevel(info, "Starting service: metrics"), Some(L::DEBUG));
        assert_eq!(
            relevel(info, "SIGTERM received, gracefully exiting"),
            Some(L::INFO)
        );
        assert_eq!(relevel(info, "Shutting down 0.0.0.0:6188"), Some(L::INFO));
        // A routine prefix never hides a warning or an error.
        assert_eq!(
            relevel(log::Level::Warn, "Service runtime x did not exit"),
            Some(L::WARN)
        );
    }
}
