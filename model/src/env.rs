//! `${VAR}` expansion in configuration files, shared by the agent and the control plane, so one
//! ConfigMap serves every node or pod (`node: ${NODE_NAME}`, `instance_id: ${POD_NAME}`).
//!
//! `${VAR}` is replaced by the variable's value and `${VAR:-default}` falls back to `default`
//! when the variable is unset or empty; `$$` is a literal `$`. A referenced variable that is unset
//! without a default is an error naming it, never an empty string.

/// Expands `${VAR}` / `${VAR:-default}` in `text` with `lookup` (usually `std::env::var`).
pub fn expand_with(text: &str, lookup: impl Fn(&str) -> Option<String>) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(body) = after.strip_prefix('{') {
            let end = body.find('}').ok_or_else(|| format!("unterminated ${{ in config near {:?}", &rest[..rest.len().min(30)]))?;
            let expr = &body[..end];
            let (name, default) = match expr.split_once(":-") {
                Some((n, d)) => (n, Some(d)),
                None => (expr, None),
            };
            if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                return Err(format!("invalid environment variable name {name:?} in config"));
            }
            match (lookup(name).filter(|v| !v.is_empty()), default) {
                (Some(v), _) => out.push_str(&v),
                (None, Some(d)) => out.push_str(d),
                (None, None) => {
                    return Err(format!("environment variable {name} is referenced in the config but not set"));
                }
            }
            rest = &body[end + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    Ok(out)
}

/// Expands with the process environment.
pub fn expand(text: &str) -> Result<String, String> {
    expand_with(text, |n| std::env::var(n).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn variables_defaults_escapes_and_errors() {
        let env = |n: &str| match n {
            "NODE_NAME" => Some("worker-3".to_string()),
            "EMPTY" => Some(String::new()),
            _ => None,
        };
        assert_eq!(expand_with("node: ${NODE_NAME}", env).unwrap(), "node: worker-3");
        assert_eq!(expand_with("a: ${MISSING:-x} b: ${EMPTY:-y}", env).unwrap(), "a: x b: y");
        assert_eq!(expand_with("cost: $$5 and $PATH", env).unwrap(), "cost: $5 and $PATH");
        let e = expand_with("id: ${POD_NAME}", env).unwrap_err();
        assert!(e.contains("POD_NAME"), "{e}");
        assert!(expand_with("x: ${NODE_NAME", env).is_err());
        assert!(expand_with("x: ${A B}", env).is_err());
    }
}
