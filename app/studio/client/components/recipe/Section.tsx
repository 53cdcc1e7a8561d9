// A collapsible section of the recipe panel.
import { useState } from 'react';

export function Section({ title, children, extra, defaultOpen = true }: { title: string; children: React.ReactNode; extra?: React.ReactNode; defaultOpen?: boolean }) {
  const [open, setOpen] = useState(defaultOpen);
  return (
    <div className="rsec">
      <div className="rsec-head">
        <button className="rsec-toggle" onClick={() => setOpen(!open)} aria-expanded={open}>
          <span className="caret">{open ? '▾' : '▸'}</span> {title}
        </button>
        {extra}
      </div>
      {open && <div className="rsec-body">{children}</div>}
    </div>
  );
}
