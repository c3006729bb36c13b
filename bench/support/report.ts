export function median(values: readonly number[]): number {
  if (values.length === 0) return Number.NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? sorted[middle]! : (sorted[middle - 1]! + sorted[middle]!) / 2;
}

export function formatInt(value: number): string {
  return Number.isFinite(value) ? Math.round(value).toLocaleString('en-US') : '—';
}

export function formatTps(value: number): string {
  return `${formatInt(value)} tps`;
}

export function formatSeconds(value: number): string {
  return Number.isFinite(value) ? `${value.toFixed(2)} s` : '—';
}

export function formatRatio(value: number): string {
  return Number.isFinite(value) ? `${value.toFixed(2)}x` : '—';
}

export function formatPercent(value: number): string {
  return Number.isFinite(value) ? `${(value * 100).toFixed(1)}%` : '—';
}

export type Align = 'left' | 'right';

/** A Markdown table, padded so that it also reads well as plain text. */
export function markdownTable(
  header: readonly string[],
  rows: readonly (readonly string[])[],
  align?: readonly Align[],
): string {
  const escape = (cell: string) => cell.replace(/\|/g, '\\|');
  const cells = [header, ...rows].map((row) => header.map((_, i) => escape(row[i] ?? '')));
  const widths = header.map((_, i) => Math.max(3, ...cells.map((row) => row[i]!.length)));
  const alignOf = (i: number): Align => align?.[i] ?? 'left';
  const line = (row: readonly string[]) =>
    `| ${row.map((cell, i) => (alignOf(i) === 'right' ? cell.padStart(widths[i]!) : cell.padEnd(widths[i]!))).join(' | ')} |`;
  const rule = `| ${widths.map((width, i) => (alignOf(i) === 'right' ? `${'-'.repeat(width - 1)}:` : '-'.repeat(width))).join(' | ')} |`;
  const [first, ...rest] = cells;
  return [line(first!), rule, ...rest.map(line)].join('\n');
}
