//! Images and files in messages: inline images (base64, raw or as a `data:` URL) are decoded
//! once, their type sniffed from magic bytes and checked against any declared type, and limited
//! in size and number. What was found is written into the part's metadata under `aether`
//! (`{mime, bytes, hash}`), so later readers (the simulated model, the store, providers) use it
//! without decoding again. Conversion to a provider's wire format copies the base64 text once and
//! never re-encodes the bytes.

use std::sync::Arc;

use aether_contracts::{ContentPart, ImageReference, MessageContent, UniversalMessage};
use base64::Engine as _;
use serde_json::{json, Value};

/// Size and count limits of attachments.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MediaLimits {
    /// Largest decoded image.
    pub max_image_bytes: usize,
    /// Most images in one message.
    pub max_images_per_message: usize,
}

impl Default for MediaLimits {
    fn default() -> Self {
        Self {
            max_image_bytes: 20 * 1024 * 1024,
            max_images_per_message: 16,
        }
    }
}

/// The image formats accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageFormat {
    Jpeg,
    Png,
    Gif,
    Webp,
    Bmp,
}

impl ImageFormat {
    pub fn mime(self) -> &'static str {
        match self {
            Self::Jpeg => "image/jpeg",
            Self::Png => "image/png",
            Self::Gif => "image/gif",
            Self::Webp => "image/webp",
            Self::Bmp => "image/bmp",
        }
    }

    /// From magic bytes: JPEG `FF D8 FF`, PNG `89 50 4E 47 0D 0A 1A 0A`, GIF `GIF8`,
    /// WEBP `RIFF....WEBP`, BMP `BM`.
    pub fn sniff(bytes: &[u8]) -> Option<Self> {
        match bytes {
            [0xFF, 0xD8, 0xFF, ..] => Some(Self::Jpeg),
            [0x89, b'P', b'N', b'G', 0x0D, 0x0A, 0x1A, 0x0A, ..] => Some(Self::Png),
            [b'G', b'I', b'F', b'8', ..] => Some(Self::Gif),
            [b'R', b'I', b'F', b'F', _, _, _, _, b'W', b'E', b'B', b'P', ..] => Some(Self::Webp),
            [b'B', b'M', ..] => Some(Self::Bmp),
            _ => None,
        }
    }

    /// From a declared type: `png`, `image/png`, `jpg`, `JPEG`, ...
    pub fn from_declared(s: &str) -> Option<Self> {
        let s = s.trim().to_ascii_lowercase();
        match s.strip_prefix("image/").unwrap_or(&s) {
            "jpeg" | "jpg" => Some(Self::Jpeg),
            "png" => Some(Self::Png),
            "gif" => Some(Self::Gif),
            "webp" => Some(Self::Webp),
            "bmp" | "x-ms-bmp" => Some(Self::Bmp),
            _ => None,
        }
    }
}

/// A bad attachment; the message names the part and what was expected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MediaError {
    #[error("image data is not valid base64: {0}")]
    Base64(String),
    #[error("unsupported image type `{0}`: expected jpeg, png, gif, webp or bmp")]
    UnsupportedDeclared(String),
    #[error("the image bytes are not a jpeg, png, gif, webp or bmp image")]
    UnsupportedBytes,
    #[error("declared as {declared} but the bytes are {actual}")]
    Mismatch {
        declared: &'static str,
        actual: &'static str,
    },
    #[error("image is {bytes} bytes, over the limit of {limit} bytes")]
    TooLarge { bytes: usize, limit: usize },
    #[error("{count} images in one message, over the limit of {limit}")]
    TooMany { count: usize, limit: usize },
}

/// What was found in an inline image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageFacts {
    pub format: ImageFormat,
    pub bytes: usize,
    /// 16 hex digits of FNV-1a over the decoded bytes.
    pub hash: String,
}

/// The base64 payload and the declared MIME of an inline image (`None` for a path or URL).
fn inline_payload(image_path: &str) -> Option<(Option<&str>, &str)> {
    if let Some(rest) = image_path.strip_prefix("data:") {
        let (head, data) = rest.split_once(',')?;
        let mime = head.strip_suffix(";base64").unwrap_or(head);
        return Some((Some(mime).filter(|m| !m.is_empty()), data));
    }
    if image_path.contains("://") || image_path.starts_with("file:") || image_path.len() < 8 {
        return None;
    }
    let alphabet = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'=' | b'\n' | b'\r');
    if !image_path.bytes().all(alphabet) {
        return None; // a dot, a space, a colon: a path or a name
    }
    // Base64 whose first bytes are an image signature is inline data (raw JPEG starts `/9j/`).
    let head =
        base64::engine::general_purpose::STANDARD.decode(&image_path.as_bytes()[..12.min(image_path.len() / 4 * 4)]);
    if head.is_ok_and(|h| ImageFormat::sniff(&h).is_some()) {
        return Some((None, image_path));
    }
    // Otherwise slashes without `+` or `=` read as a path; anything else is inline and checked.
    let path_like = image_path.contains('/') && !image_path.contains(['+', '=']);
    (!path_like).then_some((None, image_path))
}

/// Short, stable content hash.
pub fn short_hash(bytes: &[u8]) -> String {
    format!("{:016x}", aether_contracts::fnv1a(bytes))
}

