//! A child's output kept with a byte cap: the last `cap` bytes exactly (a ring, so a flood
//! costs no more memory than the cap) and a count of everything that went by.

/// What was kept of one output stream.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Captured {
    /// The last bytes written, at most the cap, byte for byte.
    pub tail: Vec<u8>,
    /// Every byte the child wrote to the stream.
    pub total: u64,
}

impl Captured {
    /// Bytes written before the kept tail and not kept.
    pub fn dropped(&self) -> u64 {
        self.total - self.tail.len() as u64
    }

    /// Whether everything written was kept.
    pub fn complete(&self) -> bool {
        self.dropped() == 0
    }

    /// The tail as text (invalid UTF-8 replaced), for messages.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.tail).into_owned()
    }
}

/// The ring that fills a [`Captured`].
pub(crate) struct Tail {
    cap: usize,
    buf: Vec<u8>,
    /// Where the oldest byte is once the ring is full.
    start: usize,
    total: u64,
}

impl Tail {
    pub(crate) fn new(cap: usize) -> Self {
        Tail {
            cap,
            buf: Vec::new(),
            start: 0,
            total: 0,
        }
    }

    pub(crate) fn push(&mut self, mut bytes: &[u8]) {
        self.total += bytes.len() as u64;
        if self.cap == 0 {
            return;
        }
        if bytes.len() >= self.cap {
            // Only the last `cap` bytes of this chunk can survive.
            bytes = &bytes[bytes.len() - self.cap..];
            self.buf.clear();
            self.buf.extend_from_slice(bytes);
            self.start = 0;
            return;
        }
        let room = self.cap - self.buf.len();
        if room > 0 {
            let now = room.min(bytes.len());
            self.buf.extend_from_slice(&bytes[..now]);
            bytes = &bytes[now..];
        }
        // Full: overwrite the oldest bytes in place.
        for &b in bytes {
            self.buf[self.start] = b;
            self.start = (self.start + 1) % self.cap;
        }
    }

    pub(crate) fn finish(mut self) -> Captured {
        self.buf.rotate_left(self.start);
        Captured {
            tail: self.buf,
            total: self.total,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Whatever the chunking, the tail is exactly the last `cap` bytes of the stream.
    #[test]
    fn the_tail_is_the_last_bytes_whatever_the_chunks() {
        let stream: Vec<u8> = (0..10_000u32).map(|i| (i * 7 % 251) as u8).collect();
        for cap in [0, 1, 7, 100, 4096, 10_000, 20_000] {
            for chunk in [1, 3, 64, 999, 5000, 10_000] {
                let mut t = Tail::new(cap);
                for c in stream.chunks(chunk) {
                    t.push(c);
                }
                let got = t.finish();
                let keep = cap.min(stream.len());
                assert_eq!(
                    got.tail,
                    &stream[stream.len() - keep..],
                    "cap {cap} chunk {chunk}"
                );
                assert_eq!(got.total, stream.len() as u64);
                assert_eq!(got.dropped(), (stream.len() - keep) as u64);
            }
        }
    }
}
