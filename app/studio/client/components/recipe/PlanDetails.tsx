// What gets written: how the child's tensors are made, the files and their sizes, and warnings.
// The per-kind table (KindTable) heads the recipe panel and the merge report.
import { formatBytes, formatCount } from '../../../shared/format.ts';
import { KIND_LABEL } from '../../heat-data.ts';
import { useStudio } from '../../store.ts';
import type { PlanSummary } from '../../../shared/studio-api.ts';
import { Section } from './Section.tsx';

export function PlanDetails() {
  const plan = useStudio((s) => s.plan);
  if (!plan) return null;
  return (
    <Section title="What gets written" defaultOpen={false}>
      <div className="muted small">
        {formatCount(plan.made.copied)} copied byte for byte · {formatCount(plan.made.converted)} converted · {formatCount(plan.made.mixed)} mixed
        {plan.made.assembled ? ` · ${formatCount(plan.made.assembled)} assembled from several sources` : ''}
        {plan.made.muted ? ` · ${formatCount(plan.made.muted)} with muted experts` : ''}
        {plan.made.patched ? ` · ${formatCount(plan.made.patched)} with switched experts` : ''} · {plan.files.length} files, {formatBytes(plan.totalBytes)}
      </div>

      {plan.warnings.length > 0 && (
        <ul className="warn-list">
          {plan.warnings.slice(0, 30).map((w, i) => (
            <li key={i}>{w}</li>
          ))}
          {plan.warnings.length > 30 && <li>… and {plan.warnings.length - 30} more</li>}
        </ul>
      )}
    </Section>
  );
}

/** Per tensor kind: how many tensors, how many copied from each parent, mixed and muted. */
export function KindTable({ plan }: { plan: PlanSummary }) {
  return (
    <div className="kind-scroll">
    <table className="kind-table" data-testid="kind-table">
      <thead>
        <tr>
          <th>kind</th>
          <th>tensors</th>
          {plan.parents.map((p) => (
            <th key={p} title={`copied from ${p}`}>
              from {p}
            </th>
          ))}
          <th>mixed</th>
          <th>muted</th>
        </tr>
      </thead>
      <tbody>
        {plan.byKind.map((k) => (
          <tr key={k.kind}>
            <td>{KIND_LABEL[k.kind]}</td>
            <td>{formatCount(k.tensors)}</td>
            {plan.parents.map((p) => (
              <td key={p}>{k.from[p] ? formatCount(k.from[p]!) : ''}</td>
            ))}
            <td>{k.mixed ? formatCount(k.mixed) : ''}</td>
            <td>{k.muted ? formatCount(k.muted) : ''}</td>
          </tr>
        ))}
      </tbody>
    </table>
    </div>
  );
}
