export { formatBytes, formatDuration } from '../../engine/report/format.ts';
/** A figure with 3 significant digits, exponent form when very small or large. */
export declare function formatFigure(x: number): string;
export declare function formatCount(n: number): string;
/** "3-5, 7, 9-12" from integers in any order ('' for none). */
export declare function formatIndexList(xs: readonly number[]): string;
