//! Clients that make one call or one raw round trip at a time, and timing them.

use super::*;

/// Something that makes one round trip at a time.
pub(super) trait RoundTrip: Send + 'static {
    fn round_trip(&mut self) -> impl Future<Output = Result<()>> + Send;
}

/// A raw connection sending frames of one size and reading the echoes.
pub(super) struct RawConn {
    pub(super) reader: BufReader<OwnedReadHalf>,
    pub(super) writer: OwnedWriteHalf,
    /// The frame sent: prefix and payload.
    pub(super) frame: Vec<u8>,
    /// Where replies are read.
    pub(super) reply: Vec<u8>,
    /// Frames sent with one write.
    pub(super) batch: Vec<u8>,
}

impl RawConn {
    /// Connects to the raw server that writes each echo on its own.
    pub(super) async fn connect(dir: &Path, payload: usize) -> Result<Self> {
        Self::connect_to(&dir.join(RAW_SOCKET), payload).await
    }

    pub(super) async fn connect_to(path: &Path, payload: usize) -> Result<Self> {
        let stream = UnixStream::connect(path).await?;
        let (reader, writer) = stream.into_split();
        let len = u32::try_from(payload)?;
        let mut frame = len.to_le_bytes().to_vec();
        frame.extend((0..payload).map(|i| i as u8));
        Ok(Self {
            reader: BufReader::new(reader),
            writer,
            frame,
            reply: vec![0; payload],
            batch: Vec::new(),
        })
    }

    pub(super) async fn send(&mut self) -> Result<()> {
        self.writer.write_all(&self.frame).await?;
        Ok(())
    }

    /// Sends `count` frames with one write.
    pub(super) async fn send_many(&mut self, count: usize) -> Result<()> {
        self.batch.clear();
        for _ in 0..count {
            self.batch.extend_from_slice(&self.frame);
        }
        if !self.batch.is_empty() {
            self.writer.write_all(&self.batch).await?;
        }
        Ok(())
    }

    /// Receives a reply if one is already buffered, without reading from the socket.
    pub(super) async fn receive_buffered(&mut self) -> Result<bool> {
        if buffered_frame(self.reader.buffer()).is_none() {
            return Ok(false);
        }
        self.receive().await?;
        Ok(true)
    }

    pub(super) async fn receive(&mut self) -> Result<()> {
        let mut prefix = [0u8; 4];
        self.reader.read_exact(&mut prefix).await?;
        let len = u32::from_le_bytes(prefix) as usize;
        if len != self.reply.len() {
            return Err(format!("raw echo of {len} bytes, expected {}", self.reply.len()).into());
        }
        self.reader.read_exact(&mut self.reply).await?;
        Ok(())
    }
}

impl RoundTrip for RawConn {
    async fn round_trip(&mut self) -> Result<()> {
        self.send().await?;
        self.receive().await
    }
}

/// Calls `add(1, 2)`.
pub(super) struct AddCall(pub(super) BenchClient);

impl RoundTrip for AddCall {
    async fn round_trip(&mut self) -> Result<()> {
        match self.0.add(1, 2).await? {
            3 => Ok(()),
            other => Err(format!("add(1, 2) returned {other}").into()),
        }
    }
}

/// Echoes a byte buffer through the service.
pub(super) struct EchoCall {
    pub(super) client: BenchClient,
    pub(super) data: ByteBuf,
}

impl RoundTrip for EchoCall {
    async fn round_trip(&mut self) -> Result<()> {
        let back = self.client.echo(self.data.clone()).await?;
        if back.len() == self.data.len() {
            Ok(())
        } else {
            Err(format!("echo returned {} of {} bytes", back.len(), self.data.len()).into())
        }
    }
}

/// Round trips counted over a measured time, with their durations if asked for.
pub(super) struct Sequential {
    pub(super) warmup_calls: u64,
    pub(super) calls: u64,
    pub(super) elapsed: Duration,
    /// Round-trip times in nanoseconds, sorted.
    pub(super) samples: Vec<u64>,
}

impl Sequential {
    pub(super) fn per_second(&self) -> f64 {
        self.calls as f64 / self.elapsed.as_secs_f64()
    }

    /// The `q` quantile of the round-trip times, in microseconds.
    pub(super) fn quantile_us(&self, q: f64) -> f64 {
        if self.samples.is_empty() {
            return f64::NAN;
        }
        let at = ((self.samples.len() - 1) as f64 * q).round() as usize;
        self.samples.get(at).copied().unwrap_or(0) as f64 / 1e3
    }
}

/// Makes round trips one after another: until `warm_until` unmeasured, then until `until`
/// measured (timing each one if `record`).
pub(super) async fn sequential<C: RoundTrip>(
    conn: &mut C,
    warm_until: Instant,
    until: Instant,
    record: bool,
) -> Result<Sequential> {
    let mut warmup_calls = 0;
    while Instant::now() < warm_until {
        conn.round_trip().await?;
        warmup_calls += 1;
    }
    let mut samples = Vec::new();
    let mut calls = 0;
    let started = Instant::now();
    let mut now = started;
    while now < until {
        conn.round_trip().await?;
        calls += 1;
        let then = now;
        now = Instant::now();
        if record {
            samples.push(u64::try_from((now - then).as_nanos()).unwrap_or(u64::MAX));
        }
    }
    samples.sort_unstable();
    Ok(Sequential {
        warmup_calls,
        calls,
        elapsed: now - started,
        samples,
    })
}
