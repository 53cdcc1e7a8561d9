//! Scalar element conversions. They are the exact contract (see the crate docs) and are used for
//! the tails the SIMD loops leave, and as the whole kernel on builds without simd128.
//!
//! Every function here is written with plain integer/f32 operations so that it matches the SIMD
//! lanes in `simd.rs` operation for operation.

/// Canonical NaNs of each format. wasm leaves the sign and payload of an arithmetic NaN open,
/// so every NaN leaving a kernel is replaced by these.
pub const F32_NAN: u32 = 0x7FC0_0000;
pub const BF16_NAN: u16 = 0x7FC0;
pub const F16_NAN: u16 = 0x7E00;
pub const E4M3_NAN: u8 = 0x7F;
/// e4m3fn's largest finite value, 448, as code and as f32 bits.
pub const E4M3_MAX_CODE: u8 = 0x7E;
pub const F32_448_BITS: u32 = 0x43E0_0000;

/// f32(1e-4): the smallest amax used for a fresh FP8 scale.
pub const FP8_MIN_AMAX: f32 = 1e-4;
pub const FP8_MAX: f32 = 448.0;

#[inline(always)]
pub fn bf16_to_f32(h: u16) -> f32 {
    f32::from_bits((h as u32) << 16)
}

/// IEEE half to f32, exact. Subnormal halves go through one exact f32 subtraction.
#[inline(always)]
pub fn f16_to_f32(h: u16) -> f32 {
    let h = h as u32;
    let sign = (h & 0x8000) << 16;
    let em = h & 0x7FFF;
    let o = em << 13;
    let bits = if em >= 0x7C00 {
        o.wrapping_add(224 << 23) // inf / NaN: exponent 31 -> 255, payload kept
    } else if em < 0x0400 {
        // zero / subnormal: (2^-14 + m·2^-24) - 2^-14, exact
        (f32::from_bits(o + (113 << 23)) - f32::from_bits(113 << 23)).to_bits()
    } else {
        o + (112 << 23)
    };
    f32::from_bits(bits | sign)
}

/// e4m3fn code to f32, exact (0x7F / 0xFF are NaN).
#[inline(always)]
pub fn e4m3_to_f32(c: u8) -> f32 {
    let c = c as u32;
    let sign = (c & 0x80) << 24;
    let em = c & 0x7F;
    let o = em << 20;
    let bits = if em == 0x7F {
        F32_NAN
    } else if em < 0x08 {
        // zero / subnormal: (2^-6 + m·2^-9) - 2^-6, exact
        (f32::from_bits(o + (121 << 23)) - f32::from_bits(121 << 23)).to_bits()
    } else {
        o + (120 << 23)
    };
    f32::from_bits(bits | sign)
}

/// f32 to bf16, round to nearest even; NaN -> 0x7FC0.
#[inline(always)]
pub fn f32_to_bf16(x: f32) -> u16 {
    let b = x.to_bits();
    if (b & 0x7FFF_FFFF) > 0x7F80_0000 {
        return BF16_NAN;
    }
    (b.wrapping_add(0x7FFF + ((b >> 16) & 1)) >> 16) as u16
}

/// f32 to IEEE half, round to nearest even, overflow to ±inf, subnormals exact; NaN -> 0x7E00.
#[inline(always)]
pub fn f32_to_f16(x: f32) -> u16 {
    let b = x.to_bits();
    let sign = (b >> 16) & 0x8000;
    let a = b & 0x7FFF_FFFF;
    if a > 0x7F80_0000 {
        return F16_NAN;
    }
    let o = if a >= (143 << 23) {
        0x7C00 // |x| >= 65536 (and inf): infinity
    } else if a < (113 << 23) {
        // |x| < 2^-14: add 0.5 so the f32 adder rounds at the half-subnormal quantum 2^-24
        (f32::from_bits(a) + f32::from_bits(126 << 23)).to_bits() - (126 << 23)
    } else {
        (a - (112 << 23) + 0xFFF + ((a >> 13) & 1)) >> 13
    };
    (o | sign) as u16
}

/// f32 to e4m3fn, round to nearest even, saturating at ±448; NaN -> 0x7F; -0 -> 0x80.
#[inline(always)]
pub fn f32_to_e4m3(x: f32) -> u8 {
    let b = x.to_bits();
    let sign = (b >> 24) & 0x80;
    let a = b & 0x7FFF_FFFF;
    if a > 0x7F80_0000 {
        return E4M3_NAN;
    }
    let o = if a >= F32_448_BITS {
        E4M3_MAX_CODE as u32
    } else if a < (121 << 23) {
        // |x| < 2^-6: add 2^14 so the f32 adder rounds at the subnormal quantum 2^-9
        (f32::from_bits(a) + f32::from_bits(141 << 23)).to_bits() - (141 << 23)
    } else {
        (a - (120 << 23) + 0x7FFFF + ((a >> 20) & 1)) >> 20
    };
    (o | sign) as u8
}

#[inline(always)]
pub fn canon_f32(x: f32) -> f32 {
    if x.is_nan() {
        f32::from_bits(F32_NAN)
    } else {
        x
    }
}

/// The fresh FP8 scale of a block: f32(max(amax, f32(1e-4)) / 448).
#[inline(always)]
pub fn fp8_scale(amax: f32) -> f32 {
    let m = if amax > FP8_MIN_AMAX { amax } else { FP8_MIN_AMAX };
    m / FP8_MAX
}

/// E2M1 (FP4) magnitudes by code (bit 3 is the sign): MXFP4's and the OCP MX spec's table.
pub const E2M1: [f32; 8] = [0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0];

/// E2M1 code (4 bits) to f32, exact; bit 3 is the sign (so 0x8 is -0).
#[inline(always)]
pub fn e2m1_to_f32(c: u8) -> f32 {
    let m = E2M1[(c & 7) as usize];
    if c & 8 != 0 {
        -m
    } else {
        m
    }
}

/// Nearest E2M1 code to x (x already divided by its block scale), ties to the even code,
/// saturating at ±6. The caller has excluded NaN.
#[inline(always)]
pub fn f64_to_e2m1(x: f64) -> u8 {
    let sign: u8 = if x < 0.0 || (x == 0.0 && x.is_sign_negative()) { 8 } else { 0 };
    let m = x.abs();
    // Midpoints between neighbouring magnitudes; at a midpoint the even code wins.
    let code = if m <= 0.25 {
        0
    } else if m < 0.75 {
        1
    } else if m <= 1.25 {
        2
    } else if m < 1.75 {
        3
    } else if m <= 2.5 {
        4
    } else if m < 3.5 {
        5
    } else if m <= 5.0 {
        6
    } else {
        7
    };
    sign | code
}

/// 2^(e - 127) for an E8M0 scale byte, as f64 (exact; 0xFF gives 2^128, as ldexp does).
#[inline(always)]
pub fn e8m0_to_f64(e: u8) -> f64 {
    f64::from_bits(((e as u64) + 1023 - 127) << 52)
}

/// floor(log2(a)) of a finite a > 0 (f32 subnormals included).
#[inline(always)]
pub fn ilog2_f32(a: f32) -> i32 {
    let b = a.to_bits() & 0x7FFF_FFFF;
    let e = (b >> 23) as i32;
    if e > 0 {
        e - 127
    } else {
        // subnormal: value = m · 2^-149
        let m = b & 0x7F_FFFF;
        31 - (m.leading_zeros() as i32) - 149
    }
}
