//! Layer compression whose bytes depend only on the input: gzip (pinned
//! zlib-rs deflate, level 6, compressed in parallel blocks), zstd (level 3,
//! single-threaded) or none. The digest and size of the compressed stream
//! are computed while writing.
//!
//! Parallel gzip works like pigz: the input is cut into fixed 1 MiB blocks;
//! each block is deflated on its own (primed with the last 32 KiB of the
//! block before as a dictionary, so the ratio is that of one stream) and
//! ends with a sync flush, which byte-aligns it, so the blocks concatenate
//! into one deflate stream; only the last block is final. The CRC-32s of the
//! blocks are combined. A block's bytes depend only on its own input and the
//! 32 KiB before it, so the output is the same whatever the thread count.

use std::collections::VecDeque;
use std::io::{self, Write};
use std::sync::mpsc;
use std::sync::Arc;

use flate2::{Compress, FlushCompress, Status};

use crate::digest::{Digest, DigestWriter};

/// Input bytes per independently deflated block.
pub const GZIP_BLOCK: usize = 1 << 20;
/// Deflate's window: the dictionary handed from one block to the next.
const WINDOW: usize = 32 << 10;
/// Deflate level (gzip's default).
pub const GZIP_LEVEL: u32 = 6;
/// zstd level (zstd's default).
pub const ZSTD_LEVEL: i32 = 3;
/// The gzip header: magic, deflate, no flags (no name, no comment), mtime 0,
/// XFL 0, OS 255 ("unknown", as Go's compress/gzip writes it).
const GZIP_HEADER: [u8; 10] = [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff];

/// How a layer is compressed.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, Default, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    #[default]
    Gzip,
    Zstd,
    None,
}

impl Compression {
    /// The OCI layer media type.
    pub fn media_type(self) -> &'static str {
        match self {
            Compression::Gzip => "application/vnd.oci.image.layer.v1.tar+gzip",
            Compression::Zstd => "application/vnd.oci.image.layer.v1.tar+zstd",
            Compression::None => "application/vnd.oci.image.layer.v1.tar",
        }
    }
}

impl std::str::FromStr for Compression {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "gzip" => Ok(Compression::Gzip),
            "zstd" => Ok(Compression::Zstd),
            "none" => Ok(Compression::None),
            _ => Err(format!(
                "unknown compression {s:?}: expected gzip, zstd or none"
            )),
        }
    }
}

/// A writer that compresses into `W`, hashing the compressed bytes.
pub enum Compressor<'p, W: Write> {
    Gzip(ParallelGzip<'p, DigestWriter<W>>),
    Zstd(Box<zstd::stream::write::Encoder<'static, DigestWriter<W>>>),
    None(DigestWriter<W>),
}

impl<'p, W: Write> Compressor<'p, W> {
    /// Start a compressed stream into `out`; gzip blocks are deflated on
    /// `pool`.
    pub fn new(kind: Compression, out: W, pool: &'p rayon::ThreadPool) -> io::Result<Self> {
        let out = DigestWriter::new(out);
        Ok(match kind {
            Compression::Gzip => Compressor::Gzip(ParallelGzip::new(out, pool)),
            Compression::Zstd => {
                let mut e = zstd::stream::write::Encoder::new(out, ZSTD_LEVEL)?;
                e.include_checksum(false)?;
                e.include_contentsize(false)?;
                e.include_dictid(false)?;
                Compressor::Zstd(Box::new(e))
            }
            Compression::None => Compressor::None(out),
        })
    }

    /// End the stream: the digest and size of the compressed bytes, and the
    /// inner writer.
    pub fn finish(self) -> io::Result<(Digest, u64, W)> {
        let dw = match self {
            Compressor::Gzip(g) => g.finish()?,
            Compressor::Zstd(z) => z.finish()?,
            Compressor::None(d) => d,
        };
        Ok(dw.finish())
    }
}

impl<W: Write> Write for Compressor<'_, W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Compressor::Gzip(g) => g.write(buf),
            Compressor::Zstd(z) => z.write(buf),
            Compressor::None(d) => d.write(buf),
        }
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        match self {
            Compressor::Gzip(g) => g.write_all(buf),
            Compressor::Zstd(z) => z.write_all(buf),
            Compressor::None(d) => d.write_all(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            // A gzip flush would change the bytes; blocks go out when full.
            Compressor::Gzip(_) => Ok(()),
            Compressor::Zstd(z) => z.get_mut().flush(),
            Compressor::None(d) => d.flush(),
        }
    }
}

