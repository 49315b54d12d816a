//! Draining the child's stdout and stderr: line framing, chunks, the stderr tail.
//!
//! Each piped stream has its own reader task, so a full stderr pipe never blocks a reader of
//! stdout (the 64 KiB pipe deadlock). Events go to a bounded channel: a slow consumer makes the
//! reader wait, the pipe fill and the child block (back-pressure); nothing is dropped. A consumer
//! that drops its receiver turns the stream into a drain.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use tokio::net::unix::pipe;
use tokio::sync::mpsc;

/// One unit of a child's output.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum OutputEvent {
    /// A complete line, without its `\n`.
    Line(Vec<u8>),
    /// The last bytes of the stream, which ended without `\n`.
    Unterminated(Vec<u8>),
    /// A piece of a line longer than the maximum: pieces of at most `max_line` bytes, in order;
    /// `end` is set on the piece the line's `\n` followed. A stream that ends inside an
    /// oversized line simply ends (its last piece has `end: false`).
    Oversized {
        /// The bytes of this piece.
        fragment: Vec<u8>,
        /// Whether this is the line's last piece.
        end: bool,
    },
    /// Raw bytes (`OutputMode::Chunks`).
    Chunk(Vec<u8>),
}

/// Splits a byte stream into lines of bounded size. Pure: no IO, so it is tested directly.
#[derive(Debug)]
pub(crate) struct LineFramer {
    max: usize,
    buf: Vec<u8>,
    oversized: bool,
}

impl LineFramer {
    pub(crate) fn new(max: usize) -> Self {
        LineFramer {
            max: max.max(1),
            buf: Vec::new(),
            oversized: false,
        }
    }

    /// Feed bytes; complete events are appended to `out`.
    pub(crate) fn push(&mut self, mut data: &[u8], out: &mut Vec<OutputEvent>) {
        while let Some(nl) = data.iter().position(|b| *b == b'\n') {
            let (line, rest) = data.split_at(nl);
            self.buf.extend_from_slice(line);
            self.finish_line(out);
            data = rest.get(1..).unwrap_or_default();
        }
        self.buf.extend_from_slice(data);
        while self.buf.len() > self.max {
            let fragment: Vec<u8> = self.buf.drain(..self.max).collect();
            self.oversized = true;
            out.push(OutputEvent::Oversized {
                fragment,
                end: false,
            });
        }
    }

    fn finish_line(&mut self, out: &mut Vec<OutputEvent>) {
        let line = std::mem::take(&mut self.buf);
        if self.oversized || line.len() > self.max {
            let mut pieces = line.chunks(self.max).peekable();
            if pieces.peek().is_none() {
                out.push(OutputEvent::Oversized {
                    fragment: Vec::new(),
                    end: true,
                });
            }
            while let Some(piece) = pieces.next() {
                out.push(OutputEvent::Oversized {
                    fragment: piece.to_vec(),
                    end: pieces.peek().is_none(),
                });
            }
            self.oversized = false;
        } else {
            out.push(OutputEvent::Line(line));
        }
    }

    /// End of stream: flush what is left.
    pub(crate) fn finish(&mut self, out: &mut Vec<OutputEvent>) {
        if self.oversized {
            let fragment = std::mem::take(&mut self.buf);
            if !fragment.is_empty() {
                out.push(OutputEvent::Oversized {
                    fragment,
                    end: false,
                });
            }
            self.oversized = false;
        } else if !self.buf.is_empty() {
            out.push(OutputEvent::Unterminated(std::mem::take(&mut self.buf)));
        }
    }
}

/// The last bytes of a stream (stderr), shared with the exit path.
#[derive(Debug, Clone)]
pub(crate) struct Tail {
    cap: usize,
    bytes: Arc<Mutex<VecDeque<u8>>>,
}

impl Tail {
    pub(crate) fn new(cap: usize) -> Self {
        Tail {
            cap,
            bytes: Arc::new(Mutex::new(VecDeque::new())),
        }
    }

    pub(crate) fn push(&self, data: &[u8]) {
        if self.cap == 0 {
            return;
        }
        let mut bytes = self.bytes.lock().unwrap_or_else(|p| p.into_inner());
        let data = if data.len() > self.cap {
            data.get(data.len() - self.cap..).unwrap_or_default()
        } else {
            data
        };
        let overflow = (bytes.len() + data.len()).saturating_sub(self.cap);
        let len = bytes.len();
        bytes.drain(..overflow.min(len));
        bytes.extend(data);
    }

    pub(crate) fn text(&self) -> String {
        let bytes = self.bytes.lock().unwrap_or_else(|p| p.into_inner());
        let (a, b) = bytes.as_slices();
        let mut all = Vec::with_capacity(a.len() + b.len());
        all.extend_from_slice(a);
        all.extend_from_slice(b);
        String::from_utf8_lossy(&all).into_owned()
    }
}

/// Receives one stream's events, in order. The stream ended when `recv` returns `None`.
#[derive(Debug)]
pub struct OutputReceiver {
    rx: mpsc::Receiver<OutputEvent>,
}

impl OutputReceiver {
    /// A receiver fed from `rx`: for an upper layer that looks at a child's output and passes
    /// it on (the stream ends when every sender is dropped).
    pub fn from_channel(rx: mpsc::Receiver<OutputEvent>) -> Self {
        OutputReceiver { rx }
    }

    /// The next event, or `None` at the end of the stream.
    pub async fn recv(&mut self) -> Option<OutputEvent> {
        self.rx.recv().await
    }
}

/// How the reader handles what it reads.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Framing {
    Lines(usize),
    Chunks,
    Discard,
}

