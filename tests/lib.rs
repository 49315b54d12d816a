//! Cross-crate integration tests live in `tests/` of this package.
