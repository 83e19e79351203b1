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
//!
//! A connection may also keep a [`Deadline`] per message (the service does; the client does
//! not, since a score can take minutes before its reply starts). Reading one message must then
//! finish in time as a whole: its first byte within `first_byte`, the framing and header within
//! `header` of that byte, and every announced blob at `min_rate` on average (each blob's length
//! extends the deadline by length / rate), never more than `max`. Before every read the socket's
//! timeout is set to the time left, so a peer that trickles one byte per timeout cannot stretch
//! a message: the deadline ends it with a protocol error that names it. Sending keeps the same
//! deadline (header, plus the blobs at the rate), so a peer that stops reading holds nothing
//! for long either.

use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

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
    /// What the service accepts as a connection's first message: a request, no blobs (only
    /// the submission, later, carries bytes, and those are reserved from a budget first).
    pub const ENVELOPE: Limits = Limits {
        max_header: 1 << 20,
        max_blobs: 0,
        max_blob: 0,
        max_total: 0,
    };
}

/// How long receiving (or sending) one whole message may take; see the module's overview.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deadline {
    /// The longest wait for the message's first byte.
    pub first_byte: Duration,
    /// From the first byte: the framing, the header and the blob lengths.
    pub header: Duration,
    /// Blob bytes per second, at least, on average: each announced blob extends the deadline
    /// by its length at this rate.
    pub min_rate: u64,
    /// The longest any message may take from its first byte, however large.
    pub max: Duration,
}

impl Deadline {
    /// What the service gives a client's request: 10 s to start, 10 s for the header, blobs
    /// at 4 MiB/s, 10 min at most (a 2 GiB submission needs 522 s at the rate).
    pub const REQUEST: Deadline = Deadline {
        first_byte: Duration::from_secs(10),
        header: Duration::from_secs(10),
        min_rate: 4 << 20,
        max: Duration::from_secs(600),
    };

    /// As [`Deadline::REQUEST`], with 120 s to start: the client reads the submission files
    /// from its disk before it sends the first byte.
    pub const SUBMISSION: Deadline = Deadline {
        first_byte: Duration::from_secs(120),
        ..Deadline::REQUEST
    };

    /// The time `len` blob bytes may take at the minimum rate (saturating: a length is the
    /// peer's word).
    fn for_blob(&self, len: u64) -> Duration {
        Duration::try_from_secs_f64(len as f64 / self.min_rate.max(1) as f64)
            .unwrap_or(Duration::MAX)
    }

    fn describe(&self) -> String {
        let rate = if self.min_rate >= 1 << 20 {
            format!("{} MiB/s", self.min_rate as f64 / (1u64 << 20) as f64)
        } else {
            format!("{} bytes/s", self.min_rate)
        };
        format!(
            "{} s for the header, then blobs at {rate}, {} s at most",
            self.header.as_secs_f64(),
            self.max.as_secs_f64()
        )
    }
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
        if let Some(passed) = e.get_ref().and_then(|i| i.downcast_ref::<DeadlinePassed>()) {
            return WireError::Protocol(passed.0.clone());
        }
        if e.kind() == io::ErrorKind::UnexpectedEof {
            WireError::Closed
        } else {
            WireError::Io(e)
        }
    }
}

/// A [`Deadline`] passed; carried inside an `io::Error` out of `Read`/`Write` calls.
#[derive(Debug)]
struct DeadlinePassed(String);

impl std::fmt::Display for DeadlinePassed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for DeadlinePassed {}

/// A reader that knows the blob lengths as the message announces them.
trait MessageRead: Read {
    /// A blob of `len` bytes was announced.
    fn announce(&mut self, _len: u64) {}
}

/// A plain reader: no deadline.
struct Untimed<R>(R);

impl<R: Read> Read for Untimed<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.read(buf)
    }
}

impl<R: Read> MessageRead for Untimed<R> {}

/// The socket under a reader or writer, whose timeout a deadline sets.
trait Socket {
    fn socket(&self) -> &UnixStream;
}

impl Socket for io::BufReader<UnixStream> {
    fn socket(&self) -> &UnixStream {
        self.get_ref()
    }
}

impl Socket for io::BufWriter<UnixStream> {
    fn socket(&self) -> &UnixStream {
        self.get_ref()
    }
}

/// One message's read or write under a [`Deadline`].
struct Timed<'a, S> {
    inner: &'a mut S,
    deadline: Deadline,
    waiting_since: Instant,
    /// When the first byte came (a reader), or the start (a writer).
    first: Option<Instant>,
    /// What the announced blobs add to `deadline.header`.
    blobs: Duration,
}

impl<'a, S: Socket> Timed<'a, S> {
    fn reading(inner: &'a mut S, deadline: Deadline) -> Self {
        Timed {
            inner,
            deadline,
            waiting_since: Instant::now(),
            first: None,
            blobs: Duration::ZERO,
        }
    }

    fn writing(inner: &'a mut S, deadline: Deadline, bytes: u64) -> Self {
        Timed {
            inner,
            deadline,
            waiting_since: Instant::now(),
            first: Some(Instant::now()),
            blobs: deadline.for_blob(bytes),
        }
    }

