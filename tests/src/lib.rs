//! Harness for lienthong's multi-process integration tests: building, spawning and
//! observing the real `lienthong` and `lienthong-bootstrap` binaries.
