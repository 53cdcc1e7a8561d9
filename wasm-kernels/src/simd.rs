//! SIMD128 loops. Each function processes a prefix of its range and returns how many elements it
//! handled; the caller finishes the tail with the scalar code in `scalar.rs`. Every lane does
//! exactly the operations of the scalar code (no fused multiply-add exists in simd128, and the
//! integer rounding tricks are the same), so the split point never changes a result bit.

use core::arch::wasm32::*;

use crate::scalar::{E4M3_MAX_CODE, E4M3_NAN, F16_NAN, F32_448_BITS, F32_NAN};

#[inline(always)]
unsafe fn ld(p: *const u8) -> v128 {
    v128_load(p as *const v128)
}

#[inline(always)]
unsafe fn st(p: *mut u8, v: v128) {
    v128_store(p as *mut v128, v)
}

#[inline(always)]
fn splat(x: u32) -> v128 {
    u32x4_splat(x)
}

// ---------------------------------------------------------------------------------------------
// Decoding to f32 lanes.

/// 8 bf16 values -> two f32x4 (low four, high four).
#[inline(always)]
fn bf16x8_to_f32(v: v128) -> (v128, v128) {
    // Widen and shift rather than a two-source shuffle: engines lower those to several instructions.
    (i32x4_shl(u32x4_extend_low_u16x8(v), 16), i32x4_shl(u32x4_extend_high_u16x8(v), 16))
}

/// Two f32x4 of rounded bf16 bits (in the high halves) -> eight bf16.
#[inline(always)]
fn bf16_pack(a: v128, b: v128) -> v128 {
    u16x8_narrow_i32x4(u32x4_shr(a, 16), u32x4_shr(b, 16))
}

/// u32 lanes each holding a half in the low 16 bits -> f32 lanes (see scalar::f16_to_f32).
#[inline(always)]
fn f16_lanes_to_f32(h: v128) -> v128 {
    let em = v128_and(h, splat(0x7FFF));
    let sign = i32x4_shl(v128_and(h, splat(0x8000)), 16);
    let o = i32x4_shl(em, 13);
    let normal = i32x4_add(o, splat(112 << 23));
    let infnan = i32x4_add(o, splat(224 << 23));
    let sub = f32x4_sub(i32x4_add(o, splat(113 << 23)), splat(113 << 23));
    let is_infnan = i32x4_ge(em, splat(0x7C00));
    let is_sub = i32x4_lt(em, splat(0x0400));
    let r = v128_bitselect(infnan, v128_bitselect(sub, normal, is_sub), is_infnan);
    v128_or(r, sign)
}

#[inline(always)]
fn f16x8_to_f32(v: v128) -> (v128, v128) {
    (
        f16_lanes_to_f32(u32x4_extend_low_u16x8(v)),
        f16_lanes_to_f32(u32x4_extend_high_u16x8(v)),
    )
}

/// 16 e4m3 codes -> four f32x4 (see scalar::e4m3_to_f32). Every e4m3fn value is a bf16 value, so
/// each code's bf16 is built bytewise on all 16 lanes at once, then widened like bf16: the low byte
/// is the code's low nibble (exponent LSB, mantissa) shifted up; the high byte is the sign and
/// 60 + (exponent >> 1) (bias 127 − 7 = 120, halved); zero and the subnormals (exponent 0) come
/// from a table by mantissa (m · 2^−9), and 0x7F is NaN.
#[inline(always)]
fn e4m3x16_to_f32(c: v128) -> [v128; 4] {
    const SUB_HI: v128 = u8x16(0x00, 0x3B, 0x3B, 0x3B, 0x3C, 0x3C, 0x3C, 0x3C, 0, 0, 0, 0, 0, 0, 0, 0);
    const SUB_LO: v128 = u8x16(0x00, 0x00, 0x80, 0xC0, 0x00, 0x20, 0x40, 0x60, 0, 0, 0, 0, 0, 0, 0, 0);
    let sign = v128_and(c, u8x16_splat(0x80));
    let is_sub = i8x16_eq(v128_and(c, u8x16_splat(0x78)), u8x16_splat(0));
    let is_nan = i8x16_eq(v128_and(c, u8x16_splat(0x7F)), u8x16_splat(0x7F));
    let m = v128_and(c, u8x16_splat(0x07));
    let hi_norm = u8x16_add(u8x16_shr(v128_and(c, u8x16_splat(0x70)), 4), u8x16_splat(60));
    let lo_norm = i8x16_shl(c, 4);
    let hi = v128_bitselect(i8x16_swizzle(SUB_HI, m), hi_norm, is_sub);
    let lo = v128_bitselect(i8x16_swizzle(SUB_LO, m), lo_norm, is_sub);
    let hi = v128_or(v128_bitselect(u8x16_splat(0x7F), hi, is_nan), sign);
    let lo = v128_bitselect(u8x16_splat(0xC0), lo, is_nan);
    let b0 = i8x16_shuffle::<0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23>(lo, hi);
    let b1 = i8x16_shuffle::<8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31>(lo, hi);
    let (f0, f1) = bf16x8_to_f32(b0);
    let (f2, f3) = bf16x8_to_f32(b1);
    [f0, f1, f2, f3]
}

