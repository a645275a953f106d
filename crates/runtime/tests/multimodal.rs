//! Images and files in messages: sniffing, limits, clear errors, provider formats, and the
//! simulated model acknowledging every attachment intact.

mod common;

use aether_contracts::{
    ContentPart, ErrorCode, FileReference, ImageReference, MessageContent, Metadata, TaskRequest, UniversalMessage,
};
use aether_runtime::multimodal::{self, ImageFormat, MediaLimits};
use aether_runtime::RuntimeConfig;
use base64::Engine as _;
use common::*;

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// A byte string with the format's magic and `len` bytes in all.
fn image_bytes(format: ImageFormat, len: usize) -> Vec<u8> {
    let magic: &[u8] = match format {
        ImageFormat::Jpeg => &[0xFF, 0xD8, 0xFF, 0xE0],
        ImageFormat::Png => &[0x89, b'P', b'N', b'G', 0x0D, 0x0A, 0x1A, 0x0A],
        ImageFormat::Gif => b"GIF89a",
        ImageFormat::Webp => b"RIFF\x10\x00\x00\x00WEBPVP8 ",
        ImageFormat::Bmp => b"BM",
    };
    let mut v = magic.to_vec();
    v.extend((0..len.saturating_sub(magic.len())).map(|i| (i * 31 % 251) as u8));
    v
}

fn image(path: String, format: &str) -> ContentPart {
    ContentPart::ImageReference(ImageReference {
        image_path: path,
        image_format: format.into(),
        width: None,
        height: None,
        metadata: Metadata::new(),
    })
}

fn message(parts: Vec<ContentPart>) -> UniversalMessage {
    let mut m = UniversalMessage::user("");
    m.content = MessageContent::Parts(parts);
    m
}

#[tokio::test]
async fn every_attachment_is_acknowledged_intact() {
    let rt = instant();
    let agent = create(&rt, config(&[])).await;
    let png = image_bytes(ImageFormat::Png, 3000);
    let jpeg = image_bytes(ImageFormat::Jpeg, 5000);
    let gif = image_bytes(ImageFormat::Gif, 700);
    let webp = image_bytes(ImageFormat::Webp, 1200);
    let bmp = image_bytes(ImageFormat::Bmp, 900);
    let parts = vec![
        ContentPart::Text("What is in these?".into()),
        image(format!("data:image/png;base64,{}", b64(&png)), "png"),
        image(b64(&jpeg), "jpeg"),
        image(b64(&gif), "image/gif"),
        image(format!("data:image/webp;base64,{}", b64(&webp)), ""),
        image(b64(&bmp), "bmp"),
        ContentPart::FileReference(FileReference {
            file_path: "/data/statement.pdf".into(),
            file_type: "application/pdf".into(),
            file_size: Some(2048),
            encoding: "binary".into(),
            metadata: Metadata::new(),
        }),
    ];
    let r = rt
        .process(TaskRequest::converse("mm", &agent, "mm-chat", vec![message(parts)]))
        .await;
    assert!(r.is_success(), "{:?}", r.error);
    let text = r.response_text().unwrap().into_owned();
    assert!(text.starts_with("[simulated] Received 6 attachments:"), "{text}");
    for (bytes, mime) in [
        (&png, "image/png"),
        (&jpeg, "image/jpeg"),
        (&gif, "image/gif"),
        (&webp, "image/webp"),
        (&bmp, "image/bmp"),
    ] {
        let expect = format!("image {mime} {} bytes #{}", bytes.len(), multimodal::short_hash(bytes));
        assert!(text.contains(&expect), "missing `{expect}` in {text}");
    }
    assert!(
        text.contains("file application/pdf 2048 bytes at /data/statement.pdf"),
        "{text}"
    );
    assert!(meta(&r, "timing.media_us").as_f64().is_some());
    // The facts travel with the stored message.
    let events = rt.session_events("mm-chat", None, 10).await.unwrap().events;
    let MessageContent::Parts(stored) = &events[0].message.content else {
        panic!("parts")
    };
    let ContentPart::ImageReference(first) = &stored[1] else {
        panic!("image")
    };
    assert_eq!(first.metadata["aether"]["mime"], "image/png");
    assert_eq!(first.metadata["aether"]["bytes"], 3000);
}