/// Start the reader task for one stream; returns the receiver (none for `Discard`) and the task.
pub(crate) fn start_reader(
    pipe: pipe::Receiver,
    framing: Framing,
    tail: Option<Tail>,
    buffer: usize,
) -> (Option<OutputReceiver>, tokio::task::JoinHandle<()>) {
    let (tx, rx) = match framing {
        Framing::Discard => (None, None),
        _ => {
            let (tx, rx) = mpsc::channel(buffer);
            (Some(tx), Some(OutputReceiver { rx }))
        }
    };
    let task = tokio::spawn(read_loop(pipe, framing, tail, tx));
    (rx, task)
}

/// The most one read of a child's pipe takes.
const READ_BUFFER: usize = 64 * 1024;

async fn read_loop(
    pipe: pipe::Receiver,
    framing: Framing,
    tail: Option<Tail>,
    mut tx: Option<mpsc::Sender<OutputEvent>>,
) {
    let mut framer = match framing {
        Framing::Lines(max) => Some(LineFramer::new(max)),
        _ => None,
    };
    // The read buffer exists only while the pipe has data: an idle child (most of a fleet,
    // most of the time) costs no buffer, where a buffer held across the wait cost 64 KiB of
    // resident memory per stream.
    let mut buf: Vec<u8> = Vec::new();
    let mut events = Vec::new();
    loop {
        if buf.is_empty() {
            if let Err(e) = pipe.readable().await {
                tracing::warn!(error = %e, "waiting for child output failed");
                break;
            }
            buf = vec![0u8; READ_BUFFER];
        }
        let n = match pipe.try_read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                buf = Vec::new();
                continue;
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                tracing::warn!(error = %e, "reading child output failed");
                break;
            }
        };
        let data = buf.get(..n).unwrap_or_default();
        if let Some(tail) = &tail {
            tail.push(data);
        }
        match (&mut framer, framing) {
            (Some(framer), _) => framer.push(data, &mut events),
            (None, Framing::Chunks) => events.push(OutputEvent::Chunk(data.to_vec())),
            _ => {}
        }
        deliver(&mut tx, &mut events).await;
    }
    if let Some(framer) = &mut framer {
        framer.finish(&mut events);
        deliver(&mut tx, &mut events).await;
    }
}

async fn deliver(tx: &mut Option<mpsc::Sender<OutputEvent>>, events: &mut Vec<OutputEvent>) {
    for event in events.drain(..) {
        if let Some(sender) = tx {
            if sender.send(event).await.is_err() {
                // The consumer is gone: keep draining so the child never blocks on a full pipe.
                *tx = None;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn frame(max: usize, chunks: &[&[u8]]) -> Vec<OutputEvent> {
        let mut f = LineFramer::new(max);
        let mut out = Vec::new();
        for c in chunks {
            f.push(c, &mut out);
        }
        f.finish(&mut out);
        out
    }

    /// Rebuild the byte stream from events (the "nothing lost" property).
    fn rebuild(events: &[OutputEvent]) -> Vec<u8> {
        let mut out = Vec::new();
        for e in events {
            match e {
                OutputEvent::Line(l) => {
                    out.extend_from_slice(l);
                    out.push(b'\n');
                }
                OutputEvent::Unterminated(l) | OutputEvent::Chunk(l) => out.extend_from_slice(l),
                OutputEvent::Oversized { fragment, end } => {
                    out.extend_from_slice(fragment);
                    if *end {
                        out.push(b'\n');
                    }
                }
            }
        }
        out
    }

    #[test]
    fn lines_split_across_chunks() {
        let ev = frame(100, &[b"ab", b"c\nde", b"f\n", b"tail"]);
        assert_eq!(
            ev,
            vec![
                OutputEvent::Line(b"abc".to_vec()),
                OutputEvent::Line(b"def".to_vec()),
                OutputEvent::Unterminated(b"tail".to_vec()),
            ]
        );
    }

    #[test]
    fn oversized_line_is_fragmented_not_dropped() {
        let ev = frame(4, &[b"0123456789\nok\n"]);
        assert_eq!(
            ev,
            vec![
                OutputEvent::Oversized {
                    fragment: b"0123".to_vec(),
                    end: false
                },
                OutputEvent::Oversized {
                    fragment: b"4567".to_vec(),
                    end: false
                },
                OutputEvent::Oversized {
                    fragment: b"89".to_vec(),
                    end: true
                },
                OutputEvent::Line(b"ok".to_vec()),
            ]
        );
    }

    #[test]
    fn tail_keeps_last_bytes() {
        let t = Tail::new(5);
        t.push(b"hello ");
        t.push(b"world");
        assert_eq!(t.text(), "world");
        t.push(b"!");
        assert_eq!(t.text(), "orld!");
        t.push(b"0123456789");
        assert_eq!(t.text(), "56789");
    }

    proptest! {
        #[test]
        fn framing_loses_nothing(data in proptest::collection::vec(prop_oneof![Just(b'\n'), any::<u8>()], 0..2000),
                                 max in 1usize..64,
                                 cuts in proptest::collection::vec(0usize..2000, 0..8)) {
            let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c.min(data.len())).collect();
            cuts.sort();
            let mut chunks: Vec<&[u8]> = Vec::new();
            let mut last = 0;
            for c in cuts { chunks.push(&data[last..c]); last = c; }
            chunks.push(&data[last..]);
            let ev = frame(max, &chunks);
            prop_assert_eq!(rebuild(&ev), data);
            for e in &ev {
                match e {
                    OutputEvent::Line(l) | OutputEvent::Unterminated(l) => prop_assert!(l.len() <= max),
                    OutputEvent::Oversized { fragment, .. } => prop_assert!(fragment.len() <= max),
                    OutputEvent::Chunk(_) => prop_assert!(false),
                }
            }
        }
    }
}