#[inline(always)]
fn canon(x: v128) -> v128 {
    v128_bitselect(splat(F32_NAN), x, f32x4_ne(x, x))
}

pub unsafe fn decode_bf16(src: *const u16, dst: *mut f32, n: usize) -> usize {
    let mut i = 0;
    while i + 8 <= n {
        let (lo, hi) = bf16x8_to_f32(ld(src.add(i) as *const u8));
        st(dst.add(i) as *mut u8, lo);
        st(dst.add(i + 4) as *mut u8, hi);
        i += 8;
    }
    i
}

pub unsafe fn decode_f16(src: *const u16, dst: *mut f32, n: usize) -> usize {
    let mut i = 0;
    while i + 8 <= n {
        let (lo, hi) = f16x8_to_f32(ld(src.add(i) as *const u8));
        st(dst.add(i) as *mut u8, lo);
        st(dst.add(i + 4) as *mut u8, hi);
        i += 8;
    }
    i
}

/// dst = decode(src) * scale (one f32 multiply).
pub unsafe fn decode_e4m3_scaled(src: *const u8, dst: *mut f32, n: usize, scale: f32) -> usize {
    let s = f32x4_splat(scale);
    let mut i = 0;
    while i + 16 <= n {
        let x = e4m3x16_to_f32(ld(src.add(i)));
        let mut k = 0;
        while k < 4 {
            st(dst.add(i + 4 * k) as *mut u8, f32x4_mul(x[k], s));
            k += 1;
        }
        i += 16;
    }
    i
}

/// In place: NaN -> canonical NaN.
pub unsafe fn canonicalize(p: *mut f32, n: usize) -> usize {
    let mut i = 0;
    while i + 4 <= n {
        let q = p.add(i) as *mut u8;
        st(q, canon(ld(q)));
        i += 4;
    }
    i
}

pub unsafe fn fill_zero(p: *mut f32, n: usize) -> usize {
    let z = u32x4_splat(0);
    let mut i = 0;
    while i + 4 <= n {
        st(p.add(i) as *mut u8, z);
        i += 4;
    }
    i
}

// ---------------------------------------------------------------------------------------------
// Accumulation: acc = acc + w * x, one f32 rounding for the product and one for the sum.
// With INIT the old acc is taken to be +0 and not read (the first input of a mix).

#[inline(always)]
unsafe fn axpy4<const INIT: bool>(acc: *mut f32, w: v128, x: v128) {
    let p = acc as *mut u8;
    let old = if INIT { f32x4_splat(0.0) } else { ld(p) };
    st(p, f32x4_add(old, f32x4_mul(w, x)));
}

pub unsafe fn accum_f32<const INIT: bool>(acc: *mut f32, src: *const f32, n: usize, w: f32) -> usize {
    let wv = f32x4_splat(w);
    let mut i = 0;
    while i + 8 <= n {
        axpy4::<INIT>(acc.add(i), wv, ld(src.add(i) as *const u8));
        axpy4::<INIT>(acc.add(i + 4), wv, ld(src.add(i + 4) as *const u8));
        i += 8;
    }
    i
}

pub unsafe fn accum_bf16<const INIT: bool>(acc: *mut f32, src: *const u16, n: usize, w: f32) -> usize {
    let wv = f32x4_splat(w);
    let mut i = 0;
    while i + 8 <= n {
        let (lo, hi) = bf16x8_to_f32(ld(src.add(i) as *const u8));
        axpy4::<INIT>(acc.add(i), wv, lo);
        axpy4::<INIT>(acc.add(i + 4), wv, hi);
        i += 8;
    }
    i
}

