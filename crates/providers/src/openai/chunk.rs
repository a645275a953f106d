//! Reading one streamed chat-completion chunk (the `data:` of one server-sent event): the typed,
//! borrowing reader, and the frame that lets a chunk repeating the last one around new text skip
//! the JSON reader altogether.
//!
//! A streamed answer is mostly chunks that differ from each other only in their text: the same
//! id, model, fingerprint and choice, byte for byte, around a new `"content":"…"`. Once a chunk
//! that carries text and nothing else has been read in full, its bytes are kept as the
//! stream's [`ChunkReader`] frame: the bytes before the text's first byte and those after its
//! last. A later chunk made of exactly those bytes around a string body with no quote, backslash
//! or control character is the same JSON with another text, so it is read as
//! [`Chunk::Text`] by two byte comparisons and one scan of the text (only the text is checked
//! as UTF-8: the frame's bytes were checked when it was read), with nothing parsed; any other
//! chunk (an escape in the text, a new field, the finish or the usage) is checked and read in
//! full by `serde_json`. Both readings agree on every input, errors included (the unit tests
//! check this on chunks built to differ in each way). This takes the JSON reader out of most of
//! a streaming client's per-chunk cost: a 231-byte chunk of `aether sim-llm`'s took ~9 ns to
//! match against its frame and ~320 ns to read with `serde_json` (a side bench, 3 million
//! chunks, 2026-12-06).
//!
//! The frame is one buffer per stream, reused: a server that varies every chunk (a per-chunk
//! obfuscation field, say) has each chunk read in full and copied into it, a few hundred bytes.

use std::borrow::Cow;

use serde_json::Value;

use crate::http::{bad_event, event_text};
use crate::ModelError;

/// One chunk as read: either text in the stream's frame, or the chunk read in full.
pub(super) enum Chunk<'d> {
    /// The chunk repeats the stream's frame around this text (possibly empty): it carries text
    /// and nothing else.
    Text(&'d str),
    Read(StreamChunk<'d>),
}

/// Reads a stream's chunks, keeping the frame of the last chunk that carried text alone.
#[derive(Default)]
pub(super) struct ChunkReader {
    /// The last text-only chunk read in full (empty: none yet).
    frame: Vec<u8>,
    /// Where that chunk's text begins (after its opening quote) and ends (at its closing quote).
    text: std::ops::Range<usize>,
}

impl ChunkReader {
    /// Reads one chunk: an event's data from `base_url`, checked as UTF-8 only as far as it is
    /// not the frame's (already checked) bytes.
    pub(super) fn read<'d>(&mut self, data: &'d [u8], base_url: &str) -> Result<Chunk<'d>, ModelError> {
        if let Some(text) = self.in_frame(data) {
            return Ok(Chunk::Text(event_text(base_url, text)?));
        }
        let data = event_text(base_url, data)?;
        let chunk: StreamChunk<'d> = serde_json::from_str(data).map_err(|e| bad_event(base_url, e))?;
        if let Some(text) = chunk.text_alone() {
            // Borrowed from `data`, so its place in it is exact: between two quotes.
            let at = text.as_ptr() as usize - data.as_ptr() as usize;
            self.frame.clear();
            self.frame.extend_from_slice(data.as_bytes());
            self.text = at..at + text.len();
        }
        Ok(Chunk::Read(chunk))
    }

    /// The text of `data` when it is the frame's bytes around a string body without escapes
    /// (not yet checked as UTF-8).
    fn in_frame<'d>(&self, bytes: &'d [u8]) -> Option<&'d [u8]> {
        if self.frame.is_empty() {
            return None;
        }
        let (before, after) = (&self.frame[..self.text.start], &self.frame[self.text.end..]);
        if bytes.len() < before.len() + after.len() || !bytes.starts_with(before) || !bytes.ends_with(after) {
            return None;
        }
        let end = bytes.len() - after.len();
        // Inside a JSON string a quote would end it, a backslash starts an escape (read those in
        // full), and a control character is not allowed at all.
        if bytes[before.len()..end]
            .iter()
            .any(|&b| b == b'"' || b == b'\\' || b < 0x20)
        {
            return None;
        }
        // The frame's bytes were checked as UTF-8 when it was read, and they end and begin at an
        // ASCII quote: the chunk is UTF-8 when the text is.
        Some(&bytes[before.len()..end])
    }
}

