//! Checking a job against what a plugin declares, before any data flows:
//! its parameters, and the input fields it reads.

use crate::types::{Field, FieldType, Param, ParamSpec, Value};
use std::collections::BTreeMap;

/// A job that does not fit its plugin's declaration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SchemaError {
    /// A parameter the plugin does not take.
    #[error("function.params.{name}: plugin '{plugin}' takes no parameter '{name}' (it takes: {known})")]
    UnknownParam {
        /// The plugin.
        plugin: String,
        /// The parameter.
        name: String,
        /// The parameters it does take.
        known: String,
    },
    /// A required parameter left out.
    #[error("function.params.{name}: plugin '{plugin}' requires this parameter ({ty}): {description}")]
    MissingParam {
        /// The plugin.
        plugin: String,
        /// The parameter.
        name: String,
        /// Its type.
        ty: FieldType,
        /// What it is for.
        description: String,
    },
    /// A parameter of the wrong type.
    #[error("function.params.{name}: expected {expected}, got {got}")]
    ParamType {
        /// The parameter.
        name: String,
        /// The declared type.
        expected: FieldType,
        /// What the job gave.
        got: String,
    },
    /// An input the job does not provide.
    #[error(
        "plugin '{plugin}' reads input '{input}' ({ty}), but the job has no such field: declare it, \
         or bind the input to a field (job file: [function.bind] {input} = \"<field>\"; \
         weir plugin test: --bind {input}=<field>)"
    )]
    MissingInput {
        /// The plugin.
        plugin: String,
        /// The input.
        input: String,
        /// Its type.
        ty: FieldType,
    },
    /// An input whose field has another type.
    #[error(
        "plugin '{plugin}' reads input '{input}' as {expected}, but the job declares field '{field}' as {got}"
    )]
    InputType {
        /// The plugin.
        plugin: String,
        /// The input.
        input: String,
        /// The job's field bound to it.
        field: String,
        /// The plugin's type.
        expected: FieldType,
        /// The job's type.
        got: FieldType,
    },
    /// A binding for an input the plugin does not have.
    #[error("function.bind.{input}: plugin '{plugin}' has no input '{input}' (its inputs: {known})")]
    UnknownBinding {
        /// The plugin.
        plugin: String,
        /// The input named.
        input: String,
        /// The inputs it has.
        known: String,
    },
}

fn names<'a>(items: impl Iterator<Item = &'a str>) -> String {
    let list: Vec<&str> = items.collect();
    if list.is_empty() { "none".into() } else { list.join(", ") }
}

/// Reads a JSON value as a parameter of type `ty`.
fn param_value(name: &str, ty: FieldType, value: &serde_json::Value) -> Result<Value, SchemaError> {
    let got = || match value {
        serde_json::Value::String(s) => format!("the string {s:?}"),
        other => format!("{other}"),
    };
    let mismatch = || SchemaError::ParamType { name: name.to_string(), expected: ty, got: got() };
    Ok(match ty {
        FieldType::F64 => Value::F64(value.as_f64().ok_or_else(mismatch)?),
        FieldType::I64 => Value::I64(value.as_i64().ok_or_else(mismatch)?),
        FieldType::String => Value::String(value.as_str().ok_or_else(mismatch)?.to_string()),
        FieldType::Bool => Value::Bool(value.as_bool().ok_or_else(mismatch)?),
    })
}

/// Checks the job's parameters against the plugin's declared ones and turns
/// them into typed values; defaults are left to the plugin.
pub fn resolve_params(
    plugin: &str,
    specs: &[ParamSpec],
    given: &BTreeMap<String, serde_json::Value>,
) -> Result<Vec<Param>, SchemaError> {
    let mut params = Vec::with_capacity(given.len());
    for (name, value) in given {
        let spec = specs.iter().find(|s| &s.name == name).ok_or_else(|| SchemaError::UnknownParam {
            plugin: plugin.to_string(),
            name: name.clone(),
            known: names(specs.iter().map(|s| s.name.as_str())),
        })?;
        params.push(Param { name: name.clone(), value: param_value(name, spec.ty, value)? });
    }
    if let Some(spec) = specs.iter().find(|s| s.required && !given.contains_key(&s.name)) {
        return Err(SchemaError::MissingParam {
            plugin: plugin.to_string(),
            name: spec.name.clone(),
            ty: spec.ty,
            description: spec.description.clone(),
        });
    }
    Ok(params)
}

