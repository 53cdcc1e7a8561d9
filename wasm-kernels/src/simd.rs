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

/// 16 e4m3fn codes -> four f32x4 of "raw" values: each code's value times 2^-120, exactly, with
/// NaN codes (0x7F, 0xFF) as NaN. A code in the top byte of a 32-bit lane, shifted arithmetically
/// down by 4, has its exponent and mantissa fields on f32's low exponent bits and top mantissa
/// bits and its sign on bit 31 (bits 27-30 get copies of the sign, cleared by a mask): an f32 of
/// exponent e - 127 where the code means e - 7, so 2^-120 times the code's value; the subnormal
/// codes (exponent 0) land on f32 subnormals of the same mantissa, which wasm computes exactly.
/// `e4m3_factor` turns raw values into decode(code) * scale with the scalar code's single rounding.
#[inline(always)]
fn e4m3x16_raw(c: v128) -> [v128; 4] {
    // Decoded by byte position with shifts, then transposed back to place with unpacks (see
    // `e4m3x16_raw_by_pos`): fewer instructions than widening bytes, which engines do with shuffles
    // whose masks are rebuilt on every use.
    let (mut r, nan) = e4m3x16_raw_by_pos(c);
    if v128_any_true(nan) {
        e4m3_nan_by_pos(&mut r, nan);
    }
    let t0 = i32x4_shuffle::<0, 4, 1, 5>(r[0], r[1]);
    let t1 = i32x4_shuffle::<0, 4, 1, 5>(r[2], r[3]);
    let t2 = i32x4_shuffle::<2, 6, 3, 7>(r[0], r[1]);
    let t3 = i32x4_shuffle::<2, 6, 3, 7>(r[2], r[3]);
    [i64x2_shuffle::<0, 2>(t0, t1), i64x2_shuffle::<1, 3>(t0, t1), i64x2_shuffle::<0, 2>(t2, t3), i64x2_shuffle::<1, 3>(t2, t3)]
}

/// The one factor f with raw * f = decode(code) * scale in a single rounding (raw as made by
/// `e4m3x16_raw`), when there is one: scale * 2^120 where that is exact (|scale| < 2^8; NaN too,
/// as decode * NaN is NaN), scale itself where it is infinite (raw and the decoded value are zero
/// together and share signs). Otherwise None: raw * 2^120 (exact, the decoded value), then * scale.
#[inline(always)]
pub fn e4m3_factor(scale: f32) -> Option<f32> {
    if !(scale.abs() >= 256.0) {
        Some(scale * f32::from_bits((127 + 120) << 23))
    } else if !scale.is_finite() {
        Some(scale)
    } else {
        None
    }
}

/// Raw e4m3 lanes times the scale, as `e4m3_factor` says: with ONE, f is the single factor;
/// without, f is 2^120 and g the scale.
#[inline(always)]
fn e4m3_scaled<const ONE: bool>(raw: v128, f: v128, g: v128) -> v128 {
    if ONE {
        f32x4_mul(raw, f)
    } else {
        f32x4_mul(f32x4_mul(raw, f), g)
    }
}

/// The splatted factors of `e4m3_scaled`, and whether one is enough.
#[inline(always)]
fn e4m3_factors(scale: f32) -> (bool, v128, v128) {
    match e4m3_factor(scale) {
        Some(f) => (true, f32x4_splat(f), f32x4_splat(1.0)),
        None => (false, f32x4_splat(f32::from_bits((127 + 120) << 23)), f32x4_splat(scale)),
    }
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
    match e4m3_factors(scale) {
        (true, f, g) => decode_e4m3_loop::<true>(src, dst, n, f, g),
        (false, f, g) => decode_e4m3_loop::<false>(src, dst, n, f, g),
    }
}

