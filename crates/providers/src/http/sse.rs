//! [`SseReader`]: a model endpoint's server-sent-events body read event by event, in place
//! (lines found in the network read itself, data handed out as slices of it), with the helpers
//! the providers' chunk readers share: [`event_text`] (an event's data as UTF-8 text) and
//! [`bad_event`] (a payload that is not JSON).

use std::time::Duration;

use super::Answer;
use crate::ModelError;

/// Reads a server-sent-events body: the `data:` payload of each event, in order. Each read waits
/// at most `idle` for the next piece; a broken connection is an error naming the endpoint.
///
/// Cheap per event (a simulated answer at full speed is ~90 events): lines are found with
/// `memchr` in the network read itself, and an event's data is handed out as a slice of it — no
/// copy, no allocation, no separate UTF-8 pass per string (the data is checked once, whole). The
/// only bytes copied are those of a line that a read cuts in two; a line longer than
/// [`MAX_LINE`] is an error, not a buffer without end.
pub(crate) struct SseReader<'a> {
    answer: Answer,
    /// The latest network read; lines are read from it in place.
    read: bytes::Bytes,
    /// Where the unread part of `read` begins.
    at: usize,
    /// The start of a line that an earlier read ended inside of; the rest comes with the next.
    split: Vec<u8>,
    /// `split` holds the whole line handed out last: emptied on the next call.
    split_done: bool,
    idle: Duration,
    base_url: &'a str,
}

impl<'a> SseReader<'a> {
    pub(crate) fn new(answer: Answer, idle: Duration, base_url: &'a str) -> Self {
        Self {
            answer,
            read: bytes::Bytes::new(),
            at: 0,
            split: Vec::new(),
            split_done: false,
            idle,
            base_url,
        }
    }

    /// The next event's data (without the `data:` prefix and surrounding whitespace), or `None`
    /// when the body ends. The slice lives until the next call.
    ///
    /// An event stream is UTF-8 (the SSE specification), so the data is checked once here, as a
    /// whole: a JSON reader given a `&str` then skips its own check of every string it reads
    /// (15 per OpenAI chunk; that check was ~13 % of a streaming client's instructions).
    pub(crate) async fn next_data(&mut self) -> Result<Option<&str>, ModelError> {
        let base_url = self.base_url;
        match self.next_event().await? {
            Some(data) => event_text(base_url, data).map(Some),
            None => Ok(None),
        }
    }

    /// [`Self::next_data`] unchecked: the event's data as bytes, for a reader that checks
    /// only what it reads (see [`event_text`]).
    pub(crate) async fn next_event(&mut self) -> Result<Option<&[u8]>, ModelError> {
        if std::mem::take(&mut self.split_done) {
            self.split.clear();
        }
        loop {
            // The blank line that ends an event mostly follows its data line at once: it needs no
            // search (memchr's set-up is ~65 instructions a call; two calls an event).
            let line_end = match self.read.get(self.at) {
                Some(b'\n') => Some(0),
                _ => memchr::memchr(b'\n', &self.read[self.at..]),
            };
            let Some(len) = line_end else {
                // The rest of this read is the start of a line: keep it, read on.
                if self.split.len() + self.read.len() - self.at > MAX_LINE {
                    return Err(ModelError::Other(format!(
                        "bad stream from {}: a line longer than {} MiB",
                        self.base_url,
                        MAX_LINE >> 20
                    )));
                }
                self.split.extend_from_slice(&self.read[self.at..]);
                let next = tokio::time::timeout(self.idle, self.answer.chunk())
                    .await
                    .map_err(|_| ModelError::Timeout(self.idle))?;
                match next {
                    Ok(Some(read)) => (self.read, self.at) = (read, 0),
                    Err(e) => {
                        return Err(ModelError::Other(format!(
                            "the stream from {} broke off: {e}",
                            self.base_url
                        )))
                    }
                    Ok(None) => return Ok(None),
                }
                continue;
            };
            let line = self.at..self.at + len;
            self.at += len + 1;
            if self.split.is_empty() {
                if let Some(data) = data_of(&self.read[line.clone()]) {
                    let data = line.start + data.start..line.start + data.end;
                    return Ok(Some(&self.read[data]));
                }
            } else {
                self.split.extend_from_slice(&self.read[line]);
                if let Some(data) = data_of(&self.split) {
                    self.split_done = true;
                    return Ok(Some(&self.split[data]));
                }
                self.split.clear();
            }
        }
    }
}

impl SseReader<'_> {
    /// Done with the stream (its last event read): the rest of the body is read, bounded, so
    /// that the connection is reused by the next call.
    pub(crate) async fn finish(self) {
        self.answer.finish().await;
    }
}

/// An event's data as text: the event stream of `base_url` is UTF-8, or it is a bad stream.
pub(crate) fn event_text<'b>(base_url: &str, data: &'b [u8]) -> Result<&'b str, ModelError> {
    std::str::from_utf8(data)
        .map_err(|e| ModelError::Other(format!("bad stream event from {base_url}: not UTF-8 ({e})")))
}

/// The longest line of an event stream read (an event's data: a streamed chunk is a few hundred
/// bytes, a whole tool call's arguments at most some kilobytes).
const MAX_LINE: usize = 8 << 20;

