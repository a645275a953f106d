//! Per-chunk cost of live turns and the throughput of image checking and conversion.
//!
//! `cargo bench -p aether-runtime --bench live_and_media`
//!
//! * A ~1,000-chunk answer at time scale 0, run live (every piece a `TaskStreamChunk` through
//!   the bounded channel to a consumer) and synchronously (one result), alternately in one loop.
//!   Per-chunk framework overhead = (live P50 − sync P50) / chunks per live turn.
//! * A 4 MiB image as a data URL: checking it (base64 decode, signature, hash) and converting it
//!   to OpenAI's and Gemini's formats, in MB/s of image bytes.

use std::time::Instant;

use aether_contracts::{ImageReference, Metadata, TaskRequest, UniversalMessage};
use aether_runtime::live::LiveOptions;
use aether_runtime::model::{ProfileSet, SimConfig};
use aether_runtime::multimodal::{self, MediaLimits};
use aether_runtime::{Runtime, RuntimeConfig};
use base64::Engine as _;
use hdrhistogram::Histogram;

const TURNS: u64 = 300;

fn hist() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000_000, 3).expect("bounds")
}

async fn live_vs_sync() {
    let dir = std::env::temp_dir().join(format!("aether-bench-live-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let profiles = dir.join("long.toml");
    std::fs::write(
        &profiles,
        "[models.\"long-answer\"]\nttft_ms = 0.0\nper_token_ms = 0.0\noutput_tokens = 1150\ntokenizer = \"cl100k_base\"\n",
    )
    .expect("profiles");
    let sim = SimConfig {
        time_scale: 0.0,
        profiles: ProfileSet::builtin_with_overrides(&profiles).expect("toml"),
        ..SimConfig::default()
    };
    let rt = Runtime::builder()
        .config(RuntimeConfig {
            sweep_interval: None,
            max_sessions_per_agent: 1_000_000,
            ..RuntimeConfig::default()
        })
        .simulated_model(sim)
        .time_scale(0.0)
        .build()
        .expect("runtime");
    let agent = rt
        .create_agent(aether_contracts::AgentConfig::new("long-answer", "Be thorough."))
        .await
        .expect("agent")
        .agent_id;
    let (mut live_h, mut sync_h) = (hist(), hist());
    let mut chunks_total = 0u64;
    for i in 0..TURNS + 20 {
        let req = |tag: &str| {
            TaskRequest::converse(
                format!("{tag}{i}"),
                agent.as_str(),
                format!("{tag}-s{i}"),
                vec![UniversalMessage::user("explain")],
            )
        };
        let t = Instant::now();
        let mut live = rt.start_live(req("live"), LiveOptions::default()).expect("live");
        let mut n = 0u64;
        while let Some(c) = live.next_chunk().await {
            n += 1;
            if c.is_final {
                break;
            }
        }
        let live_ns = t.elapsed().as_nanos() as u64;
        live.close().await;
        let t = Instant::now();
        let r = rt.process(req("sync")).await;
        let sync_ns = t.elapsed().as_nanos() as u64;
        assert!(r.is_success());
        if i >= 20 {
            live_h.record(live_ns).ok();
            sync_h.record(sync_ns).ok();
            chunks_total += n;
        }
    }
    let chunks = chunks_total as f64 / TURNS as f64;
    let (live_p50, sync_p50) = (
        live_h.value_at_quantile(0.5) as f64 / 1000.0,
        sync_h.value_at_quantile(0.5) as f64 / 1000.0,
    );
    println!("# Live turns: a {chunks:.0}-chunk answer at time scale 0 ({TURNS} turns each way, interleaved)\n");
    println!("| mode | P50 µs per turn | P99 µs per turn |");
    println!("|---|---:|---:|");
    println!(
        "| live (chunks to a consumer) | {live_p50:.1} | {:.1} |",
        live_h.value_at_quantile(0.99) as f64 / 1000.0
    );
    println!(
        "| sync (one result) | {sync_p50:.1} | {:.1} |",
        sync_h.value_at_quantile(0.99) as f64 / 1000.0
    );
    println!(
        "\nper-chunk framework overhead: {:.3} µs (live − sync, / chunks; target <= 2 µs); live time per chunk all in: {:.3} µs\n",
        (live_p50 - sync_p50) / chunks,
        live_p50 / chunks
    );
    let _ = std::fs::remove_dir_all(dir);
}

fn media() {
    let mut bytes = vec![0x89, b'P', b'N', b'G', 0x0D, 0x0A, 0x1A, 0x0A];
    bytes.extend((0..4 * 1024 * 1024 - 8).map(|i: usize| (i.wrapping_mul(2_654_435_761) >> 11) as u8));
    let image = ImageReference {
        image_path: format!(
            "data:image/png;base64,{}",
            base64::engine::general_purpose::STANDARD.encode(&bytes)
        ),
        image_format: "png".into(),
        width: None,
        height: None,
        metadata: Metadata::new(),
    };
    let limits = MediaLimits::default();
    let mb = bytes.len() as f64 / 1e6;
    let rounds = 40;
    let t = Instant::now();
    for _ in 0..rounds {
        let facts = multimodal::inspect_image(&image, &limits)
            .expect("valid")
            .expect("inline");
        assert_eq!(facts.bytes, bytes.len());
    }
    let check = mb * rounds as f64 / t.elapsed().as_secs_f64();
    let t = Instant::now();
    for _ in 0..rounds {
        std::hint::black_box(multimodal::to_openai_part(&image));
    }
    let openai = mb * rounds as f64 / t.elapsed().as_secs_f64();
    let t = Instant::now();
    for _ in 0..rounds {
        std::hint::black_box(multimodal::to_gemini_part(&image));
    }
    let gemini = mb * rounds as f64 / t.elapsed().as_secs_f64();
    println!("# Images: a {mb:.1} MB PNG as a data URL\n");
    println!("| step | MB/s of image bytes |");
    println!("|---|---:|");
    println!("| check (base64 decode, signature, hash) | {check:.0} |");
    println!("| to OpenAI image_url part (one copy of the base64 text) | {openai:.0} |");
    println!("| to Gemini inline_data part (one copy of the base64 text) | {gemini:.0} |");
}

fn main() {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio")
        .block_on(live_vs_sync());
    media();
}
