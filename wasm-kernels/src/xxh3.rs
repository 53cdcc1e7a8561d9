//! XXH3-64 (seed 0, the default secret), as the xxHash specification describes it
//! (doc/xxhash_spec.md, "XXH3 Algorithm Description"): the checksum of the spans a child's shards
//! are written in, for resume journals. Inputs above 240 bytes, which are nearly all a merge
//! hashes, run the accumulation with SIMD128: each 64-byte stripe takes eight 64-bit lanes in four
//! vectors, and the 32 × 32 → 64-bit products of a lane's halves are two extending multiplies per
//! pair of vectors: about 20 GB/s in V8 where XXH64, four serial multiply chains, ran at 8.5.

use core::arch::wasm32::*;

const P32_1: u64 = 0x9E37_79B1;
const P32_2: u64 = 0x85EB_CA77;
const P32_3: u64 = 0xC2B2_AE3D;
const P64_1: u64 = 0x9E37_79B1_85EB_CA87;
const P64_2: u64 = 0xC2B2_AE3D_27D4_EB4F;
const P64_3: u64 = 0x1656_67B1_9E37_79F9;
const P64_4: u64 = 0x85EB_CA77_C2B2_AE63;
const P64_5: u64 = 0x27D4_EB2F_1656_67C5;
const MX1: u64 = 0x1656_6791_9E37_79F9;
const MX2: u64 = 0x9FB2_1C65_1E98_DF25;

/// The default secret (the specification's `defaultSecret`).
static SECRET: [u8; 192] = [
    0xb8, 0xfe, 0x6c, 0x39, 0x23, 0xa4, 0x4b, 0xbe, 0x7c, 0x01, 0x81, 0x2c, 0xf7, 0x21, 0xad, 0x1c,
    0xde, 0xd4, 0x6d, 0xe9, 0x83, 0x90, 0x97, 0xdb, 0x72, 0x40, 0xa4, 0xa4, 0xb7, 0xb3, 0x67, 0x1f,
    0xcb, 0x79, 0xe6, 0x4e, 0xcc, 0xc0, 0xe5, 0x78, 0x82, 0x5a, 0xd0, 0x7d, 0xcc, 0xff, 0x72, 0x21,
    0xb8, 0x08, 0x46, 0x74, 0xf7, 0x43, 0x24, 0x8e, 0xe0, 0x35, 0x90, 0xe6, 0x81, 0x3a, 0x26, 0x4c,
    0x3c, 0x28, 0x52, 0xbb, 0x91, 0xc3, 0x00, 0xcb, 0x88, 0xd0, 0x65, 0x8b, 0x1b, 0x53, 0x2e, 0xa3,
    0x71, 0x64, 0x48, 0x97, 0xa2, 0x0d, 0xf9, 0x4e, 0x38, 0x19, 0xef, 0x46, 0xa9, 0xde, 0xac, 0xd8,
    0xa8, 0xfa, 0x76, 0x3f, 0xe3, 0x9c, 0x34, 0x3f, 0xf9, 0xdc, 0xbb, 0xc7, 0xc7, 0x0b, 0x4f, 0x1d,
    0x8a, 0x51, 0xe0, 0x4b, 0xcd, 0xb4, 0x59, 0x31, 0xc8, 0x9f, 0x7e, 0xc9, 0xd9, 0x78, 0x73, 0x64,
    0xea, 0xc5, 0xac, 0x83, 0x34, 0xd3, 0xeb, 0xc3, 0xc5, 0x81, 0xa0, 0xff, 0xfa, 0x13, 0x63, 0xeb,
    0x17, 0x0d, 0xdd, 0x51, 0xb7, 0xf0, 0xda, 0x49, 0xd3, 0x16, 0x55, 0x26, 0x29, 0xd4, 0x68, 0x9e,
    0x2b, 0x16, 0xbe, 0x58, 0x7d, 0x47, 0xa1, 0xfc, 0x8f, 0xf8, 0xb8, 0xd1, 0x7a, 0xd0, 0x31, 0xce,
    0x45, 0xcb, 0x3a, 0x8f, 0x95, 0x16, 0x04, 0x28, 0xaf, 0xd7, 0xfb, 0xca, 0xbb, 0x4b, 0x40, 0x7e,
];