pub unsafe fn accum_f16<const INIT: bool>(acc: *mut f32, src: *const u16, n: usize, w: f32) -> usize {
    let wv = f32x4_splat(w);
    let mut i = 0;
    while i + 8 <= n {
        let (lo, hi) = f16x8_to_f32(ld(src.add(i) as *const u8));
        axpy4::<INIT>(acc.add(i), wv, lo);
        axpy4::<INIT>(acc.add(i + 4), wv, hi);
        i += 8;
    }
    i
}

/// acc = acc + w * (decode(src) * scale).
pub unsafe fn accum_e4m3<const INIT: bool>(acc: *mut f32, src: *const u8, n: usize, scale: f32, w: f32) -> usize {
    let wv = f32x4_splat(w);
    let s = f32x4_splat(scale);
    let mut i = 0;
    while i + 16 <= n {
        let x = e4m3x16_to_f32(ld(src.add(i)));
        let mut k = 0;
        while k < 4 {
            axpy4::<INIT>(acc.add(i + 4 * k), wv, f32x4_mul(x[k], s));
            k += 1;
        }
        i += 16;
    }
    i
}

// ---------------------------------------------------------------------------------------------
// Encoding f32 lanes.

/// f32 lanes -> u32 lanes whose high 16 bits are the bf16 (see scalar::f32_to_bf16).
#[inline(always)]
fn bf16_round(x: v128) -> v128 {
    let nan = f32x4_ne(x, x);
    let odd = v128_and(u32x4_shr(x, 16), splat(1));
    let r = i32x4_add(i32x4_add(x, splat(0x7FFF)), odd);
    v128_bitselect(splat(F32_NAN), r, nan)
}

/// f32 lanes -> u32 lanes holding the half (see scalar::f32_to_f16).
#[inline(always)]
fn f16_round(x: v128) -> v128 {
    let a = v128_and(x, splat(0x7FFF_FFFF));
    let sign = v128_and(u32x4_shr(x, 16), splat(0x8000));
    let nan = i32x4_gt(a, splat(0x7F80_0000));
    let big = i32x4_ge(a, splat(143 << 23));
    let small = i32x4_lt(a, splat(113 << 23));
    let sub = i32x4_sub(f32x4_add(a, splat(126 << 23)), splat(126 << 23));
    let odd = v128_and(u32x4_shr(a, 13), splat(1));
    let norm = u32x4_shr(i32x4_add(i32x4_add(i32x4_sub(a, splat(112 << 23)), splat(0xFFF)), odd), 13);
    let o = v128_or(v128_bitselect(splat(0x7C00), v128_bitselect(sub, norm, small), big), sign);
    v128_bitselect(splat(F16_NAN as u32), o, nan)
}

/// f32 lanes -> (u32 lanes holding the e4m3fn code, NaN mask) (see scalar::f32_to_e4m3).
#[inline(always)]
fn e4m3_round(x: v128) -> (v128, v128) {
    let a = v128_and(x, splat(0x7FFF_FFFF));
    let sign = v128_and(u32x4_shr(x, 24), splat(0x80));
    let nan = i32x4_gt(a, splat(0x7F80_0000));
    let sat = i32x4_ge(a, splat(F32_448_BITS));
    let small = i32x4_lt(a, splat(121 << 23));
    let sub = i32x4_sub(f32x4_add(a, splat(141 << 23)), splat(141 << 23));
    let odd = v128_and(u32x4_shr(a, 20), splat(1));
    let norm = u32x4_shr(i32x4_add(i32x4_add(i32x4_sub(a, splat(120 << 23)), splat(0x7FFFF)), odd), 20);
    let o = v128_or(v128_bitselect(splat(E4M3_MAX_CODE as u32), v128_bitselect(sub, norm, small), sat), sign);
    (v128_bitselect(splat(E4M3_NAN as u32), o, nan), nan)
}

pub unsafe fn encode_bf16(src: *const f32, dst: *mut u16, n: usize) -> usize {
    let mut i = 0;
    while i + 8 <= n {
        let a = bf16_round(ld(src.add(i) as *const u8));
        let b = bf16_round(ld(src.add(i + 4) as *const u8));
        st(dst.add(i) as *mut u8, bf16_pack(a, b));
        i += 8;
    }
    i
}

