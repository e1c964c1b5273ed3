//! The animation fingerprint the signature hashes in: the colour and rotation a browser reports for
//! one curve of the build's table at one moment, printed the way the page's script prints them.

/// One curve of the page's table: start colour (r, g, b), end colour, angle, Bézier (x1, y1, x2, y2),
/// each a byte-sized number the generator scales.
pub type Curve = [f64; 11];

/// The build's `curves` table: 4 groups of 16 curves.
pub type Curves = Vec<Vec<Curve>>;

pub(super) const GROUPS: usize = 4;
pub(super) const CURVES_PER_GROUP: usize = 16;
/// The animation's length in milliseconds: the seed's time bytes pick a moment in it.
const ANIMATION_MS: f64 = 4096.0;

/// The seed positions the generator reads, as the build's chunk has them: `curves[seed[group] % 4]
/// [seed[segment] % 16]` is the curve, `seed[ct[0..3]] % 16` multiplied set the animation's moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BuildIndices {
    pub group: usize,
    pub segment: usize,
    pub ct: [usize; 3],
}

/// The build's animation fingerprint for `seed`; `None` when an index falls outside the seed or table.
pub fn fingerprint(seed: &[u8], curves: &Curves, idx: &BuildIndices) -> Option<String> {
    let byte = |i: usize| seed.get(i).map(|&b| usize::from(b));
    let curve = curves.get(byte(idx.group)? % GROUPS)?.get(byte(idx.segment)? % CURVES_PER_GROUP)?;
    let product = idx.ct.iter().map(|&i| byte(i).map(|b| b % 16)).product::<Option<usize>>()?;
    // The moment, snapped to 10 ms, as the generator sets `currentTime`.
    let moment = (product as f64 / 10.0).round() * 10.0;
    // The easing's control points, as the generator writes them: scaled from bytes, 2 decimals.
    let scaled = |b: f64, min: f64, max: f64| js_round2(b * (max - min) / 255.0 + min);
    let easing = UnitBezier::new(
        scaled(curve[7], 0.0, 1.0),
        scaled(curve[8], -1.0, 1.0),
        scaled(curve[9], 0.0, 1.0),
        scaled(curve[10], -1.0, 1.0),
    );
    let progress = easing.solve(moment / ANIMATION_MS);
    // The browser blends the two colours and clamps the result to a byte per channel.
    let channel = |c: usize| (curve[c] + (curve[c + 3] - curve[c]) * progress).round().clamp(0.0, 255.0);
    let degrees = (curve[6] * 300.0 / 255.0 + 60.0).floor();
    let angle = degrees * progress * std::f64::consts::PI / 180.0;
    let (sin, cos) = angle.sin_cos();
    // `getComputedStyle`: `rgb(r, g, b)` and the rotation's `matrix(cos, sin, -sin, cos, 0, 0)`.
    let numbers = [channel(0), channel(1), channel(2), cos, sin, -sin, cos, 0.0, 0.0];
    let joined: String = numbers.iter().map(|&x| js_hex(js_round2(x))).collect();
    Some(joined.chars().filter(|c| *c != '.' && *c != '-').collect())
}

/// The fingerprint from what the page and its chunks gave, or why there is none (for the warning).
pub fn build_fingerprint(
    seed: &[u8],
    curves: Option<&Curves>,
    indices: Option<&BuildIndices>,
) -> Result<String, &'static str> {
    let curves = curves.ok_or("the page has no curves table")?;
    let indices = indices.ok_or("no script chunk gave the build's seed positions")?;
    fingerprint(seed, curves, indices).ok_or("the build's seed positions fall outside the seed")
}

/// JS `Number(x.toFixed(2))`: rounded on the exact decimal value of the double, a tie going away
/// from zero (so 0.125 → 0.13 and 1.005, really 1.00499…, → 1).
fn js_round2(x: f64) -> f64 {
    if !x.is_finite() || x.abs() >= 1e21 {
        return x;
    }
    // 1100 places hold any double's exact decimal expansion, so nothing is rounded by the formatting.
    let exact = format!("{:.1100}", x.abs());
    let Some((whole, places)) = exact.split_once('.') else { return x };
    let digit = |i: usize| u128::from(places.as_bytes()[i] - b'0');
    let Ok(whole) = whole.parse::<u128>() else { return x };
    let hundredths = whole * 100 + digit(0) * 10 + digit(1) + u128::from(digit(2) >= 5);
    let rounded: f64 = format!("{}.{:02}", hundredths / 100, hundredths % 100).parse().unwrap_or(x);
    if x < 0.0 { -rounded } else { rounded }
}

