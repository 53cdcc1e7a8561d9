import { promises as fsp } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { NodeModelFolder } from '../app/cli/node-io.ts';
import {
  MAX_HEADER_BYTES,
  buildSafetensorsHeader,
  readSafetensorsHeader,
  referenceTensorOrder,
  type HeaderEntry,
} from '../app/engine/formats/safetensors.ts';
import { MoeError, type ByteSource } from '../app/engine/io.ts';
import * as corrupt from '../app/fixtures/corrupt.ts';
import { writeFixtureModel } from '../app/fixtures/generate.ts';

class MemSource implements ByteSource {
  constructor(
    readonly name: string,
    readonly bytes: Uint8Array,
  ) {}
  get size() {
    return this.bytes.length;
  }
  async read(offset: number, length: number) {
    return this.bytes.slice(offset, offset + length);
  }
}

function assemble(built: ReturnType<typeof buildSafetensorsHeader>, data: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(built.header.length + built.dataLength);
  out.set(built.header, 0);
  let pos = built.header.length;
  built.offsets.forEach((o, i) => {
    expect(pos - built.header.length).toBe(o.begin);
    out.set(data[i]!, pos);
    pos += data[i]!.length;
  });
  expect(pos).toBe(out.length);
  return out;
}

const text = (b: Uint8Array) => new TextDecoder().decode(b);

