//! Jupyter wire protocol 5.3: multipart framing and HMAC-SHA256 signatures.
//!
//! A message on a ROUTER socket is
//! `[identities..., "<IDS|MSG>", signature, header, parent_header, metadata, content, buffers...]`,
//! where the signature is the hex HMAC of the four JSON frames that follow it.

use bytes::Bytes;
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;

pub const PROTOCOL_VERSION: &str = "5.3";
const DELIMITER: &[u8] = b"<IDS|MSG>";

/// Why an incoming multipart message was refused.
#[derive(Debug, PartialEq, Eq)]
pub enum WireError {
    MissingDelimiter,
    MissingFrames(usize),
    BadSignature,
    InvalidJson { frame: &'static str, error: String },
    MissingMessageType,
}

impl std::fmt::Display for WireError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WireError::MissingDelimiter => write!(f, "no <IDS|MSG> delimiter frame"),
            WireError::MissingFrames(found) => write!(
                f,
                "expected signature, header, parent_header, metadata and content frames after \
                 the delimiter, found {found} frames"
            ),
            WireError::BadSignature => write!(f, "HMAC signature does not match the message"),
            WireError::InvalidJson { frame, error } => {
                write!(f, "{frame} frame is not valid JSON: {error}")
            }
            WireError::MissingMessageType => write!(f, "header has no msg_type"),
        }
    }
}

/// Signs and verifies messages with the connection file's key. An empty key disables
/// signing, as the protocol specifies.
#[derive(Clone)]
pub struct Signer {
    key: Option<Hmac<Sha256>>,
}

impl Signer {
    pub fn new(key: &str) -> Signer {
        let key = (!key.is_empty())
            .then(|| Hmac::<Sha256>::new_from_slice(key.as_bytes()).expect("HMAC accepts any key length"));
        Signer { key }
    }

    /// Hex signature of the four JSON frames (empty when signing is disabled).
    pub fn sign(&self, frames: [&[u8]; 4]) -> String {
        match &self.key {
            None => String::new(),
            Some(key) => {
                let mut mac = key.clone();
                for frame in frames {
                    mac.update(frame);
                }
                hex::encode(mac.finalize().into_bytes())
            }
        }
    }

    /// Constant-time check of a received signature.
    pub fn verify(&self, signature: &[u8], frames: [&[u8]; 4]) -> bool {
        match &self.key {
            None => true,
            Some(key) => {
                let Ok(expected) = hex::decode(signature) else {
                    return false;
                };
                let mut mac = key.clone();
                for frame in frames {
                    mac.update(frame);
                }
                mac.verify_slice(&expected).is_ok()
            }
        }
    }
}

/// One Jupyter message. `identities` are the ROUTER routing frames to reply through.
#[derive(Debug, Clone)]
pub struct Message {
    pub identities: Vec<Bytes>,
    pub header: Value,
    pub parent_header: Value,
    pub metadata: Value,
    pub content: Value,
    pub buffers: Vec<Bytes>,
}

impl Message {
    pub fn msg_type(&self) -> &str {
        self.header["msg_type"].as_str().unwrap_or_default()
    }

    /// Parses and verifies raw frames. Nothing unverified gets past this point.
    pub fn from_frames(frames: &[Bytes], signer: &Signer) -> Result<Message, WireError> {
        let delimiter = frames
            .iter()
            .position(|frame| frame.as_ref() == DELIMITER)
            .ok_or(WireError::MissingDelimiter)?;
        let rest = &frames[delimiter + 1..];
        if rest.len() < 5 {
            return Err(WireError::MissingFrames(rest.len()));
        }
        let json_frames = [rest[1].as_ref(), rest[2].as_ref(), rest[3].as_ref(), rest[4].as_ref()];
        if !signer.verify(&rest[0], json_frames) {
            return Err(WireError::BadSignature);
        }
        let parse = |frame: &'static str, bytes: &[u8]| {
            serde_json::from_slice::<Value>(bytes)
                .map_err(|error| WireError::InvalidJson { frame, error: error.to_string() })
        };
        let header = parse("header", json_frames[0])?;
        if header["msg_type"].as_str().is_none() {
            return Err(WireError::MissingMessageType);
        }
        Ok(Message {
            identities: frames[..delimiter].to_vec(),
            header,
            parent_header: parse("parent_header", json_frames[1])?,
            metadata: parse("metadata", json_frames[2])?,
            content: parse("content", json_frames[3])?,
            buffers: rest[5..].to_vec(),
        })
    }

    /// Serialises and signs, identities first.
    pub fn to_frames(&self, signer: &Signer) -> Vec<Bytes> {
        let header = self.header.to_string();
        let parent = self.parent_header.to_string();
        let metadata = self.metadata.to_string();
        let content = self.content.to_string();
        let signature = signer.sign([
            header.as_bytes(),
            parent.as_bytes(),
            metadata.as_bytes(),
            content.as_bytes(),
        ]);
        let mut frames = self.identities.clone();
        frames.push(Bytes::from_static(DELIMITER));
        frames.extend([signature, header, parent, metadata, content].map(Bytes::from));
        frames.extend(self.buffers.iter().cloned());
        frames
    }
}

