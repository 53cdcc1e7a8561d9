// The child's non-tensor files: its config.json, and which of the base's files are copied as they are.
import type { Model } from '../model/types.ts';
import type { PlannedTensor } from './types.ts';

const TORCH_DTYPE: Record<string, string> = { BF16: 'bfloat16', F16: 'float16', F32: 'float32' };

/** Files the engine writes itself, or that belong to the weights: never copied from the base. */
const OWN_FILES = new Set(['config.json', 'model.safetensors.index.json', 'README.md', 'moe-studio-recipe.yaml', '.gitattributes']);
/** Weights in other formats: not part of a safetensors child. */
const OTHER_WEIGHT_FILE = /\.(safetensors|bin|pt|pth|ckpt|gguf|h5|msgpack|onnx|npz)$/i;

/**
 * Tokenizer, generation config, chat template, remote-code modules and licence files from the base,
 * copied byte for byte: the child must load exactly as the base does.
 */
export function filesToCopy(base: Model): string[] {
  return base.otherFiles.filter((f) => !OWN_FILES.has(f) && !OTHER_WEIGHT_FILE.test(f) && !f.startsWith('.')).sort();
}

/**
 * The base's config, with its dtype set to what the child holds, `quantization_config` removed
 * once no quantized weight is left, and every key stating the routed expert count rewritten when
 * experts were removed or added. When nothing changes the base's own bytes are kept.
 */
export function childConfig(base: Model, tensors: PlannedTensor[], experts: number, baseConfigBytes?: Uint8Array): { config: Record<string, unknown>; configBytes: Uint8Array } {
  const config: Record<string, unknown> = structuredCloneJson(base.config);
  let changed = false;
  const quantized = tensors.some((t) => t.codec.kind !== 'plain' || t.codec.dtype === 'F8_E4M3');
  if (!quantized && 'quantization_config' in config) {
    delete config.quantization_config;
    changed = true;
  }
  if (experts !== base.layout.experts) {
    for (const root of base.arch.configRoots) {
      for (const key of base.arch.config.experts) {
        const path = (root ? `${root}.${key}` : key).split('.');
        let obj: unknown = config;
        for (const part of path.slice(0, -1)) obj = isObject(obj) ? obj[part] : undefined;
        const last = path[path.length - 1]!;
        if (isObject(obj) && Object.prototype.hasOwnProperty.call(obj, last) && typeof obj[last] === 'number') {
          obj[last] = experts;
          changed = true;
        }
      }
    }
  }
  // The dominant float dtype among large tensors names the config's torch_dtype.
  const bytesByDtype = new Map<string, number>();
  for (const t of tensors) {
    for (const s of t.stored) if (TORCH_DTYPE[s.dtype]) bytesByDtype.set(s.dtype, (bytesByDtype.get(s.dtype) ?? 0) + s.bytes);
  }
  const baseBytesByDtype = new Map<string, number>();
  for (const w of base.weights) if (TORCH_DTYPE[w.data.dtype]) baseBytesByDtype.set(w.data.dtype, (baseBytesByDtype.get(w.data.dtype) ?? 0) + w.data.length);
  const dominant = (m: Map<string, number>) => [...m.entries()].sort((a, b) => b[1] - a[1])[0]?.[0];
  const childDtype = dominant(bytesByDtype);
  if (childDtype && childDtype !== dominant(baseBytesByDtype)) {
    for (const key of ['torch_dtype', 'dtype']) {
      if (key in config || key === 'torch_dtype') config[key] = TORCH_DTYPE[childDtype];
    }
    changed = true;
  }
  const bytes = !changed && baseConfigBytes ? baseConfigBytes : new TextEncoder().encode(JSON.stringify(config, null, 2) + '\n');
  return { config, configBytes: bytes };
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function structuredCloneJson<T>(v: T): T {
  return JSON.parse(JSON.stringify(v)) as T;
}
