//! Per-tenant rate limits (token buckets, soft and hard) — in process, or shared by every instance
//! through Redis (one Lua script per request: both buckets refilled by Redis's own clock and taken
//! atomically) — and the instance's admission queue.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::Instant;

use parking_lot::Mutex;
use tokio::sync::{Semaphore, SemaphorePermit};

use crate::config::RateLimit;

/// What the limiter says about one request.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum RateDecision {
    Allow,
    /// Above the soft limit: served, but flagged.
    AllowOverSoft,
    /// Above the hard limit: refuse; a token is due in this many seconds.
    Deny {
        retry_after_s: f64,
    },
}

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    rate: f64,
    capacity: f64,
    at: Instant,
}

impl Bucket {
    fn new(rate: f64, capacity: f64, now: Instant) -> Self {
        Self {
            tokens: capacity,
            rate,
            capacity,
            at: now,
        }
    }

    fn refill(&mut self, now: Instant) {
        let dt = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + dt * self.rate).min(self.capacity);
        self.at = now;
    }
}

/// A tenant's limiter: its buckets here, or in Redis.
pub enum RateLimiter {
    Local(LocalLimiter),
    Shared(SharedLimiter),
}

impl std::fmt::Debug for RateLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Local(_) => "RateLimiter::Local",
            Self::Shared(_) => "RateLimiter::Shared",
        })
    }
}

impl RateLimiter {
    /// In Redis when a connection is given, else in process.
    pub fn new(tenant: &str, limit: RateLimit, redis: Option<&redis::aio::ConnectionManager>) -> Self {
        match redis {
            Some(conn) => Self::Shared(SharedLimiter {
                conn: conn.clone(),
                soft_key: format!("aether:ratelimit:{tenant}:soft"),
                hard_key: format!("aether:ratelimit:{tenant}:hard"),
                limit,
            }),
            None => Self::Local(LocalLimiter::new(limit)),
        }
    }

    pub async fn check(&self) -> RateDecision {
        match self {
            Self::Local(l) => l.check(Instant::now()),
            Self::Shared(s) => s.check().await,
        }
    }
}

/// Connects to Redis for shared limits; the error names the URL.
pub async fn connect_redis(url: &str) -> Result<redis::aio::ConnectionManager, String> {
    let client = redis::Client::open(url).map_err(|e| format!("--redis-url `{url}`: {e}"))?;
    client
        .get_connection_manager()
        .await
        .map_err(|e| format!("cannot connect to Redis at `{url}`: {e}"))
}

/// Both buckets in one atomic step, on Redis's clock. Returns {allowed, over_soft_or_retry_ms}.
const SHARED_BUCKETS: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local function level(key, rate, cap)
  local v = redis.call('HMGET', key, 'tokens', 'at')
  local tokens = tonumber(v[1]) or cap
  local at = tonumber(v[2]) or now
  return math.min(cap, tokens + math.max(0, now - at) * rate)
end
local soft_rate, hard_rate = tonumber(ARGV[1]), tonumber(ARGV[2])
local soft_cap, hard_cap = tonumber(ARGV[3]), tonumber(ARGV[4])
local soft = level(KEYS[1], soft_rate, soft_cap)
local hard = level(KEYS[2], hard_rate, hard_cap)
local allowed, extra = 1, 0
if hard < 1 then
  allowed = 0
  extra = math.ceil((1 - hard) / hard_rate * 1000)
else
  hard = hard - 1
  if soft < 1 then extra = 1 else soft = soft - 1 end
end
local ttl = math.ceil(math.max(hard_cap / hard_rate, soft_cap / soft_rate) * 1000) + 1000
redis.call('HSET', KEYS[1], 'tokens', tostring(soft), 'at', tostring(now))
redis.call('HSET', KEYS[2], 'tokens', tostring(hard), 'at', tostring(now))
redis.call('PEXPIRE', KEYS[1], ttl)
redis.call('PEXPIRE', KEYS[2], ttl)
return {allowed, extra}
"#;

/// The longest a request waits for Redis's answer before it passes unlimited.
const REDIS_DEADLINE: std::time::Duration = std::time::Duration::from_millis(250);

/// Requests let through because Redis failed or was slow (`aether_rate_limit_fail_open_total`).
static FAIL_OPEN: AtomicU64 = AtomicU64::new(0);
/// Redis is failing now: warned once per outage, and once more when it answers again.
static REDIS_DOWN: AtomicBool = AtomicBool::new(false);

/// Requests that passed without a limit because the shared limiter (Redis) failed.
pub fn fail_open_total() -> u64 {
    FAIL_OPEN.load(Ordering::Relaxed)
}

/// A tenant's buckets in Redis, shared by every instance. If Redis fails or takes longer than
/// `REDIS_DEADLINE`, requests pass, counted (`fail_open_total`) and warned about once per
/// outage: an outage of the limiter must not become an outage of the service. The connection
/// manager reconnects by itself; the first answer after an outage says so in the log.
pub struct SharedLimiter {
    conn: redis::aio::ConnectionManager,
    soft_key: String,
    hard_key: String,
    limit: RateLimit,
}