/// Stripes per block: (secret length − 64) / 8.
const STRIPES_PER_BLOCK: usize = (192 - 64) / 8;
const BLOCK: usize = 64 * STRIPES_PER_BLOCK;

#[inline(always)]
unsafe fn rd64(p: *const u8) -> u64 {
    u64::from_le(core::ptr::read_unaligned(p as *const u64))
}

#[inline(always)]
unsafe fn rd32(p: *const u8) -> u32 {
    u32::from_le(core::ptr::read_unaligned(p as *const u32))
}

#[inline(always)]
fn sec64(at: usize) -> u64 {
    unsafe { rd64(SECRET.as_ptr().add(at)) }
}

#[inline(always)]
fn sec32(at: usize) -> u32 {
    unsafe { rd32(SECRET.as_ptr().add(at)) }
}

#[inline(always)]
fn fold(a: u64, b: u64) -> u64 {
    let r = (a as u128) * (b as u128);
    (r as u64) ^ ((r >> 64) as u64)
}

#[inline(always)]
fn avalanche(mut x: u64) -> u64 {
    x ^= x >> 37;
    x = x.wrapping_mul(MX1);
    x ^ (x >> 32)
}

#[inline(always)]
fn avalanche_xxh64(mut x: u64) -> u64 {
    x ^= x >> 33;
    x = x.wrapping_mul(P64_2);
    x ^= x >> 29;
    x = x.wrapping_mul(P64_3);
    x ^ (x >> 32)
}

/// The medium inputs' mixing step (seed 0): 16 bytes of input with 16 of the secret.
#[inline(always)]
unsafe fn mix16(p: *const u8, s: usize) -> u64 {
    fold(rd64(p) ^ sec64(s), rd64(p.add(8)) ^ sec64(s + 8))
}

/// XXH3-64 of `len` bytes at `p` (seed 0, default secret).
#[no_mangle]
pub unsafe extern "C" fn xxh3(p: *const u8, len: usize) -> u64 {
    let n = len as u64;
    if len == 0 {
        return avalanche_xxh64(sec64(56) ^ sec64(64));
    }
    if len <= 3 {
        let combined = (*p.add(len - 1) as u32) | ((len as u32) << 8) | ((*p as u32) << 16) | ((*p.add(len >> 1) as u32) << 24);
        return avalanche_xxh64(((sec32(0) ^ sec32(4)) as u64) ^ combined as u64);
    }
    if len <= 8 {
        let first = rd32(p) as u64;
        let last = rd32(p.add(len - 4)) as u64;
        let mut v = (sec64(8) ^ sec64(16)) ^ (last | (first << 32));
        v ^= v.rotate_left(49) ^ v.rotate_left(24);
        v = v.wrapping_mul(MX2);
        v ^= (v >> 35).wrapping_add(n);
        v = v.wrapping_mul(MX2);
        return v ^ (v >> 28);
    }
    if len <= 16 {
        let lo = (sec64(24) ^ sec64(32)) ^ rd64(p);
        let hi = (sec64(40) ^ sec64(48)) ^ rd64(p.add(len - 8));
        return avalanche(n.wrapping_add(lo.swap_bytes()).wrapping_add(hi).wrapping_add(fold(lo, hi)));
    }
    if len <= 128 {
        let mut acc = n.wrapping_mul(P64_1);
        let rounds = (len - 1) / 32 + 1;
        for i in 0..rounds {
            acc = acc.wrapping_add(mix16(p.add(16 * i), 32 * i));
            acc = acc.wrapping_add(mix16(p.add(len - 16 * i - 16), 32 * i + 16));
        }
        return avalanche(acc);
    }
    if len <= 240 {
        let mut acc = n.wrapping_mul(P64_1);
        for i in 0..8 {
            acc = acc.wrapping_add(mix16(p.add(16 * i), 16 * i));
        }
        acc = avalanche(acc);
        for i in 8..len / 16 {
            acc = acc.wrapping_add(mix16(p.add(16 * i), 16 * (i - 8) + 3));
        }
        acc = acc.wrapping_add(mix16(p.add(len - 16), 119));
        return avalanche(acc);
    }
    long(p, len)
}

/// The accumulators as four vectors of two lanes: [acc0, acc1], [acc2, acc3], ...
struct Acc([v128; 4]);

