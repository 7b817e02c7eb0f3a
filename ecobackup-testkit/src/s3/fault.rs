//! Fault rules and the response body that can cut a connection short.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};

/// What the server does to a request that a [`FaultRule`] picked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// Answer with this HTTP status (500, 503, …) and an S3-style XML error body, without
    /// passing the request to the S3 implementation. The request body is read and discarded
    /// first, so the client sees the status rather than a broken pipe.
    Status(u16),
    /// Wait this long, then serve the request normally.
    Delay(Duration),
    /// Close the TCP connection without sending any response.
    ResetConnection,
    /// Execute the request (a PUT stores its object), then close the connection without
    /// sending the response: the client sees a failure of a request that took effect.
    ResetAfterExecuting,
    /// Execute the request (a PUT stores its object), then wait this long before answering:
    /// a request that took effect while its client still waits, as when the client is
    /// cancelled in the middle of a commit.
    DelayAfterExecuting(Duration),
    /// Serve the request normally, but close the connection after this many bytes of the
    /// response body have been sent. A body no longer than this is served completely.
    ResetAfterBytes(u64),
}

/// Which requests get a [`Fault`], and how many of them.
///
/// Rules are checked in the order they were added. A matching rule that is still skipping
/// counts the request and lets it go on to the next rule; the first matching rule with budget
/// left fires, and no later rule sees the request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FaultRule {
    /// HTTP method to match, such as `"PUT"` (case-insensitive); `None` matches any method.
    pub method: Option<String>,
    /// Substring the request path must contain (the path as sent, percent-encoded, e.g.
    /// `"/ecobackup-test/backups/"`); `None` matches any path.
    pub path_contains: Option<String>,
    /// Substring the raw query string must contain, e.g. `"partNumber=3"`; `None` matches any
    /// query, including none.
    pub query_contains: Option<String>,
    /// How many matching requests to let pass before the fault fires.
    pub skip: u32,
    /// How many matching requests to fault after the skipped ones; `None` means forever.
    pub times: Option<u32>,
    /// The fault to apply.
    pub fault: Fault,
}

impl FaultRule {
    /// A rule that matches every request and fires once, on the first one.
    pub fn new(fault: Fault) -> Self {
        FaultRule {
            method: None,
            path_contains: None,
            query_contains: None,
            skip: 0,
            times: Some(1),
            fault,
        }
    }

    /// Only match requests with this HTTP method (case-insensitive).
    pub fn method(mut self, method: impl Into<String>) -> Self {
        self.method = Some(method.into());
        self
    }

    /// Only match requests whose path contains this substring.
    pub fn path_contains(mut self, needle: impl Into<String>) -> Self {
        self.path_contains = Some(needle.into());
        self
    }

    /// Only match requests whose query string contains this substring.
    pub fn query_contains(mut self, needle: impl Into<String>) -> Self {
        self.query_contains = Some(needle.into());
        self
    }

    /// Let the first `n` matching requests pass unharmed.
    pub fn skip(mut self, n: u32) -> Self {
        self.skip = n;
        self
    }

    /// Fault `n` matching requests (after the skipped ones), then stop.
    pub fn times(mut self, n: u32) -> Self {
        self.times = Some(n);
        self
    }

    /// Fault every matching request after the skipped ones: a permanent failure.
    pub fn forever(mut self) -> Self {
        self.times = None;
        self
    }

    fn matches(&self, method: &str, path: &str, query: &str) -> bool {
        self.method
            .as_deref()
            .is_none_or(|m| m.eq_ignore_ascii_case(method))
            && self
                .path_contains
                .as_deref()
                .is_none_or(|p| path.contains(p))
            && self
                .query_contains
                .as_deref()
                .is_none_or(|q| query.contains(q))
    }
}

/// A rule with its counters.
#[derive(Debug)]
pub(crate) struct RuleState {
    rule: FaultRule,
    skipped: u32,
    fired: u32,
}

impl RuleState {
    pub(crate) fn new(rule: FaultRule) -> Self {
        RuleState {
            rule,
            skipped: 0,
            fired: 0,
        }
    }
}

/// Picks the fault for a request, updating the rules' counters.
pub(crate) fn pick_fault(
    rules: &mut [RuleState],
    method: &str,
    path: &str,
    query: &str,
) -> Option<Fault> {
    for state in rules.iter_mut() {
        if !state.rule.matches(method, path, query) {
            continue;
        }
        if state.skipped < state.rule.skip {
            state.skipped += 1;
            continue;
        }
        if state.rule.times.is_none_or(|t| state.fired < t) {
            state.fired = state.fired.saturating_add(1);
            return Some(state.rule.fault.clone());
        }
    }
    None
}

/// The S3 error code sent with an injected status.
fn error_code(status: u16) -> &'static str {
    match status {
        400 => "InvalidRequest",
        403 => "AccessDenied",
        404 => "NoSuchKey",
        409 => "OperationAborted",
        429 | 503 => "SlowDown",
        500 => "InternalError",
        501 => "NotImplemented",
        _ => "InjectedFault",
    }
}