pub unsafe fn encode_f16(src: *const f32, dst: *mut u16, n: usize) -> usize {
    let mut i = 0;
    while i + 8 <= n {
        let a = f16_round(ld(src.add(i) as *const u8));
        let b = f16_round(ld(src.add(i + 4) as *const u8));
        st(dst.add(i) as *mut u8, u16x8_narrow_i32x4(a, b));
        i += 8;
    }
    i
}

pub unsafe fn encode_f32(src: *const f32, dst: *mut f32, n: usize) -> usize {
    let mut i = 0;
    while i + 4 <= n {
        st(dst.add(i) as *mut u8, canon(ld(src.add(i) as *const u8)));
        i += 4;
    }
    i
}

/// codes = e4m3fn(f32(src / scale)); adds the number of NaN codes to `nans`.
pub unsafe fn encode_e4m3(src: *const f32, dst: *mut u8, n: usize, scale: f32, nans: &mut u32) -> usize {
    let s = f32x4_splat(scale);
    let mut cnt = u32x4_splat(0);
    let mut i = 0;
    while i + 16 <= n {
        let (c0, m0) = e4m3_round(f32x4_div(ld(src.add(i) as *const u8), s));
        let (c1, m1) = e4m3_round(f32x4_div(ld(src.add(i + 4) as *const u8), s));
        let (c2, m2) = e4m3_round(f32x4_div(ld(src.add(i + 8) as *const u8), s));
        let (c3, m3) = e4m3_round(f32x4_div(ld(src.add(i + 12) as *const u8), s));
        cnt = i32x4_sub(cnt, i32x4_add(i32x4_add(m0, m1), i32x4_add(m2, m3)));
        let lo = i16x8_narrow_i32x4(c0, c1);
        let hi = i16x8_narrow_i32x4(c2, c3);
        st(dst.add(i), u8x16_narrow_i16x8(lo, hi));
        i += 16;
    }
    *nans += u32x4_extract_lane::<0>(cnt)
        + u32x4_extract_lane::<1>(cnt)
        + u32x4_extract_lane::<2>(cnt)
        + u32x4_extract_lane::<3>(cnt);
    i
}

/// Largest |x| over the prefix, NaN ignored, starting from `m` (never NaN).
pub unsafe fn amax(src: *const f32, n: usize, m: &mut f32) -> usize {
    let mut a0 = f32x4_splat(*m);
    let mut a1 = a0;
    let mut i = 0;
    // pmax(acc, v) = acc < v ? v : acc, so a NaN v leaves acc as it was.
    while i + 8 <= n {
        a0 = f32x4_pmax(a0, f32x4_abs(ld(src.add(i) as *const u8)));
        a1 = f32x4_pmax(a1, f32x4_abs(ld(src.add(i + 4) as *const u8)));
        i += 8;
    }
    let a = f32x4_pmax(a0, a1);
    let mut r = *m;
    let lanes = [
        f32x4_extract_lane::<0>(a),
        f32x4_extract_lane::<1>(a),
        f32x4_extract_lane::<2>(a),
        f32x4_extract_lane::<3>(a),
    ];
    for v in lanes {
        if v > r {
            r = v;
        }
    }
    *m = r;
    i
}

// ---------------------------------------------------------------------------------------------
// Difference statistics in f64x2.

pub struct StatsAcc {
    nonfinite: v128,
    ssd: v128,
    ssa: v128,
    ssb: v128,
    dot: v128,
    maxd: v128,
}

impl StatsAcc {
    pub fn new() -> Self {
        let z = f64x2_splat(0.0);
        StatsAcc { nonfinite: u32x4_splat(0), ssd: z, ssa: z, ssb: z, dot: z, maxd: z }
    }

    #[inline(always)]
    fn pair(&mut self, a: v128, b: v128) {
        let d = f64x2_sub(b, a);
        self.ssd = f64x2_add(self.ssd, f64x2_mul(d, d));
        self.ssa = f64x2_add(self.ssa, f64x2_mul(a, a));
        self.ssb = f64x2_add(self.ssb, f64x2_mul(b, b));
        self.dot = f64x2_add(self.dot, f64x2_mul(a, b));
        self.maxd = f64x2_pmax(self.maxd, f64x2_abs(d));
    }

