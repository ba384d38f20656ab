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

#[test]
fn an_agent_vrl_program_that_does_not_compile_exits_2_naming_file_field_and_position() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("agent-bad-vrl.yaml");
    let yaml = "logs:\n  transforms:\n    - type: remap\n      source: |\n        .ok = 1\n        .labels.x = parse_json(.message)\n";
    std::fs::write(&path, yaml).unwrap();
    let out = check("pharos-agent", &path);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains(&path.display().to_string()), "{err}");
    assert!(err.contains("logs.transforms[0].source"), "{err}");
    // Line 2 of the program, at `parse_json` (column 13, after `.labels.x = `).
    assert!(err.contains("error[E103]") && err.contains(":2:13"), "{err}");
}
