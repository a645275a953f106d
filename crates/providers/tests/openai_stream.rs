//! A streamed OpenAI answer read over loopback HTTP, from a server that writes exactly the
//! chunks given: every piece of text reaches the sink in order and whole, whether a chunk is read
//! against the last one's frame or in full (escapes, a new id, tool-call fragments, the finish,
//! the usage), and a chunk that is not JSON is an error even where it copies the frame, whether
//! the sink awaits each piece or takes it at once; and streamed calls to a plain-HTTP endpoint
//! share one kept-alive connection.

use aether_contracts::ModelConfig;
use aether_providers::openai::{OpenAiConfig, OpenAiProvider};
use aether_providers::{DeltaSink, ModelError, ModelProvider, ModelResponse, PromptRequest};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Reads one request (its head, then as many body bytes as it says) from `socket`, `got` holding
/// what was read beyond the last one; `false` when the client closed the connection first.
async fn read_request(socket: &mut tokio::net::TcpStream, got: &mut Vec<u8>) -> bool {
    let mut buf = [0u8; 4096];
    loop {
        let text = String::from_utf8_lossy(got);
        if let Some(head_end) = text.find("\r\n\r\n") {
            let length = text[..head_end]
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(|v| v.trim().parse::<usize>().unwrap())
                })
                .unwrap_or(0);
            if got.len() >= head_end + 4 + length {
                got.drain(..head_end + 4 + length);
                return true;
            }
        }
        match socket.read(&mut buf).await {
            Ok(0) | Err(_) => return false,
            Ok(n) => got.extend_from_slice(&buf[..n]),
        }
    }
}

/// Serves one request on a loopback port: answers 200 with `events` as a server-sent-event
/// body, each written (and flushed) on its own, then closes.
async fn serve(events: Vec<String>) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (mut socket, _) = listener.accept().await.unwrap();
        assert!(
            read_request(&mut socket, &mut Vec::new()).await,
            "the client closed before its request was whole"
        );
        socket
            .write_all(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\nconnection: close\r\n\r\n")
            .await
            .unwrap();
        for e in events {
            // The client may give up at a bad chunk: later writes may fail.
            if socket.write_all(format!("data: {e}\n\n").as_bytes()).await.is_err() || socket.flush().await.is_err() {
                return;
            }
        }
        let _ = socket.write_all(b"data: [DONE]\n\n").await;
    });
    format!("http://{addr}/v1")
}

#[derive(Default)]
struct Pieces(Vec<String>);

#[async_trait::async_trait]
impl DeltaSink for Pieces {
    async fn delta(&mut self, text: &str) -> Result<(), ModelError> {
        self.0.push(text.to_owned());
        Ok(())
    }
}

/// A sink that takes every piece at once (`take_now`), as a timer does: its `delta` must never
/// be awaited.
#[derive(Default)]
struct TakenNow(Vec<String>);

#[async_trait::async_trait]
impl DeltaSink for TakenNow {
    async fn delta(&mut self, _text: &str) -> Result<(), ModelError> {
        panic!("a sink that takes pieces at once is never awaited");
    }

    fn take_now(&mut self, text: &str) -> Option<Result<(), ModelError>> {
        self.0.push(text.to_owned());
        Some(Ok(()))
    }
}

async fn stream(events: Vec<String>) -> (Result<ModelResponse, ModelError>, Vec<String>) {
    let prompt = PromptRequest::new(ModelConfig::new("gpt-4o-mini"), "", "go");
    // The outcome with the server's URL taken out (each server has a port of its own).
    let outcome = |r: &Result<ModelResponse, ModelError>, url: &str| {
        r.as_ref()
            .map(|r| r.text.clone())
            .map_err(|e| e.to_string().replace(url, "URL"))
    };
    let url = serve(events.clone()).await;
    let provider = OpenAiProvider::new(OpenAiConfig::new(url.clone())).unwrap();
    let mut pieces = Pieces::default();
    let result = provider.generate_stream(prompt.request(), &mut pieces).await;
    // The same answer to a sink that takes pieces at once: the same pieces, the same outcome.
    let again_url = serve(events).await;
    let provider = OpenAiProvider::new(OpenAiConfig::new(again_url.clone())).unwrap();
    let mut taken = TakenNow::default();
    let again = provider.generate_stream(prompt.request(), &mut taken).await;
    assert_eq!(taken.0, pieces.0, "both kinds of sink get the same pieces");
    assert_eq!(outcome(&again, &again_url), outcome(&result, &url));
    (result, pieces.0)
}

