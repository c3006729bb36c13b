/** Where a command writes: lines or a table for people, one JSON document with `--json`. */
export interface Output {
  readonly json: boolean;
  line(text?: string): void;
  /** Aligned columns under a header row; `-` stands for a missing value. */
  table(header: readonly string[], rows: readonly (readonly (string | number | null | undefined)[])[]): void;
  /** The whole result as one JSON document (dates as ISO 8601 strings). */
  document(value: unknown): void;
  /** Progress of a long operation: on a terminal only, overwritten in place, on stderr. */
  progress(text: string): void;
  /** Ends a progress line, if one was written. */
  endProgress(): void;
  warn(text: string): void;
}

export interface OutputStreams {
  readonly stdout: NodeJS.WritableStream;
  readonly stderr: NodeJS.WritableStream & { isTTY?: boolean };
}

export function createOutput(json: boolean, streams: OutputStreams): Output {
  const { stdout, stderr } = streams;
  let progressShown = false;
  return {
    json,
    line(text = '') {
      stdout.write(`${text}\n`);
    },
    table(header, rows) {
      for (const line of alignedRows([header, ...rows.map((row) => row.map(cell))]))
        stdout.write(`${line}\n`);
    },
    document(value) {
      stdout.write(`${JSON.stringify(value, null, 2)}\n`);
    },
    progress(text) {
      if (!stderr.isTTY) return;
      stderr.write(`\r\x1b[K${text}`);
      progressShown = true;
    },
    endProgress() {
      if (progressShown) stderr.write('\n');
      progressShown = false;
    },
    warn(text) {
      stderr.write(`rulebook: ${text}\n`);
    },
  };
}

function cell(value: string | number | null | undefined): string {
  return value === null || value === undefined || value === '' ? '-' : String(value);
}

/** Rows padded to the widest cell of each column, two spaces apart, without trailing blanks. */
export function alignedRows(rows: readonly (readonly string[])[]): string[] {
  const columns = Math.max(0, ...rows.map((row) => row.length));
  const widths = Array.from({ length: columns }, (_, column) =>
    Math.max(...rows.map((row) => (row[column] ?? '').length)),
  );
  return rows.map((row) =>
    row
      .map((text, column) => text.padEnd(widths[column]!))
      .join('  ')
      .trimEnd(),
  );
}

/** A time as operators read it in a terminal: to the second, in UTC. */
export function formatTime(date: Date | null | undefined): string {
  return date ? `${date.toISOString().slice(0, 19).replace('T', ' ')}Z` : '-';
}

/** An age or a lag in seconds, the way a person says it: 45s, 12m, 3h 5m, 2d 4h. */
export function formatAge(seconds: number | null | undefined): string {
  if (seconds === null || seconds === undefined) return '-';
  const s = Math.max(0, Math.floor(seconds));
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m ${s % 60}s`;
  if (s < 86_400) return `${Math.floor(s / 3600)}h ${Math.floor((s % 3600) / 60)}m`;
  return `${Math.floor(s / 86_400)}d ${Math.floor((s % 86_400) / 3600)}h`;
}
