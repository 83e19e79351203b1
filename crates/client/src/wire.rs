//! The framing of the scoring service's Unix-socket protocol.
//!
//! A message is a JSON header plus zero or more binary blobs (file contents), so that a model
//! of hundreds of megabytes never passes through base64 or a JSON string:
//!
//! ```text
//! "RDB1" | header length: u32 LE | header: JSON | blob count: u32 LE | (length: u64 LE | bytes)*
//! ```
//!
//! Every length is checked against the reader's [`Limits`] *before* anything is allocated, so a
//! hostile peer that announces a 100 GB blob costs the reader nothing.

use std::io::{self, Read, Write};

use serde::de::DeserializeOwned;
use serde::Serialize;

const MAGIC: &[u8; 4] = b"RDB1";

/// What a reader accepts from its peer.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_header: u32,
    pub max_blobs: u32,
    pub max_blob: u64,
    pub max_total: u64,
}

impl Limits {
    /// What the service accepts from a client: a request and its submission files.
    pub const REQUEST: Limits = Limits {
        max_header: 1 << 20,
        max_blobs: 64,
        max_blob: 1 << 30,
        max_total: 2 << 30,
    };
    /// What a client accepts from the service: a reply and a task's starting files.
    pub const REPLY: Limits = Limits {
        max_header: 64 << 20,
        max_blobs: 4096,
        max_blob: 4 << 30,
        max_total: 8 << 30,
    };
}

/// Why a message could not be read.
#[derive(Debug)]
pub enum WireError {
    /// The peer closed the connection before a whole message.
    Closed,
    Io(io::Error),
    /// The peer broke the framing or a limit; names what.
    Protocol(String),
}

impl std::fmt::Display for WireError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WireError::Closed => write!(f, "the connection closed in the middle of a message"),
            WireError::Io(e) => write!(f, "{e}"),
            WireError::Protocol(m) => write!(f, "protocol error: {m}"),
        }
    }
}

impl std::error::Error for WireError {}

impl From<io::Error> for WireError {
    fn from(e: io::Error) -> Self {
        if e.kind() == io::ErrorKind::UnexpectedEof {
            WireError::Closed
        } else {
            WireError::Io(e)
        }
    }
}

/// Both halves of a connected socket, buffered: what the client and the service each speak
/// through.
pub struct Connection {
    reader: io::BufReader<std::os::unix::net::UnixStream>,
    writer: io::BufWriter<std::os::unix::net::UnixStream>,
}

impl Connection {
    pub fn new(stream: std::os::unix::net::UnixStream) -> io::Result<Self> {
        let writer = stream.try_clone()?;
        Ok(Connection {
            reader: io::BufReader::new(stream),
            writer: io::BufWriter::new(writer),
        })
    }

    pub fn send<T: Serialize>(&mut self, header: &T, blobs: &[&[u8]]) -> Result<(), WireError> {
        write_message(&mut self.writer, header, blobs)
    }

    pub fn receive<T: DeserializeOwned>(
        &mut self,
        limits: Limits,
    ) -> Result<(T, Vec<Vec<u8>>), WireError> {
        read_message(&mut self.reader, limits)
    }

    /// [`read_message_reserving`] on this connection.
    pub fn receive_reserving<T: DeserializeOwned>(
        &mut self,
        limits: Limits,
        reserve: &mut dyn FnMut(u64) -> bool,
    ) -> Result<(T, Vec<Vec<u8>>), WireError> {
        read_message_reserving(&mut self.reader, limits, reserve)
    }
}

/// Writes one message.
pub fn write_message<T: Serialize>(
    w: &mut impl Write,
    header: &T,
    blobs: &[&[u8]],
) -> Result<(), WireError> {
    let json = serde_json::to_vec(header)
        .map_err(|e| WireError::Protocol(format!("cannot encode the header: {e}")))?;
    let header_len =
        u32::try_from(json.len()).map_err(|_| WireError::Protocol("header over 4 GiB".into()))?;
    let count =
        u32::try_from(blobs.len()).map_err(|_| WireError::Protocol("too many blobs".into()))?;
    // One buffered write of the small parts; blobs go straight from their buffers.
    let mut head = Vec::with_capacity(12 + json.len());
    head.extend_from_slice(MAGIC);
    head.extend_from_slice(&header_len.to_le_bytes());
    head.extend_from_slice(&json);
    head.extend_from_slice(&count.to_le_bytes());
    w.write_all(&head)?;
    for blob in blobs {
        w.write_all(&(blob.len() as u64).to_le_bytes())?;
        w.write_all(blob)?;
    }
    w.flush()?;
    Ok(())
}

/// Reads one message within `limits`.
pub fn read_message<T: DeserializeOwned>(
    r: &mut impl Read,
    limits: Limits,
) -> Result<(T, Vec<Vec<u8>>), WireError> {
    read_message_reserving(r, limits, &mut |_| true)
}

