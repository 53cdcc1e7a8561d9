// XXH3-64 (seed 0, default secret) written from the xxHash specification (doc/xxhash_spec.md,
// "XXH3 Algorithm Description" for small, medium and large inputs) with BigInt arithmetic, lane by
// lane as the specification states it: slow and plain, independent of the Rust kernel it checks.
const MASK = (1n << 64n) - 1n;
const PRIME32_1 = 0x9e3779b1n;
const PRIME32_2 = 0x85ebca77n;
const PRIME32_3 = 0xc2b2ae3dn;
const PRIME64_1 = 0x9e3779b185ebca87n;
const PRIME64_2 = 0xc2b2ae3d27d4eb4fn;
const PRIME64_3 = 0x165667b19e3779f9n;
const PRIME64_4 = 0x85ebca77c2b2ae63n;
const PRIME64_5 = 0x27d4eb2f165667c5n;
const PRIME_MX1 = 0x165667919e3779f9n;
const PRIME_MX2 = 0x9fb21c651e98df25n;

const SECRET = Uint8Array.from(
  (
    'b8fe6c3923a44bbe7c01812cf721ad1cded46de9839097db7240a4a4b7b3671fcb79e64eccc0e578825ad07dccff7221' +
    'b8084674f743248ee03590e6813a264c3c2852bb91c300cb88d0658b1b532ea371644897a20df94e3819ef46a9deacd8' +
    'a8fa763fe39c343ff9dcbbc7c70b4f1d8a51e04bcdb45931c89f7ec9d9787364eac5ac8334d3ebc3c581a0fffa1363eb' +
    '170ddd51b7f0da49d316552629d4689e2b16be587d47a1fc8ff8b8d17ad031ce45cb3a8f95160428afd7fbcabb4b407e'
  ).match(/../g)!,
  (h) => parseInt(h, 16),
);

const mul = (a: bigint, b: bigint) => (a * b) & MASK;
const add = (a: bigint, b: bigint) => (a + b) & MASK;
const rotl = (x: bigint, r: bigint) => ((x << r) | (x >> (64n - r))) & MASK;

/** Little-endian unsigned value of `n` bytes at `at`. */
function le(bytes: Uint8Array, at: number, n: number): bigint {
  let v = 0n;
  for (let i = n - 1; i >= 0; i--) v = (v << 8n) | BigInt(bytes[at + i]!);
  return v;
}

function bswap64(x: bigint): bigint {
  let r = 0n;
  for (let i = 0; i < 8; i++) r = (r << 8n) | ((x >> BigInt(8 * i)) & 0xffn);
  return r;
}

/** (u128)a · (u128)b, lower half xor higher half. */
function foldedMul(a: bigint, b: bigint): bigint {
  const r = a * b;
  return (r & MASK) ^ (r >> 64n);
}

function avalanche(x: bigint): bigint {
  x ^= x >> 37n;
  x = mul(x, PRIME_MX1);
  return x ^ (x >> 32n);
}

function avalancheXxh64(x: bigint): bigint {
  x ^= x >> 33n;
  x = mul(x, PRIME64_2);
  x ^= x >> 29n;
  x = mul(x, PRIME64_3);
  return x ^ (x >> 32n);
}

function mixStep(input: Uint8Array, at: number, secretOffset: number): bigint {
  return foldedMul(le(input, at, 8) ^ le(SECRET, secretOffset, 8), le(input, at + 8, 8) ^ le(SECRET, secretOffset + 8, 8));
}

