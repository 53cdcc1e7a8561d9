//! MoE Studio kernels: the per-element work of merging checkpoints, as a WebAssembly module with
//! SIMD128 loops and plain `extern "C"` exports (no wasm-bindgen, no imports).
//!
//! The arithmetic is a contract, checked bit for bit against the scalar TypeScript reference in
//! `test/reference/scalar.ts`:
//! - decode: each codec to f32 exactly as its rule says (below); NaN becomes the canonical NaN.
//! - mix: acc = +0; acc = acc + f32(w) * x for each input with w ≠ 0 (no fused multiply-add);
//!   `mix_tiled` does it tile by tile straight into a plain output (the accumulator never leaves
//!   the stack), `accumulate` + `encode` for quantized outputs, which need whole blocks.
//! - encode: round to nearest even; BF16/F16 overflow to ±inf; NaN becomes the canonical NaN of
//!   the format; quantized codecs get fresh scales per block (rules below), and values they cannot
//!   hold (NaN; ±inf for MXFP4 and INT4) are counted for the caller to refuse.
//! - diff: f64 sums over the pairs where both values are finite.
//! - strided_copy: elements moved between two strided 2-D views, byte for byte (expert regions);
//!   accumulate_strided: the mix's acc = acc + w · x between two strided f32 views.
//! - xxh3: the XXH3-64 checksum of a byte range (resume journals; `xxh3.rs`).
//!
//! A stripe is `rows × cols` values of one tensor (its first row starts a block of the codec).
//! Codecs (a descriptor of 4 u32 in memory: kind, scale dtype, block rows, block cols):
//! - 0 F32, 1 F16, 2 BF16: the values themselves.
//! - 3 E4M3 with block scales: codes rows×cols bytes; scales ceil(rows/br) × ceil(cols/bc) of the
//!   scale dtype (0 F32, 1 F16, 2 BF16), value = e4m3(code) · scale (one f32 multiply). DeepSeek's
//!   blocks are 128×128; per-channel scales are 1 × cols blocks, a per-tensor scale one block.
//!   Fresh scale: s = f32(max(amax, f32(1e-4)) / 448) rounded to the scale dtype; codes
//!   e4m3fn(f32(x / s)) with that stored s, saturating at ±448.
//! - 4 MXFP4: E2M1 codes two per byte (low nibble first) in rows × cols/2 bytes; one E8M0 byte per
//!   32 values along a row (rows × cols/32), value = e2m1(code) · 2^(e − 127) rounded to f32 (as
//!   ldexp does). Fresh exponent (OCP MX v1.0, 6.3): X = floor(log2(amax)) − 2, e = X + 127 clamped
//!   to 0..254 (0 for an all-zero block); codes: nearest E2M1 of x / 2^X, ties to even, saturating.
//! - 5 INT4 (compressed-tensors pack-quantized, symmetric): codes q + 8 packed like MXFP4 (eight
//!   per little-endian i32); one scale per `bc` values along a row (rows × ceil(cols/bc)) of the
//!   scale dtype, value = f32(q) · scale. Fresh scale: s = f32(amax / 7) rounded to the scale dtype;
//!   q = clamp(round_half_even(f32(x / s)), −8, 7) (0 where s is 0).
//!
//! Memory: the host allocates buffers with `alloc`/`dealloc` (16-byte aligned), copies or reads
//! inputs in, calls a kernel with pointers and takes results out.

mod scalar;
#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
mod xxh3;
#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
mod simd;

#[cfg(all(target_arch = "wasm32", not(target_feature = "simd128")))]
compile_error!("build with RUSTFLAGS=\"-C target-feature=+simd128\" (see scripts/build-kernels.mjs)");

use scalar::*;
use std::alloc::Layout;

/// Scale dtypes of the quantized codecs.
const DT_F32: u32 = 0;
const DT_F16: u32 = 1;
const DT_BF16: u32 = 2;

/// Elements per stack tile (diff, accumulation of decoded codecs, scale rows while encoding).
const TILE: usize = 1024;

/// Returned by kernels given a codec they do not know.
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