/// JS `x.toString(16)`: V8's `DoubleToRadixCString`, which prints fraction digits until the rest is
/// below half the double's spacing (so 0.01 → "0.028f5c28f5c28f6"), rounding the last digit half to
/// even.
fn js_hex(x: f64) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    if x.is_nan() {
        return "NaN".into();
    }
    if x.is_infinite() {
        return if x > 0.0 { "Infinity" } else { "-Infinity" }.into();
    }
    if x == 0.0 {
        return "0".into();
    }
    let negative = x < 0.0;
    let value = x.abs();
    let mut integer = value.floor();
    let mut fraction = value - integer;
    // Half the distance to the next double, never below the smallest one.
    let next_up = f64::from_bits(value.to_bits() + 1);
    let mut delta = (0.5 * (next_up - value)).max(f64::from_bits(1));
    let mut places: Vec<u8> = Vec::new();
    if fraction >= delta {
        loop {
            fraction *= 16.0;
            delta *= 16.0;
            let digit = fraction as u8;
            places.push(digit);
            fraction -= f64::from(digit);
            if (fraction > 0.5 || (fraction == 0.5 && digit & 1 == 1)) && fraction + delta > 1.0 {
                // Round up, carrying through trailing 'f's into the integer if need be.
                loop {
                    match places.pop() {
                        None => {
                            integer += 1.0;
                            break;
                        }
                        Some(d) if d + 1 < 16 => {
                            places.push(d + 1);
                            break;
                        }
                        Some(_) => {}
                    }
                }
                break;
            }
            if fraction < delta {
                break;
            }
        }
    }
    // Integer digits, least significant first; beyond 2^53 the low digits are not represented: zeros.
    let mut whole = Vec::new();
    while integer / 16.0 >= 9_007_199_254_740_992.0 {
        integer /= 16.0;
        whole.push(b'0');
    }
    loop {
        let rem = integer % 16.0;
        whole.push(DIGITS[rem as usize]);
        integer = (integer - rem) / 16.0;
        if integer <= 0.0 {
            break;
        }
    }
    let mut out = String::with_capacity(whole.len() + places.len() + 2);
    if negative {
        out.push('-');
    }
    out.extend(whole.iter().rev().map(|&d| char::from(d)));
    if !places.is_empty() {
        out.push('.');
        out.extend(places.iter().map(|&d| char::from(DIGITS[usize::from(d)])));
    }
    out
}

/// The cubic-bezier timing function as Chromium (`ui/gfx/geometry/cubic_bezier.cc`) and WebKit
/// (`UnitBezier.h`) evaluate it for animations: an initial guess from 11 samples of the curve, up to 4
/// Newton steps, then bisection, to within 1e-7 of x. The fingerprint is what the browser computes,
/// so this follows its steps rather than solving more exactly.
struct UnitBezier {
    ax: f64,
    bx: f64,
    cx: f64,
    ay: f64,
    by: f64,
    cy: f64,
    samples: [f64; 11],
}

impl UnitBezier {
    const EPSILON: f64 = 1e-7;

    fn new(x1: f64, y1: f64, x2: f64, y2: f64) -> Self {
        let cx = 3.0 * x1;
        let bx = 3.0 * (x2 - x1) - cx;
        let ax = 1.0 - cx - bx;
        let cy = 3.0 * y1;
        let by = 3.0 * (y2 - y1) - cy;
        let ay = 1.0 - cy - by;
        let mut b = Self { ax, bx, cx, ay, by, cy, samples: [0.0; 11] };
        let step = 1.0 / 10.0;
        b.samples = std::array::from_fn(|i| b.x_at(i as f64 * step));
        b
    }

    fn x_at(&self, t: f64) -> f64 {
        ((self.ax * t + self.bx) * t + self.cx) * t
    }

    fn y_at(&self, t: f64) -> f64 {
        ((self.ay * t + self.by) * t + self.cy) * t
    }

