//! MoE Studio kernels: the per-element work of merging checkpoints, as a WebAssembly module with
//! SIMD128 loops and plain `extern "C"` exports (no wasm-bindgen, no imports).
//!
//! The arithmetic is a contract, checked bit for bit against the scalar TypeScript reference in
//! `test/reference/scalar.ts`:
//! - decode: F16/BF16/E4M3 to f32 exactly; E4M3 times its 128×128 block scale (one f32 multiply).
//! - mix: acc = +0; acc = acc + f32(w) * x for each input with w ≠ 0 (no fused multiply-add).
//! - encode: round to nearest even; BF16/F16 overflow to ±inf; NaN becomes the canonical NaN of the
//!   format; E4M3 gets fresh per-block scales f32(max(amax, f32(1e-4)) / 448), codes
//!   e4m3fn(f32(x / s)) saturating at ±448, NaN codes counted.
//! - diff: f64 sums over the pairs where both values are finite.
//! - xxh64: the XXH64 checksum of a byte range (resume journals).
//!
//! Memory: the host allocates buffers with `alloc`/`dealloc` (16-byte aligned), copies inputs in,
//! calls a kernel with pointers and copies results out. Dtype codes: 0 F32, 1 F16, 2 BF16,
//! 3 F8_E4M3.

mod scalar;
#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
mod simd;

#[cfg(all(target_arch = "wasm32", not(target_feature = "simd128")))]
compile_error!("build with RUSTFLAGS=\"-C target-feature=+simd128\" (see scripts/build-kernels.mjs)");

use scalar::*;
use std::alloc::Layout;

const DT_F32: u32 = 0;
const DT_F16: u32 = 1;
const DT_BF16: u32 = 2;
const DT_E4M3: u32 = 3;

/// FP8 block edge.
const BLOCK: usize = 128;
/// Elements per stack tile in `diff`.
const TILE: usize = 1024;

/// Returned by kernels given an unknown dtype code.
const ERR_DTYPE: u32 = u32::MAX;

/// Runs the SIMD prefix of a kernel when built with simd128; evaluates to the count it handled.
macro_rules! simd_prefix {
    ($e:expr) => {{
        #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
        let done: usize = $e;
        #[cfg(not(all(target_arch = "wasm32", target_feature = "simd128")))]
        let done: usize = 0;
        done
    }};
}

#[inline(always)]
fn div_ceil(a: usize, b: usize) -> usize {
    (a + b - 1) / b
}

// ---------------------------------------------------------------------------------------------
// Memory.

/// Version of this ABI; the TypeScript wrapper refuses a module with another.
#[no_mangle]
pub extern "C" fn kernels_abi() -> u32 {
    3
}

/// Allocates `size` bytes, 16-byte aligned; 0 when memory cannot grow.
#[no_mangle]
pub unsafe extern "C" fn alloc(size: usize) -> *mut u8 {
    let size = if size == 0 { 16 } else { size };
    match Layout::from_size_align(size, 16) {
        Ok(layout) => std::alloc::alloc(layout),
        Err(_) => core::ptr::null_mut(),
    }
}

/// Frees a block from `alloc` (same `size`).
#[no_mangle]
pub unsafe extern "C" fn dealloc(ptr: *mut u8, size: usize) {
    if ptr.is_null() {
        return;
    }
    let size = if size == 0 { 16 } else { size };
    std::alloc::dealloc(ptr, Layout::from_size_align_unchecked(size, 16));
}

#[no_mangle]
pub unsafe extern "C" fn fill_zero(p: *mut f32, n: usize) {
    let mut i = simd_prefix!(simd::fill_zero(p, n));
    while i < n {
        *p.add(i) = 0.0;
        i += 1;
    }
}

// ---------------------------------------------------------------------------------------------
// Contiguous element loops (SIMD prefix + scalar tail).

unsafe fn decode_bf16(src: *const u16, dst: *mut f32, n: usize) {
    let mut i = simd_prefix!(simd::decode_bf16(src, dst, n));
    while i < n {
        *dst.add(i) = bf16_to_f32(*src.add(i));
        i += 1;
    }
}

unsafe fn decode_f16(src: *const u16, dst: *mut f32, n: usize) {
    let mut i = simd_prefix!(simd::decode_f16(src, dst, n));
    while i < n {
        *dst.add(i) = f16_to_f32(*src.add(i));
        i += 1;
    }
}