/// Builds headers for the messages this kernel sends.
#[derive(Clone)]
pub struct MessageFactory {
    session: String,
}

impl MessageFactory {
    pub fn new() -> MessageFactory {
        MessageFactory { session: uuid::Uuid::new_v4().to_string() }
    }

    fn header(&self, msg_type: &str) -> Value {
        json!({
            "msg_id": uuid::Uuid::new_v4().to_string(),
            "session": self.session,
            "username": "kernel",
            "date": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
            "msg_type": msg_type,
            "version": PROTOCOL_VERSION,
        })
    }

    /// A reply to `request` on the socket it came from (same identities).
    pub fn reply(&self, request: &Message, msg_type: &str, content: Value) -> Message {
        Message {
            identities: request.identities.clone(),
            header: self.header(msg_type),
            parent_header: request.header.clone(),
            metadata: json!({}),
            content,
            buffers: Vec::new(),
        }
    }

    /// A broadcast on IOPub caused by the request whose header is `parent`
    /// (`Value::Null` or `{}` when nothing caused it).
    pub fn broadcast(&self, parent: &Value, msg_type: &str, content: Value) -> Message {
        let parent_header = if parent.is_null() { json!({}) } else { parent.clone() };
        Message {
            // IOPub subscribers filter on the topic frame; ipykernel sends the msg_type.
            identities: vec![Bytes::from(format!("kernel.{msg_type}"))],
            header: self.header(msg_type),
            parent_header,
            metadata: json!({}),
            content,
            buffers: Vec::new(),
        }
    }

    /// A request the kernel sends to the frontend on the stdin socket.
    pub fn stdin_request(&self, parent: &Message, msg_type: &str, content: Value) -> Message {
        self.reply(parent, msg_type, content)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(signer: &Signer) -> Vec<Bytes> {
        let message = Message {
            identities: vec![Bytes::from_static(b"client-1")],
            header: json!({"msg_id": "m1", "msg_type": "kernel_info_request", "session": "s"}),
            parent_header: json!({}),
            metadata: json!({}),
            content: json!({}),
            buffers: Vec::new(),
        };
        message.to_frames(signer)
    }

    #[test]
    fn signed_message_round_trips_with_identities() {
        let signer = Signer::new("secret");
        let frames = request(&signer);
        assert_eq!(frames[0].as_ref(), b"client-1");
        assert_eq!(frames[1].as_ref(), DELIMITER);
        assert_eq!(frames[2].len(), 64, "hex sha256");
        let message = Message::from_frames(&frames, &signer).unwrap();
        assert_eq!(message.msg_type(), "kernel_info_request");
        assert_eq!(message.identities, vec![Bytes::from_static(b"client-1")]);
    }

    #[test]
    fn signature_matches_python_hmac_of_the_concatenated_frames() {
        // hmac.new(b"key", b'{"a":1}{}{}{"b":2}', hashlib.sha256).hexdigest()
        let signer = Signer::new("key");
        assert_eq!(
            signer.sign([br#"{"a":1}"#, b"{}", b"{}", br#"{"b":2}"#]),
            "0206f42f4ae2a48f6054ab91271f90c100f7022f55fb1f23de6377624d533752"
        );
    }

    #[test]
    fn tampered_content_is_rejected() {
        let signer = Signer::new("secret");
        let mut frames = request(&signer);
        let last = frames.len() - 1;
        frames[last] = Bytes::from_static(br#"{"code": "evil"}"#);
        assert_eq!(Message::from_frames(&frames, &signer).unwrap_err(), WireError::BadSignature);
    }

    #[test]
    fn wrong_key_and_garbage_signatures_are_rejected() {
        let frames = request(&Signer::new("secret"));
        assert_eq!(
            Message::from_frames(&frames, &Signer::new("other")).unwrap_err(),
            WireError::BadSignature
        );
        let mut frames = frames;
        frames[2] = Bytes::from_static(b"not-hex");
        assert_eq!(
            Message::from_frames(&frames, &Signer::new("secret")).unwrap_err(),
            WireError::BadSignature
        );
    }

    #[test]
    fn empty_key_disables_signing() {
        let signer = Signer::new("");
        let frames = request(&signer);
        assert!(frames[2].is_empty());
        assert!(Message::from_frames(&frames, &signer).is_ok());
    }

    #[test]
    fn truncated_messages_are_rejected() {
        let signer = Signer::new("secret");
        let frames = request(&signer);
        assert_eq!(
            Message::from_frames(&frames[..4], &signer).unwrap_err(),
            WireError::MissingFrames(2)
        );
        assert_eq!(
            Message::from_frames(&frames[2..], &signer).unwrap_err(),
            WireError::MissingDelimiter
        );
    }
}
