// How a recipe, the CLI and the studio name a Hub parent: hf://ORG/NAME, optionally @REVISION.

/** A model repository on the Hub and the revision asked for (a branch, tag or commit). */
export interface HubRef {
  repo: string;
  /** As written; absent means the default branch ("main"). */
  revision?: string;
}

export const HUB_SCHEME = 'hf://';

// Repo ids as the Hub allows them: one optional namespace, letters, digits, "-", "_", "."; no
// "--" or ".." and no leading/trailing "-" or "." (checked below). Revisions are branch, tag or
// commit names; "/" is allowed in them (refs/pr/1), URL-encoded when used.
const PART = /^[A-Za-z0-9](?:[A-Za-z0-9._-]{0,94}[A-Za-z0-9])?$/;
const REVISION = /^[A-Za-z0-9._/-]{1,255}$/;

export function isHubRef(text: string): boolean {
  return text.startsWith(HUB_SCHEME);
}

/** Parses "hf://ORG/NAME[@REVISION]"; throws a one-line explanation when it is not one. */
export function parseHubRef(text: string): HubRef {
  if (!isHubRef(text)) throw new Error(`"${text}" is not a Hub parent (hf://ORG/NAME or hf://ORG/NAME@REVISION)`);
  const body = text.slice(HUB_SCHEME.length);
  const at = body.indexOf('@');
  const repo = at < 0 ? body : body.slice(0, at);
  const revision = at < 0 ? undefined : body.slice(at + 1);
  const parts = repo.split('/');
  const good = (parts.length === 1 || parts.length === 2) && parts.every((p) => PART.test(p) && !p.includes('--') && !p.includes('..'));
  if (!good) throw new Error(`"${text}": "${repo}" is not a Hub model id (ORG/NAME: letters, digits, "-", "_", ".")`);
  if (revision !== undefined && (!REVISION.test(revision) || revision.includes('..'))) {
    throw new Error(`"${text}": "${revision}" is not a revision (a branch, tag or commit)`);
  }
  return revision === undefined ? { repo } : { repo, revision };
}

export function hubRefText(ref: HubRef): string {
  return `${HUB_SCHEME}${ref.repo}${ref.revision !== undefined ? `@${ref.revision}` : ''}`;
}
