//! JSON Schemas for editors (Taplo / Even Better TOML), generated from the types.

use serde_json::{Value, json};

use crate::spec::{Recipe, SystemSpec};

/// The schema of a configuration module (`nexis.toml` and the files it imports).
///
/// Nothing is required in a module, since any key may come from another module; the
/// evaluator checks what is missing after merging. `imports`, `[defaults]` and `[force]`
/// are added to what the types describe.
pub fn config_schema() -> Value {
    let mut schema =
        serde_json::to_value(schemars::schema_for!(SystemSpec)).expect("schemas serialise");
    strip_required(&mut schema);
    if let Some(obj) = schema.as_object_mut() {
        obj.insert("title".into(), json!("NexisOS configuration module"));
    }
    if let Some(props) = schema.get_mut("properties").and_then(Value::as_object_mut) {
        props.insert(
            "imports".into(),
            json!({
                "description": "Modules to merge with this one, relative to this file",
                "type": "array",
                "items": { "type": "string" }
            }),
        );
        for (key, what) in [
            ("defaults", "Values that any plain definition overrides"),
            ("force", "Values that win over plain definitions"),
        ] {
            props.insert(key.into(), json!({ "description": what, "$ref": "#" }));
        }
    }
    schema
}

/// The schema of a package recipe (`packages/NAME.toml`).
pub fn recipe_schema() -> Value {
    let mut schema =
        serde_json::to_value(schemars::schema_for!(Recipe)).expect("schemas serialise");
    if let Some(obj) = schema.as_object_mut() {
        obj.insert("title".into(), json!("NexisOS package recipe"));
    }
    schema
}

fn strip_required(v: &mut Value) {
    match v {
        Value::Object(map) => {
            map.remove("required");
            map.values_mut().for_each(strip_required);
        }
        Value::Array(items) => items.iter_mut().for_each(strip_required),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schemas_describe_the_keys() {
        let s = config_schema();
        let props = s["properties"].as_object().unwrap();
        for key in [
            "imports", "inputs", "system", "boot", "packages", "users", "files", "services",
            "security", "defaults", "force",
        ] {
            assert!(props.contains_key(key), "{key} missing");
        }
        assert!(!s.to_string().contains("\"required\""));
        let r = recipe_schema();
        assert!(r["properties"]["build"].is_object());
        assert!(
            r["required"]
                .as_array()
                .unwrap()
                .contains(&json!("version"))
        );
    }
}
