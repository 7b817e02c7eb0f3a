//! A tiny HTTP server for the tests of pings and webhooks: it records every request (method,
//! path, body) and answers 200, or reads the request and never answers.
//!
//! ```no_run
//! # async fn demo() {
//! use ecobackup_testkit::http_recorder::{Answer, HttpRecorder};
//! let server = HttpRecorder::start(Answer::Ok).await;
//! let ping_url = server.url("/ping/abc");
//! // … run a command that pings `ping_url` …
//! for r in server.requests() {
//!     println!("{} {} {}", r.method, r.path, r.body);
//! }
//! # }
//! ```

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::task::{JoinHandle, JoinSet};

/// How the server answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// 200 with an empty body.
    Ok,
    /// Read and record the request, then never answer (the connection stays open).
    Hang,
}

/// One request as received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpRequest {
    /// `"GET"`, `"POST"`, …
    pub method: String,
    /// The path, without the query.
    pub path: String,
    /// The `content-type` header, empty if none.
    pub content_type: String,
    /// The body, converted lossily to UTF-8.
    pub body: String,
}

/// The running server; it stops when dropped.
pub struct HttpRecorder {
    addr: SocketAddr,
    requests: Arc<Mutex<Vec<HttpRequest>>>,
    task: JoinHandle<()>,
}

impl HttpRecorder {
    /// Starts a server on 127.0.0.1 answering as `answer` says.
    ///
    /// # Panics
    ///
    /// Outside a Tokio runtime, or if the socket cannot be bound.
    pub async fn start(answer: Answer) -> HttpRecorder {
        let listener = TcpListener::bind(("127.0.0.1", 0))
            .await
            .unwrap_or_else(|e| panic!("HttpRecorder: cannot bind 127.0.0.1:0: {e}"));
        let addr = listener
            .local_addr()
            .unwrap_or_else(|e| panic!("HttpRecorder: cannot read the bound address: {e}"));
        let requests = Arc::new(Mutex::new(Vec::new()));
        let task = tokio::spawn(accept_loop(listener, answer, Arc::clone(&requests)));
        HttpRecorder {
            addr,
            requests,
            task,
        }
    }

    /// `http://127.0.0.1:PORT<path>`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Every request received so far, in order of arrival.
    pub fn requests(&self) -> Vec<HttpRequest> {
        self.requests
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

impl Drop for HttpRecorder {
    fn drop(&mut self) {
        // Aborting the accept loop drops its JoinSet, which aborts every connection.
        self.task.abort();
    }
}

async fn accept_loop(
    listener: TcpListener,
    answer: Answer,
    requests: Arc<Mutex<Vec<HttpRequest>>>,
) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                let requests = Arc::clone(&requests);
                connections.spawn(async move {
                    let svc = hyper::service::service_fn(move |req| {
                        handle(answer, Arc::clone(&requests), req)
                    });
                    // Errors here are clients that gave up.
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

async fn handle(
    answer: Answer,
    requests: Arc<Mutex<Vec<HttpRequest>>>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let method = req.method().as_str().to_owned();
    let path = req.uri().path().to_owned();
    let content_type = req
        .headers()
        .get(http::header::CONTENT_TYPE)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        .unwrap_or_default();
    let body = match req.into_body().collect().await {
        Ok(collected) => String::from_utf8_lossy(&collected.to_bytes()).into_owned(),
        Err(_) => String::new(),
    };
    requests
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .push(HttpRequest {
            method,
            path,
            content_type,
            body,
        });
    if answer == Answer::Hang {
        std::future::pending::<()>().await;
    }
    Ok(Response::new(Full::new(Bytes::new())))
}
