//! `label(labels, 'name')`: one label's value out of the `labels` JSON object, or NULL; and the
//! function that turns stored value columns into a sample value.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, Float64Array, StringBuilder};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Field, FieldRef, Float64Type, Int8Type, Int64Type};
use datafusion::common::cast::as_string_array;
use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion::logical_expr::{
    ColumnarValue, ReturnFieldArgs, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};

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

/// The sample value of a stored row: `value`, or `value_int / 10^value_scale` (see
/// [`crate::parquet_files`]). Not registered: the `metrics` table scan applies it to the
/// stored columns, so that queries see one `value` column.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct StoredValueFunction {
    signature: Signature,
}

impl StoredValueFunction {
    /// The function, to apply to the stored `value`, `value_int` and `value_scale` columns.
    pub fn udf() -> ScalarUDF {
        ScalarUDF::new_from_impl(StoredValueFunction {
            signature: Signature::exact(vec![DataType::Float64, DataType::Int64, DataType::Int8], Volatility::Immutable),
        })
    }
}

impl ScalarUDFImpl for StoredValueFunction {
    fn name(&self) -> &str {
        "pharos_stored_value"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _args: &[DataType]) -> DfResult<DataType> {
        Ok(DataType::Float64)
    }

    /// Never null: every stored row has a value (a row without one is an error).
    fn return_field_from_args(&self, _args: ReturnFieldArgs) -> DfResult<FieldRef> {
        Ok(Arc::new(Field::new(self.name(), DataType::Float64, false)))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        let (values, ints, scales) = (
            cast(&arrays[0], &DataType::Float64)?,
            cast(&arrays[1], &DataType::Int64)?,
            cast(&arrays[2], &DataType::Int8)?,
        );
        let mut buf = Vec::new();
        let decoded = crate::parquet_files::decode_values(
            Some(values.as_primitive::<Float64Type>()),
            Some((ints.as_primitive::<Int64Type>(), scales.as_primitive::<Int8Type>())),
            &mut buf,
        )
        .map_err(|e| DataFusionError::Execution(e.to_string()))?;
        Ok(ColumnarValue::Array(Arc::new(Float64Array::from(decoded.to_vec()))))
    }
}
