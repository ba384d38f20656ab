//! `label(labels, 'name')`: one label's value out of the `labels` JSON object, or NULL.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, StringBuilder};
use arrow::compute::cast;
use arrow::datatypes::DataType;
use datafusion::common::cast::as_string_array;
use datafusion::error::Result as DfResult;
use datafusion::logical_expr::{ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility};

/// The `label` function (see the module docs). Values that are not JSON strings (never written
/// by Pharos, but possible in files written by others) come back as their JSON text; a
/// `labels` value that is not a JSON object gives NULL.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct LabelFunction {
    signature: Signature,
}

impl LabelFunction {
    /// The function, ready to register.
    pub fn udf() -> ScalarUDF {
        ScalarUDF::new_from_impl(LabelFunction {
            signature: Signature::uniform(2, vec![DataType::Utf8], Volatility::Immutable),
        })
    }
}

impl ScalarUDFImpl for LabelFunction {
    fn name(&self) -> &str {
        "label"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _args: &[DataType]) -> DfResult<DataType> {
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        // The signature coerces both to Utf8; cast anyway so a dictionary or view never fails.
        let labels: ArrayRef = cast(&arrays[0], &DataType::Utf8)?;
        let names: ArrayRef = cast(&arrays[1], &DataType::Utf8)?;
        let (labels, names) = (as_string_array(&labels)?, as_string_array(&names)?);
        let mut out = StringBuilder::with_capacity(labels.len(), labels.len() * 8);
        // Rows come sorted by series, so the same label set repeats: remember the last answer.
        let mut last: Option<(&str, &str, Option<String>)> = None;
        for i in 0..labels.len() {
            if labels.is_null(i) || names.is_null(i) {
                out.append_null();
                continue;
            }
            let (json, name) = (labels.value(i), names.value(i));
            let value = match &last {
                Some((j, n, v)) if *j == json && *n == name => v.clone(),
                _ => {
                    let v = label_value(json, name);
                    last = Some((json, name, v.clone()));
                    v
                }
            };
            out.append_option(value);
        }
        Ok(ColumnarValue::Array(Arc::new(out.finish())))
    }
}

/// The value of `name` in the JSON object `labels`.
pub(crate) fn label_value(labels: &str, name: &str) -> Option<String> {
    let map: serde_json::Map<String, serde_json::Value> = serde_json::from_str(labels).ok()?;
    match map.get(name)? {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Null => None,
        other => Some(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_value_reads_one_key_or_none() {
        assert_eq!(label_value(r#"{"job":"node","team":"a"}"#, "team").as_deref(), Some("a"));
        assert_eq!(label_value(r#"{"job":"node"}"#, "team"), None);
        assert_eq!(label_value(r#"{"n":3}"#, "n").as_deref(), Some("3"));
        assert_eq!(label_value("not json", "job"), None);
        assert_eq!(label_value("[1]", "job"), None);
    }
}
