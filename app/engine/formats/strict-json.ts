// A JSON parser exactly as strict as serde_json, which the reference safetensors reader uses:
// no byte-order mark, no duplicate keys, and numbers keep how they were written, so a header
// that says `"data_offsets": [0, 2.0]` (a float where serde wants an integer) can be refused
// instead of being read as 2 the way JSON.parse would.
//
// Objects come back as Maps (keys in file order), so no key from a file ever touches an object
// prototype (`__proto__` is a key like any other).

/** A number written with a fraction or an exponent (`2.0`, `1e3`): never an integer to serde. */
export class JsonFloat {
  constructor(
    readonly value: number,
    readonly text: string,
  ) {}
  toString(): string {
    return this.text;
  }
}

/** An integer literal too large to hold exactly in a double (above 2^53). */
export class JsonBigInteger {
  constructor(readonly text: string) {}
  toString(): string {
    return this.text;
  }
}

export type JsonValue = null | boolean | number | JsonFloat | JsonBigInteger | string | JsonValue[] | JsonObject;
export type JsonObject = Map<string, JsonValue>;

export class JsonSyntaxError extends Error {
  constructor(
    message: string,
    readonly offset: number,
  ) {
    super(`${message} at character ${offset}`);
    this.name = 'JsonSyntaxError';
  }
}

const MAX_DEPTH = 128;

/** Parses JSON text; throws JsonSyntaxError naming what is wrong and where. */
export function parseStrictJson(text: string): JsonValue {
  let i = 0;
  const n = text.length;
  const fail = (msg: string, at = i): never => {
    throw new JsonSyntaxError(msg, at);
  };
  const ws = () => {
    while (i < n) {
      const c = text.charCodeAt(i);
      if (c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09) i++;
      else break;
    }
  };
  const value = (depth: number): JsonValue => {
    if (depth > MAX_DEPTH) fail(`nesting deeper than ${MAX_DEPTH}`);
    ws();
    if (i >= n) fail('unexpected end of input');
    const c = text.charCodeAt(i);
    if (c === 0x7b) return object(depth);
    if (c === 0x5b) return array(depth);
    if (c === 0x22) return string();
    if (c === 0x2d || (c >= 0x30 && c <= 0x39)) return number();
    if (text.startsWith('true', i)) {
      i += 4;
      return true;
    }
    if (text.startsWith('false', i)) {
      i += 5;
      return false;
    }
    if (text.startsWith('null', i)) {
      i += 4;
      return null;
    }
    if (c === 0xfeff) fail('a byte-order mark is not allowed');
    return fail(`unexpected character ${JSON.stringify(text[i])}`);
  };
  const object = (depth: number): JsonObject => {
    const out: JsonObject = new Map();
    i++; // {
    ws();
    if (text.charCodeAt(i) === 0x7d) {
      i++;
      return out;
    }
    for (;;) {
      ws();
      if (text.charCodeAt(i) !== 0x22) fail('expected a string key');
      const at = i;
      const key = string();
      if (out.has(key)) fail(`duplicate key ${JSON.stringify(key)}`, at);
      ws();
      if (text.charCodeAt(i) !== 0x3a) fail('expected ":"');
      i++;
      out.set(key, value(depth + 1));
      ws();
      const d = text.charCodeAt(i);
      if (d === 0x2c) {
        i++;
        continue;
      }
      if (d === 0x7d) {
        i++;
        return out;
      }
      fail('expected "," or "}"');
    }
  };
  const array = (depth: number): JsonValue[] => {
    const out: JsonValue[] = [];
    i++; // [
    ws();
    if (text.charCodeAt(i) === 0x5d) {
      i++;
      return out;
    }
    for (;;) {
      out.push(value(depth + 1));
      ws();
      const d = text.charCodeAt(i);
      if (d === 0x2c) {
        i++;
        continue;
      }
      if (d === 0x5d) {
        i++;
        return out;
      }
      fail('expected "," or "]"');
    }
  };
  const string = (): string => {
    const start = ++i; // opening quote
    // Fast path: no escapes.
    while (i < n) {
      const c = text.charCodeAt(i);
      if (c === 0x22) {
        i++;
        return text.slice(start, i - 1);
      }
      if (c === 0x5c) break;
      if (c < 0x20) fail('control character in a string');
      i++;
    }
    let out = text.slice(start, i);
    while (i < n) {
      const c = text.charCodeAt(i);
      if (c === 0x22) {
        i++;
        return out;
      }
      if (c < 0x20) fail('control character in a string');
      if (c !== 0x5c) {
        out += text[i];
        i++;
        continue;
      }
      const e = text[i + 1];
      i += 2;
      switch (e) {
        case '"': out += '"'; break;
        case '\\': out += '\\'; break;
        case '/': out += '/'; break;
        case 'b': out += '\b'; break;
        case 'f': out += '\f'; break;
        case 'n': out += '\n'; break;
        case 'r': out += '\r'; break;
        case 't': out += '\t'; break;
        case 'u': {
          const hex = text.slice(i, i + 4);
          if (!/^[0-9a-fA-F]{4}$/.test(hex)) fail('bad \\u escape');
          out += String.fromCharCode(parseInt(hex, 16));
          i += 4;
          break;
        }
        default:
          fail('bad escape in a string', i - 2);
      }
    }
    return fail('unterminated string');
  };
  const NUMBER = /-?(?:0|[1-9]\d*)(\.\d+)?([eE][+-]?\d+)?/y;
  const number = (): number | JsonFloat | JsonBigInteger => {
    NUMBER.lastIndex = i;
    const m = NUMBER.exec(text);
    if (!m) return fail('bad number');
    const t = m[0];
    i += t.length;
    const v = Number(t);
    if (m[1] !== undefined || m[2] !== undefined) return new JsonFloat(v, t);
    if (!Number.isSafeInteger(v)) return new JsonBigInteger(t);
    return v;
  };

  if (n > 0 && text.charCodeAt(0) === 0xfeff) fail('a byte-order mark is not allowed', 0);
  const v = value(0);
  ws();
  if (i < n) fail('trailing characters after the JSON value');
  return v;
}

/** How a value reads in an error message (floats as written, long text cut). */
export function jsonText(v: JsonValue | undefined, max = 80): string {
  let s: string;
  if (v === undefined) s = 'missing';
  else if (v instanceof JsonFloat || v instanceof JsonBigInteger) s = v.text;
  else if (v instanceof Map) s = `{${[...v.keys()].map((k) => JSON.stringify(k)).join(', ')}}`;
  else if (Array.isArray(v)) s = `[${v.map((x) => jsonText(x, max)).join(', ')}]`;
  else s = JSON.stringify(v);
  return s.length > max ? `${s.slice(0, max - 1)}…` : s;
}