    /// The instant the message must be done by, and what it is, in words.
    fn limit(&self) -> (Instant, String) {
        match self.first {
            None => (
                self.waiting_since + self.deadline.first_byte,
                format!(
                    "no message began within {} s",
                    self.deadline.first_byte.as_secs_f64()
                ),
            ),
            Some(first) => {
                let allowed =
                    (self.deadline.header.saturating_add(self.blobs)).min(self.deadline.max);
                (
                    first + allowed,
                    format!(
                        "the message did not complete within its deadline of {:.1} s ({})",
                        allowed.as_secs_f64(),
                        self.deadline.describe()
                    ),
                )
            }
        }
    }

    /// Sets the socket's timeout (through `set`) to the time left, then runs `op`; a timeout
    /// before the deadline (the clock's granularity) is retried, one at or after it ends the
    /// message.
    fn timed<T>(
        &mut self,
        set: fn(&UnixStream, Option<Duration>) -> io::Result<()>,
        mut op: impl FnMut(&mut S) -> io::Result<T>,
    ) -> io::Result<T> {
        loop {
            let (limit, what) = self.limit();
            let left = limit.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    DeadlinePassed(what),
                ));
            }
            // A zero timeout would mean "none"; a millisecond is the least.
            set(
                self.inner.socket(),
                Some(left.max(Duration::from_millis(1))),
            )?;
            match op(&mut *self.inner) {
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) => {}
                other => return other,
            }
        }
    }
}

impl<S: Socket + Read> Read for Timed<'_, S> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.timed(UnixStream::set_read_timeout, |r| r.read(buf))?;
        if n > 0 && self.first.is_none() {
            self.first = Some(Instant::now());
        }
        Ok(n)
    }
}

impl<S: Socket + Read> MessageRead for Timed<'_, S> {
    fn announce(&mut self, len: u64) {
        self.blobs = self.blobs.saturating_add(self.deadline.for_blob(len));
    }
}

impl<S: Socket + Write> Write for Timed<'_, S> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.timed(UnixStream::set_write_timeout, |w| w.write(buf))
    }
    fn flush(&mut self) -> io::Result<()> {
        self.timed(UnixStream::set_write_timeout, |w| w.flush())
    }
}

/// Both halves of a connected socket, buffered: what the client and the service each speak
/// through.
pub struct Connection {
    reader: io::BufReader<UnixStream>,
    writer: io::BufWriter<UnixStream>,
    deadline: Option<Deadline>,
}

impl Connection {
    /// A connection without deadlines: reads and writes wait as long as the socket's own
    /// timeouts allow.
    pub fn new(stream: UnixStream) -> io::Result<Self> {
        let writer = stream.try_clone()?;
        Ok(Connection {
            reader: io::BufReader::new(stream),
            writer: io::BufWriter::new(writer),
            deadline: None,
        })
    }

    /// The deadline every later message, received or sent, must keep (`None`: no deadline).
    /// It takes over the socket's timeouts.
    pub fn set_deadline(&mut self, deadline: Option<Deadline>) {
        self.deadline = deadline;
    }

    pub fn send<T: Serialize>(&mut self, header: &T, blobs: &[&[u8]]) -> Result<(), WireError> {
        match self.deadline {
            None => write_message(&mut self.writer, header, blobs),
            Some(deadline) => {
                let bytes = blobs.iter().map(|b| b.len() as u64).sum();
                write_message(
                    &mut Timed::writing(&mut self.writer, deadline, bytes),
                    header,
                    blobs,
                )
            }
        }
    }

    pub fn receive<T: DeserializeOwned>(
        &mut self,
        limits: Limits,
    ) -> Result<(T, Vec<Vec<u8>>), WireError> {
        self.receive_reserving(limits, &mut |_| true)
    }

