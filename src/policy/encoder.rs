//! Streaming response encoders (gzip level 6, brotli 5, zstd 3): each
//! chunk in, whatever compressed bytes are ready out; the last call ends
//! the stream properly (gzip trailer, brotli's last meta-block, zstd's
//! frame end).

use crate::config::edge::Algorithm;
use bytes::Bytes;
use std::io::Write;

/// One response's encoder.
pub struct Encoder(Inner);

enum Inner {
    Gzip(flate2::write::GzEncoder<Vec<u8>>),
    Br(Box<brotli::CompressorWriter<Vec<u8>>>),
    Zstd(zstd::stream::write::Encoder<'static, Vec<u8>>),
    Done,
}

impl Encoder {
    pub fn new(a: Algorithm) -> Option<Encoder> {
        Some(Encoder(match a {
            Algorithm::Gzip => Inner::Gzip(flate2::write::GzEncoder::new(
                Vec::new(),
                flate2::Compression::new(6),
            )),
            Algorithm::Br => Inner::Br(Box::new(brotli::CompressorWriter::new(
                Vec::new(),
                16 * 1024,
                5,
                22,
            ))),
            Algorithm::Zstd => Inner::Zstd(zstd::stream::write::Encoder::new(Vec::new(), 3).ok()?),
        }))
    }

    /// Feeds `input`; with `end`, finishes the stream. Returns the encoded
    /// bytes produced so far (possibly none).
    pub fn encode(&mut self, input: &[u8], end: bool) -> std::io::Result<Bytes> {
        let out = match &mut self.0 {
            Inner::Gzip(e) => {
                e.write_all(input)?;
                if end {
                    e.try_finish()?;
                }
                std::mem::take(e.get_mut())
            }
            Inner::Br(e) => {
                e.write_all(input)?;
                std::mem::take(e.get_mut())
            }
            Inner::Zstd(e) => {
                e.write_all(input)?;
                std::mem::take(e.get_mut())
            }
            Inner::Done => Vec::new(),
        };
        if !end {
            return Ok(out.into());
        }
        let rest = match std::mem::replace(&mut self.0, Inner::Done) {
            Inner::Br(e) => e.into_inner(),
            Inner::Zstd(e) => e.finish()?,
            _ => Vec::new(),
        };
        Ok([out, rest].concat().into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn every_stream_ends_and_decodes() {
        let data: Vec<u8> = (0..100_000u32)
            .flat_map(|i| (i % 251).to_le_bytes())
            .collect();
        for a in [Algorithm::Gzip, Algorithm::Br, Algorithm::Zstd] {
            let mut e = Encoder::new(a).unwrap();
            let mut out = Vec::new();
            for chunk in data.chunks(7000) {
                out.extend_from_slice(&e.encode(chunk, false).unwrap());
            }
            out.extend_from_slice(&e.encode(&[], true).unwrap());
            assert!(e.encode(&[], true).unwrap().is_empty());
            let mut back = Vec::new();
            match a {
                Algorithm::Gzip => {
                    flate2::read::GzDecoder::new(&out[..])
                        .read_to_end(&mut back)
                        .unwrap();
                }
                Algorithm::Br => {
                    brotli::Decompressor::new(&out[..], 4096)
                        .read_to_end(&mut back)
                        .unwrap();
                }
                Algorithm::Zstd => back = zstd::decode_all(&out[..]).unwrap(),
            }
            assert_eq!(back, data, "{a:?}");
        }
    }
}
