//! Integration tests of claude-proc against real processes on this machine.

mod support;

mod lifecycle;