impl Acc {
    /// One 64-byte stripe with the 64 secret bytes at `s`: for each lane i, acc[i ^ 1] += x[i] and
    /// acc[i] += lo32(x[i] ^ key[i]) · hi32(x[i] ^ key[i]).
    #[inline(always)]
    unsafe fn stripe(&mut self, p: *const u8, s: *const u8) {
        let mut k = 0;
        while k < 4 {
            let x0 = v128_load(p.add(16 * k) as *const v128);
            let x1 = v128_load(p.add(16 * k + 16) as *const v128);
            let k0 = v128_xor(x0, v128_load(s.add(16 * k) as *const v128));
            let k1 = v128_xor(x1, v128_load(s.add(16 * k + 16) as *const v128));
            // The low and the high halves of four lanes, side by side.
            let lo = i32x4_shuffle::<0, 2, 4, 6>(k0, k1);
            let hi = i32x4_shuffle::<1, 3, 5, 7>(k0, k1);
            let a = &mut self.0;
            a[k] = i64x2_add(i64x2_add(a[k], i64x2_shuffle::<1, 0>(x0, x0)), u64x2_extmul_low_u32x4(lo, hi));
            a[k + 1] = i64x2_add(i64x2_add(a[k + 1], i64x2_shuffle::<1, 0>(x1, x1)), u64x2_extmul_high_u32x4(lo, hi));
            k += 2;
        }
    }

    /// acc[i] = (acc[i] ^ (acc[i] >> 47) ^ key[i]) · PRIME32_1, with the last 64 secret bytes.
    #[inline(always)]
    unsafe fn scramble(&mut self) {
        let s = SECRET.as_ptr().add(192 - 64);
        let p = u64x2_splat(P32_1);
        for k in 0..4 {
            let a = self.0[k];
            let x = v128_xor(v128_xor(a, u64x2_shr(a, 47)), v128_load(s.add(16 * k) as *const v128));
            // A 64 × 32-bit product: lo32(x) · P + (hi32(x) · P) << 32.
            let lo = u64x2_extmul_low_u32x4(i32x4_shuffle::<0, 2, 0, 2>(x, x), i32x4_shuffle::<0, 2, 0, 2>(p, p));
            let hi = u64x2_extmul_low_u32x4(i32x4_shuffle::<1, 3, 1, 3>(x, x), i32x4_shuffle::<0, 2, 0, 2>(p, p));
            self.0[k] = i64x2_add(lo, i64x2_shl(hi, 32));
        }
    }

    #[inline(always)]
    fn lane(&self, i: usize) -> u64 {
        let v = self.0[i / 2];
        if i % 2 == 0 {
            u64x2_extract_lane::<0>(v)
        } else {
            u64x2_extract_lane::<1>(v)
        }
    }
}

/// Inputs above 240 bytes: blocks of 16 stripes, each followed by a scramble; the last block's
/// stripes but its last; the input's last 64 bytes as a final stripe; the merge of the lanes.
unsafe fn long(p: *const u8, len: usize) -> u64 {
    let mut acc = Acc([u64x2(P32_3, P64_1), u64x2(P64_2, P64_3), u64x2(P64_4, P32_2), u64x2(P64_5, P32_1)]);
    let sec = SECRET.as_ptr();
    let blocks = (len - 1) / BLOCK;
    for b in 0..blocks {
        let q = p.add(b * BLOCK);
        for n in 0..STRIPES_PER_BLOCK {
            acc.stripe(q.add(64 * n), sec.add(8 * n));
        }
        acc.scramble();
    }
    let q = p.add(blocks * BLOCK);
    let stripes = ((len - 1) - BLOCK * blocks) / 64;
    for n in 0..stripes {
        acc.stripe(q.add(64 * n), sec.add(8 * n));
    }
    acc.stripe(p.add(len - 64), sec.add(192 - 64 - 7));
    let mut h = (len as u64).wrapping_mul(P64_1);
    for i in 0..4 {
        h = h.wrapping_add(fold(acc.lane(2 * i) ^ sec64(11 + 16 * i), acc.lane(2 * i + 1) ^ sec64(11 + 16 * i + 8)));
    }
    avalanche(h)
}
