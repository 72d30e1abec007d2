//! Reads the server name from a TLS ClientHello without terminating TLS,
//! for passthrough routing. Pure: bytes in, a verdict out.
//!
//! The ClientHello may arrive split across several TCP segments and even
//! several TLS records; the caller keeps reading while the verdict is
//! [`Sni::NeedMore`], up to [`MAX_CLIENT_HELLO`] bytes.

/// Largest ClientHello we wait for (records are at most 16 KiB each; post-
/// quantum key shares make hellos of a few KiB common).
pub const MAX_CLIENT_HELLO: usize = 64 * 1024;

const RECORD_HANDSHAKE: u8 = 22;
const HANDSHAKE_CLIENT_HELLO: u8 = 1;
const EXTENSION_SERVER_NAME: u16 = 0;
const NAME_TYPE_HOST: u8 = 0;

/// What the bytes read so far say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sni {
    /// Not enough bytes yet.
    NeedMore,
    /// A complete ClientHello, with its server name if it sent one.
    Found(Option<String>),
    /// Not a TLS ClientHello, or a malformed one.
    Invalid(&'static str),
}

/// Parses the start of a TLS connection.
pub fn parse(buffer: &[u8]) -> Sni {
    // Reassemble the handshake layer from consecutive handshake records.
    let mut handshake = Vec::new();
    let mut rest = buffer;
    loop {
        if rest.len() < 5 {
            break;
        }
        if rest[0] != RECORD_HANDSHAKE {
            return Sni::Invalid("not a TLS handshake record");
        }
        if rest[1] != 3 {
            return Sni::Invalid("not a TLS record version");
        }
        let length = usize::from(u16::from_be_bytes([rest[3], rest[4]]));
        if length == 0 || length > 16 * 1024 + 2048 {
            return Sni::Invalid("bad TLS record length");
        }
        if rest.len() < 5 + length {
            handshake.extend_from_slice(&rest[5..]);
            break;
        }
        handshake.extend_from_slice(&rest[5..5 + length]);
        rest = &rest[5 + length..];
        if handshake_complete(&handshake) {
            break;
        }
    }
    if handshake.len() < 4 {
        return if buffer.len() >= MAX_CLIENT_HELLO {
            Sni::Invalid("ClientHello too large")
        } else {
            Sni::NeedMore
        };
    }
    if handshake[0] != HANDSHAKE_CLIENT_HELLO {
        return Sni::Invalid("first handshake message is not a ClientHello");
    }
    let length = (usize::from(handshake[1]) << 16)
        | (usize::from(handshake[2]) << 8)
        | usize::from(handshake[3]);
    if length + 4 > MAX_CLIENT_HELLO {
        return Sni::Invalid("ClientHello too large");
    }
    if handshake.len() < 4 + length {
        return if buffer.len() >= MAX_CLIENT_HELLO {
            Sni::Invalid("ClientHello too large")
        } else {
            Sni::NeedMore
        };
    }
    match client_hello_server_name(&handshake[4..4 + length]) {
        Ok(name) => Sni::Found(name),
        Err(reason) => Sni::Invalid(reason),
    }
}

fn handshake_complete(handshake: &[u8]) -> bool {
    handshake.len() >= 4 && {
        let length = (usize::from(handshake[1]) << 16)
            | (usize::from(handshake[2]) << 8)
            | usize::from(handshake[3]);
        handshake.len() >= 4 + length
    }
}

/// A cursor that fails instead of panicking.
struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, count: usize) -> Result<&'a [u8], &'static str> {
        if self.bytes.len() < count {
            return Err("truncated ClientHello");
        }
        let (head, tail) = self.bytes.split_at(count);
        self.bytes = tail;
        Ok(head)
    }

    fn u8(&mut self) -> Result<u8, &'static str> {
        Ok(self.take(1)?[0])
    }

    fn u16(&mut self) -> Result<u16, &'static str> {
        let bytes = self.take(2)?;
        Ok(u16::from_be_bytes([bytes[0], bytes[1]]))
    }

    /// A vector with a length prefix of `width` bytes.
    fn vector(&mut self, width: usize) -> Result<&'a [u8], &'static str> {
        let length = match width {
            1 => usize::from(self.u8()?),
            _ => usize::from(self.u16()?),
        };
        self.take(length)
    }
}