    fn dx_at(&self, t: f64) -> f64 {
        (3.0 * self.ax * t + 2.0 * self.bx) * t + self.cx
    }

    /// The eased progress at `x` (the fingerprint's moments all lie in [0, 1)).
    fn solve(&self, x: f64) -> f64 {
        self.y_at(self.t_for(x.clamp(0.0, 1.0)))
    }

    fn t_for(&self, x: f64) -> f64 {
        let step = 1.0 / 10.0;
        let (mut t0, mut t1, mut t2) = (0.0, 1.0, x);
        for i in 1..self.samples.len() {
            if x <= self.samples[i] {
                t1 = step * i as f64;
                t0 = t1 - step;
                t2 = t0 + (t1 - t0) * (x - self.samples[i - 1]) / (self.samples[i] - self.samples[i - 1]);
                break;
            }
        }
        let mut err = 0.0;
        for _ in 0..4 {
            err = self.x_at(t2) - x;
            if err.abs() < Self::EPSILON {
                return t2;
            }
            let slope = self.dx_at(t2);
            if slope.abs() < Self::EPSILON {
                break;
            }
            t2 -= err / slope;
        }
        if err.abs() < Self::EPSILON {
            return t2;
        }
        // Bounded, unlike the original, so a degenerate curve cannot spin forever.
        for _ in 0..1100 {
            if t0 >= t1 {
                break;
            }
            let at = self.x_at(t2);
            if (at - x).abs() < Self::EPSILON {
                return t2;
            }
            if x > at {
                t0 = t2;
            } else {
                t1 = t2;
            }
            t2 = (t1 + t0) * 0.5;
        }
        t2
    }
}

/// The published vector of a public Rust client (its comment: cross-checked against grok's own
/// generator): a one-curve table and a seed whose bytes pick it.
#[cfg(test)]
pub(super) fn published_vector() -> (Vec<u8>, Curves, BuildIndices) {
    let curves = vec![vec![[219.0, 4.0, 240.0, 196.0, 212.0, 140.0, 153.0, 210.0, 204.0, 247.0, 242.0]]];
    let mut seed = vec![0u8; 48];
    seed[2..5].copy_from_slice(&[3, 5, 7]);
    for (i, b) in seed.iter_mut().enumerate().skip(5) {
        *b = i as u8;
    }
    (seed, curves, BuildIndices { group: 0, segment: 1, ct: [2, 3, 4] })
}

#[cfg(test)]
mod tests {
    use crate::upstream::grok_web::statsig::fingerprint::*;
    use crate::upstream::grok_web::statsig::{EPOCH, mint};

    #[test]
    fn the_published_fingerprint_and_token_are_reproduced() {
        let (seed, curves, idx) = published_vector();
        let l = fingerprint(&seed, &curves, &idx).unwrap();
        assert_eq!(l, "db8ee10147ae147ae147b0147ae147ae147b100");
        assert_eq!(
            mint(&seed, "POST", "/rest/x", EPOCH + 42_000_000, 99, &l),
            "Y2NjYGZkZmVka2ppaG9ubWxzcnFwd3Z1dHt6eXh/fn18Q0JBQEdGRURLSklIT05NTOO942FVpSTMZ29NGYcuCxeTOirDYA"
        );
        // An index past the seed gives no fingerprint rather than a wrong one.
        assert_eq!(fingerprint(&seed, &curves, &BuildIndices { group: 48, ..idx }), None);
    }

    #[test]
    fn a_second_published_vector_is_reproduced() {
        // A Java client's cross-language test: seed 0..47, a 4 × 16 table, that client's (older
        // build's) positions group 5, curve 2, time 1·20·19; t = 123456, key 37.
        let seed: Vec<u8> = (0..48).collect();
        let curves: Curves = (0..4)
            .map(|g| {
                (0..16)
                    .map(|c| {
                        [10.0 + g as f64, 20.0, 30.0, 210.0, 220.0, 230.0, 120.0 + c as f64, 80.0, 100.0, 160.0, 200.0]
                    })
                    .collect()
            })
            .collect();
        let l = fingerprint(&seed, &curves, &BuildIndices { group: 5, segment: 2, ct: [1, 20, 19] }).unwrap();
        assert_eq!(
            mint(&seed, "POST", "/rest/app-chat/conversations/new", EPOCH + 123_456, 37, &l),
            "JSUkJyYhICMiLSwvLikoKyo1NDc2MTAzMj08Pz45ODs6BQQHBgEAAwINDA8OCQgLCmXHJCV1hLcfDtt06UKgboUW0R8EJg",
            "fingerprint {l}"
        );
    }

