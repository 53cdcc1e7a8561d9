// What the CLI `inspect` command and the studio show about one opened model.
import { elementCount } from '../formats/dtype.ts';
import { rangeText } from '../report/format.ts';
import { TENSOR_KINDS, type Model, type TensorKind } from './types.ts';

export interface ModelSummary {
  name: string;
  /** Architecture family (families.json name, or "generic"). */
  family: string;
  modelType?: string;
  architectures?: string[];
  layers: number;
  denseLayers: number[];
  moeLayers: number[];
  /** Extra multi-token-prediction layers (DeepSeek-V3 layer 61). */
  mtpLayers: number[];
  experts: number;
  expertsPerToken?: number;
  sharedExperts: number;
  hiddenSize?: number;
  vocabSize?: number;
  routerBias: 'selection_only' | 'none';
  /** Routed experts over all MoE and MTP layers. */
  totalRoutedExperts: number;
  /** Per dtype of the weights (scales counted under their own dtype, F32). */
  dtypes: Record<string, { tensors: number; bytes: number }>;
  /** Weights per kind. */
  kinds: Record<TensorKind, number>;
  /** Elements of all weights; block scales excluded. */
  parameters: number;
  /** Elements of routed expert weights. */
  routedParameters: number;
  sizeOnDisk: number;
  shards: number;
  /** Tensors in the files, scales included. */
  tensors: number;
  /** Weights (scales ride with them). */
  weights: number;
  /** FP8 block-scale tensors. */
  scales: number;
  /** F8_E4M3 weights without a block scale. */
  unscaledFp8: number;
  /** config.json quantization_config.quant_method, if any. */
  quantization?: string;
  otherFiles: string[];
  warnings: string[];
}

export function summarizeModel(model: Model): ModelSummary {
  const dtypes: Record<string, { tensors: number; bytes: number }> = {};
  const add = (dtype: string, bytes: number) => {
    const d = (dtypes[dtype] ??= { tensors: 0, bytes: 0 });
    d.tensors++;
    d.bytes += bytes;
  };
  const kinds = Object.fromEntries(TENSOR_KINDS.map((k) => [k, 0])) as Record<TensorKind, number>;
  let parameters = 0;
  let routedParameters = 0;
  let scales = 0;
  let unscaledFp8 = 0;
  for (const w of model.weights) {
    add(w.data.dtype, w.data.length);
    if (w.scale) {
      add(w.scale.dtype, w.scale.length);
      scales++;
    }
    if (w.unscaledFp8) unscaledFp8++;
    kinds[w.role.kind]++;
    const n = elementCount(w.data.shape);
    parameters += n;
    if (w.role.kind === 'routed_expert') routedParameters += n;
  }
  const l = model.layout;
  const cfg = model.config;
  const mtp = l.mtpLayers ?? [];
  const s: ModelSummary = {
    name: model.name,
    family: model.arch.name,
    layers: l.layers,
    denseLayers: [...l.denseLayers],
    moeLayers: [...l.moeLayers],
    mtpLayers: [...mtp],
    experts: l.experts,
    sharedExperts: l.sharedExperts,
    routerBias: model.arch.routerBias,
    totalRoutedExperts: l.experts * (l.moeLayers.length + mtp.length),
    dtypes,
    kinds,
    parameters,
    routedParameters,
    sizeOnDisk: model.sizeOnDisk,
    shards: model.shards.length,
    tensors: model.weights.length + scales,
    weights: model.weights.length,
    scales,
    unscaledFp8,
    otherFiles: [...model.otherFiles],
    warnings: [...(model.warnings ?? [])],
  };
  if (typeof cfg['model_type'] === 'string') s.modelType = cfg['model_type'];
  if (Array.isArray(cfg['architectures'])) s.architectures = cfg['architectures'].filter((a): a is string => typeof a === 'string');
  if (l.expertsPerToken !== undefined) s.expertsPerToken = l.expertsPerToken;
  if (l.hiddenSize !== undefined) s.hiddenSize = l.hiddenSize;
  const vk = model.arch.config.vocabSize ?? 'vocab_size';
  if (typeof cfg[vk] === 'number') s.vocabSize = cfg[vk] as number;
  const q = cfg['quantization_config'];
  if (q && typeof q === 'object' && typeof (q as Record<string, unknown>)['quant_method'] === 'string') {
    const qc = q as Record<string, unknown>;
    const fmt = typeof qc['fmt'] === 'string' ? ` ${qc['fmt']}` : '';
    const block = Array.isArray(qc['weight_block_size']) ? ` blocks ${(qc['weight_block_size'] as unknown[]).join('×')}` : '';
    s.quantization = `${qc['quant_method']}${fmt}${block}`;
  }
  return s;
}