async fn rejection(cfg: RuntimeConfig, parts: Vec<ContentPart>) -> (String, String) {
    let rt = builder(0, 0).config(cfg).build().unwrap();
    let agent = create(&rt, config(&[])).await;
    let r = rt
        .process(TaskRequest::converse("bad", &agent, "bad-chat", vec![message(parts)]))
        .await;
    let e = r.error.expect("refused");
    assert_eq!(e.code, ErrorCode::RequestValidation);
    assert!(rt.session("bad-chat").await.unwrap().is_none(), "nothing was stored");
    (e.details.unwrap()["field"].as_str().unwrap().to_owned(), e.message)
}

#[tokio::test]
async fn bad_images_get_clear_errors_naming_the_part() {
    let png = image_bytes(ImageFormat::Png, 100);
    let jpeg = image_bytes(ImageFormat::Jpeg, 100);
    let text = ContentPart::Text("look".into());

    let (field, msg) = rejection(
        quiet_config(),
        vec![
            text.clone(),
            image("data:image/png;base64,@@@not-base64@@@".into(), "png"),
        ],
    )
    .await;
    assert_eq!(field, "messages[0].content[1]");
    assert!(msg.contains("not valid base64"), "{msg}");

    let (_, msg) = rejection(
        quiet_config(),
        vec![image(format!("data:image/png;base64,{}", b64(&jpeg)), "png")],
    )
    .await;
    assert!(
        msg.contains("declared as image/png but the bytes are image/jpeg"),
        "{msg}"
    );

    let (_, msg) = rejection(quiet_config(), vec![image(b64(&png), "jpeg")]).await;
    assert!(
        msg.contains("declared as image/jpeg but the bytes are image/png"),
        "{msg}"
    );

    let (_, msg) = rejection(
        quiet_config(),
        vec![image(format!("data:image/tiff;base64,{}", b64(&png)), "")],
    )
    .await;
    assert!(msg.contains("unsupported image type `image/tiff`"), "{msg}");

    let (_, msg) = rejection(quiet_config(), vec![image(b64(b"%PDF-1.7 not an image at all"), "")]).await;
    assert!(msg.contains("not a jpeg, png, gif, webp or bmp"), "{msg}");

    let small = RuntimeConfig {
        media: MediaLimits {
            max_image_bytes: 1024,
            max_images_per_message: 2,
        },
        ..quiet_config()
    };
    let big = image_bytes(ImageFormat::Png, 4096);
    let (_, msg) = rejection(small.clone(), vec![image(b64(&big), "png")]).await;
    assert!(msg.contains("over the limit of 1024 bytes"), "{msg}");
    let three = vec![
        image(b64(&png), "png"),
        image(b64(&png), "png"),
        image(b64(&png), "png"),
    ];
    let (field, msg) = rejection(small, three).await;
    assert_eq!(field, "messages[0].content");
    assert!(msg.contains("3 images in one message, over the limit of 2"), "{msg}");
}

#[test]
fn provider_formats_carry_the_original_base64() {
    let png = image_bytes(ImageFormat::Png, 64);
    let encoded = b64(&png);
    let ContentPart::ImageReference(img) = image(format!("data:image/png;base64,{encoded}"), "png") else {
        unreachable!()
    };
    let openai = multimodal::to_openai_part(&img).unwrap();
    assert_eq!(openai["type"], "image_url");
    assert_eq!(openai["image_url"]["url"], format!("data:image/png;base64,{encoded}"));
    let gemini = multimodal::to_gemini_part(&img).unwrap();
    assert_eq!(gemini["inline_data"]["mime_type"], "image/png");
    assert_eq!(gemini["inline_data"]["data"], encoded);
    let ContentPart::ImageReference(by_path) = image("images/cat.png".into(), "png") else {
        unreachable!()
    };
    assert!(
        multimodal::to_openai_part(&by_path).is_none(),
        "a path is not inline data"
    );
    assert_eq!(
        ImageFormat::sniff(&image_bytes(ImageFormat::Webp, 20)),
        Some(ImageFormat::Webp)
    );
    assert_eq!(ImageFormat::from_declared("JPG"), Some(ImageFormat::Jpeg));
}
