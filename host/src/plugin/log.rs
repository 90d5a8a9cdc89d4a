//! A plugin's stdout and stderr: kept in a capped buffer and drained to the
//! host log after every call, so a chatty guest cannot flood the host.

use bytes::Bytes;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamResult};

/// A shared, capped text buffer that a guest's stdout and stderr write to.
#[derive(Clone, Default)]
pub(crate) struct CappedLog(Arc<Mutex<LogBuffer>>);

#[derive(Default)]
struct LogBuffer {
    text: Vec<u8>,
    cap: usize,
    dropped: u64,
}

/// What a guest wrote during one call.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CallLog {
    /// The text kept, at most the log limit.
    pub text: String,
    /// How many bytes beyond the limit were dropped.
    pub dropped_bytes: u64,
}

impl CappedLog {
    pub(crate) fn new(cap: usize) -> Self {
        CappedLog(Arc::new(Mutex::new(LogBuffer { text: Vec::new(), cap, dropped: 0 })))
    }

    fn push(&self, bytes: &[u8]) {
        let mut buf = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let room = buf.cap.saturating_sub(buf.text.len());
        let kept = bytes.len().min(room);
        buf.text.extend_from_slice(&bytes[..kept]);
        buf.dropped += (bytes.len() - kept) as u64;
    }

    /// Takes what was written since the last drain.
    pub(crate) fn drain(&self) -> CallLog {
        let mut buf = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let text = String::from_utf8_lossy(&buf.text).into_owned();
        buf.text.clear();
        CallLog { text, dropped_bytes: std::mem::take(&mut buf.dropped) }
    }
}

impl IsTerminal for CappedLog {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for CappedLog {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }

    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

impl OutputStream for CappedLog {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        self.push(&bytes);
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        // Always ready: what does not fit is dropped, never blocked on.
        Ok(64 << 10)
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for CappedLog {
    async fn ready(&mut self) {}
}

impl tokio::io::AsyncWrite for CappedLog {
    fn poll_write(self: Pin<&mut Self>, _: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        self.push(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_up_to_the_cap_and_counts_the_rest() {
        let log = CappedLog::new(8);
        log.push(b"hello ");
        log.push(b"world!");
        let first = log.drain();
        assert_eq!(first.text, "hello wo");
        assert_eq!(first.dropped_bytes, 4);
        log.push(b"again");
        assert_eq!(log.drain(), CallLog { text: "again".into(), dropped_bytes: 0 });
    }
}
