//! Straight lines fitted to a run's memory readings: the slope per hour of bytes over time
//! ([`fit_per_hour`]), and the slope at a constant live set, fitted on time and one more
//! reading together ([`fit_on_time_and`]).
//!
//! Each slope comes with its standard error. A soak's readings need not be independent: the
//! live set, and the heap with it, can wander with the rate, so that a reading a second after
//! another shares much of its residual. Least squares' usual error takes every reading as a
//! fresh draw and comes out too small for such series (several times, for noise that holds 20
//! readings at a time: the tests below). The errors
//! here are Newey and West's: the residuals' products with their neighbours' up to
//! [`CORRELATION_SPAN_S`] apart are added in, with Bartlett's weights falling to zero at that
//! span. On independent readings they agree with least squares'. (A strictly periodic swing,
//! such as a sweep's sawtooth, averages out over many periods: its neighbours' products cancel
//! over a period, and the error can come out below least squares'.)

/// How far apart (seconds) two readings' residuals may be correlated and still be allowed for.
/// Correlation over longer spans (a rate that swings from one minute to the next, on time alone)
/// is not allowed for: the error is then still too small, by less.
pub const CORRELATION_SPAN_S: f64 = 60.0;

/// A straight line fitted to (seconds, bytes) points: its slope per hour and the slope's
/// standard error (how far the growth figure can be trusted).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Fit {
    pub slope: f64,
    pub stderr: f64,
}

/// Least squares over `points` (in time order); `None` with fewer than 3 points or no spread
/// in time.
pub fn fit_per_hour(points: impl Iterator<Item = (f64, f64)>) -> Option<Fit> {
    let pts: Vec<(f64, f64)> = points.collect();
    if pts.len() < 3 {
        return None;
    }
    let n = pts.len() as f64;
    let (st, sy) = pts.iter().fold((0.0, 0.0), |(a, b), p| (a + p.0, b + p.1));
    let (mt, my) = (st / n, sy / n);
    let (mut num, mut den) = (0.0, 0.0);
    for (t, y) in &pts {
        num += (t - mt) * (y - my);
        den += (t - mt).powi(2);
    }
    if den <= 0.0 {
        return None;
    }
    let slope = num / den;
    // Each point's score: its time's distance from the mean times its residual.
    let scores: Vec<[f64; 1]> = pts
        .iter()
        .map(|(t, y)| [(t - mt) * (y - (my + slope * (t - mt)))])
        .collect();
    let s = long_run(&scores, lags(&pts, |p| p.0), n - 2.0);
    Some(Fit {
        slope: slope * 3600.0,
        stderr: (s[0][0].max(0.0)).sqrt() / den * 3600.0,
    })
}

/// A fit of bytes on time and one more reading together (least squares with two regressors):
/// the slope per hour with that reading held constant, and the bytes per unit of it, each with
/// its standard error. A soak's memory follows its live set, which follows its rate: where the
/// rate drifts (a store whose one writer sets a pace that moves from minute to minute), the
/// plain slope counts a larger live set as growth and a smaller one as a fall; this one sets
/// the live set apart.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct JointFit {
    /// Bytes per hour at a constant reading.
    pub per_hour: Fit,
    /// Bytes per unit of the reading (`slope` and `stderr` in bytes, not per hour).
    pub per_unit: Fit,
}