describe('buildSafetensorsHeader / readSafetensorsHeader round trip', () => {
  const entries: HeaderEntry[] = [
    { name: 'a.weight', dtype: 'BF16', shape: [3, 5], length: 30 },
    { name: 'b.bias', dtype: 'F32', shape: [7], length: 28 },
    { name: 'c.weight', dtype: 'F8_E4M3', shape: [3, 3], length: 9 },
    { name: 'c.weight_scale_inv', dtype: 'F32', shape: [1, 1], length: 4 },
    { name: 'empty', dtype: 'F16', shape: [0, 4], length: 0 },
    { name: 'scalar', dtype: 'I64', shape: [], length: 8 },
  ];
  const data = entries.map((e, i) => new Uint8Array(e.length).fill(i + 1));

  it('writes back-to-back tensors by default, in the given order, and reads them back', async () => {
    const built = buildSafetensorsHeader(entries, { format: 'pt', note: 'x' });
    expect(built.header.length % 8).toBe(0);
    expect(built.offsets.map((o) => o.name)).toEqual(entries.map((e) => e.name));
    expect(built.dataLength).toBe(entries.reduce((a, e) => a + e.length, 0));
    const json = text(built.header.subarray(8)).trimEnd();
    expect(json.startsWith('{"__metadata__":{"format":"pt","note":"x"},"a.weight":{"dtype":"BF16","shape":[3,5],"data_offsets":[0,30]}')).toBe(true);
    expect(json).not.toMatch(/\s/);

    const file = assemble(built, data);
    const h = await readSafetensorsHeader(new MemSource('one.safetensors', file));
    expect(h.metadata).toEqual(new Map([['format', 'pt'], ['note', 'x']]));
    expect(h.dataStart).toBe(built.header.length);
    // Tensors come back in offset order; the zero-length one sorts before the one at its offset.
    const byName = new Map(h.tensors.map((t) => [t.name, t]));
    entries.forEach((e, i) => {
      const t = byName.get(e.name)!;
      expect(t.dtype).toBe(e.dtype);
      expect(t.shape).toEqual(e.shape);
      expect(t.length).toBe(e.length);
      expect(t.offset).toBe(h.dataStart + built.offsets[i]!.begin);
      expect(t.file).toBe('one.safetensors');
      expect([...file.subarray(t.offset, t.offset + t.length)]).toEqual([...data[i]!]);
    });
  });

  it('writes and reads back any tensor name, __proto__ and control characters included', async () => {
    const odd: HeaderEntry[] = [
      { name: '__proto__', dtype: 'BF16', shape: [2], length: 4 },
      { name: 'constructor', dtype: 'U8', shape: [1], length: 1 },
      { name: 'line\nbreak\u001b[31m', dtype: 'U8', shape: [1], length: 1 },
    ];
    const built = buildSafetensorsHeader(odd, new Map([['__proto__', 'x']]));
    const file = assemble(built, odd.map((e) => new Uint8Array(e.length).fill(7)));
    const h = await readSafetensorsHeader(new MemSource('odd.safetensors', file));
    expect(h.tensors.map((t) => t.name).sort()).toEqual(odd.map((e) => e.name).sort());
    expect(h.metadata.get('__proto__')).toBe('x');
  });

  it('matches the reference writer byte for byte on its own examples', () => {
    const f32 = buildSafetensorsHeader([{ name: 'attn.0', dtype: 'F32', shape: [1, 2, 3], length: 24 }]);
    const json = '{"attn.0":{"dtype":"F32","shape":[1,2,3],"data_offsets":[0,24]}}';
    expect(f32.header.length).toBe(8 + 64);
    expect(f32.header[0]).toBe(64);
    expect(text(f32.header.subarray(8))).toBe(json.padEnd(64, ' '));
    const empty = buildSafetensorsHeader([]);
    expect([...empty.header]).toEqual([8, 0, 0, 0, 0, 0, 0, 0, 123, 125, 32, 32, 32, 32, 32, 32]);
    const meta = buildSafetensorsHeader([], { framework: 'pt' });
    expect(meta.header[0]).toBe(40);
    expect(text(meta.header.subarray(8))).toBe('{"__metadata__":{"framework":"pt"}}     ');
  });

  it('orders like the reference writer on request (its Dtype enum descending, then name by code point)', () => {
    const order = referenceTensorOrder(entries).map((e) => e.name);
    expect(order).toEqual(['scalar', 'b.bias', 'c.weight_scale_inv', 'a.weight', 'empty', 'c.weight']);
    // Same element size, different enum positions: F32 before U32 before I32; U8 after every 1-byte float.
    const same = referenceTensorOrder([
      { name: 'a', dtype: 'I32' }, { name: 'b', dtype: 'U32' }, { name: 'c', dtype: 'F32' },
      { name: 'd', dtype: 'U8' }, { name: 'e', dtype: 'F8_E8M0' }, { name: 'f', dtype: 'I8' },
    ]).map((e) => e.name);
    expect(same).toEqual(['c', 'b', 'a', 'e', 'f', 'd']);
    // Names compare by code point (Rust's order), not by UTF-16 unit: U+FF5E sorts before U+1F600.
    expect(referenceTensorOrder([{ name: '\u{1F600}', dtype: 'U8' }, { name: '\uFF5E', dtype: 'U8' }]).map((e) => e.name)).toEqual(['\uFF5E', '\u{1F600}']);
  });

  it('refuses inconsistent entries', () => {
    expect(() => buildSafetensorsHeader([{ name: 'x', dtype: 'BF16', shape: [2], length: 3 }])).toThrow(/x.*length is 3/);
    expect(() => buildSafetensorsHeader([{ name: 'x', dtype: 'Q4', shape: [2], length: 2 }])).toThrow(/unknown dtype/);
    expect(() =>
      buildSafetensorsHeader([
        { name: 'x', dtype: 'U8', shape: [1], length: 1 },
        { name: 'x', dtype: 'U8', shape: [1], length: 1 },
      ]),
    ).toThrow(/twice/);
    expect(() => buildSafetensorsHeader([{ name: '__metadata__', dtype: 'U8', shape: [1], length: 1 }])).toThrow(MoeError);
  });
});

