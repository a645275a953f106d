//! SEP-2243's `Mcp-Param-*` headers: a tool's input schema may mark an argument with
//! `"x-mcp-header": "Name"`, and then every call that gives that argument a string, number or
//! boolean value must repeat it as the header `Mcp-Param-Name` (base64-encoded as `Mcp-Name` is
//! when it cannot travel bare), so that a gateway can route on it without reading the body. A
//! server checks them (rmcp answers 400 to a call that lacks one).
//!
//! The annotations are read from each tool's schema when the tool list is read (nested
//! `properties` included, the path of keys kept), and kept per tool name; a call of a tool
//! without any pays one map lookup.

use std::collections::HashMap;

use aether_contracts::Metadata;
use http::header::{HeaderMap, HeaderName};
use rmcp::model::Tool;
use serde_json::Value;

/// One annotated argument: where it is in the arguments, and its header.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct ParamHeader {
    path: Vec<String>,
    header: HeaderName,
}

/// The annotated arguments of every tool that has any, by tool name.
pub(super) fn of_tools(tools: &[Tool]) -> HashMap<String, Vec<ParamHeader>> {
    tools
        .iter()
        .filter_map(|t| {
            let found = annotations(t.input_schema.get("properties"));
            (!found.is_empty()).then(|| (t.name.to_string(), found))
        })
        .collect()
}

/// The annotations under a schema's `properties` (and theirs, recursively). An annotation whose
/// value is not a valid header name is ignored (a server that declared it cannot check it).
fn annotations(properties: Option<&Value>) -> Vec<ParamHeader> {
    let mut out = Vec::new();
    collect(properties, &mut Vec::new(), &mut out);
    out
}

fn collect(properties: Option<&Value>, path: &mut Vec<String>, out: &mut Vec<ParamHeader>) {
    let Some(Value::Object(properties)) = properties else {
        return;
    };
    for (name, schema) in properties {
        path.push(name.clone());
        if let Some(header) = schema
            .get("x-mcp-header")
            .and_then(Value::as_str)
            .and_then(|h| HeaderName::from_bytes(format!("mcp-param-{h}").as_bytes()).ok())
        {
            out.push(ParamHeader {
                path: path.clone(),
                header,
            });
        }
        collect(schema.get("properties"), path, out);
        path.pop();
    }
}

/// Adds the headers of `params` for a call with `arguments`: one per annotated argument that
/// has a string, number or boolean value (an absent, null or structured one sends none).
pub(super) fn add(params: &[ParamHeader], arguments: &Metadata, headers: &mut HeaderMap) {
    for p in params {
        let Some((first, rest)) = p.path.split_first() else {
            continue;
        };
        let value = rest
            .iter()
            .try_fold(arguments.get(first), |v, key| v.map(|v| v.get(key)))
            .flatten();
        let text: std::borrow::Cow<'_, str> = match value {
            Some(Value::String(s)) => s.into(),
            Some(Value::Bool(b)) => b.to_string().into(),
            Some(Value::Number(n)) => n.to_string().into(),
            _ => continue,
        };
        headers.insert(p.header.clone(), super::header_value(&text));
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use serde_json::json;

    use super::*;

    fn tool(name: &str, schema: Value) -> Tool {
        let Value::Object(schema) = schema else { unreachable!() };
        Tool::new(name.to_owned(), "t", Arc::new(schema))
    }

    fn args(v: Value) -> Metadata {
        let Value::Object(m) = v else { unreachable!() };
        m
    }

    #[test]
    fn annotated_arguments_become_headers_nested_ones_too() {
        let tools = [
            tool(
                "plain",
                json!({"type": "object", "properties": {"a": {"type": "string"}}}),
            ),
            tool(
                "routed",
                json!({"type": "object", "properties": {
                    "region": {"type": "string", "x-mcp-header": "Region"},
                    "target": {"type": "object", "properties": {"zone": {"type": "integer", "x-mcp-header": "Zone"}}},
                    "bad": {"type": "string", "x-mcp-header": "not a token"},
                }}),
            ),
        ];
        let map = of_tools(&tools);
        assert_eq!(map.len(), 1, "only tools with annotations: {map:?}");
        let routed = &map["routed"];
        assert_eq!(routed.len(), 2, "the invalid header name is ignored: {routed:?}");

        let mut h = HeaderMap::new();
        add(
            routed,
            &args(json!({"region": "eu-west", "target": {"zone": 3}})),
            &mut h,
        );
        assert_eq!(h["mcp-param-region"], "eu-west");
        assert_eq!(h["mcp-param-zone"], "3");

        // Absent, null or structured values send nothing; text that cannot travel bare is base64.
        let mut h = HeaderMap::new();
        add(routed, &args(json!({"region": null, "target": {"zone": [1]}})), &mut h);
        assert!(h.is_empty(), "{h:?}");
        add(routed, &args(json!({"region": "zürich"})), &mut h);
        assert_eq!(h["mcp-param-region"], "=?base64?esO8cmljaA==?=");
    }
}
