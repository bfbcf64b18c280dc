//! RecordIO framing, as Mesos streams events: each record is its length in bytes (decimal
//! ASCII), a newline, then the record itself (`<length>\n<record>`).

/// Frames one record.
pub(crate) fn encode(record: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(record.len() + 12);
    out.extend_from_slice(record.len().to_string().as_bytes());
    out.push(b'\n');
    out.extend_from_slice(record);
    out
}

/// Why a RecordIO stream could not be read.
#[cfg(test)]
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum RecordIoError {
    /// A record's length prefix is not a decimal number.
    #[error("record length `{0}` is not a decimal number")]
    BadLength(String),
}

/// Reads records out of a byte stream fed in arbitrary pieces (the test clients' side).
#[cfg(test)]
#[derive(Debug, Default)]
pub(crate) struct Decoder {
    buffer: Vec<u8>,
}

#[cfg(test)]
impl Decoder {
    /// Adds `bytes` and returns every record now complete, in order.
    pub(crate) fn feed(&mut self, bytes: &[u8]) -> Result<Vec<Vec<u8>>, RecordIoError> {
        self.buffer.extend_from_slice(bytes);
        let mut records = Vec::new();
        while let Some(newline) = self.buffer.iter().position(|b| *b == b'\n') {
            let prefix = String::from_utf8_lossy(&self.buffer[..newline]).to_string();
            let len: usize = prefix
                .trim()
                .parse()
                .map_err(|_| RecordIoError::BadLength(prefix.clone()))?;
            let start = newline + 1;
            if self.buffer.len() < start + len {
                break;
            }
            records.push(self.buffer[start..start + len].to_vec());
            self.buffer.drain(..start + len);
        }
        Ok(records)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_are_length_newline_record() {
        let table: &[(&[u8], &[u8])] = &[
            (b"", b"0\n"),
            (b"{}", b"2\n{}"),
            (b"{\"type\":\"HEARTBEAT\"}", b"20\n{\"type\":\"HEARTBEAT\"}"),
            ("é".as_bytes(), "2\né".as_bytes()),
        ];
        for (record, framed) in table {
            assert_eq!(encode(record), framed.to_vec(), "{record:?}");
        }
    }

    #[test]
    fn decoder_reassembles_records_split_anywhere() {
        let records: Vec<Vec<u8>> = vec![b"abc".to_vec(), Vec::new(), vec![b'x'; 300]];
        let stream: Vec<u8> = records.iter().flat_map(|r| encode(r)).collect();
        for piece in [1, 2, 3, 7, stream.len()] {
            let mut decoder = Decoder::default();
            let mut got = Vec::new();
            for chunk in stream.chunks(piece) {
                got.extend(decoder.feed(chunk).expect("well formed"));
            }
            assert_eq!(got, records, "pieces of {piece} bytes");
        }
    }

    #[test]
    fn a_bad_length_is_an_error_naming_it() {
        let err = Decoder::default()
            .feed(b"x1\nabc")
            .expect_err("not a number");
        assert_eq!(err, RecordIoError::BadLength("x1".into()));
    }
}
