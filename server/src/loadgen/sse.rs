//! Server-sent events, parsed by hand: the load generator needs only the `data:` fields of a
//! stream of events, in arrival order, whatever way the bytes are split into chunks.

/// An incremental SSE parser: feed it the body's chunks as they come, get back the `data` of
/// every event completed so far (an event ends at a blank line; the lines of a multi-line
/// `data` field are joined with `\n`, as the SSE specification says).
#[derive(Debug, Default)]
pub struct SseParser {
    line: Vec<u8>,
    data: Option<String>,
}

impl SseParser {
    /// A parser at the start of a stream.
    pub fn new() -> Self {
        Self::default()
    }

    /// Consumes `chunk` and returns the data of the events it completed.
    pub fn push(&mut self, chunk: &[u8]) -> Vec<String> {
        let mut events = Vec::new();
        for &b in chunk {
            if b != b'\n' {
                self.line.push(b);
                continue;
            }
            let mut line = std::mem::take(&mut self.line);
            if line.last() == Some(&b'\r') {
                line.pop();
            }
            self.line_done(&line, &mut events);
        }
        events
    }

    /// Ends the stream: an event left without its blank line still counts (servers that close
    /// the connection right after the last `data:` line lose nothing).
    pub fn finish(&mut self) -> Option<String> {
        if !self.line.is_empty() {
            let line = std::mem::take(&mut self.line);
            let mut events = Vec::new();
            self.line_done(&line, &mut events);
            if let Some(e) = events.pop() {
                return Some(e);
            }
        }
        self.data.take()
    }

    fn line_done(&mut self, line: &[u8], events: &mut Vec<String>) {
        if line.is_empty() {
            if let Some(data) = self.data.take() {
                events.push(data);
            }
            return;
        }
        // Comments (`: keep-alive`) and the other fields (event, id, retry) carry no text.
        let Some(rest) = line.strip_prefix(b"data") else {
            return;
        };
        let value = match rest {
            [] => &[][..],
            [b':', b' ', v @ ..] | [b':', v @ ..] => v,
            _ => return, // a field named e.g. `database`
        };
        let value = String::from_utf8_lossy(value);
        match &mut self.data {
            Some(d) => {
                d.push('\n');
                d.push_str(&value);
            }
            None => self.data = Some(value.into_owned()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::SseParser;

    #[test]
    fn events_split_anywhere() {
        let stream = b"data: {\"a\":1}\n\n: comment\nevent: x\ndata:two\r\ndata: lines\r\n\r\ndata: [DONE]\n\n";
        let whole = SseParser::new().push(stream);
        assert_eq!(whole, ["{\"a\":1}", "two\nlines", "[DONE]"]);
        for split in 1..stream.len() {
            let mut p = SseParser::new();
            let mut got = p.push(&stream[..split]);
            got.extend(p.push(&stream[split..]));
            assert_eq!(got, whole, "split at {split}");
            assert_eq!(p.finish(), None);
        }
    }

    #[test]
    fn unterminated_last_event() {
        let mut p = SseParser::new();
        assert!(p.push(b"data: x\n\ndata: [DONE]").len() == 1);
        assert_eq!(p.finish().as_deref(), Some("[DONE]"));
        assert_eq!(p.finish(), None);
        assert!(SseParser::new().push(b"database: 1\n\n").is_empty());
    }
}
