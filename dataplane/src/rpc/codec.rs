//! The one codec tonic does not provide: requests the caller has already encoded.

use std::marker::PhantomData;

use bytes::{BufMut, Bytes};
use tonic::Status;
use tonic::codec::{Codec, EncodeBuf, Encoder};

/// Sends pre-encoded protobuf bytes as the request and decodes a prost message `D` as the
/// response. The distributor encodes each stream of a push once and hands every replica the
/// same bytes, instead of encoding the same message once per replica.
#[derive(Debug)]
pub struct PreEncoded<D>(PhantomData<fn() -> D>);

impl<D> Default for PreEncoded<D> {
    fn default() -> Self {
        Self(PhantomData)
    }
}

impl<D: prost::Message + Default + Send + 'static> Codec for PreEncoded<D> {
    type Encode = Bytes;
    type Decode = D;
    type Encoder = RawEncoder;
    type Decoder = tonic_prost::ProstDecoder<D>;

    fn encoder(&mut self) -> Self::Encoder {
        RawEncoder
    }

    fn decoder(&mut self) -> Self::Decoder {
        tonic_prost::ProstDecoder::default()
    }
}

/// Writes bytes as they are.
#[derive(Debug, Clone, Copy)]
pub struct RawEncoder;

impl Encoder for RawEncoder {
    type Item = Bytes;
    type Error = Status;

    fn encode(&mut self, item: Bytes, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.reserve(item.len());
        dst.put_slice(&item);
        Ok(())
    }
}
