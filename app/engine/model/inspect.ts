// What the CLI `inspect` command and the studio show about one opened model.
import { configValue } from '../arch/families.ts';
import type { RouterBias } from '../arch/types.ts';
import { codecName } from '../formats/codec.ts';
import { elementCount } from '../formats/dtype.ts';
import { rangeText } from '../report/format.ts';
import { expertLayout } from './compat.ts';
import { TENSOR_KINDS, type Model, type TensorKind } from './types.ts';

/** Whether an expert edit is exact for a model's router, and why (or why not). */
export interface EditExactness {
  action: 'off' | 'on' | 'mute' | 'remove';
  exact: boolean;
  /** Refused outright (not just inexact). */
  available: boolean;
  why: string;
}

/** What each expert edit means for this router: the studio, `inspect` and the planner say the same. */
export function editExactness(routerBias: RouterBias, groups: number | undefined, topkGroups: number | undefined): EditExactness[] {
  const grouped = groups !== undefined && groups > 1 && (topkGroups === undefined || topkGroups < groups);
  const out: EditExactness[] = [];
  if (routerBias === 'none') {
    out.push({ action: 'off', exact: false, available: false, why: 'no router bias to switch it off with; mute or remove the expert instead' });
    out.push({ action: 'on', exact: false, available: false, why: 'no router bias to force it with' });
  } else if (routerBias === 'logits') {
    out.push({ action: 'off', exact: true, available: true, why: 'a large negative logit bias: never chosen, the softmax over the remaining top-k unchanged' });
    out.push({ action: 'on', exact: false, available: false, why: "the bias is added to the logits before the softmax: a forced expert's weight would dominate" });
  } else {
    out.push({ action: 'off', exact: true, available: true, why: 'never chosen; the gate weights of the chosen experts come from unbiased scores and are unchanged' });
    out.push(
      grouped
        ? { action: 'on', exact: false, available: false, why: `routing is group-limited (n_group ${groups}, topk_group ${topkGroups ?? '?'}): forcing an expert also forces its group into the chosen groups` }
        : { action: 'on', exact: true, available: true, why: 'always among the chosen experts; its gate weight comes from its unbiased score' },
    );
  }
  out.push({ action: 'mute', exact: true, available: true, why: 'down projection zeroed: zero output, the expert still takes its routing slot' });
  out.push({ action: 'remove', exact: true, available: true, why: 'sliced out of every expert tensor, router row and bias; the config count rewritten' });
  return out;
}

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
  routerBias: RouterBias;
  /** Group-limited routing, where the config says. */
  groups?: number;
  topkGroups?: number;
  /** What off / on / mute / remove mean for this router. */
  edits: EditExactness[];
  /** How routed experts are stored. */
  expertLayout: 'per-expert' | 'fused' | 'mixed';
  /** Fused expert tensors, one line per distinct layout ("mlp.experts.gate_up_proj [E, 2I, H]: gate, up halves"). */
  fusedLayouts: string[];
  /** Weights per storage format (codec), with their bytes (companions included). */
  formats: Record<string, { weights: number; bytes: number }>;
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
  /** Companion tensors (scales and the like) stored with their weights. */
  scales: number;
  /** F8_E4M3 weights without a scale. */
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
  const formats: Record<string, { weights: number; bytes: number }> = {};
  const fused = new Set<string>();
  for (const w of model.weights) {
    add(w.data.dtype, w.data.length);
    for (const c of w.companions) {
      add(c.record.dtype, c.record.length);
      scales++;
    }
    const f = (formats[codecName(w.codec)] ??= { weights: 0, bytes: 0 });
    f.weights++;
    f.bytes += w.data.length + w.companions.reduce((n, c) => n + c.record.length, 0);
    if (w.codec.kind === 'plain' && w.codec.dtype === 'F8_E4M3') unscaledFp8++;
    kinds[w.role.kind]++;
    const n = elementCount(w.shape);
    parameters += n;
    if (w.role.kind === 'routed_expert') routedParameters += n;
    if (w.fused && w.experts?.kind === 'slabs') {
      const pattern = w.name.replace(/(^|\.)(layers|blocks|h|layer)\.\d+\./, '$1$2.L.');
      const where = w.experts.parts.map((p) => `${p.proj}${p.region.transposed && !w.fused!.bias ? ' (transposed)' : ''}`).join(', ');
      const mode = w.experts.parts.length > 1 ? ` ${w.fused.mode}` : '';
      fused.add(`${pattern} [${w.shape.join(', ')}]: ${w.fused.bias ? 'bias of ' : ''}${where}${mode}`);
    }
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
    edits: editExactness(model.arch.routerBias, l.groups, l.topkGroups),
    expertLayout: expertLayout(model),
    fusedLayouts: [...fused],
    formats,
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
  const vocab = configValue(model.arch, cfg, 'vocabSize')?.value;
  if (typeof vocab === 'number') s.vocabSize = vocab;
  if (l.groups !== undefined) s.groups = l.groups;
  if (l.topkGroups !== undefined) s.topkGroups = l.topkGroups;
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
  const routerText =
    s.routerBias === 'selection'
      ? 'selection-only bias (added to the scores only to choose experts)'
      : s.routerBias === 'logits'
        ? 'bias added to the logits before top-k'
        : 'no bias';
  const groupsText = s.groups !== undefined && s.groups > 1 ? `; group-limited: ${s.groups} groups, ${s.topkGroups ?? '?'} chosen per token` : '';
  lines.push(`${pad('router')}${routerText}${groupsText}`);
  for (const e of s.edits) {
    lines.push(`${pad('')}${e.action.padEnd(6)} ${e.available ? (e.exact ? 'exact' : 'not exact') : 'refused'}: ${e.why}`);
  }
  lines.push(`${pad('layout')}${s.expertLayout === 'per-expert' ? 'one tensor per expert and projection' : s.expertLayout === 'fused' ? 'fused (all experts of a layer in one tensor)' : 'mixed'}`);
  for (const f of s.fusedLayouts) lines.push(`${pad('')}${f}`);
  if (s.hiddenSize !== undefined || s.vocabSize !== undefined) {
    lines.push(`${pad('sizes')}${[s.hiddenSize !== undefined ? `hidden ${s.hiddenSize}` : '', s.vocabSize !== undefined ? `vocab ${s.vocabSize}` : ''].filter(Boolean).join(', ')}`);
  }
  lines.push(`${pad('parameters')}${compactCount(s.parameters)} (${compactCount(s.routedParameters)} in routed experts)`);
  if (s.quantization) lines.push(`${pad('quantization')}${s.quantization}`);
  const scaleText = s.scales > 0 ? ` + ${s.scales} scales and other companions` : '';
  lines.push(`${pad('tensors')}${s.tensors} (${s.weights} weights${scaleText}) in ${s.shards} shard${s.shards === 1 ? '' : 's'}`);
  lines.push(`${pad('size on disk')}${binaryBytes(s.sizeOnDisk)} (${s.sizeOnDisk} bytes)`);
  const dts = Object.entries(s.dtypes).sort((a, b) => b[1].bytes - a[1].bytes);
  dts.forEach(([d, v], i) => {
    lines.push(`${pad(i === 0 ? 'dtypes' : '')}${d.padEnd(8)} ${String(v.tensors).padStart(7)} tensors  ${binaryBytes(v.bytes)}`);
  });
  const fmts = Object.entries(s.formats).sort((a, b) => b[1].bytes - a[1].bytes);
  fmts.forEach(([f, v], i) => lines.push(`${pad(i === 0 ? 'formats' : '')}${f}: ${v.weights} weights, ${binaryBytes(v.bytes)}`));
  const kinds = Object.entries(s.kinds).filter(([, n]) => n > 0);
  lines.push(`${pad('kinds')}${kinds.map(([k, n]) => `${k} ${n}`).join(', ')}`);
  if (s.otherFiles.length > 0) lines.push(`${pad('other files')}${s.otherFiles.join(', ')}`);
  for (const w of s.warnings) lines.push(`  warning: ${w}`);
  return lines.join('\n');
}
