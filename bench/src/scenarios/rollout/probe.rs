//! The rollout benchmark's instruments: the web metric its analysis reads (a verdict the
//! benchmark flips, noting when a failing answer was first served), and client loops that
//! open a new HTTP request or TCP connection each time and note when each began and which
//! version answered.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

/// The web metric: `{"ok": true}` until failed, then `{"ok": false}`.
pub(crate) struct Verdict {
    /// Where it listens.
    pub(crate) addr: SocketAddr,
    ok: Arc<AtomicBool>,
    first_failure: Arc<Mutex<Option<Instant>>>,
}

impl Verdict {
    /// Serves the verdict on a loopback port of its own, from a thread.
    pub(crate) fn start() -> Result<Verdict> {
        let listener = TcpListener::bind("127.0.0.1:0").context("binding the verdict server")?;
        let addr = listener.local_addr()?;
        let ok = Arc::new(AtomicBool::new(true));
        let first_failure = Arc::new(Mutex::new(None));
        let (ok2, first2) = (Arc::clone(&ok), Arc::clone(&first_failure));
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let good = ok2.load(Ordering::SeqCst);
                if !good {
                    first2
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .get_or_insert_with(Instant::now);
                }
                if let Err(e) = answer(stream, good) {
                    eprintln!("verdict request: {e}");
                }
            }
        });
        Ok(Verdict {
            addr,
            ok,
            first_failure,
        })
    }

    /// From now on the metric fails.
    pub(crate) fn fail(&self) {
        *self
            .first_failure
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = None;
        self.ok.store(false, Ordering::SeqCst);
    }

    /// From now on the metric passes.
    pub(crate) fn pass(&self) {
        self.ok.store(true, Ordering::SeqCst);
    }

    /// When the first failing answer went out.
    pub(crate) fn failed_at(&self) -> Option<Instant> {
        *self
            .first_failure
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

fn answer(mut stream: TcpStream, ok: bool) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut line = String::new();
    while reader.read_line(&mut line)? > 2 {
        line.clear();
    }
    let body = format!("{{\"ok\": {ok}}}");
    write!(
        stream,
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
}

/// What one request or connection met: when it began, and the version that answered.
pub(crate) type Sample = (Instant, Option<String>);

/// A client loop running on its own thread until stopped.
pub(crate) struct Loop {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<Vec<Sample>>,
}

/// How a loop reaches the service.
#[derive(Clone, Copy)]
pub(crate) enum Mode {
    /// `GET /` on a new connection; the version is the JSON answer's `name`.
    Http,
    /// A new TCP connection; the version is the banner line.
    Tcp,
}

impl Loop {
    /// Starts a loop against `addr`, bounded by `limit`.
    pub(crate) fn start(addr: SocketAddr, mode: Mode, limit: Duration) -> Loop {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            let end = Instant::now() + limit;
            let mut samples = Vec::new();
            while !flag.load(Ordering::Relaxed) && Instant::now() < end {
                let began = Instant::now();
                let version = match mode {
                    Mode::Http => http_once(addr),
                    Mode::Tcp => tcp_once(addr),
                };
                samples.push((began, version.ok()));
            }
            samples
        });
        Loop { stop, thread }
    }

    /// Stops the loop; what it saw.
    pub(crate) fn stop(self) -> Vec<Sample> {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().unwrap_or_default()
    }
}

fn connect(addr: SocketAddr) -> std::io::Result<TcpStream> {
    let s = TcpStream::connect_timeout(&addr, Duration::from_secs(1))?;
    s.set_read_timeout(Some(Duration::from_secs(1)))?;
    Ok(s)
}

fn http_once(addr: SocketAddr) -> std::io::Result<String> {
    let mut s = connect(addr)?;
    write!(
        s,
        "GET / HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n"
    )?;
    let mut text = String::new();
    s.read_to_string(&mut text)?;
    let body = text.split("\r\n\r\n").nth(1).unwrap_or_default();
    let v: serde_json::Value = serde_json::from_str(body.trim())
        .map_err(|e| std::io::Error::other(format!("answer is not JSON: {e}")))?;
    v["name"]
        .as_str()
        .map(str::to_string)
        .ok_or_else(|| std::io::Error::other("answer without a name"))
}

fn tcp_once(addr: SocketAddr) -> std::io::Result<String> {
    let s = connect(addr)?;
    let mut line = String::new();
    BufReader::new(s).read_line(&mut line)?;
    Ok(line.trim().to_string())
}
