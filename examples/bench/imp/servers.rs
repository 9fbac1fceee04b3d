//! The servers under test: the framework, the raw echo servers and the raw stream server.

use super::*;

/// The framework server, the raw echo servers and the raw stream server, bound in a private
/// directory.
pub(super) struct Servers {
    pub(super) dir: PathBuf,
    pub(super) shutdown: rpc_core::CancellationToken,
    pub(super) framework: tokio::task::JoinHandle<std::io::Result<()>>,
    pub(super) raw: [tokio::task::JoinHandle<()>; 3],
}

impl Servers {
    pub(super) fn start(dir: &Path, max_connections: usize) -> Result<Self> {
        let server = Server::bind_with(
            &endpoint(dir)?,
            BenchServer::new(BenchImpl),
            ServerConfig::new().max_connections(max_connections),
        )?;
        let shutdown = server.shutdown_handle();
        let framework = tokio::spawn(server.run());
        let listener = UnixListener::bind(dir.join(RAW_SOCKET))?;
        let batched = UnixListener::bind(dir.join(RAW_BATCHED_SOCKET))?;
        let streams = UnixListener::bind(dir.join(RAW_STREAM_SOCKET))?;
        let raw = [
            tokio::spawn(raw_server(listener, Echo::OneWriteEach, None)),
            tokio::spawn(raw_server(batched, Echo::Coalesced, None)),
            tokio::spawn(raw_stream_server(streams)),
        ];
        Ok(Self {
            dir: dir.to_owned(),
            shutdown,
            framework,
            raw,
        })
    }

    pub(super) async fn stop(self) -> Result<()> {
        self.shutdown.cancel();
        self.framework.await??;
        for raw in self.raw {
            raw.abort();
        }
        Ok(())
    }
}

pub(super) fn endpoint(dir: &Path) -> Result<Endpoint> {
    Ok(Endpoint::new(NAME)?.in_dir(dir))
}

pub(super) async fn connect(dir: &Path) -> Result<BenchClient> {
    Ok(rpc_transport::connect_with(&endpoint(dir)?, &ClientConfig::default()).await?)
}

/// A directory of the benchmark's own, closed to other users, so that runs never collide.
pub(super) fn private_dir() -> Result<tempfile::TempDir> {
    use std::os::unix::fs::PermissionsExt;
    Ok(tempfile::Builder::new()
        .prefix("rpc-bench-")
        .permissions(std::fs::Permissions::from_mode(0o700))
        .tempdir()?)
}

/// How a raw server writes its echoes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Echo {
    /// One write per frame: what the brief calls the raw baseline.
    OneWriteEach,
    /// Every frame already read is echoed with one write.
    Coalesced,
}

/// Accepts raw connections and echoes every frame on each. With `accepted`, reports each
/// connection once its task is ready to read.
pub(super) async fn raw_server(
    listener: UnixListener,
    echo: Echo,
    accepted: Option<mpsc::UnboundedSender<()>>,
) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let accepted = accepted.clone();
        tokio::spawn(async move {
            let _ = raw_echo(stream, echo, accepted).await;
        });
    }
}

/// The payload length of the frame at the front of `buffered`, if all of it is there.
pub(super) fn buffered_frame(buffered: &[u8]) -> Option<usize> {
    let prefix: [u8; 4] = buffered.get(..4)?.try_into().ok()?;
    let len = u32::from_le_bytes(prefix) as usize;
    (buffered.len() >= 4 + len).then_some(len)
}

/// Reads one frame (prefix and payload) into `out` from `used` on; returns where it ends, or
/// `None` at the end of the stream. `out` only grows, so a 1 MiB echo does not clear its
/// buffer every message.
pub(super) async fn read_frame_into(
    reader: &mut BufReader<OwnedReadHalf>,
    out: &mut Vec<u8>,
    used: usize,
) -> std::io::Result<Option<usize>> {
    let mut prefix = [0u8; 4];
    match reader.read_exact(&mut prefix).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let len = u32::from_le_bytes(prefix) as usize;
    if len > 64 * MIB {
        return Err(std::io::ErrorKind::InvalidData.into());
    }
    let end = used + 4 + len;
    if out.len() < end {
        out.resize(end, 0);
    }
    out[used..used + 4].copy_from_slice(&prefix);
    reader.read_exact(&mut out[used + 4..end]).await?;
    Ok(Some(end))
}

/// Echoes frames read through a buffered reader: each with a write of its own, or all
/// those already read with one write.
pub(super) async fn raw_echo(
    stream: UnixStream,
    echo: Echo,
    accepted: Option<mpsc::UnboundedSender<()>>,
) -> std::io::Result<()> {
    let (reader, mut writer) = stream.into_split();
    let mut reader = BufReader::new(reader);
    let mut out = Vec::new();
    if let Some(accepted) = accepted {
        let _ = accepted.send(());
    }
    while let Some(mut used) = read_frame_into(&mut reader, &mut out, 0).await? {
        if echo == Echo::Coalesced {
            while buffered_frame(reader.buffer()).is_some() {
                match read_frame_into(&mut reader, &mut out, used).await? {
                    Some(end) => used = end,
                    None => break,
                }
            }
        }
        writer.write_all(&out[..used]).await?;
    }
    Ok(())
}

/// Accepts raw connections and streams on each.
pub(super) async fn raw_stream_server(listener: UnixListener) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        tokio::spawn(async move {
            let _ = raw_stream(stream).await;
        });
    }
}

/// Reads one frame, then writes copies of it until the client goes away: a small frame with
/// as many others as fit in `RAW_STREAM_BATCH` bytes in one write, a large one on its own.
pub(super) async fn raw_stream(stream: UnixStream) -> std::io::Result<()> {
    let (reader, mut writer) = stream.into_split();
    let mut reader = BufReader::new(reader);
    let mut first = Vec::new();
    let Some(end) = read_frame_into(&mut reader, &mut first, 0).await? else {
        return Ok(());
    };
    let frame = &first[..end];
    let per_write = (RAW_STREAM_BATCH / frame.len()).max(1);
    let mut batch = Vec::with_capacity(per_write * frame.len());
    loop {
        if per_write == 1 {
            writer.write_all(frame).await?;
        } else {
            batch.clear();
            for _ in 0..per_write {
                batch.extend_from_slice(frame);
            }
            writer.write_all(&batch).await?;
        }
    }
}
