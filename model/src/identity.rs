//! Workload identity: OpenTelemetry resource attribute names ↔ Pharos label names.
//!
//! On the wire, identity travels as the OpenTelemetry Kubernetes semantic conventions; in storage
//! and queries it is the short labels. Any other attribute becomes a label with `.` (and any other
//! character not valid in a Prometheus label name) replaced by `_`.

/// Resource attribute ↔ short label pairs (ARCHITECTURE.md decision 6).
pub const IDENTITY_ATTRIBUTES: &[(&str, &str)] = &[
    ("k8s.cluster.name", "cluster"),
    ("k8s.node.name", "node"),
    ("k8s.namespace.name", "namespace"),
    ("k8s.pod.name", "pod"),
    ("k8s.container.name", "container"),
];

/// The Pharos label name for an OTLP attribute key.
pub fn attribute_to_label(key: &str) -> String {
    if let Some((_, label)) = IDENTITY_ATTRIBUTES.iter().find(|(attr, _)| *attr == key) {
        return (*label).to_string();
    }
    sanitize_label_name(key)
}

/// The OTLP resource attribute key for a Pharos label name (identity labels map back to the
/// Kubernetes conventions; other labels keep their name).
pub fn label_to_attribute(label: &str) -> &str {
    IDENTITY_ATTRIBUTES
        .iter()
        .find(|(_, l)| *l == label)
        .map(|(attr, _)| *attr)
        .unwrap_or(label)
}

/// Replaces every character that is not `[a-zA-Z0-9_]` with `_`, and prefixes `_` when the name
/// starts with a digit, giving a valid Prometheus label name.
pub fn sanitize_label_name(key: &str) -> String {
    let mut out: String = key
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || c == '_' { c } else { '_' })
        .collect();
    if out.starts_with(|c: char| c.is_ascii_digit()) {
        out.insert(0, '_');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_attributes_become_short_labels() {
        assert_eq!(attribute_to_label("k8s.pod.name"), "pod");
        assert_eq!(attribute_to_label("k8s.cluster.name"), "cluster");
        assert_eq!(attribute_to_label("service.name"), "service_name");
        assert_eq!(attribute_to_label("spark_app_id"), "spark_app_id");
        assert_eq!(label_to_attribute("namespace"), "k8s.namespace.name");
        assert_eq!(label_to_attribute("job"), "job");
    }
}
