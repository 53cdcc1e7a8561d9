// Plain text tables for the CLI's reports.

/** Columns padded to their widest cell, a dashed rule under the head; `rightAlign` per column. */
export function table(head: string[], rows: string[][], rightAlign: boolean[]): string {
  // A loop, not Math.max(...rows): a spread of 130,000 rows overflows the call stack.
  const widths = head.map((h) => h.length);
  for (const r of rows) r.forEach((c, i) => (widths[i] = Math.max(widths[i]!, c.length)));
  const line = (cells: string[]) => cells.map((c, i) => (rightAlign[i] ? c.padStart(widths[i]!) : c.padEnd(widths[i]!))).join('  ').trimEnd();
  return [line(head), line(widths.map((w) => '-'.repeat(w))), ...rows.map(line)].join('\n');
}
