//! Whether a request that failed after it went out is tried again: a pure
//! function of what is known about the attempt ([`Facts`]), so every rule is
//! unit-tested here; `error_while_proxy` only gathers the facts and applies
//! the [`Decision`].
//!
//! - Our own refusal (a body over the limit, 413) is final.
//! - A response that belonged to another request (a desync), or bytes that
//!   are no response where this request's should start on a reused
//!   connection: an idempotent request is retried once, on a new, unpooled
//!   connection.
//! - A pooled connection that turned out dead before any byte of the
//!   response (closed or reset): an idempotent request is retried (the usual
//!   keep-alive race); any other only when the server's TCP acknowledged no
//!   byte of it (`upstream::StaleProbe`), so it provably never reached the
//!   application.
//! - Beyond that, an idempotent request with no unbuffered body and nothing
//!   answered yet is retried on another server of the upstream after a
//!   connection failure (not after a timeout), as nginx's
//!   `proxy_next_upstream error` does. Never anything else.

use pingora_error::{ErrorSource, ErrorType, RetryType};

/// What is known when an attempt failed after the request went out.
#[derive(Debug, Clone, Copy)]
pub struct Facts<'a> {
    pub etype: &'a ErrorType,
    pub source: &'a ErrorSource,
    /// Pingora's retry verdict so far (`ReusedOnly`: retry if the
    /// connection was reused).
    pub retry: &'a RetryType,
    pub idempotent: bool,
    /// The request body is still buffered in full (it can be replayed).
    pub body_kept: bool,
    /// Nothing was answered to the client yet.
    pub unanswered: bool,
    /// The upstream connection came from the pool.
    pub client_reused: bool,
    /// A response header of this attempt arrived.
    pub got_header: bool,
    /// This attempt's response belonged to another request.
    pub desync: bool,
    /// This attempt already used a new, unpooled connection after a desync.
    pub fresh: bool,
    /// Servers this request already failed on, and the upstream's `retries`.
    pub failed: usize,
    pub retries: usize,
}

/// What to do with the error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Not retried.
    Final,
    /// Retried (a pooled connection found dead before the response).
    RetryStale,
    /// A desync: the next attempt uses a new, unpooled connection; retried
    /// if `retry`. `garbage`: it showed as bytes where the response should
    /// start (the server is to be marked as desynced).
    Fresh { retry: bool, garbage: bool },
    /// Retried if the connection was reused (Pingora's `ReusedOnly`).
    IfReused,
    /// Retried on another server of the upstream, if one is left.
    NextServer,
}

