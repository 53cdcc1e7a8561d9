// A number field as wide as what it holds: a weight such as 0.0714286 or 1/14 is never cut, and a
// short one takes little room in a row of eight parents.

/** Inline style for an input holding `text`: its characters, a little room for the caret, the padding. */
export function fitWidth(text: string): { width: string } {
  return { width: `calc(${Math.max(4, text.length + 1)}ch + 18px)` };
}