unsafe fn decode_e4m3_scaled(src: *const u8, dst: *mut f32, n: usize, scale: f32) {
    let mut i = simd_prefix!(simd::decode_e4m3_scaled(src, dst, n, scale));
    while i < n {
        *dst.add(i) = e4m3_to_f32(*src.add(i)) * scale;
        i += 1;
    }
}

unsafe fn canonicalize(p: *mut f32, n: usize) {
    let mut i = simd_prefix!(simd::canonicalize(p, n));
    while i < n {
        *p.add(i) = canon_f32(*p.add(i));
        i += 1;
    }
}

/// The accumulator before an update: +0 for the first input (INIT), else its stored value.
#[inline(always)]
unsafe fn old<const INIT: bool>(p: *const f32) -> f32 {
    if INIT {
        0.0
    } else {
        *p
    }
}

unsafe fn accum_f32<const INIT: bool>(acc: *mut f32, src: *const f32, n: usize, w: f32) {
    let mut i = simd_prefix!(simd::accum_f32::<INIT>(acc, src, n, w));
    while i < n {
        *acc.add(i) = old::<INIT>(acc.add(i)) + w * *src.add(i);
        i += 1;
    }
}

unsafe fn accum_bf16<const INIT: bool>(acc: *mut f32, src: *const u16, n: usize, w: f32) {
    let mut i = simd_prefix!(simd::accum_bf16::<INIT>(acc, src, n, w));
    while i < n {
        *acc.add(i) = old::<INIT>(acc.add(i)) + w * bf16_to_f32(*src.add(i));
        i += 1;
    }
}

unsafe fn accum_f16<const INIT: bool>(acc: *mut f32, src: *const u16, n: usize, w: f32) {
    let mut i = simd_prefix!(simd::accum_f16::<INIT>(acc, src, n, w));
    while i < n {
        *acc.add(i) = old::<INIT>(acc.add(i)) + w * f16_to_f32(*src.add(i));
        i += 1;
    }
}

unsafe fn accum_e4m3<const INIT: bool>(acc: *mut f32, src: *const u8, n: usize, scale: f32, w: f32) {
    let mut i = simd_prefix!(simd::accum_e4m3::<INIT>(acc, src, n, scale, w));
    while i < n {
        *acc.add(i) = old::<INIT>(acc.add(i)) + w * (e4m3_to_f32(*src.add(i)) * scale);
        i += 1;
    }
}

unsafe fn encode_bf16(src: *const f32, dst: *mut u16, n: usize) {
    let mut i = simd_prefix!(simd::encode_bf16(src, dst, n));
    while i < n {
        *dst.add(i) = f32_to_bf16(*src.add(i));
        i += 1;
    }
}

unsafe fn encode_f16(src: *const f32, dst: *mut u16, n: usize) {
    let mut i = simd_prefix!(simd::encode_f16(src, dst, n));
    while i < n {
        *dst.add(i) = f32_to_f16(*src.add(i));
        i += 1;
    }
}

unsafe fn encode_f32(src: *const f32, dst: *mut f32, n: usize) {
    let mut i = simd_prefix!(simd::encode_f32(src, dst, n));
    while i < n {
        *dst.add(i) = canon_f32(*src.add(i));
        i += 1;
    }
}

unsafe fn encode_e4m3_seg(src: *const f32, dst: *mut u8, n: usize, scale: f32, nans: &mut u32) {
    let mut i = simd_prefix!(simd::encode_e4m3(src, dst, n, scale, nans));
    while i < n {
        let x = *src.add(i) / scale;
        if x.is_nan() {
            *nans += 1;
        }
        *dst.add(i) = f32_to_e4m3(x);
        i += 1;
    }
}

unsafe fn amax_seg(src: *const f32, n: usize, m: f32) -> f32 {
    let mut m = m;
    let mut i = simd_prefix!(simd::amax(src, n, &mut m));
    while i < n {
        let a = (*src.add(i)).abs();
        if a > m {
            m = a;
        }
        i += 1;
    }
    m
}

