// Right: the recipe (the same YAML the CLI reads), built from presets, rules, heatmap selections,
// expert edits, the threshold and the output settings.
import { useState } from 'react';
import { formatBytes, formatCount } from '../../shared/format.ts';
import { useStudio } from '../store.ts';
import { Edits } from './recipe/Edits.tsx';
import { ExpertChanges } from './recipe/ExpertChanges.tsx';
import { Output } from './recipe/Output.tsx';
import { KindTable, PlanDetails } from './recipe/PlanDetails.tsx';
import { Presets } from './recipe/Presets.tsx';
import { Rules } from './recipe/Rules.tsx';
import { SelectionBox } from './recipe/SelectionBox.tsx';
import { Threshold } from './recipe/Threshold.tsx';
import { YamlView } from './recipe/YamlView.tsx';

export function RecipePanel() {
  const [tab, setTab] = useState<'build' | 'yaml'>('build');
  const parents = useStudio((s) => s.parents);
  const plan = useStudio((s) => s.plan);
  const planError = useStudio((s) => s.planError);
  const yamlError = useStudio((s) => s.yamlError);
  const recipe = useStudio((s) => s.recipe);
  // One verdict: Merge waits for a recipe that parses and plans, and says why it waits.
  const planning = useStudio((s) => s.planning);
  const problem = yamlError
    ? 'The YAML has an error (shown above the editor): fix it first.'
    : planError
      ? `The recipe cannot run: ${planError}`
      : !plan && parents.length < 2
        ? 'Open at least two parents.'
        : null;
  // While a plan is being made the sheet would list the previous plan's files: Merge waits for it.
  const blocked = problem ?? (!plan || planning ? 'Planning…' : null);
  const openMerge = () => {
    const empty = recipe.rules.length === 0 && recipe.edits.length === 0 && (!recipe.experts || recipe.experts.remove.length + recipe.experts.transplant.length + recipe.experts.add.length === 0);
    if (empty && !window.confirm(`The recipe has no rules, edits or expert changes: the child would be a copy of ${recipe.base ?? 'the base'}. Merge anyway?`)) return;
    useStudio.setState({ mergeOpen: true });
  };
  return (
    <section className="panel right-panel" aria-label="Recipe">
      <div className="panel-head">
        <h2>Recipe</h2>
        <div className="seg">
          <button className={tab === 'build' ? 'on' : ''} onClick={() => setTab('build')}>
            Build
          </button>
          <button className={tab === 'yaml' ? 'on' : ''} onClick={() => setTab('yaml')} data-testid="yaml-tab">
            YAML
          </button>
        </div>
      </div>
      <Sentence />
      <div className="recipe-scroll">
        {tab === 'build' ? (
          parents.length === 0 ? (
            <p className="muted pad">Open parents to build a recipe, or import one in the YAML tab.</p>
          ) : (
            <>
              <Presets />
              <SelectionBox />
              <Rules />
              <Edits />
              <ExpertChanges />
              <Threshold />
              <Output />
              <PlanDetails />
            </>
          )
        ) : (
          <YamlView />
        )}
      </div>
      <div className="recipe-foot">
        {problem && parents.length > 0 && (
          <p className="small err-text merge-blocked" data-testid="merge-blocked">
            {problem}
          </p>
        )}
        <button className="btn primary wide" disabled={blocked !== null} onClick={openMerge} data-testid="open-merge" title={blocked ?? undefined}>
          Merge…{plan && !blocked ? ` ${formatBytes(plan.totalBytes)} in ${plan.files.length} files` : ''}
        </button>
      </div>
    </section>
  );
}

function Sentence() {
  const plan = useStudio((s) => s.plan);
  const planError = useStudio((s) => s.planError);
  const planning = useStudio((s) => s.planning);
  const parents = useStudio((s) => s.parents);
  if (parents.length === 0) return null;
  return (
    <div className={`sentence ${planError ? 'bad' : ''}`} data-testid="plan-sentence" aria-live="polite">
      {planError ? (
        <>
          <b>The recipe cannot run yet.</b> {planError}
        </>
      ) : plan ? (
        <>
          <b>The child:</b> {formatCount(plan.tensors)} tensors, {formatBytes(plan.totalBytes)} in {plan.files.length} files
          {plan.experts ? `, ${plan.experts} experts per MoE layer` : ''}.
          <KindTable plan={plan} />
          <details>
            <summary>in words</summary>
            {plan.description}
          </details>
        </>
      ) : (
        <span className="muted">{planning ? 'Planning…' : ''}</span>
      )}
    </div>
  );
}