describe('readSafetensorsHeader validation', () => {
  let root: string;
  let pristine: string;
  let dir: string;
  let file: string;
  const folders: NodeModelFolder[] = [];

  beforeAll(async () => {
    root = await fsp.mkdtemp(path.join(os.tmpdir(), 'moe-st-'));
    pristine = path.join(root, 'pristine');
    await writeFixtureModel(pristine, { family: 'mixtral', hidden: 16, moeIntermediate: 24, layers: 1, experts: 2, vocab: 32, single: true });
  });
  afterAll(async () => {
    for (const f of folders) await f.close();
    await fsp.rm(root, { recursive: true, force: true });
  });
  let n = 0;
  beforeEach(async () => {
    dir = await corrupt.copyModel(pristine, path.join(root, `case-${n++}`));
    file = path.join(dir, 'model.safetensors');
  });

  async function readErr(): Promise<MoeError> {
    const folder = new NodeModelFolder(dir);
    folders.push(folder);
    const src = await folder.open('model.safetensors');
    try {
      await readSafetensorsHeader(src);
    } catch (e) {
      expect(e).toBeInstanceOf(MoeError);
      const err = e as MoeError;
      expect(err.file).toBe(file);
      expect(err.message.startsWith(`${file}: `)).toBe(true);
      return err;
    }
    throw new Error('expected readSafetensorsHeader to fail');
  }

  it('reads the pristine fixture', async () => {
    const folder = new NodeModelFolder(dir);
    folders.push(folder);
    const h = await readSafetensorsHeader(await folder.open('model.safetensors'));
    expect(h.tensors.length).toBeGreaterThan(10);
    expect(h.metadata).toEqual(new Map([['format', 'pt']]));
    // What the reference reader demands: tensors back to back from the data start to the end of the file.
    let pos = h.dataStart;
    for (const t of h.tensors) {
      expect(t.offset).toBe(pos);
      pos += t.length;
    }
    expect(pos).toBe((await fsp.stat(file)).size);
  });

  it('file shorter than 8 bytes', async () => {
    await fsp.writeFile(file, new Uint8Array(5));
    expect((await readErr()).message).toMatch(/5 bytes, too small/);
  });

  it('header length past end of file', async () => {
    const size = (await fsp.stat(file)).size;
    await corrupt.setHeaderLength(file);
    expect((await readErr()).message).toContain(`header length ${size} runs past end of file (size ${size})`);
  });

  it('header longer than 100 MB', async () => {
    await corrupt.setHeaderLength(file, MAX_HEADER_BYTES + 1);
    expect((await readErr()).message).toMatch(/larger than the 100000000-byte limit/);
  });

  it('header that is not JSON', async () => {
    await corrupt.badJsonHeader(file);
    expect((await readErr()).message).toMatch(/header is not valid JSON/);
  });

  it('header that is not UTF-8', async () => {
    await corrupt.badUtf8Header(file);
    expect((await readErr()).message).toMatch(/not valid UTF-8/);
  });

  it('header that is not an object', async () => {
    const raw = await corrupt.readRawShard(file);
    await corrupt.writeRawShard(file, '[1,2,3]', raw.data);
    expect((await readErr()).message).toMatch(/header JSON is not an object/);
  });

  it('entry that is not an object', async () => {
    await corrupt.rewriteHeader(file, (j) => {
      j['model.norm.weight'] = 'nope';
    });
    const err = await readErr();
    expect(err.tensor).toBe('model.norm.weight');
    expect(err.message).toContain('tensor model.norm.weight: header entry is not an object');
  });

  it('unknown dtype', async () => {
    const { tensor } = await corrupt.unknownDtype(file);
    const err = await readErr();
    expect(err.tensor).toBe(tensor);
    expect(err.message).toBe(`${file}: tensor ${tensor}: unknown dtype "F12"`);
  });

  it('shape with a negative dimension', async () => {
    const { tensor } = await corrupt.badShape(file);
    const err = await readErr();
    expect(err.tensor).toBe(tensor);
    expect(err.message).toMatch(/shape \[-1.*not a list of non-negative integers/);
  });

  it('data_offsets that are not a pair', async () => {
    await corrupt.rewriteHeader(file, (j) => {
      (j['lm_head.weight'] as { data_offsets: unknown }).data_offsets = [0];
    });
    const err = await readErr();
    expect(err.tensor).toBe('lm_head.weight');
    expect(err.message).toMatch(/data_offsets \[0\] is not a pair/);
  });

  it('begin after end', async () => {
    const { tensor } = await corrupt.reversedOffsets(file);
    const err = await readErr();
    expect(err.tensor).toBe(tensor);
    expect(err.message).toMatch(/begin after end/);
  });

  it('shape × dtype size that does not match the bytes', async () => {
    const { tensor } = await corrupt.breakDtypeSize(file);
    const err = await readErr();
    expect(err.tensor).toBe(tensor);
    expect(err.message).toMatch(/× F32 \(32 bits\) = \d+ bytes, but data_offsets \[\d+, \d+\] hold \d+/);
  });

  it('tensor ending past the end of the file', async () => {
    const { tensor } = await corrupt.offsetsPastEnd(file);
    const size = (await fsp.stat(file)).size;
    const err = await readErr();
    expect(err.tensor).toBe(tensor);
    expect(err.message).toMatch(new RegExp(`tensor ${tensor.replace(/\./g, '\\.')}: data_offsets \\[\\d+, \\d+\\] end past end of file \\(size ${size}`));
  });

  it('truncated shard', async () => {
    const { tensor, size } = await corrupt.truncateShard(file);
    const err = await readErr();
    expect(err.tensor).toBe(tensor);
    expect(err.message).toContain(`end past end of file (size ${size}`);
  });

  it('overlapping tensors', async () => {
    const { tensor, other } = await corrupt.makeOverlap(file);
    const err = await readErr();
    expect(err.tensor).toBe(tensor);
    expect(err.message).toContain(`overlap tensor ${other}`);
  });

  it('__metadata__ with a non-string value', async () => {
    await corrupt.nonStringMetadata(file);
    expect((await readErr()).message).toMatch(/__metadata__ value for "step" is 1000, not a string/);
  });

  // As strict as the reference reader (serde_json + Metadata::validate): what it refuses, refused here.
  it('refuses a gap between tensors', async () => {
    await corrupt.rewriteHeader(file, (j) => {
      delete j['model.norm.weight'];
    });
    expect((await readErr()).message).toMatch(/leave a gap of \d+ bytes after .*back to back/);
  });

  it('refuses bytes after the last tensor', async () => {
    await corrupt.appendTrailingBytes(file, 16);
    expect((await readErr()).message).toMatch(/16 bytes after the last tensor's data/);
  });

  it('refuses a duplicate tensor name (JSON.parse would keep the last one)', async () => {
    await corrupt.replaceHeaderText(file, (t) => t.replace('{', '{"lm_head.weight":{"dtype":"U8","shape":[0],"data_offsets":[0,0]},'));
    expect((await readErr()).message).toMatch(/not valid JSON \(duplicate key "lm_head.weight"/);
  });

  it('refuses offsets written as 2.0 (a float where the reference wants an integer)', async () => {
    let tensor = '';
    await corrupt.replaceHeaderText(file, (t) =>
      t.replace(/"([^"]+)":\{"dtype":"[^"]+","shape":\[[^\]]*\],"data_offsets":\[(\d+),/, (m, name: string, b: string) => {
        tensor = name;
        return m.replace(`[${b},`, `[${b}.0,`);
      }),
    );
    const err = await readErr();
    expect(err.tensor).toBe(tensor);
    expect(err.message).toMatch(/data_offsets \[\d+\.0, \d+\] is not a pair of non-negative integers/);
  });

  it('refuses a byte-order mark before the JSON', async () => {
    await corrupt.replaceHeaderText(file, (t) => `\uFEFF${t}`);
    expect((await readErr()).message).toMatch(/byte-order mark/);
  });

  it('accepts __metadata__: null, as the reference does', async () => {
    await corrupt.rewriteHeader(file, (j) => {
      j['__metadata__'] = null;
    });
    const folder = new NodeModelFolder(dir);
    folders.push(folder);
    const h = await readSafetensorsHeader(await folder.open('model.safetensors'));
    expect(h.metadata.size).toBe(0);
  });

  it('names control characters in a tensor name as escapes, on one line', async () => {
    await corrupt.rewriteHeader(file, (j) => {
      j['evil\nname\u001b[2J'] = 'nope';
    });
    const err = await readErr();
    expect(err.message).toContain('tensor evil\\nname\\u001b[2J: header entry is not an object');
    expect(err.message).not.toMatch(/[\n\u001b]/);
  });
});
