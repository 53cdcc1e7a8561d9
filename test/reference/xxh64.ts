// XXH64 written from the xxHash specification (doc/xxhash_spec.md, "XXH64 Algorithm
// Description") with BigInt arithmetic: slow and plain, independent of the Rust kernel it checks.
const MASK = (1n << 64n) - 1n;
const P1 = 11400714785074694791n;
const P2 = 14029467366897019727n;
const P3 = 1609587929392839161n;
const P4 = 9650029242287828579n;
const P5 = 2870177450012600261n;

const mul = (a: bigint, b: bigint) => (a * b) & MASK;
const add = (a: bigint, b: bigint) => (a + b) & MASK;
const rotl = (x: bigint, r: bigint) => ((x << r) | (x >> (64n - r))) & MASK;

function lane(bytes: Uint8Array, at: number, n: number): bigint {
  let v = 0n;
  for (let i = n - 1; i >= 0; i--) v = (v << 8n) | BigInt(bytes[at + i]!);
  return v;
}

function round(acc: bigint, input: bigint): bigint {
  return mul(rotl(add(acc, mul(input, P2)), 31n), P1);
}

export function xxh64Ref(bytes: Uint8Array, seed = 0n): bigint {
  const len = bytes.length;
  let i = 0;
  let acc: bigint;
  if (len >= 32) {
    const v = [add(add(seed, P1), P2), add(seed, P2), seed, (seed - P1) & MASK];
    for (; i + 32 <= len; i += 32) for (let k = 0; k < 4; k++) v[k] = round(v[k]!, lane(bytes, i + 8 * k, 8));
    acc = add(add(rotl(v[0]!, 1n), rotl(v[1]!, 7n)), add(rotl(v[2]!, 12n), rotl(v[3]!, 18n)));
    for (const x of v) acc = add(mul(acc ^ round(0n, x), P1), P4);
  } else {
    acc = add(seed, P5);
  }
  acc = add(acc, BigInt(len));
  for (; i + 8 <= len; i += 8) acc = add(mul(rotl(acc ^ round(0n, lane(bytes, i, 8)), 27n), P1), P4);
  if (i + 4 <= len) {
    acc = add(mul(rotl(acc ^ mul(lane(bytes, i, 4), P1), 23n), P2), P3);
    i += 4;
  }
  for (; i < len; i++) acc = mul(rotl(acc ^ mul(BigInt(bytes[i]!), P5), 11n), P1);
  acc ^= acc >> 33n;
  acc = mul(acc, P2);
  acc ^= acc >> 29n;
  acc = mul(acc, P3);
  acc ^= acc >> 32n;
  return acc;
}