/// Where a line's `data:` payload lies in it, surrounding whitespace left out; `None` for a line
/// of another field, a comment or a blank line.
fn data_of(line: &[u8]) -> Option<std::ops::Range<usize>> {
    let data = line.trim_ascii_start().strip_prefix(b"data:")?.trim_ascii();
    let from = data.as_ptr() as usize - line.as_ptr() as usize;
    Some(from..from + data.len())
}

/// A data payload that is not JSON.
pub(crate) fn bad_event(base_url: &str, e: serde_json::Error) -> ModelError {
    ModelError::Other(format!("bad stream event from {base_url}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A reader of a body that arrives as `pieces`, one network read each.
    fn reader<I>(pieces: I, base_url: &str) -> SseReader<'_>
    where
        I: IntoIterator<Item = Result<&'static [u8], std::io::Error>>,
        I::IntoIter: Send + 'static,
    {
        let body = reqwest::Body::wrap_stream(futures::stream::iter(pieces));
        SseReader::new(
            Answer::General(reqwest::Response::from(http::Response::new(body))),
            Duration::from_secs(5),
            base_url,
        )
    }

    /// The first event's data (asserted to be `first`), then the error the next read ends in.
    async fn error_after(mut r: SseReader<'_>, first: &str) -> String {
        assert_eq!(r.next_data().await.unwrap(), Some(first));
        r.next_data().await.unwrap_err().to_string()
    }

    /// A body that goes silent ends the read with a timeout after `idle`, naming it.
    #[tokio::test(start_paused = true)]
    async fn a_silent_stream_times_out_after_its_idle_limit() {
        use futures::StreamExt;
        let pieces = futures::stream::iter([Ok::<_, std::io::Error>(&b"data: 1\n\ndata: 2\n\n"[..])])
            .chain(futures::stream::pending());
        let body = reqwest::Body::wrap_stream(pieces);
        let mut r = SseReader::new(
            Answer::General(reqwest::Response::from(http::Response::new(body))),
            Duration::from_secs(5),
            "http://test",
        );
        assert_eq!(r.next_data().await.unwrap(), Some("1"));
        assert_eq!(r.next_data().await.unwrap(), Some("2"));
        let started = tokio::time::Instant::now();
        match r.next_data().await {
            Err(ModelError::Timeout(d)) => assert_eq!(d, Duration::from_secs(5)),
            other => panic!("expected a timeout, got {:?}", other.map(|d| d.map(str::to_owned))),
        }
        assert_eq!(started.elapsed(), Duration::from_secs(5));
    }

    /// Events split across network reads at every awkward place: inside `data:`, between `\r`
    /// and `\n`, several events in one read; comments and other fields are passed over.
    #[tokio::test]
    async fn the_sse_reader_hands_out_each_data_payload_whatever_the_reads() {
        let pieces: Vec<Result<&'static [u8], std::io::Error>> = vec![
            Ok(b": keep-alive\n\nda"),
            Ok(b"ta: {\"a\":1}\r"),
            Ok(b"\n\nevent: x\ndata:{\"b\":2}\n\ndata: [DONE]\n\n"),
            Ok(b"data:  tail  \n"),
        ];
        let mut r = reader(pieces, "http://test");
        let mut seen = Vec::new();
        while let Some(d) = r.next_data().await.unwrap() {
            seen.push(d.to_owned());
        }
        assert_eq!(seen, [r#"{"a":1}"#, r#"{"b":2}"#, "[DONE]", "tail"]);
    }

    /// A character split between two reads is whole in the event; bytes that are not UTF-8 are
    /// an error naming the endpoint, not a panic or a lossy copy.
    #[tokio::test]
    async fn event_data_is_utf8_checked_as_a_whole() {
        let pieces: Vec<Result<&'static [u8], std::io::Error>> =
            vec![Ok(b"data: caf\xc3"), Ok(b"\xa9\n\ndata: \xff\n\n")];
        let e = error_after(reader(pieces, "http://model.test/v1"), "café").await;
        assert!(
            e.contains("bad stream event from http://model.test/v1: not UTF-8"),
            "{e}"
        );
    }

    /// A body that never ends its line is refused once the line passes the bound, not buffered
    /// for ever.
    #[tokio::test]
    async fn a_line_without_end_is_an_error_at_the_bound() {
        let piece: &'static [u8] = Box::leak(vec![b'x'; 1 << 20].into_boxed_slice());
        let pieces = std::iter::once(&b"data: 1\n\ndata: "[..])
            .chain(std::iter::repeat_n(piece, (MAX_LINE >> 20) + 2))
            .map(Ok::<_, std::io::Error>);
        let e = error_after(reader(pieces, "http://model.test/v1"), "1").await;
        assert!(
            e.contains("bad stream from http://model.test/v1: a line longer than 8 MiB"),
            "{e}"
        );
    }

    #[tokio::test]
    async fn a_broken_sse_body_is_an_error_naming_the_endpoint() {
        let pieces: Vec<Result<&'static [u8], std::io::Error>> =
            vec![Ok(b"data: 1\n"), Err(std::io::Error::other("reset by peer"))];
        let e = error_after(reader(pieces, "http://model.test/v1"), "1").await;
        assert!(e.contains("the stream from http://model.test/v1 broke off"), "{e}");
    }
}
