//! The body of a `tools/call`, encoded from borrowed parts.
//!
//! rmcp's request types own their parts, and their `_meta` encoding first copies the parameters
//! (the tool's arguments included) into a JSON value tree and clones the metadata map, on every
//! call. This writes the same JSON-RPC request straight from the caller's arguments, the call's
//! ids and the client context built once; the test below reads it back with rmcp's types.

use aether_contracts::Metadata;
use serde::ser::{SerializeMap, Serializer};
use serde::Serialize;

/// `{"jsonrpc":"2.0","id":…,"method":"tools/call","params":{"name":…,"arguments":…,"_meta":…}}`.
#[derive(Serialize)]
pub(super) struct CallBody<'a> {
    jsonrpc: &'static str,
    id: i64,
    method: &'static str,
    params: Params<'a>,
}

#[derive(Serialize)]
struct Params<'a> {
    name: &'a str,
    arguments: &'a Metadata,
    #[serde(rename = "_meta")]
    meta: Meta<'a>,
}

/// The call's `_meta`: its own entries (ids, `traceparent`), its progress token, and the client
/// context (protocol version, client info and capabilities).
struct Meta<'a> {
    entries: &'a [(&'static str, &'a str)],
    progress_token: Option<i64>,
    context: &'a serde_json::Map<String, serde_json::Value>,
}

impl Serialize for Meta<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let len = self.entries.len() + usize::from(self.progress_token.is_some()) + self.context.len();
        let mut map = serializer.serialize_map(Some(len))?;
        for (k, v) in self.context {
            map.serialize_entry(k, v)?;
        }
        for (k, v) in self.entries {
            map.serialize_entry(k, v)?;
        }
        if let Some(token) = self.progress_token {
            map.serialize_entry("progressToken", &token)?;
        }
        map.end()
    }
}

impl<'a> CallBody<'a> {
    pub(super) fn new(
        id: i64,
        tool: &'a str,
        arguments: &'a Metadata,
        entries: &'a [(&'static str, &'a str)],
        progress_token: Option<i64>,
        context: &'a serde_json::Map<String, serde_json::Value>,
    ) -> Self {
        Self {
            jsonrpc: "2.0",
            id,
            method: "tools/call",
            params: Params {
                name: tool,
                arguments,
                meta: Meta {
                    entries,
                    progress_token,
                    context,
                },
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use rmcp::model::{
        ClientCapabilities, ClientJsonRpcMessage, ClientRequest, Implementation, JsonRpcMessage, NumberOrString,
        ProgressToken, ProtocolVersion, RequestId, RequestMetaObject,
    };

    use super::*;

    #[test]
    fn rmcp_reads_the_body_as_the_call_it_is() {
        let context = RequestMetaObject::with_client_context(
            ProtocolVersion::V_2026_07_28,
            Implementation::new("aether-frame", "1"),
            ClientCapabilities::default(),
        );
        let serde_json::Value::Object(arguments) = serde_json::json!({"message": "hi", "n": [1, 2]}) else {
            unreachable!()
        };
        let entries = [("aether/call_id", "call-1"), ("traceparent", "00-ab-cd-01")];
        let body = serde_json::to_vec(&CallBody::new(
            7,
            "builtin.echo",
            &arguments,
            &entries,
            Some(7),
            &context.0 .0,
        ))
        .unwrap();
        let JsonRpcMessage::Request(request) = serde_json::from_slice::<ClientJsonRpcMessage>(&body).unwrap() else {
            panic!("a request")
        };
        assert_eq!(request.id, RequestId::Number(7));
        let ClientRequest::CallToolRequest(call) = request.request else {
            panic!("a tools/call")
        };
        assert_eq!(call.params.name, "builtin.echo");
        assert_eq!(call.params.arguments.as_ref(), Some(&arguments));
        let meta = call.extensions.get::<RequestMetaObject>().expect("_meta");
        assert_eq!(
            meta.get_progress_token(),
            Some(ProgressToken(NumberOrString::Number(7)))
        );
        assert_eq!(meta.protocol_version(), Some(ProtocolVersion::V_2026_07_28));
        assert_eq!(meta.client_info().map(|i| i.name), Some("aether-frame".to_owned()));
        assert!(meta.missing_required_keys(&ProtocolVersion::V_2026_07_28).is_empty());
        assert_eq!(meta.0.get("aether/call_id"), Some(&serde_json::json!("call-1")));
        assert_eq!(meta.0.get("traceparent"), Some(&serde_json::json!("00-ab-cd-01")));
    }
}