function small(input: Uint8Array): bigint {
  const n = input.length;
  if (n === 0) return avalancheXxh64(le(SECRET, 56, 8) ^ le(SECRET, 64, 8));
  if (n <= 3) {
    const combined = BigInt(input[n - 1]!) | (BigInt(n) << 8n) | (BigInt(input[0]!) << 16n) | (BigInt(input[n >> 1]!) << 24n);
    return avalancheXxh64((le(SECRET, 0, 4) ^ le(SECRET, 4, 4)) ^ combined);
  }
  if (n <= 8) {
    const combined = le(input, n - 4, 4) | (le(input, 0, 4) << 32n);
    let value = (le(SECRET, 8, 8) ^ le(SECRET, 16, 8)) ^ combined;
    value = value ^ rotl(value, 49n) ^ rotl(value, 24n);
    value = mul(value, PRIME_MX2);
    value = value ^ add(value >> 35n, BigInt(n));
    value = mul(value, PRIME_MX2);
    return value ^ (value >> 28n);
  }
  const low = (le(SECRET, 24, 8) ^ le(SECRET, 32, 8)) ^ le(input, 0, 8);
  const high = (le(SECRET, 40, 8) ^ le(SECRET, 48, 8)) ^ le(input, n - 8, 8);
  return avalanche(add(add(add(BigInt(n), bswap64(low)), high), foldedMul(low, high)));
}

function medium(input: Uint8Array): bigint {
  const n = input.length;
  let acc = mul(BigInt(n), PRIME64_1);
  if (n <= 128) {
    const rounds = ((n - 1) >> 5) + 1;
    for (let i = rounds - 1; i >= 0; i--) {
      acc = add(acc, mixStep(input, i * 16, i * 32));
      acc = add(acc, mixStep(input, n - i * 16 - 16, i * 32 + 16));
    }
    return avalanche(acc);
  }
  const chunks = n >> 4;
  for (let i = 0; i < 8; i++) acc = add(acc, mixStep(input, i * 16, i * 16));
  acc = avalanche(acc);
  for (let i = 8; i < chunks; i++) acc = add(acc, mixStep(input, i * 16, (i - 8) * 16 + 3));
  acc = add(acc, mixStep(input, n - 16, 119));
  return avalanche(acc);
}

function large(input: Uint8Array): bigint {
  const n = input.length;
  const acc = [PRIME32_3, PRIME64_1, PRIME64_2, PRIME64_3, PRIME64_4, PRIME32_2, PRIME64_5, PRIME32_1];
  const stripesPerBlock = (SECRET.length - 64) / 8;
  const blockSize = 64 * stripesPerBlock;
  const accumulate = (at: number, secretOffset: number) => {
    for (let i = 0; i < 8; i++) {
      const lane = le(input, at + 8 * i, 8);
      const value = lane ^ le(SECRET, secretOffset + 8 * i, 8);
      acc[i ^ 1] = add(acc[i ^ 1]!, lane);
      acc[i] = add(acc[i]!, (value & 0xffffffffn) * (value >> 32n));
    }
  };
  let at = 0;
  // Whole blocks while more than a block is left: the last block goes to the last round.
  while (n - at > blockSize) {
    for (let s = 0; s < stripesPerBlock; s++) accumulate(at + 64 * s, 8 * s);
    for (let i = 0; i < 8; i++) {
      let a = acc[i]!;
      a ^= a >> 47n;
      a ^= le(SECRET, SECRET.length - 64 + 8 * i, 8);
      acc[i] = mul(a, PRIME32_1);
    }
    at += blockSize;
  }
  const fullStripes = Math.floor((n - at - 1) / 64);
  for (let s = 0; s < fullStripes; s++) accumulate(at + 64 * s, 8 * s);
  accumulate(n - 64, SECRET.length - 71);
  let result = mul(BigInt(n), PRIME64_1);
  for (let i = 0; i < 4; i++) result = add(result, foldedMul(acc[2 * i]! ^ le(SECRET, 11 + 16 * i, 8), acc[2 * i + 1]! ^ le(SECRET, 11 + 16 * i + 8, 8)));
  return avalanche(result);
}

export function xxh3Ref(input: Uint8Array): bigint {
  if (input.length <= 16) return small(input);
  if (input.length <= 240) return medium(input);
  return large(input);
}
