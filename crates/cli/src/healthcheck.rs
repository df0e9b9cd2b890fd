//! `armorm healthcheck`: the container image's HEALTHCHECK, so the runtime image needs no curl.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

use anyhow::{bail, Context};

use crate::args::HealthcheckArgs;

pub fn run(args: &HealthcheckArgs) -> anyhow::Result<()> {
    let timeout = Duration::from_secs(args.timeout_s.max(1));
    let mut stream = connect(&args.addr, timeout)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    let authorization = args.key.key()?.map(|key| format!("Authorization: Bearer {key}\r\n")).unwrap_or_default();
    write!(stream, "GET /health HTTP/1.0\r\nHost: {}\r\n{authorization}Connection: close\r\n\r\n", args.addr)?;
    let mut head = [0u8; 64];
    let n = stream.read(&mut head).context("reading the status line")?;
    let status_line = String::from_utf8_lossy(&head[..n]);
    match status_line.split_whitespace().nth(1) {
        Some("200") => Ok(()),
        Some("401") => bail!("unhealthy: /health answered 401: give the server's key (--api-key-file, ARMORM_API_KEY)"),
        Some(code) => bail!("unhealthy: /health answered {code}"),
        None => bail!("unhealthy: no HTTP status line"),
    }
}

/// The first of `addr`'s addresses (host:port; a host name resolves to several) that accepts.
fn connect(addr: &str, timeout: Duration) -> anyhow::Result<TcpStream> {
    let mut last = None;
    for candidate in addr.to_socket_addrs().with_context(|| format!("--addr {addr}: expected host:port"))? {
        match TcpStream::connect_timeout(&candidate, timeout) {
            Ok(stream) => return Ok(stream),
            Err(e) => last = Some(e),
        }
    }
    Err(last.map_or_else(|| anyhow::anyhow!("{addr} resolves to no address"), |e| e.into()))
        .with_context(|| format!("connecting to {addr}"))
}