/// Least squares of `y` on `t` (seconds) and `x` over `(t, x, y)` points in time order; `None`
/// with fewer than 4 points, or where `x` or `t` has no spread of its own (constant, or moving
/// in step with the other: the two effects cannot be told apart).
pub fn fit_on_time_and(points: impl Iterator<Item = (f64, f64, f64)>) -> Option<JointFit> {
    let pts: Vec<(f64, f64, f64)> = points.collect();
    if pts.len() < 4 {
        return None;
    }
    let n = pts.len() as f64;
    let (st, sx, sy) = pts
        .iter()
        .fold((0.0, 0.0, 0.0), |(a, b, c), p| (a + p.0, b + p.1, c + p.2));
    let (mt, mx, my) = (st / n, sx / n, sy / n);
    let (mut stt, mut sxx, mut stx, mut sty, mut sxy) = (0.0, 0.0, 0.0, 0.0, 0.0);
    for &(t, x, y) in &pts {
        let (t, x, y) = (t - mt, x - mx, y - my);
        stt += t * t;
        sxx += x * x;
        stx += t * x;
        sty += t * y;
        sxy += x * y;
    }
    let det = stt * sxx - stx * stx;
    // Either regressor constant within rounding, or the two collinear within rounding (what is
    // left of one once the other is fitted is nothing): no fit.
    let spread = |s: f64, m: f64| s > 1e-12 * n * m * m;
    if !(spread(stt, mt) && spread(sxx, mx) && det > 1e-9 * stt * sxx) {
        return None;
    }
    let bt = (sty * sxx - sxy * stx) / det;
    let bx = (sxy * stt - sty * stx) / det;
    let scores: Vec<[f64; 2]> = pts
        .iter()
        .map(|&(t, x, y)| {
            let (t, x) = (t - mt, x - mx);
            let e = y - my - bt * t - bx * x;
            [t * e, x * e]
        })
        .collect();
    let s = long_run(&scores, lags(&pts, |p| p.0), n - 3.0);
    // The coefficients' covariance: A⁻¹ S A⁻¹, A = [[stt, stx], [stx, sxx]].
    let inv = [[sxx / det, -stx / det], [-stx / det, stt / det]];
    let var = |i: usize| {
        let mut v = 0.0;
        for (j, row) in s.iter().enumerate() {
            for (k, s_jk) in row.iter().enumerate() {
                v += inv[i][j] * s_jk * inv[k][i];
            }
        }
        v.max(0.0)
    };
    Some(JointFit {
        per_hour: Fit {
            slope: bt * 3600.0,
            stderr: var(0).sqrt() * 3600.0,
        },
        per_unit: Fit {
            slope: bx,
            stderr: var(1).sqrt(),
        },
    })
}

/// How many neighbours on each side fall within [`CORRELATION_SPAN_S`], at the points' mean
/// spacing in time.
fn lags<P>(pts: &[P], t: impl Fn(&P) -> f64) -> usize {
    let (Some(first), Some(last)) = (pts.first(), pts.last()) else {
        return 0;
    };
    let spacing = (t(last) - t(first)) / (pts.len() - 1).max(1) as f64;
    if spacing <= 0.0 {
        return 0;
    }
    ((CORRELATION_SPAN_S / spacing).ceil() as usize).min(pts.len() - 1)
}

