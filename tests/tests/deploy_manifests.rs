//! The Kubernetes manifests and the Helm chart in deploy/ parse, hang together, and embed configs
//! that the real loaders accept.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use pharos_e2e::{bin, repo_root};
use serde_yaml::Value;

fn yaml_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            yaml_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "yaml") {
            out.push(p);
        }
    }
}

fn documents(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap();
    serde_yaml::Deserializer::from_str(&text)
        .map(|d| Value::deserialize(d).unwrap_or_else(|e| panic!("{}: {e}", path.display())))
        .filter(|v| !v.is_null())
        .collect()
}

use serde::Deserialize;

/// Runs the real loader of `binary` on `config` text with the downward-API variables set.
fn check_config(binary: &str, config: &str) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.yaml");
    std::fs::write(&path, config).unwrap();
    let mut cmd = Command::new(bin(binary));
    if binary == "pharos" {
        cmd.arg("check-config").arg(&path);
    } else {
        cmd.args(["--check-config", "--config"]).arg(&path);
    }
    let out = cmd.env("NODE_NAME", "node-a").env("NODE_IP", "10.0.0.7").env("POD_NAME", "pharos-0").output().unwrap();
    assert!(out.status.success(), "{binary} refused:\n{config}\n{}", String::from_utf8_lossy(&out.stderr));
}

fn get<'a>(v: &'a Value, path: &str) -> &'a Value {
    path.split('.').fold(v, |v, k| &v[k])
}

#[test]
fn kubernetes_manifests_parse_and_embed_valid_configs() {
    let root = repo_root().join("deploy/kubernetes");
    let mut files = Vec::new();
    yaml_files(&root, &mut files);
    let mut kinds = BTreeSet::new();
    let mut service_accounts = BTreeSet::new();
    let mut daemonset = None;
    let mut statefulset = None;
    let mut service = None;
    for f in &files {
        for doc in documents(f) {
            let kind = doc["kind"].as_str().unwrap_or_else(|| panic!("{}: a document without kind", f.display()));
            if kind == "Kustomization" {
                for r in doc["resources"].as_sequence().unwrap() {
                    let target = f.parent().unwrap().join(r.as_str().unwrap());
                    assert!(target.is_file() || target.join("kustomization.yaml").is_file(), "{}: {target:?} missing", f.display());
                }
                continue;
            }
            assert!(doc["apiVersion"].is_string() && get(&doc, "metadata.name").is_string(), "{}: {kind}", f.display());
            kinds.insert(kind.to_string());
            match kind {
                "ConfigMap" => {
                    for (key, binary) in [("agent.yaml", "pharos-agent"), ("pharos.yaml", "pharos")] {
                        if let Some(cfg) = get(&doc, "data")[key].as_str() {
                            check_config(binary, cfg);
                        }
                    }
                }
                "ServiceAccount" => {
                    service_accounts.insert(get(&doc, "metadata.name").as_str().unwrap().to_string());
                }
                "DaemonSet" => daemonset = Some(doc),
                "StatefulSet" => statefulset = Some(doc),
                "Service" => service = Some(doc),
                _ => {}
            }
        }
    }
    for k in ["Namespace", "ServiceAccount", "ClusterRole", "ClusterRoleBinding", "ConfigMap", "DaemonSet", "StatefulSet", "Service"] {
        assert!(kinds.contains(k), "no {k} in deploy/kubernetes");
    }
    let ds = daemonset.unwrap();
    let pod = get(&ds, "spec.template.spec");
    assert!(service_accounts.contains(pod["serviceAccountName"].as_str().unwrap()));
    let host_paths: Vec<&str> = pod["volumes"].as_sequence().unwrap().iter().filter_map(|v| get(v, "hostPath.path").as_str()).collect();
    assert!(host_paths.contains(&"/var/log/pods"), "{host_paths:?}");
    assert!(host_paths.iter().any(|p| p.contains("pharos-agent")), "data dir for checkpoints/buffer: {host_paths:?}");
    let c = &pod["containers"][0];
    assert!(get(c, "resources.requests").is_mapping(), "agent resource requests");
    assert!(c["env"].as_sequence().unwrap().iter().any(|e| e["name"] == "NODE_NAME"));

    let ss = statefulset.unwrap();
    assert!(get(&ss, "spec.volumeClaimTemplates").is_sequence(), "control plane keeps its data on a PVC");
    let svc = service.unwrap();
    let target = get(&svc, "spec.ports")[0]["targetPort"].as_str().unwrap();
    let ports = &get(&ss, "spec.template.spec.containers")[0]["ports"];
    assert!(ports.as_sequence().unwrap().iter().any(|p| p["name"].as_str() == Some(target)), "service targets a named container port");
}

#[test]
fn helm_chart_values_exist_and_embedded_configs_load() {
    let chart = repo_root().join("deploy/helm/pharos");
    let meta = &documents(&chart.join("Chart.yaml"))[0];
    assert_eq!(meta["apiVersion"], "v2");
    let values = &documents(&chart.join("values.yaml"))[0];
    // Every `.Values.a.b` a template references must exist in values.yaml.
    let mut referenced = 0;
    for entry in std::fs::read_dir(chart.join("templates")).unwrap() {
        let text = std::fs::read_to_string(entry.unwrap().path()).unwrap();
        for (i, _) in text.match_indices(".Values.") {
            let path: String = text[i + 8..].chars().take_while(|c| c.is_alphanumeric() || *c == '.' || *c == '_').collect();
            let path = path.trim_end_matches('.');
            assert!(!get(values, path).is_null(), "template references .Values.{path}, not in values.yaml");
            referenced += 1;
        }
    }
    assert!(referenced > 10);
    check_config("pharos-agent", &serde_yaml::to_string(get(values, "agent.config")).unwrap());
    check_config("pharos", &serde_yaml::to_string(get(values, "controlPlane.config")).unwrap());
}