/// A chunk of answer `id` carrying `delta`, finishing with `finish`.
fn chunk(id: &str, delta: &str, finish: &str) -> String {
    format!(
        r#"{{"id":"{id}","object":"chat.completion.chunk","created":1,"model":"m-1","choices":[{{"index":0,"delta":{delta},"finish_reason":{finish}}}]}}"#
    )
}

fn text(id: &str, t: &str) -> String {
    chunk(id, &format!(r#"{{"content":"{t}"}}"#), "null")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_piece_arrives_whole_and_in_order_whichever_way_its_chunk_is_read() {
    let events = vec![
        chunk("c-1", r#"{"role":"assistant","content":""}"#, "null"),
        text("c-1", "The keeper"),
        text("c-1", " climbed"),
        text("c-1", " the \\\"old\\\" stairs\\n"),
        text("c-1", " é"),
        text("c-2", " and"),
        text("c-2", ""),
        text("c-2", " 🦀"),
        chunk(
            "c-2",
            r#"{"tool_calls":[{"index":0,"id":"call-1","type":"function","function":{"name":"crm__lookup","arguments":"{\"id\":"}}]}"#,
            "null",
        ),
        chunk(
            "c-2",
            r#"{"tool_calls":[{"index":0,"function":{"arguments":"\"C-1\"}"}}]}"#,
            "null",
        ),
        text("c-2", " rest"),
        chunk("c-2", "{}", r#""length""#),
        r#"{"id":"c-2","choices":[],"usage":{"prompt_tokens":4,"completion_tokens":9,"total_tokens":13}}"#.to_owned(),
    ];
    let (result, pieces) = stream(events).await;
    let r = result.unwrap();
    let expected = [
        "The keeper",
        " climbed",
        " the \"old\" stairs\n",
        " é",
        " and",
        " 🦀",
        " rest",
    ];
    assert_eq!(pieces, expected);
    assert_eq!(&*r.text, expected.concat());
    assert_eq!((r.usage.prompt_tokens, r.usage.completion_tokens), (4, 9));
    assert!(r.truncated, "finish_reason length");
    assert_eq!(r.tool_calls.len(), 1);
    assert_eq!(r.tool_calls[0].qualified_name(), "crm.lookup");
    assert_eq!(r.tool_calls[0].parameters["id"], "C-1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chunk_that_copies_the_frame_but_is_not_json_is_an_error() {
    for bad in ["a\u{1}b", "a\"b", "a\\qb"] {
        let events = vec![
            text("c-1", "one"),
            text("c-1", "two"),
            text("c-1", bad),
            text("c-1", "never"),
        ];
        let (result, pieces) = stream(events).await;
        let e = result.err().unwrap_or_else(|| panic!("{bad:?} was read"));
        assert!(e.to_string().contains("bad stream event from http://127.0.0.1:"), "{e}");
        assert_eq!(pieces, ["one", "two"], "{bad:?}");
    }
}

/// Streamed calls one after another to a plain-HTTP endpoint that keeps its connections: each
/// answer is read up to `[DONE]` (the body's end comes after it), and still the next call reuses
/// the connection (the rest of each body is read and the connection given back), so the server
/// sees one connection for all of them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streamed_calls_one_after_another_share_one_kept_alive_connection() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}/v1", listener.local_addr().unwrap());
    let accepted = std::sync::Arc::new(AtomicUsize::new(0));
    let counted = std::sync::Arc::clone(&accepted);
    tokio::spawn(async move {
        loop {
            let (mut socket, _) = listener.accept().await.unwrap();
            let n = counted.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let mut got = Vec::new();
                while read_request(&mut socket, &mut got).await {
                    let mut body = String::new();
                    for e in [text("c-1", &format!("answer {n}")), "[DONE]".to_owned()] {
                        let event = format!("data: {e}\n\n");
                        body.push_str(&format!("{:x}\r\n{event}\r\n", event.len()));
                    }
                    let head =
                        "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n";
                    // The body's end goes in a write of its own, after `[DONE]`.
                    if socket.write_all(format!("{head}{body}").as_bytes()).await.is_err()
                        || socket.write_all(b"0\r\n\r\n").await.is_err()
                    {
                        return;
                    }
                }
            });
        }
    });
    let provider = OpenAiProvider::new(OpenAiConfig::new(base)).unwrap();
    let prompt = PromptRequest::new(ModelConfig::new("gpt-4o-mini"), "", "go");
    for _ in 0..5 {
        let mut pieces = Pieces::default();
        let r = provider.generate_stream(prompt.request(), &mut pieces).await.unwrap();
        assert_eq!((&*r.text, pieces.0.len()), ("answer 0", 1));
    }
    assert_eq!(accepted.load(Ordering::SeqCst), 1, "one connection for five calls");
}