#[inline(always)]
unsafe fn decode_e4m3_loop<const ONE: bool>(src: *const u8, dst: *mut f32, n: usize, f: v128, g: v128) -> usize {
    let mut i = 0;
    while i + 16 <= n {
        let x = e4m3x16_raw(ld(src.add(i)));
        let mut k = 0;
        while k < 4 {
            st(dst.add(i + 4 * k) as *mut u8, e4m3_scaled::<ONE>(x[k], f, g));
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
    match e4m3_factors(scale) {
        (true, f, g) => accum_e4m3_loop::<INIT, true>(acc, src, n, f, g, w),
        (false, f, g) => accum_e4m3_loop::<INIT, false>(acc, src, n, f, g, w),
    }
}

#[inline(always)]
unsafe fn accum_e4m3_loop<const INIT: bool, const ONE: bool>(acc: *mut f32, src: *const u8, n: usize, f: v128, g: v128, w: f32) -> usize {
    let wv = f32x4_splat(w);
    let mut i = 0;
    while i + 16 <= n {
        let x = e4m3x16_raw(ld(src.add(i)));
        let mut k = 0;
        while k < 4 {
            axpy4::<INIT>(acc.add(i + 4 * k), wv, e4m3_scaled::<ONE>(x[k], f, g));
            k += 1;
        }
        i += 16;
    }
    i
}

// ---------------------------------------------------------------------------------------------
// Block-local layout. Where `mix_e4m3` mixes two E4M3 parents, its tile keeps each full group of
// 16 values "by byte position": f32 vector k holds the values at positions k, 4 + k, 8 + k, 12 + k
// of the group, the order in which 16 codes seen as four u32 lanes give them up with plain shifts.
// Decoding and encoding then need no shuffles, which engines lower poorly. Values past the last
// full group keep their places.

/// 16 e4m3fn codes -> four f32x4 of raw values (see `e4m3x16_raw`) by byte position, and a mask
/// of the NaN codes' bytes (all ones).
#[inline(always)]
fn e4m3x16_raw_by_pos(c: v128) -> ([v128; 4], v128) {
    let m = splat(0x87F0_0000);
    // Code k of each lane shifted to the top byte, then arithmetically down by 4: the fields at
    // bits 20-26 and the sign on bit 31 (its copies on bits 27-30 are masked off).
    let r = [
        v128_and(i32x4_shr(i32x4_shl(c, 24), 4), m),
        v128_and(i32x4_shr(i32x4_shl(c, 16), 4), m),
        v128_and(i32x4_shr(i32x4_shl(c, 8), 4), m),
        v128_and(i32x4_shr(c, 4), m),
    ];
    (r, i8x16_eq(v128_or(c, u8x16_splat(0x80)), u8x16_splat(0xFF)))
}

/// Sets the lanes whose code was NaN (mask from `e4m3x16_raw_by_pos`) to all ones, a NaN.
#[inline(always)]
fn e4m3_nan_by_pos(r: &mut [v128; 4], nan: v128) {
    r[0] = v128_or(r[0], i32x4_shr(i32x4_shl(nan, 24), 31));
    r[1] = v128_or(r[1], i32x4_shr(i32x4_shl(nan, 16), 31));
    r[2] = v128_or(r[2], i32x4_shr(i32x4_shl(nan, 8), 31));
    r[3] = v128_or(r[3], i32x4_shr(nan, 31));
}

/// acc (by byte position) = (+0 + wa * (decode(a) * sa)) + wb * (decode(b) * sb) for two E4M3
/// runs inside one block of each, where fa and fb are the single factors of sa and sb (see
/// `e4m3_factor`); m = the largest bit pattern of |acc| seen (see `amax_bits`), so the block's
/// scale needs no second pass.
pub unsafe fn mix2_e4m3_by_pos(a: *const u8, fa: f32, wa: f32, b: *const u8, fb: f32, wb: f32, acc: *mut f32, n: usize, m: &mut u32) -> usize {
    let (fa, fb) = (f32x4_splat(fa), f32x4_splat(fb));
    let (wa, wb) = (f32x4_splat(wa), f32x4_splat(wb));
    let zero = f32x4_splat(0.0);
    let abs = splat(0x7FFF_FFFF);
    let mut mx = splat(*m);
    let mut i = 0;
    while i + 16 <= n {
        let (mut x, nx) = e4m3x16_raw_by_pos(ld(a.add(i)));
        let (mut y, ny) = e4m3x16_raw_by_pos(ld(b.add(i)));
        // NaN codes are rare: their lanes are set only when a group has one.
        if v128_any_true(v128_or(nx, ny)) {
            e4m3_nan_by_pos(&mut x, nx);
            e4m3_nan_by_pos(&mut y, ny);
        }
        let mut k = 0;
        while k < 4 {
            let r = f32x4_add(f32x4_add(zero, f32x4_mul(wa, f32x4_mul(x[k], fa))), f32x4_mul(wb, f32x4_mul(y[k], fb)));
            st(acc.add(i + 4 * k) as *mut u8, r);
            mx = u32x4_max(mx, v128_and(r, abs));
            k += 1;
        }
        i += 16;
    }
    let lanes = [u32x4_extract_lane::<0>(mx), u32x4_extract_lane::<1>(mx), u32x4_extract_lane::<2>(mx), u32x4_extract_lane::<3>(mx)];
    for v in lanes {
        if v > *m {
            *m = v;
        }
    }
    i
}

/// codes = e4m3fn(f32(src / scale)) as `encode_e4m3_no_nan`, from values by byte position.
pub unsafe fn encode_e4m3_no_nan_by_pos(src: *const f32, dst: *mut u8, n: usize, scale: f32) -> usize {
    let s = f32x4_splat(scale);
    let abs = splat(0x7FFF_FFFF);
    let mut i = 0;
    while i + 16 <= n {
        let q0 = f32x4_div(ld(src.add(i) as *const u8), s);
        let q1 = f32x4_div(ld(src.add(i + 4) as *const u8), s);
        let q2 = f32x4_div(ld(src.add(i + 8) as *const u8), s);
        let q3 = f32x4_div(ld(src.add(i + 12) as *const u8), s);
        // Byte k of each u32 lane is code k of it: the signs, from bit 31 of each quotient, first.
        let sign = v128_or(
            v128_or(v128_and(u32x4_shr(q0, 24), splat(0x80)), v128_and(u32x4_shr(q1, 16), splat(0x8000))),
            v128_or(v128_and(u32x4_shr(q2, 8), splat(0x80_0000)), v128_andnot(q3, abs)),
        );
        let c = [
            e4m3_round_no_nan(v128_and(q0, abs)),
            e4m3_round_no_nan(v128_and(q1, abs)),
            e4m3_round_no_nan(v128_and(q2, abs)),
            e4m3_round_no_nan(v128_and(q3, abs)),
        ];
        let mag = v128_or(v128_or(c[0], i32x4_shl(c[1], 8)), v128_or(i32x4_shl(c[2], 16), i32x4_shl(c[3], 24)));
        st(dst.add(i), v128_or(mag, sign));
        i += 16;
    }
    i
}

/// bf16 of values by byte position (see `encode_bf16`), in place: the rounded values at positions
/// 4i + k and 4i + k + 1 share a u32 lane (low, high) for k = 0 and 2, and two unpacks put those
/// lanes in order.
pub unsafe fn encode_bf16_by_pos(src: *const f32, dst: *mut u16, n: usize) -> usize {
    let high = splat(0xFFFF_0000);
    let mut i = 0;
    while i + 16 <= n {
        let r = [
            bf16_round(ld(src.add(i) as *const u8)),
            bf16_round(ld(src.add(i + 4) as *const u8)),
            bf16_round(ld(src.add(i + 8) as *const u8)),
            bf16_round(ld(src.add(i + 12) as *const u8)),
        ];
        let p = v128_or(u32x4_shr(r[0], 16), v128_and(r[1], high));
        let q = v128_or(u32x4_shr(r[2], 16), v128_and(r[3], high));
        st(dst.add(i) as *mut u8, i32x4_shuffle::<0, 4, 1, 5>(p, q));
        st(dst.add(i + 8) as *mut u8, i32x4_shuffle::<2, 6, 3, 7>(p, q));
        i += 16;
    }
    i
}

/// Puts full groups of 16 values by byte position back in their places (before a general path).
pub unsafe fn unpermute_by_pos(p: *mut f32, n: usize) -> usize {
    let mut i = 0;
    while i + 16 <= n {
        let mut g = [0f32; 16];
        for k in 0..4 {
            for l in 0..4 {
                g[4 * l + k] = *p.add(i + 4 * k + l);
            }
        }
        for k in 0..16 {
            *p.add(i + k) = g[k];
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

/// |x| lanes (f32 bits, no NaN) -> u32 lanes holding the e4m3fn code of x's magnitude (see
/// scalar::f32_to_e4m3), normal and subnormal alike with one float add: a is first clamped to 448
/// (the largest code saturates), then m = 2^(e + 20) for a's exponent e, but at least 2^14, so that
/// a + m rounds a to nearest even at e4m3's quantum there (2^(e - 3) for normals, 2^-9 below 2^-6)
/// and the bits of (a + m) - m count those quanta: 8 + mantissa for a normal (16 when it carries),
/// the code itself below 2^-6. The code adds 8 · (e + 6), which is (m >> 20) - 141 · 8 either way.
#[inline(always)]
fn e4m3_round_no_nan(a: v128) -> v128 {
    let a = u32x4_min(a, splat(F32_448_BITS));
    let m = u32x4_max(i32x4_add(v128_and(a, splat(0x7F80_0000)), splat(20 << 23)), splat(141 << 23));
    let quanta = i32x4_sub(f32x4_add(a, m), m);
    i32x4_add(quanta, i32x4_sub(u32x4_shr(m, 20), splat(141 * 8)))
}

/// codes = e4m3fn(f32(src / scale)) where no quotient is NaN (the caller checked: src finite,
/// scale > 0 and not NaN).
pub unsafe fn encode_e4m3_no_nan(src: *const f32, dst: *mut u8, n: usize, scale: f32) -> usize {
    let s = f32x4_splat(scale);
    let abs = splat(0x7FFF_FFFF);
    let mut i = 0;
    while i + 16 <= n {
        let q = [
            f32x4_div(ld(src.add(i) as *const u8), s),
            f32x4_div(ld(src.add(i + 4) as *const u8), s),
            f32x4_div(ld(src.add(i + 8) as *const u8), s),
            f32x4_div(ld(src.add(i + 12) as *const u8), s),
        ];
        let c = [
            e4m3_round_no_nan(v128_and(q[0], abs)),
            e4m3_round_no_nan(v128_and(q[1], abs)),
            e4m3_round_no_nan(v128_and(q[2], abs)),
            e4m3_round_no_nan(v128_and(q[3], abs)),
        ];
        let mag = u8x16_narrow_i16x8(i16x8_narrow_i32x4(c[0], c[1]), i16x8_narrow_i32x4(c[2], c[3]));
        // Signs: each lane's sign spread over it (0 or -1), narrowed to bytes, kept as 0x80.
        let sg = i8x16_narrow_i16x8(
            i16x8_narrow_i32x4(i32x4_shr(q[0], 31), i32x4_shr(q[1], 31)),
            i16x8_narrow_i32x4(i32x4_shr(q[2], 31), i32x4_shr(q[3], 31)),
        );
        st(dst.add(i), v128_or(mag, v128_and(sg, u8x16_splat(0x80))));
        i += 16;
    }
    i
}

/// Largest f32 bit pattern of |x| over the prefix, starting from `m`: for finite values the
/// largest |x|; above 0x7F80_0000 when a NaN is among them.
pub unsafe fn amax_bits(src: *const f32, n: usize, m: &mut u32) -> usize {
    let mask = splat(0x7FFF_FFFF);
    let mut a0 = splat(*m);
    let mut a1 = a0;
    let mut i = 0;
    while i + 8 <= n {
        a0 = u32x4_max(a0, v128_and(ld(src.add(i) as *const u8), mask));
        a1 = u32x4_max(a1, v128_and(ld(src.add(i + 4) as *const u8), mask));
        i += 8;
    }
    let a = u32x4_max(a0, a1);
    let lanes = [u32x4_extract_lane::<0>(a), u32x4_extract_lane::<1>(a), u32x4_extract_lane::<2>(a), u32x4_extract_lane::<3>(a)];
    for v in lanes {
        if v > *m {
            *m = v;
        }
    }
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