    #[test]
    fn hex_formatting_matches_v8() {
        // `x.toString(16)` as printed by node 20 (V8) on this machine.
        for (x, js) in [
            (0.01, "0.028f5c28f5c28f6"),
            (-0.01, "-0.028f5c28f5c28f6"),
            (0.5, "0.8"),
            (0.87, "0.deb851eb851eb8"),
            (0.07, "0.11eb851eb851ec"),
            (0.99, "0.fd70a3d70a3d7"),
            (0.33, "0.547ae147ae147c"),
            (0.125, "0.2"),
            (1.0 / 3.0, "0.55555555555554"),
            (255.0, "ff"),
            (0.1, "0.1999999999999a"),
            (0.2, "0.33333333333334"),
            (0.3, "0.4ccccccccccccc"),
            (0.7, "0.b333333333333"),
            (0.9, "0.e6666666666668"),
            (0.96, "0.f5c28f5c28f5c"),
            (0.04, "0.0a3d70a3d70a3d8"),
            (0.05, "0.0ccccccccccccd"),
            (0.06, "0.0f5c28f5c28f5c"),
            (0.15, "0.26666666666666"),
            (0.35, "0.59999999999998"),
            (0.45, "0.73333333333334"),
            (0.55, "0.8cccccccccccd"),
            (0.65, "0.a6666666666668"),
            (0.75, "0.c"),
            (0.85, "0.d9999999999998"),
            (0.95, "0.f333333333333"),
            (0.29, "0.4a3d70a3d70a3c"),
            (0.58, "0.947ae147ae1478"),
            (1.5, "1.8"),
            (4.35, "4.5999999999998"),
            (123.456, "7b.74bc6a7ef9dc"),
            (2f64.powi(-30), "0.00000004"),
            (1e21, "3635c9adc5dea00000"),
            (2f64.powi(60) + 256.0, "1000000000000100"),
            (0.0, "0"),
            (-0.0, "0"),
        ] {
            assert_eq!(js_hex(x), js, "({x}).toString(16)");
        }
        // Tiny values: hundreds of leading zeros (lengths as node prints them).
        assert!(js_hex(1e-300).ends_with("ab70fe17c79ac8") && js_hex(1e-300).len() == 265);
        assert!(js_hex(5e-324).ends_with("00004") && js_hex(5e-324).len() == 271);
    }

    #[test]
    fn to_fixed_rounds_the_exact_decimal_value_like_js() {
        // `Number(x.toFixed(2))` per node: exact ties go away from zero, near-ties by their true value.
        for (x, js) in [
            (1.005, 1.0),
            (0.125, 0.13),
            (-0.125, -0.13),
            (0.375, 0.38),
            (2.675, 2.67),
            (1.045, 1.04),
            (-1.005, -1.0),
            (0.615, 0.61),
            (0.0049999, 0.0),
            (0.8235294117647058, 0.82),
            (219.0, 219.0),
        ] {
            assert_eq!(js_round2(x), js, "({x}).toFixed(2)");
        }
        assert_eq!(js_hex(js_round2(-0.001)), "0");
    }

    #[test]
    fn the_easing_follows_the_browsers_solver() {
        // Linear, and the CSS keywords at known points (ease at 0.5 ≈ 0.8024033877399112).
        let linear = UnitBezier::new(0.0, 0.0, 1.0, 1.0);
        assert!((linear.solve(0.3) - 0.3).abs() < 1e-6);
        let ease = UnitBezier::new(0.25, 0.1, 0.25, 1.0);
        assert!((ease.solve(0.5) - 0.802_403_387_7).abs() < 1e-6);
        assert_eq!(ease.solve(0.0), 0.0);
        // Control points with y outside [0, 1] overshoot, which the colour clamp has to absorb.
        let back = UnitBezier::new(0.6, -0.28, 0.73, 0.04);
        assert!(back.solve(0.2) < 0.0);
    }
}