/// One deflated block: its bytes and the CRC-32 of its input.
type Deflated = io::Result<(Vec<u8>, crc32fast::Hasher)>;

/// A gzip writer that deflates fixed-size blocks on a thread pool and writes
/// them in order (see the module docs).
pub struct ParallelGzip<'p, W: Write> {
    out: W,
    pool: &'p rayon::ThreadPool,
    block: Vec<u8>,
    /// The last `WINDOW` bytes of the previous block.
    dict: Arc<Vec<u8>>,
    pending: VecDeque<mpsc::Receiver<Deflated>>,
    max_pending: usize,
    crc: crc32fast::Hasher,
    /// Input bytes taken so far (for the gzip trailer's ISIZE).
    len: u64,
    header_written: bool,
}

impl<'p, W: Write> ParallelGzip<'p, W> {
    pub fn new(out: W, pool: &'p rayon::ThreadPool) -> Self {
        ParallelGzip {
            out,
            pool,
            block: Vec::with_capacity(GZIP_BLOCK),
            dict: Arc::new(Vec::new()),
            pending: VecDeque::new(),
            // Enough blocks in flight to keep every thread busy while the
            // producer fills the next ones; bounds memory to a few MiB a thread.
            max_pending: 2 * pool.current_num_threads() + 2,
            crc: crc32fast::Hasher::new(),
            len: 0,
            header_written: false,
        }
    }

    fn dispatch(&mut self, last: bool) -> io::Result<()> {
        let data = std::mem::replace(
            &mut self.block,
            Vec::with_capacity(if last { 0 } else { GZIP_BLOCK }),
        );
        let next_dict = Arc::new(data[data.len().saturating_sub(WINDOW)..].to_vec());
        let dict = std::mem::replace(&mut self.dict, next_dict);
        let (tx, rx) = mpsc::sync_channel(1);
        self.pool.spawn(move || {
            let _ = tx.send(deflate_block(&data, &dict, last));
        });
        self.pending.push_back(rx);
        while self.pending.len() > self.max_pending {
            self.write_oldest()?;
        }
        Ok(())
    }

    fn write_oldest(&mut self) -> io::Result<()> {
        let Some(rx) = self.pending.pop_front() else {
            return Ok(());
        };
        let (bytes, crc) = rx
            .recv()
            .map_err(|_| io::Error::other("a deflate worker died"))??;
        if !self.header_written {
            self.out.write_all(&GZIP_HEADER)?;
            self.header_written = true;
        }
        self.crc.combine(&crc);
        self.out.write_all(&bytes)
    }

    /// Deflate what is left as the final block, write the trailer, and
    /// return the inner writer.
    pub fn finish(mut self) -> io::Result<W> {
        self.dispatch(true)?;
        while !self.pending.is_empty() {
            self.write_oldest()?;
        }
        let crc = self.crc.clone().finalize();
        let len = self.len;
        self.out.write_all(&crc.to_le_bytes())?;
        // ISIZE: the input length modulo 2^32.
        self.out.write_all(&(len as u32).to_le_bytes())?;
        Ok(self.out)
    }
}

