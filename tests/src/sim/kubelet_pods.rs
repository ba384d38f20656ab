//! The kubelet's `/pods` endpoint for one node: a `v1` `PodList` of the pods bound to it.

use serde_json::{Map, Value, json};

use super::world::{Cluster, Pod, PodPhase};

fn rfc3339(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms).unwrap_or_default().format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

#[allow(clippy::manual_is_multiple_of)] // is_multiple_of needs Rust 1.87; the workspace says 1.85
fn quantity_cpu(m: u64) -> String {
    if m % 1000 == 0 { (m / 1000).to_string() } else { format!("{m}m") }
}

#[allow(clippy::manual_is_multiple_of)]
fn quantity_mem(b: u64) -> String {
    const MI: u64 = 1024 * 1024;
    if b % (1024 * MI) == 0 { format!("{}Gi", b / (1024 * MI)) } else { format!("{}Mi", b / MI) }
}

fn pairs(p: &[(String, String)]) -> Value {
    Value::Object(p.iter().map(|(k, v)| (k.clone(), Value::String(v.clone()))).collect::<Map<_, _>>())
}

fn pod_json(cluster: &Cluster, pod: &Pod) -> Value {
    let node = &cluster.nodes[pod.node];
    let containers: Vec<Value> = pod
        .containers
        .iter()
        .map(|c| {
            let mut requests = Map::new();
            requests.insert("cpu".into(), json!(quantity_cpu(c.cpu_request_m)));
            requests.insert("memory".into(), json!(quantity_mem(c.mem_request)));
            let mut limits = Map::new();
            if let Some(l) = c.cpu_limit_m {
                limits.insert("cpu".into(), json!(quantity_cpu(l)));
            }
            if let Some(l) = c.mem_limit {
                limits.insert("memory".into(), json!(quantity_mem(l)));
            }
            json!({
                "name": c.name,
                "image": c.image,
                "ports": c.ports.iter().map(|(n, p)| json!({"name": n, "containerPort": p, "protocol": "TCP"})).collect::<Vec<_>>(),
                "resources": {"requests": requests, "limits": limits},
                "terminationMessagePath": "/dev/termination-log",
                "imagePullPolicy": "IfNotPresent"
            })
        })
        .collect();
    let statuses: Vec<Value> = pod
        .containers
        .iter()
        .map(|c| {
            let state = match pod.phase {
                PodPhase::Pending => json!({"waiting": {"reason": "ContainerCreating"}}),
                PodPhase::Running => json!({"running": {"startedAt": rfc3339(pod.started_ms)}}),
                PodPhase::Succeeded | PodPhase::Failed => json!({"terminated": {
                    "exitCode": if pod.phase == PodPhase::Failed { 1 } else { 0 },
                    "reason": if pod.phase == PodPhase::Failed { "Error" } else { "Completed" },
                    "startedAt": rfc3339(pod.started_ms), "finishedAt": rfc3339(pod.finished_ms.unwrap_or(pod.started_ms)),
                    "containerID": format!("containerd://{}", c.container_id)}}),
            };
            json!({
                "name": c.name,
                "state": state,
                "ready": pod.phase == PodPhase::Running,
                "restartCount": 0,
                "image": c.image,
                "imageID": format!("{}@sha256:{}", c.image.split(':').next().unwrap_or(""), c.container_id),
                "containerID": format!("containerd://{}", c.container_id),
                "started": pod.phase == PodPhase::Running
            })
        })
        .collect();
    let (owner_api, owner_uid) = match pod.owner.0.as_str() {
        "ReplicaSet" | "DaemonSet" => ("apps/v1", format!("{}-owner", &pod.uid[..8])),
        "SparkApplication" => ("sparkoperator.k8s.io/v1beta2", format!("{}-owner", &pod.uid[..8])),
        _ => ("v1", cluster.pods.iter().find(|p| p.name == pod.owner.1).map(|p| p.uid.clone()).unwrap_or_default()),
    };
    json!({
        "metadata": {
            "name": pod.name,
            "namespace": pod.namespace,
            "uid": pod.uid,
            "resourceVersion": (pod.created_ms / 1000 % 10_000_000).to_string(),
            "creationTimestamp": rfc3339(pod.created_ms),
            "labels": pairs(&pod.labels),
            "annotations": pairs(&pod.annotations),
            "ownerReferences": [{"apiVersion": owner_api, "kind": pod.owner.0, "name": pod.owner.1, "uid": owner_uid, "controller": true, "blockOwnerDeletion": true}]
        },
        "spec": {
            "containers": containers,
            "restartPolicy": if pod.spark_app.is_some() { "Never" } else { "Always" },
            "nodeName": node.name,
            "serviceAccountName": if pod.spark_app.is_some() { "spark" } else { "default" },
            "schedulerName": "default-scheduler"
        },
        "status": {
            "phase": pod.phase.as_str(),
            "hostIP": node.ip,
            "podIP": pod.ip,
            "podIPs": [{"ip": pod.ip}],
            "startTime": rfc3339(pod.created_ms),
            "qosClass": if pod.containers.iter().all(|c| c.cpu_limit_m == Some(c.cpu_request_m) && c.mem_limit == Some(c.mem_request)) { "Guaranteed" } else { "Burstable" },
            "containerStatuses": statuses
        }
    })
}

/// The `/pods` body of node `node` of `cluster`.
pub fn render(cluster: &Cluster, node: usize) -> String {
    let items: Vec<Value> = cluster.pods.iter().filter(|p| p.node == node).map(|p| pod_json(cluster, p)).collect();
    json!({"kind": "PodList", "apiVersion": "v1", "metadata": {}, "items": items}).to_string()
}