/// Calls `f(offset, len, scale)` for each maximal run of elements in [i0, i0 + len) (flat
/// row-major index into a rows × cols FP8 chunk) that lies in one row and one 128×128 block.
#[inline(always)]
unsafe fn for_each_block_run(
    cols: usize,
    scales: *const f32,
    i0: usize,
    len: usize,
    mut f: impl FnMut(usize, usize, f32),
) {
    let nbc = div_ceil(cols, BLOCK);
    let end = i0 + len;
    let mut i = i0;
    while i < end {
        let r = i / cols;
        let c = i - r * cols;
        let bc = c / BLOCK;
        let row_block_end = r * cols + core::cmp::min(cols, (bc + 1) * BLOCK);
        let run_end = core::cmp::min(end, row_block_end);
        let s = *scales.add((r / BLOCK) * nbc + bc);
        f(i, run_end - i, s);
        i = run_end;
    }
}

// ---------------------------------------------------------------------------------------------
// Exports.

/// dst[0..rows*cols] = decode(src) as f32, NaN canonical. Returns 0, or u32::MAX for a bad dtype.
#[no_mangle]
pub unsafe extern "C" fn decode(
    dtype: u32,
    src: *const u8,
    scales: *const f32,
    rows: usize,
    cols: usize,
    dst: *mut f32,
) -> u32 {
    let n = rows * cols;
    match dtype {
        DT_F32 => encode_f32(src as *const f32, dst, n),
        DT_F16 => {
            decode_f16(src as *const u16, dst, n);
            canonicalize(dst, n);
        }
        DT_BF16 => {
            decode_bf16(src as *const u16, dst, n);
            canonicalize(dst, n);
        }
        DT_E4M3 => {
            for_each_block_run(cols, scales, 0, n, |i, len, s| {
                decode_e4m3_scaled(src.add(i), dst.add(i), len, s)
            });
            canonicalize(dst, n);
        }
        _ => return ERR_DTYPE,
    }
    0
}

/// acc = acc + w * decode(src), element by element. With `init` ≠ 0, acc is not read and taken
/// as +0 (so `fill_zero` is not needed before the first input). Returns 0, or u32::MAX for a bad
/// dtype.
#[no_mangle]
pub unsafe extern "C" fn accumulate(
    dtype: u32,
    src: *const u8,
    scales: *const f32,
    rows: usize,
    cols: usize,
    w: f32,
    acc: *mut f32,
    init: u32,
) -> u32 {
    if init != 0 {
        accumulate_impl::<true>(dtype, src, scales, rows, cols, w, acc)
    } else {
        accumulate_impl::<false>(dtype, src, scales, rows, cols, w, acc)
    }
}

unsafe fn accumulate_impl<const INIT: bool>(
    dtype: u32,
    src: *const u8,
    scales: *const f32,
    rows: usize,
    cols: usize,
    w: f32,
    acc: *mut f32,
) -> u32 {
    let n = rows * cols;
    match dtype {
        DT_F32 => accum_f32::<INIT>(acc, src as *const f32, n, w),
        DT_F16 => accum_f16::<INIT>(acc, src as *const u16, n, w),
        DT_BF16 => accum_bf16::<INIT>(acc, src as *const u16, n, w),
        DT_E4M3 => for_each_block_run(cols, scales, 0, n, |i, len, s| {
            accum_e4m3::<INIT>(acc.add(i), src.add(i), len, s, w)
        }),
        _ => return ERR_DTYPE,
    }
    0
}

/// Encodes rows × cols f32 values into `dst`. For F8_E4M3 also writes the
/// ceil(rows/128) × ceil(cols/128) fresh scales to `scales_out` and returns the NaN count;
/// other dtypes return 0. u32::MAX for a bad dtype.
#[no_mangle]
pub unsafe extern "C" fn encode(
    dtype: u32,
    src: *const f32,
    rows: usize,
    cols: usize,
    dst: *mut u8,
    scales_out: *mut f32,
) -> u32 {
    let n = rows * cols;
    match dtype {
        DT_F32 => encode_f32(src, dst as *mut f32, n),
        DT_F16 => encode_f16(src, dst as *mut u16, n),
        DT_BF16 => encode_bf16(src, dst as *mut u16, n),
        DT_E4M3 => return encode_e4m3(src, rows, cols, dst, scales_out),
        _ => return ERR_DTYPE,
    }
    0
}

