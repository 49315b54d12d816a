//! Cross-crate tests of the workspace: the soak ([`soak`], run by `cargo xtask soak` and, in a
//! short form, by the test suite), and the README's examples compiled as doc tests so they
//! cannot rot.
#![doc = include_str!("../README.md")]

pub mod soak;
