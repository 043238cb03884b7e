//! `lienthong init` through the real binary: the files it lays out, what it prints, and
//! that it checks every argument before writing anything and never overwrites a node.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::os::unix::fs::PermissionsExt;
use std::process::Command;

use lienthong_node::config::{Config, ConfigError, Overrides};
use lienthong_node::federation::MemberRequest;

fn init(dir: &std::path::Path, tenants: &[&str]) -> std::process::Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_lienthong"));
    cmd.arg("init").arg("--dir").arg(dir);
    for t in tenants {
        cmd.arg("--tenant").arg(t);
    }
    cmd.args(["--advertise", "/ip4/203.0.113.7/tcp/4001"]);
    cmd.output().unwrap()
}

#[test]
fn init_lays_out_a_node_and_never_overwrites_one() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("node");

    // A bad second tenant: refused before anything is written.
    let out = init(&dir, &["000.00.00.H41=UBND tỉnh A", "not-a-code=B"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not-a-code"));
    assert!(
        !dir.join("keys").exists(),
        "nothing written on a refused init"
    );

    let out = init(&dir, &["000.00.00.H41=UBND tỉnh A", "000.00.01.H41=Sở B"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert_eq!(stdout.matches("API token for").count(), 2, "{stdout}");
    for key in [
        "transport.key",
        "000.00.00.H41.signing.key",
        "000.00.00.H41.encryption.key",
        "000.00.01.H41.signing.key",
        "000.00.01.H41.encryption.key",
    ] {
        let mode = std::fs::metadata(dir.join("keys").join(key))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{key}");
    }
    let members: Vec<MemberRequest> =
        serde_json::from_slice(&std::fs::read(dir.join("member.json")).unwrap()).unwrap();
    assert_eq!(members.len(), 2);
    assert!(stdout.contains(&members[0].node), "the peer id is printed");
    assert_eq!(members[0].addrs, ["/ip4/203.0.113.7/tcp/4001"]);
    for m in &members {
        m.to_entry().unwrap();
    }

    // The configuration is complete but for the roster the central office sends back.
    let err = Config::load(&dir.join("config.toml"), Overrides::default()).unwrap_err();
    assert!(
        matches!(&err, ConfigError::Read { path, .. } if path.ends_with("roster.cbor")),
        "{err}"
    );

    // A second init into the same directory is refused and changes nothing.
    let before = std::fs::read(dir.join("config.toml")).unwrap();
    let out = init(&dir, &["000.00.00.H44=UBND tỉnh C"]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(std::fs::read(dir.join("config.toml")).unwrap(), before);
}