/// Newey and West's estimate of the scores' long-run covariance (Bartlett's weights to `lags`
/// neighbours), scaled by n / `dof` as least squares' error is.
fn long_run<const K: usize>(scores: &[[f64; K]], lags: usize, dof: f64) -> [[f64; K]; K] {
    let mut s = [[0.0; K]; K];
    for l in 0..=lags {
        let w = if l == 0 {
            1.0
        } else {
            1.0 - l as f64 / (lags + 1) as f64
        };
        for (a, b) in scores[l..].iter().zip(scores) {
            for j in 0..K {
                for k in 0..K {
                    // Lag 0 once; each other lag in both directions.
                    s[j][k] += if l == 0 {
                        a[j] * b[k]
                    } else {
                        w * (a[j] * b[k] + b[j] * a[k])
                    };
                }
            }
        }
    }
    let scale = scores.len() as f64 / dof;
    s.map(|row| row.map(|v| v * scale))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Least squares' usual error of the slope per hour, for comparison.
    fn ols_stderr(pts: &[(f64, f64)]) -> f64 {
        let n = pts.len() as f64;
        let (mt, my) = pts.iter().fold((0.0, 0.0), |(a, b), p| (a + p.0 / n, b + p.1 / n));
        let den: f64 = pts.iter().map(|p| (p.0 - mt).powi(2)).sum();
        let slope = pts.iter().map(|p| (p.0 - mt) * (p.1 - my)).sum::<f64>() / den;
        let res: f64 = pts.iter().map(|p| (p.1 - my - slope * (p.0 - mt)).powi(2)).sum();
        (res / (n - 2.0) / den).sqrt() * 3600.0
    }

    /// A small seeded generator (xorshift) for noise that is independent from point to point.
    fn noise(seed: u64) -> impl FnMut() -> f64 {
        let mut x = seed;
        move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x % 2001) as f64 - 1000.0
        }
    }

    #[test]
    fn a_fit_gives_the_slope_per_hour_and_its_error() {
        let exact = fit_per_hour((0..10).map(|i| (i as f64, 100.0 + 2.0 * i as f64))).unwrap();
        assert!((exact.slope - 7200.0).abs() < 1e-6 && exact.stderr < 1e-6, "{exact:?}");
        let noisy = fit_per_hour((0..10).map(|i| (i as f64, if i % 2 == 0 { 0.0 } else { 10.0 }))).unwrap();
        assert!(noisy.stderr > 0.0, "{noisy:?}");
        assert!(fit_per_hour([(0.0, 1.0), (1.0, 2.0)].into_iter()).is_none());
    }

    /// On independent noise the error is least squares' (within sampling); on noise that holds
    /// for 20 readings at a time (a live set wandering with the rate), several times larger, as
    /// it should be; a strictly periodic swing is not read as a slope.
    #[test]
    fn the_error_allows_for_neighbours_that_move_together() {
        let mut draw = noise(7);
        let independent: Vec<(f64, f64)> = (0..1800).map(|t| (f64::from(t), 5e7 + draw())).collect();
        let fit = fit_per_hour(independent.iter().copied()).unwrap();
        let ratio = fit.stderr / ols_stderr(&independent);
        assert!((0.7..1.3).contains(&ratio), "independent: {ratio}");

        let mut draw = noise(9);
        let mut level = 0.0;
        let wandering: Vec<(f64, f64)> = (0..1800)
            .map(|t| {
                if t % 20 == 0 {
                    level = draw() * 1e3;
                }
                (f64::from(t), 5e7 + level)
            })
            .collect();
        let fit = fit_per_hour(wandering.iter().copied()).unwrap();
        let ratio = fit.stderr / ols_stderr(&wandering);
        assert!(ratio > 2.5, "wandering: {ratio}");

        // A 30-second sawtooth of 1 MB, flat underneath.
        let sawtooth: Vec<(f64, f64)> = (0..1800)
            .map(|t| (f64::from(t), 5e7 + 1e6 * f64::from(t % 30) / 30.0))
            .collect();
        let fit = fit_per_hour(sawtooth.iter().copied()).unwrap();
        assert!(fit.slope.abs() < 2.0 * fit.stderr, "{fit:?}");
    }

    /// Memory that follows a live set rising with time reads as growth on time alone and as
    /// none at a constant live set; growth of its own shows in both.
    #[test]
    fn a_joint_fit_sets_the_live_set_apart_from_growth() {
        // The live set rises 10 a second with a sawtooth on top; 500 B each.
        let live = |t: f64| 17_000.0 + 10.0 * t + 300.0 * ((t as u64 % 30) as f64 / 30.0);
        let run = |leak_per_s: f64| {
            (0..600).map(move |t| {
                let t = f64::from(t);
                (t, live(t), 50e6 + 500.0 * live(t) + leak_per_s * t)
            })
        };
        assert!(fit_per_hour(run(0.0).map(|(t, _, y)| (t, y))).unwrap().slope > 17e6);
        let flat = fit_on_time_and(run(0.0)).unwrap();
        assert!(
            flat.per_hour.slope.abs() < 1.0 && flat.per_hour.stderr < 1.0,
            "{flat:?}"
        );
        assert!((flat.per_unit.slope - 500.0).abs() < 1e-6, "{flat:?}");
        let leak = fit_on_time_and(run(100.0)).unwrap();
        assert!((leak.per_hour.slope - 360e3).abs() < 1.0, "{leak:?}");
        // Noise gives errors; a live set constant, or in step with the clock, gives no fit.
        let mut draw = noise(11);
        let noisy = fit_on_time_and(run(0.0).map(|(t, x, y)| (t, x, y + draw()))).unwrap();
        assert!(noisy.per_hour.stderr > 0.0 && noisy.per_unit.stderr > 0.0, "{noisy:?}");
        assert!(noisy.per_hour.slope.abs() < 3.0 * noisy.per_hour.stderr, "{noisy:?}");
        assert!(fit_on_time_and(run(0.0).map(|(t, _, y)| (t, 5.0, y))).is_none());
        assert!(fit_on_time_and(run(0.0).map(|(t, _, y)| (t, 3.0 * t + 1.0, y))).is_none());
        assert!(fit_on_time_and(run(0.0).take(3)).is_none());
    }
}
