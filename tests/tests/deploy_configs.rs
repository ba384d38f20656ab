//! Every example config shipped in deploy/ loads with the real loaders (`check-config` of both
//! binaries), and a broken copy of each is refused.

use std::process::Command;

use pharos_e2e::{bin, repo_root};

fn check(binary: &str, path: &std::path::Path) -> std::process::Output {
    let mut cmd = Command::new(bin(binary));
    if binary == "pharos" {
        cmd.arg("check-config").arg(path);
    } else {
        cmd.arg("--check-config").arg("--config").arg(path);
    }
    // The variables the DaemonSet/StatefulSet pass through the downward API.
    cmd.env("NODE_NAME", "node-a").env("NODE_IP", "10.0.0.7").env("POD_NAME", "pharos-0");
    cmd.output().expect("run check")
}

#[test]
fn every_example_config_loads_and_a_typo_is_refused() {
    let dir = repo_root().join("deploy/examples");
    let tmp = tempfile::tempdir().unwrap();
    let mut checked = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        let binary = if name.starts_with("agent") { "pharos-agent" } else { "pharos" };
        let out = check(binary, &path);
        assert!(out.status.success(), "{name}: {}", String::from_utf8_lossy(&out.stderr));
        // A misspelt top-level key must be refused, naming the key.
        let broken = tmp.path().join(&name);
        std::fs::write(&broken, format!("{}\nlistn: 1\n", std::fs::read_to_string(&path).unwrap())).unwrap();
        let out = check(binary, &broken);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && err.contains("listn"), "{name} with a typo: {err}");
        checked += 1;
    }
    assert_eq!(checked, 4, "every example in deploy/examples is checked");
}