/// A loop over 0..n: the SIMD prefix (`simd_prefix!`), then `body` for each element it left.
macro_rules! elementwise {
    ($n:expr, $simd:expr, |$i:ident| $body:expr) => {{
        let mut $i = simd_prefix!($simd);
        while $i < $n {
            $body;
            $i += 1;
        }
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
    8
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
    elementwise!(n, simd::fill_zero(p, n), |i| *p.add(i) = 0.0);
}

// ---------------------------------------------------------------------------------------------
// Contiguous element loops (SIMD prefix + scalar tail).

unsafe fn decode_bf16(src: *const u16, dst: *mut f32, n: usize) {
    elementwise!(n, simd::decode_bf16(src, dst, n), |i| *dst.add(i) = bf16_to_f32(*src.add(i)));
}

unsafe fn decode_f16(src: *const u16, dst: *mut f32, n: usize) {
    elementwise!(n, simd::decode_f16(src, dst, n), |i| *dst.add(i) = f16_to_f32(*src.add(i)));
}

unsafe fn decode_e4m3_scaled(src: *const u8, dst: *mut f32, n: usize, scale: f32) {
    elementwise!(n, simd::decode_e4m3_scaled(src, dst, n, scale), |i| *dst.add(i) = e4m3_to_f32(*src.add(i)) * scale);
}

unsafe fn canonicalize(p: *mut f32, n: usize) {
    elementwise!(n, simd::canonicalize(p, n), |i| *p.add(i) = canon_f32(*p.add(i)));
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
    elementwise!(n, simd::accum_f32::<INIT>(acc, src, n, w), |i| *acc.add(i) = old::<INIT>(acc.add(i)) + w * *src.add(i));
}

unsafe fn accum_bf16<const INIT: bool>(acc: *mut f32, src: *const u16, n: usize, w: f32) {
    elementwise!(n, simd::accum_bf16::<INIT>(acc, src, n, w), |i| *acc.add(i) = old::<INIT>(acc.add(i)) + w * bf16_to_f32(*src.add(i)));
}

unsafe fn accum_f16<const INIT: bool>(acc: *mut f32, src: *const u16, n: usize, w: f32) {
    elementwise!(n, simd::accum_f16::<INIT>(acc, src, n, w), |i| *acc.add(i) = old::<INIT>(acc.add(i)) + w * f16_to_f32(*src.add(i)));
}

unsafe fn accum_e4m3<const INIT: bool>(acc: *mut f32, src: *const u8, n: usize, scale: f32, w: f32) {
    elementwise!(n, simd::accum_e4m3::<INIT>(acc, src, n, scale, w), |i| *acc.add(i) = old::<INIT>(acc.add(i)) + w * (e4m3_to_f32(*src.add(i)) * scale));
}

unsafe fn encode_bf16(src: *const f32, dst: *mut u16, n: usize) {
    elementwise!(n, simd::encode_bf16(src, dst, n), |i| *dst.add(i) = f32_to_bf16(*src.add(i)));
}

unsafe fn encode_f16(src: *const f32, dst: *mut u16, n: usize) {
    elementwise!(n, simd::encode_f16(src, dst, n), |i| *dst.add(i) = f32_to_f16(*src.add(i)));
}

unsafe fn encode_f32(src: *const f32, dst: *mut f32, n: usize) {
    elementwise!(n, simd::encode_f32(src, dst, n), |i| *dst.add(i) = canon_f32(*src.add(i)));
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

/// encode_e4m3_seg where no src / scale is NaN (see `encode_e4m3`).
unsafe fn encode_e4m3_seg_no_nan(src: *const f32, dst: *mut u8, n: usize, scale: f32) {
    elementwise!(n, simd::encode_e4m3_no_nan(src, dst, n, scale), |i| *dst.add(i) = f32_to_e4m3(*src.add(i) / scale));
}

/// Two E4M3 inputs' scales for one block and their single factors (simd::e4m3_factor), as
/// `mix2_e4m3_run` takes them.
#[derive(Clone, Copy)]
struct Pair {
    sa: f32,
    sb: f32,
    fa: f32,
    fb: f32,
}

/// The factors of two E4M3 inputs' scales for `mix2_e4m3_run` when both have single factors;
/// None on builds without simd128 (values then stay in place).
#[inline(always)]
fn by_pos_factors(sa: f32, sb: f32) -> Option<Pair> {
    #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
    if let (Some(fa), Some(fb)) = (simd::e4m3_factor(sa), simd::e4m3_factor(sb)) {
        return Some(Pair { sa, sb, fa, fb });
    }
    let _ = (sa, sb);
    None
}

/// acc[0..n] = (+0 + wa · (decode(a) · sa)) + wb · (decode(b) · sb), full groups of 16 by byte
/// position (simd::mix2_e4m3_by_pos, with the factors from `by_pos_factors`), the rest in place;
/// returns the largest bit pattern of |acc| over the run and m.
unsafe fn mix2_e4m3_run(a: *const u8, wa: f32, b: *const u8, wb: f32, p: Pair, acc: *mut f32, n: usize, m: u32) -> u32 {
    let mut m = m;
    let mut i = simd_prefix!(simd::mix2_e4m3_by_pos(a, p.fa, wa, b, p.fb, wb, acc, n, &mut m));
    let (sa, sb) = (p.sa, p.sb);
    while i < n {
        let x = 0.0 + wa * (e4m3_to_f32(*a.add(i)) * sa);
        let v = x + wb * (e4m3_to_f32(*b.add(i)) * sb);
        *acc.add(i) = v;
        let bits = v.to_bits() & 0x7FFF_FFFF;
        if bits > m {
            m = bits;
        }
        i += 1;
    }
    m
}

/// encode_e4m3_seg_no_nan of a run whose full groups of 16 are by byte position.
unsafe fn encode_e4m3_seg_no_nan_by_pos(src: *const f32, dst: *mut u8, n: usize, scale: f32) {
    elementwise!(n, simd::encode_e4m3_no_nan_by_pos(src, dst, n, scale), |i| *dst.add(i) = f32_to_e4m3(*src.add(i) / scale));
}

/// encode_bf16 of a run whose full groups of 16 are by byte position.
unsafe fn encode_bf16_by_pos(src: *const f32, dst: *mut u16, n: usize) {
    elementwise!(n, simd::encode_bf16_by_pos(src, dst, n), |i| *dst.add(i) = f32_to_bf16(*src.add(i)));
}

/// Puts a run's full groups of 16 back in place from byte position.
unsafe fn unpermute_by_pos(p: *mut f32, n: usize) {
    let _ = simd_prefix!(simd::unpermute_by_pos(p, n));
}

/// The largest bit pattern of |x| over src[0..n] and m (see simd::amax_bits).
unsafe fn amax_bits_seg(src: *const f32, n: usize, m: u32) -> u32 {
    let mut m = m;
    let mut i = simd_prefix!(simd::amax_bits(src, n, &mut m));
    while i < n {
        let a = (*src.add(i)).to_bits() & 0x7FFF_FFFF;
        if a > m {
            m = a;
        }
        i += 1;
    }
    m
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

// ---------------------------------------------------------------------------------------------
// Codecs.

const K_F32: u32 = 0;
const K_F16: u32 = 1;
const K_BF16: u32 = 2;
const K_E4M3: u32 = 3;
const K_MXFP4: u32 = 4;
const K_INT4: u32 = 5;

/// A codec as the host describes it (see the crate docs).
#[derive(Clone, Copy)]
struct Codec {
    kind: u32,
    scale_dtype: u32,
    br: usize,
    bc: usize,
}

/// MXFP4's block length along a row.
const MX_BLOCK: usize = 32;

unsafe fn codec_at(desc: *const u32) -> Option<Codec> {
    let c = Codec {
        kind: *desc,
        scale_dtype: *desc.add(1),
        br: *desc.add(2) as usize,
        bc: *desc.add(3) as usize,
    };
    let ok = match c.kind {
        K_F32 | K_F16 | K_BF16 => true,
        K_E4M3 => c.br > 0 && c.bc > 0 && c.scale_dtype <= DT_BF16,
        K_MXFP4 => true,
        K_INT4 => c.bc > 0 && c.scale_dtype <= DT_BF16,
        _ => false,
    };
    if ok {
        Some(c)
    } else {
        None
    }
}

/// A scale of the given dtype at index k, as f32 (exact).
#[inline(always)]
unsafe fn scale_at(dtype: u32, scales: *const u8, k: usize) -> f32 {
    match dtype {
        DT_F32 => *(scales as *const f32).add(k),
        DT_F16 => f16_to_f32(*(scales as *const u16).add(k)),
        _ => bf16_to_f32(*(scales as *const u16).add(k)),
    }
}

/// Stores f32 s in the scale dtype (rounded to nearest even) and returns the value stored.
#[inline(always)]
unsafe fn store_scale(dtype: u32, scales: *mut u8, k: usize, s: f32) -> f32 {
    match dtype {
        DT_F32 => {
            *(scales as *mut f32).add(k) = s;
            s
        }
        DT_F16 => {
            let h = f32_to_f16(s);
            *(scales as *mut u16).add(k) = h;
            f16_to_f32(h)
        }
        _ => {
            let h = f32_to_bf16(s);
            *(scales as *mut u16).add(k) = h;
            bf16_to_f32(h)
        }
    }
}

/// Calls `f(offset, len, scale)` for each maximal run of elements in [i0, i0 + len) (flat
/// row-major index into a rows × cols stripe) that lies in one row and one scale block.
#[inline(always)]
unsafe fn for_each_block_run(
    c: Codec,
    cols: usize,
    scales: *const u8,
    i0: usize,
    len: usize,
    mut f: impl FnMut(usize, usize, f32),
) {
    let nbc = div_ceil(cols, c.bc);
    let end = i0 + len;
    let mut i = i0;
    while i < end {
        let r = i / cols;
        let col = i - r * cols;
        let bc = col / c.bc;
        let row_block_end = r * cols + core::cmp::min(cols, (bc + 1) * c.bc);
        let run_end = core::cmp::min(end, row_block_end);
        let s = scale_at(c.scale_dtype, scales, (r / c.br) * nbc + bc);
        f(i, run_end - i, s);
        i = run_end;
    }
}

/// The 4-bit code of element i of a nibble stream (low nibble first).
#[inline(always)]
unsafe fn nibble(data: *const u8, i: usize) -> u8 {
    (*data.add(i >> 1) >> ((i & 1) * 4)) & 0xF
}

/// Decodes elements [i0, i0 + len) of a stripe into dst[0..len] (NaN left as produced).
unsafe fn decode_run(c: Codec, data: *const u8, scales: *const u8, cols: usize, i0: usize, len: usize, dst: *mut f32) {
    match c.kind {
        K_F32 => core::ptr::copy_nonoverlapping((data as *const f32).add(i0), dst, len),
        K_F16 => decode_f16((data as *const u16).add(i0), dst, len),
        K_BF16 => decode_bf16((data as *const u16).add(i0), dst, len),
        K_E4M3 => for_each_block_run(c, cols, scales, i0, len, |i, l, s| {
            decode_e4m3_scaled(data.add(i), dst.add(i - i0), l, s)
        }),
        K_MXFP4 => {
            let per_row = cols / MX_BLOCK;
            for k in 0..len {
                let i = i0 + k;
                let r = i / cols;
                let e = *scales.add(r * per_row + (i - r * cols) / MX_BLOCK);
                *dst.add(k) = (e2m1_to_f32(nibble(data, i)) as f64 * e8m0_to_f64(e)) as f32;
            }
        }
        _ => {
            // INT4: one scale per bc values along a row.
            let per_row = div_ceil(cols, c.bc);
            for k in 0..len {
                let i = i0 + k;
                let r = i / cols;
                let s = scale_at(c.scale_dtype, scales, r * per_row + (i - r * cols) / c.bc);
                *dst.add(k) = (nibble(data, i) as i32 - 8) as f32 * s;
            }
        }
    }
}

/// dst[0..rows*cols] = decode(stripe), NaN canonical. Returns 0, or u32::MAX for a bad codec.
#[no_mangle]
pub unsafe extern "C" fn decode(desc: *const u32, data: *const u8, scales: *const u8, rows: usize, cols: usize, dst: *mut f32) -> u32 {
    let c = match codec_at(desc) {
        Some(c) => c,
        None => return ERR_DTYPE,
    };
    let n = rows * cols;
    if c.kind == K_F32 {
        encode_f32(data as *const f32, dst, n);
    } else {
        decode_run(c, data, scales, cols, 0, n, dst);
        canonicalize(dst, n);
    }
    0
}

/// acc = acc + w * decode(stripe), element by element. With `init` ≠ 0, acc is not read and taken
/// as +0 (so `fill_zero` is not needed before the first input). Returns 0, or u32::MAX for a bad
/// codec.
#[no_mangle]
pub unsafe extern "C" fn accumulate(
    desc: *const u32,
    data: *const u8,
    scales: *const u8,
    rows: usize,
    cols: usize,
    w: f32,
    acc: *mut f32,
    init: u32,
) -> u32 {
    let c = match codec_at(desc) {
        Some(c) => c,
        None => return ERR_DTYPE,
    };
    if init != 0 {
        accumulate_impl::<true>(c, data, scales, rows, cols, w, acc);
    } else {
        accumulate_impl::<false>(c, data, scales, rows, cols, w, acc);
    }
    0
}

unsafe fn accumulate_impl<const INIT: bool>(c: Codec, data: *const u8, scales: *const u8, rows: usize, cols: usize, w: f32, acc: *mut f32) {
    let n = rows * cols;
    match c.kind {
        K_F32 => accum_f32::<INIT>(acc, data as *const f32, n, w),
        K_F16 => accum_f16::<INIT>(acc, data as *const u16, n, w),
        K_BF16 => accum_bf16::<INIT>(acc, data as *const u16, n, w),
        K_E4M3 => for_each_block_run(c, cols, scales, 0, n, |i, len, s| accum_e4m3::<INIT>(acc.add(i), data.add(i), len, s, w)),
        _ => {
            // Decoded tile by tile, then accumulated exactly as F32 input.
            let mut tile = [0f32; TILE];
            let mut i0 = 0;
            while i0 < n {
                let len = core::cmp::min(TILE, n - i0);
                decode_run(c, data, scales, cols, i0, len, tile.as_mut_ptr());
                accum_f32::<INIT>(acc.add(i0), tile.as_ptr(), len, w);
                i0 += len;
            }
        }
    }
}

/// Encodes rows × cols f32 values. Quantized codecs also write fresh scales to `scales_out` and
/// return how many values they could not hold (NaN, and ±inf for MXFP4 and INT4); plain dtypes
/// return 0. u32::MAX for a bad codec.
#[no_mangle]
pub unsafe extern "C" fn encode(desc: *const u32, src: *const f32, rows: usize, cols: usize, dst: *mut u8, scales_out: *mut u8) -> u32 {
    let c = match codec_at(desc) {
        Some(c) => c,
        None => return ERR_DTYPE,
    };
    let n = rows * cols;
    match c.kind {
        K_F32 => encode_f32(src, dst as *mut f32, n),
        K_F16 => encode_f16(src, dst as *mut u16, n),
        K_BF16 => encode_bf16(src, dst as *mut u16, n),
        K_E4M3 => return encode_e4m3(c, src, rows, cols, dst, scales_out),
        K_MXFP4 => return encode_mxfp4(src, rows, cols, dst, scales_out),
        _ => return encode_int4(c, src, rows, cols, dst, scales_out),
    }
    0
}

unsafe fn encode_e4m3(c: Codec, src: *const f32, rows: usize, cols: usize, dst: *mut u8, scales: *mut u8) -> u32 {
    if rows == 0 || cols == 0 {
        return 0;
    }
    let nbr = div_ceil(rows, c.br);
    let nbc = div_ceil(cols, c.bc);
    let mut nans = 0u32;
    let mut stored = [0f32; TILE];
    let mut bits = [0u32; TILE];
    let mut fast = [false; TILE];
    let mut bc0 = 0;
    // Column blocks in groups of TILE, so the stored scales of a block row fit on the stack.
    while bc0 < nbc {
        let bcn = core::cmp::min(TILE, nbc - bc0);
        for br in 0..nbr {
            let r0 = br * c.br;
            let r1 = core::cmp::min(rows, r0 + c.br);
            // Pass 1: amax per block, as the largest bit pattern of |x| (one integer max per
            // value); a block with a NaN or an infinity takes the general path below.
            for k in 0..bcn {
                bits[k] = 0;
            }
            for r in r0..r1 {
                for k in 0..bcn {
                    let c0 = (bc0 + k) * c.bc;
                    let len = core::cmp::min(cols, c0 + c.bc) - c0;
                    bits[k] = amax_bits_seg(src.add(r * cols + c0), len, bits[k]);
                }
            }
            for k in 0..bcn {
                let finite = bits[k] < 0x7F80_0000;
                let mut amax = f32::from_bits(bits[k]);
                if !finite {
                    // NaN ignored, as the scalar rule says: the largest |x| that is not NaN.
                    amax = 0.0;
                    let c0 = (bc0 + k) * c.bc;
                    let len = core::cmp::min(cols, c0 + c.bc) - c0;
                    for r in r0..r1 {
                        amax = amax_seg(src.add(r * cols + c0), len, amax);
                    }
                }
                stored[k] = store_scale(c.scale_dtype, scales, br * nbc + bc0 + k, fp8_scale(amax));
                // Pass 2 may leave out the NaN cases where no quotient can be NaN: every x finite
                // and the stored scale neither zero nor NaN (it is positive, perhaps +inf).
                fast[k] = finite && stored[k] > 0.0;
            }
            // Pass 2: codes, with the scale as stored.
            for r in r0..r1 {
                for k in 0..bcn {
                    let c0 = (bc0 + k) * c.bc;
                    let len = core::cmp::min(cols, c0 + c.bc) - c0;
                    let i = r * cols + c0;
                    if fast[k] {
                        encode_e4m3_seg_no_nan(src.add(i), dst.add(i), len, stored[k]);
                    } else {
                        encode_e4m3_seg(src.add(i), dst.add(i), len, stored[k], &mut nans);
                    }
                }
            }
        }
        bc0 += bcn;
    }
    nans
}

unsafe fn encode_mxfp4(src: *const f32, rows: usize, cols: usize, dst: *mut u8, scales: *mut u8) -> u32 {
    let per_row = cols / MX_BLOCK;
    let mut bad = 0u32;
    for r in 0..rows {
        for b in 0..per_row {
            let p = src.add(r * cols + b * MX_BLOCK);
            let mut amax = 0f32;
            for k in 0..MX_BLOCK {
                let v = *p.add(k);
                if !v.is_finite() {
                    bad += 1;
                } else if v.abs() > amax {
                    amax = v.abs();
                }
            }
            let e: i32 = if amax > 0.0 { ilog2_f32(amax) - 2 + 127 } else { 0 };
            let e = if e < 0 { 0 } else if e > 254 { 254 } else { e };
            *scales.add(r * per_row + b) = e as u8;
            let scale = e8m0_to_f64(e as u8);
            for k in 0..MX_BLOCK {
                let v = *p.add(k);
                let code = if v.is_finite() { f64_to_e2m1(v as f64 / scale) } else { 0 };
                let i = r * cols + b * MX_BLOCK + k;
                let byte = dst.add(i >> 1);
                if i & 1 == 0 {
                    *byte = code;
                } else {
                    *byte |= code << 4;
                }
            }
        }
    }
    bad
}

/// Round half to even of an f32 (finite), as an integer-valued f32.
#[inline(always)]
fn round_half_even(x: f32) -> f32 {
    let f = x.floor();
    let d = x - f;
    if d > 0.5 || (d == 0.5 && (f * 0.5).floor() != f * 0.5) {
        f + 1.0
    } else {
        f
    }
}

unsafe fn encode_int4(c: Codec, src: *const f32, rows: usize, cols: usize, dst: *mut u8, scales: *mut u8) -> u32 {
    let per_row = div_ceil(cols, c.bc);
    let mut bad = 0u32;
    for r in 0..rows {
        for g in 0..per_row {
            let c0 = g * c.bc;
            let c1 = core::cmp::min(cols, c0 + c.bc);
            let mut amax = 0f32;
            for col in c0..c1 {
                let v = *src.add(r * cols + col);
                if !v.is_finite() {
                    bad += 1;
                } else if v.abs() > amax {
                    amax = v.abs();
                }
            }
            let s = store_scale(c.scale_dtype, scales, r * per_row + g, amax / 7.0);
            for col in c0..c1 {
                let i = r * cols + col;
                let v = *src.add(i);
                let q = if s == 0.0 || !v.is_finite() {
                    0.0
                } else {
                    let t = round_half_even(v / s);
                    if t < -8.0 {
                        -8.0
                    } else if t > 7.0 {
                        7.0
                    } else {
                        t
                    }
                };
                let code = (q as i32 + 8) as u8;
                let byte = dst.add(i >> 1);
                if i & 1 == 0 {
                    *byte = code;
                } else {
                    *byte |= code << 4;
                }
            }
        }
    }
    bad
}

/// Elements [i0, i0 + len) of a stripe as f32: F32 data is read in place, the others decoded
/// into `tmp`.
unsafe fn tile(c: Codec, data: *const u8, scales: *const u8, cols: usize, i0: usize, len: usize, tmp: *mut f32) -> *const f32 {
    if c.kind == K_F32 {
        return (data as *const f32).add(i0);
    }
    decode_run(c, data, scales, cols, i0, len, tmp);
    tmp
}

/// Difference statistics of b against a (both rows × cols). Writes 7 f64 to `out`:
/// [count, nonFinite, sumSqDiff, sumSqA, sumSqB, dot, maxAbsDiff]. Returns 0, or u32::MAX for a
/// bad codec.
#[no_mangle]
pub unsafe extern "C" fn diff(
    a_desc: *const u32,
    a: *const u8,
    a_scales: *const u8,
    b_desc: *const u32,
    b: *const u8,
    b_scales: *const u8,
    rows: usize,
    cols: usize,
    out: *mut f64,
) -> u32 {
    let (ca, cb) = match (codec_at(a_desc), codec_at(b_desc)) {
        (Some(x), Some(y)) => (x, y),
        _ => return ERR_DTYPE,
    };
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
        let pa = tile(ca, a, a_scales, cols, i0, len, ta.as_mut_ptr());
        let pb = tile(cb, b, b_scales, cols, i0, len, tb.as_mut_ptr());
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

/// acc[0..len] = (first ? +0 : acc) + w · decode(elements [i0, i0 + len) of a stripe).
unsafe fn accum_run(first: bool, c: Codec, data: *const u8, sc: *const u8, cols: usize, i0: usize, len: usize, w: f32, acc: *mut f32) {
    if first {
        accum_run_impl::<true>(c, data, sc, cols, i0, len, w, acc)
    } else {
        accum_run_impl::<false>(c, data, sc, cols, i0, len, w, acc)
    }
}

unsafe fn accum_run_impl<const INIT: bool>(c: Codec, data: *const u8, sc: *const u8, cols: usize, i0: usize, len: usize, w: f32, acc: *mut f32) {
    match c.kind {
        K_F32 => accum_f32::<INIT>(acc, (data as *const f32).add(i0), len, w),
        K_F16 => accum_f16::<INIT>(acc, (data as *const u16).add(i0), len, w),
        K_BF16 => accum_bf16::<INIT>(acc, (data as *const u16).add(i0), len, w),
        K_E4M3 => for_each_block_run(c, cols, sc, i0, len, |i, l, s| accum_e4m3::<INIT>(acc.add(i - i0), data.add(i), l, s, w)),
        _ => {
            // Decoded a stack tile at a time (written before it is read), then accumulated exactly
            // as F32 input.
            let mut scratch = core::mem::MaybeUninit::<[f32; TILE]>::uninit();
            let p = scratch.as_mut_ptr() as *mut f32;
            let mut k = 0;
            while k < len {
                let l = core::cmp::min(TILE, len - k);
                decode_run(c, data, sc, cols, i0 + k, l, p);
                accum_f32::<INIT>(acc.add(k), p, l, w);
                k += l;
            }
        }
    }
}

/// Are the `count` codec descriptors at `descs` (4 u32 each) all known?
unsafe fn codecs_ok(count: usize, descs: *const u32) -> bool {
    (0..count).all(|j| codec_at(descs.add(4 * j)).is_some())
}

/// out = encode(acc) where acc = +0; acc = acc + w_j · decode(input j) for each input with
/// w_j ≠ 0, in order — the mix (and, with one input of weight 1, a conversion: +0 + 1·x = x but
/// for −0, so conversions go through `decode` instead) of `count` contiguous rows × cols stripes
/// into a plain output, tile by tile: the accumulator stays in a stack tile instead of making a
/// trip to memory per input. Each input is described by its codec descriptor (4 u32 at
/// descs + 16·j), data and scales pointers (datas[j], scales[j]) and f32 weight (weights[j]).
/// Returns 0, or u32::MAX for a bad codec or a quantized output (those need whole blocks: encode).
#[no_mangle]
pub unsafe extern "C" fn mix_tiled(
    count: usize,
    descs: *const u32,
    datas: *const u32,
    scales: *const u32,
    weights: *const f32,
    rows: usize,
    cols: usize,
    out_desc: *const u32,
    out: *mut u8,
) -> u32 {
    let oc = match codec_at(out_desc) {
        Some(c) => c,
        None => return ERR_DTYPE,
    };
    if !(oc.kind == K_F32 || oc.kind == K_F16 || oc.kind == K_BF16) {
        return ERR_DTYPE;
    }
    if !codecs_ok(count, descs) {
        return ERR_DTYPE;
    }
    let n = rows * cols;
    // Two BF16 inputs into BF16 (the commonest merge): the accumulator stays in registers.
    let mut i0 = 0;
    let nz: Vec<usize> = (0..count).filter(|&j| *weights.add(j) != 0.0).collect();
    if nz.len() == 2 && oc.kind == K_BF16 && nz.iter().all(|&j| *descs.add(4 * j) == K_BF16) {
        let (ja, jb) = (nz[0], nz[1]);
        let a = *datas.add(ja) as usize as *const u16;
        let b = *datas.add(jb) as usize as *const u16;
        i0 = simd_prefix!(simd::mix2_bf16(a, *weights.add(ja), b, *weights.add(jb), out as *mut u16, n));
    }
    let mut tile = [0f32; TILE];
    let t = tile.as_mut_ptr();
    // Two E4M3 inputs on one block grid into BF16 (FP8 parents, a BF16 child): each run inside a
    // block is mixed by byte position (see simd.rs) and packed straight into BF16.
    if nz.len() == 2 && oc.kind == K_BF16 {
        let (ja, jb) = (nz[0], nz[1]);
        let (ca, cb) = (codec_at(descs.add(4 * ja)).unwrap(), codec_at(descs.add(4 * jb)).unwrap());
        if ca.kind == K_E4M3 && cb.kind == K_E4M3 && ca.br == cb.br && ca.bc == cb.bc {
            let (a, b) = (*datas.add(ja) as usize as *const u8, *datas.add(jb) as usize as *const u8);
            let (sca, scb) = (*scales.add(ja) as usize as *const u8, *scales.add(jb) as usize as *const u8);
            let (wa, wb) = (*weights.add(ja), *weights.add(jb));
            let nbc = div_ceil(cols, ca.bc);
            let o = out as *mut u16;
            while i0 < n {
                let r = i0 / cols;
                let bc = (i0 - r * cols) / ca.bc;
                let len = core::cmp::min(TILE, core::cmp::min(n, r * cols + core::cmp::min(cols, (bc + 1) * ca.bc)) - i0);
                let k = (r / ca.br) * nbc + bc;
                let (sa, sb) = (scale_at(ca.scale_dtype, sca, k), scale_at(cb.scale_dtype, scb, k));
                if let Some(p) = by_pos_factors(sa, sb) {
                    mix2_e4m3_run(a.add(i0), wa, b.add(i0), wb, p, t, len, 0);
                    encode_bf16_by_pos(t, o.add(i0), len);
                } else {
                    accum_e4m3::<true>(t, a.add(i0), len, sa, wa);
                    accum_e4m3::<false>(t, b.add(i0), len, sb, wb);
                    encode_bf16(t, o.add(i0), len);
                }
                i0 += len;
            }
        }
    }
    while i0 < n {
        let len = core::cmp::min(TILE, n - i0);
        let mut first = true;
        for j in 0..count {
            let w = *weights.add(j);
            if w == 0.0 {
                continue;
            }
            let c = codec_at(descs.add(4 * j)).unwrap();
            let data = *datas.add(j) as usize as *const u8;
            let sc = *scales.add(j) as usize as *const u8;
            accum_run(first, c, data, sc, cols, i0, len, w, t);
            first = false;
        }
        if first {
            fill_zero(t, len);
        }
        match oc.kind {
            K_F32 => encode_f32(t, (out as *mut f32).add(i0), len),
            K_F16 => encode_f16(t, (out as *mut u16).add(i0), len),
            _ => encode_bf16(t, (out as *mut u16).add(i0), len),
        }
        i0 += len;
    }
    0
}

/// The f32 values of `mix_e4m3`'s tile (512 KiB), which the host provides: the most values in one
/// output block it takes (DeepSeek's blocks are 128 × 128; per-channel rows up to this length).
/// Larger blocks (a per-tensor scale) go through `accumulate` + `encode`.
const MIX_TILE: usize = 128 * 1024;

/// MIX_TILE, for the host to size `tile` and to know which outputs `mix_e4m3` takes.
#[no_mangle]
pub extern "C" fn mix_e4m3_tile() -> u32 {
    MIX_TILE as u32
}

/// `mix_tiled` into an E4M3 output with fresh block scales, a group of blocks side by side at a
/// time: the group is mixed row by row into `tile` (MIX_TILE f32 from the host), each block's
/// scale made from its largest |value| and its codes encoded from the tile, row by row again, so
/// the accumulator never makes a trip through the whole stripe and every read and write runs along
/// rows. The same values, scales and codes as `accumulate` of each input with w ≠ 0 in order (the
/// first from +0), then `encode`. Returns the number of values E4M3 cannot hold (NaN), or u32::MAX
/// for a bad codec, an output that is not E4M3 or a block larger than MIX_TILE.
#[no_mangle]
pub unsafe extern "C" fn mix_e4m3(
    count: usize,
    descs: *const u32,
    datas: *const u32,
    scales: *const u32,
    weights: *const f32,
    rows: usize,
    cols: usize,
    out_desc: *const u32,
    out: *mut u8,
    out_scales: *mut u8,
    tile: *mut f32,
) -> u32 {
    let oc = match codec_at(out_desc) {
        Some(c) if c.kind == K_E4M3 => c,
        _ => return ERR_DTYPE,
    };
    if !codecs_ok(count, descs) {
        return ERR_DTYPE;
    }
    if rows == 0 || cols == 0 {
        return 0;
    }
    let bh = core::cmp::min(oc.br, rows);
    let bw = core::cmp::min(oc.bc, cols);
    let per = bh * bw;
    if per > MIX_TILE {
        return ERR_DTYPE;
    }
    let nz: Vec<usize> = (0..count).filter(|&j| *weights.add(j) != 0.0).collect();
    let codec = |j: usize| codec_at(descs.add(4 * j)).unwrap();
    let data = |j: usize| *datas.add(j) as usize as *const u8;
    let sc = |j: usize| *scales.add(j) as usize as *const u8;
    // Two E4M3 inputs on the output's block grid (the commonest re-quantizing merge): one scale per
    // input for each output block, mixed in registers with the block's largest |value| on the way,
    // the tile kept by byte position (see simd.rs) for the encoder.
    let same_grid = |j: usize| {
        let c = codec(j);
        c.kind == K_E4M3 && c.br == oc.br && c.bc == oc.bc
    };
    let two = nz.len() == 2 && same_grid(nz[0]) && same_grid(nz[1]);
    let nbr = div_ceil(rows, oc.br);
    let nbc = div_ceil(cols, oc.bc);
    // Blocks side by side per group: as many as the tile holds (and the stack arrays below).
    let group = core::cmp::min(nbc, core::cmp::min(TILE, MIX_TILE / per));
    let mut bits = [0u32; TILE];
    let mut by_pos: [Option<Pair>; TILE] = [None; TILE];
    let mut stored = [0f32; TILE];
    let mut fast = [false; TILE];
    let mut nans = 0u32;
    for br in 0..nbr {
        let r0 = br * oc.br;
        let r1 = core::cmp::min(rows, r0 + oc.br);
        let mut bc0 = 0;
        while bc0 < nbc {
            let g = core::cmp::min(group, nbc - bc0);
            // Block k of the group: output columns c0(k) .. c0(k) + width(k), its rows in the tile
            // at tile + k · per, bw apart.
            let c0 = |k: usize| (bc0 + k) * oc.bc;
            let width = |k: usize| core::cmp::min(cols, c0(k) + oc.bc) - c0(k);
            for k in 0..g {
                bits[k] = 0;
                by_pos[k] = if two {
                    let (a, b) = (nz[0], nz[1]);
                    let q = br * nbc + bc0 + k;
                    by_pos_factors(scale_at(codec(a).scale_dtype, sc(a), q), scale_at(codec(b).scale_dtype, sc(b), q))
                } else {
                    None
                };
            }
            for r in r0..r1 {
                for k in 0..g {
                    let (i, w) = (r * cols + c0(k), width(k));
                    let t = tile.add(k * per + (r - r0) * bw);
                    if let Some(p) = by_pos[k] {
                        let (a, b) = (nz[0], nz[1]);
                        bits[k] = mix2_e4m3_run(data(a).add(i), *weights.add(a), data(b).add(i), *weights.add(b), p, t, w, bits[k]);
                    } else if nz.is_empty() {
                        fill_zero(t, w);
                    } else {
                        for (n, &j) in nz.iter().enumerate() {
                            accum_run(n == 0, codec(j), data(j), sc(j), cols, i, w, *weights.add(j), t);
                        }
                        bits[k] = amax_bits_seg(t, w, bits[k]);
                    }
                }
            }
            for k in 0..g {
                let mut amax = f32::from_bits(bits[k]);
                if bits[k] >= 0x7F80_0000 {
                    // An infinity or a NaN: the largest |x| that is not NaN, as the scalar rule says
                    // (in any order, so values by byte position may stay so).
                    amax = 0.0;
                    for r in 0..r1 - r0 {
                        amax = amax_seg(tile.add(k * per + r * bw), width(k), amax);
                    }
                }
                stored[k] = store_scale(oc.scale_dtype, out_scales, br * nbc + bc0 + k, fp8_scale(amax));
                // No quotient can be NaN where every value is finite and the stored scale is
                // neither zero nor NaN (it is positive, perhaps +inf); elsewhere the general
                // encoder, on values back in their places.
                fast[k] = bits[k] < 0x7F80_0000 && stored[k] > 0.0;
                if !fast[k] && by_pos[k].is_some() {
                    for r in 0..r1 - r0 {
                        unpermute_by_pos(tile.add(k * per + r * bw), width(k));
                    }
                    by_pos[k] = None;
                }
            }
            for r in r0..r1 {
                for k in 0..g {
                    let (i, w) = (r * cols + c0(k), width(k));
                    let t = tile.add(k * per + (r - r0) * bw);
                    if !fast[k] {
                        encode_e4m3_seg(t, out.add(i), w, stored[k], &mut nans);
                    } else if by_pos[k].is_some() {
                        encode_e4m3_seg_no_nan_by_pos(t, out.add(i), w, stored[k]);
                    } else {
                        encode_e4m3_seg_no_nan(t, out.add(i), w, stored[k]);
                    }
                }
            }
            bc0 += g;
        }
    }
    nans
}

// ---------------------------------------------------------------------------------------------
// Regions.

/// dst[o·d_so + i·d_si] = src[o·s_so + i·s_si] for o < n_o, i < n_i, in elements of `elem`
/// bytes (1, 2, 4 or 8), moved as bytes: an expert's region of a fused tensor, gathered or
/// scattered without decoding (strides may be 0 only where the count is 1). Returns 0, or
/// u32::MAX for another element size.
#[no_mangle]
pub unsafe extern "C" fn strided_copy(
    src: *const u8,
    dst: *mut u8,
    elem: usize,
    n_o: usize,
    n_i: usize,
    s_so: usize,
    s_si: usize,
    d_so: usize,
    d_si: usize,
) -> u32 {
    if !(elem == 1 || elem == 2 || elem == 4 || elem == 8) {
        return ERR_DTYPE;
    }
    for o in 0..n_o {
        let s = src.add(o * s_so * elem);
        let d = dst.add(o * d_so * elem);
        if s_si == 1 && d_si == 1 {
            core::ptr::copy(s, d, n_i * elem);
            continue;
        }
        match elem {
            1 => {
                for i in 0..n_i {
                    *d.add(i * d_si) = *s.add(i * s_si);
                }
            }
            2 => {
                let (s, d) = (s as *const u16, d as *mut u16);
                for i in 0..n_i {
                    core::ptr::write_unaligned(d.add(i * d_si), core::ptr::read_unaligned(s.add(i * s_si)));
                }
            }
            4 => {
                let (s, d) = (s as *const u32, d as *mut u32);
                for i in 0..n_i {
                    core::ptr::write_unaligned(d.add(i * d_si), core::ptr::read_unaligned(s.add(i * s_si)));
                }
            }
            _ => {
                let (s, d) = (s as *const u64, d as *mut u64);
                for i in 0..n_i {
                    core::ptr::write_unaligned(d.add(i * d_si), core::ptr::read_unaligned(s.add(i * s_si)));
                }
            }
        }
    }
    0
}

/// acc[o·a_so + i·a_si] = acc[…] + w · src[o·s_so + i·s_si] for o < n_o, i < n_i (f32, no fused
/// multiply-add): a decoded region of a parent added into a child's region, wherever each sits in
/// its slab (halves, interleaved rows, transposed). Rows with unit steps on both sides run as
/// contiguous `accumulate` rows.
#[no_mangle]
pub unsafe extern "C" fn accumulate_strided(
    src: *const f32,
    s_so: usize,
    s_si: usize,
    acc: *mut f32,
    a_so: usize,
    a_si: usize,
    n_o: usize,
    n_i: usize,
    w: f32,
) -> u32 {
    for o in 0..n_o {
        let s = src.add(o * s_so);
        let a = acc.add(o * a_so);
        if s_si == 1 && a_si == 1 {
            accum_f32::<false>(a, s, n_i, w);
            continue;
        }
        for i in 0..n_i {
            let p = a.add(i * a_si);
            *p = *p + w * *s.add(i * s_si);
        }
    }
    0
}
