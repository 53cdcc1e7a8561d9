// Runs one unit inside a WASM module: reads its file ranges straight into wasm memory (nearby
// ranges of one file as one read), computes in place, writes from wasm memory and hashes what it
// wrote. The same code runs in a worker that reaches the files itself and in-process.
import { dataBytes, stripeScales, type Codec } from '../formats/codec.ts';
import type { WasmModule } from '../kernels/wasm-kernels.ts';
import { noRunnerTime, type Band, type Piece, type Place, type RunnerTime, type Span, type StripeOutput, type StripeUnit, type Unit, type UnitResult, type Written } from './units.ts';

/** How a runner reaches the run's files. */
export interface RunnerFiles {
  /** Fills `dst()` (a view of wasm memory, taken when the bytes are ready) with the bytes at `offset`. */
  read(file: number, offset: number, length: number, dst: () => Uint8Array): Promise<void> | void;
  /** Writes `src` at `offset`; false when this runner cannot reach the file (the bytes go back to the coordinator). */
  write(file: number, offset: number, src: Uint8Array): Promise<boolean> | boolean;
  /**
   * Starts fetching a range a queued unit will read, where reads are asynchronous (File slices):
   * `read` of the same range then takes what arrived meanwhile.
   */
  prefetch?(file: number, offset: number, length: number): void;
}

/** Ranges of one file closer than this are read as one. */
const READ_GAP = 64 * 1024;

const F32: Codec = { kind: 'plain', dtype: 'F32' };

/** The spans of bands: each band's data, then its scales. */
function bandSpans(bands: Band[]): Span[] {
  const spans: Span[] = [];
  for (const b of bands) {
    spans.push(b.data);
    if (b.scales) spans.push(b.scales);
  }
  return spans;
}

/** What a unit reads, in the order its runner reads it. */
function unitSpans(u: Unit): Span[] {
  switch (u.kind) {
    case 'stripe':
    case 'diff':
      return bandSpans(u.bands);
    case 'copy':
      return u.parts.map((p) => p.from);
    case 'bytes':
      return [];
  }
}

interface ReadGroup {
  file: number;
  offset: number;
  end: number;
  members: number[];
  inline: boolean;
}

/** Spans as they are read: by file and offset, nearby ranges of one file as one read. */
function readGroups(spans: Span[]): ReadGroup[] {
  const order = spans.map((_, i) => i).sort((a, b) => spans[a]!.file - spans[b]!.file || spans[a]!.offset - spans[b]!.offset);
  const groups: ReadGroup[] = [];
  for (const i of order) {
    const s = spans[i]!;
    if (s.bytes) {
      groups.push({ file: s.file, offset: s.offset, end: s.offset + s.length, members: [i], inline: true });
      continue;
    }
    const g = groups[groups.length - 1];
    if (g && !g.inline && g.file === s.file && s.offset - g.end <= READ_GAP) {
      g.end = Math.max(g.end, s.offset + s.length);
      g.members.push(i);
    } else groups.push({ file: s.file, offset: s.offset, end: s.offset + s.length, members: [i], inline: false });
  }
  return groups;
}

/** Starts fetching what a queued unit will read (see `RunnerFiles.prefetch`). */
export function prefetchUnit(files: RunnerFiles, u: Unit): void {
  if (!files.prefetch) return;
  for (const g of readGroups(unitSpans(u))) if (!g.inline && g.end > g.offset) files.prefetch(g.file, g.offset, g.end - g.offset);
}

/** A unit's RunnerTime: reading, hashing and writing timed where they happen, computing the rest. */
class Clock {
  private readonly started = performance.now();
  readonly time = noRunnerTime();

  /** Adds the time since `from` to `what`. */
  add(what: 'read' | 'hash' | 'write', from: number): void {
    this.time[what] += performance.now() - from;
  }

  finish(): RunnerTime {
    const t = this.time;
    t.compute = Math.max(0, performance.now() - this.started - t.read - t.hash - t.write);
    return t;
  }
}

/**
 * Reads every span into one buffer of wasm memory; returns each span's address. Spans carrying
 * their bytes are copied in; the others are read, nearby ranges of one file together.
 */
async function readSpans(m: WasmModule, files: RunnerFiles, spans: Span[], clock: Clock): Promise<number[]> {
  const from = performance.now();
  try {
    return await readAll(m, files, spans);
  } finally {
    clock.add('read', from);
  }
}

