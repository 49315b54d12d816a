//! Cross-crate integration tests live in `tests/` of this package; the README's examples are
//! compiled here as doc tests, so they cannot rot.
#![doc = include_str!("../README.md")]
