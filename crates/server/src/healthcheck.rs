//! `armorm healthcheck`: the container image's HEALTHCHECK, so the runtime image needs no curl.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use anyhow::{bail, Context};

use crate::cli::HealthcheckArgs;

pub fn run(args: &HealthcheckArgs) -> anyhow::Result<()> {
    let timeout = Duration::from_secs(args.timeout_s.max(1));
    let mut stream =
        TcpStream::connect_timeout(&args.addr, timeout).with_context(|| format!("connecting to {}", args.addr))?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    write!(stream, "GET /health HTTP/1.0\r\nHost: {}\r\nConnection: close\r\n\r\n", args.addr)?;
    let mut head = [0u8; 64];
    let n = stream.read(&mut head).context("reading the status line")?;
    let status_line = String::from_utf8_lossy(&head[..n]);
    match status_line.split_whitespace().nth(1) {
        Some("200") => Ok(()),
        Some(code) => bail!("unhealthy: /health answered {code}"),
        None => bail!("unhealthy: no HTTP status line"),
    }
}