async function readAll(m: WasmModule, files: RunnerFiles, spans: Span[]): Promise<number[]> {
  const groups = readGroups(spans);
  let total = 0;
  const at: number[] = [];
  for (const g of groups) {
    at.push(total);
    total += Math.ceil((g.end - g.offset) / 16) * 16;
  }
  const base = m.slot('read', Math.max(16, total));
  const out = new Array<number>(spans.length);
  // All reads at once: where they are asynchronous (File slices in the browser), one parent's
  // bytes arrive while the other's are being fetched. Nothing grows wasm memory meanwhile.
  const reading: (Promise<void> | void)[] = [];
  for (let k = 0; k < groups.length; k++) {
    const g = groups[k]!;
    const ptr = base + at[k]!;
    const len = g.end - g.offset;
    if (g.inline) {
      const s = spans[g.members[0]!]!;
      m.u8(ptr, len).set(s.bytes!.subarray(0, len));
    } else if (len > 0) {
      reading.push(files.read(g.file, g.offset, len, () => m.u8(ptr, len)));
    }
    for (const i of g.members) out[i] = ptr + (spans[i]!.offset - g.offset);
  }
  // Every read settles before this unit ends, failed or not: none may land in the next unit's buffer.
  const failed = (await Promise.allSettled(reading)).find((r) => r.status === 'rejected');
  if (failed) throw failed.reason;
  return out;
}

async function writeOut(m: WasmModule, files: RunnerFiles, to: Span, ptr: number, written: Written[], clock: Clock): Promise<void> {
  const len = to.length;
  let from = performance.now();
  const hash = m.hashAt(ptr, len);
  clock.add('hash', from);
  from = performance.now();
  const done = len === 0 ? true : await files.write(to.file, to.offset, m.u8(ptr, len));
  clock.add('write', from);
  const w: Written = { file: to.file, offset: to.offset, length: len, hash };
  if (!done) w.bytes = m.u8(ptr, len).slice();
  written.push(w);
}

function check(rc: number, what: string): void {
  if ((rc >>> 0) === 0xffffffff) throw new Error(`wasm kernels: ${what} rejected its codec`);
}

/** Does `src` cover the whole band in row-major order, and `dst` a contiguous run of the same size? */
function contiguous(b: Band, nO: number, nI: number, src: Place, dst: Place): boolean {
  return nO === b.rows && nI === b.cols && src.at === 0 && src.so === b.cols && src.si === 1 && dst.si === 1 && (dst.so === nI || nO === 1);
}

function elementBytes(c: Codec): number {
  const n = dataBytes(c, 1, 1);
  if (c.kind !== 'plain' || !(n === 1 || n === 2 || n === 4 || n === 8)) throw new Error(`internal: moving elements of ${JSON.stringify(c)}`);
  return n;
}

async function runStripe(m: WasmModule, files: RunnerFiles, u: StripeUnit, clock: Clock): Promise<UnitResult> {
  const addr = await readSpans(m, files, bandSpans(u.bands), clock);
  const bandAt: { data: number; scales: number }[] = [];
  let k = 0;
  for (const b of u.bands) bandAt.push({ data: addr[k++]!, scales: b.scales ? addr[k++]! : 0 });

  // Bands read through a strided region are decoded once each (for every output), into one buffer.
  const outputs = [u, ...(u.more ?? [])];
  const strided = new Set<number>();
  for (const o of outputs) {
    for (const p of o.pieces) {
      if (p.kind === 'mix') {
        for (const inp of p.inputs) if (inp.weight !== 0 && !contiguous(u.bands[inp.band]!, p.nO, p.nI, inp.src, p.dst)) strided.add(inp.band);
      } else if (p.kind === 'convert' && !contiguous(u.bands[p.band]!, p.nO, p.nI, p.src, p.dst)) strided.add(p.band);
    }
  }
  const decodedOffset = new Map<number, number>();
  let decodedBytes = 0;
  for (const i of strided) {
    decodedOffset.set(i, decodedBytes);
    decodedBytes += u.bands[i]!.rows * u.bands[i]!.cols * 4;
  }
  const decBase = strided.size > 0 ? m.slot('dec', Math.max(16, decodedBytes)) : 0;
  const done = new Set<number>();
  const decodedAt = (i: number): number => {
    const p = decBase + decodedOffset.get(i)!;
    if (!done.has(i)) {
      const b = u.bands[i]!;
      check(m.x.decode(m.desc('band', b.codec), bandAt[i]!.data, bandAt[i]!.scales, b.rows, b.cols, p), 'decode');
      done.add(i);
    }
    return p;
  };

  const written: Written[] = [];
  let bad = 0;
  for (const o of outputs) {
    const made = makeOutput(m, u, o, bandAt, decodedAt);
    bad += made.bad;
    await writeOut(m, files, o.data, made.data, written, clock);
    if (o.scales) await writeOut(m, files, o.scales, made.scales, written, clock);
  }
  return { written, bad };
}