/// Checks one image part. `Ok(None)` for a reference by path or URL (nothing inline to check).
pub fn inspect_image(image: &ImageReference, limits: &MediaLimits) -> Result<Option<ImageFacts>, MediaError> {
    let Some((data_url_mime, payload)) = inline_payload(&image.image_path) else {
        return Ok(None);
    };
    let declared = match data_url_mime {
        Some(m) => Some(ImageFormat::from_declared(m).ok_or_else(|| MediaError::UnsupportedDeclared(m.to_owned()))?),
        None => None,
    };
    let declared_field = if image.image_format.trim().is_empty() {
        None
    } else {
        Some(
            ImageFormat::from_declared(&image.image_format)
                .ok_or_else(|| MediaError::UnsupportedDeclared(image.image_format.clone()))?,
        )
    };
    let estimate = payload.len() / 4 * 3;
    if estimate > limits.max_image_bytes + 3 {
        return Err(MediaError::TooLarge {
            bytes: estimate,
            limit: limits.max_image_bytes,
        });
    }
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(payload.trim())
        .map_err(|e| MediaError::Base64(e.to_string()))?;
    if bytes.len() > limits.max_image_bytes {
        return Err(MediaError::TooLarge {
            bytes: bytes.len(),
            limit: limits.max_image_bytes,
        });
    }
    let actual = ImageFormat::sniff(&bytes).ok_or(MediaError::UnsupportedBytes)?;
    for d in [declared, declared_field].into_iter().flatten() {
        if d != actual {
            return Err(MediaError::Mismatch {
                declared: d.mime(),
                actual: actual.mime(),
            });
        }
    }
    Ok(Some(ImageFacts {
        format: actual,
        bytes: bytes.len(),
        hash: short_hash(&bytes),
    }))
}

/// Checks every attachment of `message` and records the facts in each image part's metadata.
/// The error names the part (`content[2]`).
pub fn inspect_message(message: &mut UniversalMessage, limits: &MediaLimits) -> Result<(), (String, MediaError)> {
    let MessageContent::Parts(parts) = &mut message.content else {
        return Ok(());
    };
    let images = parts
        .iter()
        .filter(|p| matches!(p, ContentPart::ImageReference(_)))
        .count();
    if images > limits.max_images_per_message {
        return Err((
            "content".into(),
            MediaError::TooMany {
                count: images,
                limit: limits.max_images_per_message,
            },
        ));
    }
    for (i, part) in parts.iter_mut().enumerate() {
        if let ContentPart::ImageReference(image) = part {
            if let Some(f) = inspect_image(image, limits).map_err(|e| (format!("content[{i}]"), e))? {
                image.metadata.insert(
                    "aether".into(),
                    json!({ "mime": f.format.mime(), "bytes": f.bytes, "hash": f.hash }),
                );
            }
        }
    }
    Ok(())
}

/// An attachment as the model sees it, from the facts recorded at inspection.
#[derive(Debug, Clone, PartialEq)]
pub struct Attachment {
    pub kind: &'static str,
    pub mime: String,
    pub bytes: u64,
    pub hash: Option<String>,
    pub location: Option<String>,
}

/// The attachments of a message, in order.
pub fn attachments(message: &UniversalMessage) -> Vec<Attachment> {
    let MessageContent::Parts(parts) = &message.content else {
        return Vec::new();
    };
    parts
        .iter()
        .filter_map(|p| match p {
            ContentPart::ImageReference(img) => {
                let facts = img.metadata.get("aether");
                let text = |k: &str| facts.and_then(|f| f.get(k)).and_then(Value::as_str).map(str::to_owned);
                Some(Attachment {
                    kind: "image",
                    mime: text("mime").unwrap_or_else(|| img.image_format.clone()),
                    bytes: facts.and_then(|f| f.get("bytes")).and_then(Value::as_u64).unwrap_or(0),
                    hash: text("hash"),
                    location: facts.is_none().then(|| img.image_path.clone()),
                })
            }
            ContentPart::FileReference(f) => Some(Attachment {
                kind: "file",
                mime: f.file_type.clone(),
                bytes: f.file_size.unwrap_or(0),
                hash: None,
                location: Some(f.file_path.clone()),
            }),
            _ => None,
        })
        .collect()
}

/// An inline image in OpenAI's chat format: `{"type":"image_url","image_url":{"url":"data:..."}}`.
/// The base64 text is copied once into the URL; the bytes are never re-encoded.
pub fn to_openai_part(image: &ImageReference) -> Option<Value> {
    let (mime, payload) = provider_payload(image)?;
    let mut url = String::with_capacity(payload.len() + mime.len() + 13);
    url.push_str("data:");
    url.push_str(&mime);
    url.push_str(";base64,");
    url.push_str(payload);
    Some(json!({ "type": "image_url", "image_url": { "url": url } }))
}

/// An inline image in Gemini's format: `{"inline_data":{"mime_type":...,"data":...}}`.
pub fn to_gemini_part(image: &ImageReference) -> Option<Value> {
    let (mime, payload) = provider_payload(image)?;
    Some(json!({ "inline_data": { "mime_type": mime, "data": payload } }))
}

fn provider_payload(image: &ImageReference) -> Option<(Arc<str>, &str)> {
    let (_, payload) = inline_payload(&image.image_path)?;
    let mime = image
        .metadata
        .get("aether")
        .and_then(|f| f.get("mime"))
        .and_then(Value::as_str)
        .or_else(|| ImageFormat::from_declared(&image.image_format).map(ImageFormat::mime))?;
    Some((Arc::from(mime), payload.trim()))
}