/// The decision; `unacknowledged` asks the kernel whether the server's TCP
/// acknowledged none of the request (called only when that decides).
pub fn decide(f: &Facts, unacknowledged: impl FnOnce() -> bool) -> Decision {
    if matches!(f.etype, ErrorType::HTTPStatus(413)) {
        return Decision::Final;
    }
    let replayable = f.idempotent && f.body_kept && f.unanswered;
    if f.desync {
        return Decision::Fresh {
            retry: replayable && !f.fresh,
            garbage: false,
        };
    }
    let before_response = f.client_reused && !f.got_header;
    if before_response
        && f.source == &ErrorSource::Upstream
        && matches!(f.etype, ErrorType::InvalidHTTPHeader | ErrorType::H1Error)
    {
        return Decision::Fresh {
            retry: replayable && !f.fresh,
            garbage: true,
        };
    }
    let dead_before_response = before_response
        && matches!(
            f.etype,
            ErrorType::ConnectionClosed | ErrorType::ReadError | ErrorType::WriteError
        );
    let timed_out = matches!(
        f.etype,
        ErrorType::ReadTimedout | ErrorType::WriteTimedout | ErrorType::ConnectTimedout
    );
    if dead_before_response && f.unanswered && f.body_kept {
        let proven = f.idempotent
            || (f.retry == &RetryType::ReusedOnly || f.etype == &ErrorType::WriteError)
                && unacknowledged();
        if proven {
            Decision::RetryStale
        } else {
            Decision::Final
        }
    } else if !replayable {
        Decision::Final
    } else if f.client_reused {
        Decision::IfReused
    } else if !timed_out && f.failed < f.retries {
        Decision::NextServer
    } else {
        Decision::Final
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GET: Facts = Facts {
        etype: &ErrorType::ConnectionClosed,
        source: &ErrorSource::Upstream,
        retry: &RetryType::Decided(false),
        idempotent: true,
        body_kept: true,
        unanswered: true,
        client_reused: false,
        got_header: false,
        desync: false,
        fresh: false,
        failed: 0,
        retries: 1,
    };

    fn no_probe() -> bool {
        panic!("the probe is asked only for a non-idempotent request on a dead pooled connection")
    }

    #[test]
    fn a_body_over_the_limit_is_final() {
        let f = Facts {
            etype: &ErrorType::HTTPStatus(413),
            ..GET
        };
        assert_eq!(decide(&f, no_probe), Decision::Final);
    }

    #[test]
    fn a_desync_is_retried_once_on_a_fresh_connection() {
        let f = Facts {
            desync: true,
            ..GET
        };
        let first = Decision::Fresh {
            retry: true,
            garbage: false,
        };
        assert_eq!(decide(&f, no_probe), first);
        let again = Facts { fresh: true, ..f };
        let second = Decision::Fresh {
            retry: false,
            garbage: false,
        };
        assert_eq!(decide(&again, no_probe), second);
        let post = Facts {
            idempotent: false,
            ..f
        };
        assert_eq!(decide(&post, no_probe), second);
    }

    #[test]
    fn garbage_where_a_response_should_start_is_a_desync() {
        let f = Facts {
            etype: &ErrorType::InvalidHTTPHeader,
            client_reused: true,
            ..GET
        };
        let garbage = Decision::Fresh {
            retry: true,
            garbage: true,
        };
        assert_eq!(decide(&f, no_probe), garbage);
        // On a new connection, or after a header: an ordinary upstream error.
        let new = Facts {
            client_reused: false,
            ..f
        };
        assert_eq!(decide(&new, no_probe), Decision::NextServer);
        let late = Facts {
            got_header: true,
            ..f
        };
        assert_eq!(decide(&late, no_probe), Decision::IfReused);
    }

    #[test]
    fn a_dead_pooled_connection_is_retried_only_when_provably_unsent() {
        let get = Facts {
            client_reused: true,
            ..GET
        };
        assert_eq!(decide(&get, no_probe), Decision::RetryStale);
        let post = Facts {
            idempotent: false,
            retry: &RetryType::ReusedOnly,
            ..get
        };
        assert_eq!(decide(&post, || true), Decision::RetryStale);
        assert_eq!(decide(&post, || false), Decision::Final);
        // Neither `ReusedOnly` nor a write error: the probe is not asked.
        let read = Facts {
            etype: &ErrorType::ReadError,
            retry: &RetryType::Decided(false),
            ..post
        };
        assert_eq!(decide(&read, no_probe), Decision::Final);
        // Something was answered already: never.
        let answered = Facts {
            unanswered: false,
            ..get
        };
        assert_eq!(decide(&answered, no_probe), Decision::Final);
    }

    #[test]
    fn another_server_after_a_connection_failure_not_a_timeout() {
        let f = Facts {
            etype: &ErrorType::ReadError,
            ..GET
        };
        assert_eq!(decide(&f, no_probe), Decision::NextServer);
        let timeout = Facts {
            etype: &ErrorType::ReadTimedout,
            ..GET
        };
        assert_eq!(decide(&timeout, no_probe), Decision::Final);
        let spent = Facts { failed: 1, ..f };
        assert_eq!(decide(&spent, no_probe), Decision::Final);
        let post = Facts {
            idempotent: false,
            ..f
        };
        assert_eq!(decide(&post, no_probe), Decision::Final);
        let streamed = Facts {
            body_kept: false,
            ..f
        };
        assert_eq!(decide(&streamed, no_probe), Decision::Final);
    }
}