unsafe fn encode_e4m3(src: *const f32, rows: usize, cols: usize, dst: *mut u8, scales: *mut f32) -> u32 {
    if rows == 0 || cols == 0 {
        return 0;
    }
    let nbr = div_ceil(rows, BLOCK);
    let nbc = div_ceil(cols, BLOCK);
    let mut nans = 0u32;
    for br in 0..nbr {
        let r0 = br * BLOCK;
        let r1 = core::cmp::min(rows, r0 + BLOCK);
        let srow = scales.add(br * nbc);
        // Pass 1: amax per block of this stripe, kept in the scale slots.
        for bc in 0..nbc {
            *srow.add(bc) = 0.0;
        }
        for r in r0..r1 {
            for bc in 0..nbc {
                let c0 = bc * BLOCK;
                let len = core::cmp::min(cols, c0 + BLOCK) - c0;
                *srow.add(bc) = amax_seg(src.add(r * cols + c0), len, *srow.add(bc));
            }
        }
        for bc in 0..nbc {
            *srow.add(bc) = fp8_scale(*srow.add(bc));
        }
        // Pass 2: codes.
        for r in r0..r1 {
            for bc in 0..nbc {
                let c0 = bc * BLOCK;
                let len = core::cmp::min(cols, c0 + BLOCK) - c0;
                let i = r * cols + c0;
                encode_e4m3_seg(src.add(i), dst.add(i), len, *srow.add(bc), &mut nans);
            }
        }
    }
    nans
}

/// Decodes elements [i0, i0 + len) of a chunk; returns where the f32 values are (F32 chunks are
/// read in place, the others are decoded into `tmp`).
unsafe fn tile(dtype: u32, src: *const u8, scales: *const f32, cols: usize, i0: usize, len: usize, tmp: *mut f32) -> *const f32 {
    match dtype {
        DT_F32 => (src as *const f32).add(i0),
        DT_F16 => {
            decode_f16((src as *const u16).add(i0), tmp, len);
            tmp
        }
        DT_BF16 => {
            decode_bf16((src as *const u16).add(i0), tmp, len);
            tmp
        }
        _ => {
            for_each_block_run(cols, scales, i0, len, |i, l, s| {
                decode_e4m3_scaled(src.add(i), tmp.add(i - i0), l, s)
            });
            tmp
        }
    }
}

/// Difference statistics of b against a (both rows × cols). Writes 7 f64 to `out`:
/// [count, nonFinite, sumSqDiff, sumSqA, sumSqB, dot, maxAbsDiff]. Returns 0, or u32::MAX for a
/// bad dtype.
#[no_mangle]
pub unsafe extern "C" fn diff(
    a_dtype: u32,
    a: *const u8,
    a_scales: *const f32,
    b_dtype: u32,
    b: *const u8,
    b_scales: *const f32,
    rows: usize,
    cols: usize,
    out: *mut f64,
) -> u32 {
    if a_dtype > DT_E4M3 || b_dtype > DT_E4M3 {
        return ERR_DTYPE;
    }
    let n = rows * cols;
    let mut ta = [0f32; TILE];
    let mut tb = [0f32; TILE];
    let mut nonfinite: u64 = 0;
    // Scalar accumulators for the tails; added to the SIMD lanes at the end.
    let (mut ssd, mut ssa, mut ssb, mut dot, mut maxd) = (0f64, 0f64, 0f64, 0f64, 0f64);
    #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
    let mut acc = simd::StatsAcc::new();
    let mut i0 = 0;
    while i0 < n {
        let len = core::cmp::min(TILE, n - i0);
        let pa = tile(a_dtype, a, a_scales, cols, i0, len, ta.as_mut_ptr());
        let pb = tile(b_dtype, b, b_scales, cols, i0, len, tb.as_mut_ptr());
        let mut i = simd_prefix!(acc.run(pa, pb, len));
        #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
        {
            nonfinite += acc.take_nonfinite();
        }
        while i < len {
            let x = *pa.add(i);
            let y = *pb.add(i);
            if x.is_finite() && y.is_finite() {
                let (x, y) = (x as f64, y as f64);
                let d = y - x;
                ssd += d * d;
                ssa += x * x;
                ssb += y * y;
                dot += x * y;
                let ad = d.abs();
                if ad > maxd {
                    maxd = ad;
                }
            } else {
                nonfinite += 1;
            }
            i += 1;
        }
        i0 += len;
    }
    #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
    {
        let [s0, s1, s2, s3, m] = acc.finish();
        ssd += s0;
        ssa += s1;
        ssb += s2;
        dot += s3;
        if m > maxd {
            maxd = m;
        }
    }
    *out.add(0) = n as f64;
    *out.add(1) = nonfinite as f64;
    *out.add(2) = ssd;
    *out.add(3) = ssa;
    *out.add(4) = ssb;
    *out.add(5) = dot;
    *out.add(6) = maxd;
    0
}