fn client_hello_server_name(body: &[u8]) -> Result<Option<String>, &'static str> {
    let mut reader = Reader { bytes: body };
    reader.take(2)?; // legacy_version
    reader.take(32)?; // random
    reader.vector(1)?; // session id
    reader.vector(2)?; // cipher suites
    reader.vector(1)?; // compression methods
    if reader.bytes.is_empty() {
        return Ok(None); // no extensions at all
    }
    let mut extensions = Reader {
        bytes: reader.vector(2)?,
    };
    while !extensions.bytes.is_empty() {
        let kind = extensions.u16()?;
        let data = extensions.vector(2)?;
        if kind != EXTENSION_SERVER_NAME {
            continue;
        }
        let mut list = Reader {
            bytes: Reader { bytes: data }.vector(2)?,
        };
        while !list.bytes.is_empty() {
            let name_type = list.u8()?;
            let name = list.vector(2)?;
            if name_type == NAME_TYPE_HOST {
                let name = std::str::from_utf8(name).map_err(|_| "server name is not UTF-8")?;
                if name.is_empty() || !name.bytes().all(|b| b.is_ascii_graphic()) {
                    return Err("server name is not a host name");
                }
                return Ok(Some(name.to_ascii_lowercase()));
            }
        }
        return Ok(None);
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    /// A minimal but well-formed ClientHello with an optional SNI.
    fn client_hello(name: Option<&str>) -> Vec<u8> {
        let mut body = vec![3, 3];
        body.extend_from_slice(&[7; 32]);
        body.push(0); // session id
        body.extend_from_slice(&[0, 2, 0x13, 0x01]); // one cipher suite
        body.extend_from_slice(&[1, 0]); // null compression
        let mut extensions = Vec::new();
        // An unrelated extension first (supported_versions).
        extensions.extend_from_slice(&[0x00, 0x2b, 0, 3, 2, 3, 4]);
        if let Some(name) = name {
            let name = name.as_bytes();
            let mut entry = vec![NAME_TYPE_HOST];
            entry.extend_from_slice(&(name.len() as u16).to_be_bytes());
            entry.extend_from_slice(name);
            let mut data = (entry.len() as u16).to_be_bytes().to_vec();
            data.extend_from_slice(&entry);
            extensions.extend_from_slice(&EXTENSION_SERVER_NAME.to_be_bytes());
            extensions.extend_from_slice(&(data.len() as u16).to_be_bytes());
            extensions.extend_from_slice(&data);
        }
        body.extend_from_slice(&(extensions.len() as u16).to_be_bytes());
        body.extend_from_slice(&extensions);
        let mut handshake = vec![HANDSHAKE_CLIENT_HELLO];
        handshake.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
        handshake.extend_from_slice(&body);
        handshake
    }

    fn records(handshake: &[u8], record_size: usize) -> Vec<u8> {
        let mut out = Vec::new();
        for chunk in handshake.chunks(record_size) {
            out.extend_from_slice(&[RECORD_HANDSHAKE, 3, 1]);
            out.extend_from_slice(&(chunk.len() as u16).to_be_bytes());
            out.extend_from_slice(chunk);
        }
        out
    }

    #[test]
    fn reads_the_server_name() {
        let bytes = records(&client_hello(Some("DB.Example.com")), 16 * 1024);
        assert_eq!(parse(&bytes), Sni::Found(Some("db.example.com".into())));
        let bytes = records(&client_hello(None), 16 * 1024);
        assert_eq!(parse(&bytes), Sni::Found(None));
    }

    #[test]
    fn waits_for_hellos_split_across_segments_and_records() {
        let bytes = records(&client_hello(Some("a.example.com")), 20);
        for cut in 0..bytes.len() {
            assert_eq!(parse(&bytes[..cut]), Sni::NeedMore, "cut at {cut}");
        }
        assert_eq!(parse(&bytes), Sni::Found(Some("a.example.com".into())));
    }

    #[test]
    fn refuses_what_is_not_a_client_hello() {
        assert!(matches!(
            parse(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"),
            Sni::Invalid(_)
        ));
        assert!(matches!(parse(&[22, 3, 1, 0, 0]), Sni::Invalid(_)));
        let mut server_hello = client_hello(Some("x"));
        server_hello[0] = 2;
        assert!(matches!(
            parse(&records(&server_hello, 1000)),
            Sni::Invalid(_)
        ));
        // A lying inner length: truncated extension block.
        let mut hello = client_hello(Some("a.example.com"));
        let last = hello.len() - 1;
        hello.truncate(last);
        hello[3] -= 1;
        assert!(matches!(parse(&records(&hello, 1000)), Sni::Invalid(_)));
    }

    proptest! {
        #[test]
        fn never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = parse(&bytes);
            let mut framed = vec![RECORD_HANDSHAKE, 3, 1];
            framed.extend_from_slice(&(bytes.len() as u16).to_be_bytes());
            framed.extend_from_slice(&bytes);
            let _ = parse(&framed);
        }
    }
}