/** One output of a stripe, made in the 'out' (and 'out.scales') slots: where, and how many values its codec could not hold. */
function makeOutput(
  m: WasmModule,
  u: StripeUnit,
  o: StripeOutput,
  bandAt: { data: number; scales: number }[],
  decodedAt: (band: number) => number,
): { bad: number; data: number; scales: number } {
  const n = u.slabs * u.rows * u.cols;
  const slabData = dataBytes(o.out, u.rows, u.cols);
  const slabScales = stripeScales(o.out, u.rows, u.cols).bytes;
  const outData = m.slot('out', Math.max(16, u.slabs * slabData));
  const outScales = slabScales > 0 ? m.slot('out.scales', u.slabs * slabScales) : 0;
  let bad = 0;
  const computed = o.pieces.some((p) => p.kind === 'mix' || p.kind === 'fill' || p.kind === 'convert');
  type Mix = Extract<Piece, { kind: 'mix' }>;
  /** Does every input of the mix with a weight cover its whole band, into a contiguous run? */
  const wholeBands = (p: Mix): boolean => p.inputs.every((inp) => inp.weight === 0 || contiguous(u.bands[inp.band]!, p.nO, p.nI, inp.src, p.dst));
  /** The mix's inputs with a weight, where the kernels find them. */
  const mixInputs = (p: Mix) =>
    p.inputs.filter((inp) => inp.weight !== 0).map((inp) => ({ codec: u.bands[inp.band]!.codec, data: bandAt[inp.band]!.data, scales: bandAt[inp.band]!.scales, weight: inp.weight }));
  // Plain output, every computed piece a mix of whole contiguous bands into a contiguous run: mixed
  // tile by tile straight into the output, the accumulator never leaving the stack.
  const tiled = computed && o.out.kind === 'plain' && o.pieces.every((p) => p.kind === 'move' || (p.kind === 'mix' && wholeBands(p)));
  // E4M3 output, each slab one mix of whole contiguous bands: mixed a row of blocks at a time, each
  // block's scale and codes made from a tile instead of an accumulator for the whole stripe.
  const slabValues = u.rows * u.cols;
  const slabs = o.pieces.map((p) => (p.kind === 'mix' && p.nO === u.rows && p.nI === u.cols && p.dst.at % slabValues === 0 && wholeBands(p) ? p.dst.at / slabValues : -1));
  const blocked = computed && m.mixesE4m3(o.out, u.rows, u.cols) && slabs.length === u.slabs && slabs.every((s) => s >= 0) && new Set(slabs).size === u.slabs;
  if (blocked) {
    o.pieces.forEach((p, i) => {
      if (p.kind !== 'mix') return;
      const rc = m.mixE4m3(mixInputs(p), u.rows, u.cols, o.out, outData + slabs[i]! * slabData, outScales + slabs[i]! * slabScales);
      check(rc, 'mix_e4m3');
      bad += rc;
    });
  } else if (tiled) {
    const e = elementBytes(o.out);
    for (const p of o.pieces) {
      if (p.kind === 'mix') check(m.mixTiled(mixInputs(p), p.nO, p.nI, o.out, outData + p.dst.at * e), 'mix_tiled');
    }
  } else if (computed) {
    const acc = m.slot('acc', Math.max(16, n * 4));
    m.x.fill_zero(acc, n);
    for (const p of o.pieces) {
      if (p.kind === 'mix') {
        for (const inp of p.inputs) {
          if (inp.weight === 0) continue;
          const b = u.bands[inp.band]!;
          const w = Math.fround(inp.weight);
          if (contiguous(b, p.nO, p.nI, inp.src, p.dst)) {
            check(m.x.accumulate(m.desc('band', b.codec), bandAt[inp.band]!.data, bandAt[inp.band]!.scales, b.rows, b.cols, w, acc + p.dst.at * 4, 0), 'accumulate');
          } else {
            const d = decodedAt(inp.band);
            m.x.accumulate_strided(d + inp.src.at * 4, inp.src.so, inp.src.si, acc + p.dst.at * 4, p.dst.so, p.dst.si, p.nO, p.nI, w);
          }
        }
      } else if (p.kind === 'convert') {
        const b = u.bands[p.band]!;
        if (contiguous(b, p.nO, p.nI, p.src, p.dst)) {
          check(m.x.decode(m.desc('band', b.codec), bandAt[p.band]!.data, bandAt[p.band]!.scales, b.rows, b.cols, acc + p.dst.at * 4), 'decode');
        } else {
          const d = decodedAt(p.band);
          m.x.strided_copy(d + p.src.at * 4, acc + p.dst.at * 4, 4, p.nO, p.nI, p.src.so, p.src.si, p.dst.so, p.dst.si);
        }
      } else if (p.kind === 'fill') {
        const v = m.f32(acc, n);
        for (let oo = 0; oo < p.nO; oo++) for (let i = 0; i < p.nI; i++) v[p.dst.at + oo * p.dst.so + i * p.dst.si] = p.value;
      }
    }
    const desc = m.desc('out', o.out);
    if (o.out.kind === 'plain') {
      check(m.x.encode(desc, acc, 1, n, outData, 0), 'encode');
    } else {
      for (let s = 0; s < u.slabs; s++) {
        const rc = m.x.encode(desc, acc + s * u.rows * u.cols * 4, u.rows, u.cols, outData + s * slabData, outScales + s * slabScales) >>> 0;
        check(rc, 'encode');
        bad += rc;
      }
    }
  }
  for (const p of o.pieces) {
    if (p.kind === 'move') {
      const e = elementBytes(o.out);
      check(m.x.strided_copy(bandAt[p.band]!.data + p.src.at * e, outData + p.dst.at * e, e, p.nO, p.nI, p.src.so, p.src.si, p.dst.so, p.dst.si), 'strided_copy');
    } else if (p.kind === 'rows') {
      moveRows(m, u, o, p, u.bands[p.band]!, bandAt[p.band]!, outData + p.slab * slabData, outScales + p.slab * slabScales);
    }
  }
  return { bad, data: outData, scales: outScales };
}