impl SharedLimiter {
    async fn check(&self) -> RateDecision {
        static SCRIPT: std::sync::OnceLock<redis::Script> = std::sync::OnceLock::new();
        let script = SCRIPT.get_or_init(|| redis::Script::new(SHARED_BUCKETS));
        let l = self.limit;
        let mut conn = self.conn.clone();
        let mut invocation = script.key(&self.soft_key);
        invocation
            .key(&self.hard_key)
            .arg(l.soft_rps)
            .arg(l.hard_rps)
            .arg(soft_capacity(&l))
            .arg(l.burst);
        let reply: redis::RedisResult<(i64, i64)> =
            match tokio::time::timeout(REDIS_DEADLINE, invocation.invoke_async(&mut conn)).await {
                Ok(r) => r,
                Err(_) => Err(redis::RedisError::from((
                    redis::ErrorKind::Io,
                    "no answer within the rate limiter's deadline",
                    format!("{REDIS_DEADLINE:?}"),
                ))),
            };
        if reply.is_ok() && REDIS_DOWN.swap(false, Ordering::Relaxed) {
            tracing::warn!("shared rate limit available again (Redis answers)");
        }
        match reply {
            Ok((1, 0)) => RateDecision::Allow,
            Ok((1, _)) => RateDecision::AllowOverSoft,
            Ok((_, retry_ms)) => RateDecision::Deny {
                retry_after_s: retry_ms as f64 / 1000.0,
            },
            Err(e) => {
                FAIL_OPEN.fetch_add(1, Ordering::Relaxed);
                if !REDIS_DOWN.swap(true, Ordering::Relaxed) {
                    tracing::warn!(error = %e, "shared rate limit unavailable (Redis): requests pass unlimited and are counted in aether_rate_limit_fail_open_total until it answers again");
                }
                RateDecision::Allow
            }
        }
    }
}

/// The soft bucket's burst is in proportion, so that bursts cross the soft limit first.
fn soft_capacity(limit: &RateLimit) -> f64 {
    (limit.burst * limit.soft_rps / limit.hard_rps).max(1.0)
}

/// A tenant's two buckets in this process. One small lock per tenant, never a global one.
#[derive(Debug)]
pub struct LocalLimiter {
    buckets: Mutex<(Bucket, Bucket)>,
}

impl LocalLimiter {
    pub fn new(limit: RateLimit) -> Self {
        let now = Instant::now();
        Self {
            buckets: Mutex::new((
                Bucket::new(limit.soft_rps, soft_capacity(&limit), now),
                Bucket::new(limit.hard_rps, limit.burst, now),
            )),
        }
    }

    pub fn check(&self, now: Instant) -> RateDecision {
        let mut b = self.buckets.lock();
        let (soft, hard) = &mut *b;
        hard.refill(now);
        soft.refill(now);
        if hard.tokens < 1.0 {
            return RateDecision::Deny {
                retry_after_s: (1.0 - hard.tokens) / hard.rate,
            };
        }
        hard.tokens -= 1.0;
        if soft.tokens < 1.0 {
            return RateDecision::AllowOverSoft;
        }
        soft.tokens -= 1.0;
        RateDecision::Allow
    }
}

/// Bounded admission: `max_in_flight` turns run, up to `queue` wait, the rest are refused at once.
///
/// The decision counts the turns *inside* (running or waiting) against `max_in_flight + queue`,
/// one atomic add. Counting the waiters alone would refuse a turn wrongly at capacity: a slot that
/// a finished turn hands to the first waiter is that waiter's at once, but the waiter stops
/// counting itself only when its task next runs, and in between its client's neighbour (or the
/// same client, answered) would find the queue still full.
#[derive(Debug)]
pub struct Admission {
    slots: Semaphore,
    inside: AtomicUsize,
    capacity: usize,
    max_in_flight: usize,
}

/// A running turn's slot; dropping it lets the next one in. It borrows the admission it came
/// from: no reference count is touched per turn.
pub struct Admitted<'a> {
    // Dropped in this order: the turn leaves the count, then frees its slot, so that a turn
    // arriving in between queues for the slot rather than being refused.
    _inside: Inside<'a>,
    _slot: SemaphorePermit<'a>,
}

/// One turn inside (running or waiting); dropping it, or the wait that holds it, counts it out.
struct Inside<'a>(&'a AtomicUsize);

impl Drop for Inside<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Admission {
    pub fn new(max_in_flight: usize, queue: usize) -> Self {
        Self {
            slots: Semaphore::new(max_in_flight),
            inside: AtomicUsize::new(0),
            capacity: max_in_flight + queue,
            max_in_flight,
        }
    }

    /// A slot, after waiting in the queue if need be; `None` when the queue is full.
    pub async fn enter(&self) -> Option<Admitted<'_>> {
        if self.inside.fetch_add(1, Ordering::AcqRel) >= self.capacity {
            self.inside.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        let inside = Inside(&self.inside);
        let slot = self.slots.acquire().await.ok()?;
        Some(Admitted {
            _inside: inside,
            _slot: slot,
        })
    }