// ---------------------------------------------------------------------------------------------
// Checksums.

const XXH_P1: u64 = 0x9E37_79B1_85EB_CA87;
const XXH_P2: u64 = 0xC2B2_AE3D_27D4_EB4F;
const XXH_P3: u64 = 0x1656_67B1_9E37_79F9;
const XXH_P4: u64 = 0x85EB_CA77_C2B2_AE63;
const XXH_P5: u64 = 0x27D4_EB2F_1656_67C5;

#[inline(always)]
unsafe fn read_u64(p: *const u8) -> u64 {
    u64::from_le(core::ptr::read_unaligned(p as *const u64))
}

#[inline(always)]
unsafe fn read_u32(p: *const u8) -> u32 {
    u32::from_le(core::ptr::read_unaligned(p as *const u32))
}

#[inline(always)]
fn xxh_round(acc: u64, input: u64) -> u64 {
    acc.wrapping_add(input.wrapping_mul(XXH_P2))
        .rotate_left(31)
        .wrapping_mul(XXH_P1)
}

#[inline(always)]
fn xxh_merge(acc: u64, v: u64) -> u64 {
    (acc ^ xxh_round(0, v)).wrapping_mul(XXH_P1).wrapping_add(XXH_P4)
}

/// XXH64 of `len` bytes at `p` with `seed` (the xxHash specification): the checksum of a span of
/// a child's shard, recorded in the resume journal and checked against the file on resume.
#[no_mangle]
pub unsafe extern "C" fn xxh64(p: *const u8, len: usize, seed: u64) -> u64 {
    let end = p.add(len);
    let mut q = p;
    let mut h: u64;
    if len >= 32 {
        let mut v1 = seed.wrapping_add(XXH_P1).wrapping_add(XXH_P2);
        let mut v2 = seed.wrapping_add(XXH_P2);
        let mut v3 = seed;
        let mut v4 = seed.wrapping_sub(XXH_P1);
        let limit = end.sub(32);
        while q <= limit {
            v1 = xxh_round(v1, read_u64(q));
            v2 = xxh_round(v2, read_u64(q.add(8)));
            v3 = xxh_round(v3, read_u64(q.add(16)));
            v4 = xxh_round(v4, read_u64(q.add(24)));
            q = q.add(32);
        }
        h = v1
            .rotate_left(1)
            .wrapping_add(v2.rotate_left(7))
            .wrapping_add(v3.rotate_left(12))
            .wrapping_add(v4.rotate_left(18));
        h = xxh_merge(h, v1);
        h = xxh_merge(h, v2);
        h = xxh_merge(h, v3);
        h = xxh_merge(h, v4);
    } else {
        h = seed.wrapping_add(XXH_P5);
    }
    h = h.wrapping_add(len as u64);
    while (end as usize) - (q as usize) >= 8 {
        h ^= xxh_round(0, read_u64(q));
        h = h.rotate_left(27).wrapping_mul(XXH_P1).wrapping_add(XXH_P4);
        q = q.add(8);
    }
    if (end as usize) - (q as usize) >= 4 {
        h ^= (read_u32(q) as u64).wrapping_mul(XXH_P1);
        h = h.rotate_left(23).wrapping_mul(XXH_P2).wrapping_add(XXH_P3);
        q = q.add(4);
    }
    while q < end {
        h ^= (*q as u64).wrapping_mul(XXH_P5);
        h = h.rotate_left(11).wrapping_mul(XXH_P1);
        q = q.add(1);
    }
    h ^= h >> 33;
    h = h.wrapping_mul(XXH_P2);
    h ^= h >> 29;
    h = h.wrapping_mul(XXH_P3);
    h ^= h >> 32;
    h
}
