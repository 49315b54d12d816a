//! The child's stdin: shared between the caller (who writes) and the stop sequence (who closes).

use std::sync::Arc;

use tokio::io::AsyncWriteExt;
use tokio::net::unix::pipe;
use tokio::sync::Mutex;

use crate::error::{Error, Result};

/// A writer to the child's stdin. Cloning gives another writer to the same pipe; the stop
/// sequence closes the pipe for all of them.
#[derive(Debug, Clone)]
pub struct ChildStdin {
    pid: u32,
    pipe: Arc<Mutex<Option<pipe::Sender>>>,
}

impl ChildStdin {
    pub(crate) fn new(pid: u32, sender: pipe::Sender) -> Self {
        ChildStdin {
            pid,
            pipe: Arc::new(Mutex::new(Some(sender))),
        }
    }

    /// Write all of `bytes`. Waits while the pipe is full (the child is not reading).
    pub async fn write_all(&self, bytes: &[u8]) -> Result<()> {
        let mut guard = self.pipe.lock().await;
        let Some(pipe) = guard.as_mut() else {
            return Err(Error::StdinClosed { pid: self.pid });
        };
        pipe.write_all(bytes)
            .await
            .map_err(|source| Error::StdinWrite {
                pid: self.pid,
                source,
            })
    }

    /// Write one line (a `\n` is appended).
    pub async fn write_line(&self, line: &[u8]) -> Result<()> {
        let mut buf = Vec::with_capacity(line.len() + 1);
        buf.extend_from_slice(line);
        buf.push(b'\n');
        self.write_all(&buf).await
    }

    /// Close stdin: the child reads end-of-file. Waits for a write in progress to finish.
    pub async fn close(&self) {
        self.pipe.lock().await.take();
    }

    /// Close without waiting; returns false if a write holds the pipe right now.
    pub(crate) fn try_close(&self) -> bool {
        match self.pipe.try_lock() {
            Ok(mut guard) => {
                guard.take();
                true
            }
            Err(_) => false,
        }
    }
}