    /// Processes a prefix of the two f32 arrays; returns its length.
    pub unsafe fn run(&mut self, a: *const f32, b: *const f32, n: usize) -> usize {
        let inf = f32x4_splat(f32::INFINITY);
        let mut i = 0;
        while i + 4 <= n {
            let va = ld(a.add(i) as *const u8);
            let vb = ld(b.add(i) as *const u8);
            let ok = v128_and(f32x4_lt(f32x4_abs(va), inf), f32x4_lt(f32x4_abs(vb), inf));
            // ok lanes are all ones: subtracting !ok (-1 where not finite) counts the others.
            self.nonfinite = i32x4_sub(self.nonfinite, v128_not(ok));
            let va = v128_and(va, ok);
            let vb = v128_and(vb, ok);
            self.pair(f64x2_promote_low_f32x4(va), f64x2_promote_low_f32x4(vb));
            let ha = i8x16_shuffle::<8, 9, 10, 11, 12, 13, 14, 15, 0, 1, 2, 3, 4, 5, 6, 7>(va, va);
            let hb = i8x16_shuffle::<8, 9, 10, 11, 12, 13, 14, 15, 0, 1, 2, 3, 4, 5, 6, 7>(vb, vb);
            self.pair(f64x2_promote_low_f32x4(ha), f64x2_promote_low_f32x4(hb));
            i += 4;
        }
        i
    }

    /// Lane counts may wrap after 2^32 elements per lane; callers flush per tile.
    pub fn take_nonfinite(&mut self) -> u64 {
        let c = self.nonfinite;
        self.nonfinite = u32x4_splat(0);
        u32x4_extract_lane::<0>(c) as u64
            + u32x4_extract_lane::<1>(c) as u64
            + u32x4_extract_lane::<2>(c) as u64
            + u32x4_extract_lane::<3>(c) as u64
    }

    /// [sumSqDiff, sumSqA, sumSqB, dot, maxAbsDiff], lanes added low then high.
    pub fn finish(&self) -> [f64; 5] {
        let sum = |v: v128| f64x2_extract_lane::<0>(v) + f64x2_extract_lane::<1>(v);
        let m0 = f64x2_extract_lane::<0>(self.maxd);
        let m1 = f64x2_extract_lane::<1>(self.maxd);
        [sum(self.ssd), sum(self.ssa), sum(self.ssb), sum(self.dot), if m1 > m0 { m1 } else { m0 }]
    }
}

// ---------------------------------------------------------------------------------------------
// Fused mixing of two BF16 inputs into BF16 (the commonest merge): the accumulator stays in
// registers; every lane does the scalar steps (+0 + w_a·a, then + w_b·b, then round).

pub unsafe fn mix2_bf16(a: *const u16, wa: f32, b: *const u16, wb: f32, out: *mut u16, n: usize) -> usize {
    let wav = f32x4_splat(wa);
    let wbv = f32x4_splat(wb);
    let zero = f32x4_splat(0.0);
    let high = splat(0xFFFF_0000);
    let lane = |x: v128, y: v128| f32x4_add(f32x4_add(zero, f32x4_mul(wav, x)), f32x4_mul(wbv, y));
    // Eight bf16 seen as four u32 lanes: the even values are the low halves (shifted up, they are
    // their f32), the odd values the high halves (masked, likewise). Mixed in that order and put
    // back the same way, which costs fewer instructions than widening and narrowing.
    let mix8 = |va: v128, vb: v128| {
        let even = bf16_round(lane(i32x4_shl(va, 16), i32x4_shl(vb, 16)));
        let odd = bf16_round(lane(v128_and(va, high), v128_and(vb, high)));
        v128_or(u32x4_shr(even, 16), v128_and(odd, high))
    };
    let mut i = 0;
    // Sixteen values per turn: two independent chains keep more of the engine's SIMD units busy.
    while i + 16 <= n {
        let r0 = mix8(ld(a.add(i) as *const u8), ld(b.add(i) as *const u8));
        let r1 = mix8(ld(a.add(i + 8) as *const u8), ld(b.add(i + 8) as *const u8));
        st(out.add(i) as *mut u8, r0);
        st(out.add(i + 8) as *mut u8, r1);
        i += 16;
    }
    while i + 8 <= n {
        st(out.add(i) as *mut u8, mix8(ld(a.add(i) as *const u8), ld(b.add(i) as *const u8)));
        i += 8;
    }
    i
}