/** Stored rows (and their scale entries) moved from a band into the output, as bytes. */
function moveRows(m: WasmModule, u: StripeUnit, o: StripeOutput, p: Extract<Piece, { kind: 'rows' }>, b: Band, at: { data: number; scales: number }, outData: number, outScales: number): void {
  const c = o.out;
  if (p.srcStep === 1 && p.dstStep === 1) {
    // Whole scale blocks: the rows' bytes and their block rows, each one contiguous run.
    const data = dataBytes(c, p.rows, u.cols);
    check(m.x.strided_copy(at.data + dataBytes(c, p.srcRow, b.cols), outData + dataBytes(c, p.dstRow, u.cols), 1, 1, data, 0, 1, 0, 1), 'strided_copy');
    const sc = stripeScales(c, p.rows, u.cols).bytes;
    if (sc > 0) {
      check(m.x.strided_copy(at.scales + stripeScales(c, p.srcRow, b.cols).bytes, outScales + stripeScales(c, p.dstRow, u.cols).bytes, 1, 1, sc, 0, 1, 0, 1), 'strided_copy');
    }
    return;
  }
  const rowData = dataBytes(c, 1, u.cols);
  check(m.x.strided_copy(at.data + p.srcRow * rowData, outData + p.dstRow * rowData, 1, p.rows, rowData, p.srcStep * rowData, 1, p.dstStep * rowData, 1), 'strided_copy');
  const rowScales = stripeScales(c, 1, u.cols).bytes;
  if (rowScales > 0) {
    check(m.x.strided_copy(at.scales + p.srcRow * rowScales, outScales + p.dstRow * rowScales, 1, p.rows, rowScales, p.srcStep * rowScales, 1, p.dstStep * rowScales, 1), 'strided_copy');
  }
}