/// Finds, for each input the plugin reads, the index of the job field that
/// feeds it: the field of the same name, or the one `bind` names.
pub fn bind_inputs(
    plugin: &str,
    inputs: &[Field],
    fields: &[Field],
    bind: &BTreeMap<String, String>,
) -> Result<Vec<usize>, SchemaError> {
    if let Some(input) = bind.keys().find(|k| !inputs.iter().any(|i| &i.name == *k)) {
        return Err(SchemaError::UnknownBinding {
            plugin: plugin.to_string(),
            input: input.clone(),
            known: names(inputs.iter().map(|i| i.name.as_str())),
        });
    }
    inputs
        .iter()
        .map(|input| {
            let field_name = bind.get(&input.name).unwrap_or(&input.name);
            let index = fields.iter().position(|f| &f.name == field_name).ok_or_else(|| {
                SchemaError::MissingInput {
                    plugin: plugin.to_string(),
                    input: input.name.clone(),
                    ty: input.ty,
                }
            })?;
            let field = &fields[index];
            if field.ty != input.ty {
                return Err(SchemaError::InputType {
                    plugin: plugin.to_string(),
                    input: input.name.clone(),
                    field: field.name.clone(),
                    expected: input.ty,
                    got: field.ty,
                });
            }
            Ok(index)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(name: &str, ty: FieldType) -> Field {
        Field { name: name.into(), ty }
    }

    fn p_spec(required: bool) -> ParamSpec {
        ParamSpec {
            name: "p".into(),
            ty: FieldType::F64,
            required,
            default: None,
            description: "the percentile".into(),
        }
    }

    #[test]
    fn params_are_typed_and_checked() {
        let given = BTreeMap::from([("p".to_string(), serde_json::json!(0.5))]);
        let params = resolve_params("pct", &[p_spec(false)], &given).unwrap();
        assert_eq!(params, vec![Param { name: "p".into(), value: Value::F64(0.5) }]);

        let wrong = BTreeMap::from([("p".to_string(), serde_json::json!("high"))]);
        let err = resolve_params("pct", &[p_spec(false)], &wrong).unwrap_err();
        assert_eq!(err.to_string(), "function.params.p: expected f64, got the string \"high\"");

        let unknown = BTreeMap::from([("q".to_string(), serde_json::json!(1))]);
        let err = resolve_params("pct", &[p_spec(false)], &unknown).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("function.params.q: plugin 'pct' takes no parameter 'q' (it takes: p)")
        );

        let err = resolve_params("pct", &[p_spec(true)], &BTreeMap::new()).unwrap_err();
        assert!(matches!(err, SchemaError::MissingParam { ref name, .. } if name == "p"));
    }

    #[test]
    fn inputs_bind_by_name_or_binding() {
        let fields = [field("device_id", FieldType::I64), field("temperature", FieldType::F64)];
        let temp = [field("temperature", FieldType::F64)];
        assert_eq!(bind_inputs("max", &temp, &fields, &BTreeMap::new()).unwrap(), vec![1]);

        let value = [field("value", FieldType::F64)];
        let err = bind_inputs("pct", &value, &fields, &BTreeMap::new()).unwrap_err();
        assert!(err.to_string().contains("reads input 'value' (f64)"), "{err}");
        let bind = BTreeMap::from([("value".to_string(), "temperature".to_string())]);
        assert_eq!(bind_inputs("pct", &value, &fields, &bind).unwrap(), vec![1]);

        let ints = [field("temperature", FieldType::I64)];
        let err = bind_inputs("x", &ints, &fields, &BTreeMap::new()).unwrap_err();
        assert!(matches!(err, SchemaError::InputType { got: FieldType::F64, .. }), "{err}");

        let bad_bind = BTreeMap::from([("nope".to_string(), "temperature".to_string())]);
        let err = bind_inputs("max", &temp, &fields, &bad_bind).unwrap_err();
        assert!(err.to_string().starts_with("function.bind.nope"), "{err}");
    }
}
