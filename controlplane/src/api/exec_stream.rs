//! One exec session over a WebSocket in the `channel.k8s.io` framing: every binary message
//! starts with its channel (0 stdin, 1 stdout, 2 stderr, 3 the closing `Status`, 4 terminal
//! resizes, 255 v5's "this stream is closed"). The process's stdio are pipes, or with `tty`
//! one pseudo-terminal (stdout and stderr merged, resizes applied); the session ends with the
//! exit status on channel 3, and the process is killed when the client goes first.

use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::process::Stdio;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

const STDIN: u8 = 0;
const STDOUT: u8 = 1;
const STDERR: u8 = 2;
const ERROR: u8 = 3;
const RESIZE: u8 = 4;
const CLOSE: u8 = 255;

/// Which streams a session carries.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Streams {
    pub(crate) stdin: bool,
    pub(crate) stdout: bool,
    pub(crate) stderr: bool,
    pub(crate) tty: bool,
}

/// Runs `command` (which runs `argv`) with its stdio carried over `socket`, until it exits
/// or the client goes.
pub(crate) async fn run<S>(
    socket: WebSocketStream<S>,
    command: Command,
    argv: &[String],
    streams: Streams,
) where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let (mut sink, mut incoming) = socket.split();
    let (out_tx, mut out_rx) = mpsc::channel::<Vec<u8>>(16);
    let (mut child, mut input) = match spawn(command, streams, out_tx) {
        Ok(spawned) => spawned,
        Err(e) => {
            let status = failure("InternalError", format!("starting {argv:?}: {e}"), None);
            finish(&mut sink, status).await;
            return;
        }
    };
    let mut outputs_open = true;
    let status = loop {
        tokio::select! {
            frame = out_rx.recv(), if outputs_open => match frame {
                Some(frame) => {
                    if sink.send(Message::Binary(Bytes::from(frame))).await.is_err() {
                        tracing::debug!(command = ?argv, "exec client went; the command is killed");
                        return;
                    }
                }
                None => outputs_open = false,
            },
            message = incoming.next() => match message {
                Some(Ok(Message::Binary(data))) => input.take(&data).await,
                Some(Ok(Message::Close(_)) | Err(_)) | None => {
                    tracing::debug!(command = ?argv, "exec client went; the command is killed");
                    return;
                }
                Some(Ok(_)) => {}
            },
            exited = child.wait(), if !outputs_open => break exited,
        }
    };
    let status = match status {
        Ok(s) if s.success() => json!({"metadata": {}, "status": "Success"}),
        Ok(s) => {
            let code = s.code().unwrap_or(128);
            let message = format!(
                "command terminated with non-zero exit code: error executing command {argv:?}, exit code {code}"
            );
            failure("NonZeroExitCode", message, Some(code))
        }
        Err(e) => failure("InternalError", format!("waiting for {argv:?}: {e}"), None),
    };
    finish(&mut sink, status).await;
}

/// A failed `Status` for channel 3 (`ExitCode` cause when the command exited non-zero).
fn failure(reason: &str, message: String, code: Option<i32>) -> Value {
    let mut status =
        json!({"metadata": {}, "status": "Failure", "reason": reason, "message": message});
    if let Some(code) = code {
        status["details"] =
            json!({"causes": [{"reason": "ExitCode", "message": code.to_string()}]});
    }
    status
}

/// Sends the closing `Status` and closes the WebSocket.
async fn finish<S>(
    sink: &mut futures_util::stream::SplitSink<WebSocketStream<S>, Message>,
    status: Value,
) where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut frame = vec![ERROR];
    frame.extend_from_slice(status.to_string().as_bytes());
    if let Err(e) = sink.send(Message::Binary(Bytes::from(frame))).await {
        tracing::debug!(error = %e, "exec: the status did not reach the client");
        return;
    }
    let normal = CloseFrame {
        code: CloseCode::Normal,
        reason: "".into(),
    };
    if let Err(e) = sink.send(Message::Close(Some(normal))).await {
        tracing::debug!(error = %e, "exec: closing the WebSocket");
    }
}

/// Where stdin frames go, and the terminal resizes apply to.
struct Input {
    stdin: Option<Box<dyn AsyncWrite + Unpin + Send>>,
    terminal: Option<OwnedFd>,
}

