//! A minimal server-sent-events reader: enough of the WHATWG format for the broker's
//! `/v1/edge/sync` stream (`event:` and `data:` fields, comment keep-alives, blank-line
//! dispatch), fed with arbitrary byte chunks as they arrive.

/// One dispatched event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseEvent {
    /// `message` when the server named none, as the format specifies.
    pub event: String,
    pub data: String,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SseError {
    /// A lease set is a few kilobytes; this bound keeps a broken or hostile stream from
    /// growing memory without end.
    #[error("server-sent event larger than {0} bytes")]
    TooLarge(usize),
    #[error("server-sent event is not UTF-8")]
    NotUtf8,
}

pub const MAX_EVENT_BYTES: usize = 4 * 1024 * 1024;

#[derive(Debug, Default)]
pub struct SseParser {
    line: Vec<u8>,
    event: Option<String>,
    data: Option<String>,
}

impl SseParser {
    /// Feeds a chunk; returns the events completed by it.
    pub fn feed(&mut self, chunk: &[u8]) -> Result<Vec<SseEvent>, SseError> {
        let mut events = Vec::new();
        for &byte in chunk {
            if byte != b'\n' {
                self.line.push(byte);
                let pending = self.line.len() + self.data.as_ref().map_or(0, String::len);
                if pending > MAX_EVENT_BYTES {
                    return Err(SseError::TooLarge(MAX_EVENT_BYTES));
                }
                continue;
            }
            let mut line = std::mem::take(&mut self.line);
            if line.last() == Some(&b'\r') {
                line.pop();
            }
            let line = String::from_utf8(line).map_err(|_| SseError::NotUtf8)?;
            if let Some(event) = self.take_line(&line) {
                events.push(event);
            }
        }
        Ok(events)
    }

    fn take_line(&mut self, line: &str) -> Option<SseEvent> {
        if line.is_empty() {
            let data = self.data.take();
            let event = self.event.take();
            return data.map(|data| SseEvent {
                event: event.unwrap_or_else(|| "message".to_owned()),
                data,
            });
        }
        if line.starts_with(':') {
            return None;
        }
        let (field, value) = line.split_once(':').unwrap_or((line, ""));
        let value = value.strip_prefix(' ').unwrap_or(value);
        match field {
            "event" => self.event = Some(value.to_owned()),
            "data" => match &mut self.data {
                Some(data) => {
                    data.push('\n');
                    data.push_str(value);
                }
                None => self.data = Some(value.to_owned()),
            },
            // `id` and `retry` matter to browsers' reconnect logic, not to us.
            _ => {}
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_comments_and_split_chunks() {
        let stream = b": keep-alive\n\nevent: leases\ndata: {\"a\":1}\n\n: ping\r\n\r\nevent: leases\r\ndata: x\r\ndata: y\r\n\r\n";
        for split in 0..stream.len() {
            let mut p = SseParser::default();
            let mut got = p.feed(&stream[..split]).unwrap();
            got.extend(p.feed(&stream[split..]).unwrap());
            assert_eq!(
                got,
                vec![
                    SseEvent {
                        event: "leases".into(),
                        data: "{\"a\":1}".into()
                    },
                    SseEvent {
                        event: "leases".into(),
                        data: "x\ny".into()
                    },
                ],
                "split at {split}"
            );
        }
    }

    #[test]
    fn unnamed_event_is_message_and_huge_lines_fail() {
        let mut p = SseParser::default();
        assert_eq!(p.feed(b"data:z\n\n").unwrap()[0].event, "message");
        let big = vec![b'a'; MAX_EVENT_BYTES + 1];
        assert_eq!(p.feed(&big), Err(SseError::TooLarge(MAX_EVENT_BYTES)));
    }
}
