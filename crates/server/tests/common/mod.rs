//! Helpers shared by the server tests.
#![allow(dead_code)]

use serde_json::Value;

/// Reads server-sent events until `stop` says so (or the stream ends); returns the chunks.
pub async fn read_sse(resp: &mut reqwest::Response, mut stop: impl FnMut(&Value) -> bool) -> Vec<Value> {
    let mut buf = String::new();
    let mut chunks = Vec::new();
    loop {
        while let Some(end) = buf.find("\n\n") {
            let frame: String = buf.drain(..end + 2).collect();
            if let Some(data) = frame.lines().find_map(|l| l.strip_prefix("data: ")) {
                let chunk: Value = serde_json::from_str(data).unwrap();
                let done = stop(&chunk);
                chunks.push(chunk);
                if done {
                    return chunks;
                }
            }
        }
        match resp.chunk().await.unwrap() {
            Some(bytes) => buf.push_str(std::str::from_utf8(&bytes).unwrap()),
            None => return chunks,
        }
    }
}
