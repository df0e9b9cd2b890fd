//! The accept loop: HTTP/1.1 connections under a cap, with a deadline for request headers, and a
//! graceful drain on shutdown.
//!
//! axum's own `serve` has neither a header timeout nor a connection limit, so a client that opens
//! connections and sends nothing (or half a request) could hold them, and file descriptors, for as
//! long as it likes. Here a connection that has not sent a complete request head within
//! `--header-read-timeout` (which also bounds a keep-alive connection's idle time) gets a JSON 408
//! and is closed, and connections past `--max-connections` get a JSON 503 at once.

use std::future::Future;
use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

use crate::error::ApiError;
use crate::http::MAX_HEADERS;
use crate::metrics::Metrics;

#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    pub header_read_timeout: Duration,
    pub max_connections: usize,
    /// Keep serving a request after the client's end-of-stream (see `--half-close`).
    pub half_close: bool,
}

/// Refusals in progress at once; past this a refused connection is closed without an answer, so
/// a flood cannot turn refusals into a second way to hold descriptors.
const MAX_REFUSING: usize = 64;

/// Serves `app` on `listener` until `stop` resolves, then stops accepting; the returned drain
/// finishes when every open connection has answered its in-flight request and closed.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: ConnectionLimits,
    metrics: Arc<Metrics>,
    stop: impl Future<Output = ()>,
) -> GracefulShutdown {
    let graceful = GracefulShutdown::new();
    let open = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let refusing = Arc::new(Semaphore::new(MAX_REFUSING));
    tokio::pin!(stop);
    loop {
        let (stream, _) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of descriptors (or a connection reset before accept): back off instead of
                    // spinning; open connections finishing will free some.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut stop => break,
        };
        let Ok(permit) = open.clone().try_acquire_owned() else {
            metrics.connections_refused.inc();
            if let Ok(refusal) = refusing.clone().try_acquire_owned() {
                tokio::spawn(async move {
                    let _refusal = refusal;
                    let busy = ApiError::NotReady(format!(
                        "too many open connections ({}, --max-connections); retry shortly",
                        limits.max_connections
                    ));
                    answer_and_close(stream, &busy).await;
                });
            }
            continue;
        };
        let Ok((stream, spare)) = with_spare(stream) else { continue };
        let mut builder = http1::Builder::new();
        builder
            .timer(TokioTimer::new())
            .header_read_timeout(limits.header_read_timeout)
            // Off: end-of-stream from the client cancels its request (it hung up, as far as TCP
            // can tell). On: a client that only shut down its sending side still gets its answer.
            .half_close(limits.half_close)
            // More than the middleware allows, so an excess count gets its JSON 431 from there.
            .max_headers(MAX_HEADERS * 4);
        let conn = builder.serve_connection(TokioIo::new(stream), TowerToHyperService::new(app.clone()));
        let conn = graceful.watch(conn);
        let (metrics, timeout) = (metrics.clone(), limits.header_read_timeout);
        tokio::spawn(async move {
            let _permit = permit;
            metrics.connections.inc();
            if let Err(e) = conn.await {
                if e.is_timeout() {
                    let late = ApiError::RequestTimeout(format!("the request head did not arrive within {timeout:?}"));
                    metrics.errors.with_label_values(&[late.code()]).inc();
                    write_answer(&spare, &late);
                }
            }
            metrics.connections.dec();
        });
    }
    graceful
}

/// The stream, and a second handle on its socket to answer 408 after hyper gives up on the
/// request head (hyper owns the first).
fn with_spare(stream: TcpStream) -> std::io::Result<(TcpStream, std::net::TcpStream)> {
    let std_stream = stream.into_std()?;
    let spare = std_stream.try_clone()?;
    Ok((TcpStream::from_std(std_stream)?, spare))
}

fn response_bytes(error: &ApiError) -> Vec<u8> {
    let status = error.status_and_code().0;
    let body = serde_json::to_vec(&error.body()).unwrap_or_default();
    let reason = match status {
        408 => "Request Timeout",
        503 => "Service Unavailable",
        _ => "Error",
    };
    let mut out = format!(
        "HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\
         retry-after: 1\r\n\r\n",
        body.len()
    )
    .into_bytes();
    out.extend_from_slice(&body);
    out
}

/// Best effort and never blocking (the socket is non-blocking): a client too slow to take a few
/// hundred bytes gets nothing.
fn write_answer(mut socket: &std::net::TcpStream, error: &ApiError) {
    let _ = socket.write_all(&response_bytes(error));
    let _ = socket.shutdown(std::net::Shutdown::Both);
}

/// Answers a connection that will not be served, then lets the client read the answer before the
/// socket closes (closing with unread request bytes would reset it and lose the answer).
async fn answer_and_close(mut stream: TcpStream, error: &ApiError) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let bytes = response_bytes(error);
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        stream.write_all(&bytes).await?;
        stream.shutdown().await?;
        let mut sink = [0u8; 4096];
        while stream.read(&mut sink).await? > 0 {}
        Ok::<_, std::io::Error>(())
    })
    .await;
}