    /// [`read_message_reserving`] on this connection, within its deadline.
    pub fn receive_reserving<T: DeserializeOwned>(
        &mut self,
        limits: Limits,
        reserve: &mut dyn FnMut(u64) -> bool,
    ) -> Result<(T, Vec<Vec<u8>>), WireError> {
        match self.deadline {
            None => read_framed(&mut Untimed(&mut self.reader), limits, reserve),
            Some(deadline) => read_framed(
                &mut Timed::reading(&mut self.reader, deadline),
                limits,
                reserve,
            ),
        }
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
    read_framed(&mut Untimed(r), limits, reserve)
}

fn read_framed<T: DeserializeOwned>(
    r: &mut impl MessageRead,
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
        r.announce(len);
        let mut blob = Vec::new();
        // `take` + `read_to_end` grows the buffer as bytes arrive: a peer that announces a
        // large blob and sends nothing costs nothing.
        r.by_ref().take(len).read_to_end(&mut blob)?;
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

    /// The header most tests send.
    fn header() -> H {
        H {
            op: "x".into(),
            n: 1,
        }
    }

    /// [`header`] and `blobs` as one framed message.
    fn encoded(blobs: &[&[u8]]) -> Vec<u8> {
        let mut buf = Vec::new();
        write_message(&mut buf, &header(), blobs).unwrap();
        buf
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
        let mut buf = encoded(&[]);
        // Patch the blob count to 1 and announce 100 GB.
        let n = buf.len();
        buf[n - 4..].copy_from_slice(&1u32.to_le_bytes());
        buf.extend_from_slice(&(100u64 << 30).to_le_bytes());
        let err = read_message::<H>(&mut buf.as_slice(), Limits::REQUEST).unwrap_err();
        assert!(err.to_string().contains("over the limit"), "{err}");
    }

    #[test]
    fn a_refused_reservation_stops_the_read_before_the_blob() {
        let buf = encoded(&[b"0123456789", b"abc"]);
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

    fn deadline(first_byte_ms: u64, header_ms: u64, min_rate: u64) -> Deadline {
        Deadline {
            first_byte: Duration::from_millis(first_byte_ms),
            header: Duration::from_millis(header_ms),
            min_rate,
            max: Duration::from_secs(60),
        }
    }

    #[test]
    fn a_trickled_message_ends_at_its_deadline_though_every_read_gets_a_byte() {
        let (ours, mut theirs) = UnixStream::pair().unwrap();
        let mut conn = Connection::new(ours).unwrap();
        conn.set_deadline(Some(deadline(5_000, 300, 1 << 20)));
        // A byte every 20 ms: far inside any per-read timeout, for up to 10 s.
        let trickler = std::thread::spawn(move || {
            let mut sent = 0;
            // A header of 1 MiB - 1 bytes is announced, and comes as spaces.
            let framing = [b"RDB1".as_slice(), &0x000f_ffffu32.to_le_bytes()].concat();
            for byte in framing.iter().chain([b' '; 500].iter()) {
                if theirs.write_all(&[*byte]).is_err() {
                    break;
                }
                sent += 1;
                std::thread::sleep(Duration::from_millis(20));
            }
            sent
        });
        let err = conn.receive::<H>(Limits::REQUEST).unwrap_err();
        assert!(
            matches!(&err, WireError::Protocol(m) if m.contains("deadline of 0.3 s")),
            "{err}"
        );
        drop(conn);
        let sent = trickler.join().unwrap();
        assert!(
            sent < 504,
            "the trickler sent its whole message first: {sent}"
        );
    }

    #[test]
    fn the_wait_for_a_first_byte_is_bounded() {
        let (ours, _theirs) = UnixStream::pair().unwrap();
        let mut conn = Connection::new(ours).unwrap();
        conn.set_deadline(Some(deadline(100, 5_000, 1 << 20)));
        let err = conn.receive::<H>(Limits::REQUEST).unwrap_err();
        assert!(
            matches!(&err, WireError::Protocol(m) if m.contains("no message began within 0.1 s")),
            "{err}"
        );
    }

    #[test]
    fn an_announced_blob_extends_the_deadline_at_the_minimum_rate() {
        let (ours, mut theirs) = UnixStream::pair().unwrap();
        let mut conn = Connection::new(ours).unwrap();
        // 200 ms for the header; the 4,000-byte blob adds 4 s at 1,000 bytes/s.
        conn.set_deadline(Some(deadline(5_000, 200, 1_000)));
        let blob = vec![7u8; 4_000];
        let buf = encoded(&[&blob]);
        let sender = std::thread::spawn(move || {
            // The framing now, the blob after the header's 200 ms (inside the blob's 4 s).
            let split = buf.len() - blob.len();
            theirs.write_all(&buf[..split]).unwrap();
            std::thread::sleep(Duration::from_millis(600));
            theirs.write_all(&buf[split..]).unwrap();
            theirs
        });
        let (got, blobs) = conn.receive::<H>(Limits::REQUEST).unwrap();
        assert_eq!(got, header());
        assert_eq!(blobs, vec![vec![7u8; 4_000]]);
        drop(sender.join().unwrap());
    }

    #[test]
    fn a_send_to_a_peer_that_stops_reading_ends_at_its_deadline() {
        let (ours, _theirs) = UnixStream::pair().unwrap();
        let mut conn = Connection::new(ours).unwrap();
        conn.set_deadline(Some(deadline(5_000, 200, 1 << 30)));
        // Far more than the socket's buffer holds; nobody reads it.
        let blob = vec![0u8; 16 << 20];
        let err = conn.send(&header(), &[&blob]).unwrap_err();
        assert!(
            matches!(&err, WireError::Protocol(m) if m.contains("deadline")),
            "{err}"
        );
    }

    #[test]
    fn a_first_message_carries_no_blobs() {
        let buf = encoded(&[]);
        assert!(read_message::<H>(&mut buf.as_slice(), Limits::ENVELOPE).is_ok());
        let buf = encoded(&[b"x"]);
        let err = read_message::<H>(&mut buf.as_slice(), Limits::ENVELOPE).unwrap_err();
        assert!(err.to_string().contains("over the limit of 0"), "{err}");
    }

    #[test]
    fn truncation_and_bad_magic_are_errors() {
        let buf = encoded(&[b"abc"]);
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