/// The XML body of an injected error response, shaped like S3's.
pub(crate) fn error_body(status: u16, path: &str) -> String {
    let resource = path
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;");
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{}</Code>\
         <Message>injected fault: HTTP {status}</Message><Resource>{resource}</Resource>\
         <RequestId>ecobackup-testkit-fault</RequestId></Error>",
        error_code(status)
    )
}

/// How long the body waits, after sending its last allowed byte, before failing. This gives
/// hyper time to flush those bytes, so the client reads exactly the allowed prefix (also a
/// client on a loaded machine, that reads them late: hyper drops what is unsent at the cut).
const CUT_FLUSH_DELAY: Duration = Duration::from_millis(500);

/// Response body: the S3 service's body, optionally cut after a number of bytes.
///
/// Failing the body makes hyper abort the connection, which the client sees as a short read.
pub(crate) struct FaultBody {
    inner: Pin<Box<s3s::Body>>,
    /// Bytes still allowed; `None` = unlimited.
    remaining: Option<u64>,
    /// Set once the limit is reached and more data exists: fail when it fires.
    cut: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl FaultBody {
    pub(crate) fn new(inner: s3s::Body, limit: Option<u64>) -> Self {
        FaultBody {
            inner: Box::pin(inner),
            remaining: limit,
            cut: None,
        }
    }
}

impl Body for FaultBody {
    type Data = Bytes;
    type Error = s3s::StdError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        loop {
            if let Some(sleep) = this.cut.as_mut() {
                if sleep.as_mut().poll(cx).is_pending() {
                    return Poll::Pending;
                }
                return Poll::Ready(Some(Err(
                    "injected fault: connection cut during the response body".into(),
                )));
            }
            let frame = match this.inner.as_mut().poll_frame(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(None) => return Poll::Ready(None),
                Poll::Ready(Some(Err(e))) => return Poll::Ready(Some(Err(e))),
                Poll::Ready(Some(Ok(frame))) => frame,
            };
            let Some(remaining) = this.remaining else {
                return Poll::Ready(Some(Ok(frame)));
            };
            let data = match frame.into_data() {
                Ok(data) => data,
                // Trailers: pass through if the limit has not been hit.
                Err(frame) if remaining > 0 => return Poll::Ready(Some(Ok(frame))),
                Err(_) => Bytes::new(),
            };
            if data.is_empty() && remaining > 0 {
                continue;
            }
            if remaining == 0 {
                // More body exists beyond the limit: cut the connection.
                this.cut = Some(Box::pin(tokio::time::sleep(CUT_FLUSH_DELAY)));
                continue;
            }
            let len = data.len() as u64;
            if len <= remaining {
                this.remaining = Some(remaining - len);
                return Poll::Ready(Some(Ok(Frame::data(data))));
            }
            // This frame crosses the limit: send the allowed prefix, then cut.
            // `remaining < len <= usize::MAX`, so the cast is lossless.
            let head = data.slice(..remaining as usize);
            this.remaining = Some(0);
            this.cut = Some(Box::pin(tokio::time::sleep(CUT_FLUSH_DELAY)));
            return Poll::Ready(Some(Ok(Frame::data(head))));
        }
    }

    fn is_end_stream(&self) -> bool {
        self.cut.is_none() && self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_skip_then_fire_then_stop() {
        let mut rules = vec![RuleState::new(
            FaultRule::new(Fault::Status(503))
                .method("put")
                .query_contains("partNumber=2")
                .skip(1)
                .times(2),
        )];
        let mut fire = |m: &str, q: &str| pick_fault(&mut rules, m, "/b/k", q).is_some();
        assert!(!fire("GET", "partNumber=2"));
        assert!(!fire("PUT", "partNumber=1"));
        assert!(!fire("PUT", "partNumber=2&uploadId=x")); // skipped
        assert!(fire("PUT", "partNumber=2&uploadId=x"));
        assert!(fire("PUT", "partNumber=2&uploadId=x"));
        assert!(!fire("PUT", "partNumber=2&uploadId=x")); // budget spent
    }

    #[test]
    fn first_rule_with_budget_wins_and_forever_never_runs_out() {
        let mut rules = vec![
            RuleState::new(FaultRule::new(Fault::Status(500)).path_contains("/a")),
            RuleState::new(FaultRule::new(Fault::ResetConnection).forever()),
        ];
        let mut pick = |p: &str| pick_fault(&mut rules, "GET", p, "");
        assert_eq!(pick("/b/a"), Some(Fault::Status(500)));
        assert_eq!(pick("/b/a"), Some(Fault::ResetConnection));
        for _ in 0..10 {
            assert_eq!(pick("/b/c"), Some(Fault::ResetConnection));
        }
    }

    #[test]
    fn error_body_is_s3_shaped() {
        let body = error_body(503, "/b/k&x");
        assert!(body.contains("<Code>SlowDown</Code>"));
        assert!(body.contains("<Resource>/b/k&amp;x</Resource>"));
    }
}
