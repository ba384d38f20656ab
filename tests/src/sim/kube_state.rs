//! kube-state-metrics' `/metrics` for one cluster: nodes (labels for instance type, capacity
//! type and zone; capacity and allocatable), pods (info, labels, phase, owner), containers'
//! resource requests and limits, namespaces.

use super::exposition::Exposition;
use super::world::{Cluster, PodPhase};

/// The exposition body of kube-state-metrics for `cluster`.
pub fn render(cluster: &Cluster) -> String {
    let mut e = Exposition::new();
    e.family("kube_node_info", "gauge", "Information about a cluster node.");
    for n in &cluster.nodes {
        let provider = format!("aws:///{}/i-0{}", n.zone, &n.name[3..].replace(['-', '.'], "").chars().take(16).collect::<String>());
        e.sample("kube_node_info", &[("container_runtime_version", "containerd://1.7.23"), ("internal_ip", &n.ip),
            ("kernel_version", "6.1.119-129.201.amzn2023.x86_64"), ("kubelet_version", "v1.31.3-eks-59bf375"),
            ("kubeproxy_version", "v1.31.3-eks-59bf375"), ("node", &n.name), ("os_image", "Amazon Linux 2023.6.20241212"),
            ("provider_id", &provider), ("system_uuid", "ec2")], 1.0);
    }
    e.family("kube_node_labels", "gauge", "Kubernetes labels converted to Prometheus labels.");
    for n in &cluster.nodes {
        e.sample("kube_node_labels", &[("label_karpenter_sh_capacity_type", n.capacity_type),
            ("label_kubernetes_io_arch", "amd64"), ("label_node_kubernetes_io_instance_type", n.instance_type),
            ("label_topology_kubernetes_io_region", "us-east-1"), ("label_topology_kubernetes_io_zone", n.zone), ("node", &n.name)], 1.0);
    }
    for (family, help, alloc) in [
        ("kube_node_status_allocatable", "The allocatable for different resources of a node that are available for scheduling.", true),
        ("kube_node_status_capacity", "The capacity for different resources of a node.", false),
    ] {
        e.family(family, "gauge", help);
        for n in &cluster.nodes {
            let (cpu, mem) = if alloc {
                (Cluster::allocatable_cpu_m(n) as f64 / 1000.0, Cluster::allocatable_mem(n) as f64)
            } else {
                (n.cpus as f64, n.mem_bytes as f64)
            };
            e.sample(family, &[("node", &n.name), ("resource", "cpu"), ("unit", "core")], cpu);
            e.sample(family, &[("node", &n.name), ("resource", "ephemeral_storage"), ("unit", "byte")], 107_361_579_008.0);
            e.sample(family, &[("node", &n.name), ("resource", "memory"), ("unit", "byte")], mem);
            e.sample(family, &[("node", &n.name), ("resource", "pods"), ("unit", "integer")], 58.0);
        }
    }
    e.family("kube_node_status_condition", "gauge", "The condition of a cluster node.");
    for n in &cluster.nodes {
        for (status, v) in [("false", 0.0), ("true", 1.0), ("unknown", 0.0)] {
            e.sample("kube_node_status_condition", &[("condition", "Ready"), ("node", &n.name), ("status", status)], v);
        }
    }
    let mut namespaces: Vec<(&str, &str)> = cluster.pods.iter().map(|p| (p.namespace.as_str(), p.team.as_str())).collect();
    namespaces.sort();
    namespaces.dedup_by(|a, b| a.0 == b.0);
    e.family("kube_namespace_labels", "gauge", "Kubernetes labels converted to Prometheus labels.");
    for (ns, team) in &namespaces {
        e.sample("kube_namespace_labels", &[("label_kubernetes_io_metadata_name", ns), ("label_team", team), ("namespace", ns)], 1.0);
    }
    e.family("kube_pod_info", "gauge", "Information about pod.");
    for p in &cluster.pods {
        let node = &cluster.nodes[p.node];
        e.sample("kube_pod_info", &[("created_by_kind", &p.owner.0), ("created_by_name", &p.owner.1), ("host_ip", &node.ip),
            ("host_network", "false"), ("namespace", &p.namespace), ("node", &node.name), ("pod", &p.name), ("pod_ip", &p.ip),
            ("priority_class", ""), ("uid", &p.uid)], 1.0);
    }
    e.family("kube_pod_owner", "gauge", "Information about the Pod's owner.");
    for p in &cluster.pods {
        e.sample("kube_pod_owner", &[("namespace", &p.namespace), ("owner_is_controller", "true"), ("owner_kind", &p.owner.0),
            ("owner_name", &p.owner.1), ("pod", &p.name), ("uid", &p.uid)], 1.0);
    }
    e.family("kube_pod_labels", "gauge", "Kubernetes labels converted to Prometheus labels.");
    for p in &cluster.pods {
        e.sample("kube_pod_labels", &[("label_app", &p.app), ("label_team", &p.team), ("namespace", &p.namespace), ("pod", &p.name), ("uid", &p.uid)], 1.0);
    }
    e.family("kube_pod_created", "gauge", "Unix creation timestamp");
    for p in &cluster.pods {
        e.sample("kube_pod_created", &[("namespace", &p.namespace), ("pod", &p.name), ("uid", &p.uid)], (p.created_ms / 1000) as f64);
    }
    e.family("kube_pod_status_phase", "gauge", "The pods current phase.");
    for p in &cluster.pods {
        for phase in [PodPhase::Failed, PodPhase::Pending, PodPhase::Running, PodPhase::Succeeded] {
            let v = if p.phase == phase { 1.0 } else { 0.0 };
            e.sample("kube_pod_status_phase", &[("namespace", &p.namespace), ("phase", phase.as_str()), ("pod", &p.name), ("uid", &p.uid)], v);
        }
        e.sample("kube_pod_status_phase", &[("namespace", &p.namespace), ("phase", "Unknown"), ("pod", &p.name), ("uid", &p.uid)], 0.0);
    }
    e.family("kube_pod_container_info", "gauge", "Information about a container in a pod.");
    for p in &cluster.pods {
        for c in &p.containers {
            let cid = format!("containerd://{}", c.container_id);
            e.sample("kube_pod_container_info", &[("container", &c.name), ("container_id", &cid), ("image", &c.image),
                ("image_id", &format!("{}@sha256:{}", c.image.split(':').next().unwrap_or(""), &c.container_id)),
                ("image_spec", &c.image), ("namespace", &p.namespace), ("pod", &p.name), ("uid", &p.uid)], 1.0);
        }
    }
    for (family, help, limits) in [
        ("kube_pod_container_resource_limits", "The number of requested limit resource by a container. It is recommended to use the kube_pod_resource_limits metric exposed by kube-scheduler instead, as it is more precise.", true),
        ("kube_pod_container_resource_requests", "The number of requested request resource by a container. It is recommended to use the kube_pod_resource_requests metric exposed by kube-scheduler instead, as it is more precise.", false),
    ] {
        e.family(family, "gauge", help);
        for p in &cluster.pods {
            let node = &cluster.nodes[p.node].name;
            for c in &p.containers {
                let (cpu, mem) = if limits { (c.cpu_limit_m, c.mem_limit) } else { (Some(c.cpu_request_m), Some(c.mem_request)) };
                let base = [("container", c.name.as_str()), ("namespace", p.namespace.as_str()), ("node", node.as_str()), ("pod", p.name.as_str())];
                if let Some(cpu) = cpu {
                    e.sample(family, &[base[0], base[1], base[2], base[3], ("resource", "cpu"), ("uid", &p.uid), ("unit", "core")], cpu as f64 / 1000.0);
                }
                if let Some(mem) = mem {
                    e.sample(family, &[base[0], base[1], base[2], base[3], ("resource", "memory"), ("uid", &p.uid), ("unit", "byte")], mem as f64);
                }
            }
        }
    }
    e.finish()
}
