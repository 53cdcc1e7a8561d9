import { type Edit, type Recipe, type Rule } from '../../engine/recipe/schema.ts';
import { type Projection, type TensorKind } from '../../engine/model/types.ts';
export declare const NON_EXPERT_KINDS: TensorKind[];
export interface ParentRef {
    name: string;
    /** What the CLI reads as the parent's path; the studio writes the folder name. */
    path: string;
}
export declare function emptyRecipe(parents: ParentRef[], base: string | undefined): Recipe;
/** Sets `parents` and `base` from the open parents, keeping paths the user edited for parents that remain. */
export declare function withParents(recipe: Recipe, parents: ParentRef[], base: string | undefined): Recipe;
/** Renames a parent everywhere it is used: parents, base, weights and `from`. */
export declare function renameParent(recipe: Recipe, from: string, to: string): Recipe;
/** Drops a parent: its weights go, and rules taking everything `from` it are removed. */
export declare function dropParent(recipe: Recipe, name: string): Recipe;
/**
 * MEA: routed experts W = (1-α)·base + α·donor; everything else from the base.
 * α = 1 is a pure swap, written as `from: donor` so experts are copied byte for byte.
 */
export declare function meaPreset(recipe: Recipe, base: string, donor: string, alpha: number): Recipe;
/** AoE "Chimera": routed experts from the donor verbatim, everything else from the base. */
export declare function chimeraPreset(recipe: Recipe, base: string, donor: string): Recipe;
/** The recipe with this AoE threshold (keep a mixed tensor from the base below it), or with none (`below` undefined). */
export declare function withThreshold(recipe: Recipe, below: number | undefined): Recipe;
/** Groups of tensor kinds the "Mix N parents" preset gives one row of weights each. */
export declare const MIX_GROUPS: {
    label: string;
    kinds: TensorKind[];
}[];
/** The groups of MIX_GROUPS with the kinds among `present` (a model without shared experts gets no row for them). */
export declare function mixGroupsFor(present: readonly TensorKind[]): {
    label: string;
    kinds: TensorKind[];
}[];
/**
 * "Mix N parents": one rule per group of kinds, with that group's weights (normalized to sum 1).
 * `groups` are the model's own (mixGroupsFor): a rule for a kind the model lacks would match nothing.
 */
export declare function mixPreset(recipe: Recipe, base: string, weights: Record<string, number>[], groups?: {
    label: string;
    kinds: TensorKind[];
}[]): Recipe;
/**
 * A rectangle of the expert heatmaps: these layers × these experts. `experts` empty: every expert
 * of those layers (a fused grid's row, where experts are not told apart).
 */
export interface SelectionRect {
    layers: number[];
    experts: number[];
}
/** The heatmap selection: a union of rectangles (shift adds one), for these projections. */
export interface ExpertSelection {
    rects: SelectionRect[];
    proj: Projection[];
}
export declare const NO_SELECTION: ExpertSelection;
/** Every (layer, expert) the selection covers, once each, by layer then expert. */
export declare function selectionPairs(sel: ExpertSelection): {
    layer: number;
    expert: number;
}[];
/** The layers any rectangle covers, ascending. */
export declare function selectionLayers(sel: ExpertSelection): number[];
/**
 * (layer, expert) pairs as few `{layers, experts}` blocks: layers with the same set of experts
 * share a block. Exact: the blocks cover these pairs and nothing else, each pair once.
 */
export declare function pairBlocks(pairs: readonly {
    layer: number;
    expert: number;
}[]): {
    layers: number[];
    experts: number[];
}[];
/** The selection in words: "layers 1-2 × experts 2-5; layer 4 × expert 0". */
export declare function describeSelection(sel: ExpertSelection): string;
/** Rules for the routed experts under a heatmap selection: one per rectangle, in selection order. */
export declare function selectionRules(sel: ExpertSelection, take: {
    from: string;
} | {
    weights: Record<string, number>;
}, allProj?: number): Rule[];
/** Adds or replaces expert edits for every (layer, expert) the selection covers. */
export declare function applyEdits(recipe: Recipe, sel: ExpertSelection, action: Edit['action'] | 'clear'): Recipe;
/** Adds or replaces edits for exactly these (layer, expert) pairs (not a product of layers and experts). */
export declare function applyEditList(recipe: Recipe, edits: readonly Edit[]): Recipe;
/** Removes (prunes) exactly these (layer, expert) pairs: `experts.remove`, layers with the same experts in one entry. */
export declare function removeExpertList(recipe: Recipe, cells: readonly {
    layer: number;
    expert: number;
}[]): Recipe;
/** Removes (prunes) the selected experts: `experts.remove`. */
export declare function removeExperts(recipe: Recipe, sel: ExpertSelection): Recipe;
/**
 * Each selected expert slot takes another expert's weights: `experts.transplant`. `expert`
 * undefined: the same index as the slot (a swap of whole experts between related models).
 */
export declare function transplantExperts(recipe: Recipe, sel: ExpertSelection, from: {
    parent: string;
    layer?: number;
    expert?: number;
}, router: 'keep' | 'source'): Recipe;
/** Appends a parent's expert to every selected layer: `experts.add` (its router row comes with it). */
export declare function addExpert(recipe: Recipe, sel: ExpertSelection, from: {
    parent: string;
    layer?: number;
    expert: number;
}): Recipe;
/** Drops every expert change. */
export declare function clearExpertChanges(recipe: Recipe): Recipe;
/** λ values as typed ("0.25, 0.5 0.75"): each in [0, 1], at most 16, no repeats; an error text otherwise. */
export declare function parseLambdas(text: string): number[] | string;
/**
 * A λ sweep of one rule: per λ, the recipe with that rule taking (1 − λ) of the base and λ of its
 * donor (the rule's other parent: its `from`, or the non-base parent of its two weights). Each
 * child is named "lambda-<λ>". The rule must involve the base and exactly one other parent.
 */
export declare function sweepRecipes(recipe: Recipe, rule: number, lambdas: readonly number[]): {
    name: string;
    recipe: Recipe;
}[] | string;
/**
 * A weight as the studio shows it: a fraction k/n (n ≤ 12) when it is one to the last bits (a
 * third reads "1/3", not 0.3333333333333333), else at most 6 significant digits.
 */
export declare function weightText(w: number): string;
/** A weight as typed in the studio: a number ≥ 0 or a fraction ("1/3", as recipes accept); NaN when neither. */
export declare function weightOf(text: string): number;
/**
 * Which preset a recipe is, so the presets show it (after a reload, an import, or a return to the
 * Build tab): one routed-expert rule taking a donor verbatim is Chimera (as MEA at α = 1 is), with
 * weights it is MEA at the donor's share; rules by tensor kind only are Mix N. Null for anything else.
 */
export declare function presetOf(recipe: Recipe): {
    kind: 'mea';
    donor: string;
    alpha: number;
} | {
    kind: 'chimera';
    donor: string;
} | {
    kind: 'mix';
} | null;