async function runCopy(m: WasmModule, files: RunnerFiles, u: Extract<Unit, { kind: 'copy' }>, clock: Clock): Promise<UnitResult> {
  const addr = await readSpans(m, files, u.parts.map((p) => p.from), clock);
  // Destinations that follow each other are written as one range.
  const runs: { to: Span; parts: number[] }[] = [];
  u.parts.forEach((p, i) => {
    const r = runs[runs.length - 1];
    if (r && r.to.file === p.to.file && r.to.offset + r.to.length === p.to.offset) {
      r.to = { file: r.to.file, offset: r.to.offset, length: r.to.length + p.to.length };
      r.parts.push(i);
    } else runs.push({ to: { file: p.to.file, offset: p.to.offset, length: p.to.length }, parts: [i] });
  });
  const written: Written[] = [];
  for (const r of runs) {
    let ptr = addr[r.parts[0]!]!;
    const inPlace = r.parts.every((i, k) => k === 0 || addr[i] === addr[r.parts[k - 1]!]! + u.parts[r.parts[k - 1]!]!.from.length);
    if (!inPlace) {
      ptr = m.slot('out', Math.max(16, r.to.length));
      let o = 0;
      for (const i of r.parts) {
        const len = u.parts[i]!.from.length;
        m.x.strided_copy(addr[i]!, ptr + o, 1, 1, len, 0, 1, 0, 1);
        o += len;
      }
    }
    await writeOut(m, files, r.to, ptr, written, clock);
  }
  return { written, bad: 0 };
}

async function runDiff(m: WasmModule, files: RunnerFiles, u: Extract<Unit, { kind: 'diff' }>, clock: Clock): Promise<UnitResult> {
  const addr = await readSpans(m, files, bandSpans(u.bands), clock);
  const at: { data: number; scales: number }[] = [];
  let k = 0;
  for (const b of u.bands) at.push({ data: addr[k++]!, scales: b.scales ? addr[k++]! : 0 });
  const out = m.slot('stats', 64);
  const n = u.nO * u.nI;
  if (n > 0) {
    const A = u.bands[u.a.band]!;
    const B = u.bands[u.b.band]!;
    const whole = (b: Band, src: Place) => u.nO === b.rows && u.nI === b.cols && src.at === 0 && src.so === b.cols && src.si === 1;
    if (whole(A, u.a.src) && whole(B, u.b.src)) {
      const da = m.desc('a', A.codec);
      const db = m.desc('b', B.codec);
      check(m.x.diff(da, at[u.a.band]!.data, at[u.a.band]!.scales, db, at[u.b.band]!.data, at[u.b.band]!.scales, u.nO, u.nI, out), 'diff');
    } else {
      // Each region decoded and gathered into nO × nI values, then compared as F32.
      const gather = (side: 'a' | 'b', b: Band, i: number, src: Place): number => {
        const dec = m.slot(`dec.${side}`, Math.max(16, b.rows * b.cols * 4));
        check(m.x.decode(m.desc(side, b.codec), at[i]!.data, at[i]!.scales, b.rows, b.cols, dec), 'decode');
        const g = m.slot(`gather.${side}`, Math.max(16, n * 4));
        m.x.strided_copy(dec + src.at * 4, g, 4, u.nO, u.nI, src.so, src.si, u.nI, 1);
        return g;
      };
      const ga = gather('a', A, u.a.band, u.a.src);
      const gb = gather('b', B, u.b.band, u.b.src);
      const d = m.desc('f32', F32);
      check(m.x.diff(d, ga, 0, d, gb, 0, u.nO, u.nI, out), 'diff');
    }
  }
  const s = n > 0 ? new Float64Array(m.x.memory.buffer, out, 7) : new Float64Array(7);
  return { written: [], bad: 0, stats: { count: s[0]!, nonFinite: s[1]!, sumSqDiff: s[2]!, sumSqA: s[3]!, sumSqB: s[4]!, dot: s[5]!, maxAbsDiff: s[6]! } };
}

export async function runUnit(m: WasmModule, files: RunnerFiles, u: Unit): Promise<UnitResult> {
  const clock = new Clock();
  const r = await runTimed(m, files, u, clock);
  r.time = clock.finish();
  r.memory = m.x.memory.buffer.byteLength;
  return r;
}

async function runTimed(m: WasmModule, files: RunnerFiles, u: Unit, clock: Clock): Promise<UnitResult> {
  switch (u.kind) {
    case 'stripe':
      return runStripe(m, files, u, clock);
    case 'copy':
      return runCopy(m, files, u, clock);
    case 'diff':
      return runDiff(m, files, u, clock);
    case 'bytes': {
      const ptr = m.put('out', u.bytes);
      const written: Written[] = [];
      await writeOut(m, files, u.to, ptr, written, clock);
      return { written, bad: 0 };
    }
  }
}
