//! JSON-Schema validation of tool parameters, compiled once per tool.

use aether_contracts::Metadata;

/// A compiled parameter schema.
pub struct ParamValidator(jsonschema::Validator);

impl ParamValidator {
    /// Compiles `schema`; the error says what is wrong with it.
    pub fn compile(schema: &serde_json::Value) -> Result<Self, String> {
        jsonschema::validator_for(schema).map(Self).map_err(|e| e.to_string())
    }

    /// Validates parameters. The error lists every violation with its field path, e.g.
    /// `parameters/customer_id: 5 is not of type "string"`.
    pub fn validate(&self, params: &Metadata) -> Result<(), String> {
        // The validator takes a `Value`; building one borrows nothing, so clone only on the rare
        // path where a schema exists with constraints (all registered tools have one).
        let instance = serde_json::Value::Object(params.clone());
        let errors: Vec<String> = self
            .0
            .iter_errors(&instance)
            .map(|e| {
                let path = e.instance_path().to_string();
                format!(
                    "parameters{}: {}",
                    if path.is_empty() { String::new() } else { path },
                    e
                )
            })
            .collect();
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors.join("; "))
        }
    }
}