impl Input {
    /// Acts on one message from the client.
    async fn take(&mut self, data: &[u8]) {
        let Some((&channel, payload)) = data.split_first() else {
            return;
        };
        match channel {
            STDIN => {
                let Some(stdin) = self.stdin.as_mut() else {
                    return;
                };
                let written = async {
                    stdin.write_all(payload).await?;
                    stdin.flush().await
                };
                if let Err(e) = written.await {
                    tracing::debug!(error = %e, "exec: the command's stdin is closed");
                    self.stdin = None;
                }
            }
            CLOSE if payload.first() == Some(&STDIN) => self.stdin = None,
            RESIZE => self.resize(payload),
            _ => {}
        }
    }

    /// Applies a `{"Width": W, "Height": H}` resize to the terminal.
    fn resize(&self, payload: &[u8]) {
        let (Some(terminal), Ok(size)) = (&self.terminal, serde_json::from_slice::<Value>(payload))
        else {
            return;
        };
        let dim = |k: &str| {
            size[k]
                .as_u64()
                .and_then(|v| u16::try_from(v).ok())
                .unwrap_or(0)
        };
        let winsize = rustix::termios::Winsize {
            ws_row: dim("Height"),
            ws_col: dim("Width"),
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        if let Err(e) = rustix::termios::tcsetwinsize(terminal, winsize) {
            tracing::debug!(error = %e, "exec: resizing the terminal");
        }
    }
}

/// Starts the command with pipes, or a pseudo-terminal with `tty`; its output goes to `out`
/// as framed messages.
fn spawn(
    mut command: Command,
    streams: Streams,
    out: mpsc::Sender<Vec<u8>>,
) -> std::io::Result<(Child, Input)> {
    if streams.tty {
        let (master, slave) = open_terminal()?;
        command
            .stdin(Stdio::from(slave.try_clone()?))
            .stdout(Stdio::from(slave.try_clone()?))
            .stderr(Stdio::from(slave));
        let child = command.spawn()?;
        // The slave's copies went with the command: the master reads EOF when the child is done.
        drop(command);
        let reader = tokio::fs::File::from_std(std::fs::File::from(master.try_clone()?));
        tokio::spawn(pump(reader, STDOUT, out));
        let writer = tokio::fs::File::from_std(std::fs::File::from(master.try_clone()?));
        let stdin: Option<Box<dyn AsyncWrite + Unpin + Send>> = streams
            .stdin
            .then(|| Box::new(writer) as Box<dyn AsyncWrite + Unpin + Send>);
        return Ok((
            child,
            Input {
                stdin,
                terminal: Some(master),
            },
        ));
    }
    let piped = |on: bool| if on { Stdio::piped() } else { Stdio::null() };
    command
        .stdin(piped(streams.stdin))
        .stdout(piped(streams.stdout))
        .stderr(piped(streams.stderr));
    let mut child = command.spawn()?;
    if let Some(stdout) = child.stdout.take() {
        tokio::spawn(pump(stdout, STDOUT, out.clone()));
    }
    if let Some(stderr) = child.stderr.take() {
        tokio::spawn(pump(stderr, STDERR, out));
    }
    let stdin = child
        .stdin
        .take()
        .map(|s| Box::new(s) as Box<dyn AsyncWrite + Unpin + Send>);
    Ok((
        child,
        Input {
            stdin,
            terminal: None,
        },
    ))
}

/// A new pseudo-terminal: its master and its slave.
fn open_terminal() -> std::io::Result<(OwnedFd, OwnedFd)> {
    use rustix::pty::{grantpt, openpt, ptsname, unlockpt, OpenptFlags};
    let master = openpt(OpenptFlags::RDWR | OpenptFlags::NOCTTY | OpenptFlags::CLOEXEC)?;
    grantpt(&master)?;
    unlockpt(&master)?;
    let name = ptsname(&master, Vec::new())?;
    let slave = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(std::path::Path::new(std::ffi::OsStr::from_bytes(
            name.as_bytes(),
        )))?;
    Ok((master, OwnedFd::from(slave)))
}

/// Copies `from` to `out` as messages on `channel` until EOF (or, for a terminal, EIO).
async fn pump(mut from: impl AsyncRead + Unpin, channel: u8, out: mpsc::Sender<Vec<u8>>) {
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) => return,
            Ok(n) => n,
            Err(e) => {
                // A terminal's master reads EIO once the last slave is closed.
                tracing::debug!(channel, error = %e, "exec: output ended");
                return;
            }
        };
        let mut frame = Vec::with_capacity(n + 1);
        frame.push(channel);
        frame.extend_from_slice(&buf[..n]);
        if out.send(frame).await.is_err() {
            return;
        }
    }
}