/** 1234567 → "1.23M"; below 1000 as is. */
function compactCount(n: number): string {
  const units: [number, string][] = [[1e12, 'T'], [1e9, 'B'], [1e6, 'M'], [1e3, 'K']];
  for (const [v, u] of units) if (n >= v) return `${(n / v).toFixed(n / v >= 100 ? 0 : n / v >= 10 ? 1 : 2)}${u}`;
  return String(n);
}

/** Bytes in binary units: "1.5 GiB". */
function binaryBytes(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  let v = n;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return i === 0 ? `${n} B` : `${v.toFixed(v >= 100 ? 0 : v >= 10 ? 1 : 2)} ${units[i]}`;
}

function layerRanges(label: string, xs: number[]): string {
  if (xs.length === 0) return '';
  return `${xs.length === 1 ? 'layer' : 'layers'} ${rangeText(xs)} ${label}`;
}

export function formatSummary(s: ModelSummary): string {
  const lines: string[] = [];
  const pad = (k: string) => `  ${k.padEnd(13)}`;
  const arch = s.architectures && s.architectures.length > 0 ? `, ${s.architectures.join(', ')}` : '';
  lines.push(`${s.name}`);
  lines.push(`${pad('family')}${s.family} (model_type ${s.modelType ?? '?'}${arch})`);
  const parts = [layerRanges('dense', s.denseLayers), layerRanges('MoE', s.moeLayers)].filter(Boolean);
  // Dense and MoE runs in layer order: "layers 0-2 dense, 3-60 MoE".
  let layersText = parts.join(', ');
  if (s.denseLayers.length > 0 && s.moeLayers.length > 0) {
    const runs: { kind: string; from: number; to: number }[] = [];
    const moe = new Set(s.moeLayers);
    for (let i = 0; i < s.layers; i++) {
      const kind = moe.has(i) ? 'MoE' : 'dense';
      const last = runs[runs.length - 1];
      if (last && last.kind === kind && last.to === i - 1) last.to = i;
      else runs.push({ kind, from: i, to: i });
    }
    layersText = 'layers ' + runs.map((r) => `${r.from === r.to ? r.from : `${r.from}-${r.to}`} ${r.kind}`).join(', ');
  }
  if (s.mtpLayers.length > 0) layersText += `; MTP ${layerRanges('', s.mtpLayers).trim()}`;
  lines.push(`${pad('layers')}${s.layers}: ${layersText}`);
  const perTok = s.expertsPerToken !== undefined ? `, ${s.expertsPerToken} per token` : '';
  const shared = s.sharedExperts > 0 ? `, ${s.sharedExperts} shared` : ', no shared expert';
  lines.push(`${pad('experts')}${s.experts} routed per MoE layer${perTok}${shared} (${s.totalRoutedExperts} routed in all)`);
  lines.push(
    `${pad('router')}${s.routerBias === 'selection_only' ? 'selection-only bias (an expert can be switched off or on exactly)' : 'no selection bias (experts can only be muted)'}`,
  );
  if (s.hiddenSize !== undefined || s.vocabSize !== undefined) {
    lines.push(`${pad('sizes')}${[s.hiddenSize !== undefined ? `hidden ${s.hiddenSize}` : '', s.vocabSize !== undefined ? `vocab ${s.vocabSize}` : ''].filter(Boolean).join(', ')}`);
  }
  lines.push(`${pad('parameters')}${compactCount(s.parameters)} (${compactCount(s.routedParameters)} in routed experts)`);
  if (s.quantization) lines.push(`${pad('quantization')}${s.quantization}`);
  const scaleText = s.scales > 0 ? ` + ${s.scales} FP8 block scales` : '';
  lines.push(`${pad('tensors')}${s.tensors} (${s.weights} weights${scaleText}) in ${s.shards} shard${s.shards === 1 ? '' : 's'}`);
  lines.push(`${pad('size on disk')}${binaryBytes(s.sizeOnDisk)} (${s.sizeOnDisk} bytes)`);
  const dts = Object.entries(s.dtypes).sort((a, b) => b[1].bytes - a[1].bytes);
  dts.forEach(([d, v], i) => {
    lines.push(`${pad(i === 0 ? 'dtypes' : '')}${d.padEnd(8)} ${String(v.tensors).padStart(7)} tensors  ${binaryBytes(v.bytes)}`);
  });
  const kinds = Object.entries(s.kinds).filter(([, n]) => n > 0);
  lines.push(`${pad('kinds')}${kinds.map(([k, n]) => `${k} ${n}`).join(', ')}`);
  if (s.otherFiles.length > 0) lines.push(`${pad('other files')}${s.otherFiles.join(', ')}`);
  for (const w of s.warnings) lines.push(`  warning: ${w}`);
  return lines.join('\n');
}