/// One streamed chunk, as far as it is read: unknown members are skipped, text is borrowed
/// unless it holds escapes.
#[derive(serde::Deserialize)]
pub(super) struct StreamChunk<'a> {
    #[serde(borrow, default)]
    pub(super) model: Option<Text<'a>>,
    #[serde(default)]
    pub(super) usage: Option<Value>,
    /// Only the first choice is read (one is asked for); the list is not collected.
    #[serde(borrow, default)]
    pub(super) choices: Option<First<StreamChoice<'a>>>,
}

impl<'a> StreamChunk<'a> {
    /// The chunk's text, borrowed, when text is all it carries: no usage, no tool calls, no
    /// finish. (Its model, id and the like are the frame's; a repeat of them changes nothing.)
    fn text_alone(&self) -> Option<&'a str> {
        if self.usage.as_ref().is_some_and(|u| !u.is_null()) {
            return None;
        }
        let choice = self.choices.as_ref()?.0.as_ref()?;
        let delta = choice.delta.as_ref()?;
        if choice.finish_reason.is_some() || delta.tool_calls.is_some() {
            return None;
        }
        match delta.content.as_ref()?.0 {
            Cow::Borrowed(text) => Some(text),
            Cow::Owned(_) => None,
        }
    }
}

/// A string borrowed from the chunk unless it holds escapes. (serde borrows a `Cow<str>` field
/// only when it is the field's own type: inside an `Option` it would copy every chunk's text.)
#[derive(serde::Deserialize)]
#[serde(transparent)]
pub(super) struct Text<'a>(#[serde(borrow)] pub(super) Cow<'a, str>);

impl std::ops::Deref for Text<'_> {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

/// The first element of a JSON list, the rest skipped unread into anything.
pub(super) struct First<T>(pub(super) Option<T>);

impl<'de, T: serde::Deserialize<'de>> serde::Deserialize<'de> for First<T> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visit<T>(std::marker::PhantomData<T>);
        impl<'de, T: serde::Deserialize<'de>> serde::de::Visitor<'de> for Visit<T> {
            type Value = First<T>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a list")
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<First<T>, A::Error> {
                let first = seq.next_element()?;
                while seq.next_element::<serde::de::IgnoredAny>()?.is_some() {}
                Ok(First(first))
            }
        }
        d.deserialize_seq(Visit(std::marker::PhantomData))
    }
}

#[derive(serde::Deserialize)]
pub(super) struct StreamChoice<'a> {
    #[serde(borrow, default)]
    pub(super) delta: Option<StreamDelta<'a>>,
    #[serde(borrow, default)]
    pub(super) finish_reason: Option<Text<'a>>,
}