/// As [`read_message`], asking `reserve` for each blob's announced length before reading it:
/// a reader serving many peers bounds the bytes it holds for all of them together. A refused
/// reservation ends the read with a protocol error; what was granted is the caller's to give
/// back.
pub fn read_message_reserving<T: DeserializeOwned>(
    r: &mut impl Read,
    limits: Limits,
    reserve: &mut dyn FnMut(u64) -> bool,
) -> Result<(T, Vec<Vec<u8>>), WireError> {
    let mut magic = [0u8; 4];
    r.read_exact(&mut magic)?;
    if &magic != MAGIC {
        return Err(WireError::Protocol(
            "not an rdbench message (bad magic); is this the rdbench scoring socket?".into(),
        ));
    }
    let header_len = read_u32(r)?;
    if header_len > limits.max_header {
        return Err(WireError::Protocol(format!(
            "header of {header_len} bytes is over the {}-byte limit",
            limits.max_header
        )));
    }
    let mut json = vec![0u8; header_len as usize];
    r.read_exact(&mut json)?;
    let header: T = serde_json::from_slice(&json)
        .map_err(|e| WireError::Protocol(format!("malformed header: {e}")))?;
    let count = read_u32(r)?;
    if count > limits.max_blobs {
        return Err(WireError::Protocol(format!(
            "{count} blobs is over the limit of {}",
            limits.max_blobs
        )));
    }
    let mut total = 0u64;
    let mut blobs = Vec::with_capacity(count as usize);
    for i in 0..count {
        let mut len = [0u8; 8];
        r.read_exact(&mut len)?;
        let len = u64::from_le_bytes(len);
        total = total.saturating_add(len);
        if len > limits.max_blob || total > limits.max_total {
            return Err(WireError::Protocol(format!(
                "blob {i} of {len} bytes is over the limit ({} per blob, {} in all)",
                limits.max_blob, limits.max_total
            )));
        }
        if !reserve(len) {
            return Err(WireError::Protocol(format!(
                "blob {i} of {len} bytes does not fit in what the reader can hold now; try again later"
            )));
        }
        let mut blob = Vec::new();
        // `take` + `read_to_end` grows the buffer as bytes arrive: a peer that announces a
        // large blob and sends nothing costs nothing.
        r.take(len).read_to_end(&mut blob)?;
        if blob.len() as u64 != len {
            return Err(WireError::Closed);
        }
        blobs.push(blob);
    }
    Ok((header, blobs))
}

fn read_u32(r: &mut impl Read) -> Result<u32, WireError> {
    let mut b = [0u8; 4];
    r.read_exact(&mut b)?;
    Ok(u32::from_le_bytes(b))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
    struct H {
        op: String,
        n: u64,
    }

    proptest! {
        #[test]
        fn round_trips(op in ".{0,40}", n in any::<u64>(), blobs in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..300), 0..5)) {
            let mut buf = Vec::new();
            let refs: Vec<&[u8]> = blobs.iter().map(|b| b.as_slice()).collect();
            write_message(&mut buf, &H { op: op.clone(), n }, &refs).unwrap();
            let (h, got): (H, _) = read_message(&mut buf.as_slice(), Limits::REQUEST).unwrap();
            prop_assert_eq!(h, H { op, n });
            prop_assert_eq!(got, blobs);
        }

        #[test]
        fn never_panics_on_garbage(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
            let _ = read_message::<H>(&mut bytes.as_slice(), Limits::REQUEST);
        }
    }

    #[test]
    fn a_huge_announced_blob_is_refused_before_any_allocation() {
        let mut buf = Vec::new();
        write_message(
            &mut buf,
            &H {
                op: "x".into(),
                n: 1,
            },
            &[],
        )
        .unwrap();
        // Patch the blob count to 1 and announce 100 GB.
        let n = buf.len();
        buf[n - 4..].copy_from_slice(&1u32.to_le_bytes());
        buf.extend_from_slice(&(100u64 << 30).to_le_bytes());
        let err = read_message::<H>(&mut buf.as_slice(), Limits::REQUEST).unwrap_err();
        assert!(err.to_string().contains("over the limit"), "{err}");
    }

    #[test]
    fn a_refused_reservation_stops_the_read_before_the_blob() {
        let mut buf = Vec::new();
        write_message(
            &mut buf,
            &H {
                op: "x".into(),
                n: 1,
            },
            &[b"0123456789", b"abc"],
        )
        .unwrap();
        let mut asked = Vec::new();
        let err = read_message_reserving::<H>(&mut buf.as_slice(), Limits::REQUEST, &mut |n| {
            asked.push(n);
            n < 5
        })
        .unwrap_err();
        assert_eq!(asked, vec![10]);
        assert!(err.to_string().contains("does not fit"), "{err}");
        let (_, blobs) =
            read_message_reserving::<H>(&mut buf.as_slice(), Limits::REQUEST, &mut |_| true)
                .unwrap();
        assert_eq!(blobs, vec![b"0123456789".to_vec(), b"abc".to_vec()]);
    }

    #[test]
    fn truncation_and_bad_magic_are_errors() {
        let mut buf = Vec::new();
        write_message(
            &mut buf,
            &H {
                op: "x".into(),
                n: 1,
            },
            &[b"abc"],
        )
        .unwrap();
        let cut = &buf[..buf.len() - 1];
        assert!(matches!(
            read_message::<H>(&mut &cut[..], Limits::REQUEST),
            Err(WireError::Closed)
        ));
        let mut bad = buf.clone();
        bad[0] = b'X';
        assert!(read_message::<H>(&mut bad.as_slice(), Limits::REQUEST)
            .unwrap_err()
            .to_string()
            .contains("bad magic"));
    }
}
