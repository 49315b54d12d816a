//! Output integrity: nothing lost, nothing reordered, no pipe deadlock, bounded lines.

use std::hash::Hasher;
use std::io::Write;

use claude_proc::{spawn, OutputEvent, OutputMode};

use crate::support::*;

/// 100 MB of pseudo-random bytes through a raw chunk stream arrive byte-exact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundred_megabytes_arrive_byte_exact() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("blob");
    let mut rng = fastrand::Rng::with_seed(42);
    let mut expected = std::collections::hash_map::DefaultHasher::new();
    {
        let mut file = std::io::BufWriter::new(std::fs::File::create(&path).unwrap());
        let mut block = vec![0u8; 1 << 20];
        for _ in 0..100 {
            rng.fill(&mut block);
            expected.write(&block);
            file.write_all(&block).unwrap();
        }
    }
    let config = claude_proc::ProcessConfig::builder("/bin/cat")
        .arg(&path)
        .stdout(OutputMode::Chunks)
        .build()
        .unwrap();
    let mut child = spawn(&config).await.unwrap();
    let mut out = child.take_stdout().unwrap();
    let mut got = std::collections::hash_map::DefaultHasher::new();
    let mut total = 0usize;
    // Hash in the same 1 MiB blocks as the writer so the streaming hashes compare.
    let mut pending: Vec<u8> = Vec::with_capacity(2 << 20);
    while let Some(event) = out.recv().await {
        let OutputEvent::Chunk(bytes) = event else {
            panic!("expected chunks")
        };
        total += bytes.len();
        pending.extend_from_slice(&bytes);
        while pending.len() >= 1 << 20 {
            got.write(&pending[..1 << 20]);
            pending.drain(..1 << 20);
        }
    }
    assert!(pending.is_empty());
    assert_eq!(total, 100 << 20);
    assert_eq!(got.finish(), expected.finish());
    assert!(child.wait().await.unwrap().reason.success());
}

/// Line framing of ~100 MB of numbered lines: every line, in order, none lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn numbered_lines_arrive_in_order() {
    let n = 12_000_000u64;
    let config = claude_proc::ProcessConfig::builder("/usr/bin/seq")
        .arg("1")
        .arg(n.to_string())
        .stdout(lines())
        .output_buffer(1024)
        .build()
        .unwrap();
    let mut child = spawn(&config).await.unwrap();
    let mut out = child.take_stdout().unwrap();
    let mut next = 1u64;
    let mut bytes = 0usize;
    while let Some(event) = out.recv().await {
        let OutputEvent::Line(line) = event else {
            panic!("unexpected {event:?}")
        };
        bytes += line.len() + 1;
        let value: u64 = std::str::from_utf8(&line).unwrap().parse().unwrap();
        assert_eq!(value, next);
        next += 1;
    }
    assert_eq!(next, n + 1);
    assert!(bytes > 90_000_000, "{bytes}");
    assert!(child.wait().await.unwrap().reason.success());
}

/// Lines over 1 MiB come as oversized fragments that rebuild the exact line.
#[tokio::test]
async fn lines_over_one_mebibyte_are_fragments_not_drops() {
    let max = 1 << 20;
    // 3 MiB + 5 bytes of 'x', a newline, then a short line.
    let script = "head -c 3145733 /dev/zero | tr '\\0' x; echo; echo after";
    let config = sh(script)
        .stdout(OutputMode::Lines { max_line: max })
        .build()
        .unwrap();
    let mut child = spawn(&config).await.unwrap();
    let mut out = child.take_stdout().unwrap();
    let mut long = Vec::new();
    let mut fragments = 0;
    let mut lines = Vec::new();
    while let Some(event) = out.recv().await {
        match event {
            OutputEvent::Oversized { fragment, end } => {
                assert!(fragment.len() <= max);
                fragments += 1;
                long.extend_from_slice(&fragment);
                if end {
                    assert_eq!(long.len(), 3_145_733);
                }
            }
            OutputEvent::Line(l) => lines.push(l),
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(fragments, 4);
    assert!(long.iter().all(|b| *b == b'x'));
    assert_eq!(lines, vec![b"after".to_vec()]);
    child.wait().await.unwrap();
}

/// A child that floods stderr (far past the 64 KiB pipe buffer) while the caller reads only
/// stdout does not deadlock: stderr is drained concurrently and its tail kept.
#[tokio::test]
async fn stderr_flood_does_not_block_stdout() {
    let script =
        "head -c 4000000 /dev/zero | tr '\\0' e >&2; echo done; echo last-words >&2; exit 2";
    let config = sh(script).stdout(lines()).build().unwrap();
    let mut child = spawn(&config).await.unwrap();
    let mut out = child.take_stdout().unwrap();
    let got = tokio::time::timeout(std::time::Duration::from_secs(20), read_lines(&mut out, 1))
        .await
        .expect("stdout blocked behind a full stderr pipe");
    assert_eq!(got, vec!["done"]);
    let info = child.wait().await.unwrap();
    assert!(
        info.stderr_tail.ends_with("last-words\n"),
        "{:?}",
        &info.stderr_tail[info.stderr_tail.len().saturating_sub(40)..]
    );
    assert!(info.stderr_tail.len() <= 8 * 1024);
    // The exit error carries the tail.
    let err = info.into_result().unwrap_err().to_string();
    assert!(
        err.contains("exited with code 2") && err.contains("last-words"),
        "{err}"
    );
}

/// A slow consumer back-pressures the child instead of losing output.
#[tokio::test]
async fn slow_consumer_back_pressures_without_loss() {
    let config = claude_proc::ProcessConfig::builder("/usr/bin/seq")
        .args(["1", "200000"])
        .stdout(lines())
        .output_buffer(4)
        .build()
        .unwrap();
    let mut child = spawn(&config).await.unwrap();
    let mut out = child.take_stdout().unwrap();
    // Let the pipe and channel fill: the child must still be alive, blocked on write.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert!(
        alive(child.pid()),
        "child finished although nobody read its output"
    );
    let mut next = 1u32;
    while let Some(OutputEvent::Line(l)) = out.recv().await {
        assert_eq!(
            std::str::from_utf8(&l).unwrap().parse::<u32>().unwrap(),
            next
        );
        next += 1;
    }
    assert_eq!(next, 200_001);
    child.wait().await.unwrap();
}