    /// Turns waiting for a slot.
    pub fn queued(&self) -> usize {
        self.inside.load(Ordering::Acquire).saturating_sub(self.in_flight())
    }

    /// Turns running now.
    pub fn in_flight(&self) -> usize {
        self.max_in_flight - self.slots.available_permits()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;

    fn limiter(soft_rps: f64, hard_rps: f64, burst: f64) -> LocalLimiter {
        LocalLimiter::new(RateLimit {
            soft_rps,
            hard_rps,
            burst,
        })
    }

    #[test]
    fn a_burst_crosses_the_soft_limit_first_then_the_hard_one() {
        let l = limiter(5.0, 10.0, 4.0);
        let now = Instant::now();
        // Soft burst = 4 × 5/10 = 2 tokens; hard burst = 4.
        let got: Vec<RateDecision> = (0..5).map(|_| l.check(now)).collect();
        assert_eq!(
            &got[..4],
            &[
                RateDecision::Allow,
                RateDecision::Allow,
                RateDecision::AllowOverSoft,
                RateDecision::AllowOverSoft
            ]
        );
        match got[4] {
            // The hard bucket is empty: one token comes after 1/10 s.
            RateDecision::Deny { retry_after_s } => assert!((retry_after_s - 0.1).abs() < 1e-9, "{retry_after_s}"),
            other => panic!("expected a denial, got {other:?}"),
        }
    }

    #[test]
    fn tokens_come_back_at_the_rate_and_never_beyond_the_burst() {
        let l = limiter(10.0, 10.0, 2.0);
        let t0 = Instant::now();
        assert_eq!(l.check(t0), RateDecision::Allow);
        assert_eq!(l.check(t0), RateDecision::Allow);
        assert!(matches!(l.check(t0), RateDecision::Deny { .. }));
        // Half a token after 50 ms: still refused, and the wait left is 50 ms.
        match l.check(t0 + Duration::from_millis(50)) {
            RateDecision::Deny { retry_after_s } => assert!((retry_after_s - 0.05).abs() < 1e-6, "{retry_after_s}"),
            other => panic!("expected a denial, got {other:?}"),
        }
        assert_eq!(l.check(t0 + Duration::from_millis(100)), RateDecision::Allow);
        // An hour idle refills to the burst (2), not to 36,000.
        let later = t0 + Duration::from_secs(3600);
        assert_eq!(l.check(later), RateDecision::Allow);
        assert_eq!(l.check(later), RateDecision::Allow);
        assert!(matches!(l.check(later), RateDecision::Deny { .. }));
    }

    #[test]
    fn a_clock_that_goes_backwards_adds_nothing() {
        let l = limiter(1.0, 1.0, 1.0);
        let t0 = Instant::now() + Duration::from_secs(10);
        assert_eq!(l.check(t0), RateDecision::Allow);
        assert!(matches!(
            l.check(t0 - Duration::from_secs(5)),
            RateDecision::Deny { .. }
        ));
    }

    #[tokio::test]
    async fn admission_runs_the_slots_queues_the_waiters_and_refuses_the_rest() {
        let a = Arc::new(Admission::new(1, 1));
        let first = a.enter().await.expect("a free slot");
        assert_eq!(a.in_flight(), 1);
        let waiter = {
            let a = Arc::clone(&a);
            tokio::spawn(async move { a.enter().await.is_some() })
        };
        while a.queued() == 0 {
            tokio::task::yield_now().await;
        }
        assert!(a.enter().await.is_none(), "the queue (1) is full: refused at once");
        drop(first);
        assert!(waiter.await.unwrap(), "the waiter got the freed slot");
        assert_eq!(a.queued(), 0);
    }

    /// At capacity, a slot freed goes to the first waiter at once, before that waiter's task runs
    /// again: a turn arriving in that moment finds one running and none waiting, and must queue,
    /// not be refused.
    #[tokio::test]
    async fn a_turn_arriving_as_a_slot_passes_to_a_waiter_is_queued_not_refused() {
        let a = Arc::new(Admission::new(1, 1));
        let first = a.enter().await.expect("a free slot");
        let waiter = {
            let a = Arc::clone(&a);
            tokio::spawn(async move { a.enter().await.is_some() })
        };
        while a.queued() == 0 {
            tokio::task::yield_now().await;
        }
        // The slot passes to the waiter; on this one-thread runtime its task has not run since.
        drop(first);
        assert_eq!((a.in_flight(), a.queued()), (1, 0));
        let arriving = a.enter();
        tokio::pin!(arriving);
        assert!(
            futures::poll!(arriving.as_mut()).is_pending(),
            "queued behind the waiter, not refused"
        );
        assert_eq!(a.queued(), 1);
        assert!(waiter.await.unwrap());
        assert!(arriving.await.is_some(), "then it runs");
        assert_eq!((a.in_flight(), a.queued()), (0, 0));
    }
}