impl<W: Write> Write for ParallelGzip<'_, W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = buf.len().min(GZIP_BLOCK - self.block.len());
        self.block.extend_from_slice(&buf[..n]);
        self.len += n as u64;
        if self.block.len() == GZIP_BLOCK {
            self.dispatch(false)?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Deflate one block as a piece of a raw deflate stream: primed with `dict`,
/// ending with a sync flush (or the final block when `last`).
fn deflate_block(data: &[u8], dict: &[u8], last: bool) -> Deflated {
    let mut c = Compress::new(flate2::Compression::new(GZIP_LEVEL), false);
    if !dict.is_empty() {
        c.set_dictionary(dict).map_err(io::Error::other)?;
    }
    let flush = if last {
        FlushCompress::Finish
    } else {
        FlushCompress::Sync
    };
    let mut out = Vec::with_capacity(data.len() / 2 + 1024);
    loop {
        if out.capacity() - out.len() < 64 << 10 {
            out.reserve(out.capacity().max(64 << 10));
        }
        let consumed = c.total_in() as usize;
        let status = c
            .compress_vec(&data[consumed..], &mut out, flush)
            .map_err(io::Error::other)?;
        if status == Status::StreamEnd {
            break;
        }
        // zlib's contract: with all input taken, a sync flush is complete
        // once the call left output space unused.
        if !last && c.total_in() as usize == data.len() && out.len() < out.capacity() {
            break;
        }
    }
    let mut crc = crc32fast::Hasher::new();
    crc.update(data);
    Ok((out, crc))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn pool(n: usize) -> rayon::ThreadPool {
        rayon::ThreadPoolBuilder::new()
            .num_threads(n)
            .build()
            .unwrap()
    }

    /// Reproducible pseudo-random but compressible input.
    pub(crate) fn sample(len: usize) -> Vec<u8> {
        let mut x: u32 = 12345;
        (0..len)
            .map(|i| {
                x = x.wrapping_mul(1103515245).wrapping_add(12345);
                if i % 7 == 0 {
                    (x >> 16) as u8
                } else {
                    b"the quick brown fox jumps over the lazy dog "[i % 44]
                }
            })
            .collect()
    }

    fn gzip(data: &[u8], threads: usize, write_size: usize) -> (Vec<u8>, Digest) {
        let p = pool(threads);
        let mut c = Compressor::new(Compression::Gzip, Vec::new(), &p).unwrap();
        for chunk in data.chunks(write_size) {
            c.write_all(chunk).unwrap();
        }
        let (d, n, out) = c.finish().unwrap();
        assert_eq!(n as usize, out.len());
        assert_eq!(d, Digest::of(&out));
        (out, d)
    }

    #[test]
    fn gzip_round_trips_and_ignores_thread_count_and_write_sizes() {
        for len in [0, 1, GZIP_BLOCK - 1, GZIP_BLOCK, 3 * GZIP_BLOCK + 17] {
            let data = sample(len);
            let (a, da) = gzip(&data, 1, 4096);
            let (b, db) = gzip(&data, 4, 1 << 20);
            let (_, dc) = gzip(&data, 2, 333);
            assert_eq!(da, db, "len {len}");
            assert_eq!(da, dc, "len {len}");
            assert_eq!(a, b);
            let mut back = Vec::new();
            flate2::read::GzDecoder::new(&a[..])
                .read_to_end(&mut back)
                .unwrap();
            assert_eq!(back, data, "len {len}");
            // A strict single-member decoder agrees (one member, not several).
            let mut back2 = Vec::new();
            flate2::read::MultiGzDecoder::new(&a[..])
                .read_to_end(&mut back2)
                .unwrap();
            assert_eq!(back2, data);
            assert_eq!(&a[..10], &GZIP_HEADER);
        }
    }

    /// Fails when the deflate backend or its settings change (e.g. a
    /// dependency enables flate2's C zlib backend, which Cargo's feature
    /// unification would pick for the whole build): layers would no longer
    /// be byte-identical to those of earlier builds.
    #[test]
    fn gzip_bytes_are_pinned() {
        let (out, d) = gzip(&sample(3 * GZIP_BLOCK + 17), 2, 65536);
        assert_eq!(
            d.to_string(),
            "sha256:96616710d708b0536b4a0831d3ec435d1abcb595666392460e5c485f068b03cb",
            "gzip output changed ({} bytes): was the flate2 backend switched?",
            out.len()
        );
    }

    #[test]
    fn zstd_and_none_round_trip() {
        let data = sample(GZIP_BLOCK + 5);
        let p = pool(1);
        let mut z = Compressor::new(Compression::Zstd, Vec::new(), &p).unwrap();
        z.write_all(&data).unwrap();
        let (d, _, out) = z.finish().unwrap();
        assert_eq!(d, Digest::of(&out));
        assert_eq!(zstd::decode_all(&out[..]).unwrap(), data);
        let mut n = Compressor::new(Compression::None, Vec::new(), &p).unwrap();
        n.write_all(&data).unwrap();
        let (d, len, out) = n.finish().unwrap();
        assert_eq!(
            (d, len as usize, &out),
            (Digest::of(&data), data.len(), &data)
        );
    }
}
