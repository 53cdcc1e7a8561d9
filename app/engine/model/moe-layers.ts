// Which layers a config says are MoE. Every rule key the family names and the config has
// applies (they are written so that each family sets only its own):
//   first_k_dense_replace   l >= n                     (DeepSeek, GLM, Ling)
//   moe_layer_freq          l % n == 0                 (DeepSeek)
//   decoder_sparse_step …   (l + 1) % n == 0           (Qwen; ERNIE's moe_layer_interval; Llama-4's interleave step)
//   mlp_only_layers         l not listed               (Qwen)
//   moe_layers              l listed                   (Llama-4)
//   hybrid_override_pattern pattern[l] == 'E'          (Nemotron-H)
//   expert_layer_period/offset (l − offset) % period == 0 (Jamba)
//   moe_layer_start/end_index  start <= l <= end (end −1: the last layer) (ERNIE)
import { configValue } from '../arch/families.ts';
import type { ArchitectureSpec, ConfigKeys } from '../arch/types.ts';
import { MoeError } from '../io.ts';

function intOf(spec: ArchitectureSpec, config: Record<string, unknown>, field: keyof ConfigKeys, path: string): number | undefined {
  const v = configValue(spec, config, field);
  if (!v) return undefined;
  if (typeof v.value !== 'number' || !Number.isSafeInteger(v.value)) throw new MoeError(`"${v.path}" is ${JSON.stringify(v.value)}, not an integer`, path);
  return v.value;
}

function listOf(spec: ArchitectureSpec, config: Record<string, unknown>, field: keyof ConfigKeys): Set<number> | undefined {
  const v = configValue(spec, config, field);
  if (!v || !Array.isArray(v.value)) return undefined;
  return new Set(v.value.filter((x): x is number => typeof x === 'number'));
}

/** The MoE layers among 0..layers-1 that the config implies (`layers` is already bounded). */
export function configMoeLayers(spec: ArchitectureSpec, config: Record<string, unknown>, layers: number, configPath: string): number[] {
  const firstDense = intOf(spec, config, 'firstDenseLayers', configPath);
  const freq = intOf(spec, config, 'moeLayerFreq', configPath);
  const step = intOf(spec, config, 'sparseStep', configPath);
  const period = intOf(spec, config, 'expertPeriod', configPath);
  const offset = intOf(spec, config, 'expertOffset', configPath) ?? 0;
  const start = intOf(spec, config, 'moeStart', configPath);
  const end = intOf(spec, config, 'moeEnd', configPath);
  const dense = listOf(spec, config, 'denseLayerList');
  const moe = listOf(spec, config, 'moeLayerList');
  const patternV = configValue(spec, config, 'layerPattern');
  const pattern = typeof patternV?.value === 'string' ? patternV.value : undefined;
  const out: number[] = [];
  for (let l = 0; l < layers; l++) {
    if (firstDense !== undefined && l < firstDense) continue;
    if (freq !== undefined && freq > 1 && l % freq !== 0) continue;
    if (step !== undefined && step > 1 && (l + 1) % step !== 0) continue;
    if (dense?.has(l)) continue;
    if (moe && !moe.has(l)) continue;
    if (pattern !== undefined && pattern[l] !== 'E') continue;
    if (period !== undefined && period > 0 && (l - offset) % period !== 0) continue;
    if (start !== undefined && l < start) continue;
    if (end !== undefined && end >= 0 && l > end) continue;
    out.push(l);
  }
  return out;
}