#[derive(serde::Deserialize)]
pub(super) struct StreamDelta<'a> {
    #[serde(borrow, default)]
    pub(super) content: Option<Text<'a>>,
    /// Tool-call fragments: rare, read as they come.
    #[serde(default)]
    pub(super) tool_calls: Option<Vec<Value>>,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What a chunk says, as the stream loop reads it: its text (if any), and whether anything
    /// else (usage, a finish, tool calls, an unreadable chunk) came with it.
    fn said(r: Result<Chunk<'_>, ModelError>) -> Result<(Option<String>, bool), String> {
        match r.map_err(|e| e.to_string())? {
            Chunk::Text(t) => Ok((Some(t.to_owned()), false)),
            Chunk::Read(c) => {
                let more = c.usage.as_ref().is_some_and(|u| !u.is_null());
                let choice = c.choices.and_then(|f| f.0);
                let more = more
                    || choice.as_ref().is_some_and(|ch| {
                        ch.finish_reason.is_some() || ch.delta.as_ref().is_some_and(|d| d.tool_calls.is_some())
                    });
                let text = choice
                    .and_then(|ch| ch.delta)
                    .and_then(|d| d.content)
                    .map(|t| t.0.into_owned());
                Ok((text, more))
            }
        }
    }

    fn read<'d>(r: &mut ChunkReader, data: &'d str) -> Result<Chunk<'d>, ModelError> {
        r.read(data.as_bytes(), "http://sim")
    }

    const FRAME: &str = r#"{"id":"c-1","model":"m-1","choices":[{"index":0,"delta":{"content":"TEXT"},"finish_reason":null}],"created":7}"#;

    #[test]
    fn a_chunk_is_read_in_place_and_escaped_text_is_decoded() {
        let plain =
            br#"{"id":"c","model":"m-1","choices":[{"index":0,"delta":{"content":"word "},"finish_reason":null}]}"#;
        let c: StreamChunk<'_> = serde_json::from_slice(plain).unwrap();
        assert!(matches!(c.model.as_ref().map(|m| &m.0), Some(Cow::Borrowed("m-1"))));
        let text = c
            .choices
            .and_then(|f| f.0)
            .and_then(|ch| ch.delta)
            .and_then(|d| d.content);
        assert!(matches!(text.map(|t| t.0), Some(Cow::Borrowed("word "))));

        // Escapes are decoded (an owned copy); only the first choice counts; usage is kept.
        let escaped = br#"{"choices":[{"delta":{"content":"a\"b\u00e9"},"finish_reason":"length"},{"delta":{"content":"second"}}],"usage":{"completion_tokens":3}}"#;
        let c: StreamChunk<'_> = serde_json::from_slice(escaped).unwrap();
        assert_eq!(c.usage.as_ref().and_then(|u| u["completion_tokens"].as_u64()), Some(3));
        let choice = c.choices.and_then(|f| f.0).unwrap();
        assert_eq!(choice.finish_reason.as_deref(), Some("length"));
        assert_eq!(choice.delta.and_then(|d| d.content).as_deref(), Some("a\"bé"));

        // The last chunk's empty list, and `choices: null`, are no choice at all.
        for body in [&br#"{"choices":[]}"#[..], br#"{"choices":null}"#] {
            let c: StreamChunk<'_> = serde_json::from_slice(body).unwrap();
            assert!(c.choices.and_then(|f| f.0).is_none());
        }
        assert!(serde_json::from_slice::<StreamChunk<'_>>(br#"{"choices":{}}"#).is_err());
    }

    #[test]
    fn a_chunk_in_the_last_texts_frame_is_read_without_the_json_reader() {
        let mut r = ChunkReader::default();
        let first = FRAME.replace("TEXT", "The keeper");
        assert!(matches!(read(&mut r, &first), Ok(Chunk::Read(_))));
        let next = FRAME.replace("TEXT", " climbed é ✓");
        assert!(matches!(read(&mut r, &next), Ok(Chunk::Text(" climbed é ✓"))));
        assert!(matches!(read(&mut r, &FRAME.replace("TEXT", "")), Ok(Chunk::Text(""))));
        // The frame stays while chunks match it; a chunk read in full with text alone replaces it.
        let moved = FRAME.replace("TEXT", "a\\nb").replace("\"created\":7", "\"created\":8");
        assert!(matches!(read(&mut r, &moved), Ok(Chunk::Read(_))));
        assert!(matches!(read(&mut r, &moved.replace("a\\nb", "c")), Ok(Chunk::Read(_))));
        assert!(matches!(
            read(&mut r, &moved.replace("a\\nb", "d")),
            Ok(Chunk::Text("d"))
        ));
    }

    #[test]
    fn every_chunk_reads_as_the_json_reader_reads_it_frame_or_not() {
        let texts = [
            "plain",
            "",
            " ",
            "é",
            "✓ 🦀",
            "a\\\"b",
            "a\\\\",
            "\\u00e9",
            "\\n",
            "\"",
            "\\",
            "a\nb",
            "a\u{1}b",
            "a\u{1f}b",
            "\u{7f}",
            "x\",\"y\":\"z",
            "x\"}],\"usage\":{\"completion_tokens\":9},\"a\":[{\"b\":\"",
            "\\ud800",
            "\\uzzzz",
        ];
        let frames = [
            FRAME.to_owned(),
            FRAME.replace(r#""finish_reason":null"#, r#""finish_reason":"stop""#),
            FRAME.replace(r#","created":7}"#, r#","usage":{"completion_tokens":3}}"#),
            FRAME.replace(
                r#"{"content":"TEXT"}"#,
                r#"{"content":"TEXT","tool_calls":[{"index":0}]}"#,
            ),
            FRAME.replace("\"index\":0", "\"index\":0,\"x\":\"TEXT\""),
        ];
        let mut in_frame = 0;
        for seed in texts
            .iter()
            .filter(|t| !t.contains(['"', '\\']) && !t.contains(|c: char| c < ' '))
        {
            for frame in &frames {
                for text in texts {
                    let mut r = ChunkReader::default();
                    let _ = read(&mut r, &FRAME.replace("TEXT", seed));
                    let data = frame.replace("TEXT", text);
                    let fresh = said(
                        serde_json::from_str::<StreamChunk<'_>>(&data)
                            .map(Chunk::Read)
                            .map_err(|e| bad_event("http://sim", e)),
                    );
                    let read = read(&mut r, &data);
                    in_frame += usize::from(matches!(read, Ok(Chunk::Text(_))));
                    assert_eq!(said(read), fresh, "seed {seed:?}, chunk {data}");
                }
            }
        }
        // Each seed's frame took the six texts a JSON string holds as they are: 6 seeds × 6.
        assert_eq!(in_frame, 36);
    }

    #[test]
    fn bytes_that_are_not_utf8_are_a_bad_event_in_the_frame_or_not() {
        let mut r = ChunkReader::default();
        assert!(matches!(read(&mut r, &FRAME.replace("TEXT", "a")), Ok(Chunk::Read(_))));
        let (before, after) = FRAME.split_once("TEXT").unwrap();
        for data in [
            [before.as_bytes(), b"\xff\xfe", after.as_bytes()].concat(),
            [before.as_bytes(), b"\xe2\x9c", after.as_bytes()].concat(),
            b"{\"x\":\"\xff\"}".to_vec(),
        ] {
            let e = r.read(&data, "http://sim").err().expect("read").to_string();
            assert!(e.contains("bad stream event from http://sim: not UTF-8"), "{e}");
        }
    }

    #[test]
    fn a_chunk_with_more_than_text_never_becomes_the_frame() {
        for other in [
            FRAME.replace(r#""finish_reason":null"#, r#""finish_reason":"length""#),
            FRAME.replace(r#","created":7}"#, r#","usage":{"completion_tokens":3}}"#),
            FRAME.replace(
                r#"{"content":"TEXT"}"#,
                r#"{"content":"TEXT","tool_calls":[{"index":0}]}"#,
            ),
        ] {
            let mut r = ChunkReader::default();
            assert!(matches!(read(&mut r, &other.replace("TEXT", "a")), Ok(Chunk::Read(_))));
            // Read in full again: a repeat of its finish, usage or tool call is not text alone.
            assert!(
                matches!(read(&mut r, &other.replace("TEXT", "b")), Ok(Chunk::Read(_))),
                "{other}"
            );
        }
    }
}
